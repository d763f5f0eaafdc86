"""put, get, ls, mkdir, mv, rm, cat, info through the CLI, and their exit codes."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import pytest

MiB = 1024 * 1024


def _root() -> str:
    return f"/cli-{uuid.uuid4().hex[:8]}"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """A folder with small files, an empty file, an empty folder and a 10 MiB + 7 B file."""
    folder = tmp_path_factory.mktemp("sample") / "album"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "empty-dir").mkdir()
    (folder / "a.txt").write_text("hello cloudstrype\n")
    (folder / "empty.bin").write_bytes(b"")
    (folder / "sub" / "one-byte").write_bytes(b"\x00")
    (folder / "sub" / "deeper" / "ünïcode name.txt").write_text("unicode\n")
    (folder / "sub" / "small.bin").write_bytes(os.urandom(100_000))
    (folder / "big.bin").write_bytes(os.urandom(10 * MiB + 7))
    return folder


@pytest.fixture(scope="module")
def uploaded(cli, sample) -> str:
    root = _root()
    done = cli.ok("put", "-j", "4", str(sample), root + "/")
    assert "put: 6 of 6 files" in done.stderr
    return root + "/album"


def test_put_then_get_of_a_folder_is_byte_identical(cli, sample, uploaded, tmp_path):
    done = cli.ok("get", uploaded, str(tmp_path / "out"))
    assert "get: 6 of 6 files" in done.stderr
    assert _tree(tmp_path / "out" / "album") == _tree(sample)
    assert (tmp_path / "out" / "album" / "empty-dir").is_dir()
    assert not list(tmp_path.rglob("*cloudstrype-part"))      # no temporary file left


def test_the_big_file_went_through_an_upload_session(cli, cli_user, sample, uploaded):
    info = json.loads(cli.ok("info", "--json", uploaded + "/big.bin").stdout)
    assert info["size"] == 10 * MiB + 7
    assert info["sha256"] == hashlib.sha256((sample / "big.bin").read_bytes()).hexdigest()
    # A session's ETag is the hash of its parts' hashes with the part count, like S3's.
    assert info["etag"].endswith('-3"'), info["etag"]
    small = json.loads(cli.ok("info", "--json", uploaded + "/a.txt").stdout)
    assert "-" not in small["etag"]


def test_trailing_slash_copies_contents_and_single_file_can_be_renamed(cli, sample, tmp_path):
    root = _root()
    cli.ok("put", str(sample) + "/", root)
    names = cli.ok("ls", root).stdout.splitlines()
    assert names == ["a.txt", "big.bin", "empty-dir/", "empty.bin", "sub/"]
    cli.ok("put", str(sample / "a.txt"), root + "/renamed.txt")
    cli.ok("get", root + "/renamed.txt", str(tmp_path / "copy.txt"))
    assert (tmp_path / "copy.txt").read_bytes() == (sample / "a.txt").read_bytes()
    cli.ok("get", root + "/renamed.txt", root + "/a.txt", str(tmp_path / "two"))
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["a.txt", "renamed.txt"]


def test_ls_long_recursive_and_json(cli, uploaded):
    lines = cli.ok("ls", "-l", "-R", uploaded).stdout.splitlines()
    by_name = {line.split()[-1]: line for line in lines}
    assert set(by_name) >= {"a.txt", "big.bin", "empty-dir/", "sub/", "sub/small.bin",
                            "sub/deeper/", "sub/one-byte"}
    assert any(line.endswith("sub/deeper/ünïcode name.txt") for line in lines)
    assert by_name["big.bin"].split()[:2] == ["-", str(10 * MiB + 7)]
    assert by_name["sub/"].startswith("d ")
    entries = json.loads(cli.ok("ls", "-R", "--json", uploaded).stdout)
    paths = {e["path"]: e for e in entries}
    assert paths[uploaded + "/sub/small.bin"]["size"] == 100_000
    assert paths[uploaded + "/sub/deeper"]["type"] == "directory"
    assert len(entries) == 9
    plain = cli.ok("ls", uploaded).stdout.splitlines()
    assert plain == ["a.txt", "big.bin", "empty-dir/", "empty.bin", "sub/"]


def test_cat_small_and_ranged_files(cli, sample, uploaded):
    done = cli.run("cat", uploaded + "/a.txt", text=False)
    assert done.returncode == 0 and done.stdout == b"hello cloudstrype\n"
    big = cli.run("cat", uploaded + "/big.bin", text=False)
    assert big.returncode == 0, big.stderr
    assert big.stdout == (sample / "big.bin").read_bytes()
    directory = cli.run("cat", uploaded)
    assert directory.returncode == 2 and "is a directory" in directory.stderr


def test_info_json_and_text(cli, uploaded):
    info = json.loads(cli.ok("info", "--json", uploaded + "/sub/small.bin").stdout)
    assert info["path"] == uploaded + "/sub/small.bin"
    assert info["type"] == "file" and info["size"] == 100_000
    assert info["durability"] == "raid1(2)" and info["encryption"] == "aes256-gcm"
    assert len(info["versions"]) == 1
    text = cli.ok("info", uploaded).stdout
    assert f"path:         {uploaded}" in text and "type:         directory" in text


def test_mkdir_with_and_without_parents(cli):
    root = _root()
    missing_parent = cli.run("mkdir", root + "/a/b")
    assert missing_parent.returncode == 4, missing_parent
    assert "use -p" in missing_parent.stderr
    cli.ok("mkdir", "-p", root + "/a/b/c")
    cli.ok("mkdir", "-p", root + "/a/b/c")                 # exists: fine with -p
    exists = cli.run("mkdir", root + "/a")
    assert exists.returncode == 5 and "exists already" in exists.stderr
    cli.ok("mkdir", root + "/a/d")
    assert cli.ok("ls", "-R", root).stdout.splitlines() == ["a/", "a/b/", "a/b/c/", "a/d/"]


def test_mv_renames_and_moves(cli, sample):
    root = _root()
    cli.ok("put", str(sample / "a.txt"), str(sample / "sub" / "small.bin"), root + "/in/")
    cli.ok("mkdir", root + "/out")
    cli.ok("mv", root + "/in/a.txt", root + "/in/b.txt")              # rename
    cli.ok("mv", root + "/in/b.txt", root + "/out")                   # into a directory
    cli.ok("mv", root + "/in/small.bin", root + "/out/tiny.bin")      # move and rename
    assert cli.ok("ls", root + "/in").stdout == ""
    assert cli.ok("ls", root + "/out").stdout.splitlines() == ["b.txt", "tiny.bin"]
    assert cli.run("cat", root + "/out/b.txt").stdout == "hello cloudstrype\n"
    cli.ok("mv", root + "/out", root + "/in")                         # a directory, into one
    assert cli.ok("ls", "-R", root).stdout.splitlines() == [
        "in/", "in/out/", "in/out/b.txt", "in/out/tiny.bin"]
    taken = cli.run("mv", root + "/in/out/b.txt", root + "/in/out/tiny.bin")
    assert taken.returncode == 5, taken
    itself = cli.run("mv", root + "/in/out/b.txt", root + "/in//out/b.txt")
    assert itself.returncode == 1 and "are the same item; nothing to move" in itself.stderr, \
        itself
    nowhere = cli.run("mv", root + "/in/out/b.txt", root + "/no/such/dir/x")
    assert nowhere.returncode == 4, nowhere
    # A DEST ending in '/' is a directory: one that is not there is not a new name.
    slash = cli.run("mv", root + "/in/out/b.txt", root + "/in/archive/")
    assert slash.returncode == 2 and "ends in '/' but is not there" in slash.stderr, slash
    onto_file = cli.run("mv", root + "/in/out/b.txt", root + "/in/out/tiny.bin/")
    assert onto_file.returncode == 2 and "but is a file" in onto_file.stderr, onto_file
    assert cli.ok("ls", root + "/in/out").stdout.splitlines() == ["b.txt", "tiny.bin"]
    cli.ok("mv", root + "/in/out/b.txt", root + "/in/")                # into, with its '/'
    assert cli.ok("ls", root + "/in").stdout.splitlines() == ["b.txt", "out/"]


def test_rm_files_and_recursive(cli, sample):
    root = _root()
    cli.ok("put", str(sample / "sub"), root + "/")
    refused = cli.run("rm", root + "/sub")
    assert refused.returncode == 2 and "rm -r" in refused.stderr
    cli.ok("rm", root + "/sub/one-byte")
    assert "one-byte" not in cli.ok("ls", root + "/sub").stdout
    cli.ok("rm", "-r", root + "/sub")
    assert cli.ok("ls", root).stdout == ""
    assert cli.run("ls", root + "/sub").returncode == 4
    assert cli.run("rm", root + "/sub").returncode == 4
    cli.ok("rm", "-f", root + "/sub")


@pytest.mark.parametrize("args", [
    ("ls", "/no-such-dir-{}"),
    ("info", "/no-such-file-{}"),
    ("cat", "/no-such-file-{}"),
    ("get", "/no-such-file-{}", "{tmp}/x"),
    ("rm", "-r", "/no-such-dir-{}"),
    ("mv", "/no-such-file-{}", "/elsewhere"),
])
def test_missing_paths_exit_4(cli, tmp_path, args):
    token = uuid.uuid4().hex[:6]
    argv = [a.format(token, tmp=tmp_path) if "{" in a else a for a in args]
    done = cli.run(*argv)
    assert done.returncode == 4, done
    assert "No such file or directory" in done.stderr


def test_missing_local_source_exits_4(cli, tmp_path):
    done = cli.run("put", str(tmp_path / "nothing-here"), "/x/")
    assert done.returncode == 4 and "No such local file" in done.stderr


def test_usage_errors_exit_2(cli):
    assert cli.run("put", "only-one-argument").returncode == 2
    relative = cli.run("ls", "relative/path")
    assert relative.returncode == 2 and "absolute" in relative.stderr
    bad_name = cli.run("mkdir", "-p", "/a/../b")
    assert bad_name.returncode == 2 and "not a valid name" in bad_name.stderr
