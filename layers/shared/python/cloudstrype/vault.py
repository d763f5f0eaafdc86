"""Keys at rest: one key per user, protected by KMS, that wraps everything secret of that user.

The user key is a 256-bit data key from KMS `GenerateDataKey`; only its KMS-encrypted form is
stored (table `user-keys`), bound to the user by the encryption context. With it we wrap each
chunk's data key and seal storage credentials (AES-256-GCM, with associated data naming what
the blob is for, so a sealed blob cannot be moved to another record). Plain user keys are cached
in memory briefly so a request does not cost one KMS call per chunk.
"""
from __future__ import annotations

import os
import threading
import time

import boto3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pynamodb.attributes import BinaryAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import PutError
from pynamodb.models import Model

from cloudstrype import db
from cloudstrype.settings import get_settings

_VERSION = b"\x01"
_CACHE_SECONDS = 300


class VaultError(Exception):
    """A sealed blob does not open: tampered with, or sealed for something else."""


@db.register
class UserKey(Model):
    class Meta(db.BaseMeta):
        table_name = db.table_name("user-keys")

    owner = UnicodeAttribute(hash_key=True)
    encrypted_key = BinaryAttribute(legacy_encoding=False)
    created = UTCDateTimeAttribute()


_cache: dict[str, tuple[bytes, float]] = {}
_lock = threading.Lock()


def _kms():
    return boto3.client("kms", region_name=get_settings().region)


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


def _load_or_create(owner: str) -> bytes:
    kms = _kms()
    try:
        record = UserKey.get(owner)
    except UserKey.DoesNotExist:
        generated = kms.generate_data_key(KeyId=get_settings().kms_key_id, KeySpec="AES_256",
                                          EncryptionContext=_context(owner))
        from datetime import datetime, timezone
        record = UserKey(owner, encrypted_key=generated["CiphertextBlob"],
                         created=datetime.now(timezone.utc))
        try:
            # Two first requests of a new user may race; the first key written wins.
            record.save(condition=UserKey.owner.does_not_exist())
            return generated["Plaintext"]
        except PutError:
            record = UserKey.get(owner, consistent_read=True)
    return kms.decrypt(CiphertextBlob=record.encrypted_key,
                       EncryptionContext=_context(owner))["Plaintext"]


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
