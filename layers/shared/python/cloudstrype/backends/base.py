"""What every storage backend offers the chunk pipeline: put / get / get_range / delete / exists /
usage.

A backend stores opaque, already-encrypted share blobs under keys the pipeline chooses
(`[A-Za-z0-9._-]{1,200}`). Backends raise only the errors below, so the pipeline can tell
"this share is gone" from "this backend is down right now" from "fix the credentials".
"""
from __future__ import annotations

import abc
from dataclasses import dataclass


class BackendError(Exception):
    """The backend failed in a way that may pass (network, 5xx, rate limit after retries)."""


class ShareNotFound(BackendError):
    """The backend answered, and the key is not there."""


class ShareUnreadable(ShareNotFound):
    """The backend answered, and the share is there but cannot be read (a folder storage's
    file whose permissions were taken away): to the pipeline a share lost, rebuilt from the
    others, not its whole storage down."""


class BackendAuthError(BackendError):
    """The credentials are wrong or revoked; a person must reconnect the storage."""


class BackendFull(BackendError):
    """The backend refused the write for lack of space or quota."""


@dataclass(frozen=True)
class Usage:
    used: int                 # bytes in use (by everything on the account, where the API says so)
    capacity: int | None      # total bytes, or None when the backend has no stated limit

    @property
    def free(self) -> int | None:
        return None if self.capacity is None else max(0, self.capacity - self.used)


class Backend(abc.ABC):
    kind: str = ""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes start..start+length-1 of a share (fewer at its end). Backends whose API can
        read a range override this; the default reads the whole share (packs still work, they
        just cost a whole share's transfer there)."""
        check_range(start, length)
        return self.get(key)[start:start + length]

    def get_share(self, key: str, size: int) -> bytes:
        """A share recorded as `size` bytes (0: unknown), reading at most one byte more: a
        share grown huge on the storage (anyone who can write there could do that) fails its
        size check without being held in memory whole. A backend that cannot read a range
        reads it all (get_range's default)."""
        return self.get_range(key, 0, size + 1) if size > 0 else self.get(key)

    def local_file(self, key: str) -> str | None:
        """The file holding the share on this machine's filesystem, for a reader on this
        machine that reads shares itself (the local transfer socket's direct reads); None for
        a storage whose shares are not files here (every one but `local`)."""
        return None

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Idempotent: deleting a missing key is not an error."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def usage(self) -> Usage: ...


def check_range(start: int, length: int) -> bool:
    """Refuse a negative range; True when it is empty (no request to make: an empty HTTP
    Range is not valid)."""
    if start < 0 or length < 0:
        raise ValueError("start and length must be >= 0")
    return length == 0
