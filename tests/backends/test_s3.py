"""The S3 backend over real HTTP: against moto's server, and against a tiny server that only
answers errors (for the 5xx and out-of-space mappings moto never produces).

moto accepts any credentials until told to check them: POST /moto-api/reset-auth with 0 makes
it verify signatures against its IAM users and their policies from then on (the `iam_checked`
fixture does that and restores the default afterwards).
"""
from __future__ import annotations

import functools
import json
import os
import secrets
import socket
import threading
from types import SimpleNamespace

import boto3
import pytest
import requests
from cloudstrype.backends import s3 as s3_module
from cloudstrype.backends.base import (
    BackendAuthError,
    BackendError,
    BackendFull,
    ShareNotFound,
    Usage,
)
from cloudstrype.backends.s3 import S3Backend
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

REGION = "us-east-1"


@functools.cache
def admin(moto_url: str, service: str):
    """A client with moto's default (accept-anything) credentials, for arranging tests."""
    return boto3.client(service, endpoint_url=moto_url, region_name=REGION,
                        aws_access_key_id="admin", aws_secret_access_key="admin")


@pytest.fixture
def bucket(moto_url) -> str:
    name = f"shares-{secrets.token_hex(4)}"
    admin(moto_url, "s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def backend(moto_url, bucket) -> S3Backend:
    return S3Backend(moto_url, REGION, bucket, "access-key", "secret-key")


@pytest.fixture
def iam_checked(moto_url, bucket):
    """IAM users `writer` (may do anything in S3) and `stranger` (may do nothing), and moto
    checking every request's signature and permissions until the test ends."""
    iam = admin(moto_url, "iam")
    suffix = secrets.token_hex(3)
    keys = {}
    for role, actions in (("writer", ["s3:*"]), ("stranger", [])):
        user = f"{role}-{suffix}"
        iam.create_user(UserName=user)
        if actions:
            iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[role] = (key["AccessKeyId"], key["SecretAccessKey"])
    requests.post(f"{moto_url}/moto-api/reset-auth", data=b"0", timeout=5).raise_for_status()
    try:
        yield SimpleNamespace(**keys)
    finally:
        requests.post(f"{moto_url}/moto-api/reset-auth", data=b"inf", timeout=5).raise_for_status()


@pytest.mark.parametrize("size", [0, 1, 1024 * 1024 + 5], ids=["0B", "1B", "1MiB"])
def test_put_get_exists_delete_round_trip(backend, size):
    data = os.urandom(size)

    backend.put("share-1", data)

    assert backend.exists("share-1")
    assert backend.get("share-1") == data
    assert backend.usage().used == size
    backend.delete("share-1")
    assert not backend.exists("share-1")
    with pytest.raises(ShareNotFound):
        backend.get("share-1")


def test_put_replaces_an_existing_share(backend):
    backend.put("k", b"first")
    backend.put("k", b"second!")
    assert backend.get("k") == b"second!"
    assert backend.usage().used == len(b"second!")


def test_delete_of_a_missing_share_is_not_an_error(backend):
    backend.delete("never-written")
    assert not backend.exists("never-written")


def test_prefixes_keep_storages_in_one_bucket_apart(moto_url, bucket):
    first = S3Backend(moto_url, REGION, bucket, "a", "a", prefix="first/")
    second = S3Backend(moto_url, REGION, bucket, "a", "a", prefix="second/")
    first.put("k", b"one")
    second.put("k", b"two two")

    assert first.get("k") == b"one"
    assert second.get("k") == b"two two"
    assert (first.usage().used, second.usage().used) == (3, 7)
    listed = admin(moto_url, "s3").list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(item["Key"] for item in listed) == ["first/k", "second/k"]


def test_usage_sums_every_object_across_listing_pages(backend, moto_url, bucket, monkeypatch):
    monkeypatch.setattr(s3_module, "LIST_PAGE_SIZE", 7)
    for index in range(20):
        admin(moto_url, "s3").put_object(Bucket=bucket, Key=f"k{index}", Body=b"xy")
    assert backend.usage().used == 40


def test_a_configured_capacity_is_reported(moto_url, bucket):
    backend = S3Backend(moto_url, REGION, bucket, "a", "a", capacity_bytes=5000)
    backend.put("k", b"x" * 1000)
    assert backend.usage() == Usage(used=1000, capacity=5000)


def test_a_missing_bucket_is_a_settings_problem_not_a_missing_share(moto_url):
    backend = S3Backend(moto_url, REGION, "no-such-bucket-here", "a", "a")

    with pytest.raises(BackendAuthError, match="NoSuchBucket"):
        backend.put("k", b"x")
    with pytest.raises(BackendAuthError, match="NoSuchBucket"):
        backend.get("k")


def test_an_unreachable_endpoint_gives_backend_error(unused_port):
    backend = S3Backend(f"http://127.0.0.1:{unused_port}", REGION, "bucket", "a", "a",
                        max_attempts=1, connect_timeout=1)

    for operation in (lambda: backend.put("k", b"x"), lambda: backend.get("k"), backend.usage):
        with pytest.raises(BackendError, match="Could not connect") as raised:
            operation()
        assert type(raised.value) is BackendError


@pytest.mark.parametrize("operation", ["put", "get", "exists", "usage", "delete"])
def test_wrong_secret_gives_backend_auth_error(moto_url, bucket, iam_checked, operation):
    key_id, _ = iam_checked.writer
    backend = S3Backend(moto_url, REGION, bucket, key_id, "not-the-secret")

    with pytest.raises(BackendAuthError):
        run(backend, operation)


@pytest.mark.parametrize("operation", ["put", "get", "usage"])
def test_unknown_access_key_gives_backend_auth_error(moto_url, bucket, iam_checked, operation):
    backend = S3Backend(moto_url, REGION, bucket, "AKIAIOSFODNN7EXAMPLE", "whatever")

    with pytest.raises(BackendAuthError, match="InvalidAccessKeyId"):
        run(backend, operation)


@pytest.mark.parametrize("operation", ["put", "get", "usage"])
def test_a_user_without_permission_gives_backend_auth_error(moto_url, bucket, iam_checked,
                                                            operation):
    backend = S3Backend(moto_url, REGION, bucket, *iam_checked.stranger)

    with pytest.raises(BackendAuthError, match="AccessDenied"):
        run(backend, operation)


def test_the_given_credentials_are_used_and_never_the_environments(
        moto_url, bucket, iam_checked, monkeypatch):
    writer_id, writer_secret = iam_checked.writer
    # The environment holds the valid key: a backend given a wrong one must still fail.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", writer_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", writer_secret)
    with pytest.raises(BackendAuthError):
        S3Backend(moto_url, REGION, bucket, *iam_checked.stranger).put("k", b"x")
    # And the other way round.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "bogus-session-token")
    backend = S3Backend(moto_url, REGION, bucket, writer_id, writer_secret)
    backend.put("k", b"written with the given key")
    assert backend.get("k") == b"written with the given key"


def test_invalid_keys_are_refused(backend):
    with pytest.raises(ValueError, match="invalid share key"):
        backend.put("../k", b"x")


# --- errors moto does not produce, from a server that only answers errors ------------------------

class ErrorServer:
    """Answers every request with one S3 error and counts the requests."""

    def __init__(self, status: int, code: str):
        self.status, self.code, self.requests = status, code, 0
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        self.url = "http://127.0.0.1:%d" % self._server.server_address[1]

    @Request.application
    def _app(self, request: Request) -> Response:
        self.requests += 1
        body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{self.code}</Code>"
                f"<Message>{self.code} from the test server</Message></Error>")
        return Response(body, status=self.status, mimetype="application/xml")

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def error_server():
    servers = []

    def start(status, code):
        servers.append(ErrorServer(status, code))
        return servers[-1]
    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("status, code", [(500, "InternalError"), (503, "SlowDown")])
