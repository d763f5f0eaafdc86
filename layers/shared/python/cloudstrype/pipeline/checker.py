"""The checker and the verifier: the scrub's walk over every storage's shares, looking for
what no read has found yet (Tahoe-LAFS's roles; the repairer is store.repair_chunk).

- The checker asks a storage whether each share its placements say it holds is there
  (`exists`: nothing downloaded).
- The verifier downloads shares and compares each one's size and SHA-256 with its chunk's
  record: a share changed in place is found without any read of its file.

What either finds wrong is queued for repair (the chunk's damage, as a failed read's is); the
scrub repairs it in the same run. A run takes each storage up to CHECK_SHARES shares and
VERIFY_BYTES bytes further, from where the last run stopped (cursors on the storage's record),
the storages checked longest ago first; a storage that does not answer is left where it was,
never counted as missing its shares. Storages that are draining (their shares are moving) or
marked down are skipped until they are back.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cloudstrype import storages
from cloudstrype.backends.base import Backend, BackendError, ShareNotFound
from cloudstrype.storages.store import ACTIVE, DRAINING

from . import codec
from .chunk_store import Chunk, ShareLocation, chunk_store

log = logging.getLogger("cloudstrype.checker")

# Per storage and run. Checking is a metadata request per share on a cloud provider (well
# under their read limits at this rate: the scrub runs hourly in AWS, every 10 minutes in
# `serve`); verifying downloads the bytes, so it gets a budget of bytes.
CHECK_SHARES = 2000
VERIFY_BYTES = 64 * 1024 * 1024
# Shares asked about at once, per storage.
CHECK_THREADS = 16
# Placements listed per verifier page: a page is verified whole, so it bounds the overshoot.
VERIFY_PAGE = 4

_checks = ThreadPoolExecutor(max_workers=CHECK_THREADS, thread_name_prefix="share-check")


@dataclass
class Found:
    checked: int = 0
    verified: int = 0
    missing: int = 0
    corrupt: int = 0
    skipped: int = 0        # storages not reached this time (down, or not answering)

    def add(self, other: "Found") -> None:
        for name in ("checked", "verified", "missing", "corrupt", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def public(self) -> dict:
        return {"checked_shares": self.checked, "verified_shares": self.verified,
                "missing_shares": self.missing, "corrupt_shares": self.corrupt,
                "storages_not_reached": self.skipped}


def check_storages(deadline: float) -> dict:
    """One run of the checker and verifier over every usable storage, until `deadline`
    (time.monotonic())."""
    found = Found()
    for record in sorted(storages.all_storages(), key=lambda s: s.checked_at or 0):
        if time.monotonic() > deadline:
            break
        if not _checkable(record):
            continue
        try:
            found.add(check_storage(record, deadline))
        except BackendError as exc:
            # Down, as a failed read would mark it: placement and reads pass it over for a
            # while, and its owner sees why (last_error); the checks wait for the next run.
            found.skipped += 1
            storages.mark_down(record, str(exc))
            log.info("checks of storage %s wait for the next run: %s", record.storage_id, exc)
    if found.missing or found.corrupt:
        log.warning("the scrub's checks found %d shares missing and %d corrupt; queued for "
                    "repair", found.missing, found.corrupt)
    return found.public()


def _checkable(record) -> bool:
    """Active, or draining (its shares are still data until moved, and a drain held back can
    last; its check also clears an error it no longer has), and not marked down."""
    return record.status in (ACTIVE, DRAINING) and not record.down()


def check_storage(record, deadline: float) -> Found:
    """Check the storage's next CHECK_SHARES shares and verify its next VERIFY_BYTES; record
    where the next run goes on from. Raises BackendError (nothing recorded) when the storage
    does not answer."""
    started = time.time()
    backend = storages.backend_for(record)
    found = Found()
    placements, check_cursor = chunk_store().placements(
        record.owner, record.storage_id, limit=CHECK_SHARES, cursor=record.check_cursor)
    if not placements:
        # Asked something even when it holds nothing (yet): an empty storage that does not
        # answer is down too, and must not pass for one that answered (clear_old_error).
        backend.usage()
    held = _held_here(record, placements)
    answers = list(_checks.map(lambda item: backend.exists(item[1].key), held))
    queued: set[str] = set()            # share keys queued for repair (by now or before)
    for (chunk, share), there in zip(held, answers, strict=True):
        found.checked += 1
        if share.index in chunk.damaged:
            queued.add(share.key)       # found before and still awaiting repair: not again
            continue
        if not there and _still_here(record, chunk, share):
            found.missing += 1
            queued.add(share.key)
            _queue_repair(chunk, share)
    verify_cursor = record.verify_cursor
    spent = 0
    try:
        while spent < VERIFY_BYTES and time.monotonic() < deadline:
            page, next_cursor = chunk_store().placements(
                record.owner, record.storage_id, limit=VERIFY_PAGE, cursor=verify_cursor)
            for chunk, share in _held_here(record, page):
                if share.key in queued or share.index in chunk.damaged:
                    continue
                state, size = _verify(backend, chunk, share)
                found.verified += 1
                spent += size
                if state != OK and _still_here(record, chunk, share):
                    if state == MISSING:
                        found.missing += 1
                    else:
                        found.corrupt += 1
                    _queue_repair(chunk, share)
            verify_cursor = next_cursor
            if not next_cursor:
                break       # round the storage once per run at most; the next run starts over
    except BackendError as exc:
        # The page it stopped in is verified again next time; what was found is recorded.
        # Said where the owner looks (last_error) and down for a while, as a failed read
        # marks it: logged only at INFO, a verifier stopped at the same share run after run
        # while the storage showed no problem (disk sweep).
        log.warning("verifying storage %s stopped: %s", record.storage_id, exc)
        storages.mark_down(record, str(exc))
    else:
        # It answered every check and verification: an error from before is history.
        storages.clear_old_error(record, started)
    storages.record_check(record, check_cursor=check_cursor, verify_cursor=verify_cursor,
                          passed=not check_cursor, missing=found.missing,
                          corrupt=found.corrupt)
    return found


def _held_here(record, placements) -> list[tuple[Chunk, ShareLocation]]:
    """(chunk, share) for each placement whose chunk's record still puts that share on this
    storage (a placement may outlive a moment its chunk was deleted or repaired)."""
    chunks = chunk_store().get_many(record.owner, [p.chunk_id for p in placements])
    held = []
    for placement in placements:
        chunk = chunks.get(placement.chunk_id)
        share = chunk.share(placement.index) if chunk is not None else None
        if share is not None and share.storage_id == record.storage_id:
            held.append((chunk, share))
    return held


OK, MISSING, CORRUPT = "ok", "missing", "corrupt"


def _verify(backend: Backend, chunk: Chunk, share: ShareLocation) -> tuple[str, int]:
    """(OK if the share is the one recorded, else MISSING or CORRUPT; bytes read)."""
    try:
        data = backend.get_share(share.key, int(chunk.meta.get("share_size") or 0))
    except ShareNotFound:
        return MISSING, 0
    good = codec.ShareCollector(chunk.meta).check(share.index, data)
    return (OK if good else CORRUPT), len(data)


def _still_here(record, chunk: Chunk, share: ShareLocation) -> bool:
    """Whether the chunk still keeps that share there under that key, read again: a repair or
    a delete may have moved it on since the placements were listed."""
    fresh = chunk_store().get(record.owner, chunk.chunk_id)
    now = fresh.share(share.index) if fresh is not None else None
    return now is not None and now.storage_id == share.storage_id and now.key == share.key


def _queue_repair(chunk: Chunk, share: ShareLocation) -> None:
    if not chunk_store().mark_damaged(chunk.owner, chunk.chunk_id, {share.index}):
        log.info("chunk %s is gone; its share %d needs no repair", chunk.chunk_id, share.index)
