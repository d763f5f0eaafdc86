"""Staging: the local directory behind the real gateway's signed URLs, and S3 on moto."""
from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import boto3
import pytest
import requests
from cloudstrype.staging import StagedObjectMissing, StagedObjectTooLarge, StagingError, set_staging
from cloudstrype.staging.local import LocalStaging, StagingDenied
from cloudstrype.staging.s3 import S3Staging
from moto import mock_aws

from tests.support import free_port

KEY = "members/user-1/member-abc/0123abcd"


@pytest.fixture
def gateway_url():
    """The local gateway (staging routes only: no apps), serving on a free port."""
    from aiohttp import web

    from infra.local.gateway import Gateway
    port = free_port()
    loop = asyncio.new_event_loop()
    gateway = Gateway([], {}, None, {})
    # A refused body leaves its connection lingering (aiohttp reads and drops the rest for up
    # to 10 s); the teardown must not wait for that.
    runner = web.AppRunner(gateway.public_app(), access_log=None, shutdown_timeout=1)
    started = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    gateway.executor.shutdown()


@pytest.fixture
def local(tmp_path, gateway_url):
    staging = LocalStaging(tmp_path / "staging", gateway_url)
    set_staging(staging)
    yield staging
    set_staging(None)


def _with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update({k: str(v) for k, v in changes.items()})
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_local_put_get_delete_and_the_read_is_bounded(local):
    local.put(KEY, b"twelve bytes")
    assert local.get(KEY, 12) == b"twelve bytes"
    with pytest.raises(StagedObjectTooLarge):
        local.get(KEY, 11)
    local.delete(KEY)
    local.delete(KEY)                                   # idempotent
    with pytest.raises(StagedObjectMissing):
        local.get(KEY, 12)


def test_local_signing_key_is_private_and_kept_across_restarts(local, gateway_url):
    key_file = local.root / "signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    url = local.url_for_get(KEY, 60)
    again = LocalStaging(local.root, gateway_url)
    assert again.authorize("GET", KEY, {k: v[0] for k, v in
                                        parse_qs(urlsplit(url).query).items()}) is None


def test_local_keys_cannot_leave_the_directory(local):
    for bad in ("../escape", "members/../../x", "/abs", "a//b", ".hidden", "a/./b", ""):
        with pytest.raises(StagingError):
            local.put(bad, b"x")
        with pytest.raises(StagingError):
            local.url_for_get(bad, 60)


def test_a_signed_get_url_serves_the_object(local):
    local.put(KEY, b"share bytes")
    answer = requests.get(local.url_for_get(KEY, 60), timeout=10)
    assert answer.status_code == 200 and answer.content == b"share bytes"


def test_a_signed_put_url_stores_the_upload(local):
    answer = requests.put(local.url_for_put(KEY, 60, 100), data=b"uploaded", timeout=10)
    assert answer.status_code == 200, answer.text
    assert local.get(KEY, 100) == b"uploaded"


def test_expired_tampered_and_other_method_urls_are_refused(local):
    local.put(KEY, b"secret share")
    get_url = local.url_for_get(KEY, 60)
    refused = {
        "expired": local.url_for_get(KEY, -1),
        "later expiry": _with_query(get_url, expires=int(time.time()) + 3600),
        "other key": get_url.replace("0123abcd", "0123abce"),
        "bad signature": _with_query(get_url, signature="0" * 64),
        "no signature": get_url.split("?")[0],
    }
    for what, url in refused.items():
        answer = requests.get(url, timeout=10)
        assert answer.status_code == 403, (what, answer.status_code)
        assert answer.json()["error"]["code"] == "forbidden"
    # A GET URL does not allow a PUT, nor a PUT URL a GET.
    assert requests.put(get_url, data=b"overwrite", timeout=10).status_code == 403
    put_url = local.url_for_put(KEY, 60, 100)
    assert requests.get(put_url, timeout=10).status_code == 403
    # Raising a PUT URL's limit breaks its signature.
    assert requests.put(_with_query(put_url, max=10**9), data=b"x", timeout=10) \
        .status_code == 403
    assert local.get(KEY, 100) == b"secret share"


def test_an_upload_over_the_urls_limit_is_refused_and_nothing_is_kept(local):
    url = local.url_for_put(KEY, 60, 1000)
    for size in (1001, 5 * 1024 * 1024):
        answer = requests.put(url, data=os.urandom(size), timeout=10)
        assert answer.status_code == 413
    # A body streamed without a Content-Length is cut off at the limit too.
    answer = requests.put(url, data=iter([os.urandom(600), os.urandom(600)]), timeout=10)
    assert answer.status_code == 413
    with pytest.raises(StagedObjectMissing):
        local.get(KEY, 10_000)
    assert not list(local.tmp.iterdir())                 # no partial upload left behind


def test_a_get_of_nothing_staged_is_404(local):
    assert requests.get(local.url_for_get(KEY, 60), timeout=10).status_code == 404


def test_authorize_checks_expiry_after_the_signature(local):
    url = local.url_for_put(KEY, 30, 5)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert local.authorize("PUT", KEY, query) == 5
    with pytest.raises(StagingDenied, match="expired"):
        local.authorize("PUT", KEY, query, now=time.time() + 31)
    with pytest.raises(StagingDenied):
        local.authorize("DELETE", KEY, query)


def test_sweep_removes_leftovers_older_than_a_day(local):
    local.put(KEY, b"old")
    local.put(KEY + "-new", b"new")
    old = time.time() - 2 * 24 * 3600
    os.utime(local.path_for(KEY), (old, old))
    assert local.sweep() == 1
    assert local.get(KEY + "-new", 10) == b"new"
    with pytest.raises(StagedObjectMissing):
        local.get(KEY, 10)


# -- S3, on moto in-process -------------------------------------------------------------------

@pytest.fixture
def s3(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="staging")
        yield S3Staging("staging", "us-east-1")


def test_s3_put_get_delete_and_the_read_is_bounded(s3):
    s3.put(KEY, b"twelve bytes")
    assert s3.get(KEY, 12) == b"twelve bytes"
    with pytest.raises(StagedObjectTooLarge):
        s3.get(KEY, 11)
    s3.delete(KEY)
    with pytest.raises(StagedObjectMissing):
        s3.get(KEY, 12)
    with pytest.raises(StagingError):
        s3.put("../escape", b"x")


def test_s3_presigned_urls_move_the_bytes_and_an_oversized_upload_is_not_read(s3):
    s3.put(KEY, b"from the server")
    assert requests.get(s3.url_for_get(KEY, 60), timeout=10).content == b"from the server"
    # S3 cannot cap a presigned PUT: a member uploading 256 KiB for a 12-byte share gets the
    # upload accepted, and the server refuses to read it.
    answer = requests.put(s3.url_for_put(KEY, 60, 12), data=os.urandom(256 * 1024), timeout=10)
    assert answer.status_code == 200
    with pytest.raises(StagedObjectTooLarge):
        s3.get(KEY, 12)
