"""Storing chunks: encode, place shares on distinct storages in parallel, record where they went;
read them back from the first good shares; repair what was lost.

Every chunk and every share location belongs to one owner, and every lookup is by owner.
"""
from __future__ import annotations

import collections
import logging
import re
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone

from cloudstrype import errors, quota, storages, vault
from cloudstrype.backends.base import (
    BackendAuthError,
    BackendError,
    BackendFull,
    ShareNotFound,
)
from cloudstrype.metadata.engine import MetadataError
from cloudstrype.pipeline import checker, codec
from cloudstrype.pipeline.chunk_store import (
    AlongRefused,
    Chunk,
    PackInUse,
    ShareLocation,
    chunk_store,
)

# Placement is a storage rule; default_durability stays importable from here for callers.
from cloudstrype.storages.placement import (
    can_take,
    choose_storages,
    default_durability,
    retry_after_seconds,
)
from cloudstrype.storages.store import Storage

log = logging.getLogger("cloudstrype.pipeline")

CHUNK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# The chunks holding a file version's content are named by the file system (file_chunk_id):
# the chunk, cloud and array APIs, which store and delete chunks by a caller's name, must not
# reach them (deleting one would break the file), nor take such a name for a chunk of their own.
FILE_CHUNK_RE = re.compile(r"^v[0-9a-f]{8,64}-[0-9]{1,7}$")
MAX_CHUNK_SIZE = codec.MAX_CHUNK_SIZE
# A read waits this long for a share before asking another storage too.
HEDGE_SECONDS = 2.0
# Give up on one share fetch after this long (the storage is then treated as down).
SHARE_TIMEOUT_SECONDS = 20.0
# A share on no chunk's record this long after its write began is deleted by the scrub: far
# beyond any request (API Gateway ends one at 29 s, Lambda at 15 min).
SHARE_WRITE_GRACE_SECONDS = 6 * 3600

SHARE_IO_THREADS = 32
_io = ThreadPoolExecutor(max_workers=SHARE_IO_THREADS, thread_name_prefix="share-io")
# The most of those one OAuth storage keeps busy at once: a throttled provider's requests
# sleep in their threads (pacing), and 32 writes queued for one had every thread asleep, so a
# write to a healthy storage of any user waited its turn (3.7 s behind a 4 s hold). More at
# once would not go faster: the providers take 3-8 writes a second.
STORAGE_IO_THREADS = 8
# How long a request waits in its storage's queue before it fails as that storage's (and the
# write goes to another storage, as when a provider's wait runs past the request's budget):
# what it waited comes before that budget, and both must end inside the gateway's 29 s.
STORAGE_QUEUE_SECONDS = 8.0


class _StorageLanes:
    """Share I/O on the shared pool, at most `per_storage` tasks of one storage running at
    once; the rest wait in that storage's own queue, not in a thread."""

    def __init__(self, pool: ThreadPoolExecutor, per_storage: int):
        self._pool = pool
        self._per_storage = per_storage
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._waiting: dict[str, collections.deque] = {}

    def submit(self, storage_id: str, fn, *args) -> Future:
        future: Future = Future()
        with self._lock:
            running = self._running.get(storage_id, 0)
            if running >= self._per_storage:
                self._waiting.setdefault(storage_id, collections.deque()).append(
                    (future, fn, args, time.monotonic()))
                return future
            self._running[storage_id] = running + 1
        self._start(storage_id, future, fn, args)
        return future

    def _start(self, storage_id: str, future: Future, fn, args) -> None:
        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return              # cancelled while it waited
            try:
                result = fn(*args)
            except BaseException as exc:    # noqa: BLE001 - handed to the future's waiter
                future.set_exception(exc)
            else:
                future.set_result(result)

        try:
            self._pool.submit(run).add_done_callback(lambda _: self._next(storage_id))
        except RuntimeError as exc:         # the pool is shut down (the process is ending)
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)
            self._next(storage_id)

    def _next(self, storage_id: str) -> None:
        while True:
            with self._lock:
                waiting = self._waiting.get(storage_id)
                if not waiting:
                    self._waiting.pop(storage_id, None)
                    self._running[storage_id] -= 1
                    if not self._running[storage_id]:
                        del self._running[storage_id]
                    return
                future, fn, args, queued_at = waiting.popleft()
            waited = time.monotonic() - queued_at
            if waited <= STORAGE_QUEUE_SECONDS:
                self._start(storage_id, future, fn, args)
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(BackendError(
                    f"busy: this request waited {waited:.0f} s for one of the storage's "
                    f"{self._per_storage} request slots (its provider is slowing it down)"))


_lanes = _StorageLanes(_io, STORAGE_IO_THREADS)


def _share_io(record, fn, *args) -> Future:
    """Run `fn(*args)`, an I/O of the storage `record`, on the share pool: an OAuth storage's
    (paced: its requests may sleep) in its lane, any other straight away."""
    if not storages.is_oauth(record.kind):
        return _io.submit(fn, *args)
    return _lanes.submit(record.storage_id, fn, *args)
# Metadata writes overlapped with a chunk's encoding (the quota charge).
_meta = ThreadPoolExecutor(max_workers=8, thread_name_prefix="chunk-meta")


def _choose(candidates: list[Storage], count: int, share_size: int, **kwargs) -> list[Storage]:
    """choose_storages, once more after measuring again those too full when last measured
    (space freed since was not seen for up to ten minutes: writes were refused "full")."""
    try:
        return choose_storages(candidates, count, share_size, **kwargs)
    except errors.Unprocessable:
        if not storages.remeasure_full(candidates, share_size):
            raise
    return choose_storages(candidates, count, share_size, **kwargs)


def _key_purpose(chunk_id: str) -> str:
    return f"chunk:{chunk_id}:data-key"


def _blob_key_purpose(chunk_id: str) -> str:
    # A pack's blob key (its chunk is stored unencrypted): never usable as a chunk data key.
    return f"chunk:{chunk_id}:blob-key"


