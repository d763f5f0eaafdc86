"""The chunks aggregate: chunk records (with where their shares are), placements (which shares a
storage holds) and pending deletes (shares whose delete failed), over the metadata engine.

Every item carries its owner and every read checks it. Secondary paths the scrub walks — damaged
chunks and pending deletes — are sparse indexes spread over a few shards, never scans.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

from cloudstrype.metadata import schema
from cloudstrype.metadata.engine import (
    MAX_TRANSACTION_ITEMS,
    Change,
    Condition,
    ConditionFailed,
    Delete,
    Engine,
    Operation,
    Put,
    Update,
    get_engine,
)

# Work queues (damaged chunks, pending deletes) are spread over this many index partitions so
# that no single DynamoDB partition takes all of them.
SHARDS = 4

CHUNKS = schema.table(
    "chunks", hash_key="owner", range_key="chunk_id",
    fields={"owner": schema.STR, "chunk_id": schema.STR, "size": schema.INT,
            "encryption": schema.STR, "durability": schema.STR, "meta": schema.JSON,
            "wrapped_key": schema.BYTES, "shares": schema.JSON, "created": schema.INT,
            "revision": schema.INT,
            # Share indexes that failed a read; damage_shard/damaged_at exist only while the
            # set does, so the "damaged" index holds just the chunks the scrub must repair.
            "damaged": schema.INT_SET, "damage_shard": schema.STR, "damaged_at": schema.INT,
            # Packs only (pipeline/packs.py): how many files' blobs, and their bytes, still use
            # the chunk; at 0 it is freed. The rest of its bytes are dead until compaction.
            "live": schema.INT, "live_bytes": schema.INT,
            # A pack whose live bytes fell below the compaction threshold: queued for repacking
            # (tree/compaction.py) until it is freed.
            "compact_shard": schema.STR, "compact_at": schema.INT},
    indexes=(schema.Index("damaged", hash_key="damage_shard", range_key="damaged_at"),
             schema.Index("compact", hash_key="compact_shard", range_key="compact_at")),
    owner_module=__name__)

PLACEMENTS = schema.table(
    "placements", hash_key="storage_ref", range_key="share_ref",
    fields={"storage_ref": schema.STR,       # "<owner>#<storage_id>"
            "share_ref": schema.STR,         # "<chunk_id>#<index>"
            "owner": schema.STR, "storage_id": schema.STR, "chunk_id": schema.STR,
            "index": schema.INT, "size": schema.INT},
    owner_module=__name__)

PENDING_DELETES = schema.table(
    "pending-deletes", hash_key="owner", range_key="share_ref",
    fields={"owner": schema.STR, "share_ref": schema.STR,    # "<storage_id>#<key>"
            "storage_id": schema.STR, "key": schema.STR, "attempts": schema.INT,
            # When the scrub deletes it: at once for a delete that failed; for a share about
            # to be written, once no request can still be writing it (the chunk's record,
            # written with its shares, takes the entries of those shares off).
            "last_error": schema.STR, "created": schema.INT, "shard": schema.STR},
    indexes=(schema.Index("pending", hash_key="shard", range_key="created"),),
    owner_module=__name__)


BLOBS = schema.table(
    "blobs", hash_key="owner", range_key="content_key",
    fields={"owner": schema.STR,
            # HMAC of the content under a key only the owner's key derives (packs.content_key):
            # identical content of one owner meets here, nothing is comparable across owners.
            "content_key": schema.STR,
            "chunk_id": schema.STR, "offset": schema.INT, "length": schema.INT,
            "blob_hash": schema.STR, "blob_id": schema.STR, "size": schema.INT,
            "encryption": schema.STR, "durability": schema.STR, "created": schema.INT,
            "refs": schema.INT,              # the versions reading it
            # Chunked content (a file too large to pack): its chunks are chunk `blob_id`-0..
            # chunk_count-1 (tree.files.chunk_id), `chunk_id` the first; absent for a packed blob.
            "chunk_count": schema.INT,
            # "<node id>:<trashed at>:<bytes>": the trashed item whose trash_bytes count this
            # content (all its readers were in that item); a new reader takes it back out
            # (tree.trash.claimed_from_trash).
            "trash_mark": schema.STR},
    # The blobs a pack holds: what compaction moves.
    indexes=(schema.Index("by-pack", hash_key="chunk_id", range_key="content_key"),),
    owner_module=__name__)


class PackInUse(Exception):
    """The chunk is a pack some files still use; `args[0]` says how many."""


@dataclass(frozen=True)
class ShareLocation:
    index: int
    storage_id: str
    key: str


@dataclass
class Chunk:
    owner: str
    chunk_id: str
    size: int
    encryption: str
    durability: str
    meta: dict
    shares: list[ShareLocation]
    wrapped_key: bytes | None = None
    created: float = 0.0
    damaged: set[int] = field(default_factory=set)
    revision: int = 0           # bumped by every change; repair compares-and-sets on it
    live: int | None = None     # a pack's files still using it (None: not a pack)
    live_bytes: int | None = None

    def share(self, index: int) -> ShareLocation | None:
        return next((s for s in self.shares if s.index == index), None)


@dataclass(frozen=True)
class Placement:
    owner: str
    storage_id: str
    chunk_id: str
    index: int
    size: int


@dataclass
class PendingDelete:
    owner: str
    storage_id: str
    key: str
    attempts: int = 1
    last_error: str | None = None
    created: float = 0.0


@dataclass(frozen=True)
class Blob:
    """One owner's content stored once, read by `refs` file versions: a blob in a pack, or
    (`chunk_count` > 0) the chunks of the version `blob_id` that first stored it."""
    owner: str
    content_key: str
    chunk_id: str
    offset: int
    length: int
    blob_hash: str
    blob_id: str            # the id its encryption is bound to (the first version's)
    size: int
    encryption: str
    durability: str
    refs: int = 1
    created: float = 0.0
    chunk_count: int = 0
    trash_mark: str | None = None

    @property
    def chunked(self) -> bool:
        return self.chunk_count > 0


def _blob(item: dict) -> Blob:
    return Blob(item["owner"], item["content_key"], item["chunk_id"], int(item["offset"]),
                int(item["length"]), item["blob_hash"], item["blob_id"], int(item["size"]),
                item["encryption"], item["durability"], int(item.get("refs", 0)),
                float(item.get("created", 0)), int(item.get("chunk_count", 0)),
                item.get("trash_mark"))


@dataclass(frozen=True)
class ChunkRef:
    owner: str
    chunk_id: str


def _shard(*parts: str) -> str:
    return str(zlib.crc32("#".join(parts).encode()) % SHARDS)


# When a batch's pack is checked (see _chunk_item): far beyond any request that writes one.
PACK_CHECK_SECONDS = 24 * 3600


def _compaction_queued(owner: str, chunk_id: str, since: float) -> dict:
    """The fields that put a pack on the compaction queue."""
    return {"compact_shard": _shard(owner, chunk_id), "compact_at": int(since)}


def _storage_ref(owner: str, storage_id: str) -> str:
    return f"{owner}#{storage_id}"


def _chunk_item(chunk: Chunk) -> dict:
    item = {"owner": chunk.owner, "chunk_id": chunk.chunk_id, "size": chunk.size,
            "encryption": chunk.encryption, "durability": chunk.durability, "meta": chunk.meta,
            "shares": _shares_json(chunk.shares), "created": int(chunk.created),
            "revision": chunk.revision}
    if chunk.wrapped_key:
        item["wrapped_key"] = chunk.wrapped_key
    if chunk.live is not None:
        item["live"], item["live_bytes"] = chunk.live, chunk.live_bytes or 0
        if chunk.live == 0:
            # A pack that files are yet to be moved into (compaction) is queued from the
            # start: if the moves never come (a crash), the next compaction frees it.
            item.update(_compaction_queued(chunk.owner, chunk.chunk_id, chunk.created))
        elif chunk.live:
            # A batch's pack counts its files as using it before they are attached: if the
            # server stops first, it would count them forever. Compaction checks it once,
            # when no request can still be attaching, against the files that use it.
            item.update(_compaction_queued(chunk.owner, chunk.chunk_id,
                                           chunk.created + PACK_CHECK_SECONDS))
    return item


def _shares_json(shares: list[ShareLocation]) -> list[dict]:
    return [{"index": s.index, "storage_id": s.storage_id, "key": s.key}
            for s in sorted(shares, key=lambda s: s.index)]


def _chunk(item: dict) -> Chunk:
    return Chunk(owner=item["owner"], chunk_id=item["chunk_id"], size=int(item["size"]),
                 encryption=item["encryption"], durability=item["durability"],
                 meta=item["meta"], wrapped_key=item.get("wrapped_key"),
                 shares=[ShareLocation(int(s["index"]), s["storage_id"], s["key"])
                         for s in item["shares"]],
                 created=float(item.get("created", 0)),
                 damaged={int(i) for i in item.get("damaged", ())},
                 revision=int(item.get("revision", 0)),
                 live=int(item["live"]) if "live" in item else None,
                 live_bytes=int(item["live_bytes"]) if "live_bytes" in item else None)


def _placement_item(owner: str, p: Placement) -> dict:
    return {**_placement_key(owner, p.storage_id, p.chunk_id, p.index),
            "owner": owner, "storage_id": p.storage_id, "chunk_id": p.chunk_id,
            "index": p.index, "size": p.size}


def _placement_key(owner: str, storage_id: str, chunk_id: str, index: int) -> dict:
    return {"storage_ref": _storage_ref(owner, storage_id), "share_ref": f"{chunk_id}#{index}"}


def _deleting(owner: str, shares) -> list[Put]:
    """The scrub's entries of shares taken off a chunk's record, written in the same
    transaction: a server stopped before it deleted them leaves none behind (the deleter drops
    each entry once its share is gone; the scrub deletes what is left)."""
    now = int(time.time())
    return [Put(PENDING_DELETES, {
        "owner": owner, "share_ref": f"{s.storage_id}#{s.key}", "storage_id": s.storage_id,
        "key": s.key, "attempts": 0, "last_error": "being deleted", "created": now,
        "shard": _shard(owner, s.storage_id, s.key)}) for s in shares]


def _written(owner: str, shares) -> list[Delete]:
    """The scrub's entries of shares now on a chunk's record (see plan_share_writes)."""
    return [Delete(PENDING_DELETES, {"owner": owner, "share_ref": f"{s.storage_id}#{s.key}"})
            for s in shares]


def _pending(item: dict) -> PendingDelete:
    return PendingDelete(owner=item["owner"], storage_id=item["storage_id"], key=item["key"],
                         attempts=int(item.get("attempts", 1)),
                         last_error=item.get("last_error"),
                         created=float(item.get("created", 0)))


_DAMAGE_FIELDS = ("damaged", "damage_shard", "damaged_at")


class AlongRefused(Exception):
    """A caller's write made part of a chunk's transaction did not hold (its `along` index);
    nothing was written."""


class ChunkStore:
    """Domain operations on chunks, their placements and pending deletes."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # -- chunks ----------------------------------------------------------------------------

    def create(self, chunk: Chunk, placement_size: int, along: tuple = ()) -> bool:
        """Record a new chunk and the placements of its shares, all or nothing, and take its
        shares off the scrub's list (plan_share_writes); False (and nothing written) when the
        owner has a chunk of that id already. `along`: the caller's writes in the same
        transaction (its usage counters); AlongRefused (nothing written) if one's condition
        fails."""
        first = Put(CHUNKS, _chunk_item(replace(chunk, revision=1)), Condition.absent())
        placements = [Put(PLACEMENTS, _placement_item(chunk.owner, Placement(
            chunk.owner, s.storage_id, chunk.chunk_id, s.index, placement_size)))
            for s in chunk.shares]
        try:
            self._write([first, *along] + _written(chunk.owner, chunk.shares) + placements)
        except ConditionFailed as exc:
            if exc.index is not None and 0 < exc.index <= len(along):
                raise AlongRefused(exc.index - 1) from None
            return False
        return True

    def get(self, owner: str, chunk_id: str) -> Chunk | None:
        item = self.engine.get(CHUNKS, {"owner": owner, "chunk_id": chunk_id})
        if item is None or item.get("owner") != owner:
            return None
        return _chunk(item)

    def exists(self, owner: str, chunk_id: str) -> bool:
        return self.get(owner, chunk_id) is not None

    def get_many(self, owner: str, chunk_ids) -> dict[str, Chunk]:
        """The owner's chunks among `chunk_ids` (one batched read), by id; gone ones left out."""
        items = self.engine.get_many(CHUNKS, [{"owner": owner, "chunk_id": chunk_id}
                                              for chunk_id in dict.fromkeys(chunk_ids)])
        return {item["chunk_id"]: _chunk(item) for item in items if item.get("owner") == owner}

    def mark_damaged(self, owner: str, chunk_id: str, indexes: set[int]) -> bool:
        """Add share indexes to the chunk's damage (and so to the scrub's queue); False when
        the chunk is gone."""
        if not indexes:
            return True
        change = Change(add_to_set={"damaged": {int(i) for i in indexes}},
                        set_default={"damage_shard": _shard(owner, chunk_id),
                                     "damaged_at": int(time.time())},
                        add={"revision": 1})
        try:
            self.engine.update(CHUNKS, {"owner": owner, "chunk_id": chunk_id}, change,
                               Condition.exists())
        except ConditionFailed:
            return False
        return True

    def clear_damage(self, owner: str, chunk_id: str, revision: int) -> bool:
        """Forget the damage if the chunk is still at `revision` (nothing failed since it was
        checked); False otherwise."""
        try:
            self.engine.update(CHUNKS, {"owner": owner, "chunk_id": chunk_id},
                               Change(remove=_DAMAGE_FIELDS, add={"revision": 1}),
                               Condition.exists() & Condition.eq("revision", revision))
        except ConditionFailed:
            return False
        return True

    def replace_shares(self, chunk: Chunk, new: dict[int, ShareLocation],
                       placement_size: int) -> Chunk | None:
        """Point the shares in `new` at their new locations, clear the damage and move the
        placements — if the chunk is still at `chunk.revision`. Returns the updated chunk, or
        None when it changed meanwhile (nothing written)."""
        old = {s.index: s for s in chunk.shares}
        shares = [new.get(i, s) for i, s in sorted(old.items())]
        change = Change(set={"shares": _shares_json(shares)}, remove=_DAMAGE_FIELDS,
                        add={"revision": 1})
        first = Update(CHUNKS, {"owner": chunk.owner, "chunk_id": chunk.chunk_id}, change,
                       Condition.exists() & Condition.eq("revision", chunk.revision))
        puts = [Put(PLACEMENTS, _placement_item(chunk.owner, Placement(
            chunk.owner, s.storage_id, chunk.chunk_id, i, placement_size)))
            for i, s in sorted(new.items())]
        put_keys = {(p.item["storage_ref"], p.item["share_ref"]) for p in puts}
        deletes = []
        for i in sorted(new):
            if i in old:
                key = _placement_key(chunk.owner, old[i].storage_id, chunk.chunk_id, i)
                # A share rebuilt onto the storage that held it before keeps its placement.
                if (key["storage_ref"], key["share_ref"]) not in put_keys:
                    deletes.append(Delete(PLACEMENTS, key))
        replaced = [old[i] for i in sorted(new) if i in old]
        try:
            self._write([first] + _deleting(chunk.owner, replaced) +
                        _written(chunk.owner, new.values()) + puts + deletes)
        except ConditionFailed:
            return None
        return replace(chunk, shares=shares, damaged=set(), revision=chunk.revision + 1)

    def delete(self, owner: str, chunk_id: str,
               along: Callable[[Chunk], list] = lambda chunk: []) -> Chunk | None:
        """Delete the chunk and its placements; returns what was deleted (None if nothing).
        Raises PackInUse for a pack that files still use (`live` only ever goes down).
        `along(chunk)`: the caller's writes for the same transaction (its usage counters)."""
        while True:
            chunk = self.get(owner, chunk_id)
            if chunk is None:
                return None
            if chunk.live is not None and chunk.live > 0:
                raise PackInUse(chunk.live)
            # On the revision read: the placements deleted are those of the shares deleted.
            condition = Condition.eq("revision", chunk.revision)
            if chunk.live is not None:
                # A pack: also only while no file uses it (a compaction may be moving files in;
                # that does not change the revision).
                condition = condition & Condition.compare("live", "le", 0)
            first = Delete(CHUNKS, {"owner": owner, "chunk_id": chunk_id}, condition)
            deletes = [Delete(PLACEMENTS, _placement_key(owner, s.storage_id, chunk_id, s.index))
                       for s in chunk.shares]
            try:
                self._write([first, *along(chunk)] + _deleting(owner, chunk.shares) + deletes)
                return chunk
            except ConditionFailed:
                pass         # changed meanwhile (a repair, a damage mark): read it again

    @staticmethod
    def release_operation(owner: str, chunk_id: str, size: int) -> Update:
        """One file's blob of a pack no longer used, as an operation for the caller's
        transaction (with the deletion of the version that used it, so it happens once). Not
        a revision change: a repair racing it stays valid."""
        return Update(CHUNKS, {"owner": owner, "chunk_id": chunk_id},
                      Change(add={"live": -1, "live_bytes": -int(size)}),
                      Condition.exists() & Condition.has("live"))

    @staticmethod
    def acquire_operation(owner: str, chunk_id: str, size: int) -> Update:
        """One more file's blob in a pack (compaction moving it in), for the caller's
        transaction."""
        return Update(CHUNKS, {"owner": owner, "chunk_id": chunk_id},
                      Change(add={"live": 1, "live_bytes": int(size)}),
                      Condition.exists() & Condition.has("live"))

    def dequeue_compaction(self, owner: str, chunk_id: str) -> None:
        """Take a pack off the compaction queue (it is dense enough now)."""
        try:
            self.engine.update(CHUNKS, {"owner": owner, "chunk_id": chunk_id},
                               Change(remove=("compact_shard", "compact_at")),
                               Condition.exists())
        except ConditionFailed:
            pass            # gone meanwhile

    def release(self, owner: str, chunk_id: str, size: int) -> int | None:
        """Release one blob now (it was never attached to a file); returns the files still
        using the pack, None if it is gone."""
        operation = self.release_operation(owner, chunk_id, size)
        try:
            item = self.engine.update(operation.table, operation.key, operation.change,
                                      operation.condition)
        except ConditionFailed:
            return None
        return int(item.get("live", 0))

    def queue_compaction(self, owner: str, chunk_id: str, now: float) -> bool:
        """Put a pack on the compaction queue (once), or move its later check to `now`; False
        if it is gone or queued for `now` or earlier already."""
        key = {"owner": owner, "chunk_id": chunk_id}
        for condition in (Condition.missing("compact_shard"),
                          Condition.compare("compact_at", "gt", int(now))):
            try:
                self.engine.update(CHUNKS, key, Change(set=_compaction_queued(owner, chunk_id,
                                                                              now)),
                                   Condition.exists() & Condition.has("live") & condition)
                return True
            except ConditionFailed:
                continue
        return False

    def compaction_queue(self, before: float | None = None) -> Iterator[ChunkRef]:
        """Packs queued for compaction (due by `before`, if given: at that second or earlier), of
        every owner, oldest first per shard."""
        yield from self._queue("compact", before=int(before) + 1 if before is not None else None)

    def recount_operation(self, chunk: Chunk, live: int, live_bytes: int) -> Update:
        """A pack's count of the files using it set to what they are (compaction's check), if
        it is still what `chunk` read."""
        return Update(CHUNKS, {"owner": chunk.owner, "chunk_id": chunk.chunk_id},
                      Change(set={"live": int(live), "live_bytes": int(live_bytes)}),
                      Condition.exists() & Condition.eq("live", chunk.live)
                      & Condition.eq("live_bytes", chunk.live_bytes or 0))

    # -- blobs (content stored once per owner) -------------------------------------------------

    def get_blob(self, owner: str, content_key: str) -> Blob | None:
        item = self.engine.get(BLOBS, {"owner": owner, "content_key": content_key})
        return _blob(item) if item is not None and item.get("owner") == owner else None

    def find_blobs(self, owner: str, keys) -> dict[str, Blob]:
        """The owner's stored contents among `keys` (one batched read), by content key: what a
        new file reads instead of storing again, claimed by the transaction that attaches it
        (claim_operation). One whose last reader is letting it go is left out."""
        found = (_blob(item) for item in self.engine.get_many(
            BLOBS, [{"owner": owner, "content_key": key} for key in dict.fromkeys(keys)]))
        return {blob.content_key: blob for blob in found if blob.refs >= 1}

    def find_blob(self, owner: str, content_key: str) -> Blob | None:
        blob = self.get_blob(owner, content_key)
        return blob if blob is not None and blob.refs >= 1 else None

    @staticmethod
    def claim_operation(blob: Blob, count: int = 1) -> Update:
        """`count` more files read this content, for the transaction that attaches them: holds
        only while it is not being let go and is where `blob` was read (the place read is the
        place claimed; compaction may move it meanwhile)."""
        return Update(BLOBS, {"owner": blob.owner, "content_key": blob.content_key},
                      Change(add={"refs": int(count)}),
                      Condition.exists() & Condition.compare("refs", "ge", 1)
                      & Condition.eq("chunk_id", blob.chunk_id)
                      & Condition.eq("offset", blob.offset))

    def mark_in_trash(self, blob: Blob, mark: str) -> bool:
        """Note that a trashed item counts this content in the trash bytes (see BLOBS'
        trash_mark), if its readers are still the ones `blob` read; False if not."""
        try:
            self.engine.update(BLOBS, {"owner": blob.owner, "content_key": blob.content_key},
                               Change(set={"trash_mark": mark}),
                               Condition.exists() & Condition.eq("refs", blob.refs))
            return True
        except ConditionFailed:
            return False

    @staticmethod
    def unmark_operation(blob: Blob, mark: str) -> Update:
        """The trash's count of this content taken back (or found gone already)."""
        return Update(BLOBS, {"owner": blob.owner, "content_key": blob.content_key},
                      Change(remove=("trash_mark",)), Condition.eq("trash_mark", mark))

    @staticmethod
    def new_blob_operation(blob: Blob) -> Put:
        """Register a blob just written, read by one version, for the transaction that
        attaches that version (fails if the content was registered meanwhile)."""
        item = {**schema.record_item(blob), "created": int(blob.created), "refs": 1}
        item.pop("trash_mark", None)
        if not blob.chunked:
            del item["chunk_count"]
        return Put(BLOBS, item, Condition.absent())

    def let_go(self, blob: Blob, along: tuple = ()) -> bool:
        """Chunked content's last reader is going: the blob is marked as let go (refs 0), so
        nothing claims it while its chunks are freed; False if it changed since read (or
        `along`, the caller's checks — that the reader is still there — failed). Its record
        goes after the chunks (forget_operation), so a crash in between leaves it for whoever
        frees that reader again."""
        return self.apply((Update(BLOBS, {"owner": blob.owner, "content_key": blob.content_key},
                                  Change(set={"refs": 0}),
                                  Condition.eq("refs", blob.refs)
                                  & Condition.eq("chunk_id", blob.chunk_id)), *along))

    @staticmethod
    def forget_operation(blob: Blob) -> Delete:
        """The record of chunked content let go (refs 0) whose chunks are freed."""
        return Delete(BLOBS, {"owner": blob.owner, "content_key": blob.content_key},
                      Condition.eq("refs", 0) & Condition.eq("chunk_id", blob.chunk_id))

    def unref_operations(self, blob: Blob) -> list[Operation]:
        """One reader fewer, as seen in `blob` (compare-and-set on its count): the last one
        deletes the blob and releases it from its pack."""
        key = {"owner": blob.owner, "content_key": blob.content_key}
        if blob.refs > 1:
            return [Update(BLOBS, key, Change(add={"refs": -1}), Condition.eq("refs", blob.refs))]
        return [Delete(BLOBS, key, Condition.eq("refs", blob.refs)
                       & Condition.eq("chunk_id", blob.chunk_id)),
                self.release_operation(blob.owner, blob.chunk_id, blob.length)]

    def apply(self, operations: tuple) -> bool:
        """Operations this store made (unref_operations, ...) with the caller's, all or
        nothing; False if a condition failed."""
        try:
            self.engine.transact(list(operations))
        except ConditionFailed:
            return False
        return True

    def blobs_in_pack(self, owner: str, chunk_id: str) -> list[Blob]:
        """The owner's blobs in pack `chunk_id` (through an eventually consistent index)."""
        return [_blob(item) for item in self.engine.query_index_all(BLOBS, "by-pack", chunk_id,
                                                                     limit=500)
                if item.get("owner") == owner]

    def move_blob(self, blob: Blob, to: dict, along: list[Operation]) -> bool:
        """Point a blob at its new place (`to`: chunk_id, offset, length, blob_hash) if it is
        still where `blob` says, with `along` in the same transaction."""
        return self.apply((Update(BLOBS, {"owner": blob.owner, "content_key": blob.content_key},
                                  Change(set=dict(to)),
                                  Condition.exists() & Condition.eq("chunk_id", blob.chunk_id)
                                  & Condition.eq("offset", blob.offset)), *along))

    def damaged(self) -> Iterator[ChunkRef]:
        """Every chunk with damaged shares, of every owner, oldest damage first per shard (the
        scrub's queue; the index may lag a moment behind a write in DynamoDB)."""
        yield from self._queue("damaged")

    def _queue(self, index: str, before: int | None = None) -> Iterator[ChunkRef]:
        for shard in range(SHARDS):
            for item in self.engine.query_index_all(CHUNKS, index, str(shard), before=before,
                                                    limit=100):
                yield ChunkRef(item["owner"], item["chunk_id"])

    # -- placements ------------------------------------------------------------------------

    def placements(self, owner: str, storage_id: str, *, limit: int = 1000,
                   cursor: str | None = None) -> tuple[list[Placement], str | None]:
        """One page of the shares a storage holds, in chunk order, and the next page's cursor."""
        page = self.engine.query(PLACEMENTS, _storage_ref(owner, storage_id), limit=limit,
                                 cursor=cursor)
        return ([Placement(owner, item["storage_id"], item["chunk_id"], int(item["index"]),
                           int(item["size"])) for item in page.items
                 if item.get("owner") == owner], page.cursor)

    def all_placements(self, owner: str, storage_id: str) -> Iterator[Placement]:
        cursor = None
        while True:
            found, cursor = self.placements(owner, storage_id, cursor=cursor)
            yield from found
            if not cursor:
                return

    def forget_placements(self, owner: str, storage_id: str, chunk_id: str) -> int:
        """Drop the placements of one chunk on one storage (the chunk is gone)."""
        keys = [{"storage_ref": item["storage_ref"], "share_ref": item["share_ref"]}
                for item in self.engine.query_all(PLACEMENTS, _storage_ref(owner, storage_id),
                                                  prefix=f"{chunk_id}#")
                if item.get("owner") == owner]
        self._write([Delete(PLACEMENTS, key) for key in keys])
        return len(keys)

    # -- pending deletes -------------------------------------------------------------------

    def plan_share_writes(self, owner: str, shares: list[tuple[str, str]], due: float) -> None:
        """Before (storage id, key) shares are written: the scrub deletes them from `due` on,
        unless the chunk's record (create, replace_shares) took them off the list meanwhile.
        A server stopped while it wrote a chunk's shares leaves none behind."""
        self.engine.transact([Put(PENDING_DELETES, {
            "owner": owner, "share_ref": f"{storage_id}#{key}", "storage_id": storage_id,
            "key": key, "attempts": 0, "last_error": "being written", "created": int(due),
            "shard": _shard(owner, storage_id, key)}) for storage_id, key in shares])

    def add_pending_delete(self, owner: str, storage_id: str, key: str, error: str) -> None:
        self.engine.put(PENDING_DELETES, {
            "owner": owner, "share_ref": f"{storage_id}#{key}", "storage_id": storage_id,
            "key": key, "attempts": 1, "last_error": error[:500], "created": int(time.time()),
            "shard": _shard(owner, storage_id, key)})

    def pending_deletes(self, owner: str | None = None) -> Iterator[PendingDelete]:
        """The shares waiting to be deleted, due or not: one owner's (their partition), or
        every owner's (through the index, for the scrub: only those due now)."""
        if owner is not None:
            for item in self.engine.query_all(PENDING_DELETES, owner):
                yield _pending(item)
            return
        due = int(time.time()) + 1
        for shard in range(SHARDS):
            for item in self.engine.query_index_all(PENDING_DELETES, "pending", str(shard),
                                                    before=due, limit=100):
                yield _pending(item)

    def pending_delete_failed(self, pending: PendingDelete, error: str) -> None:
        """Count another failed attempt (if the entry is still there)."""
        try:
            self.engine.update(PENDING_DELETES, self._pending_key(pending),
                               Change(add={"attempts": 1}, set={"last_error": error[:500]}),
                               Condition.exists())
        except ConditionFailed:
            pass

    def drop_pending_delete(self, pending: PendingDelete) -> None:
        self.engine.delete(PENDING_DELETES, self._pending_key(pending))

    def drop_pending_deletes(self, owner: str, shares: list[tuple[str, str]]) -> None:
        """Forget the scrub's entries of (storage id, key) shares that are gone now."""
        if shares:
            self._write([Delete(PENDING_DELETES, {"owner": owner, "share_ref": f"{sid}#{key}"})
                         for sid, key in shares])

    @staticmethod
    def _pending_key(pending: PendingDelete) -> dict:
        return {"owner": pending.owner, "share_ref": f"{pending.storage_id}#{pending.key}"}

    # -- writes in bounded transactions ------------------------------------------------------

    def _write(self, operations: list[Operation]) -> None:
        """The first MAX_TRANSACTION_ITEMS operations all or nothing, then the rest in further
        transactions of at most that many. Conditions are only on the first operations (the
        chunk's, and a caller's `along`), all in the first transaction: a ConditionFailed means
        one of those failed and nothing was written."""
        for start in range(0, len(operations), MAX_TRANSACTION_ITEMS):
            batch = operations[start:start + MAX_TRANSACTION_ITEMS]
            if batch:
                self.engine.transact(batch)


def chunk_store() -> ChunkStore:
    return ChunkStore(get_engine())
