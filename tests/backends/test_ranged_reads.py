"""Ranged reads of a share (`Backend.get_range`), what a packed file's read does.

Every kind of backend answers the same ranges with the same bytes: local, S3 (moto's server)
and the four OAuth providers (their fakes, which honour Range as the real APIs do: 206 +
Content-Range, 416 past the end). On the providers the fakes also count the file bytes they
send, so the tests can hold the transfer of a 4 KiB read of a 4 MiB share to 64 KiB.
"""
from __future__ import annotations

import os
import re
import secrets

import boto3
import pytest
from cloudstrype.backends.base import BackendAuthError, BackendError, ShareNotFound
from cloudstrype.backends.local import LocalBackend
from cloudstrype.backends.registry import open_backend
from cloudstrype.backends.s3 import S3Backend
from werkzeug.wrappers import Response

from tests.fakes import FAKES

KINDS = ["local", "s3", *sorted(FAKES)]
SIZE = 10_000
KIB = 1024
MIB = 1024 * KIB

# The API request that downloads a share's bytes, per provider (to make that one fail).
DOWNLOAD_PATHS = {
    "dropbox": r"/content/2/files/download",
    "gdrive": r"/api/drive/v3/files/[^/]+",
    "onedrive": r"/api/v1\.0/me/drive/special/approot:/[^/:]+:/content",
    "box": r"/api/2\.0/files/\d+/content",
}


@pytest.fixture(params=KINDS)
def any_backend(request, tmp_path, fast_retry):
    """A backend of each kind in turn, empty."""
    kind = request.param
    if kind == "local":
        return LocalBackend(tmp_path / "shares")
    if kind == "s3":
        url = request.getfixturevalue("moto_url")
        bucket = f"shares-{secrets.token_hex(4)}"
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="a",
                     aws_secret_access_key="a").create_bucket(Bucket=bucket)
        return S3Backend(url, "us-east-1", bucket, "access-key", "secret-key")
    fake = request.getfixturevalue(f"{kind}_fake")
    return open_backend(kind, {"token": fake.issue_token()}, retry=fast_retry)


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


# --- every backend ------------------------------------------------------------------------------

@pytest.mark.parametrize("start, length", [
    (0, 10),                 # the start
    (4321, 1000),            # the middle
    (SIZE - 10, 10),         # the last bytes, exactly
    (SIZE - 1, 1),           # the last byte
    (0, SIZE),               # all of it
    (SIZE - 10, 100),        # over the end: what there is
    (0, SIZE + 1),
], ids=["start", "middle", "end", "last-byte", "whole", "over-the-end", "one-past-the-size"])
def test_get_range_returns_exactly_those_bytes(any_backend, data, start, length):
    any_backend.put("share-1", data)

    assert any_backend.get_range("share-1", start, length) == data[start:start + length]


@pytest.mark.parametrize("start", [SIZE, SIZE + 1, 10 * SIZE], ids=["at-the-end", "past", "far"])
def test_a_range_past_the_end_is_empty(any_backend, data, start):
    any_backend.put("share-1", data)

    assert any_backend.get_range("share-1", start, 5) == b""


def test_a_range_of_an_empty_share_is_empty(any_backend):
    any_backend.put("empty", b"")

    assert any_backend.get_range("empty", 0, 10) == b""


def test_a_range_of_no_bytes_is_empty(any_backend, data):
    any_backend.put("share-1", data)

    assert any_backend.get_range("share-1", 500, 0) == b""


def test_a_range_of_a_missing_share_raises_share_not_found(any_backend, data):
    any_backend.put("share-1", data)

    with pytest.raises(ShareNotFound):
        any_backend.get_range("missing", 0, 10)


def test_a_range_of_a_deleted_share_raises_share_not_found(any_backend, data):
    any_backend.put("share-1", data)
    any_backend.delete("share-1")

    with pytest.raises(ShareNotFound):
        any_backend.get_range("share-1", 0, 10)


def test_only_a_local_storage_names_a_file_a_reader_here_can_read(any_backend, data):
    any_backend.put("share-1", data)

    found = any_backend.local_file("share-1")
    if isinstance(any_backend, LocalBackend):
        assert found is not None and open(found, "rb").read() == data
    else:
        assert found is None


@pytest.mark.parametrize("start, length", [(-1, 10), (0, -1)])
def test_a_negative_start_or_length_is_refused(any_backend, start, length):
    with pytest.raises(ValueError, match=">= 0"):
        any_backend.get_range("share-1", start, length)


