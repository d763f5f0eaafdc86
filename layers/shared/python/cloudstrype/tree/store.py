"""The file tree's metadata: its tables, its records, and `TreeStore`, the one module that
reads and writes them (over whichever metadata engine the settings choose).

- `nodes` (owner, node_id): a file or directory; a directory tree by parent pointers, so moving
  a directory is one node and two entries whatever it holds. A file's current version is
  copied onto its node. A deleted node moves under TRASH (O(1)) with what the trash shows
  (original parent and path, bytes, when it is due); the sparse `by-purge` index is the
  sweep's queue, by due time, of every owner's trash (a deleted-for-good item is due at 0).
- `entries` (owner#parent_id, name): the directory index. A name is unique in its directory
  because an entry is only ever created if absent; a listing is one query, sorted by name, with
  what a listing shows (id, type, size, modified) copied onto the entry.
  The owner's trash is the partition owner#trash, its names `<deleted seconds>.<node id>`,
  so it lists by deletion time.
- `versions` (owner#node_id, version_id): each upload of a file, oldest first. One partition per
  file, not per user: listing a file's versions reads that file's items only.
- `uploads` (owner, upload_id) / `upload-parts` (owner#upload_id, part): sessions for files
  larger than one request. The sweep finds expired sessions through the sparse `by-expiry`
  index; `purge_at` (a week later) is only the engine's backstop.
- `profiles` (owner): a user's defaults and trash retention.

Times are Unix seconds (float). Every item carries its owner and every read checks it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterator

from cloudstrype import quota
from cloudstrype.metadata import schema
from cloudstrype.metadata.engine import (
    MAX_TRANSACTION_ITEMS,
    Change,
    Check,
    Condition,
    ConditionFailed,
    Delete,
    Engine,
    Put,
    Update,
    get_engine,
)
from cloudstrype.metadata.engine import BadCursor as BadCursor  # re-exported for callers
from cloudstrype.metadata.schema import BOOL, INT, JSON, STR, Index

DIRECTORY, FILE = "directory", "file"
ROOT = "root"
# The parent of deleted nodes (in the trash, or being freed): no directory, so nothing under
# it resolves by path; by id, `in_trash` tells.
TRASH = "trash"
_TRASH_QUEUE = "trash"
# The one partition of the sweep's index: sessions are few (large files only) and short-lived.
_EXPIRY_QUEUE = "uploads"

NODES = schema.table(
    "nodes", hash_key="owner", range_key="node_id", owner_module=__name__,
    fields={"owner": STR, "node_id": STR, "type": STR, "name": STR, "parent_id": STR,
            "created": INT, "modified": INT, "attributes": JSON, "revision": INT,
            "version_id": STR, "size": INT, "content_type": STR, "sha256": STR, "etag": STR,
            "durability": STR, "encryption": STR, "trash_queue": STR, "trashed_at": INT,
            "trash_parent_id": STR, "trash_path": STR, "trash_bytes": INT,
            "trash_counted": INT, "purge_at": INT, "doomed": BOOL, "trash_entry": STR},
    # Trashed nodes of every owner by the time they are due to be freed (deleted for good: 0).
    indexes=(Index("by-purge", hash_key="trash_queue", range_key="purge_at"),))

ENTRIES = schema.table(
    "entries", hash_key="parent_ref", range_key="name", owner_module=__name__,
    fields={"parent_ref": STR, "name": STR, "owner": STR, "node_id": STR, "type": STR,
            "size": INT, "modified": INT,
            # A file's content hash, so a listing tells an unchanged file by content too.
            "sha256": STR})

VERSIONS = schema.table(
    "versions", hash_key="file_ref", range_key="version_id", owner_module=__name__,
    fields={"file_ref": STR, "version_id": STR, "owner": STR, "size": INT, "chunk_size": INT,
            "chunk_count": INT, "sha256": STR, "etag": STR, "content_type": STR,
            "durability": STR, "encryption": STR, "created": INT,
            # A packed version (pipeline/packs.py): its blob's chunk, place and SHA-256.
            "pack_chunk": STR, "pack_offset": INT, "pack_length": INT, "blob_hash": STR,
            # Or content stored once for the owner: the blob (chunk_store.BLOBS) it reads, and
            # for chunked content the version whose chunks hold it (if not this one).
            "content_key": STR, "chunk_source": STR},
    # The versions whose blobs a pack holds: what compaction moves (tree/compaction.py).
    indexes=(Index("by-pack", hash_key="pack_chunk", range_key="version_id"),))

UPLOADS = schema.table(
    "uploads", hash_key="owner", range_key="upload_id", owner_module=__name__,
    fields={"owner": STR, "upload_id": STR, "directory": STR, "name": STR, "size": INT,
            "chunk_size": INT, "content_type": STR, "durability": STR, "encryption": STR,
            "sha256": STR, "version_id": STR, "created": INT, "expires_at": INT,
            "purge_at": INT, "committed": BOOL, "aborted": BOOL, "duplicate": BOOL,
            "intent": BOOL, "expiry_queue": STR, "parts_revision": INT, "uploader": STR,
            "share_id": STR},
    indexes=(Index("by-expiry", hash_key="expiry_queue", range_key="expires_at"),),
    expires="purge_at")

UPLOAD_PARTS = schema.table(
    "upload-parts", hash_key="upload_ref", range_key="part", owner_module=__name__,
    fields={"upload_ref": STR, "part": INT, "owner": STR, "size": INT, "sha256": STR,
            "expires_at": INT, "purge_at": INT, "pending": BOOL},
    expires="purge_at")

PROFILES = schema.table(
    "profiles", hash_key="owner", owner_module=__name__,
    fields={"owner": STR, "default_durability": STR, "default_encryption": STR,
            "trash_retention_days": INT})


# A new file's writes: its directory entry, its node and its first version.
NEW_FILE_WRITES = 3


class TreeConflict(Exception):
    """A write lost a race; nothing was written."""


class NameTaken(TreeConflict):
    """The directory has an entry of that name already."""


class Changed(TreeConflict):
    """The node changed (or went) since it was read."""


class AlongFailed(TreeConflict):
    """An operation the caller made part of the write failed its condition; nothing was
    written."""


@dataclass
class Node:
    owner: str
    node_id: str
    type: str
    name: str
    parent_id: str | None          # None for the root
    created: float
    modified: float
    attributes: dict = field(default_factory=dict)
    revision: int = 1
    # Files: the current version.
    version_id: str | None = None
    size: int = 0
    content_type: str | None = None
    sha256: str | None = None
    etag: str | None = None
    durability: str | None = None
    encryption: str | None = None


@dataclass
class Entry:
    owner: str
    parent_id: str
    name: str
    node_id: str
    type: str
    size: int
    modified: float
    sha256: str | None = None


@dataclass
class Version:
    owner: str
    node_id: str
    version_id: str
    size: int
    chunk_size: int
    chunk_count: int
    etag: str
    content_type: str
    durability: str
    encryption: str
    created: float
    sha256: str | None = None
    # Packed: the content is one blob of a shared chunk (chunk_count is then 0).
    pack_chunk: str | None = None
    pack_offset: int | None = None
    pack_length: int | None = None
    blob_hash: str | None = None
    # Or the owner's content stored once (pipeline/chunk_store.py BLOBS): read through it.
    content_key: str | None = None
    # Chunked content stored once: the version whose chunks hold it (None: this one's).
    chunk_source: str | None = None


@dataclass
class Upload:
    owner: str
    upload_id: str
    directory: str
    name: str
    size: int
    chunk_size: int
    content_type: str
    durability: str
    encryption: str
    version_id: str
    created: float
    expires_at: int
    purge_at: int
    sha256: str | None = None
    committed: bool = False
    # Aborted: gone for its owner; the sweep frees its parts' chunks in the background.
    aborted: bool = False
    # Committed as content the owner stored already: the file reads that content's chunks,
    # and the parts' own chunks are freed (by the sweep, if the commit could not).
    duplicate: bool = False
    # Not a session a client opened: the record a one-request upload (or a batch's large file)
    # writes before storing its chunks, committed with its file. If the server stops in
    # between, the sweep finds it expired, uncommitted, and frees the chunks (it has no parts:
    # its chunks are counted from size and chunk_size). Never shown to the client.
    intent: bool = False
    # How many times a part was given another body (None: never, and no attribute stored): a
    # commit holds only if this did not move since it read the parts (see reopen_part).
    parts_revision: int | None = None
    # Opened inside a share by one of its recipients (None, None: by the owner, in their own
    # tree): the session is theirs alone, through that share alone, and `directory` is a path
    # from the shared folder. The file it makes is the owner's, as a one-request upload's is.
    uploader: str | None = None
    share_id: str | None = None


@dataclass
class UploadPart:
    owner: str
    upload_id: str
    part: int
    size: int
    sha256: str
    expires_at: int
    purge_at: int
    # Recorded before its chunk is stored (so an abort finds every chunk to free), not yet
    # received until the chunk is.
    pending: bool = False


@dataclass
class Trashed:
    """A top-level item of an owner's trash (what was deleted; what is under it stays put)."""
    node: Node
    trashed_at: int
    original_parent_id: str
    original_path: str
    size: int          # bytes of every version under it, measured when it was deleted
    purge_at: int
    doomed: bool = False          # deleted for good: out of the listing, being freed
    # What it adds to the owner's trash_bytes: what deleting it for good would free, measured
    # then (content stored once that a file outside it also reads is not counted). Items
    # trashed before this was kept counted their size.
    counted: int | None = None
    # Its entry's name in the trash listing ("" for items trashed before it was kept: their
    # name follows from trashed_at and the id).
    entry_name: str = ""

    def __post_init__(self):
        if self.counted is None:
            self.counted = self.size

    @property
    def entry(self) -> str:
        return self.entry_name or _trash_name(self.trashed_at, self.node.node_id)


