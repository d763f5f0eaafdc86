"""Staging: where share bytes wait between the server and an array member.

Share bytes never travel over a member's WebSocket. The server stages a share and hands the
member a URL to download it from, or hands it a URL to upload one to and reads what arrived.
Two implementations behind one interface: an S3 bucket with presigned URLs (AWS), and a
directory served by the local gateway with HMAC-signed, expiring URLs (`cloudstrype serve`).
The `staging_dir` setting picks the directory; otherwise `staging_bucket` the bucket.
"""
from __future__ import annotations

import threading

from cloudstrype.staging.base import (
    StagedObjectMissing,
    StagedObjectTooLarge,
    Staging,
    StagingError,
    valid_key,
)

__all__ = ["Staging", "StagingError", "StagedObjectMissing", "StagedObjectTooLarge",
           "get_staging", "set_staging", "valid_key"]

_staging: Staging | None = None
_lock = threading.Lock()


def get_staging() -> Staging:
    """The process's staging area, chosen by the settings."""
    global _staging
    with _lock:
        if _staging is None:
            from cloudstrype.settings import get_settings
            settings = get_settings()
            if settings.staging_dir:
                from cloudstrype.staging.local import LocalStaging
                _staging = LocalStaging(settings.staging_dir, settings.public_url)
            elif settings.staging_bucket:
                from cloudstrype.staging.s3 import S3Staging
                _staging = S3Staging(settings.staging_bucket, settings.region)
            else:
                raise StagingError("Neither CLOUDSTRYPE_STAGING_DIR nor CLOUDSTRYPE_STAGING_BUCKET "
                                   "is set; array members cannot be reached.")
        return _staging


def set_staging(staging: Staging | None) -> None:
    """For the local stack and tests: use this staging area in this process (None: the
    settings decide again)."""
    global _staging
    with _lock:
        _staging = staging