def validate_chunk_id(chunk_id: str) -> str:
    if not isinstance(chunk_id, str) or not CHUNK_ID_RE.fullmatch(chunk_id):
        raise errors.BadRequest("A chunk id is 1-128 letters, digits, '-' or '_'.",
                                code="invalid_chunk_id")
    return chunk_id


def file_chunk_id(version_id: str, index: int) -> str:
    """Chunk `index` of a file version's content."""
    return f"v{version_id}-{index}"


def check_named_chunk_id(chunk_id: str) -> str:
    """A chunk id a caller of the cloud or array API names: not one of the file system's."""
    validate_chunk_id(chunk_id)
    if FILE_CHUNK_RE.fullmatch(chunk_id):
        raise errors.BadRequest(f"Chunk ids of the form v<version>-<n> name the chunks of your "
                                f"files; choose another id than {chunk_id}.",
                                code="reserved_chunk_id")
    return chunk_id


def delete_named_chunk(owner: str, chunk_id: str) -> None:
    """DELETE through the chunk, cloud and array APIs: a file's chunk goes with its file only."""
    validate_chunk_id(chunk_id)
    if FILE_CHUNK_RE.fullmatch(chunk_id) and chunk_store().exists(owner, chunk_id):
        raise errors.Conflict(f"Chunk {chunk_id} holds content of one of your files; delete "
                              f"the file instead.", code="chunk_in_use")
    delete_chunk(owner, chunk_id)


def _share_key(owner: str, chunk_id: str, index: int) -> str:
    # Owner in the name: two users may point storages at one bucket without colliding. A random
    # tail makes every write a new object, so a repair never overwrites a share in place.
    return f"{owner}.{chunk_id}.{index}.{uuid.uuid4().hex[:8]}".lower()


# -- write -------------------------------------------------------------------------------------

@dataclass
class StoredChunk:
    record: Chunk

    def public(self) -> dict:
        r = self.record
        return {"chunk_id": r.chunk_id, "size": r.size, "encryption": r.encryption,
                "durability": r.durability,
                "shares": [{"index": s.index, "storage_id": s.storage_id}
                           for s in sorted(r.shares, key=lambda s: s.index)]}


def put_chunk(owner: str, data: bytes, encryption: str | None = None,
              durability: str | None = None, chunk_id: str | None = None,
              kinds: frozenset[str] | None = None, *, blob_key: bytes | None = None,
              live: int | None = None, after: Future | None = None,
              within_quota: bool = True, dead: bool = False) -> StoredChunk:
    """Encode and store one chunk; `kinds` limits which kinds of storage may hold its shares.

    A pack (pipeline/packs.py) passes `live`, the files using it, and `blob_key`, the key of
    its blobs, kept sealed under the owner's key on the record. `after` is a write of the
    caller's that must be durable before the chunk's record is (e.g. an upload part recorded
    as pending, so an abort finds the chunk): it runs while the chunk is encoded and its shares
    written, and is awaited before the record; if it fails, nothing of the chunk is kept.
    `within_quota=False` counts the bytes even above the owner's quota (compaction rewriting
    what the owner stores already, freed again right after). `dead`: its bytes count as dead
    from the start (a compaction's pack, until files are moved in), from the same
    transaction."""
    if len(data) > MAX_CHUNK_SIZE:
        raise errors.PayloadTooLarge(f"A chunk is at most {MAX_CHUNK_SIZE} bytes (4 MiB); this "
                                     f"one has {len(data)}. Split the data into chunks.",
                                     code="chunk_too_large")
    # Every stored byte counts against the owner's quota. Whether it fits is read while the
    # chunk is encoded, before any share is written; the bytes are charged in the transaction
    # that records the chunk (so a server stopped in between charges nothing), which holds
    # only within the quota.
    room = _meta.submit(quota.check_room, owner, len(data)) \
        if within_quota and quota.quota_bytes() else None
    return _put_chunk(owner, data, encryption, durability, chunk_id, kinds, blob_key, live,
                      room, after, within_quota, dead)


def _put_chunk(owner: str, data: bytes, encryption: str | None, durability: str | None,
               chunk_id: str | None, kinds: frozenset[str] | None, blob_key: bytes | None,
               live: int | None, room: Future | None, after: Future | None,
               within_quota: bool, dead: bool) -> StoredChunk:
    enc = codec.parse_encryption(encryption)
    candidates = [s for s in storages.list_storages(owner) if kinds is None or s.kind in kinds]
    dur = codec.parse_durability(durability or default_durability(candidates))
    if chunk_id is None:
        chunk_id = uuid.uuid4().hex
    else:
        validate_chunk_id(chunk_id)
        if chunk_store().exists(owner, chunk_id):
            raise errors.Conflict(f"Chunk {chunk_id} exists already; delete it first to replace "
                                  f"it.", code="chunk_exists")
    encoded = codec.encode(chunk_id, data, enc, dur, None)
    targets = _choose(candidates, dur.total_shares, encoded.info.share_size)
    spares = [s for s in candidates if s not in targets]
    if room is not None:
        room.result()                   # over quota: raised here, before any share is written
    locations = _write_shares(owner, chunk_id, encoded.shares, targets, spares)
    wrapped = None
    if encoded.data_key:
        wrapped = vault.seal(owner, encoded.data_key, _key_purpose(chunk_id))
    elif blob_key:
        wrapped = vault.seal(owner, blob_key, _blob_key_purpose(chunk_id))
    record = Chunk(owner, chunk_id, size=len(data), encryption=str(enc), durability=str(dur),
                   meta=encoded.meta, wrapped_key=wrapped,
                   shares=[ShareLocation(i, s.storage_id, k)
                           for i, (s, k) in sorted(locations.items())],
                   created=time.time(), live=live, live_bytes=len(data) if live else None)
    # The record and the placements of its shares are written together, or not at all; the
    # storages' counters are written meanwhile (independent writes: they share a commit or a
    # round trip with it) and taken back if the record could not be written.
    if after is not None:
        try:
            after.result()
        except BaseException:
            _delete_shares(owner, locations)
            raise
    share_size = encoded.info.share_size
    counting = _start_counting(locations.values(), 1, share_size)
    try:
        created = _create_charged(record, share_size, within_quota, dead)
    except errors.ApiError:
        # Over the quota: nothing was written, and the shares go now.
        _take_back(counting)
        _delete_shares(owner, locations)
        raise
    except BaseException:
        # Whether the record was written is not known (a store that did not answer): its
        # shares stay on the scrub's list, which deletes them only if no record took them.
        _take_back(counting)
        raise
    if not created:
        _take_back(counting)
        _delete_shares(owner, locations)
        raise errors.Conflict(f"Chunk {chunk_id} was created by another request at the same "
                              f"time.", code="chunk_exists")
    _finish_counting(counting)
    return StoredChunk(record)


