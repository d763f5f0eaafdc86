"""Reading a chunk in process (SQLite engine, local directory storages): copies that were
corrupted on disk are found when the chunk fails to authenticate, queued for repair, and the
read goes on to a good copy."""
from __future__ import annotations

import os

from tests.pipeline.test_chunk_writes import add_disks, pipeline  # noqa: F401 (fixture)


def test_corrupt_copies_are_skipped_and_queued_for_repair(pipeline, tmp_path):  # noqa: F811
    from cloudstrype.pipeline.chunk_store import chunk_store
    disks = add_disks("alice", tmp_path, 3)
    data = os.urandom(300_000)
    record = pipeline.put_chunk("alice", data, "aes256-gcm", "raid1(3)").record
    for share in record.shares:
        if share.index in (0, 1):
            path = disks[share.storage_id] / share.key
            raw = bytearray(path.read_bytes())
            raw[len(raw) // 2] ^= 0x01           # same size: only the tag or the hash can tell
            path.write_bytes(bytes(raw))

    assert pipeline.get_chunk("alice", record.chunk_id) == data
    assert chunk_store().get("alice", record.chunk_id).damaged == {0, 1}
    result = pipeline.scrub(budget_seconds=60)
    assert result["repaired_shares"] == 2 and result["failed"] == []
    assert chunk_store().get("alice", record.chunk_id).damaged == set()
    assert pipeline.get_chunk("alice", record.chunk_id) == data
