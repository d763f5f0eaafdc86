"""Content a new file reads instead of storing again is claimed by the transaction that attaches
the file, never before: a server that stops in between leaves no claim behind (the content is
still freed with its last real reader), and content let go before the attach makes the new
file store its own copy. In process on the SQLite engine and local directory storages, for
the three ways a file arrives: a batch of small files, one request, and an upload session."""
from __future__ import annotations

import random

import pytest

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline  # noqa: F401
from tests.pipeline.test_dedup import delete, lib, put, read, shares_on  # noqa: F401
from tests.pipeline.test_dedup_chunked import session, upload

KiB, MiB = 1024, 1024 * 1024
LARGE = 4 * MiB + 5000


def small_files(seed: str, count: int = 6) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"f{n}.txt": rng.randbytes(rng.randint(1, 4 * KiB)) for n in range(count)}


def send(lib, how: str, directory: str, files: dict[str, bytes]) -> dict:  # noqa: F811
    """The files, the way `how` sends them: {name: node}."""
    if how == "batch":
        return put(lib, "alice", directory, files)
    if how == "one request":
        return {name: upload(lib, "alice", f"{directory}/{name}", data)
                for name, data in files.items()}
    return {name: session(lib, "alice", f"{directory}/{name}", data)
            for name, data in files.items()}


def contents(how: str, seed: str) -> dict[str, bytes]:
    if how == "batch":
        return small_files(seed)
    return {"big.bin": random.Random(seed).randbytes(LARGE)}


def stop_at_the_attach(lib, monkeypatch) -> None:  # noqa: F811
    def stop(*_args, **_kwargs):
        raise SystemExit("the server stops here")
    monkeypatch.setattr(lib.files, "_attach_version", stop)
    monkeypatch.setattr(lib.files, "_attach_new_files", stop)


HOW = ["batch", "one request", "session"]


def assert_claims_right(lib, nodes) -> None:  # noqa: F811
    """Each stored content counts exactly the versions that read it."""
    readers: dict[str, int] = {}
    for node in nodes:
        for version in lib.trees.list_versions("alice", node.node_id):
            if version.content_key:
                readers[version.content_key] = readers.get(version.content_key, 0) + 1
    for key, count in readers.items():
        assert lib.chunks.get_blob("alice", key).refs == count


@pytest.mark.parametrize("how", HOW)
def test_a_server_stopped_before_the_attach_leaves_no_claim(
        lib, tmp_path, monkeypatch, how):  # noqa: F811
    disks = add_disks("alice", tmp_path, 2)
    files = contents(how, "stop")
    first = send(lib, how, "/first", files)
    keys = {lib.files.get_version("alice", node, None).content_key for node in first.values()}
    refs = {key: lib.chunks.get_blob("alice", key).refs for key in keys}

    stop_at_the_attach(lib, monkeypatch)
    with pytest.raises(SystemExit):
        send(lib, how, "/again", files)
    monkeypatch.undo()
    assert {key: lib.chunks.get_blob("alice", key).refs for key in keys} == refs
    assert_claims_right(lib, first.values())

    # The content goes with its last real reader.
    for node in first.values():
        delete(lib, "alice", node)
    for key in keys:
        assert lib.chunks.get_blob("alice", key) is None
    if how != "session":               # a session's own parts wait for the upload sweep
        assert shares_on(disks) == set()


@pytest.mark.parametrize("how", HOW)
def test_content_let_go_before_the_attach_is_stored_again(
        lib, tmp_path, monkeypatch, how):  # noqa: F811
    add_disks("alice", tmp_path, 2)
    files = contents(how, "let-go")
    first = send(lib, how, "/first", files)
    real_one, real_many = lib.files._attach_version, lib.files._attach_new_files
    gone = []

    def first_let_it_go():
        if not gone:
            gone.append(True)
            for node in first.values():
                delete(lib, "alice", node)

    def attach_one(*args, **kwargs):
        first_let_it_go()
        return real_one(*args, **kwargs)

    def attach_many(*args, **kwargs):
        first_let_it_go()
        return real_many(*args, **kwargs)
    monkeypatch.setattr(lib.files, "_attach_version", attach_one)
    monkeypatch.setattr(lib.files, "_attach_new_files", attach_many)
    again = send(lib, how, "/again", files)
    monkeypatch.undo()
    assert gone
    for name, node in again.items():
        assert read(lib, "alice", node) == files[name]
    assert_claims_right(lib, again.values())
    for node in again.values():
        version = lib.files.get_version("alice", node, None)
        assert lib.chunks.get_blob("alice", version.content_key).refs == 1


def test_files_of_one_transaction_claim_each_content_once(lib, tmp_path, monkeypatch):  # noqa: F811
    """A batch repeating three stored contents ten times each: every transaction claims a
    content with one write (DynamoDB takes one write an item), counting its files."""
    add_disks("alice", tmp_path, 2)
    originals = small_files("three", 3)
    put(lib, "alice", "/originals", originals)
    repeated = {f"copy{n}-{name}": data for n in range(10) for name, data in originals.items()}
    store_class = type(lib.trees)
    real = store_class.create_files
    seen = []

    def create_files(self, groups):
        for group in groups:
            writes = [op for _, _, along in group for op in along]
            claims = [op.key["content_key"] for op in writes
                      if op.table.name == "blobs" and "refs" in op.change.add]
            assert len(claims) == len(set(claims)), claims
            seen.append(len(claims))
        return real(self, groups)
    monkeypatch.setattr(store_class, "create_files", create_files)
    nodes = put(lib, "alice", "/copies", repeated)
    assert seen and sum(seen) >= 3
    for name, node in nodes.items():
        assert read(lib, "alice", node) == repeated[name]
    for name in originals:
        version = lib.files.get_version("alice", nodes[f"copy0-{name}"], None)
        assert lib.chunks.get_blob("alice", version.content_key).refs == 11
