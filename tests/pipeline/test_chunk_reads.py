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


def test_a_copy_that_hangs_does_not_hold_a_ranged_read(pipeline, tmp_path, monkeypatch):  # noqa: F811
    """A packed file's ranged read asks the next copy when one has not answered within the
    hedge (a member whose machine went to sleep holds its requests for 15 s), and a copy with
    wrong bytes is passed over and queued for repair."""
    import hashlib
    import threading
    import time

    from cloudstrype.backends.local import LocalBackend
    from cloudstrype.pipeline.chunk_store import chunk_store
    add_disks("alice", tmp_path, 3)
    data = os.urandom(100_000)
    record = pipeline.put_chunk("alice", data, "none", "raid1(3)").record
    first, second, _ = (s.storage_id for s in sorted(record.shares, key=lambda s: s.index))
    wanted = data[5000:9096]

    def good(got: bytes) -> bool:
        return hashlib.sha256(got).digest() == hashlib.sha256(wanted).digest()

    released = threading.Event()
    real = LocalBackend.get_range

    def get_range(self, key, start, length):
        if self.root.name == paths[first]:
            released.wait(30)                              # hangs until the test ends
        if self.root.name == paths[second]:
            return b"x" * length                           # wrong bytes
        return real(self, key, start, length)

    from cloudstrype import storages
    paths = {s.storage_id: os.path.basename(s.settings["path"])
             for s in storages.list_storages("alice")}
    monkeypatch.setattr(LocalBackend, "get_range", get_range)
    monkeypatch.setattr(pipeline, "HEDGE_SECONDS", 0.5)
    try:
        started = time.monotonic()
        assert pipeline.get_range(record, 5000, 4096, good) == wanted
        # The hanging copy, then the wrong one at once, then the third: about one hedge.
        assert time.monotonic() - started < 5, "waited for the copy that hangs"
    finally:
        released.set()
    assert 1 in chunk_store().get("alice", record.chunk_id).damaged      # the wrong copy


def test_copies_that_do_not_answer_a_ranged_read_are_not_asked_again_for_the_chunk(
        pipeline, tmp_path, monkeypatch):  # noqa: F811
    """Every copy of a pack failed to answer its ranged read: the whole chunk is not asked of
    the same storages again (a hung member, asked twice, held the request past the gateway's
    29 s); the read is a 503 at once, and nothing is queued for repair (down is not damaged)."""
    import pytest
    from cloudstrype import errors
    from cloudstrype.backends.base import BackendError
    from cloudstrype.backends.local import LocalBackend
    from cloudstrype.pipeline.chunk_store import chunk_store
    add_disks("alice", tmp_path, 2)
    data = os.urandom(50_000)
    record = pipeline.put_chunk("alice", data, "none", "raid1(2)").record
    asked = []

    def unreachable(self, key, *args):
        asked.append(self.root.name)
        raise BackendError(f"{self.root.name} did not answer within 15 s")

    monkeypatch.setattr(LocalBackend, "get_range", unreachable)
    monkeypatch.setattr(LocalBackend, "get", unreachable)
    with pytest.raises(errors.ServiceUnavailable, match="0 good shares of the 1 needed"):
        pipeline.get_range(record, 100, 1000, lambda got: got == data[100:1100])
    assert sorted(asked) == sorted(set(asked)) and len(asked) == 2, asked
    assert chunk_store().get("alice", record.chunk_id).damaged == set()