@dataclass
class Profile:
    owner: str
    default_durability: str | None = None
    default_encryption: str | None = None
    trash_retention_days: int | None = None


_VERSION_FIELDS = ("version_id", "size", "content_type", "sha256", "etag", "durability",
                   "encryption")


def _parent_ref(owner: str, parent_id: str) -> str:
    return f"{owner}#{parent_id}"


def _entry_key(owner: str, parent_id: str, name: str) -> dict:
    return {"parent_ref": _parent_ref(owner, parent_id), "name": name}


def _file_ref(owner: str, node_id: str) -> str:
    return f"{owner}#{node_id}"


def _upload_ref(owner: str, upload_id: str) -> str:
    return f"{owner}#{upload_id}"


def _present(values: dict) -> dict:
    """An item never stores None (a missing field is absent)."""
    return {k: v for k, v in values.items() if v is not None}


def _node_item(node: Node) -> dict:
    item = schema.record_item(node)
    if not item.get("attributes"):
        item.pop("attributes", None)
    return item


def _node(item: dict) -> Node:
    return Node(owner=item["owner"], node_id=item["node_id"], type=item["type"],
                name=item["name"], parent_id=item.get("parent_id"), created=item["created"],
                modified=item["modified"], attributes=item.get("attributes") or {},
                revision=int(item.get("revision", 1)), version_id=item.get("version_id"),
                size=int(item.get("size", 0)), content_type=item.get("content_type"),
                sha256=item.get("sha256"), etag=item.get("etag"),
                durability=item.get("durability"), encryption=item.get("encryption"))


