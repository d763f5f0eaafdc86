"""An earlier version deleted for good at the moment its file goes to the trash: the trash
counts what is left, whichever of the two lands first (found by an attacker sweep: the trash
counted the freed version too, trash_bytes above stored_bytes and live_bytes clamped to 0)."""
from __future__ import annotations

import os

import pytest

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline  # noqa: F401

SIZE = 200_000


@pytest.fixture
def two_versions(pipeline, tmp_path):  # noqa: F811 - the fixture, imported above
    from cloudstrype.tree import files, tree
    add_disks("alice", tmp_path, 2)
    first = files.upload("alice", "/r", "f.bin", os.urandom(SIZE), None, "raid1(2)", None)
    node = files.upload("alice", "/r", "f.bin", os.urandom(SIZE), None, "raid1(2)", None)
    old = [v for v in files.tree_store().list_versions("alice", node.node_id)
           if v.version_id != node.version_id]
    assert [v.version_id for v in old] == [first.version_id]
    return tree.get_node("alice", node.node_id), first.version_id


def _counts_one_version(node) -> None:
    from cloudstrype import quota
    from cloudstrype.tree import trash
    usage = quota.usage("alice")
    (item,) = [i for i in trash.listing("alice", 100, None)["items"]
               if i["id"] == node.node_id]
    assert item["size"] == SIZE, item
    assert usage["trash_bytes"] == SIZE and usage["stored_bytes"] == SIZE, usage


def test_the_version_freed_while_the_delete_measured_is_not_counted(two_versions,
                                                                    monkeypatch):
    from cloudstrype.tree import files, trash
    node, old = two_versions
    measure = trash.measure
    raced = []

    def measured_then_raced(owner, item, deadline):
        found = measure(owner, item, deadline)
        if not raced:           # the version goes after the delete measured, before it lands
            raced.append(files.delete_earlier_version(owner, node, old))
        return found

    monkeypatch.setattr(trash, "measure", measured_then_raced)
    files.delete_node("alice", node)
    assert raced == [True]
    _counts_one_version(node)


def test_a_delete_that_lands_while_the_version_is_freed_is_counted_again(two_versions,
                                                                          monkeypatch):
    from cloudstrype.tree import files
    node, old = two_versions
    free_version = files.free_version
    raced = []

    def freed_after_the_delete(owner, version, deadline=float("inf")):
        if not raced:           # the file goes to the trash, measured with the version, first
            raced.append(files.delete_node(owner, node))
        return free_version(owner, version, deadline)

    monkeypatch.setattr(files, "free_version", freed_after_the_delete)
    assert files.delete_earlier_version("alice", node, old)
    _counts_one_version(node)


def test_a_read_of_a_version_deleted_meanwhile_says_so(two_versions):
    """Not chunk_not_found, which names an internal chunk."""
    from cloudstrype import errors
    from cloudstrype.tree import files
    node, old = two_versions
    held = files.get_version("alice", node, old)        # a reader that started before
    assert files.delete_earlier_version("alice", node, old)
    with pytest.raises(errors.NotFound) as caught:
        files.read("alice", held, 0, 99)
    assert caught.value.code == "version_not_found"
    assert "deleted while it was read" in caught.value.message
