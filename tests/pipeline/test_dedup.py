"""Identical content stored once per account, in process on the SQLite engine and local
directory storages (the `pipeline` fixture of test_chunk_pipeline): a small file whose content
the owner already stores (with the same durability and encryption) is not written again but
reads the same blob; the blob goes when its last reader goes; nothing is shared or comparable
across accounts; racing uploads and deletes keep every count right."""
from __future__ import annotations

import hashlib
import random
import threading

import pytest

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline, share_files  # noqa: F401

KiB = 1024


@pytest.fixture
def lib(request):
    request.getfixturevalue("pipeline")
    from cloudstrype import quota
    from cloudstrype.pipeline import packs
    from cloudstrype.pipeline.chunk_store import chunk_store
    from cloudstrype.tree import compaction, files, tree
    from cloudstrype.tree.store import tree_store

    class Lib:
        pass
    lib = Lib()
    lib.quota, lib.packs, lib.chunks, lib.trees = quota, packs, chunk_store(), tree_store()
    lib.compaction, lib.files, lib.tree = compaction, files, tree
    return lib


def put(lib, owner: str, directory: str, named: dict[str, bytes], durability="raid1(2)",
        encryption="aes256-gcm") -> dict:
    items = [lib.files.BatchFile(name, data) for name, data in named.items()]
    nodes = lib.files.upload_batch(owner, directory, items, durability, encryption)
    assert all(not isinstance(n, Exception) for n in nodes), nodes
    return {item.name: node for item, node in zip(items, nodes, strict=True)}


def read(lib, owner: str, node) -> bytes:
    version = lib.files.get_version(owner, node, None)
    return lib.files.read(owner, version, 0, max(0, version.size - 1))


def delete(lib, owner: str, node) -> None:
    lib.files.delete_node(owner, node)
    lib.files.delete_for_good(owner, node.node_id)


def shares_on(disks) -> set:
    return {p for d in disks.values() if d.exists() for p in d.rglob("*")
            if p.is_file() and not p.name.startswith((".", "~"))}


def blob_of(lib, owner: str, node):
    version = lib.files.get_version(owner, node, None)
    assert version.content_key and not version.pack_chunk
    return lib.chunks.get_blob(owner, version.content_key)


def assert_consistent(lib, owner: str, nodes) -> None:
    """Each blob is read by exactly `refs` live versions, and each pack counts its blobs."""
    readers: dict[str, int] = {}
    for node in nodes:
        for version in lib.trees.list_versions(owner, node.node_id):
            if version.content_key:
                readers[version.content_key] = readers.get(version.content_key, 0) + 1
    packs: set[str] = set()
    for key, count in readers.items():
        blob = lib.chunks.get_blob(owner, key)
        assert blob is not None and blob.refs == count
        packs.add(blob.chunk_id)
    for pack in packs:
        record = lib.chunks.get(owner, pack)
        inside = [b for b in lib.chunks.blobs_in_pack(owner, pack) if b.chunk_id == pack]
        assert record.live == len(inside)
        assert record.live_bytes == sum(b.length for b in inside)


def test_content_stored_again_is_not_written_again(lib, tmp_path):
    disks = add_disks("alice", tmp_path, 2)
    rng = random.Random(1)
    named = {f"f{n}.txt": rng.randbytes(rng.randint(1, 4 * KiB)) for n in range(30)}
    first = put(lib, "alice", "/one", named)
    written = shares_on(disks)
    stored = lib.quota.usage("alice")["stored_bytes"]

    second = put(lib, "alice", "/two", named)
    assert shares_on(disks) == written, "nothing new written to the storages"
    assert lib.quota.usage("alice")["stored_bytes"] == stored
    for name, content in named.items():
        assert read(lib, "alice", second[name]) == content
        assert blob_of(lib, "alice", second[name]) == blob_of(lib, "alice", first[name])
        assert blob_of(lib, "alice", first[name]).refs == 2
    assert_consistent(lib, "alice", [*first.values(), *second.values()])

    # The content stays while one file reads it; the last one lets it (and its pack) go.
    for node in first.values():
        delete(lib, "alice", node)
    for name, content in named.items():
        assert read(lib, "alice", second[name]) == content
    assert_consistent(lib, "alice", second.values())
    assert lib.quota.usage("alice")["dead_bytes"] == 0
    for node in second.values():
        delete(lib, "alice", node)
    assert shares_on(disks) == set()
    usage = lib.quota.usage("alice")
    assert (usage["stored_bytes"], usage["dead_bytes"]) == (0, 0)


def test_repeats_within_one_batch_are_stored_once(lib, tmp_path):
    add_disks("alice", tmp_path, 2)
    same = b"the same bytes" * 50
    named = {"a.txt": same, "b.txt": same, "c.txt": b"other", "d.txt": same}
    nodes = put(lib, "alice", "/rep", named)
    blob = blob_of(lib, "alice", nodes["a.txt"])
    assert blob.refs == 3
    assert {blob_of(lib, "alice", nodes[n]).content_key for n in ("b.txt", "d.txt")} == {
        blob.content_key}
    assert lib.chunks.get("alice", blob.chunk_id).live == 2       # two contents in the pack
    for name, content in named.items():
        assert read(lib, "alice", nodes[name]) == content
    assert_consistent(lib, "alice", nodes.values())


def test_a_new_version_with_the_same_content_shares_it(lib, tmp_path):
    add_disks("alice", tmp_path, 2)
    node = put(lib, "alice", "/v", {"doc.txt": b"draft"})["doc.txt"]
    put(lib, "alice", "/v", {"doc.txt": b"final"})
    node = put(lib, "alice", "/v", {"doc.txt": b"draft"})["doc.txt"]
    versions = lib.trees.list_versions("alice", node.node_id)
    assert len(versions) == 3
    assert versions[0].content_key == versions[2].content_key != versions[1].content_key
    assert lib.chunks.get_blob("alice", versions[0].content_key).refs == 2
    assert_consistent(lib, "alice", [node])