def _create_charged(record: Chunk, share_size: int, within_quota: bool, dead: bool) -> bool:
    """chunk_store().create with the chunk's bytes charged in its transaction: over the quota
    (another upload took the room since it was checked), 413 and nothing written; a counter
    never written yet is made, and the transaction tried again."""
    owner, size = record.owner, int(record.size)
    for _ in range(3):
        try:
            return chunk_store().create(record, share_size, (
                quota.charge_operation(owner, size, within_quota, dead),))
        except AlongRefused:
            # A counter not made yet fails the condition too: made now (by this request or a
            # racing one), the charge is tried again while the quota has room for it.
            if not quota.ensure_counter(owner) and not quota.has_room(owner, size):
                raise quota.over_quota(owner, size) from None
    raise quota.over_quota(owner, size)


def _write_shares(owner: str, chunk_id: str, shares: list[bytes], targets: list,
                  spares: list, indexes: list[int] | None = None) -> dict[int, tuple]:
    """Write share i to targets[i] in parallel; a failed write moves to a spare storage.
    `indexes`: the chunk's share index of each (a repair writes some of them), named in its key;
    by default 0, 1, ... Each
    share is put on the scrub's list before it is written, and the chunk's record takes it off
    (chunk_store.plan_share_writes): whatever a stopped server or a failed write leaves on a
    storage is deleted later."""
    locations: dict[int, tuple] = {}
    pending: dict[Future, tuple[int, object, str]] = {}
    spares = [s for s in spares if s.usable()]

    def plan(placed: list[tuple[int, object]]) -> list[tuple[int, object, str]]:
        keyed = [(index, record, _share_key(owner, chunk_id,
                                            index if indexes is None else indexes[index]))
                 for index, record in placed]
        chunk_store().plan_share_writes(
            owner, [(record.storage_id, key) for _, record, key in keyed],
            time.time() + SHARE_WRITE_GRACE_SECONDS)
        return keyed

    def submit(index: int, record, key: str) -> None:
        future = _share_io(record, storages.backend_for(record).put, key, shares[index])
        pending[future] = (index, record, key)

    for index, record, key in plan(list(enumerate(targets))):
        submit(index, record, key)
    failures, full, away, refused = [], [], [], []
    while pending:
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in done:
            index, record, key = pending.pop(future)
            error = future.exception()
            if error is None:
                locations[index] = (record, key)
                continue
            failures.append(f"{record.name}: {error}")
            if isinstance(error, BackendFull):
                # Full, not down: what it holds is counted again, so placement skips it now.
                full.append(record.name)
                storages.refresh_usage(record, force=True)
            else:
                storages.mark_down(record, str(error))
                (refused if isinstance(error, BackendAuthError) else away).append(record)
            if spares:
                submit(*plan([(index, spares.pop(0))])[0])
    if len(locations) < len(shares):
        _delete_shares(owner, locations)
        if len(full) == len(failures):
            raise errors.Unprocessable(
                f"Your storages are too full for this chunk's {len(shares)} shares, so nothing "
                f"was kept: {'; '.join(failures[:5])}. Free space on them, add storages, or "
                f"choose a durability with fewer shares.",
                code="not_enough_storages", details={"needed": len(shares),
                                                     "full": sorted(set(full))})
        # As placement says it of storages already known to be away (README, Durability):
        # the write waits for them, the one to find them away included. What will not pass
        # by waiting is said with what to do: a storage whose provider refused its access
        # (reconnect it), one full (free space).
        retry = retry_after_seconds(away, time.time())
        todo = [f"reconnect {', '.join(sorted({r.name for r in refused}))} (its provider "
                f"refused its access)" if refused else "",
                f"free space on {', '.join(sorted(set(full)))}" if full else "",
                f"try again when {'it is' if len(away) == 1 else 'they are'} back (retry in "
                f"{retry} s)" if away else ""]
        raise errors.ServiceUnavailable(
            f"This needs {len(shares)} storages, but {len(failures)} failed as the chunk was "
            f"written ({'; '.join(failures[:5])}). Nothing was stored; "
            f"{'; '.join(t for t in todo if t)}; or choose a durability with fewer shares.",
            code="storages_unavailable",
            details={"needed": len(shares), "away": sorted({r.name for r in away}),
                     "refused": sorted({r.name for r in refused}),
                     "full": sorted(set(full))},
            headers={"Retry-After": str(retry)})
    return locations


def _count_shares(held, sign: int, share_size: int) -> None:
    """Keep the storages' share counts and stored bytes in step with the placements."""
    _finish_counting(_start_counting(held, sign, share_size))


@dataclass
class _Counting:
    owner: str
    counts: dict[str, tuple[int, int]]        # storage id -> (shares, bytes) added
    futures: dict[str, Future]


def _start_counting(held, sign: int, share_size: int) -> _Counting:
    """The counter writes for shares `held` ((storage, key) pairs), all started at once."""
    counts: dict[str, tuple[int, int]] = {}
    owner = ""
    for record, _key in held:
        owner = record.owner
        shares, size = counts.get(record.storage_id, (0, 0))
        counts[record.storage_id] = (shares + sign, size + sign * share_size)
    futures = storages.count_shares_async(owner, counts) if counts else {}
    return _Counting(owner, counts, futures)


