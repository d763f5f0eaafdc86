"""What every OAuth provider backend must do, proven against each fake provider in turn."""
from __future__ import annotations

import os
import threading
import time

import pytest
from cloudstrype.backends.base import (
    BackendAuthError,
    BackendError,
    BackendFull,
    ShareNotFound,
    Usage,
)
from cloudstrype.backends.http import RetryPolicy
from cloudstrype.backends.oauth import account_info, make_session
from cloudstrype.backends.registry import open_backend


@pytest.mark.parametrize("size", [0, 1, 1024 * 1024 + 7], ids=["0B", "1B", "1MiB"])
def test_put_get_exists_delete_round_trip(backend, fake, size):
    data = os.urandom(size)
    used_before = backend.usage().used
    assert not backend.exists("share-1")

    backend.put("share-1", data)

    assert backend.exists("share-1")
    assert backend.get("share-1") == data
    assert backend.usage().used == used_before + size
    backend.delete("share-1")
    assert not backend.exists("share-1")
    with pytest.raises(ShareNotFound):
        backend.get("share-1")
    assert backend.usage().used == used_before


def test_put_replaces_an_existing_share(backend, fake):
    backend.put("share-1", b"first version")
    backend.put("share-1", b"second")

    assert backend.get("share-1") == b"second"
    assert backend.usage().used == len(b"second")


def test_shares_are_independent(backend):
    backend.put("a.0", b"alpha")
    backend.put("a.1", b"beta")
    backend.delete("a.0")

    assert backend.get("a.1") == b"beta"
    assert not backend.exists("a.0")


def test_get_of_a_missing_share_raises_share_not_found(backend):
    with pytest.raises(ShareNotFound):
        backend.get("never-written")


def test_delete_of_a_missing_share_is_not_an_error(backend, fake):
    backend.put("other", b"x")   # so the folder exists and lookups reach the provider
    backend.delete("never-written")
    assert backend.get("other") == b"x"


def test_usage_reports_the_account_quota(backend, fake):
    fake.quota_bytes = 10_000
    backend.put("share-1", b"x" * 1234)

    usage = backend.usage()

    assert usage == Usage(used=1234, capacity=10_000)
    assert usage.free == 10_000 - 1234


def test_a_full_account_raises_backend_full_and_stores_nothing(backend, fake):
    fake.quota_bytes = 100
    with pytest.raises(BackendFull):
        backend.put("share-1", os.urandom(200))
    assert not backend.exists("share-1")


def test_an_expired_access_token_is_refreshed_once_and_the_request_retried(
        backend, fake, refreshed_tokens):
    backend.put("share-1", b"payload")
    fake.expire_access_tokens()

    assert backend.get("share-1") == b"payload"

    assert fake.token_grants.count("refresh_token") == 1
    assert len(refreshed_tokens) == 1
    new_token = refreshed_tokens[0]
    assert fake.access_token_is_valid(new_token["access_token"])
    # The callback's token can refresh again: with a rotated refresh token (Box, Microsoft)
    # or the old one kept (Dropbox, Google).
    assert fake.refresh_token_is_valid(new_token["refresh_token"])
    assert new_token["expires_at"] > time.time()


def test_a_token_about_to_expire_is_refreshed_before_it_is_used(
        fake, fast_retry, refreshed_tokens):
    backend = open_backend(fake.name, {"token": fake.issue_token(lifetime=20)},
                           on_token_refreshed=refreshed_tokens.append, retry=fast_retry)

    backend.usage()

    assert fake.token_grants == ["refresh_token"]
    assert len(refreshed_tokens) == 1
    assert len(fake.api_calls) == 1   # no request went out with the old token


def test_a_401_after_refreshing_raises_backend_auth_error(backend, fake, refreshed_tokens):
    backend.put("share-1", b"payload")
    fake.fail_next(401, times=2)

    with pytest.raises(BackendAuthError):
        backend.get("share-1")
    assert fake.token_grants.count("refresh_token") == 1


def test_a_revoked_grant_raises_backend_auth_error(backend, fake):
    fake.revoke_grants()

    with pytest.raises(BackendAuthError, match="reconnect"):
        backend.get("share-1")


