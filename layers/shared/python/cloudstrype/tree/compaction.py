"""Compaction: packs whose files are mostly gone are rewritten, and their dead bytes freed.

Deleting or replacing a packed file releases its blob; the bytes stay in the pack (counted as
the owner's `dead_bytes`) until the last file goes or the pack is repacked. A pack whose live
bytes fall below packs.COMPACT_BELOW of its size is queued (chunk_store's `compact` index). The
scheduled job takes the queue per owner, reads each queued pack once, and moves its live blobs,
re-encrypted under a new key, into new packs with the same durability and encryption — several
sparse packs into one — then frees the old ones (restic's `prune`, without its lock):

- A new pack starts with no file counted as using it, and queued. Each file is moved by one
  transaction: its version points at the new place if it is still at the old one, the old pack
  counts one file fewer, the new one more. A file deleted or moved meanwhile is simply not
  moved; a crash leaves every file either here or there, and a new pack nothing was moved into
  is freed by the next run (it is still queued). No lock is held against uploads or deletes.
- A pack is freed only when no file counts as using it (`live` 0), by the same path as a delete.
- A reader holding the old place finds the pack gone and reads the version again (files.py).
- Content stored once (chunk_store.BLOBS, read by several versions) moves as one: the blob's
  record is re-pointed, its readers follow it.
- A pack damaged past its redundancy as a whole (every copy bad somewhere) is queued by the
  scrub's repair, however dense: its files that still read whole in some copy are moved out
  like any others, and it is freed once none uses it.
- A batch's pack counts its files as using it from the start, before they are attached. It is
  queued to be checked a day later (chunk_store.PACK_CHECK_SECONDS): compaction then counts the
  versions and stored-once blobs that really use it, and counts the rest dead (a server that
  stopped mid-batch), so the pack is freed or compacted like any other.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace

from cloudstrype import errors, quota
from cloudstrype.pipeline import codec, packs
from cloudstrype.pipeline.chunk_store import PACK_CHECK_SECONDS, Blob, Chunk, chunk_store
from cloudstrype.tree import files
from cloudstrype.tree.store import Version, tree_store

log = logging.getLogger(__name__)

# Queued packs one run takes on (at most ~16 GiB read and rewritten; the run's budget may end
# it sooner).
MAX_PACKS_PER_RUN = 4000


@dataclass
class Report:
    packs_compacted: int = 0          # old packs emptied and freed
    packs_written: int = 0
    blobs_moved: int = 0
    bytes_moved: int = 0
    bytes_freed: int = 0
    # Blobs a pack counted for files that never got them (the server stopped mid-batch).
    blobs_unclaimed: int = 0
    failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"packs_compacted": self.packs_compacted, "packs_written": self.packs_written,
                "blobs_moved": self.blobs_moved, "bytes_moved": self.bytes_moved,
                "bytes_freed": self.bytes_freed, "blobs_unclaimed": self.blobs_unclaimed,
                "compaction_failed": self.failed[:50]}


def compact(budget_seconds: float = 300.0) -> dict:
    """Work through the compaction queue for up to `budget_seconds` (the rest waits for the
    next run)."""
    deadline = time.monotonic() + budget_seconds
    report = Report()
    by_owner: dict[str, list[str]] = defaultdict(list)
    for taken, ref in enumerate(chunk_store().compaction_queue(before=time.time())):
        if taken >= MAX_PACKS_PER_RUN:
            break           # the rest next time (the oldest of each shard come first)
        by_owner[ref.owner].append(ref.chunk_id)
    for owner, chunk_ids in by_owner.items():
        if time.monotonic() > deadline:
            break
        try:
            _compact_owner(owner, chunk_ids, deadline, report)
        except errors.ApiError as exc:
            report.failed.append(f"{owner}: {exc.message}")
    if report.failed:
        log.warning("compaction left %d problems: %s", len(report.failed), report.failed[:10])
    return report.as_dict()


class _Writer:
    """Live blobs of one owner, durability and encryption, gathered into new packs."""

    def __init__(self, owner: str, durability: str, encryption: str, report: Report):
        self.owner, self.durability, self.encryption = owner, durability, encryption
        self.encrypted = codec.parse_encryption(encryption).encrypted
        self.report = report
        self.pending: list[tuple[Version | Blob, bytes]] = []
        self.size = 0

    def add(self, holder: Version | Blob, content: bytes) -> None:
        """`holder`: a version holding its blob's place, or a blob stored once (read by many
        versions through it)."""
        need = packs.stored_size(len(content), self.encrypted)
        if self.pending and self.size + need > packs.MAX_PACK_BYTES:
            self.flush()
        self.pending.append((holder, content))
        self.size += need

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending, self.size = self.pending, [], 0
        owner, trees = self.owner, tree_store()
        # Counted dead until files are moved in (each move counts its blob live again, as the
        # same bytes in the old pack are counted dead), from the transaction that records the
        # pack: the usage stays right whenever the server stops.
        placed = packs.write_pack(owner, [(_blob_id(h), c) for h, c in pending],
                                  self.encryption, self.durability, claimed=False)
        self.report.packs_written += 1
        new_chunk = placed[0].chunk_id
        for (holder, _), where in zip(pending, placed, strict=True):
            along = packs.move_operations(owner, _where(holder), where)
            if isinstance(holder, Blob):
                moved = chunk_store().move_blob(
                    holder, {"chunk_id": where.chunk_id, "offset": where.offset,
                             "length": where.length, "blob_hash": where.blob_hash}, along)
            else:
                moved = trees.move_blob(holder, files.pack_fields(where), along)
            if moved:
                self.report.blobs_moved += 1
                self.report.bytes_moved += where.length
        # Dense now (taken off the queue), or freed if nothing moved in, or left for next time.
        record = chunk_store().get(owner, new_chunk)
        if record is not None and (record.live_bytes or 0) >= packs.COMPACT_BELOW * record.size:
            chunk_store().dequeue_compaction(owner, new_chunk)
        else:
            packs.after_release(owner, new_chunk)


def _compact_owner(owner: str, chunk_ids: list[str], deadline: float, report: Report) -> None:
    chunks = chunk_store()
    writers: dict[tuple[str, str], _Writer] = {}
    emptied: list[str] = []
    for chunk_id in chunk_ids:
        if time.monotonic() > deadline:
            break
        record = chunks.get(owner, chunk_id)
        if record is None or record.live is None:
            continue
        holders: list[Version | Blob] | None = None
        if time.time() - record.created >= PACK_CHECK_SECONDS:
            holders = _holders(owner, chunk_id)
            record = _recount(record, holders, report)
            if record is None:
                continue
        if record.live > 0 and (record.live_bytes or 0) >= packs.COMPACT_BELOW * record.size \
                and not record.damaged:
            # Dense: a batch's pack, checked; or one a past run filled and crashed before
            # taking off the queue. A damaged one is queued by the repair that could not
            # rebuild it whole, to be rescued file by file: it is moved, however dense.
            chunks.dequeue_compaction(owner, chunk_id)
            continue
        if holders is None:
            holders = _holders(owner, chunk_id)
        by_scheme: dict[tuple[str, str], list[Version | Blob]] = defaultdict(list)
        for holder in holders:
            by_scheme[(holder.durability, holder.encryption)].append(holder)
        try:
            for (durability, encryption), group in by_scheme.items():
                encrypted = codec.parse_encryption(encryption).encrypted
                contents = packs.read_blobs(
                    owner, chunk_id, [(_blob_id(h), _where(h)) for h in group], encrypted)
                writer = writers.get((durability, encryption))
                if writer is None:
                    writer = writers[(durability, encryption)] = _Writer(
                        owner, durability, encryption, report)
                for holder in group:
                    content = contents[_blob_id(holder)]
                    if isinstance(content, Exception):
                        # Left in place (the pack stays) for the scrub to repair.
                        report.failed.append(f"{chunk_id}/{_blob_id(holder)}: {content}")
                        continue
                    writer.add(holder, content)
        except (errors.ApiError, codec.CodecError) as exc:
            report.failed.append(f"{chunk_id}: {exc}")
            continue
        emptied.append(chunk_id)
    for writer in writers.values():
        writer.flush()
    for chunk_id in emptied:
        freed = packs.after_release(owner, chunk_id)
        if freed is not None:
            report.packs_compacted += 1
            report.bytes_freed += freed.size


def _holders(owner: str, chunk_id: str) -> list[Version | Blob]:
    """What uses pack `chunk_id`: versions placed in it, and content stored once in it."""
    return [*(v for v in tree_store().versions_in_pack(owner, chunk_id)
              if v.pack_chunk == chunk_id),
            *(b for b in chunk_store().blobs_in_pack(owner, chunk_id) if b.chunk_id == chunk_id)]


def _recount(record: Chunk, holders: list[Version | Blob], report: Report) -> Chunk | None:
    """A pack old enough that no request can still be attaching files to it counts what really
    uses it: a batch's pack counted its files from the start, and a server stopped before
    some were attached left them counted with no file. Their bytes become dead, as a delete's
    would. Counts only go down: a count below the holders found is left alone (an index that
    lags shows holders already gone, never ones not yet there, since nothing moves into an
    old pack). None if the pack changed meanwhile (the next run checks it again)."""
    count = len(holders)
    size = sum(_where(h).length for h in holders)
    live, live_bytes = int(record.live or 0), int(record.live_bytes or 0)
    if count >= live or size > live_bytes:
        return record
    unclaimed = live_bytes - size
    if not chunk_store().apply((chunk_store().recount_operation(record, count, size),
                                quota.dead_bytes_change(record.owner, unclaimed))):
        return None
    log.warning("pack %s of %s counted %d files that never got their blob; %d bytes are dead",
                record.chunk_id, record.owner, live - count, unclaimed)
    report.blobs_unclaimed += live - count
    return replace(record, live=count, live_bytes=size)


def _where(holder: Version | Blob) -> packs.PackedBlob:
    return packs.blob_place(holder) if isinstance(holder, Blob) else files.packed_blob(holder)


def _blob_id(holder: Version | Blob) -> str:
    """The id the blob's encryption is bound to (kept when it moves)."""
    return holder.blob_id if isinstance(holder, Blob) else holder.version_id
