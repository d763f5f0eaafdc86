"""Big transfers through a proxy that breaks chosen requests (tests/cli/faults.py): a part or a
range that fails once is sent or fetched again and the file arrives byte for byte; one that keeps
failing is reported by name, nothing half-written is left, and running the same `put` again
sends only the parts the server lacks. And an unchanged folder is compared from its listings
alone: no request per file."""
from __future__ import annotations

import hashlib
import json
import os
import re
import uuid

from tests.cli.conftest import remote_info
from tests.support import register_and_login

MiB = 1024 * 1024
PART = 4 * MiB
PARTS = r"^/api/filesystem/uploads/[0-9a-f]+/parts/"
DATA = r"^/api/filesystem/data/"


def _root() -> str:
    return f"/faults-{uuid.uuid4().hex[:8]}"


def _big(tmp_path, parts: int = 4, extra: int = 777) -> tuple:
    data = os.urandom((parts - 1) * PART + extra)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    return source, data


def test_a_wait_the_server_asks_for_is_said_once_then_the_file_goes(cli, cli_user, tmp_path,
                                                                    proxy):
    # Storages out of reach for a while: 503 with Retry-After. The CLI waits as asked and says
    # why (a command waiting minutes must not look hung), once per reason.
    source, data = _big(tmp_path, parts=2)
    remote = f"{_root()}/waited.bin"
    proxy.fail("PUT", PARTS + "0$", "status", status=503, retry_after=5, times=2)
    done = cli.ok("put", str(source), remote, env=proxy.env(cli_user.access_token))
    told = [line for line in done.stderr.splitlines() if "waiting to try again" in line]
    assert told == ["put: waiting to try again (5 s): injected failure 503"], done.stderr
    assert proxy.count("PUT", PARTS + "0$") == 3
    assert remote_info(cli_user, remote)["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_request_the_gateway_ran_none_of_for_a_busy_caller_is_sent_until_it_goes(
        cli, cli_user, tmp_path, proxy):
    """429 too_many_requests: this user's other commands hold every request in flight. More
    than the client's retries (4), one request not idempotent among them: nothing ran."""
    source = tmp_path / "small.txt"
    source.write_bytes(b"busy")
    remote = f"{_root()}/small.txt"
    proxy.fail("POST", r"^/api/filesystem/data$", "status", status=429, retry_after=1, times=6,
               code="too_many_requests")
    cli.ok("put", str(source), remote, env=proxy.env(cli_user.access_token))
    assert proxy.count("POST", r"^/api/filesystem/data$") == 7
    assert remote_info(cli_user, remote)["sha256"] == hashlib.sha256(b"busy").hexdigest()


def test_storages_away_are_waited_out_once_not_once_per_file(cli, cli_user, tmp_path, proxy):
    """A put of several files while storages are out of reach: the first file waits as the
    server asks, in full; the others then fail at once, not after as long a wait each (found
    by the members sweep: minutes per file)."""
    sources = []
    for n in range(3):
        path = tmp_path / f"away-{n}.bin"
        path.write_bytes(os.urandom(300_000))           # past the batch size: one request each
        sources.append(str(path))
    proxy.fail("POST", r"^/api/filesystem/data$", "status", status=503, retry_after=1,
               times=None, code="storages_unavailable")
    done = cli.run("put", "-j", "1", *sources, f"{_root()}/", env=proxy.env(cli_user.access_token))
    assert done.returncode != 0, done.stderr
    assert proxy.count("POST", r"^/api/filesystem/data$") == 5 + 1 + 1, done.stderr
    assert "3 of 3 files failed" in done.stderr, done.stderr


