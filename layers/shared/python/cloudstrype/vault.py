"""Keys at rest: one key per user, protected by KMS (or the local master key), that wraps
everything secret of that user.

The user key is a random 256-bit key; only its protected form is stored (`cloudstrype.keys`),
bound to the user by the protector's context. With it we wrap each chunk's data key and seal
storage credentials (AES-256-GCM, with associated data naming what the blob is for, so a sealed
blob cannot be moved to another record). Plain user keys are cached in memory briefly so a
request does not cost one KMS call per chunk.
"""
from __future__ import annotations

import os
import threading
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloudstrype import errors
from cloudstrype.keys.protector import KeyProtectorError, get_protector
from cloudstrype.keys.store import UserKeyStore

_VERSION = b"\x01"
_CACHE_SECONDS = 300


class VaultError(Exception):
    """A sealed blob does not open: tampered with, or sealed for something else."""


_cache: dict[str, tuple[bytes, float]] = {}
_lock = threading.Lock()


def _context(owner: str) -> dict:
    return {"cloudstrype:user": owner}


def user_key(owner: str) -> bytes:
    now = time.monotonic()
    with _lock:
        cached = _cache.get(owner)
        if cached and cached[1] > now:
            return cached[0]
    key = _load_or_create(owner)
    with _lock:
        _cache[owner] = (key, now + _CACHE_SECONDS)
    return key


def forget_cached_keys() -> None:
    """For tests and the upgrade: drop plain keys held in memory."""
    with _lock:
        _cache.clear()


def _load_or_create(owner: str) -> bytes:
    keys = UserKeyStore()
    try:
        protector = get_protector()
        stored = keys.get(owner)
        if stored is None:
            plain, wrapped = protector.generate_data_key(_context(owner))
            # Two first requests of a new user may race; the first key written wins.
            stored = keys.create(owner, wrapped, protector.name)
            if stored.encrypted_key == wrapped:
                return plain
        if stored.protector != protector.name:
            raise KeyProtectorError(f"the key of user {owner} is protected by "
                                    f"{stored.protector!r}, but this server uses "
                                    f"{protector.name!r}")
        return protector.unwrap(stored.encrypted_key, _context(owner))
    except KeyProtectorError as exc:
        # The operator's problem, not the caller's: say so instead of a bare 500.
        raise errors.ServiceUnavailable(f"The user's key cannot be opened: {exc}",
                                        code="keys_unavailable") from None


def seal(owner: str, plaintext: bytes, purpose: str) -> bytes:
    """Encrypt `plaintext` under the user's key; `purpose` must be given again to open it."""
    nonce = os.urandom(12)
    return _VERSION + nonce + AESGCM(user_key(owner)).encrypt(nonce, plaintext,
                                                               purpose.encode())


def open_sealed(owner: str, blob: bytes, purpose: str) -> bytes:
    if not blob or blob[:1] != _VERSION:
        raise VaultError("unknown sealed-blob format")
    try:
        return AESGCM(user_key(owner)).decrypt(blob[1:13], blob[13:], purpose.encode())
    except InvalidTag:
        raise VaultError(f"sealed blob does not open for {purpose!r}") from None
