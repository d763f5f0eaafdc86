"""A write that took place is never answered 404: the answer describes the item by its path,
and when a folder above it went to the trash at the same moment (found by a sweep: uploads,
batches and moves answered 404 node_not_found, and were stored), the path it was written to is
said instead. In process: the filesystem function's answer-building, on the SQLite engine and
a local storage."""
from __future__ import annotations

import importlib.util

import pytest

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline  # noqa: F401
from tests.support import REPO


@pytest.fixture
def app(pipeline):  # noqa: F811
    spec = importlib.util.spec_from_file_location(
        "filesystem_app_under_test", REPO / "functions" / "filesystem" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_write_whose_folder_went_to_the_trash_is_described_by_the_path_written(
        app, tmp_path):
    from cloudstrype import errors
    from cloudstrype.sharing.scope import scope_for
    from cloudstrype.tree import files, tree

    class Alice:
        user_id, username = "alice", "alice"

    add_disks("alice", tmp_path, 1)
    node = files.upload("alice", "/x/y", "file.txt", b"data", None, "raid1(1)", "none", None)
    files.delete_node("alice", tree.resolve("alice", "/x"))     # /x goes to the trash
    scope = scope_for(Alice, None)
    with pytest.raises(errors.NotFound):
        app._node_info(scope, node)                  # a read of it: gone, 404
    info = app._node_info(scope, node, lambda: app._joined("/x/y", node.name))
    assert info["path"] == "/x/y/file.txt" and info["id"] == node.node_id