def _finish_counting(counting: _Counting) -> None:
    """Wait for the counter writes; the first failure is raised once all are done."""
    failures = [f.exception() for f in counting.futures.values()]
    failure = next((f for f in failures if f is not None), None)
    if failure is not None:
        raise failure


def _take_back(counting: _Counting) -> None:
    """Undo the counter writes that were made (the chunk's record was not written)."""
    made = {storage_id: (-shares, -size)
            for storage_id, (shares, size) in counting.counts.items()
            if counting.futures[storage_id].exception() is None}
    if made:
        _finish_counting(_Counting(counting.owner, made,
                                   storages.count_shares_async(counting.owner, made)))


def _delete_shares(owner: str, locations: dict) -> list[str]:
    """Best effort now; a share that cannot be deleted is remembered and the scrub retries it
    (until then it is unreadable, encrypted garbage). Returns the failures."""
    futures = {_share_io(record, storages.backend_for(record).delete, key): (record, key)
               for record, key in locations.values()}
    failures, gone = [], []
    for future, (record, key) in futures.items():
        try:
            future.result(timeout=SHARE_TIMEOUT_SECONDS)
        except ShareNotFound:
            pass
        except Exception as exc:
            failures.append(f"{record.name}: {exc}")
            chunk_store().add_pending_delete(owner, record.storage_id, key, str(exc))
            continue
        gone.append((record.storage_id, key))
    # Their entries (written with the record's change, or before the write) are done with.
    try:
        chunk_store().drop_pending_deletes(owner, gone)
    except MetadataError as exc:
        log.warning("shares deleted; the scrub will find their entries and finish: %s", exc)
    return failures


def retry_pending_deletes(deadline: float) -> dict:
    """Part of the scrub: delete the shares whose first delete failed, and those written for
    no chunk (a stopped server, a failed write) once their grace is over."""
    deleted = waiting = dropped = 0
    store = chunk_store()
    for pending in store.pending_deletes():
        if time.monotonic() > deadline:
            break
        try:
            record = storages.get_storage(pending.owner, pending.storage_id)
        except errors.NotFound:
            store.drop_pending_delete(pending)   # the storage was removed; nothing to reach
            dropped += 1
            continue
        try:
            storages.backend_for(record).delete(pending.key)
        except ShareNotFound:
            pass
        except Exception as exc:
            store.pending_delete_failed(pending, str(exc))
            waiting += 1
            continue
        store.drop_pending_delete(pending)
        deleted += 1
    return {"orphans_deleted": deleted, "orphans_waiting": waiting, "orphans_dropped": dropped}


LEFTOVERS_SECONDS = 10.0


def delete_leftovers_on(owner: str, storage_id: str) -> int:
    """Before a storage that holds no share is removed: delete now the files its pending-delete
    entries name (shares a stopped server left half written, deletes that failed), whatever
    their grace, and drop the entries. No chunk's record names them (it holds no share), and
    once the storage is gone the scrub could not reach them: they stayed on it for good. Best
    effort, within LEFTOVERS_SECONDS: a storage out of reach keeps them (it is being removed;
    nothing of the account's is lost). Returns how many were deleted."""
    record = storages.get_storage(owner, storage_id)
    backend = storages.backend_for(record)
    store, deadline, deleted = chunk_store(), time.monotonic() + LEFTOVERS_SECONDS, 0
    for pending in [p for p in store.pending_deletes(owner) if p.storage_id == storage_id]:
        if time.monotonic() > deadline:
            break
        try:
            backend.delete(pending.key)
            deleted += 1
        except ShareNotFound:
            pass
        except Exception as exc:        # out of reach: left there, as said above
            log.info("storage %s removed with a leftover it could not delete: %s",
                     storage_id, exc)
        store.drop_pending_delete(pending)
    return deleted


# -- read --------------------------------------------------------------------------------------

def get_record(owner: str, chunk_id: str) -> Chunk:
    validate_chunk_id(chunk_id)
    record = chunk_store().get(owner, chunk_id)
    if record is None:
        raise errors.NotFound(f"No chunk {errors.shown(chunk_id)}.", code="chunk_not_found")
    return record


def find_chunk(owner: str, chunk_id: str) -> Chunk | None:
    """The owner's chunk, or None (for callers walking placements that may be stale)."""
    return chunk_store().get(owner, chunk_id)


def mark_damaged(owner: str, chunk_id: str, indexes: set[int]) -> None:
    """Queue shares for repair by the scrub (they failed a read or a verification)."""
    if not chunk_store().mark_damaged(owner, chunk_id, indexes):
        log.info("chunk %s is gone; its damaged shares need no repair", chunk_id)


def _storages_by_id(owner: str) -> dict:
    return {s.storage_id: s for s in storages.list_storages(owner)}


