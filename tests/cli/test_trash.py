"""rm puts things in the trash; trash lists, restores (to their place, elsewhere), deletes for
good and empties, through the CLI."""
from __future__ import annotations

import json
import uuid


def _root() -> str:
    return f"/trash-{uuid.uuid4().hex[:8]}"


def _items(cli) -> list[dict]:
    return json.loads(cli.ok("trash", "--json").stdout)["items"]


def test_rm_then_restore_by_path_and_by_id_elsewhere(cli, tmp_path):
    root = _root()
    (tmp_path / "keep.txt").write_bytes(b"keep me\n")
    cli.ok("put", str(tmp_path / "keep.txt"), root + "/")
    cli.ok("rm", root + "/keep.txt")
    assert cli.run("ls", root + "/keep.txt").returncode == 4

    (item,) = [i for i in _items(cli) if i["original_path"] == root + "/keep.txt"]
    assert item["type"] == "file" and item["size"] == 8
    table = cli.ok("trash").stdout
    assert item["id"] in table and root + "/keep.txt" in table

    restored = cli.ok("trash", "restore", root + "/keep.txt")
    assert restored.stdout.strip() == root + "/keep.txt"
    assert cli.ok("cat", root + "/keep.txt").stdout == "keep me\n"
    assert not [i for i in _items(cli) if i["id"] == item["id"]]

    # By id, into another directory (made for it).
    cli.ok("rm", root + "/keep.txt")
    done = cli.ok("trash", "restore", item["id"], "--to", root + "/elsewhere", "--json")
    assert json.loads(done.stdout)["path"] == root + "/elsewhere/keep.txt"
    assert cli.ok("cat", root + "/elsewhere/keep.txt").stdout == "keep me\n"


def test_a_folder_comes_back_whole_and_a_taken_name_gets_a_suffix(cli, tmp_path):
    root = _root()
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    cli.ok("put", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), root + "/dir/")
    cli.ok("rm", "-r", root + "/dir")
    cli.ok("mkdir", root + "/dir")                     # the name is free again, and now taken
    path = cli.ok("trash", "restore", root + "/dir").stdout.strip()
    assert path.startswith(root + "/dir (restored ")
    assert cli.ok("ls", path).stdout.splitlines() == ["a.txt", "b.txt"]


def test_delete_for_good_empty_and_errors(cli, tmp_path):
    root = _root()
    (tmp_path / "x.txt").write_text("x")
    cli.ok("put", str(tmp_path / "x.txt"), root + "/")
    cli.ok("rm", root + "/x.txt")
    cli.ok("trash", "delete", root + "/x.txt")
    assert not [i for i in _items(cli) if i["original_path"] == root + "/x.txt"]

    cli.ok("put", str(tmp_path / "x.txt"), root + "/")
    cli.ok("rm", root + "/x.txt")
    refused = cli.run("trash", "empty")                # stdin is not a terminal: no question
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert [i for i in _items(cli) if i["original_path"] == root + "/x.txt"]
    emptied = json.loads(cli.ok("trash", "empty", "--yes", "--json").stdout)
    assert emptied["deleted"] >= 1
    assert _items(cli) == []
    assert "empty" in cli.ok("trash").stderr

    missing = cli.run("trash", "restore", root + "/x.txt")
    assert missing.returncode == 4 and "trash" in missing.stderr
    assert cli.run("trash", "restore", "f" * 32).returncode == 4


def test_usage_shows_files_trash_and_quota_and_a_retention_of_no_days(api, stack,
                                                                       tmp_path_factory):
    """`cloudstrype usage` says what the account keeps: its files, the trash, what packs hold
    for deleted small files, the quota (found by a sweep: only the REST API said it)."""
    from tests.support import register_and_login

    from .conftest import Cli, add_local_storages
    user = register_and_login(api)
    add_local_storages(user, tmp_path_factory.mktemp("usage-disks"), 2)
    cli = Cli(tmp_path_factory.mktemp("usage-home"), stack.url)
    cli.login(user)
    folder = tmp_path_factory.mktemp("usage-files")
    (folder / "big.bin").write_bytes(b"b" * 200_000)
    (folder / "small.txt").write_bytes(b"s" * 3000)
    cli.ok("put", str(folder / "big.bin"), str(folder / "small.txt"), "/u/")
    cli.ok("rm", "/u/big.bin")

    reported = json.loads(cli.ok("usage", "--json").stdout)
    assert reported == user.api.get("/api/filesystem/usage").json()
    assert reported["trash_bytes"] >= 200_000 and reported["live_bytes"] >= 3000
    lines = {line.split()[0]: line for line in cli.ok("usage").stdout.splitlines()[1:]}
    assert set(lines) == {"stored", "files", "trash", "dead", "quota", "uploads"}, lines
    assert "freed when the trash is emptied" in lines["trash"]
    assert "KiB" in lines["trash"], lines
    assert lines["uploads"].split()[1:4] == ["0", "of", str(reported["max_open_uploads"])]

    assert user.api.put("/api/filesystem/settings",
                        json={"trash_retention_days": 0}).status_code == 200
    said = cli.ok("trash").stderr
    assert "by the next maintenance run" in said and "0 days" not in said


def test_rm_version_deletes_an_earlier_version_for_good_and_keeps_the_file(cli, tmp_path):
    root = _root()
    source = tmp_path / "doc.txt"
    for words in (b"first draft\n", b"second draft\n", b"third draft\n"):
        source.write_bytes(words)
        cli.ok("put", str(source), root + "/doc.txt")
    versions = json.loads(cli.ok("info", root + "/doc.txt", "--json").stdout)["versions"]
    first, second, current = (v["version"] for v in versions)

    done = cli.ok("rm", "--version", first, "--version", second, root + "/doc.txt")
    assert f"Deleted version {first} of {root}/doc.txt for good." in done.stderr
    left = json.loads(cli.ok("info", root + "/doc.txt", "--json").stdout)["versions"]
    assert [v["version"] for v in left] == [current]
    assert cli.ok("cat", root + "/doc.txt").stdout == "third draft\n"
    assert not [i for i in _items(cli) if i["original_path"] == root + "/doc.txt"]

    refused = cli.run("rm", "--version", current, root + "/doc.txt")
    assert refused.returncode != 0 and "current content" in refused.stderr
    two = cli.run("rm", "--version", current, root + "/doc.txt", root + "/other")
    assert two.returncode == 2 and "one file" in two.stderr
