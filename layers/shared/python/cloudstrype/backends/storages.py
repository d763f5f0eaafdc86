"""A user's storages: what they are, their sealed credentials, their health and their space.

Non-secret settings (a bucket name, a directory) are stored as they are and shown to the owner;
secrets (keys, OAuth tokens) are sealed with the owner's key (`cloudstrype.vault`) and never leave
this module except into a backend client.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from pynamodb.attributes import (BinaryAttribute, JSONAttribute, NumberAttribute,
                                 UnicodeAttribute, UTCDateTimeAttribute)
from pynamodb.models import Model

from cloudstrype import db, errors, vault
from cloudstrype.backends import registry
from cloudstrype.backends.base import Backend, BackendError
from cloudstrype.settings import get_settings

log = logging.getLogger("cloudstrype.storages")

ACTIVE, DRAINING, NEEDS_RECONNECT = "active", "draining", "needs_reconnect"
# A storage that just failed is skipped by placement for this long.
DOWN_SECONDS = 60
# Provider-reported usage is refreshed at most this often.
USAGE_MAX_AGE_SECONDS = 600
NAME_MAX = 100


@db.register
class StorageRecord(Model):
    class Meta(db.BaseMeta):
        table_name = db.table_name("storages")

    owner = UnicodeAttribute(hash_key=True)
    storage_id = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()
    name = UnicodeAttribute()
    status = UnicodeAttribute(default=ACTIVE)
    settings = JSONAttribute(default=dict)
    sealed_secrets = BinaryAttribute(null=True, legacy_encoding=False)
    capacity = NumberAttribute(null=True)
    provider_used = NumberAttribute(default=0)
    usage_checked = NumberAttribute(default=0)
    share_count = NumberAttribute(default=0)
    stored_bytes = NumberAttribute(default=0)
    down_until = NumberAttribute(default=0)
    last_error = UnicodeAttribute(null=True)
    created = UTCDateTimeAttribute()

    @property
    def free(self) -> int | None:
        if self.capacity is None:
            return None
        return max(0, int(self.capacity) - int(self.provider_used))

    def usable(self, now: float | None = None) -> bool:
        return self.status == ACTIVE and (now or time.time()) >= (self.down_until or 0)

    def public(self) -> dict:
        now = time.time()
        online = self.status == ACTIVE and now >= (self.down_until or 0)
        return {
            "id": self.storage_id, "kind": self.kind, "name": self.name, "status": self.status,
            "online": online, "settings": self.settings or {},
            "capacity": None if self.capacity is None else int(self.capacity),
            "used": int(self.provider_used or 0), "free": self.free,
            "shares": int(self.share_count or 0), "stored_bytes": int(self.stored_bytes or 0),
            "last_error": self.last_error,
            "created": self.created.isoformat() if self.created else None,
        }


def _purpose(record: StorageRecord) -> str:
    return f"storage:{record.storage_id}:secrets"


def is_oauth(kind: str) -> bool:
    return registry.KINDS[kind].auth == "oauth"


def _split_config(kind: str, config: dict) -> tuple[dict, dict]:
    secret_names = {f.name for f in registry.KINDS[kind].fields if f.secret}
    public = {k: v for k, v in config.items() if k not in secret_names}
    secret = {k: v for k, v in config.items() if k in secret_names}
    return public, secret


def _full_config(record: StorageRecord) -> dict:
    """What the backend is opened with: its kind's declared fields, secrets unsealed. (Labels
    kept for display, like an OAuth account's name, are not backend settings.)"""
    config = dict(record.settings or {})
    if record.sealed_secrets:
        config.update(json.loads(vault.open_sealed(record.owner, record.sealed_secrets,
                                                   _purpose(record))))
    fields = {f.name for f in registry.KINDS[record.kind].fields}
    return {name: value for name, value in config.items() if name in fields}


def _seal(record: StorageRecord, secrets: dict) -> None:
    record.sealed_secrets = vault.seal(record.owner, json.dumps(secrets).encode(),
                                       _purpose(record)) if secrets else None