def _fetch_shares(record: Chunk, collector: codec.ShareCollector,
                  wanted: list[int] | None = None, skip: frozenset[str] = frozenset(),
                  unreachable: set[int] | None = None) -> set[int]:
    """Fetch shares in parallel until the collector has enough; returns the failed indexes,
    and adds to `unreachable` those that failed for want of an answer (an error, a timeout),
    not for being missing or wrong. Shares on the storages in `skip` (found not answering by
    this request already) are not asked, nor counted as failed."""
    unreachable = set() if unreachable is None else unreachable
    by_id = _storages_by_id(record.owner)
    locations = {s.index: s for s in record.shares}
    order = [i for i in (wanted or collector.wanted())
             if i in locations and locations[i].storage_id not in skip]
    # Healthy storages first; a storage that is marked down is tried last, not never.
    order.sort(key=lambda i: 0 if (by_id.get(locations[i].storage_id) and
                                   by_id[locations[i].storage_id].usable()) else 1)
    failed: set[int] = set()
    pending: dict[Future, int] = {}
    started: dict[Future, float] = {}

    def launch() -> bool:
        while order:
            index = order.pop(0)
            storage = by_id.get(locations[index].storage_id)
            if storage is None:          # the storage was removed: the share is gone
                failed.add(index)
                continue
            future = _share_io(storage, _read_share, storage, locations[index].key,
                               int(record.meta.get("share_size") or 0))
            pending[future] = index
            started[future] = time.monotonic()
            return True
        return False

    for _ in range(collector.needed):
        launch()
    while pending and not collector.enough:
        done, _ = wait(list(pending), timeout=HEDGE_SECONDS, return_when=FIRST_COMPLETED)
        if not done:
            # A slow share: ask one more storage, and give up on fetches past the timeout.
            launch()
            now = time.monotonic()
            for future in [f for f in pending if now - started[f] > SHARE_TIMEOUT_SECONDS]:
                index = pending.pop(future)
                failed.add(index)
                unreachable.add(index)
                launch()
            continue
        for future in done:
            index = pending.pop(future)
            error = future.exception()
            if error is None and collector.add(index, future.result()):
                continue
            failed.add(index)
            storage = by_id.get(locations[index].storage_id)
            if error is not None and not isinstance(error, ShareNotFound):
                unreachable.add(index)
                if storage:
                    storages.mark_down(storage, str(error))
            launch()
    for future in pending:
        future.cancel()
    return failed


def get_chunk(owner: str, chunk_id: str, skip: frozenset[str] = frozenset()) -> bytes:
    """The chunk's bytes, from enough good shares; none asked of the storages in `skip`."""
    record = get_record(owner, chunk_id)
    # One pass over the bytes: an encrypted chunk's GCM tag checks every share used, so their
    # hashes are computed only if it does not authenticate (to find the bad one).
    collector = codec.ShareCollector(record.meta, hash_on_failure=True)
    data_key = None
    unreachable: set[int] = set()
    while True:
        failed = _fetch_shares(record, collector, skip=skip, unreachable=unreachable)
        # Only what is missing or wrong is damage: a share on a storage that did not answer
        # is waited for (its storage is marked down), not rebuilt elsewhere.
        lost = failed - unreachable
        if lost:
            mark_damaged(owner, chunk_id, lost)
        if not collector.enough and collector.rescue() is None:
            raise _too_few_shares(record, collector, bool(unreachable or skip),
                                  _not_answering(record, unreachable, skip))
        if data_key is None and record.wrapped_key and collector.info.encryption.encrypted:
            data_key = vault.open_sealed(owner, record.wrapped_key, _key_purpose(chunk_id))
        try:
            return collector.decode(chunk_id, data_key).data
        except codec.SharesFailedCheck as bad:
            # Dropped from the collector: the next round fetches other shares instead.
            mark_damaged(owner, chunk_id, set(bad.bad))


def local_reads(owner: str, chunk_ids: list[str]) -> list[dict | None]:
    """How a reader on this machine reads each chunk itself, get_chunk's work without its
    trips through the server: the chunk's codec metadata, its data key (hex; None for an
    unencrypted chunk) and the files of the shares to decode it from, the ones get_chunk
    would ask first (data shares first, on storages not marked down). None for a chunk whose
    needed shares are not all files on this machine: that one is read through the server.

    The reader is the server's own OS user (infra/local/transfer.py checks it), who can read
    the storages' folders and the data directory's master key already; what it gains is the
    keys of chunks its Cloudstrype user may read, sparing the server's copy of each byte."""
    records = chunk_store().get_many(owner, chunk_ids)
    by_id = _storages_by_id(owner)
    return [_local_read(records[chunk_id], by_id) if chunk_id in records else None
            for chunk_id in chunk_ids]


def _local_read(record: Chunk, by_id: dict) -> dict | None:
    collector = codec.ShareCollector(record.meta)
    locations = {s.index: s for s in record.shares}
    files: list[dict] = []
    for index in collector.wanted():
        location = locations.get(index)
        storage = by_id.get(location.storage_id) if location else None
        if storage is None or not storage.usable():
            continue
        path = storages.backend_for(storage).local_file(location.key)
        if path is not None:
            files.append({"index": index, "file": path})
        if len(files) == collector.needed:
            break
    if len(files) < collector.needed:
        return None
    key = None
    if record.wrapped_key and collector.info.encryption.encrypted:
        key = vault.open_sealed(record.owner, record.wrapped_key,
                                _key_purpose(record.chunk_id)).hex()
    return {"chunk": record.chunk_id, "meta": record.meta, "key": key, "shares": files}


def _not_answering(record: Chunk, unreachable: set[int],
                   skipped: frozenset[str] = frozenset()) -> list[Storage]:
    """The storages of the shares in `unreachable` (those that did not answer), and those of
    its shares not asked because they had just failed (`skipped`: a ranged read's, which the
    whole chunk's read then leaves out; they were not named as away)."""
    ids = {s.storage_id for s in record.shares
           if s.index in unreachable or s.storage_id in skipped}
    if not ids:
        return []
    by_id = _storages_by_id(record.owner)
    return sorted((by_id[i] for i in ids if i in by_id), key=lambda s: s.name)


def _reason(error: str | None, limit: int = 300) -> str:
    """A storage's last error as a message names it: whole sentences up to `limit` characters
    (cut anywhere, "...its file is missing (a disk that is" lost the advice that followed)."""
    text = (error or "did not answer").strip()
    if len(text) <= limit:
        return text
    cut = text.rfind(". ", 0, limit)
    return text[:cut + 1] if cut > 0 else text[:limit].rstrip() + "…"


