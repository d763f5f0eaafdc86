"""Where `get` writes: a new temporary file of its own beside the target (O_EXCL, never through a
symlink, a short name), renamed over the target once checked; nothing of the user's is touched on
the way, a 255-byte name works, and a directory in the way is named."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

MiB = 1024 * 1024


def _root() -> str:
    return f"/target-{uuid.uuid4().hex[:8]}"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if "cloudstrype-part" in p.name)


@pytest.fixture(scope="module")
def hello(cli, tmp_path_factory) -> str:
    local = tmp_path_factory.mktemp("hello") / "hello.txt"
    local.write_bytes(b"hello\n")
    root = _root()
    cli.ok("put", str(local), root + "/")
    return root + "/hello.txt"


@pytest.mark.parametrize("size", [6, 5 * MiB])           # one request; ranges
def test_a_users_own_name_part_file_is_left_alone(cli, tmp_path, size):
    local = tmp_path / "up" / "hello.txt"
    local.parent.mkdir()
    data = os.urandom(size)
    local.write_bytes(data)
    remote = _root() + "/hello.txt"
    cli.ok("put", str(local), remote)
    out = tmp_path / "out"
    out.mkdir()
    (out / "hello.txt.part").write_bytes(b"mine, not cloudstrype's\n")

    cli.ok("get", remote, str(out) + "/")

    assert (out / "hello.txt").read_bytes() == data
    assert (out / "hello.txt.part").read_bytes() == b"mine, not cloudstrype's\n"
    assert _leftovers(out) == []


def test_a_symlink_where_the_old_temporary_name_was_is_not_followed(cli, hello, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "hello.txt.part").symlink_to(victim)

    cli.ok("get", hello, str(out) + "/")

    assert victim.read_bytes() == b"precious\n"
    assert not (out / "hello.txt").is_symlink()
    assert (out / "hello.txt").read_bytes() == b"hello\n"
    assert (out / "hello.txt.part").is_symlink()


def test_a_folder_holding_big_and_big_part_comes_back_whole(cli, tmp_path):
    folder = tmp_path / "pair"
    folder.mkdir()
    files = {"big": os.urandom(6_000_000), "big.part": os.urandom(300_000),
             "small": b"s", "small.part": b"p"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    root = _root()
    cli.ok("put", str(folder), root + "/")

    done = cli.ok("get", root + "/pair", str(tmp_path / "back"))

    assert {p.name: p.read_bytes() for p in (tmp_path / "back" / "pair").iterdir()} == files
    assert "get: 4 of 4 files" in done.stderr


def test_a_name_of_252_bytes_can_be_downloaded(cli, tmp_path):
    name = "n" * 252
    local = tmp_path / "up" / name
    local.parent.mkdir()
    local.write_bytes(b"long name\n")
    root = _root()
    cli.ok("put", str(local), root + "/")
    out = tmp_path / "out"

    cli.ok("get", f"{root}/{name}", str(out) + "/")

    assert (out / name).read_bytes() == b"long name\n"
    assert _leftovers(out) == []


def test_a_directory_where_the_file_goes_is_named(cli, hello, tmp_path):
    out = tmp_path / "out3"
    (out / "hello.txt").mkdir(parents=True)

    done = cli.run("get", hello, str(out) + "/")

    assert done.returncode == 5, done.stderr                 # something is in the way
    assert f"{out / 'hello.txt'} is a directory" in done.stderr, done.stderr
    assert ".part" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["hello.txt"]
    assert list((out / "hello.txt").iterdir()) == []


def test_a_fifo_or_socket_where_the_file_goes_is_named_and_left_alone(cli, hello, tmp_path):
    """A rename over a FIFO or device would replace it with a file (root's /dev/null)."""
    import socket
    import stat
    out = tmp_path / "special"
    out.mkdir()
    os.mkfifo(out / "hello.txt")
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(out / "sock"))
    try:
        for target, named, kind in ((out / "hello.txt", "a FIFO", stat.S_ISFIFO),
                                    (out / "sock", "a socket", stat.S_ISSOCK)):
            done = cli.run("get", hello, str(target))
            assert done.returncode == 5, done.stderr
            assert f"{target} is {named}, not a file" in done.stderr, done.stderr
            assert kind(target.lstat().st_mode)                 # still what it was
        assert sorted(p.name for p in out.iterdir()) == ["hello.txt", "sock"]
    finally:
        listening.close()


def test_a_download_keeps_the_usual_file_mode(cli, hello, tmp_path):
    out = tmp_path / "mode"
    cli.ok("get", hello, str(out) + "/")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out / "hello.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_killed_downloads_stale_temporary_file_is_removed_by_the_next_one(cli, hello, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale, fresh = out / ".abc_1234.cloudstrype-part", out / ".fresh123.cloudstrype-part"
    lookalike = out / ".notours.cloudstrype-part.txt"
    for path in (stale, fresh, lookalike):
        path.write_bytes(b"x")
    hours_ago = os.stat(stale).st_mtime - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    os.utime(lookalike, (hours_ago, hours_ago))

    cli.ok("get", hello, str(out) + "/")

    assert (out / "hello.txt").read_bytes() == b"hello\n"
    assert not stale.exists(), "a temporary file nobody wrote for 2 hours is a killed get's"
    assert fresh.exists(), "one written within the hour may be another get's, still running"
    assert lookalike.exists()


def test_a_dest_ending_in_a_slash_that_is_a_file_is_refused_in_words(cli, hello, tmp_path):
    from cloudstrype_client.errors import CONFLICT
    afile = tmp_path / "afile"
    afile.write_text("old\n")
    done = cli.run("get", hello, str(afile) + "/")
    assert done.returncode == CONFLICT, done.stderr
    assert "is a file, not a folder" in done.stderr and "Traceback" not in done.stderr
    assert afile.read_text() == "old\n" and _leftovers(tmp_path) == []
    # Without the '/', DEST is the file's new name: replaced.
    cli.ok("get", hello, str(afile))
    assert afile.read_bytes() == b"hello\n"
