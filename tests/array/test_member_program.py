"""The member program on its own: sizes, its folder, and staying free of server code."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from cloudstrype_client.member import parse_size

from tests.support import REPO


@pytest.mark.parametrize("text, size", [
    ("20GB", 20 * 10**9), ("500MB", 500 * 10**6), ("1.5TiB", int(1.5 * 2**40)),
    ("2gib", 2 * 2**30), ("1048576", 2**20), (" 3 GB ", 3 * 10**9),
])
def test_sizes_are_read_as_written(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "20XB", "-5GB", "1KB", "lots"])
def test_unreadable_or_tiny_sizes_say_what_to_write(text):
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse_size(text)
    assert "MB" in str(refused.value)


def test_the_member_program_loads_no_server_code():
    probe = ("import sys, cloudstrype_client.cli as cli, cloudstrype_client.member, websockets, "
             "requests; cli.build_parser().parse_args(['array', '--dir', 'x', '--size', '1GB']); "
             "bad = sorted({n.split('.')[0] for n in sys.modules} & "
             "{'cloudstrype', 'infra', 'functions', 'boto3', 'botocore', 'aws_cdk', 'chalice'}); "
             "print(bad)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=REPO / "clients", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_one_folder_serves_one_member_program(members, user):
    first = members.start(user)
    second = members.start(user, name=first.name + "-twin", folder=first.folder, wait=False)
    assert second.process.wait(timeout=30) == 2
    assert "Another member program is using" in second.log()
    assert first.alive()


def test_a_request_that_comes_before_the_welcome_is_served(tmp_path):
    """The server counts a member online as it takes the hello, so a request can reach the
    member before the welcome: the member keeps it and answers it once welcomed (it used to
    take it for a failed handshake, drop the connection and lose the request)."""
    import asyncio
    import json

    from cloudstrype_client.member import Member, ShareStore
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    store = ShareStore(tmp_path / "member", 10**6)
    store.open()
    store.path_for("share-1").parent.mkdir(parents=True, exist_ok=True)
    store.path_for("share-1").write_bytes(b"twelve bytes")
    answers: list[dict] = []

    async def server(ws):
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        await ws.send(json.dumps({"type": "stat", "request_id": "early", "key": "share-1"}))
        await ws.send(json.dumps({"type": "welcome", "id": hello["id"], "storage_id": "mb-x",
                                  "status": "active"}))
        answers.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=10)))
        await ws.close()

    async def run():
        async with serve(server, "127.0.0.1", 0) as running:
            port = running.sockets[0].getsockname()[1]
            member = Member(f"http://127.0.0.1:{port}", store, "m", "token", None, transfers=2,
                            ping_interval=60, quiet=True)
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                await asyncio.wait_for(member._session(ws, asyncio.Semaphore(2)), timeout=15)
            assert member.welcomed
    try:
        asyncio.run(run())
    finally:
        store.close()
    assert answers == [{"type": "result", "request_id": "early", "op": "stat", "ok": True,
                        "exists": True, "size": 12}]


def test_a_ranged_get_uploads_those_bytes_alone(tmp_path):
    """A packed file's read asks a member for a range of a share: only that range is read and
    uploaded, and the result says so (`start`), so the server can tell it from a whole share."""
    import hashlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cloudstrype_client.member import Member, ShareStore

    uploads: list[bytes] = []

    class Staging(BaseHTTPRequestHandler):
        def do_PUT(self):
            uploads.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Staging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/staged"
    store = ShareStore(tmp_path / "member", 10**6)
    store.open()
    share = bytes(range(256)) * 40
    store.path_for("share-1").parent.mkdir(parents=True, exist_ok=True)
    store.path_for("share-1").write_bytes(share)
    member = Member("http://127.0.0.1:1", store, "m", "token", None, transfers=1,
                    ping_interval=60, quiet=True)

    def get(**fields):
        return member.answer({"type": "get", "request_id": "r", "key": "share-1", "url": url,
                              **fields})
    try:
        huge = get(start=10, length=2 ** 40)               # far past the end: what is there
        assert (huge["ok"], huge["size"], uploads[-1]) == (True, len(share) - 10, share[10:])
        ranged = get(start=1000, length=300)
        assert (ranged["ok"], ranged["start"], ranged["size"]) == (True, 1000, 300)
        assert uploads[-1] == share[1000:1300]
        assert ranged["sha256"] == hashlib.sha256(share[1000:1300]).hexdigest()
        tail = get(start=len(share) - 10, length=100)        # what there is
        assert (tail["size"], uploads[-1]) == (10, share[-10:])
        past = get(start=len(share) + 5, length=100)         # nothing there
        assert (past["ok"], past["size"], uploads[-1]) == (True, 0, b"")
        whole = get()
        assert whole["ok"] and "start" not in whole and uploads[-1] == share
        sent = len(uploads)
        for bad in ({"start": -1, "length": 5}, {"start": 0}, {"start": "0", "length": 5},
                    {"start": True, "length": 5}):
            refused = get(**bad)
            assert refused["ok"] is False and refused["error"]["code"] == "bad_request", bad
            assert "start and length" in refused["error"]["message"]
        assert len(uploads) == sent                          # nothing sent for those
        missing = member.answer({"type": "get", "request_id": "r", "key": "share-2",
                                 "url": url, "start": 0, "length": 5})
        assert missing["error"]["code"] == "not_found"
    finally:
        server.shutdown()
        store.close()


def test_a_member_whose_folder_is_moved_away_fails_requests_instead_of_losing_shares(tmp_path):
    """Every request fails in words while the folder is not this member's (moved away, an
    empty one in its place), so the server marks the member down instead of taking every share
    for lost; all is answered again once it is back."""
    from cloudstrype_client.member import Member, ShareStore

    folder = tmp_path / "member"
    store = ShareStore(folder, 10**6)
    store.open()
    store.path_for("share-1").parent.mkdir(parents=True, exist_ok=True)
    store.path_for("share-1").write_bytes(b"kept")
    member = Member("http://127.0.0.1:1", store, "m", "token", None, transfers=1,
                    ping_interval=60, quiet=True)
    lines = []
    member.say = lines.append

    def stat():
        return member.answer({"type": "stat", "request_id": "r", "key": "share-1"})
    try:
        assert stat()["exists"] is True
        folder.rename(tmp_path / "elsewhere")
        folder.mkdir()                                     # an empty folder in its place
        for _ in range(2):
            gone = stat()
            assert gone["ok"] is False and gone["error"]["code"] == "io_error", gone
            assert "not this member's folder now" in gone["error"]["message"]
        assert len([line for line in lines if "not this member's folder" in line]) == 1
        folder.rmdir()
        (tmp_path / "elsewhere").rename(folder)
        assert stat()["exists"] is True
    finally:
        store.close()


def test_a_share_removed_behind_the_programs_back_leaves_the_counts(tmp_path):
    from cloudstrype_client.member import Member, ShareStore

    store = ShareStore(tmp_path / "member", 10**6)
    store.open()
    for key, size in (("share-1", 1000), ("share-2", 300)):
        store.path_for(key).parent.mkdir(parents=True, exist_ok=True)
        store.path_for(key).write_bytes(b"x" * size)
    store.close()
    store = ShareStore(tmp_path / "member", 10**6)
    store.open()
    member = Member("http://127.0.0.1:1", store, "m", "token", None, transfers=1,
                    ping_interval=60, quiet=True)
    try:
        assert (store.used, store.count) == (1300, 2)
        store.path_for("share-1").unlink()                 # by hand, or a failing disk
        answer = member.answer({"type": "delete", "request_id": "r", "key": "share-1"})
        assert answer["ok"] and answer["existed"] is False
        assert (store.used, store.count, answer["used"]) == (300, 1, 300)
    finally:
        store.close()


def test_a_put_refused_for_a_full_disk_says_the_room_there_is(tmp_path, monkeypatch):
    """A disk filled from outside: the refusal carries the member's room now, so the server
    stops placing shares there at once, not at the next ping (found by the members sweep)."""
    from cloudstrype_client.member import Member, ShareStore

    store = ShareStore(tmp_path / "member", 10**9)
    store.open()
    monkeypatch.setattr(store, "disk_free", lambda: 46_000)
    member = Member("http://127.0.0.1:1", store, "m", "token", None, transfers=1,
                    ping_interval=60, quiet=True)
    try:
        answer = member.answer({"type": "put", "request_id": "r", "key": "share-1",
                                "size": 805_712, "sha256": "0" * 64,
                                "url": "http://127.0.0.1:1/never-fetched"})
        assert not answer["ok"] and answer["error"]["code"] == "full", answer
        assert (answer["used"], answer["free"]) == (0, 46_000)
    finally:
        store.close()


def test_a_dir_that_is_a_file_is_refused_in_words(tmp_path):
    import pytest
    from cloudstrype_client.member import Fatal, ShareStore

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(Fatal, match="it is a file; --dir names a folder"):
        ShareStore(afile, 10**6).open()
