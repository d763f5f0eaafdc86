"""Staging in a directory (`cloudstrype serve`), served by the local gateway under /staging/.

A URL carries its method, expiry and (for PUT) the largest body it admits, signed with HMAC-SHA256
under a key generated per install (a 0600 file beside the objects), so it grants exactly what the
server handed out and nothing after it expires. Objects are written to a temporary file and
renamed, so a reader never sees half an upload; leftovers older than a day are swept, as the
bucket's lifecycle rule does in AWS.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote, urlencode

from cloudstrype.staging.base import (
    StagedObjectMissing,
    StagedObjectTooLarge,
    Staging,
    StagingError,
    check_key,
    valid_key,
)

URL_PREFIX = "/staging/"
KEY_FILE = "signing.key"
MAX_AGE_SECONDS = 24 * 3600
SWEEP_EVERY_SECONDS = 3600


class StagingDenied(StagingError):
    """A staging URL that does not grant this request (forged, altered, expired, other method)."""


class LocalStaging(Staging):
    def __init__(self, directory: str | os.PathLike, base_url: str):
        self.root = Path(directory)
        self.objects = self.root / "objects"
        self.tmp = self.root / "tmp"
        for path in (self.root, self.objects, self.tmp):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.base_url = base_url.rstrip("/")
        self._secret = _load_or_create_secret(self.root / KEY_FILE)
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        self.sweep()

    # -- objects ------------------------------------------------------------------------------
    def path_for(self, key: str) -> Path:
        # Valid keys have no empty, '.' or '..' segment, so the path stays under objects/.
        return self.objects.joinpath(*check_key(key).split("/"))

    @contextlib.contextmanager
    def receive(self, key: str) -> Iterator:
        """A file to write an object into; it appears under `key` only if the block completes."""
        target = self.path_for(key)
        partial = self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            with open(partial, "wb") as out:
                yield out
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    def put(self, key: str, data: bytes) -> None:
        self._maybe_sweep()
        try:
            with self.receive(key) as out:
                out.write(data)
        except OSError as exc:
            raise StagingError(f"could not stage {key}: {exc.strerror}") from None

    def get(self, key: str, max_bytes: int) -> bytes:
        try:
            with open(self.path_for(key), "rb") as staged:
                size = os.fstat(staged.fileno()).st_size
                if size > max_bytes:
                    raise StagedObjectTooLarge(f"staged {key} holds {size} bytes, more than the "
                                               f"{max_bytes} expected")
                data = staged.read(max_bytes + 1)
        except FileNotFoundError:
            raise StagedObjectMissing(f"nothing is staged under {key}") from None
        except OSError as exc:
            raise StagingError(f"could not read staged {key}: {exc.strerror}") from None
        if len(data) > max_bytes:            # grew between the stat and the read
            raise StagedObjectTooLarge(f"staged {key} is larger than the {max_bytes} expected")
        return data

    def delete(self, key: str) -> None:
        try:
            self.path_for(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StagingError(f"could not delete staged {key}: {exc.strerror}") from None

    def sweep(self, now: float | None = None) -> int:
        """Delete objects and partial uploads older than a day; returns how many."""
        cutoff = (now or time.time()) - MAX_AGE_SECONDS
        removed = 0
        for folder in (self.objects, self.tmp):
            for dirpath, _dirs, files in os.walk(folder):
                for name in files:
                    path = os.path.join(dirpath, name)
                    with contextlib.suppress(OSError):
                        if os.stat(path).st_mtime < cutoff:
                            os.unlink(path)
                            removed += 1
        return removed

    def _maybe_sweep(self) -> None:
        now = time.time()
        with self._lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + SWEEP_EVERY_SECONDS
        self.sweep(now)

    # -- signed URLs --------------------------------------------------------------------------
    def _signature(self, method: str, key: str, expires: int, max_bytes: int | None) -> str:
        message = f"{method}\n{key}\n{expires}\n{'' if max_bytes is None else max_bytes}"
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()

    def _url(self, method: str, key: str, ttl: int, max_bytes: int | None) -> str:
        check_key(key)
        expires = int(time.time()) + int(ttl)
        query = {"expires": expires}
        if max_bytes is not None:
            query["max"] = int(max_bytes)
        query["signature"] = self._signature(method, key, expires, max_bytes)
        return f"{self.base_url}{URL_PREFIX}{quote(key)}?{urlencode(query)}"

    def url_for_get(self, key: str, ttl: int) -> str:
        return self._url("GET", key, ttl, None)

    def url_for_put(self, key: str, ttl: int, max_bytes: int) -> str:
        return self._url("PUT", key, ttl, max_bytes)

    def authorize(self, method: str, key: str, query: Mapping[str, str],
                  now: float | None = None) -> int | None:
        """Check a request against its URL's signature: StagingDenied unless the URL was handed
        out for this method and key and has not expired. Returns the PUT body limit."""
        method = method.upper()
        if method not in ("GET", "PUT") or not valid_key(key):
            raise StagingDenied("This staging URL does not allow that.")
        try:
            expires = int(query.get("expires", ""))
            max_bytes = int(query["max"]) if method == "PUT" else None
        except (KeyError, ValueError):
            raise StagingDenied("This staging URL is incomplete.") from None
        if method == "GET" and "max" in query:
            raise StagingDenied("This staging URL does not allow that.")
        expected = self._signature(method, key, expires, max_bytes)
        if not hmac.compare_digest(expected, str(query.get("signature", ""))):
            raise StagingDenied("This staging URL's signature does not match.")
        if (now or time.time()) > expires:
            raise StagingDenied("This staging URL has expired.")
        return max_bytes


def _load_or_create_secret(path: Path) -> bytes:
    """The install's signing key, created once (readable by the server alone)."""
    if not path.exists():
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as out:
                out.write(secrets.token_hex(32))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):   # another process made it first
                os.link(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except ValueError:
        secret = b""
    if len(secret) < 32:
        raise StagingError(f"The staging signing key {path} is damaged; delete it and restart "
                           f"(staging URLs handed out before become invalid).")
    return secret