def test_server_errors_are_retried_then_give_backend_error(error_server, status, code):
    server = error_server(status, code)
    # Two tries: botocore's backoff (up to a second before the second try) is not tunable.
    backend = S3Backend(server.url, REGION, "bucket", "a", "a", max_attempts=2)

    with pytest.raises(BackendError, match=code) as raised:
        backend.get("k")
    assert type(raised.value) is BackendError
    assert server.requests == 2


@pytest.mark.parametrize("status, code", [(507, "XMinioStorageFull"), (403, "QuotaExceeded")])
def test_out_of_space_answers_give_backend_full(error_server, status, code):
    server = error_server(status, code)
    backend = S3Backend(server.url, REGION, "bucket", "a", "a", max_attempts=1)

    with pytest.raises(BackendFull, match=code):
        backend.put("k", b"x")


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(backend: S3Backend, operation: str):
    return {
        "put": lambda: backend.put("k", b"x"),
        "get": lambda: backend.get("k"),
        "exists": lambda: backend.exists("k"),
        "usage": backend.usage,
        "delete": lambda: backend.delete("k"),
    }[operation]()


@pytest.mark.parametrize("status", [301, 302, 307])
def test_an_endpoint_that_redirects_is_an_error_after_one_try_not_a_loop(status):
    """botocore takes an S3 3xx for "the bucket is in another region" and asks the endpoint for
    the bucket's region, which redirects again: 78 requests, then a RecursionError (a 500). For
    an S3-compatible endpoint a redirect is an error, said at once."""
    asked = []

    @Request.application
    def redirecting(request):
        asked.append(request.method)
        return Response(status=status, headers={"Location": "http://169.254.169.254/"})

    server = make_server("127.0.0.1", 0, redirecting, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = S3Backend(f"http://127.0.0.1:{server.server_port}", REGION, "bucket", "a", "a",
                            max_attempts=1)
        with pytest.raises(BackendError):
            backend.put("share", b"data")
        with pytest.raises(BackendError):
            backend.get("share")
    finally:
        server.shutdown()
    assert len(asked) <= 4, asked
