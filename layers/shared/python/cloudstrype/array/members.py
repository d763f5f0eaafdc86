"""The member registry: who is connected, on which connection, since when, and their answers.

The records live in cloudstrype.array.store (one writer per table); this module is what the
WebSocket routes do with them: hello, ping, results, disconnects, and the registry's views.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from cloudstrype import errors
from cloudstrype.array import connections, protocol
from cloudstrype.array.store import ABANDONED, Connection, Member, MemberStore
from cloudstrype.storages.names import unused_name
from cloudstrype.storages.store import Storage, StorageStore, member_storage_id

log = logging.getLogger("cloudstrype.array")

# Who is on a connection never changes, so a warm Lambda (or the local gateway) keeps it.
_connection_cache: dict[str, Connection] = {}
_CACHE_MAX = 10_000


def _members() -> MemberStore:
    return MemberStore()


# -- connections ---------------------------------------------------------------------------------

def open_connection(connection_id: str, owner: str, username: str | None,
                    member_id: str | None, session: str | None = None) -> None:
    _members().open_connection(connection_id, owner, username, member_id, session=session)


def connection(connection_id: str) -> Connection | None:
    cached = _connection_cache.get(connection_id)
    if cached is not None:
        return cached
    conn = _members().connection(connection_id)
    if conn is not None and conn.member_id:      # complete: safe to keep
        if len(_connection_cache) >= _CACHE_MAX:
            _connection_cache.clear()
        _connection_cache[connection_id] = conn
    return conn


def close_connection(connection_id: str) -> None:
    """`$disconnect`: forget the connection and take its member offline (if it is still the
    member's connection)."""
    conn = connection(connection_id)
    _connection_cache.pop(connection_id, None)
    if conn is None:
        return
    try:
        _members().delete_connection(connection_id)
    except Exception:  # the record expires anyway
        log.warning("could not delete connection record %s", connection_id)
    if conn.member_id:
        mark_offline(conn.owner, conn.member_id, connection_id)


# -- hello / ping / offline ----------------------------------------------------------------------

def hello(conn: Connection, message: dict) -> dict:
    """Register (or re-register) the member on this connection; returns the `welcome` message."""
    version = message.get("protocol", protocol.CURRENT_PROTOCOL)
    # An integer, exactly: true and 1.0 equal 1 in Python, and reached the store as other types.
    if type(version) is not int or version not in protocol.PROTOCOL_VERSIONS:
        raise protocol.ProtocolError(
            f"Protocol version {version!r} is not spoken here; this server speaks "
            f"{list(protocol.PROTOCOL_VERSIONS)}. Update the member program.",
            code="unsupported_protocol")
    member_id = message.get("member_id")
    if not protocol.valid_member_id(member_id):
        raise protocol.ProtocolError("'member_id' must be 8-64 letters, digits, '-' or '_'.")
    if conn.member_id and conn.member_id != member_id:
        raise protocol.ProtocolError(f"This connection was opened for member {conn.member_id}, "
                                     f"not {member_id}.", code="member_mismatch")
    capacity = protocol.non_negative_int(message, "capacity")
    used = protocol.non_negative_int(message, "used")
    free = protocol.non_negative_int(message, "free")
    # A user's storages have distinct names (the CLI and the web UI name them): a member whose
    # name another storage has is numbered, as a connected account is.
    name = unused_name(StorageStore(), conn.owner,
                       protocol.clean_name(message.get("name"), f"member-{member_id[:8]}"),
                       ignore=member_storage_id(member_id))
    program = str(message.get("version") or "")[:40] or None
    store = _members()
    if store.was_removed(conn.owner, member_id):
        # Removed while it was away: told, as a connected one is at its removal, not taken
        # back as a new storage the user did not add.
        return {"type": "removed", "member_id": member_id,
                "reason": "This member was removed from the account while it was away. To add "
                          "this machine again, start it on a new folder (or delete the "
                          "folder's member.json)."}
    previous = store.get_member(conn.owner, member_id)
    if previous is None and \
            len(store.list_members(conn.owner)) >= protocol.MAX_MEMBERS_PER_USER:
        raise protocol.ProtocolError(
            f"You have {protocol.MAX_MEMBERS_PER_USER} members already, the most one user may "
            f"have; remove one you no longer use (DELETE /api/array/members/{{id}}, or the "
            f"web UI's Members page).",
            code="too_many_members")
    if conn.member_id is None:
        if not store.bind_connection(conn, member_id):
            raise protocol.ProtocolError("This connection is not known; reconnect.",
                                         code="unknown_connection")
        _connection_cache[conn.connection_id] = conn
    store.register(conn, member_id, name=name, version=program, protocol=version)
    if previous is not None and previous.connection_id and \
            previous.connection_id != conn.connection_id and is_online(previous):
        _replaced(previous.connection_id, member_id)
    report_usage(conn.owner, member_id, capacity=capacity, used=used, free=free, name=name)
    storage = StorageStore().get(conn.owner, member_storage_id(member_id))
    return {"type": "welcome", "id": message.get("id"), "member_id": member_id,
            "storage_id": member_storage_id(member_id), "protocol": version,
            "status": storage.status if storage else "removed",
            "ping_interval": protocol.PING_INTERVAL_SECONDS}


def _replaced(connection_id: str, member_id: str) -> None:
    """The member's earlier connection, still open, when a hello came on another: a program
    that lost its connection without the server seeing it (then nothing hears this), or a
    second program with the same member id, its folder copied to another machine. That one is
    told and hung up on, and stops; left open, the two would take the member from each other
    at every ping."""
    try:
        connections.send(connection_id, {
            "type": "replaced", "member_id": member_id,
            "reason": "Another program connected as this member (is its folder copied to "
                      "another machine? Give each machine a folder of its own)."})
        connections.close(connection_id)
    except Exception:       # noqa: BLE001 - gone already: nothing to tell
        pass


def mark_offline(owner: str, member_id: str, connection_id: str) -> bool:
    """Take the member offline if `connection_id` is still its connection. True if it was."""
    return _members().mark_offline(owner, member_id, connection_id)


def ping(conn: Connection, message: dict) -> dict:
    reply = {"type": "pong", "id": message.get("id")}
    if not conn.member_id:
        return reply
    # Not (or no longer) the member's registered connection, e.g. after a stale-connection
    # error took it offline: the member says hello again.
    reply["registered"] = _members().touch(conn.owner, conn.member_id, conn.connection_id)
    if reply["registered"]:
        report_usage(conn.owner, conn.member_id,
                     used=protocol.non_negative_int(message, "used", False),
                     free=protocol.non_negative_int(message, "free", False),
                     capacity=protocol.non_negative_int(message, "capacity", False))
    return reply


def report_usage(owner: str, member_id: str, *, used: int | None, free: int | None,
                 capacity: int | None = None, name: str | None = None) -> None:
    """Record what a member reports about its space. The storage's capacity is what the member
    may really fill: at most its configured size, at most what its disk has free."""
    if used is None:
        return
    new_capacity = None
    if free is not None:
        room = free if capacity is None else min(free, max(0, capacity - used))
        new_capacity = used + room
    # A removed storage is left removed (set_usage never creates).
    StorageStore().set_usage(owner, member_storage_id(member_id), used=used, capacity=new_capacity,
                             keep_capacity=new_capacity is None, name=name)


# -- requests and results ------------------------------------------------------------------------

_RESULT_FIELDS = {"ok": bool, "size": int, "sha256": str, "exists": bool, "match": bool,
                  "used": int, "free": int, "start": int}


def record_result(conn: Connection, message: dict) -> None:
    """Store a member's answer where the waiting side polls for it. Only the member the request
    went to can answer it, and only once."""
    request_id = message.get("request_id")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= 64:
        raise protocol.ProtocolError("A result needs the 'request_id' of its request.")
    if not conn.member_id:
        raise protocol.ProtocolError("Say hello before answering requests.", code="no_hello")
    result = {}
    for name, kind in _RESULT_FIELDS.items():
        value = message.get(name)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            result[name] = value[:100] if isinstance(value, str) else value
    error = message.get("error")
    if isinstance(error, dict):
        result["error"] = {"code": str(error.get("code", "error"))[:40],
                           "message": str(error.get("message", ""))[:500]}
    result["ok"] = bool(result.get("ok"))
    # Byte counts within what hello and ping take: an impossible one fails the request (its
    # waiter hears it at once) and is not recorded as the member's space.
    refused = None
    for name in ("size", "start", "used", "free"):
        if name in result:
            try:
                protocol.non_negative_int(result, name)
            except protocol.ProtocolError as exc:
                refused = exc
                result = {"ok": False, "error": {"code": "bad_request",
                                                 "message": f"the member's result: {exc}"}}
                break
    if not _members().answer_request(conn.owner, conn.member_id, request_id, result):
        if not _late_answer(request_id, conn, result):
            raise protocol.ProtocolError(f"No pending request {request_id} for this member "
                                         f"(unknown, answered already, or timed out).",
                                         code="unknown_request")
    if refused is not None:
        raise refused
    if "used" in result:
        report_usage(conn.owner, conn.member_id, used=result["used"], free=result.get("free"))


def _late_answer(request_id: str, conn: Connection, result: dict) -> bool:
    """An answer after the server gave up on the request. A put that succeeded then left a
    share on the member that nothing points to, so the member is asked to delete it. True when
    the request was such a case."""
    request = _members().get_request(conn.owner, request_id)
    if request is None or request.member_id != conn.member_id or request.status != ABANDONED:
        return False
    if request.op == "put" and result.get("ok"):
        send_untracked(conn.owner, conn.member_id, conn.connection_id, "delete", request.key)
    return True


def send_untracked(owner: str, member_id: str, connection_id: str, op: str, key: str) -> None:
    """Send a request nobody waits for (tidying up); its result is recorded and expires."""
    request = _members().create_request(owner, member_id, op, key)
    connections.send(connection_id, {"type": op, "request_id": request.request_id, "key": key})


# -- reading the registry ------------------------------------------------------------------------

def get_member(owner: str, member_id: str) -> Member:
    member = _members().get_member(owner, member_id) \
        if protocol.valid_member_id(member_id) else None
    if member is None:
        raise errors.NotFound(f"No member {errors.shown(member_id)}.", code="member_not_found")
    return member


def is_online(member: Member, now: float | None = None) -> bool:
    # A member pings every few minutes; one silent past API Gateway's idle limit is gone even if
    # its $disconnect was lost.
    now = now or time.time()
    return bool(member.connection_id) and \
        now - float(member.last_seen or 0) < protocol.SILENT_OFFLINE_SECONDS


def list_members(owner: str) -> list[Member]:
    return _members().list_members(owner)


def describe(member: Member, storage: Storage | None) -> dict:
    online = is_online(member)
    info = storage.public() if storage is not None else {}
    return {
        "id": member.member_id, "name": member.name, "storage_id": member.storage_id,
        "online": online, "status": info.get("status", "removed"),
        "capacity": info.get("capacity"), "used": info.get("used", 0),
        "free": info.get("free"), "shares": info.get("shares", 0),
        "stored_bytes": info.get("stored_bytes", 0),
        "last_seen": _iso(member.last_seen),
        "connected_since": _iso(member.connected_at) if online else None,
        "version": member.version, "protocol": int(member.protocol or 1),
    }


def _iso(timestamp) -> str | None:
    if not timestamp:
        return None
    return datetime.fromtimestamp(float(timestamp), timezone.utc).isoformat()


def forget_member(member: Member) -> None:
    _members().delete_member(member.owner, member.member_id)