# --- the OAuth providers: transfer, requests, retries (`backend` is each provider in turn) --------

def test_a_4_kib_read_of_a_4_mib_share_moves_at_most_64_kib(backend, fake):
    share = os.urandom(4 * MIB)
    backend.put("share-1", share)
    start = 2 * MIB + 123

    served = fake.bytes_served
    assert backend.get_range("share-1", start, 4 * KIB) == share[start:start + 4 * KIB]
    ranged = fake.bytes_served - served

    served = fake.bytes_served
    assert backend.get("share-1") == share
    whole = fake.bytes_served - served

    assert ranged <= 64 * KIB
    assert ranged == 4 * KIB
    assert whole == 4 * MIB
    assert fake.download_ranges == [f"bytes={start}-{start + 4 * KIB - 1}", None]


def test_a_range_of_no_bytes_sends_no_request(backend, fake):
    backend.put("share-1", b"payload")
    calls = len(fake.api_calls)

    assert backend.get_range("share-1", 3, 0) == b""
    assert len(fake.api_calls) == calls
    assert fake.download_ranges == []


def test_a_server_that_ignores_the_range_and_sends_it_all_still_gives_the_range(
        backend, fake, data):
    backend.put("share-1", data)
    fake.honour_ranges = False

    assert backend.get_range("share-1", 4321, 1000) == data[4321:5321]
    assert backend.get_range("share-1", SIZE - 10, 100) == data[SIZE - 10:]
    assert backend.get_range("share-1", SIZE + 5, 10) == b""
    assert fake.bytes_served == 3 * SIZE


def test_an_answer_with_other_bytes_than_asked_for_is_an_error_not_wrong_data(
        backend, fake, data, monkeypatch):
    backend.put("share-1", data)

    def from_the_start(request, content, headers=None):   # a server that ignores the start
        return Response(content[:10], status=206,
                        headers={"Content-Range": f"bytes 0-9/{len(content)}"})

    monkeypatch.setattr(fake, "serve_file", from_the_start)

    with pytest.raises(BackendError, match="asked for bytes from 500"):
        backend.get_range("share-1", 500, 10)


def test_a_passing_5xx_on_the_download_is_retried(backend, fake, sleeps, data):
    backend.put("share-1", data)
    fake.fail_next(503, times=2, path=DOWNLOAD_PATHS[fake.name])

    assert backend.get_range("share-1", 100, 50) == data[100:150]
    assert len(sleeps.waits) == 2
    assert fake.download_ranges == ["bytes=100-149"]


def test_repeated_5xx_on_the_download_gives_backend_error(backend, fake, fast_retry, data):
    backend.put("share-1", data)
    calls_before = len(fake.api_calls)
    fake.fail_next(500, times=50, path=DOWNLOAD_PATHS[fake.name])

    with pytest.raises(BackendError, match="HTTP 500") as raised:
        backend.get_range("share-1", 100, 50)
    assert type(raised.value) is BackendError
    downloads = [call for call in fake.api_calls[calls_before:]
                 if re.fullmatch(DOWNLOAD_PATHS[fake.name], call.split(" ", 1)[1])]
    assert len(downloads) == fast_retry.attempts


def test_429_on_the_download_waits_as_long_as_retry_after_says(backend, fake, sleeps, data):
    backend.put("share-1", data)
    fake.fail_next(429, retry_after=3, path=DOWNLOAD_PATHS[fake.name])

    assert backend.get_range("share-1", 0, 10) == data[:10]
    assert sleeps.waits == [3.0]


def test_an_expired_token_is_refreshed_and_the_range_read_again(
        backend, fake, data, refreshed_tokens):
    backend.put("share-1", data)
    fake.expire_access_tokens()

    assert backend.get_range("share-1", 9000, 500) == data[9000:9500]
    assert len(refreshed_tokens) == 1
    assert fake.token_grants[-1] == "refresh_token"


def test_a_revoked_grant_raises_backend_auth_error(backend, fake, data):
    backend.put("share-1", data)
    fake.revoke_grants()

    with pytest.raises(BackendAuthError):
        backend.get_range("share-1", 0, 10)


@pytest.mark.parametrize("key", ["../escape", "a/b", "", "x" * 201])
def test_invalid_keys_are_refused_before_any_request(backend, fake, key):
    with pytest.raises(ValueError):
        backend.get_range(key, 0, 10)
    with pytest.raises(ValueError):
        backend.get_range(key, 0, 0)
    assert fake.api_calls == []