def test_parts_lost_or_refused_once_are_sent_again(cli, cli_user, tmp_path, proxy):
    source, data = _big(tmp_path)
    remote = f"{_root()}/big.bin"
    proxy.fail("PUT", PARTS + "1$", "status", status=503)
    proxy.fail("PUT", PARTS + "2$", "drop")

    done = cli.ok("put", str(source), remote, env=proxy.env(cli_user.access_token))

    assert "1 sent, 0 skipped (unchanged), 0 failed" in done.stdout, done.stdout
    assert [proxy.count("PUT", PARTS + f"{n}$") for n in range(4)] == [1, 2, 2, 1]
    info = remote_info(cli_user, remote)
    assert info["size"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    back = tmp_path / "back.bin"
    cli.ok("get", remote, str(back))
    assert back.read_bytes() == data


def test_a_part_the_server_keeps_refusing_is_reported_then_resumed(cli, cli_user, tmp_path,
                                                                   proxy):
    source, data = _big(tmp_path)
    remote = f"{_root()}/big.bin"
    proxy.fail("PUT", PARTS + "2$", "status", status=500, times=None)

    failed = cli.run("put", str(source), remote, env=proxy.env(cli_user.access_token))

    assert failed.returncode == 1, failed.stderr
    assert f"put: {source}: {remote} part 2: injected failure 500" in failed.stderr
    assert "run the same command again" in failed.stderr
    assert "0 sent, 0 skipped (unchanged), 1 failed" in failed.stdout
    assert remote_info(cli_user, remote) is None                     # nothing committed
    state = json.loads((cli.config_dir / "uploads.json").read_text())
    (upload_id,) = [e["upload_id"] for e in state.values() if e["remote"] == remote]
    status = cli_user.api.get(f"/api/filesystem/uploads/{upload_id}").json()
    assert 2 in status["missing"]

    # The same command again, nothing broken now: only what the server lacks travels.
    proxy.heal()
    sent_before = [proxy.count("PUT", PARTS + f"{n}$") for n in range(4)]
    again = cli.ok("put", str(source), remote, env=proxy.env(cli_user.access_token))
    assert f"Resuming upload of {remote}: {len(status['received'])} of 4 parts already " \
           f"uploaded" in again.stderr, again.stderr
    resent = [proxy.count("PUT", PARTS + f"{n}$") - sent_before[n] for n in range(4)]
    assert resent == [1 if n in status["missing"] else 0 for n in range(4)]
    info = remote_info(cli_user, remote)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    back = tmp_path / "back.bin"
    cli.ok("get", remote, str(back))
    assert back.read_bytes() == data


def test_ranges_cut_short_are_fetched_again(cli, cli_user, tmp_path, proxy):
    source, data = _big(tmp_path, parts=3, extra=12345)
    remote = f"{_root()}/big.bin"
    cli.ok("put", str(source), remote)
    proxy.fail("GET", DATA, "cut", range=rf"^bytes={PART}-")
    proxy.fail("GET", DATA, "drop", range=rf"^bytes={2 * PART}-")

    back = tmp_path / "back.bin"
    cli.ok("get", remote, str(back), env=proxy.env(cli_user.access_token))

    assert back.read_bytes() == data
    assert [proxy.count("GET", DATA, rf"^bytes={n * PART}-") for n in range(3)] == [1, 1, 2]
    # The range cut half-way is asked for again from the byte where it broke, not whole.
    assert proxy.count("GET", DATA, rf"^bytes={PART + PART // 2}-{2 * PART - 1}$") == 1
    assert not list(tmp_path.glob("*cloudstrype-part"))       # no temporary file left

    proxy.fail("GET", DATA, "cut", range=r"^bytes=0-")
    shown = cli.run("cat", remote, env=proxy.env(cli_user.access_token), text=False)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == data


def test_a_range_that_keeps_breaking_fails_clearly_and_leaves_nothing(cli, cli_user, tmp_path,
                                                                      proxy):
    source, data = _big(tmp_path, parts=2)
    remote = f"{_root()}/big.bin"
    cli.ok("put", str(source), remote)
    # Every request for (the rest of) the last range is cut half-way.
    proxy.fail("GET", DATA, "cut", range=rf"-{len(data) - 1}$", times=None)
    out = tmp_path / "out"
    out.mkdir()

    done = cli.run("get", remote, str(out / "big.bin"), env=proxy.env(cli_user.access_token))

    assert done.returncode == 1, done.stderr
    assert re.search(rf"get: {re.escape(remote)}: the connection broke "
                     r"\d+ times while the bytes were arriving", done.stderr), done.stderr
    assert f"{remote}: {remote}" not in done.stderr            # the path said once
    assert list(out.iterdir()) == []            # neither the file nor a temporary one


def test_an_unchanged_folder_is_compared_from_its_listings_alone(cli, cli_user, tmp_path,
                                                                 proxy):
    folder = tmp_path / "many"
    (folder / "sub" / "deeper").mkdir(parents=True)
    for n in range(1050):                   # more than one page (1000) of listing
        (folder / f"f{n:04d}.txt").write_bytes(os.urandom(1 + n % 50))
    (folder / "sub" / "a.txt").write_text("a\n")
    (folder / "sub" / "deeper" / "b.txt").write_text("b\n")
    root = _root()
    first = json.loads(cli.ok("put", "--json", "-j", "8", str(folder), root).stdout)
    assert (first["sent"], first["skipped"]) == (1052, 0)

    again = json.loads(cli.ok("put", "--json", str(folder), root,
                              env=proxy.env(cli_user.access_token)).stdout)

    assert again == {"sent": 0, "skipped": 1052, "failed": 0, "dry_run": False}
    # DEST looked up once, then one listing per directory: two pages for the big one.
    assert [m for m, _, _ in proxy.seen] == ["GET"] * 5, proxy.seen
    assert {p for _, p, _ in proxy.seen} == {"/api/filesystem/info"}

    # A new folder below: not listed (its parent's listing shows it missing), then created.
    (folder / "sub" / "new").mkdir()
    (folder / "sub" / "new" / "c.txt").write_text("c\n")
    before = len(proxy.seen)
    third = json.loads(cli.ok("put", "--json", str(folder), root,
                              env=proxy.env(cli_user.access_token)).stdout)
    assert (third["sent"], third["skipped"]) == (1, 1052)
    assert proxy.count("GET", "^/api/filesystem/info$") - before == 5


def _versions(user, remote: str) -> int:
    return len(remote_info(user, remote)["versions"])


def test_an_upload_whose_answer_was_lost_is_not_stored_twice(cli, cli_user, tmp_path, proxy):
    """An upload is not idempotent: a lost answer, retried, stored every file of the batch (or
    the one-shot file) a second time, as a new version (network sweep: 82 of 301 files with two
    versions). What is already there as it was being sent is taken as stored."""
    root = _root()
    folder = tmp_path / "batch"
    folder.mkdir()
    contents = {f"f{n:02d}.txt": os.urandom(100 + n) for n in range(20)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    alone = tmp_path / "alone.bin"
    alone.write_bytes(os.urandom(300_000))
    env = proxy.env(cli_user.access_token)
    proxy.fail("POST", r"^/api/filesystem/batch$", "lost")
    proxy.fail("POST", r"^/api/filesystem/data$", "lost")

    cli.ok("put", str(folder), f"{root}/", env=env)
    cli.ok("put", str(alone), f"{root}/alone.bin", env=env)

    assert proxy.count("POST", r"^/api/filesystem/batch$") == 1      # all of it had landed
    assert proxy.count("POST", r"^/api/filesystem/data$") == 1
    for name, data in contents.items():
        remote = f"{root}/batch/{name}"
        assert _versions(cli_user, remote) == 1, name
        assert remote_info(cli_user, remote)["sha256"] == hashlib.sha256(data).hexdigest()
    assert _versions(cli_user, f"{root}/alone.bin") == 1
    # And again unchanged: all skipped, as after an answered upload.
    again = cli.ok("put", str(folder), f"{root}/", env=env)
    assert "20 skipped" in again.stdout + again.stderr


def test_an_answer_cut_short_is_asked_for_again(cli, cli_user, tmp_path, proxy):
    """A body that broke off as it was read was neither retried nor said in words (a raw
    ChunkedEncodingError repr, exit 1: network sweep)."""
    root = _root()
    source = tmp_path / "note.txt"
    source.write_bytes(b"listed")
    cli.ok("put", str(source), f"{root}/note.txt")
    proxy.fail("GET", r"^/api/filesystem/info$", "cut")
    listed = cli.ok("ls", "-l", root, env=proxy.env(cli_user.access_token))
    assert "note.txt" in listed.stdout
    assert proxy.count("GET", r"^/api/filesystem/info$") >= 2


def test_a_delete_whose_answer_was_lost_is_not_reported_as_not_found(cli, cli_user, tmp_path,
                                                                     proxy):
    """Retried after a lost answer, `rm --version` and `trash delete` met the 404 their first
    attempt had caused and said "not found", exit 4, though it was done (network sweep)."""
    root = _root()
    source = tmp_path / "v.txt"
    source.write_bytes(b"one")
    cli.ok("put", str(source), f"{root}/v.txt")
    source.write_bytes(b"two, longer")
    cli.ok("put", str(source), f"{root}/v.txt")
    old = remote_info(cli_user, f"{root}/v.txt")["versions"][0]["version"]
    env = proxy.env(cli_user.access_token)
    proxy.fail("DELETE", r"/versions/", "lost")
    cli.ok("rm", "--version", old, f"{root}/v.txt", env=env)
    assert len(remote_info(cli_user, f"{root}/v.txt")["versions"]) == 1

    cli.ok("rm", f"{root}/v.txt")
    proxy.fail("DELETE", r"^/api/filesystem/trash/", "lost")
    done = cli.ok("trash", "delete", f"{root}/v.txt", env=env)
    assert "Deleted" in done.stderr
    assert proxy.count("DELETE", r"^/api/filesystem/trash/") == 2
    # A restore, the same: its first attempt restored the item, the second met a 404.
    source.write_bytes(b"three")
    cli.ok("put", str(source), f"{root}/r.txt")
    cli.ok("rm", f"{root}/r.txt")
    proxy.fail("POST", r"^/api/filesystem/trash/[^/]+/restore$", "lost")
    back = cli.ok("trash", "restore", f"{root}/r.txt", env=env)
    assert back.stdout.strip() == f"{root}/r.txt"
    assert "Restored" in back.stderr
    assert proxy.count("POST", r"^/api/filesystem/trash/[^/]+/restore$") == 2
    assert remote_info(cli_user, f"{root}/r.txt")["size"] == 5
    # A delete of what never was is still "not found" (the 404 counts only after a loss).
    missing = cli.run("rm", "--version", "0" * 21, f"{root}/missing.txt", env=env)
    assert missing.returncode == 4, missing.stderr


def _open_sessions(user) -> list[dict]:
    listed = user.api.get("/api/filesystem/uploads")
    assert listed.status_code == 200, listed.text
    return listed.json()["uploads"]


def test_a_session_whose_opening_answer_was_lost_is_found_again(cli, cli_user, tmp_path,
                                                                proxy):
    """Opening an upload session was sent once: a reset stopped the whole `put`, and a session
    whose answer was lost stayed open, unknown to every later run, for a week (network sweep).
    The CLI chooses the session's id, so the request is sent again and the server answers the
    session it opened; a run whose every attempt was lost is resumed by the next."""
    root = _root()
    source, data = _big(tmp_path, parts=2)
    env = proxy.env(cli_user.access_token)
    before = len(_open_sessions(cli_user))
    proxy.fail("POST", r"^/api/filesystem/uploads$", "lost")

    cli.ok("put", str(source), f"{root}/once.bin", env=env)

    assert proxy.count("POST", r"^/api/filesystem/uploads$") == 2
    assert remote_info(cli_user, f"{root}/once.bin")["sha256"] == \
        hashlib.sha256(data).hexdigest()
    assert len(_open_sessions(cli_user)) == before

    # Every answer lost: the run fails, the session it opened is the next run's.
    proxy.fail("POST", r"^/api/filesystem/uploads$", "lost", times=None)
    failed = cli.run("put", str(source), f"{root}/later.bin", env=env)
    assert failed.returncode != 0
    opened = [s for s in _open_sessions(cli_user) if s["name"] == "later.bin"]
    assert len(opened) == 1
    proxy.heal()
    cli.ok("put", str(source), f"{root}/later.bin", env=env)
    assert remote_info(cli_user, f"{root}/later.bin")["sha256"] == \
        hashlib.sha256(data).hexdigest()
    assert [s for s in _open_sessions(cli_user) if s["name"] == "later.bin"] == []


def test_a_share_or_link_whose_answer_was_lost_is_said_as_it_is(cli, cli_user, api, tmp_path,
                                                                proxy):
    """Both said the server could not be reached though the change was made (network sweep).
    A share is sent again (sharing again at the same level changes nothing); a link is not
    (each request makes one), and the message says where to find the one that may be there."""
    root = _root()
    source = tmp_path / "s.txt"
    source.write_bytes(b"shared")
    cli.ok("put", str(source), f"{root}/s.txt")
    bob = register_and_login(api)
    env = proxy.env(cli_user.access_token)
    proxy.fail("POST", r"^/api/filesystem/shares$", "lost")
    shared = cli.ok("share", f"{root}/s.txt", "--with", bob.username, env=env)
    assert proxy.count("POST", r"^/api/filesystem/shares$") == 2
    given = [s for s in cli_user.api.get("/api/filesystem/shares").json()["shares"]
             if s["path"] == f"{root}/s.txt"]
    assert len(given) == 1 and shared.stdout.strip() == given[0]["id"]

    proxy.fail("POST", r"^/api/filesystem/links$", "lost")
    made = cli.run("link", f"{root}/s.txt", env=env)
    assert made.returncode != 0
    assert "may have been made all the same" in made.stderr and "cloudstrype links" in \
        made.stderr, made.stderr
    assert proxy.count("POST", r"^/api/filesystem/links$") == 1
    links = [link for link in cli_user.api.get("/api/filesystem/links").json()["links"]
             if link.get("path") == f"{root}/s.txt"]
    assert len(links) == 1


def test_a_server_from_before_chosen_session_ids_still_takes_big_files(cli, cli_user, tmp_path,
                                                                       proxy):
    """The CLI sends the session's id it chose; a server from before refuses the field by name
    (400 unknown_field), and every file over 4 MiB was refused for good (review sweep). Such a
    server gets the request without it."""
    source, data = _big(tmp_path, parts=2)
    remote = f"{_root()}/old-server.bin"
    proxy.fail("POST", r"^/api/filesystem/uploads$", "status", status=400, code="unknown_field",
               message="Unknown field 'upload_id'; the fields are content_type, durability, "
                       "encryption, name, path, sha256, size.")
    cli.ok("put", str(source), remote, env=proxy.env(cli_user.access_token))
    assert proxy.count("POST", r"^/api/filesystem/uploads$") == 2
    assert remote_info(cli_user, remote)["sha256"] == hashlib.sha256(data).hexdigest()
