"""`cloudstrype put` skips unchanged files, as `rclone copy` does: same size and modification
time (kept by the server from the client), or with --checksum the same sha256; --dry-run sends
nothing. Proven by server state (a file's versions), not only by what the CLI says."""
from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from tests.support import assert_error, register_and_login

from .conftest import add_local_storages

MiB = 1024 * 1024
# 2023-11-14T22:13:20.123456Z: a time no test run happens at, to the microsecond.
OLD_NS = 1_700_000_000_123_456_000


def _root() -> str:
    return f"/skip-{uuid.uuid4().hex[:8]}"


def _counts(output: str) -> tuple[int, int, int]:
    match = re.search(r"put: (\d+) sent, (\d+) skipped \(unchanged\), (\d+) failed", output)
    assert match, output
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _versions(user, path: str) -> list[dict]:
    """The file's versions, oldest first, as the server has them."""
    node = user.api.get("/api/filesystem/info", params={"path": path, "depth": 0})
    assert node.status_code == 200, node.text
    info = user.api.get(f"/api/filesystem/info/{node.json()['id']}")
    return info.json()["versions"]


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@pytest.fixture
def folder(tmp_path) -> Path:
    """Small files in two levels, an empty file, and one file big enough for a session."""
    top = tmp_path / "photos"
    (top / "sub" / "deeper").mkdir(parents=True)
    (top / "a.txt").write_text("alpha\n")
    (top / "b.bin").write_bytes(os.urandom(3000))
    (top / "empty").write_bytes(b"")
    (top / "sub" / "c.txt").write_text("charlie\n")
    (top / "sub" / "deeper" / "d.bin").write_bytes(os.urandom(5000))
    (top / "big.bin").write_bytes(os.urandom(5 * MiB + 3))
    for n, path in enumerate(sorted(p for p in top.rglob("*") if p.is_file())):
        os.utime(path, ns=(OLD_NS, OLD_NS + n * 1_000_000_000))
    return top


FILES = ["a.txt", "b.bin", "big.bin", "empty", "sub/c.txt", "sub/deeper/d.bin"]


def test_a_second_put_of_an_unchanged_folder_sends_nothing(cli, cli_user, folder):
    root = _root()
    first = cli.ok("put", str(folder), root)
    assert _counts(first.stdout) == (6, 0, 0)
    before = {name: _versions(cli_user, f"{root}/photos/{name}") for name in FILES}
    assert all(len(v) == 1 for v in before.values())
    # The server kept each file's local modification time, one-shot and session alike.
    listing = {e["name"]: e for e in cli_user.api.get(
        "/api/filesystem/info", params={"path": f"{root}/photos"}).json()["children"]}
    for name in ("a.txt", "big.bin"):
        local = (folder / name).stat().st_mtime_ns / 1e9
        assert abs(_seconds(listing[name]["modified"]) - local) < 1e-5, (name, listing[name])

    again = cli.ok("put", str(folder), root)
    assert _counts(again.stdout) == (0, 6, 0)
    assert "put: 0 of" not in again.stderr          # no transfer happened, none reported
    after = {name: _versions(cli_user, f"{root}/photos/{name}") for name in FILES}
    assert after == before

    # The same counts in --json, and for a single file named on the command line.
    single = json.loads(cli.ok("put", "--json", str(folder / "a.txt"),
                               f"{root}/photos/a.txt").stdout)
    assert single == {"sent": 0, "skipped": 1, "failed": 0, "dry_run": False}
    assert _versions(cli_user, f"{root}/photos/a.txt") == before["a.txt"]


