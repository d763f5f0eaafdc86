"""Pacing writes to the OAuth providers: each fake provider enforces a write rate limit (a token
bucket answering its own throttling response with Retry-After) and counts whether the client
came back early. Writes keep to the documented rates, a throttled upload slows down and
succeeds, and a wait past the request's budget is a clear error sent without another request.
"""
from __future__ import annotations

import os
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cloudstrype.backends.base import BackendError
from cloudstrype.backends.box import BoxBackend
from cloudstrype.backends.dropbox import DropboxBackend
from cloudstrype.backends.gdrive import GoogleDriveBackend
from cloudstrype.backends.http import RetryPolicy
from cloudstrype.backends.oauth import make_session
from cloudstrype.backends.onedrive import OneDriveBackend
from cloudstrype.backends.pacing import (
    PROVIDER_WRITE_RATES,
    Pacer,
    Rate,
    WaitTooLong,
    pacer_for,
)
from cloudstrype.backends.registry import Target, open_backend

from tests.support import register_and_login

# Real sleeps, short backoff (Google Drive's throttle names no time: the client backs off).
REAL_TIME = RetryPolicy(attempts=4, backoff=0.05, max_backoff=0.4, deadline=20.0,
                        timeout=(2.0, 10.0))


BACKENDS = {"dropbox": DropboxBackend, "gdrive": GoogleDriveBackend, "onedrive": OneDriveBackend,
            "box": BoxBackend}


def paced_backend(fake, pacer: Pacer):
    return BACKENDS[fake.name](make_session(fake.name, fake.issue_token()), retry=REAL_TIME,
                               pacer=pacer)


def test_the_pacer_lets_a_burst_through_then_spaces_writes_at_the_rate():
    now = [100.0]
    pacer = Pacer(Rate(per_second=4.0, burst=2), clock=lambda: now[0])

    waits = [pacer.turn(write=True, budget=10) for _ in range(5)]

    assert waits == [0.0, 0.0, 0.25, 0.5, 0.75]
    assert pacer.turn(write=False, budget=10) == 0.0   # reads are not paced by the bucket


def test_a_hold_off_delays_every_request_and_writes_resume_one_at_a_time():
    now = [100.0]
    pacer = Pacer(Rate(per_second=4.0, burst=4), clock=lambda: now[0])
    pacer.hold_off(3.0)

    assert pacer.turn(write=False, budget=10) == 3.0
    assert [pacer.turn(write=True, budget=10) for _ in range(3)] == [3.0, 3.25, 3.5]


def test_a_turn_past_the_budget_reserves_nothing():
    now = [100.0]
    pacer = Pacer(Rate(per_second=1.0, burst=1), clock=lambda: now[0])
    pacer.hold_off(30.0)

    with pytest.raises(WaitTooLong, match="30.0 s"):
        pacer.turn(write=True, budget=20)
    now[0] += 30
    assert pacer.turn(write=True, budget=20) == 0.0


def test_one_storage_has_one_pacer_in_the_process():
    assert pacer_for("box", "s-1") is pacer_for("box", "s-1")
    assert pacer_for("box", "s-1") is not pacer_for("box", "s-2")
    assert pacer_for("box", "") is not pacer_for("box", "")   # not yet saved: its own


def test_every_provider_has_a_documented_write_rate(fake):
    rate = PROVIDER_WRITE_RATES[fake.name]
    assert 1 <= rate.per_second <= 10 and rate.burst >= 1


