"""The chunk pipeline in process, on the SQLite engine and local directory storages: write,
read past a corrupt share, the scrub's repair, drain, delete — and what the chunk store holds
after each step."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from cloudstrype import errors

from tests.support import embedded_library, flipped_first_byte


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    from cloudstrype.pipeline import store
    with embedded_library(tmp_path, monkeypatch, CLOUDSTRYPE_LOCAL_STORAGE_ENABLED="true"):
        yield store


def add_disks(owner: str, root: Path, count: int) -> dict[str, Path]:
    from cloudstrype import storages
    made = {}
    for n in range(count):
        record = storages.add_storage(owner, "local", f"disk{n}", {"path": str(root / f"d{n}")})
        made[record.storage_id] = Path(record.settings["path"])
    return made


def share_files(directory: Path, chunk_id: str, index: int) -> list[Path]:
    marker = f".{chunk_id.lower()}.{index}."
    return [p for p in directory.rglob("*") if p.is_file() and marker in p.name]


def test_write_read_repair_drain_delete(pipeline, tmp_path, monkeypatch):
    from cloudstrype import storages
    from cloudstrype.pipeline.chunk_store import chunk_store
    # The read below must decode from the corrupt share to find it: no hedge to the third
    # share, which a machine stalled for 2 s (a loaded test run) started, and then decoded
    # from the other two without ever looking at the bad one.
    monkeypatch.setattr(pipeline, "HEDGE_SECONDS", 60.0)
    disks = add_disks("alice", tmp_path, 4)
    data = os.urandom(150_000)
    stored = pipeline.put_chunk("alice", data, "aes256-gcm", "rs(2,1)").record
    chunk_id = stored.chunk_id
    assert pipeline.get_chunk("alice", chunk_id) == data
    assert len({s.storage_id for s in stored.shares}) == 3      # distinct storages
    for share in stored.shares:
        assert pipeline.shares_on("alice", share.storage_id) == [(chunk_id, share.index)]
        assert storages.get_storage("alice", share.storage_id).share_count == 1
    # Another owner sees nothing of it.
    with pytest.raises(errors.NotFound):
        pipeline.get_chunk("bob", chunk_id)

    # A corrupt share: the read still succeeds, the chunk is queued, the scrub repairs it.
    bad = stored.shares[0]
    [path] = share_files(disks[bad.storage_id], chunk_id, 0)
    path.write_bytes(flipped_first_byte(path.read_bytes()))
    assert pipeline.get_chunk("alice", chunk_id) == data
    assert chunk_store().get("alice", chunk_id).damaged == {0}
    result = pipeline.scrub(budget_seconds=60)
    assert result["repaired_shares"] == 1 and result["failed"] == []
    info = pipeline.chunk_info("alice", chunk_id)
    assert info["healthy_shares"] == 3 and not info["needs_repair"]
    assert list(chunk_store().damaged()) == []

    # Drain a holder: its share moves to the one storage holding none, and it can go.
    holder = info["shares"][1]["storage_id"]
    drained = pipeline.drain_storage("alice", holder)
    assert drained["remaining"] == 0 and drained["moved"] == 1
    assert pipeline.shares_on("alice", holder) == []
    assert storages.get_storage("alice", holder).share_count == 0
    storages.delete_storage("alice", holder, 0)
    assert pipeline.get_chunk("alice", chunk_id) == data

    # Delete: record, placements and share files go.
    pipeline.delete_chunk("alice", chunk_id)
    with pytest.raises(errors.NotFound):
        pipeline.chunk_info("alice", chunk_id)
    for storage_id, directory in disks.items():
        if storage_id != holder:
            assert pipeline.shares_on("alice", storage_id) == []
            assert not [p for p in directory.rglob("*")
                        if p.is_file() and not p.name.startswith(".")]
            assert storages.get_storage("alice", storage_id).share_count == 0


def test_a_chunk_id_is_taken_once_and_bad_ids_are_refused(pipeline, tmp_path):
    add_disks("alice", tmp_path, 2)
    pipeline.put_chunk("alice", b"first", "none", "raid1(2)", chunk_id="mine")
    with pytest.raises(errors.Conflict):
        pipeline.put_chunk("alice", b"second", "none", "raid1(2)", chunk_id="mine")
    assert pipeline.get_chunk("alice", "mine") == b"first"
    with pytest.raises(errors.BadRequest):
        pipeline.get_chunk("alice", "../etc")
    with pytest.raises(errors.Unprocessable):             # more shares than storages
        pipeline.put_chunk("alice", b"x", "none", "raid1(3)")
