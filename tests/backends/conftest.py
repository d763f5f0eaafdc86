"""Fixtures for the backend tests.

The fake providers (tests/fakes) run on 127.0.0.1 for one test each; while one runs, the
settings point the OAuth client at it (client id and secret, CLOUDSTRYPE_PROVIDER_URL_OVERRIDES)
and OAUTHLIB_INSECURE_TRANSPORT lets oauthlib talk plain HTTP to it.

    dropbox_fake, gdrive_fake, onedrive_fake, box_fake   one provider
    fake                                                 each of the four in turn
    backend                                              a connected backend on `fake`
"""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import pytest
from cloudstrype.backends.http import RetryPolicy
from cloudstrype.backends.registry import open_backend
from cloudstrype.settings import reset_settings_cache
from moto.server import ThreadedMotoServer

from tests.fakes import CLIENT_ID, CLIENT_SECRET, FAKES, FakeProvider


class RecordingSleep:
    """Stands in for time.sleep in RetryPolicy: records each wait instead of waiting. `clock`
    is a monotonic clock that the recorded waits move forward, as real sleeps would."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    def clock(self) -> float:
        return time.monotonic() + sum(self.waits)


@pytest.fixture(scope="module")
def moto_url():
    """An S3-compatible endpoint of its own (moto's server), for the S3 backend's tests."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def loopback_allowed(monkeypatch):
    """The fakes and moto listen on loopback, which backends refuse to reach unless allowed."""
    monkeypatch.setenv("CLOUDSTRYPE_OUTBOUND_ALLOW", "127.0.0.1")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


@contextlib.contextmanager
def running(fake: FakeProvider) -> Iterator[FakeProvider]:
    fake.start()
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")   # the fakes speak plain HTTP
            env.setenv(f"CLOUDSTRYPE_{fake.name.upper()}_CLIENT_ID", CLIENT_ID)
            env.setenv(f"CLOUDSTRYPE_{fake.name.upper()}_CLIENT_SECRET", CLIENT_SECRET)
            env.setenv("CLOUDSTRYPE_PROVIDER_URL_OVERRIDES", json.dumps(fake.url_overrides()))
            reset_settings_cache()
            yield fake
    finally:
        fake.stop()
        reset_settings_cache()


@pytest.fixture
def dropbox_fake():
    with running(FAKES["dropbox"]()) as fake:
        yield fake


@pytest.fixture
def gdrive_fake():
    with running(FAKES["gdrive"]()) as fake:
        yield fake


@pytest.fixture
def onedrive_fake():
    with running(FAKES["onedrive"]()) as fake:
        yield fake


@pytest.fixture
def box_fake():
    with running(FAKES["box"]()) as fake:
        yield fake


@pytest.fixture(params=sorted(FAKES))
def fake(request) -> FakeProvider:
    return request.getfixturevalue(f"{request.param}_fake")


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def fast_retry(sleeps) -> RetryPolicy:
    """Four attempts, millisecond backoff, waits recorded rather than slept."""
    return RetryPolicy(attempts=4, backoff=0.001, max_backoff=0.004, deadline=30.0,
                       timeout=(2.0, 10.0), sleep=sleeps, clock=sleeps.clock)


@pytest.fixture
def refreshed_tokens() -> list[dict]:
    """Every token the backend under test handed to on_token_refreshed."""
    return []


@pytest.fixture
def backend(fake, fast_retry, refreshed_tokens):
    return open_backend(fake.name, {"token": fake.issue_token()},
                        on_token_refreshed=refreshed_tokens.append, retry=fast_retry)