def _entry_item(owner: str, parent_id: str, name: str, node_id: str, type_: str, size: int,
                modified: float, sha256: str | None = None) -> dict:
    return _present({"parent_ref": _parent_ref(owner, parent_id), "name": name, "owner": owner,
                     "node_id": node_id, "type": type_, "size": int(size), "modified": modified,
                     "sha256": sha256})


def _new_node_writes(node: Node, version: Version | None) -> list:
    """A new node's entry (only if the name is free), the node, and a file's first version."""
    writes = [Put(ENTRIES, _entry_item(node.owner, node.parent_id, node.name, node.node_id,
                                       node.type, node.size, node.modified, node.sha256),
                  Condition.absent()),
              Put(NODES, _node_item(node), Condition.absent())]
    if version is not None:
        writes.append(Put(VERSIONS, _version_item(version)))
    return writes


def _trash_name(trashed_at: int, node_id: str, now: float | None = None) -> str:
    """The trash listing's name of an item: it lists newest deleted first by this name, so
    it starts with the second of the delete and, given `now`, its microsecond (two deletes
    within one second are listed in order too; items trashed before that have the second
    alone, which sorts the same way against them)."""
    if now is None:
        return f"{int(trashed_at):012d}.{node_id}"
    return f"{int(trashed_at):012d}.{int((now - int(trashed_at)) * 1e6):06d}.{node_id}"


def _trashed(item: dict) -> Trashed:
    size = int(item.get("trash_bytes", 0))
    return Trashed(_node(item), int(item["trashed_at"]), item.get("trash_parent_id") or ROOT,
                   item.get("trash_path") or "/", size, int(item.get("purge_at", 0)),
                   bool(item.get("doomed", False)), int(item.get("trash_counted", size)),
                   item.get("trash_entry") or "")


_TRASH_FIELDS = ("trash_queue", "trashed_at", "trash_parent_id", "trash_path", "trash_bytes",
                 "trash_counted", "purge_at", "doomed", "trash_entry")
# An ancestor walk stops here (deeper than any path: a loop is treated as unreachable).
MAX_WALK = 256


def _version_item(version: Version) -> dict:
    item = schema.record_item(version)
    item["file_ref"] = _file_ref(version.owner, item.pop("node_id"))
    return item


def _version(item: dict, node_id: str) -> Version:
    return Version(owner=item["owner"], node_id=node_id, version_id=item["version_id"],
                   size=int(item["size"]), chunk_size=int(item["chunk_size"]),
                   chunk_count=int(item["chunk_count"]), etag=item["etag"],
                   content_type=item["content_type"], durability=item["durability"],
                   encryption=item["encryption"], created=item["created"],
                   sha256=item.get("sha256"), pack_chunk=item.get("pack_chunk"),
                   pack_offset=_int_or_none(item.get("pack_offset")),
                   pack_length=_int_or_none(item.get("pack_length")),
                   blob_hash=item.get("blob_hash"), content_key=item.get("content_key"),
                   chunk_source=item.get("chunk_source"))


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)


def _upload(item: dict) -> Upload:
    return Upload(owner=item["owner"], upload_id=item["upload_id"],
                  directory=item["directory"], name=item["name"], size=int(item["size"]),
                  chunk_size=int(item["chunk_size"]), content_type=item["content_type"],
                  durability=item["durability"], encryption=item["encryption"],
                  version_id=item["version_id"], created=item["created"],
                  expires_at=int(item["expires_at"]),
                  purge_at=int(item.get("purge_at", item["expires_at"])),
                  sha256=item.get("sha256"), committed=bool(item.get("committed", False)),
                  aborted=bool(item.get("aborted", False)),
                  duplicate=bool(item.get("duplicate", False)),
                  intent=bool(item.get("intent", False)),
                  parts_revision=item.get("parts_revision"),
                  uploader=item.get("uploader"), share_id=item.get("share_id"))


def _upload_part(owner: str, upload_id: str, item: dict) -> UploadPart:
    return UploadPart(owner, upload_id, int(item["part"]), int(item["size"]), item["sha256"],
                      int(item["expires_at"]), int(item.get("purge_at", item["expires_at"])),
                      pending=bool(item.get("pending", False)))


