"""Local paths `put` and `get` cannot use are said in words, never a traceback or a silence:
`put` reports a folder it cannot read (counted as failed) and a link to a folder it does not
follow, and refuses a SRC it cannot stat with the documented exit codes; `get` fails only the
files of a folder it cannot make (a file in the way, a symbolic link below DEST, which it never
writes through), and refuses two remote files bound for one local path."""
from __future__ import annotations

import errno
import os
import re
import uuid
from pathlib import Path

import pytest
from cloudstrype_client import transfer
from cloudstrype_client.errors import FAILED, NOT_FOUND, USAGE


def _root() -> str:
    return f"/paths-{uuid.uuid4().hex[:8]}"


def _counts(output: str) -> tuple[int, int, int]:
    match = re.search(r"put: (\d+) sent, (\d+) skipped \(unchanged\), (\d+) failed", output)
    assert match, output
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _remote_files(cli, path: str) -> list[str]:
    listed = cli.ok("ls", "-R", path).stdout
    return [line for line in listed.splitlines() if line.strip()]


# -- put ------------------------------------------------------------------------------------------

def test_a_link_to_a_folder_inside_the_tree_is_said_to_be_skipped(cli, tmp_path):
    tree = tmp_path / "tree"
    (tree / "real").mkdir(parents=True)
    (tree / "real" / "r.txt").write_text("r\n")
    (tree / "file-link").symlink_to("real/r.txt")
    (tree / "folder-link").symlink_to("real")
    root = _root()

    done = cli.run("put", str(tree), f"{root}/")

    assert done.returncode == 0, done.stderr
    assert f"put: skipping {tree / 'folder-link'}: a link to a folder (not followed" \
        in done.stderr, done.stderr
    assert _counts(done.stdout) == (2, 0, 0)            # r.txt, and the file the link names
    listed = cli.ok("ls", f"{root}/tree").stdout.split()
    assert "folder-link" not in listed and "file-link" in listed


def test_a_dangling_link_and_a_downloads_temporary_file_are_passed_over_not_failed(
        cli, tmp_path):
    # A link to nothing has nothing to send; a `get` killed mid-way leaves its temporary file
    # (.XXXXXXXX.cloudstrype-part) for up to an hour: neither is a file of the folder's own.
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "kept.txt").write_text("k\n")
    (tree / "dangling").symlink_to("nowhere")
    (tree / f".AbCd_123{transfer.PART_SUFFIX}").write_bytes(b"half a download")
    root = _root()

    done = cli.run("put", str(tree), f"{root}/")

    assert done.returncode == 0, done.stderr
    assert f"put: skipping {tree / 'dangling'}: a link to nothing" in done.stderr, done.stderr
    assert "a temporary file of a `cloudstrype get`" in done.stderr, done.stderr
    assert _counts(done.stdout) == (1, 0, 0)
    assert _remote_files(cli, f"{root}/tree") == ["kept.txt"]


def test_a_src_that_is_a_link_to_a_folder_keeps_the_links_name(cli, tmp_path):
    (tmp_path / "releases" / "v3").mkdir(parents=True)
    (tmp_path / "releases" / "v3" / "app.txt").write_text("v3\n")
    (tmp_path / "current").symlink_to("releases/v3")
    root = _root()
    cli.ok("put", str(tmp_path / "current"), f"{root}/")
    assert cli.ok("cat", f"{root}/current/app.txt").stdout == "v3\n"
    assert cli.run("cat", f"{root}/v3/app.txt").returncode != 0


def test_a_folder_past_path_max_is_reported_and_counted_as_failed(cli, tmp_path):
    top = tmp_path / "deep"
    top.mkdir()
    (top / "near.txt").write_text("near\n")
    # 25 levels of 200-byte names: past PATH_MAX (4096), made level by level.
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(25):
            os.mkdir("d" * 200, dir_fd=fd)
            deeper = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        leaf = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"leaf\n")
        os.close(leaf)
    finally:
        os.close(fd)

    done = cli.run("put", str(top), f"{_root()}/")

    assert done.returncode == 1, done.stderr
    assert "put: cannot send the folder " in done.stderr and "File name too long" in done.stderr
    assert "Traceback" not in done.stderr
    sent, _, failed = _counts(done.stdout)
    assert sent == 1 and failed == 1, done.stdout


