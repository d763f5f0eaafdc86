"""The trash: a deleted item (a file with its versions, or a directory with everything under
it) stays its owner's, unreachable by path or id, until it is restored, deleted for good, or
older than the owner's retention; then the scheduled sweep frees its chunks (files.py).

Restoring puts the item back into its original directory (followed by id, wherever that
directory is now) under its original name. If that directory is gone, the directories of the
original path are made again; if the name is taken, the item gets a dated suffix
(`report (restored 2026-12-01).txt`). A caller may name the directory and/or the name instead
(an explicit name that is taken is a conflict, never suffixed). Docs: docs/trash-api.md.
"""
from __future__ import annotations

import logging
import posixpath
import time
from datetime import datetime, timezone
from typing import Iterator

from cloudstrype import errors
from cloudstrype.pipeline.chunk_store import Blob, chunk_store
from cloudstrype.tree import tree
from cloudstrype.tree.store import (
    DIRECTORY,
    FILE,
    ROOT,
    BadCursor,
    Changed,
    NameTaken,
    Node,
    Trashed,
    tree_store,
)

DEFAULT_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 3650
DAY_SECONDS = 24 * 3600
# Measuring what a deleted directory holds reads every file's versions; a delete spends at most
# this long on it (a larger tree shows the bytes measured by then).
MEASURE_SECONDS = 5.0
# And on noting which contents stored once it counted (_mark_counted).
MARK_SECONDS = 2.0
# Suffixes tried for a restore whose name is taken, before giving up with a conflict.
MAX_RESTORE_SUFFIXES = 100

log = logging.getLogger("cloudstrype.trash")


def _not_found(node_id) -> errors.ApiError:
    return errors.NotFound(f"No item {errors.shown(repr(node_id))} in your trash.",
                           code="trash_item_not_found")


# -- retention ------------------------------------------------------------------------------------

