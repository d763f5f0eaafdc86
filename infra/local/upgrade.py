"""Importing a data directory of Cloudstrype before the metadata engines into the SQLite store.

Before, `serve` kept everything inside moto and pickled moto's state into `aws-state.pickle`.
On the first start of this version on such a directory, everything in it is read (with moto,
installed for the purpose by `make run`) and written into the metadata database once:

- the DynamoDB tables, item by item, into the tables of the same names, each value converted to
  the declared field type (times to Unix seconds, JSON strings to JSON, number sets to sets) and
  the fields that now carry owner or work-queue information derived from the keys;
- the Cognito users with their passwords (moto kept them in plain text; they are stored now
  under argon2id), subject ids, e-mail, status and groups;
- each user key, unwrapped with the emulated KMS key and wrapped again with the local master
  key;
- what was only in flight (WebSocket connections, member requests, OAuth states, staging
  objects) is left behind.

The import is one pass and checked: the number of items written per table must equal what was
read, or the start fails and nothing is marked done, so the next start tries again from the
untouched old file. When it succeeds `aws-state.imported` records the counts and the old file
is deleted: it holds every user's password in plain text (as moto kept them) and the emulated
KMS key that unwraps their old keys.
"""
from __future__ import annotations

import json
import logging
import pickle
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from infra.local.services import LEGACY_STATE, fsync_directory

log = logging.getLogger("cloudstrype.local")

IMPORTED_MARK = "aws-state.imported"
_LEGACY_PREFIX = "cloudstrype-"
_REGION = "us-east-1"
# In flight only: nothing in them outlives a restart.
_TRANSIENT_TABLES = ("member-connections", "member-requests", "oauth-states")


class UpgradeError(Exception):
    """The old data directory could not be imported; it is left as it was."""


