"""Content too large to pack stored once per account, in process on the SQLite engine and
local directory storages: a file (one request, a batch's large file, or an upload session)
whose content the owner already stores with the same durability and encryption reads those
chunks instead of keeping its own; the chunks go with their last reader, and a crash while
they go is finished by freeing that reader again; nothing is shared across accounts."""
from __future__ import annotations

import os
import threading
import time

import pytest

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline  # noqa: F401
from tests.pipeline.test_dedup import delete, lib, read, run_together, shares_on  # noqa: F401

MiB = 1024 * 1024
SIZE = 4 * MiB + 300 * 1024            # two chunks, the second partial


def upload(lib, owner: str, path: str, data: bytes, durability="raid1(2)",  # noqa: F811
           encryption="aes256-gcm"):
    directory, _, name = path.rpartition("/")
    return lib.files.upload(owner, directory or "/", name, data, None, durability, encryption)


def session(lib, owner: str, path: str, data: bytes, commit: bool = True):  # noqa: F811
    directory, _, name = path.rpartition("/")
    opened, _ = lib.files.create_session(owner, directory or "/", name, len(data), None,
                                         "raid1(2)", "aes256-gcm", None)
    size = lib.files.CHUNK_SIZE
    for part in range(opened["parts"]):
        lib.files.put_part(owner, opened["upload_id"], part, data[part * size:(part + 1) * size])
    return lib.files.commit_session(owner, opened["upload_id"]) if commit else opened


def version(lib, owner: str, node):  # noqa: F811
    return lib.files.get_version(owner, node, None)


def blob(lib, owner: str, node):  # noqa: F811
    return lib.chunks.get_blob(owner, version(lib, owner, node).content_key)


def stored(lib, owner: str) -> int:  # noqa: F811
    return lib.quota.usage(owner)["stored_bytes"]


def test_a_large_file_stored_again_reads_the_first_copy(lib, tmp_path):  # noqa: F811
    disks = add_disks("alice", tmp_path, 2)
    data = os.urandom(SIZE)
    first = upload(lib, "alice", "/a/one.bin", data)
    written, used = shares_on(disks), stored(lib, "alice")
    assert len(written) == 4                       # two chunks, two copies each

    second = upload(lib, "alice", "/b/two.bin", data)
    assert shares_on(disks) == written, "nothing new on the storages"
    assert stored(lib, "alice") == used
    assert version(lib, "alice", second).chunk_source == version(lib, "alice", first).version_id
    assert blob(lib, "alice", second) == blob(lib, "alice", first)
    assert blob(lib, "alice", first).refs == 2 and blob(lib, "alice", first).chunk_count == 2
    assert read(lib, "alice", second) == data
    # A range across the chunk boundary, through the first copy's chunks.
    assert lib.files.read("alice", version(lib, "alice", second), 4 * MiB - 10,
                          4 * MiB + 9) == data[4 * MiB - 10:4 * MiB + 10]

    # The file that stored the chunks goes first: the other still reads them.
    delete(lib, "alice", first)
    assert read(lib, "alice", second) == data and shares_on(disks) == written
    assert blob(lib, "alice", second).refs == 1
    # The last reader lets them go: nothing left stored, nothing on record.
    key = version(lib, "alice", second).content_key
    delete(lib, "alice", second)
    assert shares_on(disks) == set()
    assert lib.chunks.get_blob("alice", key) is None
    assert stored(lib, "alice") == 0


def test_a_session_of_stored_content_frees_its_parts_at_the_commit(lib, tmp_path):  # noqa: F811
    disks = add_disks("alice", tmp_path, 2)
    data = os.urandom(SIZE)
    first = upload(lib, "alice", "/a/one.bin", data)
    written, used = shares_on(disks), stored(lib, "alice")

    second = session(lib, "alice", "/b/two.bin", data)
    assert shares_on(disks) == written and stored(lib, "alice") == used
    assert version(lib, "alice", second).chunk_source == version(lib, "alice", first).version_id
    assert read(lib, "alice", second) == data
    uploads = [u for u in lib.trees.expired_uploads(before=2**40) if u.owner == "alice"]
    assert [u.duplicate for u in uploads] == [True]

    # And the other way round: a session stores it first, a request finds it.
    other = os.urandom(SIZE)
    third = session(lib, "alice", "/c/three.bin", other)
    fourth = upload(lib, "alice", "/d/four.bin", other)
    assert version(lib, "alice", fourth).chunk_source == version(lib, "alice", third).version_id
    assert read(lib, "alice", fourth) == other
    assert len(shares_on(disks)) == 8


def test_the_sweep_frees_a_duplicate_sessions_parts_if_the_commit_did_not(
        lib, tmp_path, monkeypatch):  # noqa: F811
    disks = add_disks("alice", tmp_path, 2)
    data = os.urandom(SIZE)
    upload(lib, "alice", "/a/one.bin", data)
    written = shares_on(disks)
    real_free = lib.files._free_chunks
    monkeypatch.setattr(lib.files, "_free_chunks", lambda *a, **k: (_ for _ in ()).throw(
        SystemExit("the server stops here")))
    with pytest.raises(SystemExit):
        session(lib, "alice", "/b/two.bin", data)
    monkeypatch.setattr(lib.files, "_free_chunks", real_free)
    assert len(shares_on(disks)) == 8             # the parts' copy is still there
    node = lib.tree.resolve("alice", "/b/two.bin")
    assert read(lib, "alice", node) == data       # committed: the file is whole

    [record] = [u for u in lib.trees.expired_uploads(before=2**40) if u.owner == "alice"]
    later = record.expires_at + 3600 - time.time()          # expired, not yet purged
    monkeypatch.setattr(time, "time", lambda real=time.time: real() + later)
    report = lib.files.sweep_expired_uploads()
    assert report["forgotten_sessions"] == 1, report
    assert shares_on(disks) == written
    assert read(lib, "alice", node) == data


