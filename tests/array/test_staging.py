"""Share bytes pass through staging: a member cannot make the server hold more than a share."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid

import requests
from websockets.sync.client import connect

from tests.array.conftest import listing, wait_for
from tests.support import Api, assert_error, register_and_login, unique


class RawMember:
    """A hand-written member on a raw WebSocket: stores what it is sent, and answers a `get` by
    uploading `padding` extra bytes after the share while reporting the true size and hash. It
    knows nothing of ranged gets (as a member program from before them): a `get` with `start`
    and `length` is answered with the whole share. With `ranges` set it sends the range (and
    the padding after it) and says so, as a current program does."""

    def __init__(self, ws, member_id: str, padding: int, ranges: bool = False):
        self.ws, self.member_id, self.padding, self.ranges = ws, member_id, padding, ranges
        self.asked: list[tuple] = []          # (start, length) of each get
        self.extra: dict = {}                 # fields added to every answer
        self.errors: list[dict] = []          # the server's error messages to it
        self.shares: dict[str, bytes] = {}
        self.uploads: list[int] = []          # status of each upload to a staging URL
        self.unanswered: set[str] = set()     # message types it never answers
        self.ws.send(json.dumps({"type": "hello", "member_id": self.member_id, "name": "raw",
                                 "capacity": 10**8, "used": 0, "free": 10**8}))
        assert json.loads(self.ws.recv(timeout=10))["type"] == "welcome"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for raw in self.ws:
            message = json.loads(raw)
            if message.get("type") in self.unanswered:
                continue
            if message.get("type") == "error":
                self.errors.append(message)
            elif message.get("type") == "put":
                data = requests.get(message["url"], timeout=10).content
                self.shares[message["key"]] = data
                self._answer(message, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            elif message.get("type") == "get":
                data, said = self.shares[message["key"]], {}
                start, length = message.get("start"), message.get("length")
                self.asked.append((start, length))
                if self.ranges and start is not None:
                    data, said = data[start:start + length], {"start": start}
                answer = requests.put(message["url"], data=data + b"\0" * self.padding,
                                      timeout=30)
                self.uploads.append(answer.status_code)
                self._answer(message, size=len(data) + (self.padding if said else 0),
                             sha256=hashlib.sha256(data + (b"\0" * self.padding if said else b""))
                             .hexdigest(), **said)
            elif message.get("type") in ("delete", "stat", "verify"):
                self._answer(message, exists=message["key"] in self.shares)

    def _answer(self, message: dict, **fields) -> None:
        self.ws.send(json.dumps({"type": "result", "request_id": message["request_id"],
                                 "ok": True, **fields, **self.extra}))



@contextlib.contextmanager
def raw_member(stack, user, padding: int, ranges: bool = False):
    member_id = uuid.uuid4().hex[:16]
    with connect(f"{stack.ws_url}?member_id={member_id}", open_timeout=10,
                 additional_headers={"Authorization": f"Bearer {user.access_token}"}) as ws:
        member = RawMember(ws, member_id, padding, ranges)
        wait_for(lambda: listing(user).get(member_id, {}).get("online"), 10,
                 "the raw member online")
        yield member


def test_a_member_uploading_more_than_the_share_is_refused_unread(stack, user):
    with raw_member(stack, user, padding=256 * 1024) as member:
        blob = unique("small")
        stored = user.api.post(f"/api/array/{blob}?replicas=1", data=b"twelve bytes")
        assert stored.status_code == 201, stored.text
        assert list(member.shares.values()) == [b"twelve bytes"]
        # 256 KiB arrive for a 12-byte share: the server refuses to read them.
        assert_error(user.api.get(f"/api/array/{blob}"), 503, "not_enough_shares")
        assert member.uploads == [200]
        # The server is none the worse: an honest answer is read as before.
        member.padding = 0
        assert user.api.get(f"/api/array/{blob}").content == b"twelve bytes"


def test_an_upload_past_the_largest_share_is_cut_off_at_the_staging_url(stack, user):
    with raw_member(stack, user, padding=5 * 1024 * 1024) as member:
        blob = unique("big")
        assert user.api.post(f"/api/array/{blob}?replicas=1", data=b"x" * 1000) \
            .status_code == 201
        assert_error(user.api.get(f"/api/array/{blob}"), 503, "not_enough_shares")
        if stack.stack_info().get("mode", "local") == "local":
            # The local staging URL admits at most the largest share there is.
            assert member.uploads == [413]


def _packed_files(user, count: int = 40) -> dict[str, tuple[str, bytes]]:
    """`count` small files in one batch (one pack on the user's one storage): id -> (name,
    bytes)."""
    assert user.api.put("/api/filesystem/settings", json={
        "durability": "raid1(1)", "encryption": "aes256-gcm"}).status_code == 200
    files = {f"f{n}.txt": os.urandom(1000 + n) for n in range(count)}
    response = user.api.post("/api/filesystem/batch", data={"path": "/" + unique("packed")},
                             files=[("file", item) for item in files.items()])
    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201] * count
    return {r["file"]["id"]: (r["name"], files[r["name"]]) for r in results}


def test_a_member_from_before_ranged_gets_still_serves_packed_files(stack):
    """It answers a ranged get with the whole share; the server takes the range from it."""
    user = register_and_login(Api(stack.url))
    with raw_member(stack, user, padding=0) as member:
        files = _packed_files(user)
        for file_id in list(files)[::13]:
            read = user.api.get(f"/api/filesystem/data/{file_id}")
            assert read.status_code == 200, read.text
            assert read.content == files[file_id][1]
        assert [length for _, length in member.asked if length is not None], member.asked


def test_a_member_sending_more_than_the_range_it_was_asked_is_not_believed(stack):
    user = register_and_login(Api(stack.url))
    with raw_member(stack, user, padding=0, ranges=True) as member:
        files = _packed_files(user)
        file_id = next(iter(files))
        assert user.api.get(f"/api/filesystem/data/{file_id}").content == files[file_id][1]
        assert member.asked[-1][1] is not None            # a range was asked for
        member.padding = 100          # reported honestly, and more than was asked for
        assert_error(user.api.get(f"/api/filesystem/data/{file_id}"), 503,
                     "not_enough_shares")


def test_impossible_byte_counts_in_a_result_fail_the_request_and_are_not_recorded(stack):
    """hello and ping take 0 to 2**60 bytes; a result's used/free/size are held to the same,
    or one member's bad figure shows as its space (and crashed the CLI's listings)."""
    user = register_and_login(Api(stack.url))
    with raw_member(stack, user, padding=0) as member:
        before = listing(user)[member.member_id]
        for bad in ({"used": 10 ** 30}, {"used": -5}, {"free": 2 ** 61}, {"size": -1}):
            member.extra = bad
            started = time.monotonic()
            stored = user.api.post(f"/api/array/{unique('bad')}?replicas=1", data=b"twelve bytes")
            assert stored.status_code >= 400, (bad, stored.text)
            assert time.monotonic() - started < 5, "the request waited out its timeout"
            wait_for(lambda: member.errors, 10, "the member told of its bad result")
            assert "bytes" in member.errors[-1]["error"], member.errors[-1]
            now = listing(user)[member.member_id]
            assert (now["used"], now["capacity"]) == (before["used"], before["capacity"]), now


def test_verifying_a_member_that_stops_answering_answers_within_the_budget(stack, user):
    """A member that never answers `verify`: the answer still comes within the budget (20 s,
    under the gateway's 29 s), with the shares not verified counted as remaining; a check
    started just before the budget ran out used to wait its full transfer timeout (a 504,
    every result lost)."""
    with raw_member(stack, user, padding=0) as member:
        for n in range(12):
            stored = user.api.post(f"/api/array/{unique(f'v{n}')}?replicas=1", data=b"x" * 100)
            assert stored.status_code == 201, stored.text
        member.unanswered.add("verify")
        started = time.monotonic()
        answer = user.api.post(f"/api/array/members/{member.member_id}/verify")
        took = time.monotonic() - started
    assert answer.status_code == 202, answer.text      # partial: some remain
    result = answer.json()
    assert took < 25, took
    # Eight at once wait their 15 s and are unreachable; the last four run out of budget.
    assert result["checked"] == 8 and result["remaining"] == 4, result
    assert result["bad"] == [] and all(p["problem"].startswith("unreachable")
                                       for p in result["problems"]), result