def check_retention(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 0 <= value <= MAX_RETENTION_DAYS:
        raise errors.BadRequest(f"Field 'trash_retention_days' must be a whole number of days "
                                f"from 0 to {MAX_RETENTION_DAYS} (0: the next sweep deletes "
                                f"trash for good).", code="invalid_field",
                                details={"field": "trash_retention_days"})
    return value


def retention_days(owner: str) -> int:
    profile = tree_store().get_profile(owner)
    if profile is None or profile.trash_retention_days is None:
        return DEFAULT_RETENTION_DAYS
    return profile.trash_retention_days


def apply_retention(owner: str, days: int) -> None:
    """Move the due time of what is in the owner's trash to the new retention (the trash holds
    top-level deleted items only, so this is one small write per item deleted)."""
    trees = tree_store()
    cursor = None
    while True:
        items, cursor = trees.list_trash(owner, 100, cursor)
        for item in items:
            trees.set_purge_at(item, item.trashed_at + days * DAY_SECONDS)
        if not cursor:
            return


# -- deleting ------------------------------------------------------------------------------------

def frees_alone(version) -> int:
    """What freeing a version whose content is its own (not stored once) frees, as the trash
    counts it: a packed file its blob as stored (with its nonce and tag), else its size."""
    return int(version.pack_length if version.pack_chunk and version.pack_length is not None
               else version.size)


def measure(owner: str, node: Node, deadline: float) -> tuple[int, int, list[tuple[Blob, int]]]:
    """(size, frees, counted): the bytes of every version of the file, or of every file under
    the directory; of those, what deleting it for good would free; and the contents stored
    once that `frees` counts, each with its bytes. A content stored once (tree/files.py) counts
    in `frees` once, and only if every file version reading it is under the item: one also read
    by a file kept (a duplicate left in place) stays stored. What was measured by the deadline
    if that comes first."""
    trees = tree_store()
    size, frees, pending = 0, 0, [node]
    readers: dict[str, list[int]] = {}          # content key -> [versions under it, bytes]
    while pending and time.monotonic() < deadline:
        current = pending.pop()
        if current.type == FILE:
            for version in trees.list_versions(owner, current.node_id):
                size += int(version.size)
                if version.content_key:
                    readers.setdefault(version.content_key, [0, int(version.size)])[0] += 1
                else:
                    frees += frees_alone(version)
            continue
        cursor = None
        while True:
            entries, cursor = trees.list_entries(owner, current.node_id, 1000, cursor)
            for entry in entries:
                pending.append(Node(owner, entry.node_id, entry.type, entry.name,
                                    current.node_id, entry.modified, entry.modified))
            if not cursor:
                break
    # One batched read (the engines page it); a content being let go is absent: it goes.
    stored = chunk_store().find_blobs(owner, list(readers)) if readers else {}
    counted = []
    for key, (under, length) in readers.items():
        blob = stored.get(key)
        if blob is None or blob.refs <= under:
            amount = length if blob is None or blob.chunked else int(blob.length)
            frees += amount
            if blob is not None:
                counted.append((blob, amount))
    return size, frees, counted


def move_to_trash(owner: str, node: Node) -> Trashed:
    """Delete for its owner at once: the item goes to the owner's trash, O(1) writes whatever it
    holds."""
    if node.node_id == ROOT:
        raise errors.BadRequest("The root directory cannot be deleted.", code="invalid_target")
    path = tree.path_of(owner, node)
    size, frees, counted = measure(owner, node, time.monotonic() + MEASURE_SECONDS)
    stamp = tree.now()
    try:
        trashed = tree_store().trash(node, stamp, path=path, size=size, counted=frees,
                                     purge_at=int(stamp) + retention_days(owner) * DAY_SECONDS)
    except Changed:
        raise errors.Conflict("The item changed while it was being deleted; try again.",
                              code="concurrent_change") from None
    _mark_counted(trashed, counted, time.monotonic() + MARK_SECONDS)
    # Counted again from what is there now: files that landed in a folder as it was measured,
    # and versions deleted for good meanwhile (files.delete_earlier_version).
    recount(owner, trashed)
    return trashed


# deleted_state: the folder is deleted for good (or gone).
FOR_GOOD = "for good"


def deleted_state(owner: str, directory_id: str) -> str | Trashed | None:
    """Whether the directory is deleted, read now: None (it is not), FOR_GOOD (it, or a
    folder above it, is gone or deleted for good), or the trash item it is in."""
    if directory_id == ROOT:
        return None
    trees = tree_store()
    directory = trees.get_node(owner, directory_id)
    found = trees.trashed_above(directory) if directory is not None else None
    if directory is not None and found is None:
        return None
    item = trees.get_trashed(owner, found.node_id, doomed=True) if found is not None else None
    return FOR_GOOD if item is None or item.doomed else item


RECOUNT_ATTEMPTS = 5


def recount(owner: str, item: Trashed) -> None:
    """Count a deleted folder again from what is under it now. Nothing makes a create wait on
    its folder, so a file can land in it after the delete measured it: the delete counts again
    once the folder is in the trash (catching writes that landed before that), and a write
    that finds its folder in the trash does (catching the rest); whichever measures last sets
    the count, so nothing is counted twice. A measure cut short by its deadline sets nothing."""
    trees = tree_store()
    for _attempt in range(RECOUNT_ATTEMPTS):
        current = trees.get_trashed(owner, item.node.node_id)
        if current is None or current.trashed_at != item.trashed_at:
            return                      # restored, emptied or deleted for good meanwhile
        deadline = time.monotonic() + MEASURE_SECONDS
        size, frees, counted = measure(owner, current.node, deadline)
        if time.monotonic() >= deadline:
            log.warning("trash item %s: not counted again within %ss", item.node.node_id,
                        MEASURE_SECONDS)
            return
        if (size, frees) == (current.size, current.counted):
            return
        if trees.recount_trashed(current, size, frees):
            _mark_counted(current, counted, time.monotonic() + MARK_SECONDS)
            return


def trash_late(owner: str, node: Node) -> Node | None:
    """A file made in a folder deleted for good at the same moment, taken out of the tree as
    its folder's delete would have: to the trash and deleted for good (the caller frees it);
    None if it moved on meanwhile (someone else deleted it)."""
    size, frees, _counted = measure(owner, node, time.monotonic() + MEASURE_SECONDS)
    try:
        trashed = tree_store().trash(node, tree.now(), path=f"/{node.name}", size=size,
                                     counted=frees, purge_at=0)
        return tree_store().doom(trashed)
    except Changed:
        return None


def _mark_counted(trashed: Trashed, counted: list[tuple[Blob, int]], deadline: float) -> None:
    """Note on each content stored once that the trash item counts it, so that a file uploaded
    again with that content (which then reads it, and emptying the trash no longer frees it)
    takes it back out of the trash bytes. What is not noted by the deadline (or a crash) stays
    counted until the item is emptied or restored: the trash bytes may then be high by it."""
    for blob, amount in counted:
        if time.monotonic() >= deadline:
            break
        chunk_store().mark_in_trash(
            blob, f"{trashed.node.node_id}:{trashed.trashed_at}:{amount}")


def _counted_by(blob: Blob) -> tuple[str, int, int] | None:
    """(trash item, its trashed_at, bytes) that counts `blob` (_mark_counted), if one does."""
    try:
        node_id, trashed_at, amount = (blob.trash_mark or "").rsplit(":", 2)
        return node_id, int(trashed_at), int(amount)
    except ValueError:
        return None


def uncount_freed(owner: str, item: Trashed | None, amount: int) -> None:
    """Bytes a trash item counts were just freed (a version of it, while it is emptied): out
    of its count and the owner's trash bytes now, not when the whole item is gone, so a large
    item being emptied is not counted twice meanwhile (in the trash, and as freed: stored
    bytes gone, or dead in a pack). Best effort: what is not taken out here the item's
    removal takes (tree/store.py remove)."""
    if item is not None and amount > 0:
        tree_store().uncount_trashed(owner, item.node.node_id, item.trashed_at, amount)


def freed_while_counted(owner: str, blob: Blob) -> None:
    """Content stored once that a trash item counts was freed (its last reader went): out of
    that item's count now, as uncount_freed."""
    counted = _counted_by(blob)
    if counted is not None:
        node_id, trashed_at, amount = counted
        tree_store().uncount_trashed(owner, node_id, trashed_at, amount)


def claimed_from_trash(owner: str, blob: Blob) -> None:
    """A new file reads `blob` (content claimed by its attach, see tree/files.py): if a trash
    item counted it as freed by emptying, it no longer is, and comes out of the count. Best
    effort after the attach: if this does not happen, the count stays high by it until the
    item is emptied or restored."""
    counted = _counted_by(blob)
    if counted is None:
        return
    node_id, trashed_at, amount = counted
    mark = blob.trash_mark
    unmark = chunk_store().unmark_operation(blob, mark)
    try:
        if not tree_store().uncount_trashed(owner, node_id, trashed_at, amount, (unmark,)):
            # Restored or emptied since (or counted otherwise): the mark alone goes.
            chunk_store().apply((unmark,))
    except errors.ApiError as exc:
        log.warning("content %s: the trash's count of it was not taken back: %s",
                    blob.content_key, exc.message)


# -- the owner's view -----------------------------------------------------------------------------

def describe(item: Trashed) -> dict:
    node = item.node
    return {"id": node.node_id, "name": node.name, "type": node.type,
            "original_path": item.original_path, "size": item.size,
            "deleted": tree.iso(item.trashed_at), "purge_after": tree.iso(item.purge_at)}


def listing(owner: str, limit: int, cursor: str | None) -> dict:
    try:
        items, next_cursor = tree_store().list_trash(owner, limit, cursor or None)
    except BadCursor:
        raise errors.BadRequest("The 'cursor' is not one this API gave out.",
                                code="invalid_cursor") from None
    return {"items": [describe(item) for item in items], "next_cursor": next_cursor,
            "retention_days": retention_days(owner)}


def get(owner: str, node_id) -> Trashed:
    found = tree_store().get_trashed(owner, node_id) if isinstance(node_id, str) and \
        0 < len(node_id) <= 64 else None
    if found is None:
        raise _not_found(node_id)
    return found


# -- restoring ------------------------------------------------------------------------------------

def restored_name(name: str, type_: str, day: str, attempt: int) -> str:
    """`name (restored <day>)`, `name (restored <day> 2)`, …; a file's extension stays last."""
    tag = f" (restored {day}{f' {attempt}' if attempt > 1 else ''})"
    stem, dot, extension = name.rpartition(".")
    if type_ != FILE or not dot or not stem or not extension:
        # No extension ("notes", ".bashrc", "trail."): the whole name, then the tag.
        stem, extension = name, ""
    extension = f".{extension}" if extension else ""
    # Within the name limit: shorten the stem, never the tag or the extension.
    room = tree.MAX_NAME_BYTES - len((tag + extension).encode("utf-8"))
    while len(stem.encode("utf-8")) > room:
        stem = stem[:-1]
    return stem + tag + extension


def _original_parent(owner: str, item: Trashed) -> Node:
    """The directory the item was deleted from, wherever it is now; if it is gone (freed, or
    in the trash), the original path's directories, made again."""
    trees = tree_store()
    parent = trees.get_node(owner, item.original_parent_id)
    if parent is not None and parent.type == DIRECTORY and not trees.in_trash(parent):
        return parent
    directory, _ = tree.make_dirs(owner, posixpath.dirname(item.original_path) or "/")
    return directory


def restore(owner: str, node_id, directory: str | None = None,
            name: str | None = None) -> tuple[Node, Trashed]:
    """Put a trash item back (see the module's doc), all or nothing; of racing restores and
    deletes of one item exactly one wins."""
    item = get(owner, node_id)
    wanted = tree.check_name(name) if name is not None else None
    if directory is not None:
        parent, _ = tree.make_dirs(owner, directory)
    else:
        parent = _original_parent(owner, item)
    # Where it was, its path was within the limit; its new folder may be deeper (or have been
    # moved deeper since).
    tree.refuse_too_deep(owner, item.node, parent, depth=len(tree.split_path(item.original_path)))
    if wanted is not None:
        candidates = [wanted]
    else:
        day = datetime.now(timezone.utc).date().isoformat()
        candidates = [item.node.name] + [restored_name(item.node.name, item.node.type, day, n)
                                         for n in range(1, MAX_RESTORE_SUFFIXES + 1)]
    trees = tree_store()
    for candidate in candidates:
        try:
            return trees.restore(item, parent, candidate), item
        except NameTaken:
            continue
        except Changed:
            if trees.get_trashed(owner, item.node.node_id) is None:
                raise _not_found(node_id) from None
            raise errors.Conflict("The item or its target directory changed while it was being "
                                  "restored; try again.", code="concurrent_change") from None
    where = tree.path_of(owner, parent)
    raise errors.Conflict(f"'{candidates[-1]}' exists already in {where}; restore it under "
                          f"another 'name' or into another 'path'.", code="name_exists",
                          details={"field": "name"})


# -- deleting for good ---------------------------------------------------------------------------

def doom(owner: str, node_id) -> Node:
    """Take an item out of the trash for good; its content is the caller's to free (files.py)."""
    item = get(owner, node_id)
    try:
        return tree_store().doom(item)
    except Changed:
        if tree_store().get_trashed(owner, item.node.node_id) is None:
            raise _not_found(node_id) from None
        raise errors.Conflict("The item changed while it was being deleted; try again.",
                              code="concurrent_change") from None


def doom_all(owner: str, deadline: float) -> tuple[list[Node], bool]:
    """Take every item out of the owner's trash for good; (their nodes, whether the trash was
    emptied before the deadline)."""
    trees = tree_store()
    doomed: list[Node] = []
    while time.monotonic() < deadline:
        items, _ = trees.list_trash(owner, 100)
        if not items:
            return doomed, True
        for item in items:
            try:
                doomed.append(trees.doom(item))
            except Changed:
                pass          # restored or deleted meanwhile
    return doomed, False


def due(now: float) -> Iterator[Node]:
    """Every owner's trashed nodes to free now: deleted for good, or past their retention
    (these are taken out of the trash first, so a racing restore either wins or finds them
    gone)."""
    trees = tree_store()
    for found in trees.due_for_purge(now):
        current = trees.get_trashed(found.node.owner, found.node.node_id, doomed=True)
        if current is None:
            continue          # restored, or freed, since the index saw it
        if current.doomed:
            yield current.node
        elif current.purge_at <= now:
            try:
                yield trees.doom(current)
            except Changed:
                continue