def test_a_crash_while_the_last_reader_goes_is_finished_by_freeing_it_again(
        lib, tmp_path, monkeypatch):  # noqa: F811
    disks = add_disks("alice", tmp_path, 2)
    data = os.urandom(SIZE)
    node = upload(lib, "alice", "/a/one.bin", data)
    key = version(lib, "alice", node).content_key
    lib.files.delete_node("alice", node)          # to the trash

    calls = []
    real_free = lib.files._free_chunks

    def crash_after_one(owner, version_id, count, deadline=float("inf")):
        calls.append(version_id)
        real_free(owner, version_id, 1)           # the first chunk goes, then the crash
        raise SystemExit("the server stops here")
    monkeypatch.setattr(lib.files, "_free_chunks", crash_after_one)
    with pytest.raises(SystemExit):
        lib.files.delete_for_good("alice", node.node_id)
    monkeypatch.setattr(lib.files, "_free_chunks", real_free)
    assert calls and lib.chunks.get_blob("alice", key).refs == 0   # let go: claimed by none

    # Meanwhile the same content arrives again: it is stored anew, not claimed.
    again = upload(lib, "alice", "/b/again.bin", data)
    assert version(lib, "alice", again).chunk_source is None
    assert read(lib, "alice", again) == data

    # The trash sweep frees the file deleted for good again, and that finishes the job.
    told = []
    assert lib.files.sweep_trash(after_purge=told.append)["freed_nodes"] == 1
    assert told == ["alice"]            # what goes with freed items is then let go too
    assert lib.chunks.get_blob("alice", key) is None
    assert read(lib, "alice", again) == data
    assert len(shares_on(disks)) == 4             # only the new copy


def test_another_scheme_or_account_keeps_its_own_chunks(lib, tmp_path):  # noqa: F811
    add_disks("alice", tmp_path / "a", 3)
    add_disks("bob", tmp_path / "b", 3)
    data = os.urandom(SIZE)
    mine = upload(lib, "alice", "/a/x.bin", data)
    safer = upload(lib, "alice", "/b/x.bin", data, durability="raid1(3)")
    bobs = upload(lib, "bob", "/a/x.bin", data)
    assert version(lib, "alice", safer).chunk_source is None
    assert version(lib, "bob", bobs).chunk_source is None
    assert blob(lib, "alice", mine).content_key != blob(lib, "alice", safer).content_key
    assert lib.chunks.get_blob("bob", blob(lib, "alice", mine).content_key) is None
    for owner, node in (("alice", mine), ("alice", safer), ("bob", bobs)):
        assert read(lib, owner, node) == data


def test_racing_uploads_and_deletes_of_one_large_content_lose_nothing(
        lib, tmp_path):  # noqa: F811
    disks = add_disks("alice", tmp_path, 2)
    data = os.urandom(SIZE)
    made, lock, problems = [], threading.Lock(), []

    def uploader(n: int) -> None:
        try:
            node = (session if n % 2 else upload)(lib, "alice", f"/r{n}/f.bin", data)
            with lock:
                made.append(node)
        except Exception as exc:          # any failure is a finding
            problems.append(repr(exc))

    run_together(uploader, [(n,) for n in range(6)])
    assert problems == [] and len(made) == 6
    keys = {version(lib, "alice", node).content_key for node in made}
    assert len(keys) == 1 and blob(lib, "alice", made[0]).refs == 6

    doomed, kept = made[:4], made[4:]
    run_together(lambda node: delete(lib, "alice", node), [(node,) for node in doomed])
    for node in kept:
        assert read(lib, "alice", node) == data
    assert blob(lib, "alice", kept[0]).refs == 2
    for node in kept:
        delete(lib, "alice", node)
    assert shares_on(disks) == set() and stored(lib, "alice") == 0


def test_a_version_purged_twice_at_once_never_frees_another_files_content(
        lib, tmp_path, monkeypatch):  # noqa: F811
    """Found by a sweep: the trash sweep and a request purged one deleted version together.
    The first took its reference off; the second, holding the version it had listed, read the
    count left (the other file's, 1) as its own last one and freed the chunks under a live
    file. The content is let go now only while the version is still there."""
    add_disks("alice", tmp_path, 2)
    data = os.urandom(SIZE)
    doomed = upload(lib, "alice", "/a/one.bin", data)
    kept = upload(lib, "alice", "/b/two.bin", data)
    held = version(lib, "alice", doomed)            # what the second purger listed
    assert blob(lib, "alice", kept).refs == 2
    assert lib.files.free_version("alice", held)    # the first purger
    assert blob(lib, "alice", kept).refs == 1
    assert lib.files.free_version("alice", held)    # the second, with the same version
    assert blob(lib, "alice", kept).refs == 1
    assert read(lib, "alice", kept) == data
