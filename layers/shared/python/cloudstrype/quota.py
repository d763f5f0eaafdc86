"""Per-user limits on what a user keeps: bytes of data (the `quota_bytes` setting, 0 for
unlimited) and open upload sessions (`max_open_uploads`).

- `usage` (owner): two counters per user, changed only by atomic adds, never recomputed by a
  scan. `stored_bytes` is the plaintext size of every chunk the user has (added in the
  transaction that records a chunk, taken off in the one that deletes it), so files, all their
  versions, the parts of open sessions and raw chunks and blobs all count, once each.
  `open_uploads` goes up when a session is created and down once when it is committed, aborted
  or swept. `trash_bytes` is the part of `stored_bytes` that is in the trash (or being freed
  from it): the tree store adds an item's bytes in the transaction that trashes it and takes
  them off in the one that restores or finally removes it. The quota counts the trash too.
  `dead_bytes` is the part of `stored_bytes` that no file uses any more but that still sits in
  packs (pipeline/packs.py): a packed file's blob, once deleted or replaced, stays in its pack
  until compaction (tree/compaction.py) rewrites the pack or its last file goes. It is added in
  the transaction that releases the blob (or records a compaction's new pack) and taken off in
  the one that frees the pack.

Every counter changes in the transaction of the record it counts, so a server stopped at any
moment leaves them right. A charge is conditional on the limit, so racing writers cannot
overshoot it together; whether a chunk fits is also read before its shares are written.
"""
from __future__ import annotations

from cloudstrype import errors
from cloudstrype.metadata import schema
from cloudstrype.metadata.engine import Change, Condition, ConditionFailed, Update, get_engine
from cloudstrype.metadata.schema import INT, STR
from cloudstrype.settings import get_settings

USAGE = schema.table("usage", hash_key="owner", owner_module=__name__,
                     fields={"owner": STR, "stored_bytes": INT, "open_uploads": INT,
                             "trash_bytes": INT, "dead_bytes": INT})

# A session's status lists its parts; this many (2 TiB of 4 MiB parts) still fit one response.
MAX_SESSION_FILE_BYTES = 2 * 1024 ** 4


def quota_bytes() -> int:
    return max(0, int(get_settings().quota_bytes or 0))


def max_open_uploads() -> int:
    return max(1, int(get_settings().max_open_uploads or 1))


def max_file_bytes() -> int:
    return max(0, min(int(get_settings().max_file_bytes), MAX_SESSION_FILE_BYTES))


def usage(owner: str) -> dict:
    """The user's counters and limits (0 quota: unlimited)."""
    item = get_engine().get(USAGE, {"owner": owner}) or {}
    stored = max(0, int(item.get("stored_bytes", 0)))
    trash = max(0, int(item.get("trash_bytes", 0)))
    dead = max(0, int(item.get("dead_bytes", 0)))
    return {"stored_bytes": stored, "live_bytes": max(0, stored - trash - dead),
            "trash_bytes": trash, "dead_bytes": dead,
            "quota_bytes": quota_bytes(),
            "open_uploads": max(0, int(item.get("open_uploads", 0))),
            "max_open_uploads": max_open_uploads(), "max_file_bytes": max_file_bytes()}


def check_room(owner: str, size: int) -> None:
    """Refuse early (nothing written) what could not fit the quota; the bytes are charged when
    they are stored."""
    if size > 0 and not has_room(owner, size):
        raise over_quota(owner, size)


def charge_operation(owner: str, size: int, within_quota: bool = True,
                     dead: bool = False) -> Update:
    """The charge of `size` stored bytes, for the transaction that records what holds them (a
    chunk): counted exactly when the record is, so a server stopped in between leaves no
    charge for bytes nobody holds. Within the quota it holds only while the count stays within
    it (the caller then raises over_quota); a counter never written yet fails that condition
    too: ensure_counter makes it, and the transaction is tried again. `dead`: the bytes count
    as dead too (a compaction's new pack, until files are moved in)."""
    limit = quota_bytes() if within_quota else 0
    change = Change(add={"stored_bytes": int(size), **({"dead_bytes": int(size)} if dead
                                                       else {})})
    if not limit or size <= 0:
        return Update(USAGE, {"owner": owner}, change)
    return Update(USAGE, {"owner": owner}, change,
                  Condition.compare("stored_bytes", "le", limit - size))


