"""The scrub's checker and verifier (pipeline/checker.py): shares that no read touches, gone or
changed in place, are found and repaired; each run goes on where the last one stopped; a storage
that does not answer is not taken for one that lost its shares. In process on the SQLite engine
and local directory storages."""
from __future__ import annotations

import os
import time

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline, share_files  # noqa: F401


def _flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_gone_and_changed_shares_are_found_without_a_read_and_repaired(
        pipeline, tmp_path):  # noqa: F811
    from cloudstrype import storages
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks("alice", tmp_path, 3)
    gone_data, changed_data = os.urandom(90_000), os.urandom(70_000)
    gone = pipeline.put_chunk("alice", gone_data, "aes256-gcm", "rs(2,1)").record
    changed = pipeline.put_chunk("alice", changed_data, "aes256-gcm", "rs(2,1)").record
    # Parity shares: a read decodes from the data shares and never looks at these.
    lost, hit = gone.share(2), changed.share(2)
    for path in share_files(disks[lost.storage_id], gone.chunk_id, 2):
        path.unlink()
    for path in share_files(disks[hit.storage_id], changed.chunk_id, 2):
        _flip_a_byte(path)
    assert pipeline.get_chunk("alice", gone.chunk_id) == gone_data
    assert pipeline.get_chunk("alice", changed.chunk_id) == changed_data
    assert not chunk_store().get("alice", gone.chunk_id).damaged, "no read noticed"

    result = pipeline.scrub(budget_seconds=60)
    assert result["missing_shares"] == 1 and result["corrupt_shares"] == 1, result
    # The gone share is not asked for again to verify it.
    assert result["checked_shares"] == 6 and result["verified_shares"] == 5, result
    assert result["repaired_shares"] == 2 and result["storages_not_reached"] == 0, result
    for record, data in ((gone, gone_data), (changed, changed_data)):
        info = pipeline.chunk_info("alice", record.chunk_id)
        assert [s["health"] for s in info["shares"]] == ["ok"] * 3, info
        # Without data share 0, the read needs the repaired parity share: it must be good.
        fresh = chunk_store().get("alice", record.chunk_id)
        # Its key names its index (a repair named it by its place in the repair's list).
        assert share_files(disks[fresh.share(2).storage_id], record.chunk_id, 2)
        for path in share_files(disks[fresh.share(0).storage_id], record.chunk_id, 0):
            path.unlink()
        assert pipeline.get_chunk("alice", record.chunk_id) == data
    totals = {s.storage_id: s.public()["check"] for s in storages.list_storages("alice")}
    assert totals[lost.storage_id]["missing_found"] == 1, totals
    assert totals[hit.storage_id]["corrupt_found"] == 1, totals
    assert all(t["last_full_pass"] and t["checked_at"] for t in totals.values()), totals


def test_each_run_goes_on_where_the_last_stopped(pipeline, tmp_path, monkeypatch):  # noqa: F811
    from cloudstrype import storages
    from cloudstrype.pipeline import checker
    monkeypatch.setattr(checker, "CHECK_SHARES", 2)
    monkeypatch.setattr(checker, "VERIFY_BYTES", 1)     # one page of VERIFY_PAGE shares a run
    monkeypatch.setattr(checker, "VERIFY_PAGE", 1)
    disks = add_disks("alice", tmp_path, 1)
    (disk_id, disk), = disks.items()
    records = [pipeline.put_chunk("alice", os.urandom(3000), "aes256-gcm", "raid1(1)").record
               for _ in range(5)]
    last = max(records, key=lambda r: r.chunk_id)      # placements are listed by chunk id
    for path in share_files(disk, last.chunk_id, 0):
        path.unlink()

    runs = [pipeline.scrub(budget_seconds=60) for _ in range(3)]
    assert [r["checked_shares"] for r in runs] == [2, 2, 1], runs
    assert [r["missing_shares"] for r in runs] == [0, 0, 1], runs
    assert [r["verified_shares"] for r in runs] == [1, 1, 1], runs
    record = storages.get_storage("alice", disk_id)
    assert record.missing_found == 1 and record.check_pass_at, record
    # The pass is over: the next run starts from the first share again.
    assert record.check_cursor is None
    assert pipeline.scrub(budget_seconds=60)["checked_shares"] == 2


def test_a_storage_that_does_not_answer_is_skipped_not_taken_as_empty(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    from cloudstrype import storages
    from cloudstrype.backends.base import BackendError
    from cloudstrype.backends.local import LocalBackend
    from cloudstrype.pipeline.chunk_store import chunk_store
    add_disks("alice", tmp_path, 2)
    record = pipeline.put_chunk("alice", os.urandom(4000), "aes256-gcm", "raid1(2)").record

    def unreachable(self, key):
        raise BackendError("the disk is not mounted")
    monkeypatch.setattr(LocalBackend, "exists", unreachable)
    result = pipeline.scrub(budget_seconds=60)
    assert result["storages_not_reached"] == 2 and result["missing_shares"] == 0, result
    assert not chunk_store().get("alice", record.chunk_id).damaged
    for storage in storages.list_storages("alice"):
        assert not storage.checked_at and storage.check_cursor is None, storage

    # A storage marked down is not asked at all until it is back.
    monkeypatch.undo()
    down = storages.get_storage("alice", record.shares[0].storage_id)
    storages.mark_down(down, "timed out")
    result = pipeline.scrub(budget_seconds=60)
    assert result["checked_shares"] == 1 and result["storages_not_reached"] == 0, result
    assert storages.get_storage("alice", down.storage_id).public()["last_error"] == "timed out"

    # Once back (a minute later) and answering every check, its old error is history.
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + storages.DOWN_SECONDS + 1)
    result = pipeline.scrub(budget_seconds=60)
    assert result["checked_shares"] == 2, result
    shown = storages.get_storage("alice", down.storage_id).public()
    assert shown["last_error"] is None and shown["last_error_at"] is None, shown


def test_an_error_recorded_during_the_check_is_kept(pipeline, tmp_path):  # noqa: F811
    from cloudstrype import storages
    from cloudstrype.storages.store import StorageStore
    (disk_id, _), = add_disks("alice", tmp_path, 1).items()
    store = StorageStore()
    store.mark_down("alice", disk_id, 0, "refused")          # just now, not down any more
    assert not store.clear_error("alice", disk_id, before=time.time() - 60)
    assert storages.get_storage("alice", disk_id).last_error == "refused"
    assert store.clear_error("alice", disk_id, before=time.time() + 1)
    assert storages.get_storage("alice", disk_id).last_error is None
