"""A member as a storage backend of the chunk pipeline.

Share bytes never travel over the WebSocket (128 KB messages, text only). For a put the server
stages the share (cloudstrype.staging: S3 in AWS, a directory under `serve`) and sends the member
a signed GET URL; for a get it sends a signed PUT URL and reads the staged object when the member
says it uploaded. The WebSocket carries small JSON requests; the member's answers arrive as
separate `$default` invocations, which write them to the request's item (array.store), and the
sender polls that item (briefly: everything here must finish well inside API Gateway's 29 s).

A put is acknowledged only when the member reports the share durable (written, fsynced, renamed)
with the expected SHA-256 and size. A member that is offline fails at once, so the pipeline moves
on to another storage without waiting.

Importing this module registers the `member` kind in cloudstrype.backends.registry.
"""
from __future__ import annotations

import hashlib
import logging
import time
import uuid

from cloudstrype import staging
from cloudstrype.array import connections, members
from cloudstrype.array.store import DONE, Member, MemberRequest, MemberStore
from cloudstrype.backends import registry
from cloudstrype.backends.base import (
    Backend,
    BackendError,
    BackendFull,
    ShareNotFound,
    Usage,
    check_range,
)
from cloudstrype.storages.store import MEMBER_KIND, MEMBER_PREFIX, StorageStore, member_storage_id

log = logging.getLogger("cloudstrype.array")

# How long a request may take. Transfers move at most a 4 MiB share each way between the member
# and staging; the rest are a stat or a hash. All stay well under API Gateway's 29 s.
TRANSFER_TIMEOUT_SECONDS = 15.0
SMALL_TIMEOUT_SECONDS = 8.0
# Staging URLs live a little longer than the request that hands them out.
URL_EXPIRY_SECONDS = 120
# While waiting, re-check this often that the member is still on the same connection.
MEMBER_CHECK_SECONDS = 0.5
POLL_FIRST_SECONDS, POLL_MAX_SECONDS = 0.01, 0.1
STAGING_PREFIX = "members"
# The largest share there is: a whole 4 MiB chunk (raid1) plus its GCM tag, with room to spare.
# A member's upload is never read past this, whatever it says it sent.
MAX_SHARE_BYTES = 4 * 1024 * 1024 + 4096


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MemberOffline(BackendError):
    """The member is not connected now."""


