"""A one-request upload (or a batch's large file) records its chunks before storing them, and
commits that record with its file: if the server stops in between, the upload sweep frees the
chunks once the record expires, and an attach later than that keeps nothing. In process on the
SQLite engine and local directory storages."""
from __future__ import annotations

import dataclasses
import os
import time

import pytest

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline  # noqa: F401
from tests.pipeline.test_dedup import lib, read, shares_on  # noqa: F401

MiB = 1024 * 1024
SIZE = 4 * MiB + 1000            # two chunks


def one_request(lib, owner: str, path: str, data: bytes):  # noqa: F811
    directory, _, name = path.rpartition("/")
    return lib.files.upload(owner, directory or "/", name, data, None, "raid1(2)",
                            "aes256-gcm")


def batched(lib, owner: str, path: str, data: bytes):  # noqa: F811
    directory, _, name = path.rpartition("/")
    [result] = lib.files.upload_batch(owner, directory or "/",
                                      [lib.files.BatchFile(name, data)], "raid1(2)",
                                      "aes256-gcm")
    if isinstance(result, Exception):
        raise result
    return result


def intents(lib, owner: str) -> list:  # noqa: F811
    return [u for u in lib.trees.expired_uploads(before=2**40)
            if u.owner == owner and u.intent]


def later(monkeypatch, seconds: float) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


def absent(lib, owner: str, path: str) -> bool:  # noqa: F811
    try:
        lib.tree.resolve(owner, path)
    except lib.files.errors.NotFound:
        return True
    return False


def stored(lib, owner: str) -> int:  # noqa: F811
    return lib.quota.usage(owner)["stored_bytes"]


@pytest.mark.parametrize("send", [one_request, batched], ids=["one request", "batch"])
def test_chunks_of_an_upload_the_server_stopped_before_attaching_are_freed(
        lib, tmp_path, monkeypatch, send):  # noqa: F811
    disks = add_disks("alice", tmp_path, 2)
    content = os.urandom(SIZE)
    kept = send(lib, "alice", "/kept.bin", content)
    assert intents(lib, "alice") == [], "an attached upload leaves no record behind"
    before, used = shares_on(disks), stored(lib, "alice")

    def stop(*_args, **_kwargs):
        raise SystemExit("the server stops here")
    monkeypatch.setattr(lib.files, "_attach_version", stop)
    monkeypatch.setattr(lib.files, "_attach_new_files", stop)
    with pytest.raises(SystemExit):
        send(lib, "alice", "/lost.bin", os.urandom(SIZE))
    monkeypatch.undo()
    assert len(shares_on(disks) - before) == 4     # two chunks, two copies: on no file
    assert len(intents(lib, "alice")) == 1

    # Before the record expires the sweep leaves the chunks: the attach may still come.
    assert lib.files.sweep_expired_uploads()["discarded_sessions"] == 0
    assert len(shares_on(disks) - before) == 4
    later(monkeypatch, lib.files.INTENT_SECONDS + 3600)
    assert lib.files.sweep_expired_uploads()["discarded_sessions"] == 1
    assert shares_on(disks) == before
    assert stored(lib, "alice") == used
    assert intents(lib, "alice") == []
    assert absent(lib, "alice", "/lost.bin")
    assert read(lib, "alice", kept) == content


def test_an_attach_after_the_sweep_gave_up_keeps_nothing(lib, tmp_path, monkeypatch):  # noqa: F811
    disks = add_disks("alice", tmp_path, 2)
    real_store = lib.files._store_chunks

    def slow(*args):
        count = real_store(*args)
        later(monkeypatch, lib.files.INTENT_SECONDS + 3600)   # the request hangs an hour...
        assert lib.files.sweep_expired_uploads()["discarded_sessions"] == 1   # ...the sweep
        return count
    monkeypatch.setattr(lib.files, "_store_chunks", slow)
    with pytest.raises(lib.files.errors.Conflict) as raised:
        one_request(lib, "alice", "/slow.bin", os.urandom(SIZE))
    assert raised.value.code == "upload_aborted"
    assert "upload the file again" in raised.value.message
    assert shares_on(disks) == set()
    assert absent(lib, "alice", "/slow.bin")
    assert stored(lib, "alice") == 0


def test_a_sweep_that_read_the_record_before_the_attach_leaves_the_file(
        lib, tmp_path, monkeypatch):  # noqa: F811
    """The sweep reads an expired record as uncommitted; the upload then attaches and drops it;
    the sweep's abort finds nothing, and it must not free the chunks that are the file's now."""
    disks = add_disks("alice", tmp_path, 2)
    monkeypatch.setattr(lib.files, "_end_intent", lambda version: None)   # the record stays
    data = os.urandom(SIZE)
    node = one_request(lib, "alice", "/raced.bin", data)
    monkeypatch.undo()
    [record] = intents(lib, "alice")
    assert record.committed
    stale = dataclasses.replace(record, committed=False)
    lib.trees.drop_intent(record)                   # what the attach does right after
    store_class = type(lib.trees)
    real_get = store_class.get_upload
    reads = []

    def get_upload(self, owner, upload_id):
        reads.append(upload_id)
        return stale if len(reads) == 1 else real_get(self, owner, upload_id)
    monkeypatch.setattr(store_class, "get_upload", get_upload)
    monkeypatch.setattr(store_class, "expired_uploads",
                        lambda self, before, page_size=100: iter([stale]))
    later(monkeypatch, lib.files.INTENT_SECONDS + 3600)
    report = lib.files.sweep_expired_uploads()
    assert report["discarded_sessions"] == 0, report
    assert len(reads) >= 2
    assert len(shares_on(disks)) == 4
    assert read(lib, "alice", node) == data