def import_if_needed(data_dir: Path) -> dict | None:
    """Import once; returns the counts when it imported now, None when there was nothing to do."""
    legacy = data_dir / LEGACY_STATE
    if not legacy.exists():
        return None
    if (data_dir / IMPORTED_MARK).exists():
        # Imported before, by a start that stopped before it deleted the old file (or a
        # release that kept it).
        legacy.unlink()
        fsync_directory(data_dir)
        return None
    print(f"Importing {legacy} (written by an older Cloudstrype) into the metadata database…",
          flush=True)
    counts = import_legacy(legacy, data_dir)
    (data_dir / IMPORTED_MARK).write_text(json.dumps(
        {"imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "items": counts},
        indent=2) + "\n")
    # The old file holds every user's password as moto kept it (in plain text) and the key that
    # unwraps their old keys: once all of it is in the database (counted, committed), it goes.
    legacy.unlink()
    fsync_directory(data_dir)
    print(f"Imported: {', '.join(f'{n} {name}' for name, n in sorted(counts.items()))}. The old "
          f"file held the passwords in plain text and is deleted; delete any copy of it too "
          f"(a backup of this folder taken before).", flush=True)
    return counts


# -- reading the old state ---------------------------------------------------------------------

def _load_private_key(pem: bytes):
    from cryptography.hazmat.primitives import serialization
    return serialization.load_pem_private_key(pem, password=None)


class _LegacyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        # The old local stack pickled cryptography's keys through a helper of its own module.
        if module == "infra.local.aws" and name == "_load_private_key":
            return _load_private_key
        return super().find_class(module, name)


def _load(path: Path) -> dict:
    try:
        import moto  # noqa: F401  (the pickle holds moto's objects)
    except ImportError:
        raise UpgradeError(f"{path} holds moto's objects, and reading it needs moto: run "
                           f"`make run` (it installs it), or pip install -e '.[upgrade]'."
                           ) from None
    try:
        with path.open("rb") as state_file:
            return _LegacyUnpickler(state_file).load()
    except Exception as exc:
        raise UpgradeError(f"{path} could not be read ({type(exc).__name__}: {exc}); it needs "
                           f"moto 5.2.5 (pip install -e '.[upgrade]').") from None


def _region(state: dict, service: str):
    accounts = state.get(service) or {}
    for account in accounts.values():
        if _REGION in account:
            return account[_REGION]
    return None


def _items(table) -> list[dict]:
    from boto3.dynamodb.types import TypeDeserializer
    deserializer = TypeDeserializer()
    return [{name: deserializer.deserialize(value)
             for name, value in item.to_json()["Attributes"].items()}
            for item in table.all_items()]


# -- converting values -------------------------------------------------------------------------

def _number(value):
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _convert(kind: str, value):
    """An old attribute value as the new field type wants it."""
    from cloudstrype.metadata import schema
    if kind == schema.INT:
        if isinstance(value, str):       # pynamodb's UTCDateTimeAttribute
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        return _number(value)
    if kind == schema.JSON:
        if isinstance(value, str):       # JSONAttribute
            return json.loads(value)
        return json.loads(json.dumps(value, default=_number))
    if kind == schema.BYTES:
        return bytes(getattr(value, "value", value))
    if kind == schema.INT_SET:
        return {int(v) for v in value}
    if kind == schema.STR_SET:
        return {str(v) for v in value}
    if kind == schema.BOOL:
        return bool(value)
    return str(value)


def _split(value: str) -> tuple[str, str]:
    left, _, right = value.partition("#")
    return left, right


def _relocate(item: dict, data_dir: Path) -> None:
    """A `local` storage of a data directory that was moved since: its folder under the old
    location's storages/ is found under the new one's."""
    settings = item.get("settings")
    if isinstance(settings, str):
        settings = json.loads(settings)
    path = Path((settings or {}).get("path", ""))
    if item.get("kind") != "local" or not path.parts or path.exists():
        return
    moved = data_dir / "storages" / path.name
    if path.parent.name == "storages" and moved.is_dir():
        item["settings"] = {**settings, "path": str(moved)}
        log.info("storage %s: %s moved to %s", item.get("storage_id"), path, moved)


def _derive(name: str, item: dict) -> dict:
    """Fields the new tables carry that the old ones kept only inside their keys (owners) or did
    not have (the work queues' index fields)."""
    if name == "entries":
        item["owner"] = _split(item["parent_ref"])[0]
    elif name == "versions":
        item["owner"] = _split(item["file_ref"])[0]
        item.pop("revision", None)
    elif name == "upload-parts":
        item["owner"] = _split(item["upload_ref"])[0]
    elif name == "uploads" and not item.get("committed"):
        from cloudstrype.tree import store as tree_store
        item["expiry_queue"] = tree_store._EXPIRY_QUEUE
    elif name == "placements":
        owner, storage_id = _split(item["storage_ref"])
        chunk_id, index = item["share_ref"].rsplit("#", 1)
        item.update(owner=owner, storage_id=storage_id, chunk_id=chunk_id, index=int(index))
    elif name == "chunks":
        item["revision"] = item.pop("version", 1)
        if item.get("damaged"):
            from cloudstrype.pipeline import chunk_store
            item.update(damage_shard=chunk_store._shard(item["owner"], item["chunk_id"]),
                        damaged_at=int(time.time()))
    elif name == "pending-deletes":
        from cloudstrype.pipeline import chunk_store
        item["shard"] = chunk_store._shard(item["owner"], item["storage_id"], item["key"])
    elif name == "storages" and item.get("status") == "draining":
        from cloudstrype.storages import store as storages_store
        item.update(drain_queue=storages_store.DRAIN_QUEUE, drain_since=int(time.time()))
    return item


# -- writing the new store ---------------------------------------------------------------------

def import_legacy(path: Path, data_dir: Path) -> dict[str, int]:
    from cloudstrype.metadata import schema
    from cloudstrype.metadata.engine import Put, get_engine

    state = _load(path)
    engine = get_engine()
    tables = {t.name: t for t in schema.all_tables()}
    counts: dict[str, int] = {}

    dynamodb = _region(state, "dynamodb")
    kms = _region(state, "kms")
    for legacy_name, legacy_table in sorted((dynamodb.tables if dynamodb else {}).items()):
        name = legacy_name.removeprefix(_LEGACY_PREFIX)
        if name in _TRANSIENT_TABLES:
            continue
        table = tables.get(name)
        if table is None:
            raise UpgradeError(f"{path} has a table {legacy_name} this version does not know.")
        read = _items(legacy_table)
        converted = []
        for old in read:
            item = _derive(name, {key: _number(value) for key, value in old.items()})
            if name == "storages":
                _relocate(item, data_dir)
            if name == "user-keys":
                item = _rewrapped_key(item, kms)
            converted.append({field: _convert(table.fields[field], value)
                              for field, value in item.items()
                              if field in table.fields and value is not None})
        for start in range(0, len(converted), 50):
            engine.transact([Put(table, item) for item in converted[start:start + 50]])
        written = sum(1 for _ in _all(engine, table))
        if written < len(read):
            raise UpgradeError(f"Importing {legacy_name}: read {len(read)} items, the new table "
                               f"holds {written}. Nothing is marked imported; see the log.")
        counts[name] = len(read)

    counts["users"] = _import_users(_region(state, "cognitoidp"))
    return counts


def _all(engine, table):
    cursor = None
    while True:
        page = engine.scan(table, cursor=cursor)
        yield from page.items
        cursor = page.cursor
        if not cursor:
            return


def _rewrapped_key(item: dict, kms) -> dict:
    """The user key, unwrapped with the emulated KMS key and wrapped with the master key."""
    from cloudstrype.keys.protector import get_protector
    context = {"cloudstrype:user": item["owner"]}
    plain, _ = kms.decrypt(ciphertext_blob=bytes(getattr(item["encrypted_key"], "value",
                                                         item["encrypted_key"])),
                           encryption_context=context)
    item["encrypted_key"] = get_protector().wrap(plain, context)
    item["protector"] = "local"
    return item


def _import_users(cognito) -> int:
    if cognito is None:
        return 0
    from cloudstrype.identity import local_store
    from cloudstrype.identity.local import CONFIRMED, HASHER, UNCONFIRMED
    store = local_store.IdentityStore()
    imported = 0
    for pool in cognito.user_pools.values():
        for group in pool.groups.values():
            # False when it exists already (the admins group is made at start-up).
            store.create_group(group.group_name, group.description or "",
                               int(group.creation_date.timestamp())
                               if hasattr(group.creation_date, "timestamp") else int(time.time()))
        for user in pool.users.values():
            attributes = {a["Name"]: a["Value"] for a in user.attributes}
            status = CONFIRMED if str(getattr(user.status, "value", user.status)) == "CONFIRMED" \
                else UNCONFIRMED
            created = user.create_date.timestamp() if hasattr(user.create_date, "timestamp") \
                else time.time()
            record = local_store.UserItem(
                username=user.username, user_id=attributes["sub"],
                email=attributes.get("email", ""), password_hash=HASHER.hash(user.password),
                status=status, created=int(created))
            if not store.create_user(record):
                raise UpgradeError(f"The user {user.username} exists twice in the old state.")
            for group in sorted(g.group_name for g in user.groups):
                store.set_membership(group, store.get_user(user.username), True)
            imported += 1
    return imported
