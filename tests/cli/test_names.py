"""Names that are not plain text: a local name that is not UTF-8 is refused in words on every path
(never a traceback), and remote names holding terminal controls (ESC sequences, CR, BEL, C1,
bidi overrides) are printed escaped by every command that shows them; JSON stays exact."""
from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest

from tests.support import register_and_login

from .conftest import Cli, add_local_storages

ODD = os.fsdecode(b"odd\xff")                  # a local name whose bytes are not UTF-8
# What a terminal would act on, or reorder the line with: none of it may be printed raw.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
HOSTILE = {
    "esc2\x1b[2J\x1b[31mRED\x1b]0;TITLE\x07": r"esc2\x1b[2J\x1b[31mRED\x1b]0;TITLE\x07",
    "cr\rover": r"cr\x0dover",
    "bidi\u202etxt.exe": r"bidi\u202etxt.exe",
    "iso\u2066late": r"iso\u2066late",
    "c1\x9bname": r"c1\x9bname",
    "del\x7fname": r"del\x7fname",
    # Text that reads like an escape is told apart from the character: the backslash doubled.
    r"text\x1bname": r"text\\x1bname",
    "back\\\x1bslash": r"back\\\x1bslash",
    r"win\path": r"win\path",
}


def _root() -> str:
    return f"/names-{uuid.uuid4().hex[:8]}"


def _no_controls(*texts: str) -> None:
    for text in texts:
        found = UNSAFE.search(text)
        assert found is None, f"{found.group()!r} printed raw in {text!r}"


# -- a local name that is not UTF-8 ---------------------------------------------------------------

def _folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    (src / "b.txt").write_bytes(b"b")
    (src / ODD).write_bytes(b"odd")
    return src


def _refused_in_words(done, local: str) -> None:
    assert done.returncode == 1, done.stderr                  # refused: not a usage error
    assert "Traceback" not in done.stderr and "UnicodeEncodeError" not in done.stderr
    assert f"{local}: the name is not valid UTF-8" in done.stderr, done.stderr
    _no_controls(done.stdout, done.stderr)


def test_a_name_that_is_not_utf8_is_refused_in_words_on_every_run(cli, tmp_path):
    src = _folder(tmp_path)
    root = _root()
    shown = str(src / "odd") + r"\xff"

    first = cli.run("put", str(src), root + "/")
    _refused_in_words(first, shown)
    assert "2 sent, 0 skipped (unchanged), 1 failed" in first.stdout

    # Only that file is left to send: it went alone (one request), where it crashed.
    again = cli.run("put", str(src), root + "/")
    _refused_in_words(again, shown)
    assert "0 sent, 2 skipped (unchanged), 1 failed" in again.stdout

    alone = cli.run("put", str(src / ODD), root + "/")         # named on the command line
    _refused_in_words(alone, shown)

    (src / ODD).unlink()
    (src / ODD).mkdir()                                       # a folder of that name
    (src / ODD / "inside.txt").write_bytes(b"i")
    below = cli.run("put", str(src), root + "/")
    _refused_in_words(below, shown)
    assert cli.ok("ls", "-R", root).stdout.splitlines() == ["src/", "src/a.txt", "src/b.txt"]

    # That folder named on the command line beside a file: said, and the file is sent.
    named = cli.run("put", str(src / "a.txt"), str(src / ODD), root + "/named/")
    assert named.returncode == 1, named.stderr
    assert f"{shown}: the name is not valid UTF-8" in named.stderr, named.stderr
    assert cli.ok("ls", root + "/named").stdout.splitlines() == ["a.txt"]


def test_a_remote_path_that_is_not_utf8_is_a_usage_error(cli):
    for args in (("ls", "/" + ODD), ("mkdir", "-p", "/" + ODD), ("info", "/" + ODD)):
        done = cli.run(*args)
        assert done.returncode == 2, done.stderr
        assert "not valid UTF-8" in done.stderr and "Traceback" not in done.stderr
        assert r"/odd\xff" in done.stderr, done.stderr


# -- remote names with terminal controls ----------------------------------------------------------

@pytest.fixture(scope="module")
def hostile(cli, tmp_path_factory) -> str:
    """A folder with a directory and a file of each hostile name."""
    root = _root()
    local = tmp_path_factory.mktemp("hostile")
    for n, name in enumerate(HOSTILE):
        cli.ok("mkdir", "-p", f"{root}/{name}")
        path = local / f"f{n}"
        path.write_bytes(b"x" * (n + 1))
        cli.ok("put", str(path), f"{root}/files/{name}")
    return root


def test_ls_plain_long_and_recursive_show_names_escaped(cli, hostile):
    plain = cli.ok("ls", hostile).stdout
    long = cli.ok("ls", "-l", hostile + "/files").stdout
    recursive = cli.ok("ls", "-R", hostile).stdout
    _no_controls(plain, long, recursive)
    for escaped in HOSTILE.values():
        assert escaped + "/" in plain.splitlines()
        assert any(line.endswith("  " + escaped) for line in long.splitlines()), long
        assert "files/" + escaped in recursive.splitlines()


def test_json_keeps_names_exact(cli, hostile):
    entries = json.loads(cli.ok("ls", "--json", hostile + "/files").stdout)
    assert sorted(e["name"] for e in entries) == sorted(HOSTILE)


def test_trash_and_transfer_messages_show_names_escaped(cli, hostile, tmp_path):
    name = next(iter(HOSTILE))
    out = tmp_path / "out"
    (out / name).mkdir(parents=True)                          # in the way of the download
    failed = cli.run("get", f"{hostile}/files/{name}", str(out) + "/")
    assert failed.returncode == 5, failed.stderr
    _no_controls(failed.stdout, failed.stderr)
    assert HOSTILE[name] in failed.stderr

    dry = cli.ok("put", "-n", str(out / name), hostile + "/again/")
    _no_controls(dry.stdout, dry.stderr)

    cli.ok("rm", "-r", f"{hostile}/{name}")
    listing = cli.ok("trash")
    _no_controls(listing.stdout, listing.stderr)
    assert f"{hostile}/{HOSTILE[name]}/" in listing.stdout
    restored = cli.ok("trash", "restore", f"{hostile}/{name}")
    _no_controls(restored.stdout, restored.stderr)
    assert restored.stdout.strip() == f"{hostile}/{HOSTILE[name]}"
    missing = cli.run("info", f"{hostile}/{name}/nothing")
    assert missing.returncode == 4
    _no_controls(missing.stderr)


def test_a_sharers_names_reach_the_other_user_escaped(api, stack, cli, tmp_path_factory):
    other = register_and_login(api)
    add_local_storages(other, tmp_path_factory.mktemp("names-disks"), 2)
    bob = Cli(tmp_path_factory.mktemp("names-home"), stack.url)
    bob.login(other)
    name = next(iter(HOSTILE))
    folder = f"{_root()}/{name}"
    cli.ok("mkdir", "-p", f"{folder}/{name}")
    share_id = cli.ok("share", folder, "--with", other.username).stdout.strip()

    granted = bob.ok("shares", "--with-me")
    inside = bob.ok("ls", "--share", share_id, "/")
    _no_controls(granted.stdout, granted.stderr, inside.stdout, inside.stderr)
    assert HOSTILE[name] + "/" in granted.stdout
    assert inside.stdout.splitlines() == [HOSTILE[name] + "/"]
    mine = cli.ok("shares")
    _no_controls(mine.stdout, mine.stderr)
