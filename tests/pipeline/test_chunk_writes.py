"""Writing a chunk in process (SQLite engine, local directory storages): the quota is charged
while the chunk is encoded but before any share is written, and the storages' counters, written
beside the chunk's record, end in step with its placements whatever happens."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from cloudstrype import errors

from tests.pipeline.test_chunk_pipeline import add_disks
from tests.support import embedded_library

QUOTA = 1024 * 1024


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    from cloudstrype.pipeline import store
    with embedded_library(tmp_path, monkeypatch, CLOUDSTRYPE_LOCAL_STORAGE_ENABLED="true",
                          CLOUDSTRYPE_QUOTA_BYTES=str(QUOTA)):
        yield store


def shares_in(disks: dict[str, Path]) -> dict[str, list[str]]:
    return {sid: sorted(p.name for p in d.iterdir() if not p.name.startswith("."))
            for sid, d in disks.items()}


def counters(owner: str) -> dict[str, tuple[int, int]]:
    from cloudstrype import storages
    return {s.storage_id: (s.share_count, s.stored_bytes) for s in storages.list_storages(owner)}


def placed(pipeline, owner: str, disks) -> dict[str, tuple[int, int]]:
    """What the counters must say: shares placed on each storage, and their bytes."""
    from cloudstrype.pipeline.chunk_store import chunk_store
    expected = {sid: (0, 0) for sid in disks}
    for sid in disks:
        for chunk_id, _index in pipeline.shares_on(owner, sid):
            share_size = int(chunk_store().get(owner, chunk_id).meta["share_size"])
            shares, size = expected[sid]
            expected[sid] = (shares + 1, size + share_size)
    return expected


def test_counters_follow_writes_and_deletes(pipeline, tmp_path):
    disks = add_disks("alice", tmp_path, 4)
    first = pipeline.put_chunk("alice", os.urandom(100_000), "aes256-gcm", "raid1(3)").record
    second = pipeline.put_chunk("alice", os.urandom(50_000), "none", "rs(2,1)").record
    assert counters("alice") == placed(pipeline, "alice", disks)
    assert sum(n for n, _ in counters("alice").values()) == 6

    pipeline.delete_chunk("alice", first.chunk_id)
    assert counters("alice") == placed(pipeline, "alice", disks)
    pipeline.delete_chunk("alice", second.chunk_id)
    assert set(counters("alice").values()) == {(0, 0)}


def test_over_quota_nothing_is_written_or_counted(pipeline, tmp_path):
    from cloudstrype import quota
    disks = add_disks("alice", tmp_path, 3)
    pipeline.put_chunk("alice", os.urandom(QUOTA - 10), "aes256-gcm", "raid1(3)")
    before_files, before_counts = shares_in(disks), counters("alice")
    used = quota.usage("alice")["stored_bytes"]

    with pytest.raises(errors.PayloadTooLarge) as refused:
        pipeline.put_chunk("alice", os.urandom(11), "aes256-gcm", "raid1(3)")

    assert refused.value.code == "quota_exceeded"
    assert shares_in(disks) == before_files
    assert counters("alice") == before_counts
    assert quota.usage("alice")["stored_bytes"] == used


def test_racing_writers_of_one_chunk_id_leave_counters_in_step(pipeline, tmp_path):
    disks = add_disks("alice", tmp_path, 3)
    for round_ in range(6):
        chunk_id = f"race-{round_}"
        start = threading.Barrier(3)
        outcomes: list = []

        def write(start=start, chunk_id=chunk_id, outcomes=outcomes):
            start.wait()
            try:
                pipeline.put_chunk("alice", os.urandom(20_000), "aes256-gcm", "raid1(3)",
                                   chunk_id)
                outcomes.append("stored")
            except errors.Conflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=write) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["conflict", "conflict", "stored"]
    # Six chunks of three shares: every loser's shares were deleted and its counts taken back.
    assert counters("alice") == placed(pipeline, "alice", disks)
    assert sum(len(names) for names in shares_in(disks).values()) == 18


def test_the_record_waits_for_the_callers_write_and_is_not_kept_if_it_fails(pipeline, tmp_path):
    import time
    from concurrent.futures import ThreadPoolExecutor

    from cloudstrype import quota
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks("alice", tmp_path, 3)
    seen = []

    def slow_write():
        time.sleep(0.2)               # the caller's own record, still being written
        seen.append(chunk_store().exists("alice", "part-0"))

    with ThreadPoolExecutor(1) as pool:
        stored = pipeline.put_chunk("alice", os.urandom(5000), "aes256-gcm", "raid1(3)",
                                    "part-0", after=pool.submit(slow_write))
    assert seen == [False]            # the chunk's record came after the caller's write
    assert chunk_store().exists("alice", "part-0") and stored.record.chunk_id == "part-0"
    files, counts = shares_in(disks), counters("alice")
    used = quota.usage("alice")["stored_bytes"]

    def failing_write():
        raise RuntimeError("the caller's write failed")

    with ThreadPoolExecutor(1) as pool, pytest.raises(RuntimeError, match="caller's write"):
        pipeline.put_chunk("alice", os.urandom(5000), "aes256-gcm", "raid1(3)", "part-1",
                           after=pool.submit(failing_write))
    assert not chunk_store().exists("alice", "part-1")
    assert shares_in(disks) == files and counters("alice") == counts
    assert quota.usage("alice")["stored_bytes"] == used


def test_storages_out_of_reach_never_make_new_chunks_single_copies(pipeline, tmp_path):
    """The automatic durability counts the storages a user keeps (any not draining), not the
    ones answering this moment: with two of three folders gone (a disk not mounted), a chunk
    is refused, each time, with a 503 to retry - never stored as raid1(1) for good - and
    once they are back it has its two copies."""
    from cloudstrype import storages
    from cloudstrype.storages import placement

    owner = "u-unreachable"
    disks = add_disks(owner, tmp_path, 3)
    away = list(disks.values())[:2]
    for folder in away:
        folder.rename(folder.with_name(folder.name + ".off"))
    codes = []
    for _ in range(4):
        with pytest.raises(errors.ServiceUnavailable) as caught:
            pipeline.put_chunk(owner, os.urandom(1000))
        codes.append(caught.value.code)
        # The first, which finds them away as it writes, says it as the others do (it was
        # storage_unavailable without Retry-After: README walk).
        assert 1 <= int(caught.value.headers["Retry-After"]) <= placement.DOWN_RETRY_SECONDS
    assert codes == ["storages_unavailable"] * 4, codes
    assert "down for" in caught.value.message and "try again" in caught.value.message
    assert placement.default_durability(storages.list_storages(owner)) == "raid1(2)"
    assert [p for p in list(disks.values())[2].iterdir() if not p.name.startswith(".")] == []

    # Draining is the user's choice: then one storage kept means one copy.
    for storage_id in list(disks)[:2]:
        storages.start_draining(owner, storage_id)
    assert placement.default_durability(storages.list_storages(owner)) == "raid1(1)"
    for storage_id in list(disks)[:2]:
        storages.stop_draining(owner, storage_id)

    for folder in away:
        folder.with_name(folder.name + ".off").rename(folder)
    from cloudstrype.storages import service
    for storage_id in disks:                    # their minute down is over
        service._store.mark_down(owner, storage_id, 0, "back")
    stored = pipeline.put_chunk(owner, os.urandom(1000)).record
    assert stored.durability == "raid1(2)" and len(stored.shares) == 2
