"""Shares are put on the scrub's list before they are written, and the chunk's record takes them
off: a server stopped while it wrote a chunk (or a repair), or a share write that failed, leaves
nothing on the storages once the grace is over, and nothing on a record is ever touched. In
process on the SQLite engine and local directory storages."""
from __future__ import annotations

import os
import time

import pytest
from cloudstrype import errors

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline, share_files  # noqa: F401
from tests.support import flipped_first_byte


def files_on(disks: dict) -> set:
    return {p for d in disks.values() if d.exists() for p in d.rglob("*")
            if p.is_file() and not p.name.startswith((".", "~"))}


def stop(*_args, **_kwargs):
    """Where a test's server stops (kill -9): nothing after it runs."""
    raise SystemExit("the server stops here")


def later(monkeypatch, seconds: float) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


def test_a_chunk_the_server_stopped_writing_leaves_no_share_after_the_grace(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    from cloudstrype.pipeline.chunk_store import ChunkStore, chunk_store
    disks = add_disks("alice", tmp_path, 3)
    content = os.urandom(5000)
    kept = pipeline.put_chunk("alice", content, "aes256-gcm", "raid1(3)").record
    assert list(chunk_store().pending_deletes("alice")) == [], "a written chunk leaves none"
    before = files_on(disks)

    from cloudstrype import quota
    counted = quota.usage("alice")["stored_bytes"]
    monkeypatch.setattr(ChunkStore, "create", stop)
    with pytest.raises(SystemExit):
        pipeline.put_chunk("alice", os.urandom(5000), "aes256-gcm", "raid1(3)")
    monkeypatch.undo()
    assert len(files_on(disks) - before) == 3          # on no chunk's record
    # Charged with the record only: a chunk never recorded counts nothing (a sweep found
    # 28 MB counted for good after kills during uploads).
    assert quota.usage("alice")["stored_bytes"] == counted

    # Within the grace the scrub leaves them: the request may still be writing.
    assert pipeline.scrub(budget_seconds=60)["orphans_deleted"] == 0
    assert len(files_on(disks) - before) == 3
    later(monkeypatch, pipeline.SHARE_WRITE_GRACE_SECONDS + 60)
    assert pipeline.scrub(budget_seconds=60)["orphans_deleted"] == 3
    assert files_on(disks) == before
    assert pipeline.get_chunk("alice", kept.chunk_id) == content
    assert list(chunk_store().pending_deletes("alice")) == []


def test_a_repair_the_server_stopped_leaves_no_share_and_the_chunk_reads(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    from cloudstrype.pipeline.chunk_store import ChunkStore
    disks = add_disks("alice", tmp_path, 4)
    data = os.urandom(8000)
    record = pipeline.put_chunk("alice", data, "aes256-gcm", "raid1(3)").record
    lost = record.shares[0]
    for path in share_files(disks[lost.storage_id], record.chunk_id, 0):
        path.unlink()
    before = files_on(disks)

    monkeypatch.setattr(ChunkStore, "replace_shares", stop)
    with pytest.raises(SystemExit):
        pipeline.repair_chunk("alice", record.chunk_id)
    monkeypatch.undo()
    assert len(files_on(disks) - before) == 1          # the rebuilt share, on no record

    later(monkeypatch, pipeline.SHARE_WRITE_GRACE_SECONDS + 60)
    report = pipeline.scrub(budget_seconds=60)
    assert report["orphans_deleted"] == 1, report
    # The same run's checks found the share gone, and its repair made it again, for real.
    assert report["missing_shares"] == 1 and report["repaired_shares"] == 1, report
    assert pipeline.get_chunk("alice", record.chunk_id) == data
    assert pipeline.repair_chunk("alice", record.chunk_id)["repaired"] == []
    for share in pipeline.get_record("alice", record.chunk_id).shares:
        assert share_files(disks[share.storage_id], record.chunk_id, share.index)
    monkeypatch.undo()
    assert pipeline.scrub(budget_seconds=60)["orphans_deleted"] == 0
    assert pipeline.get_chunk("alice", record.chunk_id) == data


def test_shares_on_a_record_are_never_deleted_by_the_scrub(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    disks = add_disks("alice", tmp_path, 3)
    data = [os.urandom(3000 + n) for n in range(5)]
    records = [pipeline.put_chunk("alice", d, "aes256-gcm", "raid1(3)").record for d in data]
    written = files_on(disks)
    later(monkeypatch, 10 * pipeline.SHARE_WRITE_GRACE_SECONDS)
    assert pipeline.scrub(budget_seconds=60)["orphans_deleted"] == 0
    assert files_on(disks) == written
    for record, d in zip(records, data, strict=True):
        assert pipeline.get_chunk("alice", record.chunk_id) == d


def test_a_delete_the_server_stopped_leaves_no_share_behind(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    """Found by a sweep: a kill between a chunk's record going and its shares being deleted (an
    emptied trash, a freed pack) left the shares on no list, for ever. The record's delete now
    lists them for the scrub in the same transaction."""
    from cloudstrype import quota
    disks = add_disks("alice", tmp_path, 3)
    before = files_on(disks)
    record = pipeline.put_chunk("alice", os.urandom(5000), "aes256-gcm", "raid1(3)").record
    assert quota.usage("alice")["stored_bytes"] == 5000

    monkeypatch.setattr(pipeline, "_delete_shares", stop)
    with pytest.raises(SystemExit):
        pipeline.delete_chunk("alice", record.chunk_id)
    monkeypatch.undo()
    assert len(files_on(disks) - before) == 3          # on no record now
    assert quota.usage("alice")["stored_bytes"] == 0   # counted off with the record
    assert pipeline.scrub(budget_seconds=60)["orphans_deleted"] == 3
    assert files_on(disks) == before


def test_shares_a_repair_moved_off_go_even_if_the_server_stopped(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    """The same for a repair's (or a drain's) old shares: listed with the record's change."""
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks("alice", tmp_path, 4)
    data = os.urandom(8000)
    record = pipeline.put_chunk("alice", data, "aes256-gcm", "raid1(3)").record
    first = record.shares[0]
    [path] = share_files(disks[first.storage_id], record.chunk_id, 0)
    path.write_bytes(flipped_first_byte(path.read_bytes()))      # damaged: the repair replaces it
    chunk_store().mark_damaged("alice", record.chunk_id, {0})

    real = pipeline._delete_shares
    monkeypatch.setattr(pipeline, "_delete_shares", stop)
    with pytest.raises(SystemExit):
        pipeline.repair_chunk("alice", record.chunk_id)
    monkeypatch.setattr(pipeline, "_delete_shares", real)
    assert path.exists()                               # the old, damaged share: left behind
    assert pipeline.scrub(budget_seconds=60)["orphans_deleted"] >= 1
    assert not path.exists()
    assert pipeline.get_chunk("alice", record.chunk_id) == data
    assert list(chunk_store().pending_deletes("alice")) == []


def test_a_pack_freed_or_written_by_compaction_counts_its_dead_bytes_whenever_it_stops(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    """Found by a crash sweep: dead bytes were counted apart from the pack's record (added
    before a compaction's pack was written, taken off after a freed pack's record went), and a
    kill in between left them wrong for good. Both now go in the record's transaction."""
    from cloudstrype import quota
    from cloudstrype.pipeline import packs
    from cloudstrype.pipeline.chunk_store import ChunkStore
    add_disks("alice", tmp_path, 3)

    # A compaction's pack that was never recorded: no dead bytes counted for it.
    monkeypatch.setattr(ChunkStore, "create", stop)
    with pytest.raises(SystemExit):
        packs.write_pack("alice", [("b1", b"x" * 3000)], "aes256-gcm", "raid1(3)",
                         claimed=False)
    monkeypatch.undo()
    assert quota.usage("alice")["dead_bytes"] == 0
    # One recorded, all dead: counted with its record; freed with a stop right after the
    # record went: counted off with it.
    placed = packs.write_pack("alice", [("b2", b"y" * 3000)], "aes256-gcm", "raid1(3)",
                              claimed=False)
    size = pipeline.get_record("alice", placed[0].chunk_id).size
    assert quota.usage("alice")["dead_bytes"] == size
    monkeypatch.setattr(pipeline, "_delete_shares", stop)
    with pytest.raises(SystemExit):
        packs.after_release("alice", placed[0].chunk_id)
    monkeypatch.undo()
    assert quota.usage("alice")["dead_bytes"] == 0
    assert quota.usage("alice")["stored_bytes"] == 0


def test_storages_full_when_last_measured_are_measured_again_before_a_write_is_refused(
        pipeline, tmp_path):  # noqa: F811
    """Space freed on a full storage was not seen for up to ten minutes (the last measure,
    kept that long): writes were refused 422 "full" with room on the disk (disk sweep). A
    figure saying full and older than half a minute is measured again first."""
    from cloudstrype import storages
    from cloudstrype.storages.service import _store
    disks = add_disks("alice", tmp_path, 2)
    for storage_id in disks:            # measured full a while ago; freed since
        _store.set_usage("alice", storage_id, used=10_000, capacity=10_000,
                         checked=time.time() - 120)
    stored = pipeline.put_chunk("alice", os.urandom(5_000), "aes256-gcm", "raid1(2)")
    assert len(stored.record.shares) == 2
    assert all(s.free and s.free > 10_000 for s in storages.list_storages("alice"))
    # Measured just now and full: refused at once, not measured at every write.
    for storage_id in disks:
        _store.set_usage("alice", storage_id, used=10_000, capacity=10_000)
    with pytest.raises(errors.Unprocessable):
        pipeline.put_chunk("alice", os.urandom(5_000), "aes256-gcm", "raid1(2)")


def test_a_usage_measure_that_cannot_be_saved_is_still_shown(pipeline, tmp_path,  # noqa: F811
                                                            monkeypatch):
    """With the data directory's disk full, listing the storages was refused 507: the listing
    saves a fresh measure, which nobody asked to write (disk sweep)."""
    from cloudstrype import storages
    from cloudstrype.metadata.engine import StoreFull
    from cloudstrype.storages import service
    add_disks("alice", tmp_path, 1)
    [record] = storages.list_storages("alice")

    def full(*_args, **_kwargs):
        raise StoreFull("the data directory's disk is full; nothing was written")

    monkeypatch.setattr(service._store, "set_usage", full)
    measured = storages.refresh_usage(record, force=True)
    assert measured.capacity and measured.usage_checked > time.time() - 60