def test_a_changed_size_or_mtime_is_sent_again(cli, cli_user, folder):
    root = _root()
    cli.ok("put", str(folder) + "/", root)
    with open(folder / "sub" / "c.txt", "a") as f:
        f.write("more\n")                                   # size changes
    os.utime(folder / "sub" / "c.txt", ns=(OLD_NS, OLD_NS))
    stat = (folder / "b.bin").stat()
    os.utime(folder / "b.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000))  # 5 ms
    big = (folder / "big.bin").stat()
    os.utime(folder / "big.bin", ns=(big.st_atime_ns, big.st_mtime_ns + 1_000_000_000))

    again = cli.ok("put", str(folder) + "/", root)
    assert _counts(again.stdout) == (3, 3, 0)
    counts = {name: len(_versions(cli_user, f"{root}/{name}")) for name in FILES}
    assert counts == {"a.txt": 1, "b.bin": 2, "big.bin": 2, "empty": 1, "sub/c.txt": 2,
                      "sub/deeper/d.bin": 1}
    # Sent again, the new modification times are kept: a third run sends nothing.
    assert _counts(cli.ok("put", str(folder) + "/", root).stdout) == (0, 6, 0)


def test_checksum_catches_a_same_size_same_mtime_change(cli, cli_user, folder):
    root = _root()
    cli.ok("put", str(folder), root)
    target = folder / "sub" / "deeper" / "d.bin"
    stat = target.stat()
    target.write_bytes(os.urandom(stat.st_size))            # same size, new content
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
    remote = f"{root}/photos/sub/deeper/d.bin"

    plain = cli.ok("put", str(folder), root)
    assert _counts(plain.stdout) == (0, 6, 0)                # size and mtime cannot see it
    assert len(_versions(cli_user, remote)) == 1

    checked = cli.ok("put", "--checksum", str(folder), root)
    assert _counts(checked.stdout) == (1, 5, 0)
    versions = _versions(cli_user, remote)
    assert len(versions) == 2
    assert versions[-1]["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    # A touched file with the same content is unchanged for --checksum.
    os.utime(folder / "a.txt", ns=(OLD_NS, OLD_NS + 77_000_000_000))
    assert _counts(cli.ok("put", "-c", str(folder), root).stdout) == (0, 6, 0)
    assert len(_versions(cli_user, f"{root}/photos/a.txt")) == 1


def test_dry_run_lists_what_would_be_sent_and_sends_nothing(cli, cli_user, folder):
    root = _root()
    cli.ok("put", str(folder), root)
    (folder / "a.txt").write_text("alpha, longer now\n")
    (folder / "new-dir").mkdir()
    (folder / "new-dir" / "new.txt").write_text("new\n")

    dry = cli.ok("put", "--dry-run", str(folder), root)
    assert "0 sent" not in dry.stdout
    assert "2 to send (dry run, nothing sent), 5 skipped (unchanged), 0 failed" in dry.stdout
    would = sorted(line.split(" -> ")[1].split(" (")[0] for line in dry.stdout.splitlines()
                   if line.startswith("would send "))
    assert would == [f"{root}/photos/a.txt", f"{root}/photos/new-dir/new.txt"]
    assert len(_versions(cli_user, f"{root}/photos/a.txt")) == 1
    missing = cli_user.api.get("/api/filesystem/info",
                               params={"path": f"{root}/photos/new-dir", "depth": 0})
    assert missing.status_code == 404                        # not even the directory

    as_json = json.loads(cli.ok("put", "-n", "--json", str(folder), root).stdout)
    assert as_json["dry_run"] is True and as_json["skipped"] == 5 and as_json["sent"] == 0
    assert sorted(f["remote"] for f in as_json["to_send"]) == would

    real = cli.ok("put", str(folder), root)
    assert _counts(real.stdout) == (2, 5, 0)
    assert len(_versions(cli_user, f"{root}/photos/a.txt")) == 2


def test_a_file_that_cannot_be_sent_is_counted_as_failed(cli, cli_user, folder):
    root = _root()
    assert cli_user.api.post("/api/filesystem/dirs",
                             json={"path": f"{root}/photos/a.txt"}).status_code == 201
    done = cli.run("put", str(folder), root)
    assert done.returncode == 5                              # the conflict's exit code
    assert _counts(done.stdout) == (5, 0, 1)
    assert "a.txt" in done.stderr
    # Running it again cannot help a name taken by a folder: it says what to do instead.
    assert "run the same command again to retry" not in done.stderr, done.stderr
    assert "put: 1 of 6 files were refused, and would be again as they are" in done.stderr
    assert "rename them, move what is in their way, or put them elsewhere" in done.stderr


def test_the_upload_api_keeps_a_given_mtime_and_refuses_a_bad_one(cli_user):
    root = _root()
    sent = cli_user.api.post("/api/filesystem/data", data={"path": root, "mtime": "1234.5"},
                             files={"file": ("x.txt", b"x")})
    assert sent.status_code == 201, sent.text
    assert sent.json()["modified"] == "1970-01-01T00:20:34.500000+00:00"
    plain = cli_user.api.post("/api/filesystem/data", data={"path": root},
                              files={"file": ("y.txt", b"y")})
    assert abs(_seconds(plain.json()["modified"]) - _seconds(plain.json()["created"])) < 1
    for bad in ("soon", "nan", "inf", "1e20"):
        refused = cli_user.api.post("/api/filesystem/data", data={"path": root, "mtime": bad},
                                    files={"file": ("z.txt", b"z")})
        error = assert_error(refused, 400, "invalid_field")
        assert error["details"] == {"field": "mtime"}, error

    session = cli_user.api.post("/api/filesystem/uploads", json={
        "path": root, "name": "s.bin", "size": 1}).json()
    base = f"/api/filesystem/uploads/{session['upload_id']}"
    assert cli_user.api.put(f"{base}/parts/0", data=b"s").status_code == 200
    for bad in ("1700000000", True, 1e20):
        assert_error(cli_user.api.post(f"{base}/commit", json={"mtime": bad}), 400,
                     "invalid_field")
    committed = cli_user.api.post(f"{base}/commit", json={"mtime": 1700000000.25})
    assert committed.status_code == 201, committed.text
    assert committed.json()["modified"] == "2023-11-14T22:13:20.250000+00:00"


def test_a_put_refused_for_want_of_storages_is_told_to_run_again(api, home, tmp_path):
    user = register_and_login(api)
    add_local_storages(user, tmp_path / "disks", 1)
    assert user.api.put("/api/filesystem/settings",
                        json={"durability": "raid1(2)"}).status_code == 200
    home.login(user)
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        (folder / name).write_bytes(name.encode())

    refused = home.run("put", str(folder), "/")
    assert refused.returncode == 1, refused.stderr
    assert "run the same command again" in refused.stderr, refused.stderr
    assert "does not help" not in refused.stderr, refused.stderr

    added = user.api.post("/api/cloud/storages", json={
        "kind": "local", "name": "second", "config": {"path": str(tmp_path / "disks" / "e")}})
    assert added.status_code == 201, added.text
    home.ok("put", str(folder), "/")
    assert home.ok("cat", "/two/b.txt").stdout == "b.txt"
