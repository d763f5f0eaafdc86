"""An upload session's commit and its abort, in process on the SQLite engine and local directory
storages: the file appears and the session is marked committed in one transaction, so an abort
that lands while the commit is under way either stops it (no file, the sweep frees the parts)
or finds it committed (the file keeps its chunks); a second commit racing the first gives the
same file."""
from __future__ import annotations

import os
import time

import pytest

from tests.pipeline.test_chunk_pipeline import add_disks, pipeline  # noqa: F401


@pytest.fixture
def files(pipeline):  # noqa: F811
    from cloudstrype.tree import files
    return files


def _session_with_parts(files, tmp_path, size: int):
    add_disks("alice", tmp_path, 2)
    data = os.urandom(size)
    session, _ = files.create_session("alice", "/docs", "report.bin", size, None,
                                      "raid1(2)", "aes256-gcm", None)
    _put_parts(files, session, data)
    return session, data


def _put_parts(files, session: dict, data: bytes) -> None:
    for part in range(session["parts"]):
        start = part * files.CHUNK_SIZE
        files.put_part("alice", session["upload_id"], part, data[start:start + files.CHUNK_SIZE])


def _before_the_commit_writes(monkeypatch, happening):
    """Run `happening()` once the commit has read the session and its parts (at its
    make_dirs), before it writes anything; returns what puts make_dirs back."""
    from cloudstrype.tree import tree
    make_dirs = tree.make_dirs

    def first(*args, **kwargs):
        happening()
        return make_dirs(*args, **kwargs)

    monkeypatch.setattr(tree, "make_dirs", first)
    return lambda: monkeypatch.setattr(tree, "make_dirs", make_dirs)


def _read(files, path: str) -> bytes:
    from cloudstrype.tree import tree
    node = tree.resolve("alice", path)
    version = files.get_version("alice", node, None)
    return files.read("alice", version, 0, version.size - 1)


def test_an_abort_that_lands_during_the_commit_stops_it_and_nothing_is_left(
        files, tmp_path, monkeypatch):
    from cloudstrype import errors
    from cloudstrype.tree import tree
    from cloudstrype.tree.store import tree_store
    session, _ = _session_with_parts(files, tmp_path, files.CHUNK_SIZE + 1000)
    # The commit has read the session and its parts; now the owner aborts it.
    restore = _before_the_commit_writes(
        monkeypatch, lambda: files.abort_session("alice", session["upload_id"]))
    with pytest.raises(errors.Conflict) as refused:
        files.commit_session("alice", session["upload_id"])
    assert refused.value.code == "upload_aborted"
    restore()
    docs = tree.resolve("alice", "/docs")
    assert tree.child("alice", docs.node_id, "report.bin") is None

    # The sweep frees the aborted session's chunks: nothing of it is left stored.
    from cloudstrype.pipeline.chunk_store import chunk_store
    record = tree_store().get_upload("alice", session["upload_id"])
    assert record.aborted
    monkeypatch.setattr(time, "time", lambda real=time.time: real() + 3600)
    files.sweep_expired_uploads()
    assert not [c for c in (files.chunk_id(record.version_id, p) for p in range(2))
                if chunk_store().exists("alice", c)]


def test_an_abort_after_the_commit_leaves_the_file_whole(files, tmp_path):
    from cloudstrype import errors
    session, data = _session_with_parts(files, tmp_path, files.CHUNK_SIZE + 1000)
    files.commit_session("alice", session["upload_id"])
    with pytest.raises(errors.ApiError):
        files.abort_session("alice", session["upload_id"])
    files.sweep_expired_uploads()
    assert _read(files, "/docs/report.bin") == data


def test_a_commit_racing_another_commit_of_the_same_session_gives_the_same_file(
        files, tmp_path, monkeypatch):
    from cloudstrype.tree import tree
    session, data = _session_with_parts(files, tmp_path, 3000)
    make_dirs = tree.make_dirs
    inner: list = []

    def commit_first(*args, **kwargs):
        if not inner:
            inner.append(None)
            inner[0] = files.commit_session("alice", session["upload_id"])
        return make_dirs(*args, **kwargs)

    monkeypatch.setattr(tree, "make_dirs", commit_first)
    outer = files.commit_session("alice", session["upload_id"])
    assert outer.node_id == inner[0].node_id and outer.version_id == inner[0].version_id
    assert _read(files, "/docs/report.bin") == data


def test_a_part_sent_again_while_the_commit_runs_is_never_committed_under_old_hashes(
        files, tmp_path, monkeypatch):
    """Found by a sweep: the re-sent part replaced its chunk after the commit had read the old
    part hashes, so the file held bytes its ETag and content key did not describe (and content
    stored once was then served to another upload). Now the commit fails and can be repeated,
    and what it commits is what the parts hold."""
    from cloudstrype import errors
    from cloudstrype.tree import tree
    session, data = _session_with_parts(files, tmp_path, files.CHUNK_SIZE + 1000)
    other = os.urandom(files.CHUNK_SIZE)
    resent = []
    # The commit has read the parts; now part 0 arrives again with other bytes.
    restore = _before_the_commit_writes(monkeypatch, lambda: resent.append(
        files.put_part("alice", session["upload_id"], 0, other)["stored"]))
    with pytest.raises(errors.Conflict) as refused:
        files.commit_session("alice", session["upload_id"])
    assert refused.value.code == "parts_changed" and resent == ["now"]
    restore()
    node = files.commit_session("alice", session["upload_id"])
    expected = other + data[files.CHUNK_SIZE:]
    assert _read(files, "/docs/report.bin") == expected
    # Committed, its parts cannot change any more.
    with pytest.raises(errors.Conflict) as late:
        files.put_part("alice", session["upload_id"], 0, data[:files.CHUNK_SIZE])
    assert late.value.code == "upload_committed"
    assert _read(files, "/docs/report.bin") == expected
    # Its content is what another upload of the same bytes is matched to, and reads right.
    again, _ = files.create_session("alice", "/docs", "copy.bin", len(expected), None,
                                    "raid1(2)", "aes256-gcm", None)
    _put_parts(files, again, expected)
    files.commit_session("alice", again["upload_id"])
    assert _read(files, "/docs/copy.bin") == expected
    assert tree.resolve("alice", "/docs/report.bin").node_id == node.node_id
