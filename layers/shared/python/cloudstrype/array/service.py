"""What the array service's REST routes do: list, drain, verify and remove members; raw blobs
stored on members only.

The chunk pipeline and the storage rules are imported by the functions that use them, not with
the module: the array function's WebSocket handlers (connect, every message, disconnect) load
this module with the routes and never use them, and they were a third of its cold start
(bench/cold_start.py)."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from cloudstrype import errors
from cloudstrype.array import connections, members
from cloudstrype.array.backend import TRANSFER_TIMEOUT_SECONDS, MemberBackend
from cloudstrype.backends.base import BackendError, ShareNotFound
from cloudstrype.storages.store import MEMBER_KIND

MEMBER_KINDS = frozenset({MEMBER_KIND})
VERIFY_PARALLEL = 8
# A share is asked to be verified only with at least this long left of the budget.
MIN_VERIFY_SECONDS = 0.5


def list_members(owner: str) -> list[dict]:
    from cloudstrype.storages import service as storages
    by_id = {s.storage_id: s for s in storages.list_storages(owner)}
    found = members.list_members(owner)
    found.sort(key=lambda m: (m.name.lower(), m.member_id))
    return [members.describe(m, by_id.get(m.storage_id)) for m in found]


def get_member(owner: str, member_id: str) -> dict:
    from cloudstrype.storages import service as storages
    member = members.get_member(owner, member_id)
    try:
        storage = storages.get_storage(owner, member.storage_id)
    except errors.NotFound:
        storage = None
    return members.describe(member, storage)


def delete_member(owner: str, member_id: str) -> None:
    from cloudstrype.pipeline import store
    from cloudstrype.storages import service as storages
    member = members.get_member(owner, member_id)
    held = len(store.shares_on(owner, member.storage_id))
    if held:
        raise errors.Conflict(f"Member '{member.name}' still holds {errors.plural(held, 'share')}. "
                              f"Drain it first "
                              f"(POST /api/array/members/{member_id}/drain, again while it "
                              f"answers 202) to move them elsewhere.", code="member_not_empty",
                              details={"shares": held})
    try:
        store.delete_leftovers_on(owner, member.storage_id)
        storages.delete_storage(owner, member.storage_id, 0)
    except errors.NotFound:
        pass
    members.forget_member(member)
    if member.connection_id:
        # Tell the program why, then hang up; it stops instead of reconnecting.
        try:
            connections.send(member.connection_id, {
                "type": "removed", "member_id": member_id,
                "reason": "This member was removed from the account."})
            connections.close(member.connection_id)
        except Exception:   # it is removed either way; a later hello is told so (was_removed)
            pass


def drain_member(owner: str, member_id: str, start: bool = True) -> dict:
    from cloudstrype.pipeline import store
    member = members.get_member(owner, member_id)
    result = store.drain_storage(owner, member.storage_id, start=start)
    return {**result, "member_id": member_id}


def stop_draining_member(owner: str, member_id: str) -> dict:
    """The member takes new shares again (once connected); the shares moved stay moved."""
    from cloudstrype.storages import service as storages
    member = members.get_member(owner, member_id)
    storages.stop_draining(owner, member.storage_id,
                           member_online=members.is_online(member))
    return get_member(owner, member_id)


def verify_member(owner: str, member_id: str, budget_seconds: float = 20.0) -> dict:
    """Have the member hash every share it holds against the hash recorded at write time; bad
    or missing shares are marked damaged so repair re-creates them. No share bytes move."""
    from cloudstrype.pipeline import store
    member = members.get_member(owner, member_id)
    if not members.is_online(member):
        raise errors.Conflict(f"Member '{member.name}' is offline; it can be verified when it is "
                              f"connected.", code="member_offline")
    backend = MemberBackend(owner, member_id, member.name)
    placements = store.shares_on(owner, member.storage_id)
    deadline = time.monotonic() + budget_seconds
    checks, unread = [], 0
    for chunk_id, index in placements:
        if time.monotonic() > deadline:
            unread += 1
            continue
        record = store.find_chunk(owner, chunk_id)
        if record is None:
            continue
        for share in record.shares:
            if int(share.index) == index and share.storage_id == member.storage_id:
                checks.append((record, index, share.key,
                               record.meta["share_hashes"][index]))
    bad, problems, checked = [], [], 0

    def check(item):
        record, index, key, expected = item
        left = deadline - time.monotonic()
        if left < MIN_VERIFY_SECONDS:
            return item, "skipped"
        try:
            # Within what is left of the budget: a member that stops answering must not hold
            # the answer past the gateway's limit (a 504, and every result lost).
            return item, "ok" if backend.verify(key, expected, timeout=min(
                TRANSFER_TIMEOUT_SECONDS, left)) else "corrupt"
        except ShareNotFound:
            return item, "missing"
        except BackendError as exc:
            if time.monotonic() >= deadline:
                return item, "skipped"          # out of time, not known to be unreachable
            return item, f"unreachable: {exc}"

    with ThreadPoolExecutor(max_workers=VERIFY_PARALLEL) as pool:
        outcomes = list(pool.map(check, checks))
    skipped = 0
    for (record, index, _key, _expected), outcome in outcomes:
        if outcome == "skipped":
            skipped += 1
            continue
        checked += 1
        if outcome in ("corrupt", "missing"):
            bad.append({"chunk_id": record.chunk_id, "index": index, "problem": outcome})
            store.mark_damaged(owner, record.chunk_id, {index})
        elif outcome != "ok":
            problems.append({"chunk_id": record.chunk_id, "index": index, "problem": outcome})
    return {"member_id": member_id, "checked": checked, "ok": checked - len(bad) - len(problems),
            "bad": bad, "problems": problems[:20], "remaining": skipped + unread}


def put_blob(owner: str, chunk_id: str, data: bytes, replicas: int | None) -> dict:
    from cloudstrype.pipeline import store
    stored = store.put_chunk(owner, data, encryption="none",
                             durability=f"raid1({replicas})" if replicas else None,
                             chunk_id=store.check_named_chunk_id(chunk_id),
                             kinds=MEMBER_KINDS)
    by_id = {m.storage_id: m for m in members.list_members(owner)}
    result = stored.public()
    result["members"] = [{"id": by_id[s["storage_id"]].member_id,
                          "name": by_id[s["storage_id"]].name}
                         for s in result["shares"] if s["storage_id"] in by_id]
    return result


def get_blob(owner: str, chunk_id: str) -> bytes:
    from cloudstrype.pipeline import store
    return store.get_chunk(owner, chunk_id)


def delete_blob(owner: str, chunk_id: str) -> None:
    from cloudstrype.pipeline import store
    store.delete_named_chunk(owner, chunk_id)
