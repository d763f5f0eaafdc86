"""Attacks on the local gateway through HTTP against running stacks (issue 12, findings 4, 9, 11
and 14): one user freezing the API for everyone, the WebSocket management listener, sign-in
guessing from one address, and OAuth secrets in the log."""
from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.storage.conftest import S3_KEYS
from tests.support import (
    Api,
    assert_error,
    register_and_login,
    start_stack,
    unique,
    wait_for,
)

IN_FLIGHT = 4


class Blackhole:
    """A TCP server that accepts connections and never answers: an endpoint that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self):
        self.stopped = True
        self.sock.close()
        for connection in self.held:
            connection.close()


@pytest.fixture(scope="module")
def blackhole():
    hole = Blackhole()
    yield hole
    hole.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("gateway-attacks"), env={
        "CLOUDSTRYPE_LOG_LEVEL": "INFO",
        "CLOUDSTRYPE_GATEWAY_MAX_IN_FLIGHT_PER_CALLER": str(IN_FLIGHT),
        # The hanging S3 endpoint below is on loopback, which users may not reach otherwise.
        "CLOUDSTRYPE_OUTBOUND_ALLOW": "127.0.0.1"})
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def api(stack):
    return Api(stack.url)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:               # 0A: LISTEN
                address, port = local.split(":")
                if len(address) == 8:
                    address = socket.inet_ntoa(bytes.fromhex(address)[::-1])
                found.append((address, int(port, 16)))
    return found


def test_an_s3_endpoint_that_never_answers_fails_its_check_within_the_gateways_limit(
        api, blackhole):
    """It takes the connection and says nothing: the storage's check gives up in words (400)
    before API Gateway's 29 s would answer 504 for it."""
    user = register_and_login(api)
    started = time.monotonic()
    answer = user.api.post("/api/cloud/storages", timeout=90, json={
        "kind": "s3", "config": {"endpoint_url": f"http://127.0.0.1:{blackhole.port}",
                                 "bucket": "never-answers", **S3_KEYS}})
    took = time.monotonic() - started
    assert_error(answer, 400, "probe_failed")
    assert took < 29, took
    assert user.api.get("/api/cloud/storages").json()["storages"] == []


# -- finding 4: one slow user cannot starve the others ---------------------------------------

def test_one_user_with_32_stuck_requests_does_not_freeze_the_api(api, blackhole):
    attacker, bystander = register_and_login(api), register_and_login(api)
    hanging = {"kind": "s3", "config": {"endpoint_url": f"http://127.0.0.1:{blackhole.port}",
                                        "bucket": "never-answers", **S3_KEYS}}

    def probe(_):
        return attacker.api.post("/api/cloud/storages", json=hanging, timeout=90)

    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(probe, i) for i in range(32)]
        # All but IN_FLIGHT are refused at once, with a Retry-After.
        deadline = time.monotonic() + 20
        while sum(f.done() for f in futures) < 32 - IN_FLIGHT and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = [f for f in futures if f.done()]
        assert len(refused) == 32 - IN_FLIGHT
        for future in refused:
            assert_error(future.result(), 429, "too_many_requests")
            assert int(future.result().headers["Retry-After"]) >= 1
        # The attacker's other requests hang on the endpoint; everyone else is served.
        wait_for(lambda: blackhole.held, 10, "the probes to reach the hanging endpoint")
        started = time.monotonic()
        health = requests.get(api.base_url + "/api/health", timeout=10)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert bystander.api.get("/api/auth/me", timeout=10).status_code == 200
        assert bystander.api.get("/api/cloud/storages", timeout=10).status_code == 200
        assert time.monotonic() - started < 5
        assert sum(f.done() for f in futures) == 32 - IN_FLIGHT
        # The held ones end: a failed probe, or the 29 s integration timeout.
        held = [f.result() for f in futures if f not in refused]
    assert all(r.status_code in (400, 502, 504) for r in held), [r.text for r in held]
    # Once their functions have returned (not merely timed out), the attacker is served again.
    wait_for(lambda: attacker.api.get("/api/auth/me", timeout=10).status_code == 200, 60,
             "the attacker's slots to be freed")


