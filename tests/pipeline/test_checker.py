"""The scrub's checker and verifier (pipeline/checker.py): shares that no read touches, gone or
changed in place, are found and repaired; each run goes on where the last one stopped; a storage
that does not answer is not taken for one that lost its shares. In process on the SQLite engine
and local directory storages."""
from __future__ import annotations

import os
import time

import pytest
from cloudstrype.backends.base import BackendError

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
        assert storage.last_error == "the disk is not mounted", storage

    # A storage marked down is not asked at all until it is back (these two: a minute on).
    monkeypatch.undo()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + storages.DOWN_SECONDS + 1)
    down = storages.get_storage("alice", record.shares[0].storage_id)
    storages.mark_down(down, "timed out")
    result = pipeline.scrub(budget_seconds=60)
    assert result["checked_shares"] == 1 and result["storages_not_reached"] == 0, result
    assert storages.get_storage("alice", down.storage_id).public()["last_error"] == "timed out"

    # Once back (another minute on) and answering every check, its old error is history.
    monkeypatch.setattr(time, "time", lambda: real() + 2 * (storages.DOWN_SECONDS + 1))
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


def test_a_storage_folder_that_is_gone_or_swapped_waits_and_loses_nothing(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    """A disk that is not mounted (an empty mount point), a folder moved away, or another
    storage's folder in its place: its shares are unreachable, not lost — nothing is queued or
    rebuilt, files read from the other copies, and it all comes back with the folder."""
    from cloudstrype import storages
    from cloudstrype.pipeline.chunk_store import chunk_store
    from cloudstrype.storages import service
    disks = add_disks("alice", tmp_path, 3)
    data = os.urandom(20_000)
    record = pipeline.put_chunk("alice", data, "aes256-gcm", "raid1(2)").record
    held = record.shares[0].storage_id
    folder = disks[held]
    moved = folder.with_name(folder.name + ".moved")
    service._backend_cache.clear()

    folder.rename(moved)
    folder.mkdir()                              # the empty mount point of a disk not mounted
    result = pipeline.scrub(budget_seconds=60)
    assert result["storages_not_reached"] == 1 and result["missing_shares"] == 0, result
    assert result["repaired_shares"] == 0, result
    assert not chunk_store().get("alice", record.chunk_id).damaged
    shown = storages.get_storage("alice", held).public()
    assert shown["check"]["missing_found"] == 0
    # Down for a while, and its owner is told why.
    assert not shown["online"] and "its .cloudstrype-storage file is missing" in \
        shown["last_error"], shown
    assert pipeline.get_chunk("alice", record.chunk_id) == data        # the other copy

    # Another storage's folder in its place is not its own either.
    other = next(sid for sid in disks if sid not in {s.storage_id for s in record.shares})
    folder.rmdir()
    disks[other].rename(folder)
    service._backend_cache.clear()
    with pytest.raises(BackendError, match="names another storage"):
        storages.backend_for(storages.get_storage("alice", held)).exists("x")
    folder.rename(disks[other])

    moved.rename(folder)                        # mounted again
    service._backend_cache.clear()
    real = time.time                            # and the read's down mark has run out
    monkeypatch.setattr(time, "time", lambda: real() + storages.DOWN_SECONDS + 1)
    result = pipeline.scrub(budget_seconds=60)
    assert result["storages_not_reached"] == 0 and result["missing_shares"] == 0, result
    assert result["checked_shares"] == 2, result
    assert [p for p in folder.iterdir() if record.chunk_id in p.name]
    assert storages.get_storage("alice", held).last_error is None        # healthy again


def test_the_folder_of_a_storage_cannot_be_claimed_again(pipeline, tmp_path):  # noqa: F811
    from cloudstrype import errors, storages
    from cloudstrype.backends.local import MARKER
    disks = add_disks("alice", tmp_path, 1)
    (folder,) = disks.values()
    (folder / MARKER).unlink()                  # emptied behind the server's back
    with pytest.raises(errors.Conflict) as refused:
        storages.add_storage("bob", "local", "mine", {"path": str(folder)})
    assert refused.value.code == "directory_in_use"


def test_a_share_grown_huge_is_found_without_reading_it_all(pipeline, tmp_path, monkeypatch):  # noqa: F811
    from cloudstrype.backends.local import LocalBackend
    disks = add_disks("alice", tmp_path, 2)
    record = pipeline.put_chunk("alice", os.urandom(30_000), "aes256-gcm", "raid1(2)").record
    share = record.shares[1]
    (path,) = share_files(disks[share.storage_id], record.chunk_id, share.index)
    with path.open("r+b") as grown:
        grown.truncate(1 << 30)                 # 1 GiB, sparse: cheap to make, not to read
    asked = []
    real = LocalBackend.get_range

    def get_range(self, key, start, length):
        asked.append(length)
        return real(self, key, start, length)
    monkeypatch.setattr(LocalBackend, "get_range", get_range)
    monkeypatch.setattr(LocalBackend, "get", lambda *_: pytest.fail("read whole"))
    result = pipeline.scrub(budget_seconds=60)
    assert result["corrupt_shares"] == 1, result
    assert max(asked) <= int(record.meta["share_size"]) + 1, asked


def test_a_share_that_cannot_be_repaired_yet_is_counted_once(pipeline, tmp_path):  # noqa: F811
    """rs(2,1) with two of its three shares gone cannot be rebuilt until one comes back: every
    run finds them still gone; they stay queued, counted the first time only."""
    from cloudstrype import storages
    disks = add_disks("alice", tmp_path, 3)
    record = pipeline.put_chunk("alice", os.urandom(3000), "aes256-gcm", "rs(2,1)").record
    for lost in record.shares[:2]:
        for path in share_files(disks[lost.storage_id], record.chunk_id, lost.index):
            path.unlink()
    runs = [pipeline.scrub(budget_seconds=60) for _ in range(3)]
    assert [r["missing_shares"] for r in runs] == [2, 0, 0], runs
    assert all(r["repaired_shares"] == 0 and r["failed"] for r in runs), runs
    assert sum(s.missing_found for s in storages.list_storages("alice")) == 2


def test_an_empty_storage_that_does_not_answer_is_down_too(pipeline, tmp_path):  # noqa: F811
    from cloudstrype import storages
    from cloudstrype.storages import service
    (disk_id, folder), = add_disks("alice", tmp_path, 1).items()
    service._store.mark_down("alice", disk_id, 0, "an old problem")     # not down any more
    folder.rename(folder.with_name("away"))
    service._backend_cache.clear()
    result = pipeline.scrub(budget_seconds=60)
    assert result["storages_not_reached"] == 1, result
    assert "is not this storage's folder now" in storages.get_storage("alice", disk_id).last_error


def test_a_draining_storage_is_checked_too_and_its_old_error_cleared(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    """A drain held back (nowhere to move its shares) can last: the storage's shares are still
    data, so the checks go on there, and an error it no longer has stops being shown."""
    from cloudstrype import storages
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks("alice", tmp_path, 2)
    record = pipeline.put_chunk("alice", os.urandom(4000), "aes256-gcm", "raid1(2)").record
    draining = record.shares[0].storage_id
    storages.mark_down(storages.get_storage("alice", draining), "member m1 is offline")
    storages.start_draining("alice", draining)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + storages.DOWN_SECONDS + 1)
    share_files(disks[draining], record.chunk_id, 0)[0].unlink()
    result = pipeline.scrub(budget_seconds=60)
    assert result["missing_shares"] == 1, result
    shown = storages.get_storage("alice", draining).public()
    assert shown["status"] == "draining" and shown["last_error"] is None, shown
    assert chunk_store().get("alice", record.chunk_id) is not None


def _unreadable(monkeypatch, paths) -> None:
    """These files' permissions taken away, as the server's user meets it (the tests may run
    as root, whom chmod 000 does not stop): opening them to read is refused."""
    real_open, refused = os.open, {str(p) for p in paths}

    def opened(path, flags, *args, **kwargs):
        if str(path) in refused and not flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", opened)


def test_a_share_that_cannot_be_read_is_repaired_and_the_verifier_goes_on(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    """One share file whose permissions were taken away stopped the verifier at it in every
    run (the rest of the storage, damaged shares included, never verified again) while the
    storage showed no problem; and a read took its whole storage down for a minute (disk
    sweep). It is a share lost, rebuilt from the others; the storage stays up."""
    from cloudstrype import storages
    disks = add_disks("alice", tmp_path, 2)
    records = [pipeline.put_chunk("alice", os.urandom(20_000), "aes256-gcm", "raid1(2)").record
               for _ in range(4)]
    storage_id = records[0].share(0).storage_id
    index = {r.chunk_id: next(s.index for s in r.shares if s.storage_id == storage_id)
             for r in records}
    locked = share_files(disks[storage_id], records[0].chunk_id, index[records[0].chunk_id])
    for record in records[1:]:
        for path in share_files(disks[storage_id], record.chunk_id, index[record.chunk_id]):
            _flip_a_byte(path)
    _unreadable(monkeypatch, locked)
    result = pipeline.scrub(budget_seconds=60)
    # The verifier went past it to the three changed ones; all four rebuilt.
    assert result["missing_shares"] == 1 and result["corrupt_shares"] == 3, result
    assert result["repaired_shares"] == 4, result
    monkeypatch.undo()
    for record in records:
        info = pipeline.chunk_info("alice", record.chunk_id)
        assert [s["health"] for s in info["shares"]] == ["ok", "ok"], info
    assert not storages.get_storage("alice", storage_id).last_error

    # A read meeting such a share reads the other copy and queues it; its storage stays up.
    from cloudstrype.pipeline.chunk_store import chunk_store
    fresh = chunk_store().get("alice", records[0].chunk_id)
    first = fresh.share(0)
    _unreadable(monkeypatch, share_files(disks[first.storage_id], fresh.chunk_id, 0))
    assert pipeline.get_chunk("alice", fresh.chunk_id)
    assert chunk_store().get("alice", fresh.chunk_id).damaged == {0}
    assert storages.get_storage("alice", first.storage_id).usable()


def test_a_storage_folder_the_server_may_not_read_is_said_so(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    """It was said to be missing its marker file (a disk not mounted?) when the folder's
    permissions had been taken away (disk sweep)."""
    from cloudstrype import storages
    disks = add_disks("alice", tmp_path, 2)
    record = pipeline.put_chunk("alice", os.urandom(5_000), "aes256-gcm", "raid1(2)").record
    storage_id = record.share(0).storage_id
    folder = disks[storage_id]
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if str(path).startswith(str(folder)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    storages.service._backend_cache.clear()
    monkeypatch.setattr(os, "stat", stat)
    pipeline.scrub(budget_seconds=60)
    monkeypatch.undo()
    error = storages.get_storage("alice", storage_id).last_error
    assert "cannot be read by the server (Permission denied)" in error, error
    assert "missing" not in error, error
