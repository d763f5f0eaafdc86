"""files.local_read_plan, in process on the SQLite engine and local directory storages: the
chunks of a version's bytes with the share files a reader on this machine decodes them from
(their bytes decode to the file's); at most LOCAL_PLAN_MAX_CHUNKS at a time; a chunk whose
needed shares are not all files here (a storage marked down) is left to the server; content
stored once is planned from the chunks that hold it."""
from __future__ import annotations

import os

import pytest
from cloudstrype import errors

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline  # noqa: F401
from tests.pipeline.test_dedup import lib  # noqa: F401
from tests.pipeline.test_dedup_chunked import upload, version

MiB = 1024 * 1024
SIZE = 9 * MiB + 3                      # three chunks, the last partial


def _decoded(plan: dict) -> bytes:
    from cloudstrype.pipeline import codec
    out = b""
    for chunk in plan["chunks"]:
        read = chunk["read"]
        shares = {s["index"]: open(s["file"], "rb").read() for s in read["shares"]}
        out += codec.decode(read["chunk"], shares, read["meta"], bytes.fromhex(read["key"])).data
    return out


def test_the_plan_decodes_to_the_file(lib, tmp_path):  # noqa: F811
    add_disks("alice", tmp_path, 3)
    data = os.urandom(SIZE)
    node = upload(lib, "alice", "/big.bin", data, durability="rs(2,1)")
    plan = lib.files.local_read_plan("alice", version(lib, "alice", node), 0, SIZE - 1)

    assert [(c["offset"], c["size"]) for c in plan["chunks"]] == [
        (0, 4 * MiB), (4 * MiB, 4 * MiB), (8 * MiB, MiB + 3)]
    assert all([s["index"] for s in c["read"]["shares"]] == [0, 1] for c in plan["chunks"])
    assert _decoded(plan) == data


def test_a_plan_covers_a_bounded_number_of_chunks_from_the_range(lib, tmp_path,  # noqa: F811
                                                                monkeypatch):
    add_disks("alice", tmp_path, 2)
    node = upload(lib, "alice", "/big.bin", os.urandom(SIZE))
    monkeypatch.setattr(lib.files, "LOCAL_PLAN_MAX_CHUNKS", 2)
    current = version(lib, "alice", node)

    assert [c["offset"] for c in lib.files.local_read_plan("alice", current, 0, SIZE - 1)[
        "chunks"]] == [0, 4 * MiB]
    assert [c["offset"] for c in lib.files.local_read_plan("alice", current, 5 * MiB, 6 * MiB)[
        "chunks"]] == [4 * MiB]
    assert [c["offset"] for c in lib.files.local_read_plan("alice", current, 8 * MiB + 1,
                                                           SIZE - 1)["chunks"]] == [8 * MiB]


def test_a_chunk_on_a_storage_marked_down_is_left_to_the_server(lib, tmp_path):  # noqa: F811
    from cloudstrype import storages
    add_disks("alice", tmp_path, 2)
    data = os.urandom(SIZE)
    node = upload(lib, "alice", "/big.bin", data)
    current = version(lib, "alice", node)
    first = lib.files.local_read_plan("alice", current, 0, SIZE - 1)
    used = {s["file"].rsplit("/", 2)[-2] for c in first["chunks"] for s in c["read"]["shares"]}
    for storage in storages.list_storages("alice"):
        storages.mark_down(storage, "unplugged")

    again = lib.files.local_read_plan("alice", current, 0, SIZE - 1)

    assert used and all(c["read"] is None for c in again["chunks"])
    assert [(c["offset"], c["size"]) for c in again["chunks"]] == \
        [(c["offset"], c["size"]) for c in first["chunks"]]


def test_content_stored_once_is_planned_from_the_chunks_that_hold_it(lib, tmp_path):  # noqa: F811
    add_disks("alice", tmp_path, 2)
    data = os.urandom(SIZE)
    upload(lib, "alice", "/first.bin", data)
    second = upload(lib, "alice", "/second.bin", data)

    plan = lib.files.local_read_plan("alice", version(lib, "alice", second), 0, SIZE - 1)

    assert plan["version"] == second.version_id and _decoded(plan) == data


def test_a_packed_file_has_no_plan(lib, tmp_path):  # noqa: F811
    add_disks("alice", tmp_path, 2)
    [node] = lib.files.upload_batch("alice", "/", [lib.files.BatchFile("small.txt", b"x" * 10)],
                                    "raid1(2)", "aes256-gcm")
    with pytest.raises(errors.BadRequest) as refused:
        lib.files.local_read_plan("alice", version(lib, "alice", node), 0, 9)
    assert refused.value.code == "not_chunked"


def test_a_plan_holds_what_fits_in_its_bytes_and_at_least_one_chunk(lib, tmp_path,  # noqa: F811
                                                                   monkeypatch):
    import json
    add_disks("alice", tmp_path, 2)
    node = upload(lib, "alice", "/big.bin", os.urandom(SIZE))
    current = version(lib, "alice", node)
    whole = lib.files.local_read_plan("alice", current, 0, SIZE - 1)["chunks"]
    one = len(json.dumps(whole[0]))

    monkeypatch.setattr(lib.files, "LOCAL_PLAN_MAX_BYTES", 2 * one + 10)
    assert [c["offset"] for c in lib.files.local_read_plan("alice", current, 0, SIZE - 1)[
        "chunks"]] == [0, 4 * MiB]
    monkeypatch.setattr(lib.files, "LOCAL_PLAN_MAX_BYTES", 1)
    assert [c["offset"] for c in lib.files.local_read_plan("alice", current, 4 * MiB, SIZE - 1)[
        "chunks"]] == [4 * MiB]


def test_the_chunks_past_a_plan_s_bound_are_not_read(lib, tmp_path, monkeypatch):  # noqa: F811
    """Their records and keys are read in batches, stopping at the batch that fills the plan."""
    from cloudstrype.pipeline import store
    add_disks("alice", tmp_path, 2)
    node = upload(lib, "alice", "/big.bin", os.urandom(SIZE))
    current = version(lib, "alice", node)
    asked, real = [], store.local_reads

    def counted(owner, chunk_ids):
        asked.append(len(chunk_ids))
        return real(owner, chunk_ids)
    monkeypatch.setattr(store, "local_reads", counted)
    monkeypatch.setattr(lib.files, "LOCAL_PLAN_BATCH", 1)
    monkeypatch.setattr(lib.files, "LOCAL_PLAN_MAX_BYTES", 1)

    planned = lib.files.local_read_plan("alice", current, 0, SIZE - 1)

    assert [c["offset"] for c in planned["chunks"]] == [0]
    assert asked == [1, 1]          # the first chunk, and the one found not to fit