def test_a_forged_token_naming_someone_elses_user_spends_none_of_their_slots(api):
    """Requests count against a token's user only once the token is verified: a flood of
    tokens carrying Bob's `sub` under a broken signature counts against its sender's address,
    and Bob is never told he has too many requests in progress."""
    bob = register_and_login(api)
    assert bob.api.get("/api/auth/me").status_code == 200
    header, payload, signature = bob.access_token.split(".")
    forged = f"{header}.{payload}.{signature[:-6]}AAAAAA"
    stop = threading.Event()
    statuses: list[int] = []

    def flood():
        session = requests.Session()
        while not stop.is_set():
            answer = session.get(api.base_url + "/api/auth/me", timeout=10,
                                 headers={"Authorization": f"Bearer {forged}"})
            statuses.append(answer.status_code)

    with ThreadPoolExecutor(12) as pool:
        for _ in range(12):
            pool.submit(flood)
        try:
            bobs = [bob.api.get("/api/auth/me", timeout=10).status_code for _ in range(60)]
        finally:
            stop.set()
    assert set(bobs) == {200}, bobs
    assert statuses and set(statuses) <= {401, 429}, set(statuses)


# -- finding 9: no moto, and a management listener only the handlers can use ---------------

@pytest.mark.parametrize("path", ["/moto-api/", "/moto-api/data.json", "/moto-api/reset"])
def test_no_moto_api_is_served(api, path):
    # The web UI's files answer GET only (no such page); other methods are not allowed there.
    assert_error(requests.get(api.base_url + path, timeout=10), 404, "not_found")
    posted = requests.post(api.base_url + path, json={}, timeout=10)
    assert posted.status_code == 405 and "password" not in posted.text.lower()


def test_the_management_listener_is_loopback_only_and_needs_the_runs_secret(stack):
    pid = stack.process.pid
    sockets = listening_sockets(pid)
    assert ("127.0.0.1", stack.port) in sockets
    management = [s for s in sockets if s[1] != stack.port]
    assert len(management) == 1, sockets
    address, port = management[0]
    assert address == "127.0.0.1"
    base = f"http://127.0.0.1:{port}"
    # Without the secret (or with a wrong one): refused as AWS refuses an unsigned call.
    for method, path in (("POST", "/@connections/abc"), ("GET", "/@connections/abc"),
                         ("DELETE", "/@connections/abc"), ("POST", "/local/@connections/abc"),
                         ("GET", "/"), ("GET", "/x" * 20 + "/@connections/abc")):
        response = requests.request(method, base + path, data=b"{}", timeout=10)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json() == {"message": "Missing Authentication Token"}
    # The secret lives in the server's settings only (set after start, so not even in its
    # initial environment); the array suites prove the handlers reach members through it.
    assert "@connections" not in Path(f"/proc/{pid}/environ").read_text(errors="replace")


# -- finding 14: OAuth code and state never reach the log -----------------------------------

def test_oauth_callback_code_and_state_are_not_logged(stack, api):
    code, state = f"code-{unique()}", f"state-{unique()}"
    requests.get(api.base_url + "/api/cloud/oauth/dropbox/callback",
                 params={"code": code, "state": state}, allow_redirects=False, timeout=10)
    assert requests.get(api.base_url + "/api/health", timeout=10).status_code == 200
    log = stack.log()
    assert "/api/cloud/oauth/dropbox/callback" in log      # the request is logged, by path
    assert code not in log and state not in log


# -- finding 11: sign-in attempts throttled per address --------------------------------------

@pytest.fixture
def strict_stack(tmp_path):
    running = start_stack(tmp_path / "data", env={
        "CLOUDSTRYPE_SIGN_IN_BURST_PER_ADDRESS": "10",
        "CLOUDSTRYPE_SIGN_IN_REFILL_SECONDS": "60"})
    yield running
    assert running.stop() == 0, running.log()


def test_password_spraying_from_one_address_is_throttled(strict_stack):
    api = Api(strict_stack.url)
    victim = register_and_login(api)          # 1 registration; the login succeeded: free
    answers = []
    for _ in range(20):
        # A different (unknown) account each time: the per-account lockout never sees two.
        answers.append(api.post("/api/auth/login", json={"username": unique(),
                                                         "password": "Wr0ngPassword"}))
    statuses = [r.status_code for r in answers]
    # A burst of 10 (the registration took one), then one more a minute.
    assert statuses == [401] * 9 + [429] * 11, statuses
    throttled = next(r for r in answers if r.status_code == 429)
    error = assert_error(throttled, 429, "too_many_attempts")
    assert "address" in error["message"]
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    # The right password from the same address waits too; the account itself is not locked.
    assert_error(api.post("/api/auth/login", json={"username": victim.username,
                                                   "password": victim.password}), 429)
    assert victim.api.get("/api/auth/me").status_code == 200
    # Registration floods and code guessing count against the same address.
    assert_error(api.post("/api/auth/register", json={"username": unique(),
                                                      "email": "x@example.org",
                                                      "password": "Str0ngPassw0rd"}), 429)
    assert_error(api.post("/api/auth/confirm", json={"username": victim.username,
                                                     "code": "000000"}), 429)