class TreeStore:
    """The tree's metadata for every owner. Reads by one owner never see another's items."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def _get(self, table, key: dict, owner: str) -> dict | None:
        item = self.engine.get(table, key)
        return item if item is not None and item.get("owner") == owner else None

    # -- nodes and entries ------------------------------------------------------------------

    def get_node(self, owner: str, node_id: str) -> Node | None:
        item = self._get(NODES, {"owner": owner, "node_id": node_id}, owner)
        return _node(item) if item is not None else None

    def get_nodes(self, owner: str, node_ids: list[str]) -> dict[str, Node]:
        """The owner's nodes among `node_ids` (one batched read), by id."""
        items = self.engine.get_many(NODES, [{"owner": owner, "node_id": node_id}
                                             for node_id in dict.fromkeys(node_ids)])
        return {item["node_id"]: _node(item) for item in items if item.get("owner") == owner}

    def ensure_root(self, owner: str, now: float) -> Node:
        """The owner's root directory, created on first use."""
        found = self.get_node(owner, ROOT)
        if found is not None:
            return found
        root = Node(owner, ROOT, DIRECTORY, "", None, created=now, modified=now)
        try:
            self.engine.put(NODES, _node_item(root), Condition.absent())
        except ConditionFailed:
            return self.get_node(owner, ROOT)      # made by a concurrent first request
        return root

    def get_entry(self, owner: str, parent_id: str, name: str) -> Entry | None:
        item = self._get(ENTRIES, _entry_key(owner, parent_id, name), owner)
        if item is None:
            return None
        return Entry(owner, parent_id, name, item["node_id"], item["type"],
                     int(item.get("size", 0)), item["modified"])

    def taken_names(self, owner: str, parent_id: str, names: list[str]) -> set[str]:
        """Which of `names` the directory has an entry of (one batched read)."""
        found = self.engine.get_many(ENTRIES, [_entry_key(owner, parent_id, name)
                                               for name in names])
        return {item["name"] for item in found if item.get("owner") == owner}

    def list_entries(self, owner: str, parent_id: str, limit: int,
                     cursor: str | None = None) -> tuple[list[Entry], str | None]:
        """One page of a directory, by name; the cursor (None at the end) continues it.
        Raises BadCursor for a cursor this listing did not hand out."""
        page = self.engine.query(ENTRIES, _parent_ref(owner, parent_id), limit=limit,
                                 cursor=cursor)
        entries = [Entry(owner, parent_id, item["name"], item["node_id"], item["type"],
                         int(item.get("size", 0)), item["modified"], item.get("sha256"))
                   for item in page.items if item.get("owner") == owner]
        return entries, page.cursor

    def create(self, node: Node, version: Version | None = None, along: tuple = ()) -> Node:
        """A new node under its parent, its entry and (files) its first version, all or
        nothing, with `along` in the same transaction. Raises NameTaken when the parent has
        that name already, AlongFailed when one of `along` failed."""
        if not along:
            self.create_many([(node, version)])
            return node
        mine = _new_node_writes(node, version)
        try:
            self.engine.transact(mine + list(along))
        except ConditionFailed as exc:
            if exc.index is not None and exc.index >= len(mine):
                raise AlongFailed(exc.index - len(mine)) from None
            raise NameTaken(node.name) from None
        return node

    def create_many(self, nodes: list[tuple[Node, Version | None]]) -> None:
        """Many `create`s for bulk loads, in as few transactions as the engines allow (33 files
        or 50 directories each). Each transaction is all or nothing; a taken name raises
        NameTaken for its transaction, after the earlier ones were written."""
        operations: list = []
        names: list[str] = []
        for node, version in nodes:
            mine = _new_node_writes(node, version)
            if len(operations) + len(mine) > MAX_TRANSACTION_ITEMS:
                self._create_all(operations, names)
                operations, names = [], []
            operations += mine
            names.append(node.name)
        if operations:
            self._create_all(operations, names)

    def _create_all(self, operations: list, names: list[str]) -> None:
        try:
            self.engine.transact(operations)
        except ConditionFailed:
            raise NameTaken(", ".join(names)) from None

    # Operations one transaction of create_files takes: NEW_FILE_WRITES a file, and the
    # caller's.
    TRANSACTION_OPERATIONS = MAX_TRANSACTION_ITEMS

    def create_files(self, groups: list[list[tuple[Node, Version, tuple]]]) -> list[bool]:
        """New files (node, first version, the caller's operations for it), each group in one
        transaction, all or nothing (at most TRANSACTION_OPERATIONS writes); the engine may make
        the groups durable together. Per group: False if a name was taken or one of the
        caller's operations failed (nothing of it written), True if it was written."""
        transactions = []
        for files in groups:
            operations: list = []
            for node, version, along in files:
                operations += [*_new_node_writes(node, version), *along]
            transactions.append(operations)
        return [failed is None for failed in self.engine.transact_each(transactions)]

    def set_version(self, node: Node, version: Version, now: float, along: tuple = ()) -> Node:
        """Make `version` the file's current content, if the node is still at the revision
        read (two writers never clobber each other), with `along` in the same transaction.
        Raises Changed otherwise, AlongFailed when one of `along` failed."""
        updated = dataclasses.replace(node, modified=now, revision=node.revision + 1,
                                      **{f: getattr(version, f) for f in _VERSION_FIELDS})
        node_change = Change(set=_present({f: getattr(updated, f) for f in _VERSION_FIELDS}
                                          | {"modified": now}),
                             remove=tuple(f for f in _VERSION_FIELDS
                                          if getattr(updated, f) is None),
                             add={"revision": 1})
        entry_key = _entry_key(node.owner, node.parent_id, node.name)
        try:
            self.engine.transact([
                Put(VERSIONS, _version_item(version)),
                Update(ENTRIES, entry_key, Change(set=_present({"size": int(version.size),
                                                                "modified": now,
                                                                "sha256": version.sha256}),
                                                  remove=() if version.sha256 else ("sha256",)),
                       Condition.eq("node_id", node.node_id)),
                Update(NODES, {"owner": node.owner, "node_id": node.node_id}, node_change,
                       Condition.eq("revision", node.revision)), *along])
        except ConditionFailed as exc:
            if exc.index is not None and exc.index >= 3:
                raise AlongFailed(exc.index - 3) from None
            raise Changed(node.node_id) from None
        return updated

    def move(self, node: Node, parent_id: str, name: str,
             unmoved: list[Node] = ()) -> Node:
        """Give the node a new parent and/or name: the new entry, the old one's removal and
        the node's change happen together, on condition that the `unmoved` directories still
        have the parents they had when read. O(1) whatever a directory holds. Raises
        NameTaken if the target name exists, Changed if the node or one of `unmoved` moved on
        since it was read."""
        # `modified` stays: it is the content's time (a client's mtime), which a move does not
        # change; a renamed file that is otherwise unchanged is still skipped by `put`.
        operations = [Put(ENTRIES, _entry_item(node.owner, parent_id, name, node.node_id,
                                               node.type, node.size, node.modified, node.sha256),
                          Condition.absent())]
        old = self.get_entry(node.owner, node.parent_id, node.name)
        if old is not None and old.node_id == node.node_id:
            operations.append(Delete(ENTRIES, _entry_key(node.owner, node.parent_id, node.name),
                                     Condition.eq("node_id", node.node_id)))
        operations.append(Update(NODES, {"owner": node.owner, "node_id": node.node_id},
                                 Change(set={"name": name, "parent_id": parent_id},
                                        add={"revision": 1}),
                                 Condition.eq("revision", node.revision)))
        operations += [Check(NODES, {"owner": other.owner, "node_id": other.node_id},
                             Condition.eq("parent_id", other.parent_id))
                       for other in unmoved if other.parent_id is not None]
        try:
            self.engine.transact(operations)
        except ConditionFailed:
            # Which condition failed, read back (not every engine can tell the position).
            taken = self.get_entry(node.owner, parent_id, name)
            if taken is not None and taken.node_id != node.node_id:
                raise NameTaken(name) from None
            raise Changed(node.node_id) from None
        return dataclasses.replace(node, parent_id=parent_id, name=name,
                                   revision=node.revision + 1)

    def trash(self, node: Node, now: float, *, path: str, size: int, purge_at: int,
              counted: int | None = None) -> Trashed:
        """Move the node to its owner's trash: out of its directory at once (its name is free,
        nothing under it resolves), listed in the trash with `size`, adding `counted` (default:
        `size`) to the owner's trash bytes, queued for the sweep at `purge_at`; O(1) whatever
        it holds. Raises Changed if the node moved on since it was read."""
        counted = int(size if counted is None else counted)
        trashed_at = int(now)
        entry_name = _trash_name(trashed_at, node.node_id, now)
        operations = []
        entry = self.get_entry(node.owner, node.parent_id, node.name)
        if entry is not None and entry.node_id == node.node_id:
            operations.append(Delete(ENTRIES, _entry_key(node.owner, node.parent_id, node.name),
                                     Condition.eq("node_id", node.node_id)))
        operations += [
            Put(ENTRIES, _entry_item(node.owner, TRASH, entry_name, node.node_id, node.type,
                                     size, trashed_at, node.sha256),
                Condition.absent()),
            Update(NODES, {"owner": node.owner, "node_id": node.node_id},
                   Change(set={"parent_id": TRASH, "trash_queue": _TRASH_QUEUE,
                               "trashed_at": trashed_at, "trash_parent_id": node.parent_id,
                               "trash_path": path, "trash_bytes": int(size),
                               "trash_counted": counted, "purge_at": int(purge_at),
                               "trash_entry": entry_name},
                          add={"revision": 1}),
                   Condition.eq("revision", node.revision) & Condition.ne("parent_id", TRASH)),
            quota.trash_bytes_change(node.owner, counted)]
        try:
            self.engine.transact(operations)
        except ConditionFailed:
            raise Changed(node.node_id) from None
        moved = dataclasses.replace(node, parent_id=TRASH, revision=node.revision + 1)
        return Trashed(moved, trashed_at, node.parent_id, path, int(size), int(purge_at),
                       counted=counted, entry_name=entry_name)

    def recount_trashed(self, item: Trashed, size: int, counted: int) -> bool:
        """Set what the trash item counts (its `size`, and the `counted` bytes emptying it
        would free, in the owner's trash bytes too) to a new measure of what is under it; False
        (nothing written) if it is not that trash item any more, or its size or count moved
        since `item` was read (another measure landed first: this one may be older)."""
        node = item.node
        try:
            self.engine.transact([
                Update(NODES, {"owner": node.owner, "node_id": node.node_id},
                       Change(set={"trash_counted": int(counted), "trash_bytes": int(size)}),
                       Condition.eq("parent_id", TRASH) & Condition.eq("trashed_at",
                                                                       item.trashed_at)
                       & Condition.ne("doomed", True)
                       & Condition.eq("trash_counted", int(item.counted))
                       & Condition.eq("trash_bytes", int(item.size))),
                quota.trash_bytes_change(node.owner, int(counted) - int(item.counted))])
            return True
        except ConditionFailed:
            return False

    def uncount_trashed(self, owner: str, node_id: str, trashed_at: int, amount: int,
                        along: tuple = ()) -> bool:
        """Take `amount` bytes out of what the trash item `node_id` (deleted at `trashed_at`)
        counts, and out of the owner's trash bytes, with `along`; False (nothing written) if
        it is not that trash item any more or counts less."""
        try:
            self.engine.transact([
                Update(NODES, {"owner": owner, "node_id": node_id},
                       Change(add={"trash_counted": -int(amount)}),
                       Condition.eq("parent_id", TRASH) & Condition.eq("trashed_at", trashed_at)
                       & Condition.compare("trash_counted", "ge", int(amount))),
                quota.trash_bytes_change(owner, -int(amount)), *along])
            return True
        except ConditionFailed:
            return False

    def get_trashed(self, owner: str, node_id: str, doomed: bool = False) -> Trashed | None:
        """The owner's trash item `node_id` (None if it is not one, or is deleted for good
        unless `doomed`)."""
        item = self._get(NODES, {"owner": owner, "node_id": node_id}, owner)
        if item is None or item.get("parent_id") != TRASH or "trashed_at" not in item or \
                (item.get("doomed") and not doomed):
            return None
        return _trashed(item)

    def list_trash(self, owner: str, limit: int, cursor: str | None = None
                   ) -> tuple[list[Trashed], str | None]:
        """One page of the owner's trash, newest deleted first. Raises BadCursor for a cursor
        this listing did not hand out."""
        page = self.engine.query(ENTRIES, _parent_ref(owner, TRASH), limit=limit,
                                 reverse=True, cursor=cursor)
        keys = [{"owner": owner, "node_id": item["node_id"]} for item in page.items
                if item.get("owner") == owner]
        found = {item["node_id"]: item for item in self.engine.get_many(NODES, keys)}
        items = [_trashed(found[key["node_id"]]) for key in keys
                 if key["node_id"] in found and found[key["node_id"]].get("parent_id") == TRASH
                 and not found[key["node_id"]].get("doomed")]
        return items, page.cursor

    def restore(self, item: Trashed, parent: Node, name: str) -> Node:
        """Put a trash item back as `name` in `parent`, all or nothing: if the item is still at
        the revision read (a racing restore or delete-for-good makes this Changed) and the
        parent too (not deleted meanwhile). Raises NameTaken if the name exists there."""
        node = item.node
        key = {"owner": node.owner, "node_id": node.node_id}
        operations = [
            Put(ENTRIES, _entry_item(node.owner, parent.node_id, name, node.node_id,
                                     node.type, node.size, node.modified, node.sha256),
                Condition.absent()),
            Delete(ENTRIES, _entry_key(node.owner, TRASH, item.entry),
                   Condition.eq("node_id", node.node_id)),
            Update(NODES, key, Change(set={"parent_id": parent.node_id, "name": name},
                                      remove=_TRASH_FIELDS, add={"revision": 1}),
                   Condition.eq("revision", node.revision) & Condition.eq("parent_id", TRASH)),
            Check(NODES, {"owner": parent.owner, "node_id": parent.node_id},
                  Condition.eq("revision", parent.revision)),
            quota.trash_bytes_change(node.owner, -item.counted)]
        try:
            self.engine.transact(operations)
        except ConditionFailed:
            taken = self.get_entry(node.owner, parent.node_id, name)
            if taken is not None and taken.node_id != node.node_id:
                raise NameTaken(name) from None
            raise Changed(node.node_id) from None
        return dataclasses.replace(node, parent_id=parent.node_id, name=name,
                                   revision=node.revision + 1)

    def doom(self, item: Trashed) -> Node:
        """Delete a trash item for good: out of the listing at once, first in the sweep's
        queue; its bytes stay counted as trash until it is freed (`remove`). Raises Changed if
        it moved on since it was read (restored, or deleted for good already)."""
        node = item.node
        try:
            self.engine.transact([
                Delete(ENTRIES, _entry_key(node.owner, TRASH, item.entry),
                       Condition.eq("node_id", node.node_id)),
                Update(NODES, {"owner": node.owner, "node_id": node.node_id},
                       Change(set={"doomed": True, "purge_at": 0}, add={"revision": 1}),
                       Condition.eq("revision", node.revision)
                       & Condition.eq("parent_id", TRASH))])
        except ConditionFailed:
            raise Changed(node.node_id) from None
        return dataclasses.replace(node, revision=node.revision + 1)

    def set_purge_at(self, item: Trashed, purge_at: int) -> None:
        """Move a trash item's due time (its owner changed the retention); a no-op if it left
        the trash meanwhile."""
        try:
            self.engine.update(NODES, {"owner": item.node.owner, "node_id": item.node.node_id},
                               Change(set={"purge_at": int(purge_at)}),
                               Condition.eq("parent_id", TRASH) & Condition.ne("doomed", True))
        except ConditionFailed:
            pass

    def due_for_purge(self, now: float, page_size: int = 100) -> Iterator[Trashed]:
        """Trashed nodes of every owner due by `now` (deleted for good first), through the
        sparse index; it may lag: re-read before acting."""
        for item in self.engine.query_index_all(NODES, "by-purge", _TRASH_QUEUE,
                                                before=int(now) + 1, limit=page_size):
            yield _trashed(item)

    def in_trash(self, node: Node) -> bool:
        """Whether the node or a directory above it is in the trash (or gone)."""
        return self.trashed_above(node) is not None

    def trashed_above(self, node: Node) -> Node | None:
        """The node, or the directory above it, that is in the trash; if a directory above it
        is gone, the last one found below it; None if the node is in the tree. An ancestor walk,
        one read per level, since a trashed directory's subtree is not rewritten (past MAX_WALK
        levels, the node reached: counted as deleted)."""
        current = node
        for _ in range(MAX_WALK):
            if current.parent_id == TRASH:
                return current
            if current.parent_id in (None, ROOT):
                return None           # the root is never in the trash: no read for it
            parent = self.get_node(current.owner, current.parent_id)
            if parent is None:
                return current
            current = parent
        return current

    def set_attributes(self, node: Node, attributes: dict) -> Node:
        """Replace the node's custom attributes, if it is still at the revision read. Its
        `modified` (the content's time) stays."""
        change = Change(add={"revision": 1})
        if attributes:
            change.set["attributes"] = attributes
        else:
            change.remove = ("attributes",)
        try:
            self.engine.update(NODES, {"owner": node.owner, "node_id": node.node_id}, change,
                               Condition.eq("revision", node.revision))
        except ConditionFailed:
            raise Changed(node.node_id) from None
        return dataclasses.replace(node, attributes=dict(attributes),
                                   revision=node.revision + 1)

    def remove(self, node: Node) -> None:
        """Remove the node and its entry (versions and children are the caller's to remove
        first)."""
        for attempt in range(3):
            try:
                return self._remove_once(node)
            except Changed:
                # A trash item whose count another purger has just lowered is read again;
                # one gone or moved meanwhile is the caller's to know.
                item = self._get(NODES, {"owner": node.owner, "node_id": node.node_id},
                                 node.owner)
                if item is None or item.get("parent_id") != TRASH or attempt == 2:
                    raise

    def _remove_once(self, node: Node) -> None:
        operations = [Delete(NODES, {"owner": node.owner, "node_id": node.node_id})]
        item = self._get(NODES, {"owner": node.owner, "node_id": node.node_id}, node.owner)
        if item is not None and item.get("parent_id") == TRASH and "trashed_at" in item:
            # A freed trash item: its bytes leave the trash count, and the trash entry goes.
            trashed = _trashed(item)
            # Once only, though a delete and the sweep may free it together; and what it still
            # counts as read (the other purger takes off what it frees as it goes: taken off
            # again here, the owner's trash bytes drifted below the items' sum).
            counted = Condition.eq("trash_counted", trashed.counted) \
                if "trash_counted" in item else Condition.missing("trash_counted")
            operations[0] = Delete(NODES, {"owner": node.owner, "node_id": node.node_id},
                                   Condition.eq("trashed_at", trashed.trashed_at) & counted)
            operations += [quota.trash_bytes_change(node.owner, -trashed.counted),
                           Delete(ENTRIES, _entry_key(node.owner, TRASH, trashed.entry))]
        elif node.parent_id is not None:
            entry = self.get_entry(node.owner, node.parent_id, node.name)
            if entry is not None and entry.node_id == node.node_id:
                operations.append(Delete(ENTRIES, _entry_key(node.owner, node.parent_id,
                                                             node.name),
                                         Condition.eq("node_id", node.node_id)))
        try:
            self.engine.transact(operations)
        except ConditionFailed:
            raise Changed(node.node_id) from None

    # -- versions -----------------------------------------------------------------------------

    @staticmethod
    def version_exists_check(owner: str, node_id: str, version_id: str) -> Check:
        """For a transaction that holds only while this version is still there."""
        return Check(VERSIONS, {"file_ref": _file_ref(owner, node_id), "version_id": version_id},
                     Condition.exists())

    def get_version(self, owner: str, node_id: str, version_id: str) -> Version | None:
        item = self._get(VERSIONS, {"file_ref": _file_ref(owner, node_id),
                                    "version_id": version_id}, owner)
        return _version(item, node_id) if item is not None else None

    def get_versions(self, owner: str, wanted: list[tuple[str, str]]
                     ) -> dict[tuple[str, str], Version]:
        """The owner's versions among (node id, version id) pairs (one batched read)."""
        refs = {(_file_ref(owner, node_id), version_id): (node_id, version_id)
                for node_id, version_id in wanted}
        items = self.engine.get_many(VERSIONS, [{"file_ref": ref, "version_id": version_id}
                                                for ref, version_id in refs])
        found = {}
        for item in items:
            pair = refs.get((item.get("file_ref"), item.get("version_id")))
            if pair is not None and item.get("owner") == owner:
                found[pair] = _version(item, pair[0])
        return found

    def list_versions(self, owner: str, node_id: str) -> list[Version]:
        """Oldest first (version ids sort by time)."""
        return [_version(item, node_id)
                for item in self.engine.query_all(VERSIONS, _file_ref(owner, node_id))
                if item.get("owner") == owner]

    def delete_version(self, owner: str, node_id: str, version_id: str,
                       along: tuple = (), pack_chunk: str | None = None) -> bool:
        """Delete a version; `along` are operations done in the same transaction only if the
        version was still there — and still in `pack_chunk`, when given (a packed version's
        release of its blob: once, however often a purge is retried, and from the pack that
        holds it while compaction moves it). False when it was gone already (or had moved, or
        `along` failed)."""
        # The key holds the owner: another owner's version is out of reach.
        key = {"file_ref": _file_ref(owner, node_id), "version_id": version_id}
        if not along:
            self.engine.delete(VERSIONS, key)
            return True
        condition = Condition.exists()
        if pack_chunk is not None:
            condition = condition & Condition.eq("pack_chunk", pack_chunk)
        try:
            self.engine.transact([Delete(VERSIONS, key, condition), *along])
        except ConditionFailed:
            return False
        return True

    def versions_in_pack(self, owner: str, chunk_id: str) -> list[Version]:
        """The owner's versions whose blobs are in pack `chunk_id` (through the by-pack index:
        eventually consistent in DynamoDB, so a caller re-checks each before acting)."""
        prefix = _file_ref(owner, "")
        return [_version(item, item["file_ref"][len(prefix):])
                for item in self.engine.query_index_all(VERSIONS, "by-pack", chunk_id, limit=500)
                if item.get("owner") == owner and item["file_ref"].startswith(prefix)]

    def move_blob(self, version: Version, to: dict, along: tuple = ()) -> bool:
        """Point a packed version at its blob's new place (`to`: pack_chunk, pack_offset,
        pack_length, blob_hash) if it is still where `version` says, with `along` in the same
        transaction; False if it was deleted or moved meanwhile."""
        key = {"file_ref": _file_ref(version.owner, version.node_id),
               "version_id": version.version_id}
        try:
            self.engine.transact([Update(VERSIONS, key, Change(set=dict(to)),
                                         Condition.exists()
                                         & Condition.eq("pack_chunk", version.pack_chunk)
                                         & Condition.eq("pack_offset", version.pack_offset)),
                                  *along])
        except ConditionFailed:
            return False
        return True

    # -- upload sessions ----------------------------------------------------------------------

    def create_upload(self, upload: Upload) -> bool:
        """Record a new session; False if one of its id is there already."""
        item = schema.record_item(upload) | {"expiry_queue": _EXPIRY_QUEUE}
        try:
            self.engine.put(UPLOADS, item, Condition.absent())
        except ConditionFailed:
            return False
        return True

    def get_upload(self, owner: str, upload_id: str) -> Upload | None:
        item = self._get(UPLOADS, {"owner": owner, "upload_id": upload_id}, owner)
        return _upload(item) if item is not None else None

    @staticmethod
    def commit_operation(upload: Upload, duplicate: bool = False) -> Update:
        """The session's commit, for the transaction that attaches its file: holds once only,
        and not after an abort (whose sweep frees the parts' chunks). `duplicate`: the file
        reads content stored before, so the parts' chunks are to be freed."""
        revision = Condition.missing("parts_revision") if upload.parts_revision is None \
            else Condition.eq("parts_revision", upload.parts_revision)
        return Update(UPLOADS, {"owner": upload.owner, "upload_id": upload.upload_id},
                      Change(set={"committed": True, **({"duplicate": True} if duplicate
                                                        else {})}),
                      Condition.exists() & Condition.ne("committed", True)
                      & Condition.ne("aborted", True) & revision)

    def reopen_part(self, upload: Upload, part: int) -> None:
        """Before a received part's chunk is replaced by another body: the part becomes pending
        again and the session's parts revision moves on, together, and only while the session
        is neither committed nor aborted. A commit that read the parts before this fails (its
        commit_operation holds on the revision it read); one that reads them after finds the
        part missing until its new body is stored. Raises Changed if the session is committed
        or aborted (or gone)."""
        try:
            self.engine.transact([
                Update(UPLOADS, {"owner": upload.owner, "upload_id": upload.upload_id},
                       Change(add={"parts_revision": 1}),
                       Condition.exists() & Condition.ne("committed", True)
                       & Condition.ne("aborted", True)),
                Update(UPLOAD_PARTS, {"upload_ref": _upload_ref(upload.owner, upload.upload_id),
                                      "part": int(part)},
                       Change(set={"pending": True}), Condition.exists())])
        except ConditionFailed:
            raise Changed(upload.upload_id) from None

    def mark_committed(self, upload: Upload) -> None:
        """Once only: raises Changed if the session is committed or aborted already, or gone."""
        try:
            self.engine.transact([self.commit_operation(upload)])
        except ConditionFailed:
            raise Changed(upload.upload_id) from None

    def mark_aborted(self, upload: Upload, now: int) -> None:
        """Once only, for an uncommitted session: it is gone for its owner and due for the
        sweep at `now`. Raises Changed if it is committed or aborted already, or gone."""
        try:
            self.engine.update(UPLOADS, {"owner": upload.owner, "upload_id": upload.upload_id},
                               Change(set={"aborted": True, "expires_at": int(now)}),
                               Condition.exists() & Condition.ne("committed", True)
                               & Condition.ne("aborted", True))
        except ConditionFailed:
            raise Changed(upload.upload_id) from None

    def put_part(self, part: UploadPart) -> None:
        item = schema.record_item(part)
        item["upload_ref"] = _upload_ref(part.owner, item.pop("upload_id"))
        self.engine.put(UPLOAD_PARTS, item)

    def parts(self, owner: str, upload_id: str) -> dict[int, UploadPart]:
        """Every recorded part, pending ones included."""
        return {int(item["part"]): _upload_part(owner, upload_id, item)
                for item in self.engine.query_all(UPLOAD_PARTS, _upload_ref(owner, upload_id))
                if item.get("owner") == owner}

    def get_part(self, owner: str, upload_id: str, part: int) -> UploadPart | None:
        item = self._get(UPLOAD_PARTS, {"upload_ref": _upload_ref(owner, upload_id),
                                        "part": int(part)}, owner)
        return _upload_part(owner, upload_id, item) if item is not None else None

    def forget_upload(self, upload: Upload) -> None:
        """Delete the session's parts, then the session (so an interrupted forget is
        found again by the sweep)."""
        ref = _upload_ref(upload.owner, upload.upload_id)
        for part in list(self.parts(upload.owner, upload.upload_id)):
            self.engine.delete(UPLOAD_PARTS, {"upload_ref": ref, "part": part})
        self.engine.delete(UPLOADS, {"owner": upload.owner, "upload_id": upload.upload_id})

    def drop_intent(self, upload: Upload) -> None:
        """Delete a one-request upload's record (it has no parts)."""
        self.engine.delete(UPLOADS, {"owner": upload.owner, "upload_id": upload.upload_id})

    def open_uploads(self, owner: str) -> Iterator[Upload]:
        """The owner's sessions neither committed nor aborted (one-request uploads' records
        left out), read from the owner's partition."""
        for item in self.engine.query_all(UPLOADS, owner):
            upload = _upload(item)
            if not (upload.committed or upload.aborted or upload.intent):
                yield upload

    def expired_uploads(self, before: float, page_size: int = 100) -> Iterator[Upload]:
        """Sessions of every owner whose expiry is before `before`, oldest first, through the
        sparse index (never a scan). The index may lag: re-read a session before acting."""
        for item in self.engine.query_index_all(UPLOADS, "by-expiry", _EXPIRY_QUEUE,
                                                before=before, limit=page_size):
            yield _upload(item)

    # -- profiles -----------------------------------------------------------------------------

    def get_profile(self, owner: str) -> Profile | None:
        item = self._get(PROFILES, {"owner": owner}, owner)
        if item is None:
            return None
        retention = item.get("trash_retention_days")
        return Profile(owner, item.get("default_durability"), item.get("default_encryption"),
                       int(retention) if retention is not None else None)

    def put_profile(self, profile: Profile) -> None:
        self.engine.put(PROFILES, schema.record_item(profile))


def tree_store() -> TreeStore:
    """The tree store over the process's metadata engine."""
    return TreeStore(get_engine())