def test_concurrent_401s_refresh_the_token_only_once(fake, fast_retry, refreshed_tokens):
    # Box and Microsoft retire a refresh token when it is used: a second refresh would fail.
    backend = open_backend(fake.name, {"token": fake.issue_token()},
                           on_token_refreshed=refreshed_tokens.append, retry=fast_retry)
    backend.put("share-1", b"payload")
    fake.expire_access_tokens()
    results, start = [], threading.Barrier(6)

    def read():
        start.wait()
        results.append(backend.get("share-1"))

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert results == [b"payload"] * 6
    assert fake.token_grants.count("refresh_token") == 1
    assert len(refreshed_tokens) == 1


def test_429_waits_as_long_as_retry_after_says_then_succeeds(backend, fake, sleeps):
    backend.put("share-1", b"payload")
    fake.fail_next(429, retry_after=3)

    assert backend.get("share-1") == b"payload"
    assert sleeps.waits == [3.0]


def test_a_retry_after_beyond_the_time_budget_fails_at_once(backend, fake, sleeps):
    backend.put("share-1", b"payload")
    calls_before = len(fake.api_calls)
    fake.fail_next(429, retry_after=3600)

    with pytest.raises(BackendError, match="rate limited") as raised:
        backend.get("share-1")
    assert not isinstance(raised.value, (BackendAuthError, ShareNotFound))
    assert sleeps.waits == []
    assert len(fake.api_calls) == calls_before + 1


def test_a_passing_5xx_is_retried_with_backoff(backend, fake, sleeps):
    backend.put("share-1", b"payload")
    fake.fail_next(503, times=2)

    assert backend.get("share-1") == b"payload"
    assert len(sleeps.waits) == 2
    assert sleeps.waits[1] > 0


def test_repeated_5xx_gives_backend_error_after_the_allowed_attempts(backend, fake, fast_retry):
    backend.put("share-1", b"payload")
    calls_before = len(fake.api_calls)
    fake.fail_next(500, times=50)

    with pytest.raises(BackendError, match="HTTP 500") as raised:
        backend.get("share-1")
    assert type(raised.value) is BackendError
    assert len(fake.api_calls) - calls_before == fast_retry.attempts


def test_retries_with_real_sleeps_end_within_the_time_budget(fake):
    policy = RetryPolicy(attempts=50, backoff=0.02, max_backoff=0.05, deadline=0.3,
                         timeout=(2.0, 5.0))
    backend = open_backend(fake.name, {"token": fake.issue_token()}, retry=policy)
    fake.fail_next(503, times=1000)

    started = time.monotonic()
    with pytest.raises(BackendError, match="budget"):
        backend.usage()
    assert time.monotonic() - started < 1.5


def test_an_unreachable_provider_gives_backend_error(backend, fake):
    backend.put("share-1", b"payload")
    fake.stop()

    with pytest.raises(BackendError, match="ConnectionError") as raised:
        backend.get("share-1")
    assert type(raised.value) is BackendError


def test_a_share_over_the_upload_limit_is_refused_before_any_request(backend, fake):
    backend.max_share_bytes = 10

    with pytest.raises(BackendError, match="limit"):
        backend.put("share-1", b"x" * 11)
    assert fake.api_calls == []


@pytest.mark.parametrize("key", ["../escape", "a/b", "", ".", "..", "x" * 201, "sp ace"])
def test_invalid_keys_are_refused_before_any_request(backend, fake, key):
    for operation in (lambda: backend.put(key, b"x"), lambda: backend.get(key),
                      lambda: backend.exists(key), lambda: backend.delete(key)):
        with pytest.raises(ValueError, match="invalid share key"):
            operation()
    assert fake.api_calls == []


ACCOUNTS = {
    "dropbox": {"account_id": "dbid:fake-account", "display_name": "Fake Dropbox User"},
    "gdrive": {"account_id": "00112233445566778899", "display_name": "Fake Drive User"},
    "onedrive": {"account_id": "fake-user-id", "display_name": "Fake OneDrive User"},
    "box": {"account_id": "11446498", "display_name": "Fake Box User"},
}


def test_account_info_names_the_connected_account(fake):
    session = make_session(fake.name, fake.issue_token())

    assert account_info(fake.name, session) == ACCOUNTS[fake.name]


def test_account_info_with_a_revoked_grant_raises_backend_auth_error(fake):
    session = make_session(fake.name, fake.issue_token())
    fake.revoke_grants()

    with pytest.raises(BackendAuthError):
        account_info(fake.name, session)