def _clean_name(name: str | None, fallback: str) -> str:
    name = (name or fallback).strip()
    if not name or len(name) > NAME_MAX or any(ord(c) < 32 for c in name):
        raise errors.BadRequest(f"Storage name must be 1-{NAME_MAX} printable characters.",
                                code="invalid_name", details={"field": "name"})
    return name


def add_storage(owner: str, kind: str, name: str | None, config: dict) -> StorageRecord:
    """Validate, probe with a real write/read/delete, then save. Nothing is saved on failure."""
    if kind not in registry.KINDS:
        raise errors.BadRequest(f"Unknown storage kind '{kind}'; choose one of "
                                f"{', '.join(sorted(registry.KINDS))}.", code="invalid_kind",
                                details={"field": "kind"})
    if is_oauth(kind):
        raise errors.BadRequest(f"'{kind}' storages are connected through OAuth: open "
                                f"GET /api/cloud/oauth/{kind}/authorize.", code="use_oauth")
    if kind == "local":
        config = _local_config(config)
    try:
        cleaned = registry.validate_config(kind, config)
    except ValueError as exc:
        raise errors.BadRequest(str(exc), code="invalid_config") from None
    record = StorageRecord(owner, f"st-{uuid.uuid4().hex[:12]}", kind=kind,
                           name=_clean_name(name, kind), status=ACTIVE,
                           created=datetime.now(timezone.utc))
    public, secrets = _split_config(kind, cleaned)
    record.settings = public
    _seal(record, secrets)
    backend = registry.open_backend(kind, cleaned)
    try:
        registry.probe(backend)
        usage = backend.usage()
    except BackendError as exc:
        raise errors.BadRequest(f"The storage did not pass a write/read/delete check: {exc}",
                                code="probe_failed") from None
    record.capacity = usage.capacity
    record.provider_used = usage.used
    record.usage_checked = time.time()
    if kind == "local":
        _claim_directory(Path(cleaned["path"]), record)
    record.save(condition=StorageRecord.storage_id.does_not_exist())
    return record


def save_oauth_storage(owner: str, kind: str, name: str, token: dict,
                       account: dict) -> StorageRecord:
    record = StorageRecord(owner, f"st-{uuid.uuid4().hex[:12]}", kind=kind,
                           name=_clean_name(name, kind), status=ACTIVE,
                           created=datetime.now(timezone.utc))
    record.settings = {"account_id": account.get("account_id"),
                       "account_name": account.get("display_name")}
    _seal(record, {"token": token})
    backend = backend_for(record)
    try:
        registry.probe(backend)
        usage = backend.usage()
    except BackendError as exc:
        raise errors.BadRequest(f"The connected account did not pass a write/read/delete "
                                f"check: {exc}", code="probe_failed") from None
    record.capacity, record.provider_used = usage.capacity, usage.used
    record.usage_checked = time.time()
    record.save(condition=StorageRecord.storage_id.does_not_exist())
    return record


_MARKER = ".cloudstrype-storage"


def _local_config(config: dict) -> dict:
    if not get_settings().flag("local_storage_enabled"):
        raise errors.BadRequest("Local directory storages are turned off on this deployment.",
                                code="kind_disabled")
    path = config.get("path")
    if not isinstance(path, str) or not path.strip():
        raise errors.BadRequest("Field 'path' (a directory) is required for a local storage.",
                                code="invalid_config", details={"field": "path"})
    directory = Path(path).expanduser()
    if not directory.is_absolute():
        directory = Path(get_settings().local_storage_root) / directory
    directory = directory.resolve()
    marker = directory / _MARKER
    if marker.exists():
        raise errors.Conflict(f"{directory} is already a Cloudstrype storage; give each storage "
                              f"its own directory.", code="directory_in_use")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.BadRequest(f"Cannot use {directory}: {exc.strerror}.",
                                code="invalid_config", details={"field": "path"}) from None
    return {**config, "path": str(directory)}