def _too_few_shares(record: Chunk, collector: codec.ShareCollector,
                    some_unreachable: bool, away: list[Storage] = ()) -> errors.ApiError:
    """Too few good shares to decode: for now, when some storage did not answer (it may come
    back: named, with a Retry-After of the soonest its down-time ends); for good, when every
    storage answered and the shares were missing or corrupt (the damage is past the
    redundancy: retrying does not help, only a share put back would)."""
    good, needed = len(collector.good_shares), collector.needed
    if some_unreachable:
        # (Each reason without its last full stop: "….; name:" read as a typo.)
        named = "; ".join(f"{s.name}: {_reason(s.last_error).rstrip('.')}" for s in away)
        retry = retry_after_seconds(away, time.time())
        return errors.ServiceUnavailable(
            f"Chunk {record.chunk_id} cannot be read now: {good} good "
            f"{'share' if good == 1 else 'shares'} of the {needed} needed "
            f"{'is' if good == 1 else 'are'} reachable{f' ({named})' if named else ''}. "
            f"Try again when "
            f"{'they are' if len(away) != 1 else 'it is'} back.", code="not_enough_shares",
            headers={"Retry-After": str(retry)})
    return errors.ServiceUnavailable(
        f"Chunk {record.chunk_id} is damaged past its redundancy: its storages answered, but "
        f"only {good} of its shares {'is' if good == 1 else 'are'} intact and {needed} "
        f"{'is' if needed == 1 else 'are'} needed (the others are missing or corrupt). "
        f"Trying again will not help; it can be read again only if a lost share's file is put "
        f"back on its storage.", code="chunk_damaged")


def blob_key(record: Chunk) -> bytes:
    """A pack's blob key, unsealed."""
    if not record.wrapped_key or codec.parse_encryption(record.encryption).encrypted:
        raise errors.NotFound(f"Chunk {record.chunk_id} holds no encrypted blobs.",
                              code="chunk_not_found")
    return vault.open_sealed(record.owner, record.wrapped_key, _blob_key_purpose(record.chunk_id))


def _read_share(storage, key: str, share_size: int) -> bytes:
    return storages.backend_for(storage).get_share(key, share_size)


def _first_good_copy(indexes: list[int], read, good, damaged: set[int],
                     storage_of=lambda _index: None) -> bytes | None:
    """The first copy (raid1 share) read by `read(index)` that is `good`, asking the copies in
    order: the next when one fails, and also when one has not answered within HEDGE_SECONDS (a
    storage that hangs, such as a member whose machine went to sleep, would otherwise hold the
    read for its whole timeout). A copy that gives wrong bytes goes into `damaged`."""
    waiting = list(indexes)
    pending: dict[Future, int] = {}

    def ask_next() -> None:
        if waiting:
            index = waiting.pop(0)
            storage = storage_of(index)      # (in its storage's lane, when it has one)
            pending[_share_io(storage, read, index) if storage is not None else
                    _io.submit(read, index)] = index
    ask_next()
    while pending:
        done, _ = wait(list(pending), timeout=HEDGE_SECONDS, return_when=FIRST_COMPLETED)
        if not done:
            ask_next()          # slow: another copy too; the first to give good bytes wins
            continue
        for future in done:
            index = pending.pop(future)
            data = future.result()
            if data is not None and good(data):
                return data
            if data is not None:
                damaged.add(index)      # every raid1 share is the chunk: this one is wrong
            ask_next()                  # in its place, whatever else is still under way
    return None


def get_range(record: Chunk, offset: int, length: int, good) -> bytes:
    """Bytes offset..offset+length-1 of an unencrypted chunk (a pack), read in place: for raid1
    a ranged read of one share, for rs the one or two data shares holding them. `good(bytes)`
    says whether they are right (the caller's recorded hash). A share that is missing, down or
    gives bytes that fail `good` is queued for repair, and the read moves to another copy
    (raid1) or to the whole chunk decoded and verified share by share."""
    owner, chunk_id = record.owner, record.chunk_id
    segments = codec.plain_segments(record.meta, offset, length)
    if not segments:
        return b""
    by_id = _storages_by_id(owner)
    locations = {s.index: s for s in record.shares}
    damaged: set[int] = set()
    unreachable: set[str] = set()

    def ranged(index: int, start: int, size: int) -> bytes | None:
        share = locations.get(index)
        storage = by_id.get(share.storage_id) if share else None
        if storage is None:
            damaged.add(index)
            return None
        try:
            # Backends bound their own requests by timeouts (a ranged read is small).
            return storages.backend_for(storage).get_range(share.key, start, size)
        except ShareNotFound:
            damaged.add(index)
        except BackendError as exc:     # down or slow: another copy, or the whole chunk
            storages.mark_down(storage, str(exc))
            unreachable.add(storage.storage_id)
        return None

    def storage_of(index: int):
        share = locations.get(index)
        return by_id.get(share.storage_id) if share else None

    found = None
    if codec.parse_durability(record.durability).kind == "raid1":
        order = sorted(locations, key=lambda i: 0 if (
            by_id.get(locations[i].storage_id) and by_id[locations[i].storage_id].usable()) else 1)
        found = _first_good_copy(order, lambda index: ranged(index, offset, length), good,
                                 damaged, storage_of)
    else:
        reads = [_share_io(storage_of(segment[0]), ranged, *segment)
                 if storage_of(segment[0]) is not None else _io.submit(ranged, *segment)
                 for segment in segments]
        pieces = [read.result() for read in reads]
        if all(p is not None for p in pieces) and good(b"".join(pieces)):
            found = b"".join(pieces)
    if damaged:
        mark_damaged(owner, chunk_id, damaged)
    if found is not None:
        return found
    # The whole chunk: its shares' hashes find the bad one (and queue it for repair). Not from
    # the storages that did not answer just now: asked again, a hung one (a member whose
    # machine sleeps) would hold the request past the gateway's limit for nothing.
    data = get_chunk(owner, chunk_id, frozenset(unreachable))[offset:offset + length]
    if not good(data):
        raise codec.IntegrityError(f"Bytes {offset}+{length} of chunk {chunk_id} do not match "
                                   f"their recorded hash, in every copy.")
    return data


