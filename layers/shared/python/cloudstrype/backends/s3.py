"""Any S3-compatible bucket (AWS S3, MinIO, Wasabi, Backblaze B2, ...) as a backend."""
from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterator

import boto3
import botocore.exceptions
from botocore.config import Config

from .base import (
    Backend,
    BackendAuthError,
    BackendError,
    BackendFull,
    ShareNotFound,
    Usage,
    check_range,
)
from .keys import check_key
from .outbound import OutboundRefused, guard_boto_client

# Error codes (or bare HTTP statuses, which is all a HEAD response carries) by what they mean.
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}
_AUTH_CODES = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AuthorizationHeaderMalformed", "AllAccessDisabled", "AccountProblem",
    "InvalidClientTokenId", "403",
}
# A missing bucket is no passing failure: a person must fix the storage's settings.
_SETTINGS_CODES = {"NoSuchBucket", "InvalidBucketName", "PermanentRedirect"}
_FULL_CODES = {
    "QuotaExceeded", "StorageFull", "InsufficientStorage", "XMinioStorageFull",
    "XMinioAdminBucketQuotaExceeded", "507",
}

_CODE = re.compile(r"[A-Za-z0-9.]{1,64}")

LIST_PAGE_SIZE = 1000   # objects per ListObjectsV2 request (S3's maximum)

# Options of newer botocore, which an older one (Lambda's runtime provides the SDK) refuses by
# name. Older versions need none of them: they read no endpoint URL from the environment
# (>= 1.31 does) and send no CRC checksums unasked (>= 1.36 does, which many S3-compatible
# stores reject).
NEWER_BOTOCORE_OPTIONS = {
    "ignore_configured_endpoint_urls": True,
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}


def _known_options(options: dict) -> dict:
    return {name: value for name, value in options.items() if name in Config.OPTION_DEFAULTS}


# One boto3 session for all backends: creating one loads the service models again, which costs
# more than the request. Clients are thread-safe; creating them from a session is not.
_SESSION_LOCK = threading.Lock()


@functools.cache
def _shared_session() -> boto3.session.Session:
    return boto3.session.Session()