def test_an_unreadable_folder_is_a_failure_not_a_silence(tmp_path, monkeypatch):
    # (the tests run as root, which reads a mode 000 folder: its refusal is made here)
    top = tmp_path / "top"
    (top / "secret").mkdir(parents=True)
    (top / "secret" / "s.txt").write_text("s\n")
    (top / "ok.txt").write_text("ok\n")
    scandir = os.scandir

    def refusing(path="."):
        if os.path.basename(path) == "secret":
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return scandir(path)

    monkeypatch.setattr(transfer.os, "scandir", refusing)
    uploads: list[transfer.Upload] = []
    warnings = transfer._scan(str(top), "/top", uploads, set(), None)

    assert [u.name for u in uploads] == ["ok.txt"]
    assert warnings == [(f"put: cannot send the folder {top / 'secret'}: Permission denied", True)]
    # A folder SRC that cannot be read at all: the same.
    assert transfer._scan(str(top / "secret"), "/s", [], set(), None) == [
        (f"put: cannot send the folder {top / 'secret'}: Permission denied", True)]


def test_a_src_that_cannot_be_stated_is_refused_in_words(cli, tmp_path):
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "file").write_text("x\n")
    root = _root()
    cases = {str(tmp_path / "loop1"): (USAGE, "Too many levels of symbolic links"),
             str(tmp_path / "file" / "x"): (NOT_FOUND, "No such local file or directory"),
             str(tmp_path / ("y" * 300)): (USAGE, "File name too long")}
    for source, (code, words) in cases.items():
        done = cli.run("put", source, f"{root}/")
        assert done.returncode == code, (source, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, done.stderr
    denied = transfer._unusable_source("a/b", PermissionError(errno.EACCES, "Permission denied"))
    assert (denied.exit_code, denied.message) == (FAILED, "a/b: Permission denied.")


# -- get ------------------------------------------------------------------------------------------

@pytest.fixture
def remote_tree(cli, tmp_path) -> str:
    """ROOT/tree holding top.txt and sub/deep/f.txt (and the path of ROOT)."""
    tree = tmp_path / "up" / "tree"
    (tree / "sub" / "deep").mkdir(parents=True)
    (tree / "top.txt").write_text("top\n")
    (tree / "sub" / "deep" / "f.txt").write_text("f\n")
    root = _root()
    cli.ok("put", "-q", str(tree), f"{root}/")
    return root


def test_a_file_where_a_folder_goes_fails_that_folders_files_only(cli, tmp_path, remote_tree):
    dest = tmp_path / "dest"
    (dest / "tree").mkdir(parents=True)
    (dest / "tree" / "sub").write_text("in the way\n")

    done = cli.run("get", "-q", f"{remote_tree}/tree", f"{dest}/")

    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    assert f"get: {dest / 'tree' / 'sub'} is a file, so the folder cannot be made there" \
        in done.stderr, done.stderr
    assert "get: 1 of 2 files failed." in done.stderr
    assert (dest / "tree" / "top.txt").read_text() == "top\n"
    assert (dest / "tree" / "sub").read_text() == "in the way\n"

    # The whole tree in the way: every file fails, in one line for the folder.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "tree").write_text("in the way\n")
    done = cli.run("get", "-q", f"{remote_tree}/tree", f"{tmp_path / 'other'}/")
    assert done.returncode == 5, done.stderr
    assert "(2 files not written)" in done.stderr and "Traceback" not in done.stderr


def test_get_never_writes_through_a_symbolic_link_below_dest(cli, tmp_path, remote_tree):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    (dest / "tree").mkdir(parents=True)
    outside.mkdir()
    (dest / "tree" / "sub").symlink_to(outside)

    done = cli.run("get", "-q", f"{remote_tree}/tree", f"{dest}/")

    assert done.returncode == 5, done.stderr
    assert f"{dest / 'tree' / 'sub'} is a symbolic link; nothing is written through one" \
        in done.stderr, done.stderr
    assert list(outside.rglob("*")) == []
    assert (dest / "tree" / "top.txt").read_text() == "top\n"

    # DEST itself may be a link (the user chose it): followed.
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    cli.ok("get", "-q", f"{remote_tree}/tree", f"{tmp_path / 'linked'}/")
    assert (tmp_path / "real" / "tree" / "sub" / "deep" / "f.txt").read_text() == "f\n"


def test_two_remote_files_bound_for_one_local_path_are_refused(cli, tmp_path):
    root = _root()
    for n in (1, 2):
        folder = tmp_path / f"dup{n}" / "sub"
        folder.mkdir(parents=True)
        (folder / "x").write_text(f"{n}\n")
        cli.ok("put", "-q", f"{tmp_path / f'dup{n}'}/", f"{root}/dup{n}/")
    dest = tmp_path / "dest"

    done = cli.run("get", f"{root}/dup1/", f"{root}/dup2/", f"{dest}/")

    assert done.returncode == 2, done.stderr
    assert f"{root}/dup1/sub/x and {root}/dup2/sub/x would both be {dest / 'sub' / 'x'}" \
        in done.stderr, done.stderr
    assert not Path(dest / "sub" / "x").exists()
