"""Staging in an S3 bucket (AWS): presigned URLs; the bucket's lifecycle rule expires leftovers."""
from __future__ import annotations

import threading

from botocore.exceptions import BotoCoreError, ClientError

from cloudstrype.staging.base import (
    StagedObjectMissing,
    StagedObjectTooLarge,
    Staging,
    StagingError,
    check_key,
)

_MISSING = ("NoSuchKey", "404", "NotFound")


class S3Staging(Staging):
    def __init__(self, bucket: str, region: str, client=None):
        self.bucket = bucket
        self.region = region
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                # Imported here, not at the top: boto3 is a large part of a cold start.
                import boto3
                from botocore.config import Config
                self._client = boto3.client("s3", region_name=self.region,
                                            config=Config(signature_version="s3v4",
                                                          retries={"max_attempts": 3}))
            return self._client

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise StagingError(f"could not stage {key}: {exc}") from None

    def get(self, key: str, max_bytes: int) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise StagedObjectMissing(f"nothing is staged under {key}") from None
            raise StagingError(f"could not read staged {key}: {exc}") from None
        except BotoCoreError as exc:
            raise StagingError(f"could not read staged {key}: {exc}") from None
        body = answer["Body"]
        try:
            # A presigned PUT cannot cap its body, so the cap is enforced here, before reading.
            if int(answer.get("ContentLength") or 0) > max_bytes:
                raise StagedObjectTooLarge(f"staged {key} holds {answer['ContentLength']} bytes, "
                                           f"more than the {max_bytes} expected")
            data = body.read(max_bytes + 1)
        except (BotoCoreError, OSError) as exc:
            raise StagingError(f"could not read staged {key}: {exc}") from None
        finally:
            body.close()
        if len(data) > max_bytes:
            raise StagedObjectTooLarge(f"staged {key} is larger than the {max_bytes} expected")
        return data

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=check_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StagingError(f"could not delete staged {key}: {exc}") from None

    def url_for_get(self, key: str, ttl: int) -> str:
        return self._presign("get_object", key, ttl)

    def url_for_put(self, key: str, ttl: int, max_bytes: int) -> str:
        return self._presign("put_object", key, ttl)

    def _presign(self, operation: str, key: str, ttl: int) -> str:
        try:
            return self.client.generate_presigned_url(
                operation, Params={"Bucket": self.bucket, "Key": check_key(key)}, ExpiresIn=ttl)
        except (BotoCoreError, ClientError) as exc:
            raise StagingError(f"could not sign a URL for {key}: {exc}") from None