class MemberBackend(Backend):
    kind = MEMBER_KIND

    def __init__(self, owner: str, member_id: str, name: str | None = None):
        self.owner = owner
        self.member_id = member_id
        self.name = name or member_id
        self.store = MemberStore()

    # -- the Backend interface ---------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        member = self._online()
        digest = _sha256(data)
        staged = self._staging_key()
        area = _staging()
        try:
            area.put(staged, data)
        except staging.StagingError as exc:
            raise BackendError(f"could not stage the share for member {self.name}: {exc}") \
                from None
        try:
            url = _signed(area.url_for_get, staged, URL_EXPIRY_SECONDS)
            result = self._request(member, "put", key, TRANSFER_TIMEOUT_SECONDS,
                                   size=len(data), sha256=digest, url=url)
            self._raise_for(result, "put", key)
            if result.get("sha256") != digest or result.get("size") != len(data):
                raise BackendError(f"member {self.name} reported a different hash or size for "
                                   f"{key} than was sent")
        finally:
            self._unstage(area, staged)

    def get(self, key: str) -> bytes:
        return self._fetch(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Only those bytes travel: the member reads and uploads the range alone (a packed
        file's read, a share's bounded read). A member program from before ranged gets sends
        the whole share, which is cut here."""
        check_range(start, length)
        return self._fetch(key, start, length)

    def _fetch(self, key: str, start: int | None = None, length: int | None = None) -> bytes:
        member = self._online()
        staged = self._staging_key()
        area = _staging()
        url = _signed(area.url_for_put, staged, URL_EXPIRY_SECONDS, MAX_SHARE_BYTES)
        ranged = {} if start is None else {"start": start, "length": length}
        try:
            result = self._request(member, "get", key, TRANSFER_TIMEOUT_SECONDS, url=url,
                                   **ranged)
            self._raise_for(result, "get", key)
            size = result.get("size")
            if not isinstance(size, int) or not 0 <= size <= MAX_SHARE_BYTES:
                raise BackendError(f"member {self.name} reported an impossible size for {key}")
            try:
                # Never more than the member said it sent: an upload larger than that is refused
                # unread, so a member cannot make the server hold more than one share.
                data = area.get(staged, size)
            except staging.StagedObjectTooLarge:
                raise BackendError(f"member {self.name} uploaded more for {key} than the "
                                   f"{size} bytes it reported") from None
            except staging.StagingError as exc:
                raise BackendError(f"member {self.name} said it uploaded {key}, but the staged "
                                   f"copy cannot be read: {exc}") from None
        finally:
            self._unstage(area, staged)
        # What the member meant to send arrived whole. (Whether it is the right share is the
        # pipeline's check, against the hash it recorded at write time.)
        if len(data) != size or _sha256(data) != result.get("sha256"):
            raise BackendError(f"the copy of {key} staged by member {self.name} is not what it "
                               f"reported sending")
        if start is None:
            return data
        if result.get("start") == start:        # the range alone
            if len(data) > length:
                raise BackendError(f"member {self.name} sent {len(data)} bytes of {key} for a "
                                   f"range of {length}")
            return data
        return data[start:start + length]       # the whole share, from an older member

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

    def verify(self, key: str, sha256: str, timeout: float = TRANSFER_TIMEOUT_SECONDS) -> bool:
        """Whether the member's copy of `key` has this SHA-256; it hashes it, nothing moves.
        ShareNotFound when it has no such share."""
        result = self._request(self._online(), "verify", key, timeout, sha256=sha256)
        self._raise_for(result, "verify", key)
        return bool(result.get("match"))

    def usage(self) -> Usage:
        storage = StorageStore().get(self.owner, member_storage_id(self.member_id))
        if storage is None:
            raise BackendError(f"member {self.name} is not registered")
        capacity = None if storage.capacity is None else int(storage.capacity)
        return Usage(used=int(storage.provider_used or 0), capacity=capacity)

    # -- requests ---------------------------------------------------------------------------
    def _online(self) -> Member:
        member = self.store.get_member(self.owner, self.member_id)
        if member is None:
            raise MemberOffline(f"member {self.name} is not registered")
        if not members.is_online(member):
            raise MemberOffline(f"member {self.name} is offline")
        return member

    def _staging_key(self) -> str:
        return f"{STAGING_PREFIX}/{self.owner}/{self.member_id}/{uuid.uuid4().hex}"

    @staticmethod
    def _unstage(area: staging.Staging, staged: str) -> None:
        try:
            area.delete(staged)
        except staging.StagingError:   # staged objects expire anyway
            log.warning("could not delete staged object %s", staged)

    def _request(self, member: Member, op: str, key: str, timeout: float, **fields) -> dict:
        request = self.store.create_request(self.owner, self.member_id, op, key)
        message = {"type": op, "request_id": request.request_id, "key": key, **fields}
        if not connections.send(member.connection_id, message):
            # The registry said online, API Gateway says the connection is gone.
            members.mark_offline(self.owner, self.member_id, member.connection_id)
            self.store.abandon_request(self.owner, request.request_id)
            raise MemberOffline(f"member {self.name} is offline (its connection is gone)")
        return self._wait(request, member, op, key, timeout)

    def _wait(self, request: MemberRequest, member: Member, op: str, key: str,
              timeout: float) -> dict:
        start = time.monotonic()
        deadline = start + timeout
        next_check = start + MEMBER_CHECK_SECONDS
        delay = POLL_FIRST_SECONDS
        while True:
            current = self.store.get_request(self.owner, request.request_id)
            if current is not None and current.status == DONE:
                return current.result or {"ok": False}
            now = time.monotonic()
            problem = None
            if current is None:
                problem = f"the request for {op} {key} on member {self.name} was lost"
            elif now >= deadline:
                problem = f"member {self.name} did not answer {op} {key} within {timeout:.0f} s"
            elif now >= next_check:
                next_check = now + MEMBER_CHECK_SECONDS
                latest = self.store.get_member(self.owner, self.member_id)
                if latest is None or latest.connection_id != member.connection_id:
                    problem = f"member {self.name} went offline during {op} {key}"
            if problem:
                # A put answered after this is deleted from the member (members.record_result).
                late = self.store.abandon_request(self.owner, request.request_id)
                if late is not None and late.status == DONE:    # the answer arrived just now
                    return late.result or {"ok": False}
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


def _staging() -> staging.Staging:
    try:
        return staging.get_staging()
    except staging.StagingError as exc:
        raise BackendError(str(exc)) from None


def _signed(make_url, *args) -> str:
    try:
        return make_url(*args)
    except staging.StagingError as exc:
        raise BackendError(f"could not sign a staging URL: {exc}") from None


def _open_member(cleaned: dict, target: registry.Target, on_token_refreshed,
                 retry) -> MemberBackend:
    member_id = cleaned.get("member_id") or \
        target.storage_id.removeprefix(MEMBER_PREFIX)
    return MemberBackend(target.owner, member_id, target.name or None)


# A member joins by connecting, never through the storages API; its storage's settings name it.
registry.register(
    registry.StorageKind(MEMBER_KIND, "Array member", "member",
                         (registry.ConfigField("member_id", "Member id", required=False),)),
    _open_member)