def _claim_directory(directory: Path, record: StorageRecord) -> None:
    # One directory, one storage: two storages on one disk would break "distinct backends".
    (directory / _MARKER).write_text(json.dumps({"storage_id": record.storage_id}))


def list_storages(owner: str) -> list[StorageRecord]:
    return list(StorageRecord.query(owner))


def get_storage(owner: str, storage_id: str) -> StorageRecord:
    try:
        return StorageRecord.get(owner, storage_id)
    except StorageRecord.DoesNotExist:
        raise errors.NotFound(f"No storage {storage_id}.", code="storage_not_found") from None


def delete_storage(owner: str, storage_id: str, shares_held: int) -> None:
    record = get_storage(owner, storage_id)
    if shares_held > 0:
        raise errors.Conflict(f"Storage '{record.name}' still holds {shares_held} "
                              f"shares. Drain it first (POST /api/cloud/storages/{storage_id}"
                              f"/drain) to move them elsewhere.", code="storage_not_empty")
    record.delete()
    if record.kind == "local":
        marker = Path(record.settings.get("path", "")) / _MARKER
        marker.unlink(missing_ok=True)
    _backend_cache.pop((owner, storage_id), None)


# -- backends for records, cached briefly --------------------------------------------------------

_backend_cache: dict[tuple[str, str], tuple[Backend, float]] = {}
_cache_lock = threading.Lock()
_BACKEND_CACHE_SECONDS = 300


def backend_for(record: StorageRecord) -> Backend:
    if record.kind == "member":   # an array member: reached over its WebSocket, no credentials
        from cloudstrype.array.backend import MemberBackend
        return MemberBackend.for_record(record)
    key = (record.owner, record.storage_id)
    now = time.monotonic()
    with _cache_lock:
        cached = _backend_cache.get(key)
        if cached and cached[1] > now:
            return cached[0]

    def save_refreshed_token(token: dict) -> None:
        # Providers rotate refresh tokens: persist the new one or the storage is lost.
        fresh = StorageRecord.get(record.owner, record.storage_id)
        secrets = json.loads(vault.open_sealed(fresh.owner, fresh.sealed_secrets,
                                               _purpose(fresh)))
        secrets["token"] = token
        _seal(fresh, secrets)
        fresh.update(actions=[StorageRecord.sealed_secrets.set(fresh.sealed_secrets)])

    config = _full_config(record)
    backend = registry.open_backend(record.kind, config,
                                    on_token_refreshed=save_refreshed_token
                                    if is_oauth(record.kind) else None)
    with _cache_lock:
        _backend_cache[key] = (backend, now + _BACKEND_CACHE_SECONDS)
    return backend


def mark_down(record: StorageRecord, reason: str) -> None:
    record.down_until = time.time() + DOWN_SECONDS
    record.last_error = reason[:500]
    try:
        record.update(actions=[StorageRecord.down_until.set(record.down_until),
                               StorageRecord.last_error.set(record.last_error)])
    except Exception:  # health bookkeeping must never fail the request it is part of
        log.warning("could not record that storage %s is down", record.storage_id)


def count_shares(owner: str, storage_id: str, shares: int, size: int) -> None:
    StorageRecord(owner, storage_id).update(actions=[
        StorageRecord.share_count.add(shares), StorageRecord.stored_bytes.add(size)])


def refresh_usage(record: StorageRecord, force: bool = False) -> StorageRecord:
    if not force and time.time() - (record.usage_checked or 0) < USAGE_MAX_AGE_SECONDS:
        return record
    try:
        usage = backend_for(record).usage()
    except BackendError as exc:
        mark_down(record, str(exc))
        return record
    record.capacity, record.provider_used = usage.capacity, usage.used
    record.usage_checked = time.time()
    record.update(actions=[StorageRecord.capacity.set(usage.capacity),
                           StorageRecord.provider_used.set(usage.used),
                           StorageRecord.usage_checked.set(record.usage_checked)])
    return record