def test_another_scheme_or_another_account_stores_its_own_copy(lib, tmp_path):
    add_disks("alice", tmp_path / "a", 3)
    add_disks("bob", tmp_path / "b", 3)
    named = {"x.bin": b"\x00secret" * 100}
    alice = put(lib, "alice", "/s", named)["x.bin"]
    safer = put(lib, "alice", "/t", named, durability="raid1(3)")["x.bin"]
    plain = put(lib, "alice", "/u", named, encryption="none")["x.bin"]
    bob = put(lib, "bob", "/s", named)["x.bin"]
    keys = {blob_of(lib, "alice", alice).content_key, blob_of(lib, "alice", safer).content_key,
            blob_of(lib, "alice", plain).content_key, blob_of(lib, "bob", bob).content_key}
    assert len(keys) == 4, "no scheme, no account shares a blob (or a name) with another"
    assert lib.chunks.get_blob("bob", blob_of(lib, "alice", alice).content_key) is None
    assert lib.chunks.get("alice", blob_of(lib, "alice", safer).chunk_id).durability == \
        "raid1(3)"
    for owner, node in (("alice", alice), ("alice", safer), ("alice", plain), ("bob", bob)):
        assert read(lib, owner, node) == named["x.bin"]


def run_together(target, argument_lists: list[tuple]) -> None:
    """`target` in one thread per argument list, all at once; returns when all are done."""
    threads = [threading.Thread(target=target, args=args) for args in argument_lists]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_racing_uploads_and_deletes_of_one_content_keep_the_counts(lib, tmp_path):
    add_disks("alice", tmp_path, 2)
    rng = random.Random(9)
    contents = [rng.randbytes(100 + n) for n in range(5)]
    made, lock, problems = [], threading.Lock(), []

    def uploader(n: int) -> None:
        try:
            nodes = put(lib, "alice", f"/race{n}",
                        {f"f{k}.bin": contents[k] for k in range(len(contents))})
            with lock:
                made.extend(nodes.values())
        except Exception as exc:          # any failure is a finding
            problems.append(repr(exc))

    run_together(uploader, [(n,) for n in range(6)])
    assert problems == []
    assert_consistent(lib, "alice", made)
    keys = {blob_of(lib, "alice", node).content_key for node in made}
    assert len(keys) == len(contents), "each content registered once"

    doomed, kept = made[::2], made[1::2]

    def deleter(nodes) -> None:
        for node in nodes:
            try:
                delete(lib, "alice", node)
            except Exception as exc:
                problems.append(repr(exc))
    run_together(deleter, [(doomed[n::3],) for n in range(3)])
    assert problems == []
    assert_consistent(lib, "alice", kept)
    for node in kept:
        name = node.name
        assert read(lib, "alice", node) == contents[int(name[1:].split(".")[0])]


def test_stored_once_content_survives_compaction(lib, tmp_path):
    add_disks("alice", tmp_path, 2)
    rng = random.Random(4)
    named = {f"f{n}.bin": rng.randbytes(rng.randint(1, 4 * KiB)) for n in range(40)}
    first = put(lib, "alice", "/c1", named)
    second = put(lib, "alice", "/c2", dict(list(named.items())[:5]))
    for name, node in first.items():
        if name not in second:
            delete(lib, "alice", node)
    old_pack = blob_of(lib, "alice", second["f0.bin"]).chunk_id
    report = lib.compaction.compact(budget_seconds=60)
    assert report["blobs_moved"] == 5 and report["packs_compacted"] == 1, report
    assert lib.chunks.get("alice", old_pack) is None
    for name, node in second.items():
        assert read(lib, "alice", node) == named[name]
        assert read(lib, "alice", first[name]) == named[name]
        assert blob_of(lib, "alice", node).refs == 2
    assert_consistent(lib, "alice", [*second.values(), *(first[n] for n in second)])
    assert lib.quota.usage("alice")["dead_bytes"] == 0


def test_a_file_written_through_a_share_is_always_written(lib, tmp_path, monkeypatch):
    """A user writing into someone's share must not learn, by how the upload goes, whether
    the owner stores that content already: it is written, and kept apart from the owner's
    copy (meeting it made the upload read that copy, and take measurably longer)."""
    disks = add_disks("alice", tmp_path, 2)
    named = {"known.txt": b"alice's diary" * 20}
    put(lib, "alice", "/private", named)
    from cloudstrype.backends.local import LocalBackend
    real_put, puts = LocalBackend.put, []

    def counted_put(self, key, data):
        puts.append(key)
        return real_put(self, key, data)
    monkeypatch.setattr(LocalBackend, "put", counted_put)
    written = shares_on(disks)
    top = lib.tree.make_dirs("alice", "/shared", None)[0]
    items = [lib.files.BatchFile("guess.txt", named["known.txt"])]
    [node] = lib.files.upload_batch("alice", "/", items, "raid1(2)", "aes256-gcm", base=top)
    assert not isinstance(node, Exception), node
    assert len(puts) == 2, "written to the storages like any new content"
    assert read(lib, "alice", node) == named["known.txt"]
    # ... and kept: a pack of its own on each of the two storages, under a name of its own.
    assert len(shares_on(disks) - written) == 2
    assert blob_of(lib, "alice", node).content_key != \
        lib.packs.content_key("alice", "raid1(2)", "aes256-gcm",
                              hashlib.sha256(named["known.txt"]).digest())
    # The owner's own upload of it meets the owner's copy and writes nothing.
    put(lib, "alice", "/again", named)
    assert len(puts) == 2