def test_writes_at_the_documented_rate_are_never_throttled(fake):
    rate = PROVIDER_WRITE_RATES[fake.name]
    # The provider's limit exactly, plus one write of slack for network jitter.
    fake.limit_writes(rate.per_second, rate.burst + 1, retry_after=1)
    backend = open_backend(fake.name, {"token": fake.issue_token()}, retry=REAL_TIME,
                           target=Target(storage_id=f"rate-{fake.name}-{os.getpid()}"))
    count = rate.burst + 2 * int(rate.per_second)
    started = time.monotonic()

    errors = []

    def put(i):
        try:
            backend.put(f"s{i}", b"x" * 100)
        except Exception as exc:   # collected: an assertion in a thread would be lost
            errors.append(exc)
    threads = [threading.Thread(target=put, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert fake.throttled == 0
    assert fake.writes_accepted >= count
    # Past the burst, the writes were spread at the rate.
    assert time.monotonic() - started >= (count - rate.burst - 1) / rate.per_second * 0.9


def test_a_throttled_upload_slows_down_and_every_share_arrives(fake):
    # The provider is stricter than our pacing (as when other apps use the same account).
    fake.limit_writes(per_second=10, burst=3, retry_after=0.4)
    backend = paced_backend(fake, Pacer(Rate(per_second=50, burst=10)))
    shares = {f"share-{i}": os.urandom(2000 + i) for i in range(15)}

    for key, data in shares.items():
        backend.put(key, data)

    assert fake.throttled > 0                 # the limit was hit ...
    assert fake.early_requests == 0           # ... and its Retry-After was obeyed
    for key, data in shares.items():
        assert backend.get(key) == data


@pytest.mark.parametrize("fake_name", ["dropbox", "onedrive", "box"])
def test_retry_after_as_an_http_date_is_obeyed(request, fake_name):
    fake = request.getfixturevalue(f"{fake_name}_fake")
    fake.limit_writes(per_second=1, burst=1, retry_after=0.5, as_http_date=True)
    backend = paced_backend(fake, Pacer(Rate(per_second=50, burst=10)))

    backend.put("a", b"first")
    started = time.monotonic()
    backend.put("b", b"second")

    assert fake.throttled >= 1 and fake.early_requests == 0
    assert time.monotonic() - started >= 0.4
    assert backend.get("b") == b"second"


def test_threads_writing_to_one_storage_share_the_provider_s_hold_off(dropbox_fake):
    fake = dropbox_fake
    # Requests already on the wire when a throttle answer goes out cannot have obeyed it:
    # those within 0.2 s of it are not counted as early.
    fake.limit_writes(per_second=5, burst=2, retry_after=0.5, in_flight_grace=0.2)
    pacer = Pacer(Rate(per_second=50, burst=10))
    backends = [DropboxBackend(make_session("dropbox", fake.issue_token()), retry=REAL_TIME,
                               pacer=pacer) for _ in range(4)]
    errors = []

    def upload(n, backend):
        try:
            for i in range(5):
                backend.put(f"t{n}-{i}", b"y" * 500)
        except Exception as exc:
            errors.append(exc)
    threads = [threading.Thread(target=upload, args=(n, b)) for n, b in enumerate(backends)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(fake.files) == 20
    assert fake.throttled > 0
    # Once one thread has seen Retry-After, the others wait too.
    assert fake.early_requests == 0
    assert pacer.holds >= 1


def test_a_retry_after_past_the_budget_is_a_clear_error_and_the_storage_is_left_alone(
        dropbox_fake):
    fake = dropbox_fake
    fake.limit_writes(per_second=0.01, burst=1, retry_after=60)
    backend = paced_backend(fake, Pacer(Rate(per_second=50, burst=10)))
    backend.put("first", b"ok")

    started = time.monotonic()
    with pytest.raises(BackendError, match="rate limited.*budget"):
        backend.put("second", b"throttled")
    calls = len(fake.api_calls)
    with pytest.raises(BackendError, match="rate limited.*budget"):
        backend.get("first")      # held back too: not even sent

    assert time.monotonic() - started < 2
    assert len(fake.api_calls) == calls
    assert fake.early_requests == 0


@pytest.mark.parametrize("value", ["inf", "1e999", "99999999999"])
def test_a_retry_after_of_no_sane_length_does_not_hold_the_storage_off_for_good(
        onedrive_fake, value):
    """"inf" held the storage's process-wide pacer off for ever, a huge number for years:
    every later request, reads and new backend objects too, failed unsent until a restart
    (providers sweep). Garbage is no Retry-After; a long one is waited at most an hour."""
    from cloudstrype.backends.http import MAX_RETRY_AFTER_SECONDS
    pacer = Pacer(None)
    backend = paced_backend(onedrive_fake, pacer)
    backend.put("k1", b"hello")
    onedrive_fake.fail_next(429, retry_after=float(value))
    if value == "99999999999":
        with pytest.raises(BackendError, match="budget"):
            backend.put("k2", b"x")
        assert pacer.held_for() <= MAX_RETRY_AFTER_SECONDS
    else:
        backend.put("k2", b"x")        # waited our own backoff, then went
        assert pacer.held_for() < 1 and backend.get("k2") == b"x"


def test_retry_after_zero_again_and_again_is_backed_off_not_sent_back_to_back(dropbox_fake):
    """A provider answering 429 with Retry-After: 0 to every try had a read sent ~300 times a
    second until its budget ran out (providers sweep): each try waits at least its backoff."""
    backend = DropboxBackend(make_session("dropbox", dropbox_fake.issue_token()),
                             retry=RetryPolicy(attempts=4, backoff=0.05, max_backoff=0.2,
                                               deadline=2.0, timeout=(2.0, 5.0)),
                             pacer=Pacer(None))
    backend.put("k", b"x")
    dropbox_fake.fail_next(429, retry_after=0, times=100000)
    before = len(dropbox_fake.api_calls)
    with pytest.raises(BackendError, match="budget"):
        backend.get("k")
    # 2 s at no less than 0.1 s apart (the backoff of 0.2 s, jittered down to half).
    assert len(dropbox_fake.api_calls) - before <= 25


def test_onedrive_throttling_with_503_and_retry_after_slows_down_and_succeeds(onedrive_fake):
    """Graph throttles OneDrive and SharePoint with 503 + Retry-After as well as 429; the
    client took it for a failure, used up its attempts and failed the write, holding back no
    other thread (providers sweep)."""
    pacer = Pacer(None)
    backend = paced_backend(onedrive_fake, pacer)
    onedrive_fake.fail_next(503, retry_after=0.2, times=5)
    backend.put("k", b"x")
    assert pacer.holds == 5 and backend.get("k") == b"x"


# -- through the running stack ---------------------------------------------------------------

def _connect(user, provider: str) -> dict:
    started = user.api.get(f"/api/cloud/oauth/{provider}/authorize").json()
    consent = requests.get(started["authorize_url"], allow_redirects=False, timeout=10)
    callback = requests.get(consent.headers["Location"], allow_redirects=False, timeout=30)
    assert callback.status_code == 302, callback.text
    # The finish code is in the fragment of the web UI address; the user who started finishes.
    back = parse_qs(urlsplit(callback.headers["Location"]).fragment.partition("?")[2])
    finished = user.api.post(f"/api/cloud/oauth/{provider}/finish",
                             json={"state": started["state"], "code": back["finish_code"][0]})
    assert finished.status_code == 201, finished.text
    return finished.json()


def test_chunks_uploaded_through_the_api_to_throttled_providers_all_succeed(
        api, fake_providers):
    user = register_and_login(api)
    names = ["dropbox", "onedrive", "box"]
    connected = {name: _connect(user, name) for name in names}
    fakes = [fake_providers[name] for name in names]
    before = {fake.name: (fake.throttled, fake.early_requests) for fake in fakes}
    for fake in fakes:
        # Stricter than our pacing: two writes at once, two a second, then Retry-After: 1.
        # Four uploads at once: the server's threads share each storage's hold-off.
        fake.limit_writes(per_second=2, burst=2, retry_after=1, in_flight_grace=0.2)
    chunks, failures = [], []

    def upload(n):
        for i in range(3):
            data = os.urandom(50_000 + 10 * n + i)
            stored = user.api.post("/api/chunk", files={"file": ("c", data)},
                                   data={"durability": "raid1(3)"})
            if stored.status_code != 201:
                failures.append(stored.text)
                continue
            assert {s["storage_id"] for s in stored.json()["shares"]} == \
                {c["id"] for c in connected.values()}
            chunks.append((stored.json()["chunk_id"], data))
    try:
        threads = [threading.Thread(target=upload, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for fake in fakes:
            fake.stop_limiting_writes()

    assert failures == [] and len(chunks) == 12
    for chunk_id, data in chunks:
        assert user.api.get(f"/api/chunk/{chunk_id}").content == data
    for fake in fakes:
        throttled, early = before[fake.name]
        assert fake.throttled > throttled, f"{fake.name} never throttled"
        assert fake.early_requests == early, f"{fake.name}: a request came before Retry-After"


def test_a_request_whose_budget_is_spent_says_so_not_rate_limited(dropbox_fake):
    """A token refresh that took 28 s of a 20 s budget was reported as "rate limited; the
    next request may go in 0.0 s" (operator sweep): nothing was rate limited."""
    backend = paced_backend(dropbox_fake, Pacer(Rate(per_second=50, burst=10)))
    client = backend._client
    with pytest.raises(BackendError, match="budget is spent") as raised:
        client._wait_for_turn("Dropbox POST /upload", True, time.monotonic() - 28, 0.0)
    assert "rate limited" not in str(raised.value)
