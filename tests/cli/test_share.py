"""share, unshare, shares, link, links and --share through the CLI: two people and a group
sharing folders both ways, links fetched without an account, and the exit codes."""
from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.filesystem.conftest import session_upload
from tests.support import register_and_login, unique

from .conftest import Cli, add_local_storages


def _person(api, stack, tmp_path_factory) -> Cli:
    user = register_and_login(api)
    add_local_storages(user, tmp_path_factory.mktemp("share-disks"), 2)
    assert user.api.put("/api/filesystem/settings",
                        json={"durability": "raid1(2)"}).status_code == 200
    home = Cli(tmp_path_factory.mktemp("share-home"), stack.url)
    home.login(user)
    return home


@pytest.fixture
def alice(api, stack, tmp_path_factory) -> Cli:
    return _person(api, stack, tmp_path_factory)


@pytest.fixture
def bob(api, stack, tmp_path_factory) -> Cli:
    return _person(api, stack, tmp_path_factory)


def _file(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _fails(cli: Cli, code: int, *args: str, **kwargs) -> str:
    done = cli.run(*args, **kwargs)
    assert done.returncode == code, (f"cloudstrype {' '.join(args)} -> {done.returncode}, "
                                     f"wanted {code}\nstderr: {done.stderr!r}")
    assert done.stderr.strip(), "a failure must say what is wrong"
    return done.stderr


def test_a_user_share_read_then_write_then_revoked(alice, bob, tmp_path):
    alice.ok("put", str(_file(tmp_path, "plan.txt", b"the plan\n")), "/team/")
    share_id = alice.ok("share", "/team", "--with", bob.user.username).stdout.strip()
    assert len(share_id) == 24

    mine = json.loads(alice.ok("shares", "/team", "--json").stdout)
    assert [(s["id"], s["level"], s["grantee"]) for s in mine] == [
        (share_id, "read", {"kind": "user", "name": bob.user.username})]
    assert bob.user.username in alice.ok("shares").stdout

    granted = json.loads(bob.ok("shares", "--with-me", "--json").stdout)
    assert [(s["id"], s["owner"], s["level"]) for s in granted] == [
        (share_id, alice.user.username, "read")]
    table = bob.ok("shares", "--with-me").stdout
    assert share_id in table and "team/" in table

    # Bob lists and reads inside the share; paths start at the shared folder.
    assert bob.ok("ls", "--share", share_id, "/").stdout.splitlines() == ["plan.txt"]
    bob.ok("get", "--share", share_id, "/plan.txt", str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_bytes() == b"the plan\n"
    assert bob.ok("cat", "--share", share_id, "/plan.txt").stdout == "the plan\n"
    # The whole folder: its small files come many to a request (POST /read, inside S).
    alice.ok("put", str(_file(tmp_path, "extra.txt", b"more\n")), "/team/")
    bob.ok("get", "--share", share_id, "/", str(tmp_path / "whole") + "/")
    assert {p.name: p.read_bytes() for p in (tmp_path / "whole").iterdir()} == {
        "plan.txt": b"the plan\n", "extra.txt": b"more\n"}
    # ... but without --share the same path is his own (and not there).
    _fails(bob, 4, "ls", "/plan.txt")
    # Read only: his upload, mkdir and rm are refused in the server's words, exit 1 (a refused
    # operation; 3 is for not logged in).
    reply = _fails(bob, 1, "put", str(_file(tmp_path, "bob.txt", b"bob")), "/",
                   "--share", share_id)
    assert "read" in reply.lower()
    # A folder's files refused for one reason: said for the first few, then counted.
    many = tmp_path / "many"
    many.mkdir()
    for n in range(10):
        (many / f"m{n}.txt").write_text(f"{n}\n")
    done = bob.run("put", str(many), "/", "--share", share_id)
    assert done.returncode == 1, done.stderr
    said = [line for line in done.stderr.splitlines() if "share is read-only" in line]
    assert len(said) == 4 and "7 more files failed the same way" in said[-1], done.stderr
    assert "refused by the share" in done.stderr and "ask its owner" in done.stderr
    assert "read" in _fails(bob, 1, "mkdir", "--share", share_id, "/notes").lower()
    assert "read" in _fails(bob, 1, "rm", "--share", share_id, "/plan.txt").lower()

    # The same command with --write changes the level of the same share.
    again = alice.ok("share", "/team", "--with", bob.user.username, "--write")
    assert again.stdout.strip() == share_id
    assert "Changed" in again.stderr
    bob.ok("put", str(tmp_path / "bob.txt"), "/", "--share", share_id)
    bob.ok("mkdir", "--share", share_id, "/notes")
    # A file over one request goes in an upload session opened inside the share: the owner's
    # file, read back whole through the share, and nothing in Bob's own tree.
    contents = os.urandom(9 * 1024 * 1024 + 1)
    big = _file(tmp_path, "big.bin", contents)
    bob.ok("put", str(big), "/", "--share", share_id)
    _fails(bob, 4, "ls", "/big.bin")
    assert alice.ok("ls", "/team").stdout.splitlines() == ["big.bin", "bob.txt", "extra.txt",
                                                           "notes/", "plan.txt"]
    alice.ok("get", "/team/big.bin", str(tmp_path / "alices.bin"))
    bob.ok("get", "--share", share_id, "/big.bin", str(tmp_path / "bobs.bin"))
    assert (tmp_path / "alices.bin").read_bytes() == contents
    assert (tmp_path / "bobs.bin").read_bytes() == contents

    alice.ok("unshare", "/team", "--with", bob.user.username)
    assert "share" in _fails(bob, 4, "ls", "--share", share_id, "/").lower()
    assert json.loads(bob.ok("shares", "--with-me", "--json").stdout) == []
    assert "not shared with" in _fails(alice, 4, "unshare", "/team", "--with",
                                       bob.user.username)


def test_a_shared_file_replaced_while_it_is_read_is_read_again_whole(alice, bob, tmp_path,
                                                                    proxy):
    """A recipient cannot pin a version: its ranges carry the first answer's ETag (If-Match),
    the server refuses a range of a newer version (412 file_changed), and the CLI reads the new
    one from the start — never the old one's first 4 MiB joined to the new one's rest (found
    by a sweep, with a file whose uploader declared no sha256 to catch it afterwards)."""
    size = 9 * 1024 * 1024 + 1
    old, new = os.urandom(size), os.urandom(size)
    session_upload(alice.user, "/moving", "f.bin", old)        # no sha256 declared
    share_id = alice.ok("share", "/moving", "--with", bob.user.username).stdout.strip()
    replaced = []
    # Between the first range and the second: the moment the sweep found.
    proxy.before("GET", r"/api/filesystem/data/", range=r"^bytes=4194304-",
                 call=lambda: replaced.append(
                     session_upload(alice.user, "/moving", "f.bin", new)["etag"]))
    got = tmp_path / "got.bin"
    done = bob.ok("get", "--share", share_id, "/f.bin", str(got),
                  env=proxy.env(bob.user.access_token))
    assert replaced, "the file was not replaced during the download"
    assert got.read_bytes() == new
    assert "was replaced while it was read" in done.stderr


def test_a_group_share_the_other_way_and_membership_counts_at_once(alice, bob, admin,
                                                                    tmp_path):
    admin_api, _ = admin
    group = unique("crew")
    assert admin_api.post("/api/auth/groups", json={"name": group}).status_code == 201
    for person in (alice, bob):
        assert admin_api.put(f"/api/auth/groups/{group}/members/{person.user.username}"
                             ).status_code == 204

    bob.ok("put", str(_file(tmp_path, "photo.jpg", b"\xff\xd8 jpeg")), "/album/")
    share_id = bob.ok("share", "/album", "--group", group, "--write").stdout.strip()
    granted = json.loads(alice.ok("shares", "--with-me", "--json").stdout)
    assert [(s["id"], s["owner"], s["via"]) for s in granted] == [
        (share_id, bob.user.username, {"kind": "group", "name": group})]
    assert alice.ok("ls", "--share", share_id, "/").stdout.splitlines() == ["photo.jpg"]
    alice.ok("put", str(_file(tmp_path, "alice.jpg", b"from alice")), "/", "--share", share_id)
    assert alice.ok("ls", "--share", share_id, "/").stdout.splitlines() == [
        "alice.jpg", "photo.jpg"]
    # Alice's file is Bob's, in his folder.
    assert bob.ok("cat", "/album/alice.jpg").stdout == "from alice"

    # Out of the group: the share is gone for her at the next command.
    assert admin_api.delete(f"/api/auth/groups/{group}/members/{alice.user.username}"
                            ).status_code == 204
    _fails(alice, 4, "ls", "--share", share_id, "/")
    bob.ok("unshare", "/album", "--group", group)
    assert json.loads(bob.ok("shares", "--json").stdout) == []


def test_share_errors_have_exit_codes_and_words(alice, bob, tmp_path):
    alice.ok("put", str(_file(tmp_path, "one.txt", b"1")), "/solo/")
    assert "--with" in _fails(alice, 2, "share", "/solo")                  # no grantee
    _fails(alice, 4, "share", "/nothing-here", "--with", bob.user.username)
    _fails(alice, 4, "share", "/solo", "--with", unique("nobody"))
    _fails(alice, 5, "share", "/solo/one.txt", "--with", bob.user.username, "--write")
    _fails(alice, 1, "share", "/solo", "--group", unique("notmine"))         # 403: refused
    _fails(bob, 4, "ls", "--share", "0" * 24, "/")
    assert "share id" in _fails(bob, 2, "ls", "--share", "../shares", "/")


def test_links_work_without_an_account_until_revoked(alice, stack, tmp_path):
    alice.ok("put", str(_file(tmp_path, "report.txt", b"quarterly numbers")), "/pub/")
    url = alice.ok("link", "/pub/report.txt", "--password", "--expires", "7d",
                   input="s3cret\n").stdout.strip()
    parts = urlsplit(url)
    assert parts.fragment.startswith("/link/")
    token = parts.fragment.removeprefix("/link/")
    data = f"{stack.url}/api/filesystem/public/{token}/data"
    assert requests.get(data, timeout=30).status_code == 401
    got = requests.get(data, headers={"X-Link-Password": "s3cret"}, timeout=30)
    assert got.status_code == 200 and got.content == b"quarterly numbers"

    links = json.loads(alice.ok("links", "--json").stdout)
    (link,) = [x for x in links if x["path"] == "/pub/report.txt"]
    assert link["password"] is True and link["expires_at"] and link["state"] == "active"
    assert "token" not in link
    assert link["id"][:12] in alice.ok("links").stdout

    # A folder link lists the folder.
    folder = json.loads(alice.ok("link", "/pub", "--json").stdout)
    listing = requests.get(f"{stack.url}/api/filesystem/public/{folder['token']}", timeout=30)
    assert [c["name"] for c in listing.json()["children"]] == ["report.txt"]

    alice.ok("link", "--revoke", link["id"][:12])
    assert requests.get(data, headers={"X-Link-Password": "s3cret"},
                        timeout=30).status_code == 410
    states = {x["id"]: x["state"] for x in json.loads(alice.ok("links", "--json").stdout)}
    assert states[link["id"]] == "revoked"

    _fails(alice, 2, "link", "/pub", "--expires", "soon")
    for nothing in ("0d", "0s", "0"):        # never a link that lasts for ever by mistake
        assert "no time at all" in _fails(alice, 2, "link", "/pub", "--expires", nothing)
    _fails(alice, 2, "link", "--revoke", link["id"][:12], "--expires", "1d")
    too_long = _fails(alice, 2, "link", "/pub", "--expires", "99999d")
    assert "--expires must be from" in too_long and "expires_in" not in too_long, too_long
    # An item in the trash shows as such in the listings, not as "None".
    alice.ok("rm", "/pub/report.txt")
    listed = alice.ok("links").stdout
    assert "(in the trash)" in listed and "None" not in listed, listed
    _fails(alice, 2, "link", "/pub", "--password", input="\n")
    _fails(alice, 2, "link")
    _fails(alice, 4, "link", "--revoke", "ab" * 32)
    _fails(alice, 4, "link", "/not-there")


def test_a_share_to_a_deleted_account_is_shown_so_and_unshared_by_name(alice, admin, api,
                                                                        tmp_path):
    admin_api, _ = admin
    gone = register_and_login(api)
    alice.ok("put", str(_file(tmp_path, "note.txt", b"n")), "/kept/")
    alice.ok("share", "/kept", "--with", gone.username)
    assert admin_api.delete(f"/api/auth/users/{gone.username}").status_code == 204
    listed = alice.ok("shares", "/kept").stdout
    assert f"user {gone.username} (account deleted) (grants nothing: the account it was " \
        "made to is deleted)" in listed, listed
    (row,) = [line for line in listed.splitlines() if gone.username in line]
    assert row.split()[1] == "none", row           # its level column: it grants nothing
    alice.ok("unshare", "/kept", "--with", gone.username)
    assert json.loads(alice.ok("shares", "--json").stdout) == []