class S3Backend(Backend):
    """Shares are objects `<prefix><key>` in one bucket.

    The client uses only the credentials given here — never the server's own AWS identity — and
    only the endpoint given here, whatever AWS_* variables the environment holds. The endpoint is
    a user's choice: every connection goes through `outbound` (no private or metadata
    addresses, the checked address pinned), with short timeouts.
    """

    kind = "s3"

    def __init__(
        self,
        endpoint_url: str | None,
        region: str | None,
        bucket: str,
        access_key: str,
        secret_key: str,
        prefix: str = "",
        *,
        capacity_bytes: int | None = None,
        # At worst 2 x (3 + 8) s and a backoff: a share write that gives up leaves the request
        # time to place the share elsewhere within API Gateway's 29 s (3 x (3 + 10) s did not,
        # and the caller got a 504 for an upload that was then stored).
        max_attempts: int = 2,
        connect_timeout: float = 3.0,
        read_timeout: float = 8.0,
    ):
        self.endpoint_url = endpoint_url or None
        self.bucket = bucket
        self.prefix = prefix
        self.capacity_bytes = capacity_bytes
        config = Config(
            region_name=region or "us-east-1",
            signature_version="s3v4",
            # total_max_attempts counts the first try; botocore's max_attempts would not.
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Most S3-compatible services want path-style URLs; AWS picks its own style.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            **_known_options(NEWER_BOTOCORE_OPTIONS),
        )
        with _SESSION_LOCK:
            self._client = _shared_session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                aws_session_token=None,
                config=config,
            )
        guard_boto_client(self._client)
        if self.endpoint_url:
            self._client.meta.events.register("before-call.s3", _no_region_redirects)

    def put(self, key: str, data: bytes) -> None:
        with self._errors(f"write {key}"):
            self._client.put_object(Bucket=self.bucket, Key=self._object_name(key), Body=data)

    def get(self, key: str) -> bytes:
        with self._errors(f"read {key}", missing_means_not_found=True):
            response = self._client.get_object(Bucket=self.bucket, Key=self._object_name(key))
            return response["Body"].read()

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if check_range(start, length):
            return b""
        with self._errors(f"read {key}", missing_means_not_found=True):
            try:
                response = self._client.get_object(
                    Bucket=self.bucket, Key=self._object_name(key),
                    Range=f"bytes={start}-{start + length - 1}")
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    return b""   # start past the end: nothing there, as a slice would say
                raise
            return response["Body"].read()

    def delete(self, key: str) -> None:
        # S3's DeleteObject succeeds for a missing key, which is the contract.
        with self._errors(f"delete {key}"):
            self._client.delete_object(Bucket=self.bucket, Key=self._object_name(key))

    def exists(self, key: str) -> bool:
        try:
            with self._errors(f"look up {key}", missing_means_not_found=True):
                self._client.head_object(Bucket=self.bucket, Key=self._object_name(key))
        except ShareNotFound:
            return False
        return True

    def usage(self) -> Usage:
        """`used` sums the objects under the prefix; `capacity` is the configured one, if any
        (S3 states no limit)."""
        used = 0
        with self._errors("list the bucket"):
            paginator = self._client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=self.prefix,
                                       PaginationConfig={"PageSize": LIST_PAGE_SIZE})
            for page in pages:
                used += sum(item["Size"] for item in page.get("Contents", ()))
        return Usage(used=used, capacity=self.capacity_bytes)

    def _object_name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _errors(self, action: str, *, missing_means_not_found: bool = False):
        where = f"s3 bucket {self.bucket!r}" + (f" at {self.endpoint_url}"
                                                 if self.endpoint_url else "")
        return _s3_errors(where, action, missing_means_not_found)


def _no_region_redirects(context=None, **_) -> None:
    """An S3-compatible endpoint's 301/302/307 is an error to report, not AWS's "the bucket is
    in another region": botocore would ask the endpoint for the bucket's region, get redirected
    again, and ask again until Python's stack ran out (78 requests, then a RecursionError).
    Marked as redirected already, the redirector lets the answer through as an error."""
    if context is not None and isinstance(context.get("s3_redirect"), dict):
        context["s3_redirect"]["redirected"] = True


@contextlib.contextmanager
def _s3_errors(where: str, action: str, missing_means_not_found: bool) -> Iterator[None]:
    """Map botocore's exceptions to the backend errors."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # The code and status only: the remote body (its Message) is the endpoint's to choose.
        if not _CODE.fullmatch(code):
            code = ""
        message = f"{where}: could not {action}: {code or 'HTTP'} ({status})"
        if code in _MISSING_KEY_CODES and missing_means_not_found:
            raise ShareNotFound(message) from exc
        if code in _SETTINGS_CODES:
            raise BackendAuthError(f"{message} (check the storage's bucket and endpoint)") from exc
        # Before the 403 check: Ceph answers a quota overrun with 403 QuotaExceeded.
        if code in _FULL_CODES:
            raise BackendFull(message) from exc
        if code in _AUTH_CODES or status == 403:
            raise BackendAuthError(message) from exc
        raise BackendError(message) from exc
    except RecursionError as exc:       # an endpoint that answers in loops (see above)
        raise BackendError(f"{where}: could not {action}: the endpoint's answers go round in "
                           f"circles (redirects)") from exc
    except botocore.exceptions.BotoCoreError as exc:
        refused = getattr(exc, "kwargs", {}).get("error")
        if isinstance(refused, OutboundRefused):
            raise OutboundRefused(f"{where}: {refused}") from exc
        # Connection refused, timeouts, closed connections: botocore has already retried.
        raise BackendError(f"{where}: could not {action}: {exc}") from exc
