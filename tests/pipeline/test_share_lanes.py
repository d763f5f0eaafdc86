"""The chunk pipeline through the storage lanes (pipeline/store.py `_share_io`), and what a
write whose storages fail as it writes says. Storages here are folders on this machine made to
pass for OAuth providers (their kind), their I/O replaced by functions that hold or fail as a
throttled or refusing provider would: what is tested is the pipeline's use of the lanes."""
from __future__ import annotations

import dataclasses
import os
import threading
import time

import pytest
from cloudstrype import errors
from cloudstrype.backends.base import BackendAuthError, BackendError, BackendFull

from tests.pipeline.test_chunk_pipeline import add_disks
from tests.support import embedded_library


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    from cloudstrype.pipeline import store
    with embedded_library(tmp_path, monkeypatch, CLOUDSTRYPE_LOCAL_STORAGE_ENABLED="true"):
        yield store


def test_packed_files_ranged_reads_of_one_storage_keep_to_its_lane(pipeline, tmp_path,
                                                                   monkeypatch):
    """A pack's ranged reads (small files) went to the pool directly: 40 reads at once from
    one throttled storage held all 32 threads, and another storage's I/O waited (review
    sweep)."""
    from cloudstrype import storages
    add_disks("alice", tmp_path, 2)
    record = pipeline.put_chunk("alice", os.urandom(10_000), "none", "raid1(2)").record
    remote = {s.storage_id: dataclasses.replace(s, kind="gdrive")
              for s in storages.list_storages("alice")}
    monkeypatch.setattr(pipeline, "_storages_by_id", lambda owner: dict(remote))
    lock, running, peak, gate = threading.Lock(), [0], [0], threading.Event()

    class Throttled:
        def get_range(self, key, start, size):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            gate.wait(10)
            with lock:
                running[0] -= 1
            return b"x" * size

    monkeypatch.setattr(storages, "backend_for", lambda rec: Throttled())
    monkeypatch.setattr(pipeline, "HEDGE_SECONDS", 60.0)
    readers = [threading.Thread(target=pipeline.get_range, args=(record, 0, 10, lambda b: True))
               for _ in range(40)]
    for reader in readers:
        reader.start()
    try:
        time.sleep(0.5)
        other = dataclasses.replace(next(iter(remote.values())), storage_id="other-drive")
        assert pipeline._share_io(other, lambda: "fast").result(timeout=3) == "fast"
    finally:
        gate.set()
        for reader in readers:
            reader.join()
    assert peak[0] <= pipeline.STORAGE_IO_THREADS, peak[0]


def test_a_write_whose_storages_fail_says_how_many_and_what_to_do_for_each(pipeline, tmp_path,
                                                                          monkeypatch):
    """raid1(3) over three storages, one full, one failing, one whose provider refused its
    access: the 503 counted only the failing one and told all three to wait (review sweep)."""
    from cloudstrype import storages
    add_disks("alice", tmp_path, 3)
    names = {s.storage_id: s.name for s in storages.list_storages("alice")}
    full, failing, refused = sorted(names)
    faults = {full: BackendFull("out of space"), failing: BackendError("HTTP 500"),
              refused: BackendAuthError("refused to refresh the access token (invalid_grant); "
                                        "reconnect the storage")}

    class Failing:
        def __init__(self, fault):
            self.fault = fault

        def put(self, key, data):
            raise self.fault

        def delete(self, key):
            pass

    monkeypatch.setattr(storages, "backend_for", lambda rec: Failing(faults[rec.storage_id]))
    with pytest.raises(errors.ServiceUnavailable) as caught:
        pipeline.put_chunk("alice", os.urandom(1000), "aes256-gcm", "raid1(3)")
    error = caught.value
    assert error.code == "storages_unavailable" and "but 3 failed" in error.message
    assert f"reconnect {names[refused]}" in error.message
    assert f"free space on {names[full]}" in error.message
    assert "try again when it is back" in error.message
    assert error.details["refused"] == [names[refused]] and error.details["full"] == \
        [names[full]] and error.details["away"] == [names[failing]]
    assert int(error.headers["Retry-After"]) >= 1
