"""The storages table (a user's storages) and the OAuth-states table: the one module that
writes them. Plain dataclasses in and out, on the process's metadata engine.

Another aggregate that must change a storage in its own transaction (a member coming online)
asks this module for the Operation (`member_online_op`, `member_offline_op`) instead of
writing the table itself.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

from cloudstrype.metadata import schema
from cloudstrype.metadata.engine import (
    Change,
    Condition,
    ConditionFailed,
    Engine,
    Update,
    get_engine,
)

ACTIVE, DRAINING, NEEDS_RECONNECT = "active", "draining", "needs_reconnect"
# An array member's storage while its member is not connected: placement skips it, and a
# draining storage stays draining whatever its member does.
OFFLINE = "offline"
MEMBER_KIND = "member"
MEMBER_PREFIX = "mb-"
# The sparse "draining storages" index: only a draining storage has this field.
DRAIN_QUEUE = "draining"

STORAGES = schema.table(
    "storages", hash_key="owner", range_key="storage_id", owner_module=__name__,
    fields={"owner": schema.STR, "storage_id": schema.STR, "kind": schema.STR,
            "name": schema.STR, "status": schema.STR, "settings": schema.JSON,
            "sealed_secrets": schema.BYTES, "capacity": schema.INT,
            "provider_used": schema.INT, "usage_checked": schema.INT,
            "usage_stored_bytes": schema.INT,
            "share_count": schema.INT, "stored_bytes": schema.INT, "down_until": schema.INT,
            "last_error": schema.STR, "last_error_at": schema.INT, "created": schema.INT,
            "drain_queue": schema.STR, "drain_since": schema.INT,
            "check_cursor": schema.STR, "verify_cursor": schema.STR, "checked_at": schema.INT,
            "check_pass_at": schema.INT, "missing_found": schema.INT,
            "corrupt_found": schema.INT},
    indexes=(schema.Index("draining", hash_key="drain_queue", range_key="drain_since"),))

# An OAuth state is refused as expired at `expires_at`; the row itself stays a day longer
# (`purge_at`) so a late callback hears "expired", not "unknown". After the callback the row
# holds the provider's grant (sealed) until the user who started finishes with the one-time
# code the callback gave the browser (kept only as its hash).
OAUTH_STATES = schema.table(
    "oauth-states", hash_key="state", expires="purge_at", owner_module=__name__,
    fields={"state": schema.STR, "owner": schema.STR, "provider": schema.STR,
            "storage_name": schema.STR, "sealed_verifier": schema.BYTES,
            "return_to": schema.STR, "expires_at": schema.INT, "used": schema.BOOL,
            "purge_at": schema.INT, "sealed_grant": schema.BYTES, "finish_hash": schema.STR,
            "finish_expires_at": schema.INT, "finish_failures": schema.INT,
            "finished": schema.BOOL})
OAUTH_STATE_KEEP_SECONDS = 24 * 3600


def member_storage_id(member_id: str) -> str:
    return MEMBER_PREFIX + member_id


@dataclass
class Storage:
    """One storage of one user (attribute names as the old StorageRecord's)."""
    owner: str
    storage_id: str
    kind: str
    name: str
    status: str = ACTIVE
    settings: dict = field(default_factory=dict)
    sealed_secrets: bytes | None = None
    capacity: int | None = None
    provider_used: int = 0
    usage_checked: float = 0
    # stored_bytes when `provider_used` was measured: a measure older than our own writes since
    # is taken again sooner (storages.refresh_usage).
    usage_stored_bytes: int = 0
    share_count: int = 0
    stored_bytes: int = 0
    down_until: float = 0
    last_error: str | None = None
    last_error_at: float = 0
    created: float = field(default_factory=lambda: int(time.time()))
    # The checker's walk over the storage's shares (pipeline/checker.py): where the next run
    # goes on from (opaque listing cursors), when it last ran and last finished a whole pass,
    # and what it has found wrong so far.
    check_cursor: str | None = None
    verify_cursor: str | None = None
    checked_at: float = 0
    check_pass_at: float = 0
    missing_found: int = 0
    corrupt_found: int = 0

    @property
    def free(self) -> int | None:
        if self.capacity is None:
            return None
        return max(0, int(self.capacity) - int(self.provider_used))

    def usable(self, now: float | None = None) -> bool:
        return self.status == ACTIVE and not self.down(now)

    def down(self, now: float | None = None) -> bool:
        """Marked down after an error, for a while (mark_down)."""
        return (now or time.time()) < (self.down_until or 0)

    def public(self) -> dict:
        return {
            "id": self.storage_id, "kind": self.kind, "name": self.name, "status": self.status,
            "online": self.usable(), "settings": self.settings or {},
            "capacity": None if self.capacity is None else int(self.capacity),
            "used": int(self.provider_used or 0), "free": self.free,
            "used_measured_at": _iso(self.usage_checked),
            "shares": int(self.share_count or 0), "stored_bytes": int(self.stored_bytes or 0),
            "last_error": self.last_error, "last_error_at": _iso(self.last_error_at),
            "created": _iso(self.created),
            "check": {"checked_at": _iso(self.checked_at),
                      "last_full_pass": _iso(self.check_pass_at),
                      "missing_found": int(self.missing_found or 0),
                      "corrupt_found": int(self.corrupt_found or 0)},
        }

    def to_item(self) -> dict:
        item = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.status == DRAINING:
            item.update(drain_queue=DRAIN_QUEUE, drain_since=int(time.time()))
        return {name: value for name, value in item.items() if value is not None}

    @classmethod
    def from_item(cls, item: dict) -> "Storage":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {name: value for name, value in item.items() if name in names}
        if "sealed_secrets" in values:
            values["sealed_secrets"] = bytes(values["sealed_secrets"])
        return cls(**values)


def _iso(seconds: float | None) -> str | None:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat() if seconds else None


# Kept so callers written against the pynamodb model keep working.
StorageRecord = Storage


def _key(owner: str, storage_id: str) -> dict:
    return {"owner": owner, "storage_id": storage_id}


def _status_change(status: str, extra: dict | None = None, clear: tuple = ()) -> Change:
    """Setting a status also enters the storage into, or takes it out of, the draining index."""
    if status == DRAINING:
        return Change(set={"status": status, **(extra or {})},
                      set_default={"drain_queue": DRAIN_QUEUE, "drain_since": int(time.time())},
                      remove=clear)
    return Change(set={"status": status, **(extra or {})},
                  remove=("drain_queue", "drain_since", *clear))


# -- operations for another aggregate's transaction ------------------------------------------

def member_online_op(owner: str, member_id: str) -> Update:
    """The member's storage back to active and not down: unless its owner chose otherwise (a
    draining storage stays draining) or it was removed — then the transaction fails."""
    # Its last error (most often "member ... is offline") is over with its reconnection; it was
    # shown until the next check pass.
    return Update(STORAGES, _key(owner, member_storage_id(member_id)),
                  _status_change(ACTIVE, {"down_until": 0}, ("last_error", "last_error_at")),
                  condition=Condition.is_in("status", ACTIVE, OFFLINE))


def member_offline_op(owner: str, member_id: str) -> Update:
    """The member's storage offline, only if it is active."""
    return Update(STORAGES, _key(owner, member_storage_id(member_id)),
                  _status_change(OFFLINE), condition=Condition.eq("status", ACTIVE))


class StorageStore:
    def __init__(self, engine: Engine | None = None):
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine or get_engine()

    def create(self, storage: Storage) -> bool:
        """Save a new storage; False (nothing written) if that id exists already."""
        try:
            self.engine.put(STORAGES, storage.to_item(), condition=Condition.absent())
            return True
        except ConditionFailed:
            return False

    def get(self, owner: str, storage_id: str) -> Storage | None:
        item = self.engine.get(STORAGES, _key(owner, storage_id))
        if item is None or item["owner"] != owner:
            return None
        return Storage.from_item(item)

    def list(self, owner: str) -> list[Storage]:
        return [Storage.from_item(item) for item in self.engine.query_all(STORAGES, owner)
                if item["owner"] == owner]

    def delete(self, owner: str, storage_id: str) -> Storage | None:
        item = self.engine.delete(STORAGES, _key(owner, storage_id))
        return None if item is None else Storage.from_item(item)

    def set_status(self, owner: str, storage_id: str, status: str,
                   expected: tuple[str, ...] | None = None) -> bool:
        """Compare-and-set the status: only if the storage exists and (when given) its status
        is one of `expected`. True if it changed."""
        condition = Condition.exists()
        if expected is not None:
            condition = condition & Condition.is_in("status", *expected)
        try:
            self.engine.update(STORAGES, _key(owner, storage_id), _status_change(status),
                               condition=condition)
            return True
        except ConditionFailed:
            return False

    def count_shares(self, owner: str, storage_id: str, shares: int, size: int) -> bool:
        """Add to the share and byte counters atomically; False if the storage is gone."""
        return self._update(owner, storage_id, Change(add={"share_count": shares,
                                                           "stored_bytes": size}))

    def mark_down(self, owner: str, storage_id: str, until: float, reason: str) -> bool:
        return self._update(owner, storage_id, Change(set={
            "down_until": until, "last_error": reason[:500], "last_error_at": int(time.time())}))

    def clear_error(self, owner: str, storage_id: str, before: float) -> bool:
        """Forget the last error if it happened before `before` (the storage has answered
        since); one recorded meanwhile stays. An error recorded without its time (before the
        time was kept) counts as old. True if it was forgotten."""
        if self._forget_error(owner, storage_id, Condition.exists() & Condition.has(
                "last_error") & Condition.missing("last_error_at")):
            return True
        condition = Condition.exists() & Condition.has("last_error") & Condition.compare(
            "last_error_at", "lt", int(before))
        return self._forget_error(owner, storage_id, condition)

    def _forget_error(self, owner: str, storage_id: str, condition: Condition) -> bool:
        try:
            self.engine.update(STORAGES, _key(owner, storage_id),
                               Change(remove=("last_error", "last_error_at")), condition)
            return True
        except ConditionFailed:
            return False

    def set_usage(self, owner: str, storage_id: str, *, used: int,
                  capacity: int | None = None, keep_capacity: bool = False,
                  name: str | None = None, checked: float | None = None,
                  stored: int | None = None) -> bool:
        """Record the space a storage reports (and a new name, for a member). Capacity None
        means no limit, unless `keep_capacity` leaves it as it is."""
        values = {"provider_used": used,
                  "usage_checked": time.time() if checked is None else checked}
        if stored is not None:
            values["usage_stored_bytes"] = stored
        removed: tuple = ()
        if not keep_capacity:
            if capacity is None:
                removed = ("capacity",)
            else:
                values["capacity"] = capacity
        if name:
            values["name"] = name
        return self._update(owner, storage_id, Change(set=values, remove=removed))

    def record_check(self, owner: str, storage_id: str, *, check_cursor: str | None,
                     verify_cursor: str | None, passed: bool, missing: int,
                     corrupt: int) -> bool:
        """Where the checker goes on from next time, and what it found this time (added to
        the totals); `passed`: it reached the end of the storage's shares."""
        now = int(time.time())
        values: dict = {"checked_at": now, **({"check_pass_at": now} if passed else {})}
        removed = []
        for name, cursor in (("check_cursor", check_cursor), ("verify_cursor", verify_cursor)):
            if cursor:
                values[name] = cursor
            else:
                removed.append(name)            # at the end: the next run starts over
        return self._update(owner, storage_id, Change(
            set=values, add={"missing_found": missing, "corrupt_found": corrupt},
            remove=tuple(removed)))

    def every(self) -> Iterator[Storage]:
        """Every storage of every user: the checker's round, once per scheduled run. A scan,
        which the design keeps for maintenance: there is a row per storage, not per share."""
        cursor = None
        while True:
            page = self.engine.scan(STORAGES, limit=500, cursor=cursor)
            yield from (Storage.from_item(item) for item in page.items)
            cursor = page.cursor
            if not cursor:
                return

    def set_sealed_secrets(self, owner: str, storage_id: str, sealed: bytes) -> bool:
        return self._update(owner, storage_id, Change(set={"sealed_secrets": sealed}))

    def reconnect(self, owner: str, storage_id: str, settings: dict, sealed: bytes) -> bool:
        """New credentials for a storage: its last error and time marked down go with the old
        ones. False if the storage is gone."""
        return self._update(owner, storage_id, Change(
            set={"settings": settings, "sealed_secrets": sealed, "down_until": 0},
            remove=("last_error", "last_error_at")))

    def _update(self, owner: str, storage_id: str, change: Change) -> bool:
        # Never create: a counter or health write about a removed storage is dropped.
        try:
            self.engine.update(STORAGES, _key(owner, storage_id), change,
                               condition=Condition.exists())
            return True
        except ConditionFailed:
            return False

    def ensure_member_storage(self, owner: str, member_id: str, name: str) -> Storage:
        """The storage of an array member, created (active, no capacity yet) on its first
        hello; concurrent hellos agree on one."""
        storage = Storage(owner, member_storage_id(member_id), kind=MEMBER_KIND, name=name,
                          settings={"member_id": member_id})
        if self.create(storage):
            return storage
        existing = self.get(owner, storage.storage_id)
        if existing is None:   # removed between the two calls: make it again
            return self.ensure_member_storage(owner, member_id, name)
        return existing

    def draining(self, limit: int | None = None) -> Iterator[Storage]:
        """Every draining storage of every user (the scrub's work list), through the sparse
        index: never a scan. The index may lag a little in DynamoDB; the scrub re-reads."""
        for item in self.engine.query_index_all(STORAGES, "draining", DRAIN_QUEUE, limit=limit):
            yield Storage.from_item(item)


# -- OAuth states --------------------------------------------------------------------------------

@dataclass
class OAuthState:
    state: str
    owner: str
    provider: str
    storage_name: str
    expires_at: int
    sealed_verifier: bytes | None = None
    return_to: str | None = None
    used: bool = False
    # Set by the callback (hold_grant), cleared by the finish (take_grant).
    sealed_grant: bytes | None = None
    finish_hash: str | None = None
    finish_expires_at: int | None = None
    finish_failures: int = 0
    finished: bool = False

    def to_item(self) -> dict:
        item = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        item["purge_at"] = int(self.expires_at) + OAUTH_STATE_KEEP_SECONDS
        return {name: value for name, value in item.items() if value is not None}

    @classmethod
    def from_item(cls, item: dict) -> "OAuthState":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {name: value for name, value in item.items() if name in names}
        for name in ("sealed_verifier", "sealed_grant"):
            if name in values:
                values[name] = bytes(values[name])
        return cls(**values)


class OAuthStateStore:
    def __init__(self, engine: Engine | None = None):
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine or get_engine()

    def create(self, state: OAuthState) -> None:
        self.engine.put(OAUTH_STATES, state.to_item(), condition=Condition.absent())

    def get(self, state: str) -> OAuthState | None:
        item = self.engine.get(OAUTH_STATES, {"state": state})
        return None if item is None else OAuthState.from_item(item)

    def consume(self, state: str) -> bool:
        """Mark the state used; True for exactly one caller, however many race."""
        try:
            self.engine.update(OAUTH_STATES, {"state": state}, Change(set={"used": True}),
                               condition=Condition.exists() & Condition.eq("used", False))
            return True
        except ConditionFailed:
            return False

    def hold_grant(self, state: str, sealed_grant: bytes, finish_hash: str,
                   finish_expires_at: int) -> bool:
        """Keep the provider's grant on a consumed state until it is finished; False if the
        state is gone or holds one already."""
        try:
            self.engine.update(OAUTH_STATES, {"state": state},
                               Change(set={"sealed_grant": sealed_grant,
                                           "finish_hash": finish_hash,
                                           "finish_expires_at": finish_expires_at,
                                           "finish_failures": 0}),
                               condition=Condition.exists() & Condition.eq("used", True)
                               & Condition.missing("finish_hash"))
            return True
        except ConditionFailed:
            return False

    def count_finish_failure(self, state: str) -> None:
        try:
            self.engine.update(OAUTH_STATES, {"state": state},
                               Change(add={"finish_failures": 1}), condition=Condition.exists())
        except ConditionFailed:
            pass

    def take_grant(self, state: str, finish_hash: str, max_failures: int) -> bool:
        """Mark the grant finished and drop it; True for exactly one caller, and only while
        the code is the held one and fewer than `max_failures` wrong codes were tried."""
        try:
            self.engine.update(OAUTH_STATES, {"state": state},
                               Change(set={"finished": True}, remove=("sealed_grant",)),
                               condition=Condition.exists() & Condition.has("sealed_grant")
                               & Condition.eq("finish_hash", finish_hash)
                               & Condition.compare("finish_failures", "lt", max_failures))
            return True
        except ConditionFailed:
            return False