def chunk_info(owner: str, chunk_id: str, check: bool = True) -> dict:
    record = get_record(owner, chunk_id)
    by_id = _storages_by_id(owner)
    damaged = record.damaged
    checks = {}
    if check:
        checks = {s.index: _share_io(by_id[s.storage_id],
                                     storages.backend_for(by_id[s.storage_id]).exists, s.key)
                  for s in record.shares if s.storage_id in by_id}
    shares = []
    for share in sorted(record.shares, key=lambda s: s.index):
        index = share.index
        storage = by_id.get(share.storage_id)
        health = "ok"
        if storage is None:
            health = "lost"
        elif index in checks:
            try:
                health = "ok" if checks[index].result(timeout=SHARE_TIMEOUT_SECONDS) else "missing"
            except Exception:
                health = "unreachable"
        if health == "ok" and index in damaged:
            health = "damaged"
        shares.append({"index": index, "storage_id": share.storage_id,
                       "storage_name": storage.name if storage else None, "health": health})
    healthy = sum(1 for s in shares if s["health"] == "ok")
    # What this check found gone is queued for the scrub's repair, as a failed read's is (the
    # shares of a lost storage wait for its drain).
    missing = {s["index"] for s in shares if s["health"] == "missing"}
    if missing:
        mark_damaged(owner, chunk_id, missing)
    needed = codec.parse_durability(record.durability).needed
    created = datetime.fromtimestamp(record.created, timezone.utc)
    return {"chunk_id": chunk_id, "size": record.size, "encryption": record.encryption,
            "durability": record.durability, "created": created.isoformat(),
            "shares": shares, "healthy_shares": healthy, "needed_shares": needed,
            "readable": healthy >= needed, "needs_repair": healthy < len(shares)}


# -- delete ------------------------------------------------------------------------------------

def delete_chunk(owner: str, chunk_id: str, dead: bool = False) -> None:
    """`dead`: a pack no file uses, whose bytes the usage counts as dead."""
    validate_chunk_id(chunk_id)
    # The record and its placements go together; what was deleted says which shares to remove.
    # Its bytes leave the usage in the same transaction (and, for a pack all dead, its dead
    # bytes too): a server stopped after it leaves nothing counted for a chunk that is gone.
    def uncount(chunk: Chunk) -> list:
        return [quota.stored_bytes_change(owner, -int(chunk.size), dead=dead)]
    try:
        record = chunk_store().delete(owner, chunk_id, uncount)
    except PackInUse as exc:
        raise errors.Conflict(f"Chunk {chunk_id} holds {exc.args[0]} files' content (a pack); "
                              f"delete those files instead.", code="chunk_in_use") from None
    if record is None:
        raise errors.NotFound(f"No chunk {errors.shown(chunk_id)}.", code="chunk_not_found")
    by_id = _storages_by_id(owner)
    locations = {s.index: (by_id[s.storage_id], s.key) for s in record.shares
                 if s.storage_id in by_id}
    _count_shares(locations.values(), -1, int(record.meta.get("share_size", 0)))
    failures = _delete_shares(owner, locations)
    if failures:
        log.warning("chunk %s deleted; some shares could not be removed now: %s", chunk_id,
                    failures)


# -- repair ------------------------------------------------------------------------------------

def repair_chunk(owner: str, chunk_id: str, move_off: set[str] | None = None, *,
                 unreachable_too: bool = False) -> dict:
    """Re-create missing or bad shares (and move shares off `move_off` storages) — no key needed.

    A share on a storage that does not answer now (down, a member not connected, a folder not
    mounted) is neither: it is waited for, not rebuilt elsewhere, unless its storage is being
    drained (`move_off`) or the owner asks for it now (`unreachable_too`: the old copy is
    deleted once its storage answers). The new shares go to storages holding no other share
    of the chunk; as many as there are such storages usable now (the missing and bad ones
    first), the rest left marked for the next scrub. The record is updated conditionally on
    its revision, and only then are replaced shares deleted.
    """
    move_off = move_off or set()
    record = get_record(owner, chunk_id)
    by_id = _storages_by_id(owner)
    collector = codec.ShareCollector(record.meta)
    locations = {s.index: s for s in record.shares}
    # Verify every share: repair must know exactly which ones are bad.
    good, failed, unreachable = _fetch_all(record, collector, by_id)
    rescued = collector.rescue() if not collector.enough else None
    if rescued is not None:
        # raid1 copies each bad in another place, merged into one that matches the recorded
        # hash: the source of the new copies (every stored copy is still replaced).
        good[rescued] = collector.good_copy(rescued)
    if not collector.enough:
        too_few = _too_few_shares(record, collector, bool(unreachable))
        if record.live is not None and not unreachable:
            # A pack past its redundancy as a whole may still hold every file whole in some
            # copy (each copy damaged elsewhere): compaction reads its files one by one and
            # moves them to a new pack, however full this one is (tree/compaction.py).
            chunk_store().queue_compaction(owner, chunk_id, time.time())
            raise type(too_few)(f"{too_few.message} Its files that still read whole are moved "
                                f"to a new pack by the next compaction run.",
                                code=too_few.code)
        raise type(too_few)(f"{too_few.message} It cannot be repaired now.", code=too_few.code)
    moving = {i for i, s in locations.items() if s.storage_id in move_off} | \
        (unreachable if unreachable_too else set())
    replace = failed | moving
    if not replace:
        if record.damaged:
            # Only if nothing failed since the check; otherwise the scrub looks again.
            chunk_store().clear_damage(owner, chunk_id, record.revision)
        return {"chunk_id": chunk_id, "repaired": []}
    holding = {s.storage_id for i, s in locations.items() if i not in replace}
    away = {locations[i].storage_id for i in moving}
    candidates = [s for s in by_id.values() if s.storage_id not in holding
                  and s.storage_id not in move_off and s.storage_id not in away]
    share_size = int(record.meta.get("share_size", 0))
    room = sum(1 for s in candidates if can_take(s, share_size))
    left = set()
    if 0 < room < len(replace):
        # What can be repaired now is: the missing and bad shares first, then those moving.
        first = sorted(failed) + sorted(moving - failed)
        replace, left = set(first[:room]), set(first[room:])
    rebuilt = codec.rebuild(good, record.meta, replace).shares
    # Each share of a chunk on its own storage: those holding one already are not candidates.
    targets = _choose(candidates, len(rebuilt), share_size,
                      among="the {n} storages that hold no share of this chunk yet")
    order = sorted(rebuilt)
    spares = [s for s in candidates if s not in targets]
    written = _write_shares(owner, chunk_id, [rebuilt[i] for i in order], targets, spares,
                            indexes=order)
    new_locations = {order[position]: value for position, value in written.items()}
    replaced = chunk_store().replace_shares(
        record, {i: ShareLocation(i, s.storage_id, key) for i, (s, key) in new_locations.items()},
        share_size)
    if replaced is None:
        _delete_shares(owner, new_locations)
        raise errors.Conflict(f"Chunk {chunk_id} changed during its repair; try again.",
                              code="concurrent_change")
    _count_shares(new_locations.values(), 1, share_size)
    stale = {i: (by_id[locations[i].storage_id], locations[i].key) for i in new_locations
             if locations[i].storage_id in by_id}
    _count_shares(stale.values(), -1, share_size)
    _delete_shares(owner, stale)
    if left & failed:
        mark_damaged(owner, chunk_id, left & failed)      # the rest, at the next scrub
    return {"chunk_id": chunk_id, "repaired": sorted(new_locations),
            **({"remaining": sorted(left)} if left else {})}


