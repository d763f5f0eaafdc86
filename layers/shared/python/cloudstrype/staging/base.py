"""The staging interface. Keys are `/`-separated segments of `[A-Za-z0-9_-]` and dots (never a
leading dot), chosen by the server; URLs expire; reads are always bounded."""
from __future__ import annotations

import re
from abc import ABC, abstractmethod

_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
MAX_KEY_LENGTH = 512


class StagingError(Exception):
    """Staging failed (unreachable, misconfigured, a write that did not happen)."""


class StagedObjectMissing(StagingError):
    """Nothing is staged under the key (never uploaded, deleted, or expired)."""


class StagedObjectTooLarge(StagingError):
    """The staged object is larger than the reader allows; it was not read."""


def valid_key(key) -> bool:
    return isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH and \
        all(_SEGMENT.fullmatch(segment) for segment in key.split("/"))


def check_key(key) -> str:
    if not valid_key(key):
        raise StagingError(f"not a valid staging key: {key!r}")
    return key


class Staging(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Stage `data` under `key` (replacing any)."""

    @abstractmethod
    def get(self, key: str, max_bytes: int) -> bytes:
        """The staged bytes; StagedObjectTooLarge when there are more than `max_bytes` (never
        read into memory), StagedObjectMissing when there are none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Idempotent; staged objects also expire on their own."""

    @abstractmethod
    def url_for_get(self, key: str, ttl: int) -> str:
        """A URL anyone holding it may GET the object from, for `ttl` seconds."""

    @abstractmethod
    def url_for_put(self, key: str, ttl: int, max_bytes: int) -> str:
        """A URL anyone holding it may PUT the object to, for `ttl` seconds. Where the store can
        refuse a body over `max_bytes` at upload it does; `get` bounds every read regardless."""
