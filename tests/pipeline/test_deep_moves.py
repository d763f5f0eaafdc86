"""A move that takes a folder deeper checks that nothing under it goes past the deepest level a
path may have, within a bound on what it reads: the folders it walks (files have no level below
them), and pages of entries. In process on the SQLite engine."""
from __future__ import annotations

import pytest

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline  # noqa: F401


def test_files_do_not_count_against_the_check_folders_do(pipeline, tmp_path,  # noqa: F811
                                                        monkeypatch):
    from cloudstrype import errors
    from cloudstrype.tree import files, tree
    add_disks("alice", tmp_path, 2)
    monkeypatch.setattr(tree, "DEPTH_CHECK_FOLDERS", 5)
    flat, _ = tree.make_dirs("alice", "/flat", None)
    for n in range(40):                     # a flat folder of files, many more than 5
        files.upload("alice", "/flat", f"f{n}.txt", b"", None, None, None)
    deeper, _ = tree.make_dirs("alice", "/a/b", None)
    moved = tree.rename_or_move("alice", flat, None, "/a/b")
    assert tree.path_of("alice", moved) == "/a/b/flat"
    assert len(tree.tree("alice", moved, 1, 1000, None)["children"]) == 40

    wide, _ = tree.make_dirs("alice", "/wide", None)
    for n in range(6):                      # more folders than the check may walk
        tree.make_dirs("alice", f"/wide/d{n}", None)
    with pytest.raises(errors.BadRequest) as refused:
        tree.rename_or_move("alice", wide, None, "/a/b")
    assert refused.value.code == "too_deep" and "too many items to check" in \
        refused.value.message
    assert tree.path_of("alice", tree.get_node("alice", wide.node_id)) == "/wide"
