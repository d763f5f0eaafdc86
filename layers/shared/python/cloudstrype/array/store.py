"""The array's tables and their one writer: members, their WebSocket connections, and requests
awaiting an answer.

A member is also a storage (kind `member`, id `mb-<member id>`, owned by cloudstrype.storages),
so placement, drain, usage and health treat it like any other backend. These tables hold what only
members have: which connection reaches a member now, when it was last heard from, and the answers
to requests sent to it. An answer arrives as a separate `$default` invocation (in AWS another
Lambda), so it is written to the request's item and the side that sent the request polls it.

A member is online when its record names a connection and its storage is `active`. Connects,
reconnects and disconnects of one member arrive in any order, so both move together in one
transaction, each step conditioned on the connection it is about: the `$disconnect` of an old
connection never takes offline a member that has already said hello on a new one.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from cloudstrype.metadata import schema
from cloudstrype.metadata.engine import Change, Condition, ConditionFailed, Update, get_engine
from cloudstrype.storages.store import (
    StorageStore,
    member_offline_op,
    member_online_op,
    member_storage_id,
)

log = logging.getLogger("cloudstrype.array")

# API Gateway closes a connection after 2 hours at most; its record outlives it a little.
CONNECTION_TTL_SECONDS = 3 * 3600
REQUEST_TTL_SECONDS = 3600
PENDING, DONE, ABANDONED = "pending", "done", "abandoned"

MEMBERS = schema.table(
    "members", hash_key="owner", range_key="member_id", owner_module=__name__,
    fields={"owner": schema.STR, "member_id": schema.STR, "storage_id": schema.STR,
            "name": schema.STR, "connection_id": schema.STR, "connected_at": schema.INT,
            "last_seen": schema.INT, "version": schema.STR, "protocol": schema.INT,
            "created": schema.INT})

# A removed member's id, kept under this prefix in its owner's members ('#' is in no member
# id: protocol.valid_member_id).
REMOVED_PREFIX = "removed#"

# `$default` events carry only the connection id, so the identity proven at `$connect` is kept.
CONNECTIONS = schema.table(
    "member-connections", hash_key="connection_id", expires="expires_at", owner_module=__name__,
    fields={"connection_id": schema.STR, "owner": schema.STR, "username": schema.STR,
            "member_id": schema.STR, "connected_at": schema.INT, "expires_at": schema.INT,
            "session": schema.STR})

REQUESTS = schema.table(
    "member-requests", hash_key="request_id", expires="expires_at", owner_module=__name__,
    fields={"request_id": schema.STR, "owner": schema.STR, "member_id": schema.STR,
            "op": schema.STR, "key": schema.STR, "status": schema.STR, "result": schema.JSON,
            "created": schema.INT, "expires_at": schema.INT})


@dataclass
class Member:
    owner: str
    member_id: str
    storage_id: str
    name: str
    connection_id: str | None = None       # set while it is connected
    connected_at: float = 0
    last_seen: float = 0
    version: str | None = None             # the member program's version
    protocol: int = 1
    created: float = 0


@dataclass
class Connection:
    connection_id: str
    owner: str
    username: str | None = None
    member_id: str | None = None           # set by $connect (?member_id=) or by hello
    connected_at: float = 0
    expires_at: int = 0
    # The sign-in the connecting token belongs to (its `origin_jti`): the connection lasts
    # only as long as it does (array.socket checks it on every message).
    session: str | None = None


@dataclass
class MemberRequest:
    request_id: str
    owner: str
    member_id: str
    op: str
    key: str
    status: str = PENDING                  # pending | done | abandoned
    result: dict | None = None
    created: float = 0
    expires_at: int = 0


def _drop_none(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def _member(item: dict) -> Member:
    return Member(**{k: item[k] for k in Member.__dataclass_fields__ if k in item})


def _connection(item: dict) -> Connection:
    return Connection(**{k: item[k] for k in Connection.__dataclass_fields__ if k in item})


def _request(item: dict) -> MemberRequest:
    return MemberRequest(**{k: item[k] for k in MemberRequest.__dataclass_fields__ if k in item})


class MemberStore:
    """Members, connections and requests over the process's metadata engine."""

    def __init__(self, engine=None):
        self._engine = engine

    @property
    def engine(self):
        return self._engine or get_engine()

    # -- connections ------------------------------------------------------------------------
    def open_connection(self, connection_id: str, owner: str, username: str | None,
                        member_id: str | None, *, now: float | None = None,
                        ttl: int = CONNECTION_TTL_SECONDS,
                        session: str | None = None) -> Connection:
        now = time.time() if now is None else now
        conn = Connection(connection_id, owner, username, member_id, now, int(now + ttl),
                          session)
        self.engine.put(CONNECTIONS, _drop_none(conn.__dict__))
        return conn

    def connection(self, connection_id: str) -> Connection | None:
        item = self.engine.get(CONNECTIONS, {"connection_id": connection_id})
        return _connection(item) if item else None

    def bind_connection(self, conn: Connection, member_id: str) -> bool:
        """Name the member on a connection opened without one. False if the connection is gone
        or already names another member."""
        try:
            self.engine.update(CONNECTIONS, {"connection_id": conn.connection_id},
                               Change(set={"member_id": member_id}),
                               Condition.exists() & Condition.eq("owner", conn.owner)
                               & Condition.missing("member_id"))
        except ConditionFailed:
            current = self.connection(conn.connection_id)
            if current is None or current.owner != conn.owner or current.member_id != member_id:
                return False
        conn.member_id = member_id
        return True

    def delete_connection(self, connection_id: str) -> Connection | None:
        item = self.engine.delete(CONNECTIONS, {"connection_id": connection_id})
        return _connection(item) if item else None

    # -- members ----------------------------------------------------------------------------
    def get_member(self, owner: str, member_id: str) -> Member | None:
        item = self.engine.get(MEMBERS, {"owner": owner, "member_id": member_id})
        return _member(item) if item else None

    def list_members(self, owner: str) -> list[Member]:
        return [_member(item) for item in self.engine.query_all(MEMBERS, owner)
                if not item["member_id"].startswith(REMOVED_PREFIX)]

    def delete_member(self, owner: str, member_id: str) -> None:
        """The member goes, and its id is remembered as removed (was_removed): its program,
        started again while it was away, is told so rather than registered anew."""
        self.engine.put(MEMBERS, {"owner": owner, "member_id": REMOVED_PREFIX + member_id,
                                  "created": int(time.time())})
        self.engine.delete(MEMBERS, {"owner": owner, "member_id": member_id})

    def was_removed(self, owner: str, member_id: str) -> bool:
        return self.engine.get(MEMBERS, {"owner": owner,
                                         "member_id": REMOVED_PREFIX + member_id}) is not None

    def register(self, conn: Connection, member_id: str, *, name: str,
                 version: str | None = None, protocol: int = 1,
                 now: float | None = None) -> Member:
        """hello: the member is reachable on `conn`, and its storage (created on first hello)
        becomes active with it, unless its owner chose another status (draining)."""
        now = time.time() if now is None else now
        owner, storage_id = conn.owner, member_storage_id(member_id)
        StorageStore(self._engine).ensure_member_storage(owner, member_id, name)
        key = {"owner": owner, "member_id": member_id}
        change = Change(set=_drop_none({
            "storage_id": storage_id, "name": name,
            "connection_id": conn.connection_id, "connected_at": conn.connected_at,
            "last_seen": now, "version": version,
            "protocol": protocol}),
            set_default={"created": now},
            remove=() if version else ("version",))
        try:
            self.engine.transact([Update(MEMBERS, key, change),
                                  member_online_op(owner, member_id)])
        except ConditionFailed as exc:
            # The storage is draining (or was removed): the member is reachable again, but its
            # storage keeps the status its owner chose.
            log.info("member %s online: storage left as it is (%s)", member_id, exc)
            self.engine.update(MEMBERS, key, change)
        return self.get_member(owner, member_id)

    def mark_offline(self, owner: str, member_id: str, connection_id: str, *,
                     now: float | None = None) -> bool:
        """Take the member offline if `connection_id` is still its connection. True if it was."""
        now = time.time() if now is None else now
        key = {"owner": owner, "member_id": member_id}
        change = Change(set={"last_seen": now}, remove=("connection_id",))
        still_there = Condition.eq("connection_id", connection_id)
        try:
            self.engine.transact([
                Update(MEMBERS, key, change, still_there),
                member_offline_op(owner, member_id)])
            return True
        except ConditionFailed:
            pass
        # Either the member moved to another connection (then this fails too), or its storage
        # is not active (draining, removed): then only the member record changes.
        try:
            self.engine.update(MEMBERS, key, change, still_there)
            return True
        except ConditionFailed:
            return False

    def touch(self, owner: str, member_id: str, connection_id: str, *,
              now: float | None = None) -> bool:
        """A ping: the member was heard from, if this is still its connection."""
        try:
            self.engine.update(MEMBERS, {"owner": owner, "member_id": member_id},
                               Change(set={"last_seen": time.time() if now is None else now}),
                               Condition.eq("connection_id", connection_id))
            return True
        except ConditionFailed:
            return False

    # -- requests ---------------------------------------------------------------------------
    def create_request(self, owner: str, member_id: str, op: str, key: str, *,
                       now: float | None = None, ttl: int = REQUEST_TTL_SECONDS) -> MemberRequest:
        now = time.time() if now is None else now
        request = MemberRequest(uuid.uuid4().hex, owner, member_id, op, key, PENDING, None,
                                now, int(now + ttl))
        self.engine.put(REQUESTS, _drop_none(request.__dict__), Condition.absent())
        return request

    def get_request(self, owner: str, request_id: str) -> MemberRequest | None:
        item = self.engine.get(REQUESTS, {"request_id": request_id})
        if item is None or item.get("owner") != owner:
            return None
        return _request(item)

    def answer_request(self, owner: str, member_id: str, request_id: str,
                       result: dict) -> bool:
        """Record a result: only the member the request went to can answer, and only once,
        while it is pending."""
        try:
            self.engine.update(REQUESTS, {"request_id": request_id},
                               Change(set={"status": DONE, "result": result}),
                               Condition.eq("status", PENDING) & Condition.eq("owner", owner)
                               & Condition.eq("member_id", member_id))
            return True
        except ConditionFailed:
            return False

    def abandon_request(self, owner: str, request_id: str) -> MemberRequest | None:
        """Give up on a pending request. Returns the request as it is now: `abandoned`, or
        `done` when its answer won the race; None when there is no such request of `owner`."""
        try:
            item = self.engine.update(REQUESTS, {"request_id": request_id},
                                      Change(set={"status": ABANDONED}),
                                      Condition.eq("status", PENDING)
                                      & Condition.eq("owner", owner))
            return _request(item)
        except ConditionFailed:
            return self.get_request(owner, request_id)
