"""What protects users' keys: KMS in AWS, a master key file on one machine.

    plain, wrapped = protector.generate_data_key({"cloudstrype:user": owner})
    plain = protector.unwrap(wrapped, {"cloudstrype:user": owner})

The context is bound to the wrapped key (KMS encryption context, AES-GCM associated data): a
wrapped key copied to another user's row does not unwrap.
"""
from __future__ import annotations

import json
import os
import stat
import threading
from abc import ABC, abstractmethod
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32


class KeyProtectorError(Exception):
    """A key cannot be protected or unwrapped (wrong master key or context, unreachable KMS)."""


class KeyProtector(ABC):
    name: str = ""

    @abstractmethod
    def generate_data_key(self, context: dict[str, str]) -> tuple[bytes, bytes]:
        """A new random 256-bit key: (plain, wrapped)."""

    @abstractmethod
    def wrap(self, plain: bytes, context: dict[str, str]) -> bytes:
        """Protect an existing key (moving keys between protectors, e.g. on upgrade)."""

    @abstractmethod
    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes: ...


class KmsProtector(KeyProtector):
    name = "kms"

    def __init__(self, key_id: str, region: str, client=None):
        if not key_id:
            raise KeyProtectorError("CLOUDSTRYPE_KMS_KEY_ID is not set; user keys cannot be "
                                    "protected by KMS.")
        self.key_id = key_id
        if client is None:
            import boto3
            client = boto3.client("kms", region_name=region)
        self._kms = client

    def generate_data_key(self, context):
        try:
            made = self._kms.generate_data_key(KeyId=self.key_id, KeySpec="AES_256",
                                               EncryptionContext=context)
        except Exception as exc:
            raise KeyProtectorError(f"KMS could not generate a key: {exc}") from exc
        return made["Plaintext"], made["CiphertextBlob"]

    def wrap(self, plain, context):
        try:
            return self._kms.encrypt(KeyId=self.key_id, Plaintext=plain,
                                     EncryptionContext=context)["CiphertextBlob"]
        except Exception as exc:
            raise KeyProtectorError(f"KMS could not wrap a key: {exc}") from exc

    def unwrap(self, wrapped, context):
        try:
            return self._kms.decrypt(CiphertextBlob=wrapped, EncryptionContext=context)["Plaintext"]
        except Exception as exc:
            raise KeyProtectorError(f"KMS could not unwrap a key: {exc}") from exc


_LOCAL_VERSION = b"\x01"


def _associated_data(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


class LocalProtector(KeyProtector):
    """AES-256-GCM under a master key kept in a file only the server's user may read. The file
    is made on first use; losing it loses every user's data, so it belongs in every backup of
    the data directory."""

    name = "local"
    _create_lock = threading.Lock()

    def __init__(self, path: str | os.PathLike):
        if not str(path):
            raise KeyProtectorError("CLOUDSTRYPE_MASTER_KEY_PATH is not set; user keys cannot "
                                    "be protected locally.")
        self.path = Path(path)
        self._key: bytes | None = None

    def _master(self) -> AESGCM:
        if self._key is None:
            with self._create_lock:
                if not self.path.exists():
                    self._create()
                self._key = self._read()
        return AESGCM(self._key)

    def _create(self) -> None:
        # Written whole to a private temporary file, then linked into place: a crash never
        # leaves a short key file, and of two processes racing, the first link wins.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, self.path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _read(self) -> bytes:
        info = self.path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyProtectorError(f"The master key file {self.path} may be read by other "
                                    f"users; make it private (chmod 600 {self.path}).")
        key = self.path.read_bytes()
        if len(key) != KEY_BYTES:
            raise KeyProtectorError(f"The master key file {self.path} is damaged (it holds "
                                    f"{len(key)} bytes, not {KEY_BYTES}); restore it from a "
                                    f"backup.")
        return key

    def generate_data_key(self, context):
        plain = os.urandom(KEY_BYTES)
        return plain, self.wrap(plain, context)

    def wrap(self, plain, context):
        nonce = os.urandom(12)
        return _LOCAL_VERSION + nonce + self._master().encrypt(nonce, plain,
                                                               _associated_data(context))

    def unwrap(self, wrapped, context):
        if not wrapped or wrapped[:1] != _LOCAL_VERSION or len(wrapped) < 13 + 16:
            raise KeyProtectorError("This wrapped key was not made by the local master key.")
        try:
            return self._master().decrypt(wrapped[1:13], wrapped[13:], _associated_data(context))
        except InvalidTag:
            raise KeyProtectorError("The wrapped key does not open with this master key and "
                                    "context.") from None


_protectors: dict[tuple, KeyProtector] = {}
_protectors_lock = threading.Lock()


def get_protector() -> KeyProtector:
    """The protector the settings choose (one per configuration and process)."""
    from cloudstrype.settings import get_settings
    settings = get_settings()
    choice = (settings.key_protector, settings.kms_key_id, settings.master_key_path,
              settings.region)
    with _protectors_lock:
        protector = _protectors.get(choice)
        if protector is None:
            if settings.key_protector == "kms":
                protector = KmsProtector(settings.kms_key_id, settings.region)
            elif settings.key_protector == "local":
                protector = LocalProtector(settings.master_key_path)
            else:
                raise KeyProtectorError(f"Unknown key protector {settings.key_protector!r}: set "
                                        f"CLOUDSTRYPE_KEY_PROTECTOR to kms or local.")
            _protectors[choice] = protector
        return protector
