"""A member as a storage backend of the chunk pipeline.

Share bytes never travel over the WebSocket (128 KB messages, text only). For a put the server
stages the share in the staging bucket and sends the member a presigned GET URL; for a get it sends
a presigned PUT URL and reads the staged object when the member says it uploaded. The WebSocket
carries small JSON requests; the member's answers arrive as separate `$default` invocations, which
write them to the `member-requests` table, and the sender polls that item (briefly: everything
here must finish well inside API Gateway's 29 seconds).

A put is acknowledged only when the member reports the share durable (written, fsynced, renamed)
with the expected SHA-256 and size. A member that is offline fails at once, so the pipeline moves
on to another storage without waiting.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid

import boto3
from botocore.config import Config
from pynamodb.exceptions import UpdateError

from cloudstrype.array import connections, members
from cloudstrype.array.models import MemberRecord, MemberRequest
from cloudstrype.backends.base import (Backend, BackendError, BackendFull, ShareNotFound, Usage)
from cloudstrype.backends.storages import StorageRecord
from cloudstrype.settings import get_settings

log = logging.getLogger("cloudstrype.array")

# How long a request may take. Transfers move at most a 4 MiB share each way between the member
# and S3; the rest are a stat or a hash. All stay well under API Gateway's 29 s.
TRANSFER_TIMEOUT_SECONDS = 15.0
SMALL_TIMEOUT_SECONDS = 8.0
# Presigned URLs live a little longer than the request that hands them out.
URL_EXPIRY_SECONDS = 120
REQUEST_TTL_SECONDS = 3600
# While waiting, re-check this often that the member is still on the same connection.
MEMBER_CHECK_SECONDS = 0.5
POLL_FIRST_SECONDS, POLL_MAX_SECONDS = 0.01, 0.1
STAGING_PREFIX = "members"

_s3_client = None
_s3_lock = threading.Lock()


def _s3():
    global _s3_client
    with _s3_lock:
        if _s3_client is None:
            _s3_client = boto3.client("s3", region_name=get_settings().region,
                                      config=Config(signature_version="s3v4",
                                                    retries={"max_attempts": 3}))
        return _s3_client


def _bucket() -> str:
    bucket = get_settings().staging_bucket
    if not bucket:
        raise BackendError("CLOUDSTRYPE_STAGING_BUCKET is not set; members cannot be reached.")
    return bucket


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MemberOffline(BackendError):
    """The member is not connected now."""


class MemberBackend(Backend):
    kind = "member"

    def __init__(self, owner: str, member_id: str, name: str | None = None):
        self.owner = owner
        self.member_id = member_id
        self.name = name or member_id

    @classmethod
    def for_record(cls, record: StorageRecord) -> "MemberBackend":
        member_id = (record.settings or {}).get("member_id") or \
            record.storage_id.removeprefix(members.STORAGE_PREFIX)
        return cls(record.owner, member_id, record.name)

    # -- the Backend interface ---------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        member = self._online()
        digest = _sha256(data)
        staged = self._staging_key()
        try:
            _s3().put_object(Bucket=_bucket(), Key=staged, Body=data)
        except Exception as exc:
            raise BackendError(f"could not stage the share for member {self.name}: {exc}") \
                from None
        try:
            url = _s3().generate_presigned_url(
                "get_object", Params={"Bucket": _bucket(), "Key": staged},
                ExpiresIn=URL_EXPIRY_SECONDS)
            result = self._request(member, "put", key, TRANSFER_TIMEOUT_SECONDS,
                                   size=len(data), sha256=digest, url=url)
            self._raise_for(result, "put", key)
            if result.get("sha256") != digest or result.get("size") != len(data):
                raise BackendError(f"member {self.name} reported a different hash or size for "
                                   f"{key} than was sent")
        finally:
            self._unstage(staged)

    def get(self, key: str) -> bytes:
        member = self._online()
        staged = self._staging_key()
        url = _s3().generate_presigned_url(
            "put_object", Params={"Bucket": _bucket(), "Key": staged},
            ExpiresIn=URL_EXPIRY_SECONDS)
        try:
            result = self._request(member, "get", key, TRANSFER_TIMEOUT_SECONDS, url=url)
            self._raise_for(result, "get", key)
            try:
                data = _s3().get_object(Bucket=_bucket(), Key=staged)["Body"].read()
            except Exception as exc:
                raise BackendError(f"member {self.name} said it uploaded {key}, but the staged "
                                   f"copy cannot be read: {exc}") from None
        finally:
            self._unstage(staged)
        # What the member meant to send arrived whole. (Whether it is the right share is the
        # pipeline's check, against the hash it recorded at write time.)
        if len(data) != result.get("size") or _sha256(data) != result.get("sha256"):
            raise BackendError(f"the copy of {key} staged by member {self.name} is not what it "
                               f"reported sending")
        return data

    def delete(self, key: str) -> None:
        result = self._request(self._online(), "delete", key, SMALL_TIMEOUT_SECONDS)
        if not result["ok"] and _code(result) != "not_found":
            self._raise_for(result, "delete", key)

    def exists(self, key: str) -> bool:
        result = self._request(self._online(), "stat", key, SMALL_TIMEOUT_SECONDS)
        if not result["ok"]:
            if _code(result) == "not_found":
                return False
            self._raise_for(result, "stat", key)
        return bool(result.get("exists", True))

    def verify(self, key: str, sha256: str) -> bool:
        """Whether the member's copy of `key` has this SHA-256; it hashes it, nothing moves.
        ShareNotFound when it has no such share."""
        result = self._request(self._online(), "verify", key, TRANSFER_TIMEOUT_SECONDS,
                               sha256=sha256)
        self._raise_for(result, "verify", key)
        return bool(result.get("match"))

    def usage(self) -> Usage:
        try:
            record = StorageRecord.get(self.owner, members.storage_id_for(self.member_id))
        except StorageRecord.DoesNotExist:
            raise BackendError(f"member {self.name} is not registered") from None
        capacity = None if record.capacity is None else int(record.capacity)
        return Usage(used=int(record.provider_used or 0), capacity=capacity)

    # -- requests ---------------------------------------------------------------------------
    def _online(self) -> MemberRecord:
        try:
            member = MemberRecord.get(self.owner, self.member_id, consistent_read=True)
        except MemberRecord.DoesNotExist:
            raise MemberOffline(f"member {self.name} is not registered") from None
        if not members.is_online(member):
            raise MemberOffline(f"member {self.name} is offline")
        return member

    def _staging_key(self) -> str:
        return f"{STAGING_PREFIX}/{self.owner}/{self.member_id}/{uuid.uuid4().hex}"

    @staticmethod
    def _unstage(staged: str) -> None:
        try:
            _s3().delete_object(Bucket=_bucket(), Key=staged)
        except Exception:   # the staging bucket expires objects anyway
            log.warning("could not delete staged object %s", staged)

    def _request(self, member: MemberRecord, op: str, key: str, timeout: float,
                 **fields) -> dict:
        request_id = uuid.uuid4().hex
        now = time.time()
        MemberRequest(request_id, owner=self.owner, member_id=self.member_id, op=op, key=key,
                      status="pending", created=now,
                      expires_at=int(now + REQUEST_TTL_SECONDS)).save()
        message = {"type": op, "request_id": request_id, "key": key, **fields}
        if not connections.send(member.connection_id, message):
            # The registry said online, API Gateway says the connection is gone.
            members.mark_offline(self.owner, self.member_id, member.connection_id)
            _abandon(request_id)
            raise MemberOffline(f"member {self.name} is offline (its connection is gone)")
        return self._wait(request_id, member, op, key, timeout)

    def _wait(self, request_id: str, member: MemberRecord, op: str, key: str,
              timeout: float) -> dict:
        start = time.monotonic()
        deadline = start + timeout
        next_check = start + MEMBER_CHECK_SECONDS
        delay = POLL_FIRST_SECONDS
        while True:
            item = MemberRequest.get(request_id, consistent_read=True)
            if item.status == "done":
                return item.result or {"ok": False}
            now = time.monotonic()
            problem = None
            if now >= deadline:
                problem = f"member {self.name} did not answer {op} {key} within {timeout:.0f} s"
            elif now >= next_check:
                next_check = now + MEMBER_CHECK_SECONDS
                try:
                    current = MemberRecord.get(self.owner, self.member_id, consistent_read=True)
                    moved = current.connection_id != member.connection_id
                except MemberRecord.DoesNotExist:
                    moved = True
                if moved:
                    problem = f"member {self.name} went offline during {op} {key}"
            if problem:
                late = _abandon(request_id)
                if late is not None:        # the answer arrived just now after all
                    return late
                raise BackendError(problem)
            time.sleep(delay)
            delay = min(delay * 1.6, POLL_MAX_SECONDS)

    def _raise_for(self, result: dict, op: str, key: str) -> None:
        if result.get("ok"):
            return
        code = _code(result)
        message = (result.get("error") or {}).get("message") or code
        text = f"member {self.name} could not {op} {key}: {message}"
        if code == "not_found":
            raise ShareNotFound(text)
        if code == "full":
            raise BackendFull(text)
        raise BackendError(text)


def _code(result: dict) -> str:
    return str((result.get("error") or {}).get("code") or "error")


def _abandon(request_id: str) -> dict | None:
    """Give up on a request. A put answered after this is deleted from the member (see
    members.record_result). Returns the result instead if it arrived in the meantime."""
    try:
        MemberRequest(request_id).update(actions=[MemberRequest.status.set("abandoned")],
                                         condition=MemberRequest.status == "pending")
        return None
    except UpdateError:
        try:
            item = MemberRequest.get(request_id, consistent_read=True)
        except MemberRequest.DoesNotExist:
            return None
        return item.result if item.status == "done" else None


def send_untracked(owner: str, member_id: str, connection_id: str, op: str, key: str) -> None:
    """Send a request nobody waits for (tidying up); its result is recorded and expires."""
    request_id = uuid.uuid4().hex
    now = time.time()
    MemberRequest(request_id, owner=owner, member_id=member_id, op=op, key=key,
                  status="pending", created=now, expires_at=int(now + REQUEST_TTL_SECONDS)).save()
    connections.send(connection_id, {"type": op, "request_id": request_id, "key": key})