def _fetch_all(record: Chunk, collector: codec.ShareCollector,
               by_id: dict) -> tuple[dict[int, bytes], set[int], set[int]]:
    """Fetch and verify every share: (good shares by index, the indexes of shares missing or
    wrong or on a storage removed, the indexes of shares whose storage did not answer)."""
    futures = {}
    good: dict[int, bytes] = {}
    failed, unreachable = set(), set()
    for share in record.shares:
        storage = by_id.get(share.storage_id)
        if storage is None:
            failed.add(share.index)
            continue
        futures[_share_io(storage, _read_share, storage, share.key,
                          int(record.meta.get("share_size") or 0))] = share.index
    for future, index in futures.items():
        try:
            data = future.result(timeout=SHARE_TIMEOUT_SECONDS)
        except ShareNotFound:
            failed.add(index)
            continue
        except Exception:   # noqa: BLE001 - no answer (an error, a timeout): not a loss
            unreachable.add(index)
            continue
        if collector.add(index, data):
            good[index] = data
        else:
            failed.add(index)
    return good, failed, unreachable


def shares_on(owner: str, storage_id: str) -> list[tuple[str, int]]:
    """(chunk id, share index) of every share the storage holds."""
    return [(p.chunk_id, p.index) for p in chunk_store().all_placements(owner, storage_id)]


def drain_storage(owner: str, storage_id: str, budget_seconds: float = 20.0,
                  start: bool = True) -> dict:
    """Move every share off a storage (it stops taking new shares at once).

    Works in batches within `budget_seconds` (API Gateway allows 29 s); call again, or let the
    scrub continue, until `remaining` is 0 — then the storage can be deleted. `start` False (the
    scrub): only go on with a drain under way; one stopped meanwhile (stop_draining) is left.
    """
    if start:
        storages.start_draining(owner, storage_id)
    deadline = time.monotonic() + budget_seconds
    moved, problems = 0, {}
    chunks = sorted({chunk for chunk, _index in shares_on(owner, storage_id)})
    for number, chunk_id in enumerate(chunks):
        if time.monotonic() > deadline:
            break
        # A drain stopped by its owner stops moving shares (looked at every few chunks).
        if number % 8 == 0 and not storages.still_draining(owner, storage_id):
            break
        try:
            moved += len(repair_chunk(owner, chunk_id, move_off={storage_id})["repaired"])
        except errors.NotFound:
            chunk_store().forget_placements(owner, storage_id, chunk_id)
        except errors.ApiError as exc:
            # By its code: the messages of one reason differ by chunk (each its share size).
            problems.setdefault(exc.code, (exc.message, []))[1].append(chunk_id)
    remaining = len(shares_on(owner, storage_id))
    status = storages.get_storage(owner, storage_id).status    # stopped meanwhile, or not
    # One line per reason (the first chunk's words), naming its chunks.
    said = [f"{message} ({errors.plural(len(ids), 'chunk')}: {', '.join(ids[:3])}"
            f"{', …' if len(ids) > 3 else ''})" for message, ids in problems.values()]
    return {"storage_id": storage_id, "status": status, "moved": moved,
            "remaining": remaining, "problems": said[:20]}


def scrub(budget_seconds: float = 600.0) -> dict:
    """The scheduled scrub: check and verify a part of every storage's shares (checker.py),
    repair chunks whose shares failed a check or a read, continue drains, and retry share
    deletions that failed.

    Runs across all users (it is the system's own job, not a request). The checks take at most
    half the budget, so that what they find is repaired in the same run; it stops when the
    budget is spent, and the next run continues where the damage still is.
    """
    started = time.monotonic()
    deadline = started + budget_seconds
    checks = checker.check_storages(started + budget_seconds / 2)
    repaired, failed = 0, []
    for ref in chunk_store().damaged():
        if time.monotonic() > deadline:
            break
        try:
            repaired += len(repair_chunk(ref.owner, ref.chunk_id)["repaired"])
        except errors.NotFound:
            pass                 # deleted since it was queued
        except errors.ApiError as exc:
            failed.append(f"{ref.chunk_id}: {exc.message}")
    drained = 0
    for storage in storages.draining_storages():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        drained += drain_storage(storage.owner, storage.storage_id, remaining,
                                 start=False)["moved"]
    orphans = retry_pending_deletes(deadline)
    if failed:
        log.warning("scrub could not repair %d chunks: %s", len(failed), failed[:10])
    return {"repaired_shares": repaired, "moved_shares": drained, **orphans, **checks,
            "failed": failed[:50]}
