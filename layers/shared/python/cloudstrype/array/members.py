"""The member registry: who is connected, on which connection, and since when.

Two records must agree about a member being online: `MemberRecord.connection_id` (how to reach
it) and its storage's `status` (`active` or `offline`, which placement reads). Connects,
reconnects and disconnects of one member can arrive in any order (in AWS each is its own Lambda
invocation), so both records move together in one DynamoDB transaction, each step conditioned on
the connection it is about: the `$disconnect` of an old connection never takes a member offline
that has already said hello on a new one.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError

from cloudstrype import db, errors
from cloudstrype.array import protocol
from cloudstrype.array.models import ConnectionRecord, MemberRecord, MemberRequest
from cloudstrype.backends.storages import ACTIVE, StorageRecord

log = logging.getLogger("cloudstrype.array")

MEMBER_KIND = "member"
# A storage status of its own: placement skips it (only `active` storages take shares), and a
# draining storage stays draining whatever its member does.
OFFLINE = "offline"
STORAGE_PREFIX = "mb-"
CONNECTION_TTL_SECONDS = 3 * 3600


def storage_id_for(member_id: str) -> str:
    return STORAGE_PREFIX + member_id


# -- connections ---------------------------------------------------------------------------------

# Who is on a connection never changes, so a warm Lambda (or the local gateway) keeps it.
_connection_cache: dict[str, ConnectionRecord] = {}
_CACHE_MAX = 10_000


def open_connection(connection_id: str, owner: str, username: str | None,
                    member_id: str | None) -> None:
    now = time.time()
    ConnectionRecord(connection_id, owner=owner, username=username, member_id=member_id,
                     connected_at=now, expires_at=int(now + CONNECTION_TTL_SECONDS)).save()


def connection(connection_id: str) -> ConnectionRecord | None:
    cached = _connection_cache.get(connection_id)
    if cached is not None:
        return cached
    try:
        record = ConnectionRecord.get(connection_id, consistent_read=True)
    except ConnectionRecord.DoesNotExist:
        return None
    if record.member_id:               # complete: safe to keep
        if len(_connection_cache) >= _CACHE_MAX:
            _connection_cache.clear()
        _connection_cache[connection_id] = record
    return record


def close_connection(connection_id: str) -> None:
    """`$disconnect`: forget the connection and take its member offline (if it is still the
    member's connection)."""
    record = connection(connection_id)
    _connection_cache.pop(connection_id, None)
    if record is None:
        return
    try:
        record.delete()
    except Exception:  # the row expires anyway
        log.warning("could not delete connection record %s", connection_id)
    if record.member_id:
        mark_offline(record.owner, record.member_id, connection_id)


# -- hello / ping / offline ----------------------------------------------------------------------

def hello(conn: ConnectionRecord, message: dict) -> dict:
    """Register (or re-register) the member on this connection; returns the `welcome` message."""
    version = message.get("protocol", protocol.CURRENT_PROTOCOL)
    if version not in protocol.PROTOCOL_VERSIONS:
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
    name = protocol.clean_name(message.get("name"), f"member-{member_id[:8]}")
    program = str(message.get("version") or "")[:40] or None
    owner, storage_id, now = conn.owner, storage_id_for(member_id), time.time()

    if conn.member_id is None:
        ConnectionRecord(conn.connection_id).update(
            actions=[ConnectionRecord.member_id.set(member_id)])
        conn.member_id = member_id
        _connection_cache[conn.connection_id] = conn

    member_actions = [
        MemberRecord.storage_id.set(storage_id), MemberRecord.name.set(name),
        MemberRecord.connection_id.set(conn.connection_id),
        MemberRecord.connected_at.set(conn.connected_at), MemberRecord.last_seen.set(now),
        MemberRecord.version.set(program), MemberRecord.protocol.set(version),
        MemberRecord.created.set(MemberRecord.created | now),
    ]
    try:
        storage = StorageRecord.get(owner, storage_id, consistent_read=True)
    except StorageRecord.DoesNotExist:
        storage = None
    if storage is None:
        storage = StorageRecord(owner, storage_id, kind=MEMBER_KIND, name=name, status=ACTIVE,
                                settings={"member_id": member_id}, capacity=None,
                                provider_used=0, created=datetime.now(timezone.utc))
        try:
            storage.save(condition=StorageRecord.storage_id.does_not_exist())
        except PutError:
            pass                       # a concurrent hello created it: fine, update below
    _bring_online(owner, member_id, storage_id, member_actions)
    report_usage(owner, member_id, capacity=capacity, used=used, free=free, name=name)
    status = StorageRecord.get(owner, storage_id, consistent_read=True).status
    return {"type": "welcome", "id": message.get("id"), "member_id": member_id,
            "storage_id": storage_id, "protocol": version, "status": status,
            "ping_interval": protocol.PING_INTERVAL_SECONDS}


def _bring_online(owner: str, member_id: str, storage_id: str, member_actions: list) -> None:
    member = MemberRecord(owner, member_id)
    storage = StorageRecord(owner, storage_id)
    try:
        with db.transaction() as transaction:
            transaction.update(member, actions=member_actions)
            transaction.update(storage, actions=[StorageRecord.status.set(ACTIVE),
                                                 StorageRecord.down_until.set(0)],
                               condition=StorageRecord.status.is_in(ACTIVE, OFFLINE))
    except TransactWriteError as exc:
        log.info("member %s online: storage left as it is (%s)", member_id,
                 exc.cancellation_reasons or exc)
        # The storage is draining (or was removed): the member is reachable again, but its
        # storage keeps the status its owner chose.
        member.update(actions=member_actions)


def mark_offline(owner: str, member_id: str, connection_id: str) -> bool:
    """Take the member offline if `connection_id` is still its connection. True if it was."""
    now = time.time()
    member = MemberRecord(owner, member_id)
    member_actions = [MemberRecord.connection_id.remove(), MemberRecord.last_seen.set(now)]
    member_condition = MemberRecord.connection_id == connection_id
    try:
        with db.transaction() as transaction:
            transaction.update(member, actions=member_actions, condition=member_condition)
            transaction.update(StorageRecord(owner, storage_id_for(member_id)),
                               actions=[StorageRecord.status.set(OFFLINE)],
                               condition=StorageRecord.status == ACTIVE)
        return True
    except TransactWriteError as exc:
        log.info("member %s offline: storage left as it is (%s)", member_id,
                 exc.cancellation_reasons or exc)
    # Either the member moved to another connection (nothing to do) or its storage is not
    # active (draining, removed): then only the member record changes.
    try:
        member.update(actions=member_actions, condition=member_condition)
        return True
    except UpdateError:
        return False


def ping(conn: ConnectionRecord, message: dict) -> dict:
    reply = {"type": "pong", "id": message.get("id")}
    if not conn.member_id:
        return reply
    try:
        MemberRecord(conn.owner, conn.member_id).update(
            actions=[MemberRecord.last_seen.set(time.time())],
            condition=MemberRecord.connection_id == conn.connection_id)
        reply["registered"] = True
    except UpdateError:
        # Not (or no longer) the member's registered connection, e.g. after a stale-connection
        # error took it offline: the member says hello again.
        reply["registered"] = False
        return reply
    report_usage(conn.owner, conn.member_id, used=protocol.non_negative_int(message, "used", False),
                 free=protocol.non_negative_int(message, "free", False),
                 capacity=protocol.non_negative_int(message, "capacity", False))
    return reply


def report_usage(owner: str, member_id: str, *, used: int | None, free: int | None,
                 capacity: int | None = None, name: str | None = None) -> None:
    """Record what a member reports about its space. The storage's capacity is what the member
    may really fill: at most its configured size, at most what its disk has free."""
    if used is None:
        return
    actions = [StorageRecord.provider_used.set(used),
               StorageRecord.usage_checked.set(time.time())]
    if free is not None:
        room = free if capacity is None else min(free, max(0, capacity - used))
        actions.append(StorageRecord.capacity.set(used + room))
    if name:
        actions.append(StorageRecord.name.set(name))
    try:
        StorageRecord(owner, storage_id_for(member_id)).update(
            actions=actions, condition=StorageRecord.storage_id.exists())
    except UpdateError:
        pass                                # the storage was removed


# -- results -------------------------------------------------------------------------------------

_RESULT_FIELDS = {"ok": bool, "size": int, "sha256": str, "exists": bool, "match": bool,
                  "used": int, "free": int}


def record_result(conn: ConnectionRecord, message: dict) -> None:
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
    try:
        MemberRequest(request_id).update(
            actions=[MemberRequest.status.set("done"), MemberRequest.result.set(result)],
            condition=(MemberRequest.status == "pending") & (MemberRequest.owner == conn.owner)
            & (MemberRequest.member_id == conn.member_id))
    except UpdateError:
        late = _late_put(request_id, conn, result)
        if not late:
            raise protocol.ProtocolError(f"No pending request {request_id} for this member "
                                         f"(unknown, answered already, or timed out).",
                                         code="unknown_request") from None
    if "used" in result:
        report_usage(conn.owner, conn.member_id, used=result["used"], free=result.get("free"))


def _late_put(request_id: str, conn: ConnectionRecord, result: dict) -> bool:
    """A put answered after the server gave up on it: the share is on the member but nothing
    points to it, so ask the member to delete it. True when the request was that case."""
    try:
        request = MemberRequest.get(request_id, consistent_read=True)
    except DoesNotExist:
        return False
    if request.owner != conn.owner or request.member_id != conn.member_id:
        return False
    if request.status == "abandoned" and request.op == "put" and result.get("ok"):
        from cloudstrype.array.backend import send_untracked
        send_untracked(conn.owner, conn.member_id, conn.connection_id, "delete", request.key)
        return True
    return request.status == "abandoned"


# -- reading the registry ------------------------------------------------------------------------

def get_member(owner: str, member_id: str) -> MemberRecord:
    if not protocol.valid_member_id(member_id):
        raise errors.NotFound(f"No member {member_id}.", code="member_not_found")
    try:
        return MemberRecord.get(owner, member_id, consistent_read=True)
    except MemberRecord.DoesNotExist:
        raise errors.NotFound(f"No member {member_id}.", code="member_not_found") from None


def is_online(member: MemberRecord, now: float | None = None) -> bool:
    # A member pings every few minutes; one silent past API Gateway's idle limit is gone even if
    # its $disconnect was lost.
    now = now or time.time()
    return bool(member.connection_id) and \
        now - float(member.last_seen or 0) < protocol.SILENT_OFFLINE_SECONDS


def list_members(owner: str) -> list[MemberRecord]:
    return list(MemberRecord.query(owner))


def describe(member: MemberRecord, storage: StorageRecord | None) -> dict:
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


def forget_member(member: MemberRecord) -> None:
    member.delete()