def stored_bytes_change(owner: str, amount: int, dead: bool = False) -> Update:
    """`amount` more (negative: fewer) stored bytes, for the transaction that deletes a record
    holding them; `dead`: as many dead bytes too (a pack no file uses)."""
    return Update(USAGE, {"owner": owner}, Change(add={
        "stored_bytes": int(amount), **({"dead_bytes": int(amount)} if dead else {})}))


def ensure_counter(owner: str) -> bool:
    """Make the owner's stored-bytes counter (0) if it was never written; True if it had to."""
    try:
        get_engine().update(USAGE, {"owner": owner}, Change(add={"stored_bytes": 0}),
                            Condition.missing("stored_bytes"))
        return True
    except ConditionFailed:
        return False


def has_room(owner: str, size: int) -> bool:
    limit = quota_bytes()
    return not limit or usage(owner)["stored_bytes"] + size <= limit


def too_big_alone(owner: str, sizes: dict) -> dict:
    """For a batch (key -> size): when all of it cannot fit the quota, the keys whose size
    cannot fit even alone, each with its refusal; the rest are tried, and a charge that would
    pass the limit is refused when its chunk is recorded. One usage read."""
    limit = quota_bytes()
    if not limit:
        return {}
    used = usage(owner)["stored_bytes"]
    if used + sum(sizes.values()) <= limit:
        return {}
    return {key: _over_quota(size, used, limit) for key, size in sizes.items()
            if size > 0 and used + size > limit}


def over_quota(owner: str, size: int) -> errors.ApiError:
    return _over_quota(size, usage(owner)["stored_bytes"], quota_bytes())


def open_upload(owner: str) -> None:
    """Count one more open session, or raise 409 too_many_uploads (nothing counted)."""
    limit = max_open_uploads()
    if not _add(owner, "open_uploads", 1, limit):
        raise errors.Conflict(
            f"You have {limit} upload sessions open, the most allowed; commit or abort one "
            f"(DELETE /api/filesystem/uploads/<id>) or let it expire, then start this one.",
            code="too_many_uploads", details={"max_open_uploads": limit})


def close_upload(owner: str) -> None:
    _add(owner, "open_uploads", -1, None)


def trash_bytes_change(owner: str, amount: int) -> Update:
    """The write that moves `amount` bytes into (negative: out of) the owner's trash count, for
    the tree store to make part of the transaction that trashes, restores or frees an item."""
    return Update(USAGE, {"owner": owner}, Change(add={"trash_bytes": int(amount)}))


def dead_bytes_change(owner: str, amount: int) -> Update:
    """The write that counts `amount` more bytes (negative: fewer) as dead in packs, for the
    transaction that releases a blob."""
    return Update(USAGE, {"owner": owner}, Change(add={"dead_bytes": int(amount)}))


def _add(owner: str, name: str, amount: int, limit: int | None) -> bool:
    """Add atomically; with a limit, only if the result stays within it (False otherwise)."""
    engine, key = get_engine(), {"owner": owner}
    if limit is None:
        engine.update(USAGE, key, Change(add={name: amount}))
        return True
    if amount > limit:
        return False
    for _ in range(2):
        try:
            engine.update(USAGE, key, Change(add={name: amount}),
                          Condition.compare(name, "le", limit - amount))
            return True
        except ConditionFailed:
            pass
        try:
            # The user's first use: no counter yet (a missing field counts as 0).
            engine.update(USAGE, key, Change(add={name: amount}), Condition.missing(name))
            return True
        except ConditionFailed:
            pass        # another first use made the counter meanwhile: check the limit again
    return False


def _over_quota(size: int, used: int, limit: int) -> errors.ApiError:
    return errors.PayloadTooLarge(
        f"This needs {size} more bytes, but {used} of your quota of {limit} bytes are in use. "
        f"Delete files (a file's earlier versions go with it) and empty the trash, or ask "
        f"the operator for a larger quota.",
        code="quota_exceeded",
        details={"quota_bytes": limit, "stored_bytes": used, "needed_bytes": size})
