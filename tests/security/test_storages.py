"""Attacks on storages through HTTP against running stacks (issue 12, findings 2, 3 and 12):
local storages outside the operator's roots, two claims of one folder, and S3 endpoints that
would make the server reach its own network (SSRF)."""
from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.storage.conftest import S3_KEYS
from tests.support import (
    ARTIFACTS,
    REPO,
    Api,
    assert_error,
    free_port,
    register_and_login,
    start_stack,
)


def add_local(user, path: str):
    return user.api.post("/api/cloud/storages", json={"kind": "local", "config": {"path": path}})


# -- local storages stay inside the roots ------------------------------------------------------

def test_paths_outside_the_roots_are_refused_naming_the_roots(user, stack, tmp_path):
    (tmp_path / "to-etc").symlink_to("/etc")
    (tmp_path / "to-code").symlink_to(REPO)
    escapes = ["/etc", "/", "/root", "/dev/shm", "/tmp", str(REPO), str(REPO / "web"),
               str(REPO / "layers"), "../../../../../../etc", "a/../../../../../../../root",
               "..", str(tmp_path / "to-etc"), str(tmp_path / "to-etc" / "cron.d"),
               str(tmp_path / "to-code" / "x"), str(stack.data_dir.parent)]
    for path in escapes:
        error = assert_error(add_local(user, path), 400, "path_not_allowed")
        assert str(stack.data_dir / "storages") in error["message"], (path, error)
    assert not Path("/etc/.cloudstrype-storage").exists()
    assert user.api.get("/api/cloud/storages").json()["storages"] == []


def test_the_servers_own_data_folder_is_refused_even_inside_a_root(user, stack):
    # The tests' root (pytest's temporary folder) holds this stack's data directory.
    for path in (stack.data_dir, stack.data_dir / "secrets", stack.data_dir / "staging",
                 stack.data_dir / "staging" / "x"):
        assert_error(add_local(user, str(path)), 400, "path_not_allowed")
    assert not (stack.data_dir / ".cloudstrype-storage").exists()


def test_nul_bytes_control_characters_and_long_paths_are_400(user, tmp_path):
    for path in (f"{tmp_path}/a\x00b", "disk\x00", f"{tmp_path}/a\nb", "x" * 5000,
                 f"{tmp_path}/{'y' * 300}"):
        assert_error(add_local(user, path), 400, "invalid_path")


def test_a_relative_path_lands_in_the_first_root(user, stack):
    created = add_local(user, "mine/disk")
    assert created.status_code == 201, created.text
    assert created.json()["settings"]["path"] == str(stack.data_dir / "storages" / "mine" / "disk")


def test_a_folder_with_files_is_not_claimed_so_its_size_is_not_shown(user, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "someone-elses.bin").write_bytes(b"x" * 123_456)
    error = assert_error(add_local(user, str(tmp_path / "full")), 409, "directory_not_empty")
    assert "123456" not in error["message"]
    assert not (tmp_path / "full" / ".cloudstrype-storage").exists()
    assert user.api.get("/api/cloud/storages").json()["storages"] == []


def test_concurrent_claims_of_one_folder_exactly_one_wins(api, tmp_path):
    users = [register_and_login(api) for _ in range(2)]
    for attempt in range(3):
        folder = str(tmp_path / f"contested-{attempt}")
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n, f=folder: add_local(users[n % 2], f), range(8)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [201] + [409] * 7, [a.text for a in answers]
        for answer in answers:
            if answer.status_code == 409:
                assert answer.json()["error"]["code"] == "directory_in_use"


# -- SSRF: S3 endpoints -----------------------------------------------------------------------

class Listener:
    """Loopback TCP listeners (IPv4 and IPv6, one port) that record every connection."""

    def __init__(self):
        self.connections: list = []
        self.port = free_port()
        self.sockets = []
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self.port))
            sock.listen(16)
            sock.settimeout(0.2)
            self.sockets.append(sock)
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while self.running:
            for sock in self.sockets:
                try:
                    conn, peer = sock.accept()
                except (TimeoutError, OSError):
                    continue
                self.connections.append(peer)
                conn.close()

    def stop(self):
        self.running = False
        self.thread.join()
        for sock in self.sockets:
            sock.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A stack with the default outbound policy, allowing only its own S3 (moto) and a fake
    S3 that answers errors; and a listener nothing may reach."""
    s3_port, fake_port = free_port(), free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    s3.start()
    fake = _ChattyS3(fake_port)
    listener = Listener()
    stack = start_stack(tmp_path_factory.mktemp("guarded"), env={
        "CLOUDSTRYPE_OUTBOUND_ALLOW": f"127.0.0.1:{s3_port}, 127.0.0.1:{fake_port}"})
    try:
        yield stack, f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{fake_port}", listener
    finally:
        assert stack.stop() == 0, stack.log()
        listener.stop()
        fake.stop()
        s3.stop()


class _ChattyS3:
    """An S3 look-alike whose error bodies carry text that must never reach the user."""
    SECRET = "internal-only-7f3a"

    def __init__(self, port: int):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        secret = self.SECRET

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                body = (f"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>{secret}"
                        f"</Message></Error>").encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def add_s3(user, endpoint: str, bucket: str = "bucket-x"):
    return user.api.post("/api/cloud/storages", json={
        "kind": "s3", "config": {"endpoint_url": endpoint, "bucket": bucket, **S3_KEYS}})


def test_endpoints_into_the_servers_network_are_refused_without_a_request(guarded):
    stack, _, _, listener = guarded
    user = register_and_login(Api(stack.url))
    port = listener.port
    for endpoint in (f"http://127.0.0.1:{port}", f"http://localhost:{port}",
                     f"http://[::1]:{port}", f"http://[::ffff:127.0.0.1]:{port}",
                     f"http://127.1.2.3:{port}", f"http://0.0.0.0:{port}",
                     "http://169.254.169.254", "http://[fd00:ec2::254]", "http://10.11.12.13:9000",
                     "http://192.168.1.1", "http://172.16.0.1", "http://100.64.0.1",
                     "http://224.0.0.1", "http://240.0.0.1", f"http://127.0.0.1.nip.invalid:{port}"):
        answer = add_s3(user, endpoint)
        expected = "probe_failed" if endpoint.endswith(f".invalid:{port}") else \
            "endpoint_not_allowed"
        error = assert_error(answer, 400, expected)
        assert "endpoint_url" in error["message"], error
    assert listener.connections == [], "a refused endpoint was connected to"
    assert user.api.get("/api/cloud/storages").json()["storages"] == []


def test_an_allow_listed_endpoint_works(guarded):
    stack, s3_endpoint, _, _ = guarded
    user = register_and_login(Api(stack.url))
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="y")
    s3.create_bucket(Bucket="allowed-ok")
    created = add_s3(user, s3_endpoint, "allowed-ok")
    assert created.status_code == 201, created.text


def test_errors_say_what_failed_without_the_remote_body(guarded):
    stack, _, chatty, _ = guarded
    user = register_and_login(Api(stack.url))
    error = assert_error(add_s3(user, chatty), 400, "probe_failed")
    assert "AccessDenied" in error["message"] and "403" in error["message"]
    assert _ChattyS3.SECRET not in error["message"]


# -- OAuth: return_to is a path on this site ------------------------------------------------

def test_return_to_that_a_browser_reads_as_another_site_is_refused(user):
    for evil in ("/\t/evil.example", "/%09/evil.example", "/\n/evil.example", "/%2F/evil.example",
                 "/%5Cevil.example", "/\r\n/evil.example", "//evil.example", "https://evil.example",
                 "javascript:alert(1)", "/\x7f/evil.example", "/" + "a" * 600):
        answer = user.api.get("/api/cloud/oauth/dropbox/authorize", params={"return_to": evil})
        assert_error(answer, 400, "invalid_return_to")
    kept = user.api.get("/api/cloud/oauth/dropbox/authorize",
                        params={"return_to": "/#/storages?tab=cloud"})
    assert kept.status_code == 200, kept.text


def test_a_data_directory_inside_the_checkout_takes_local_storages():
    """`make run` keeps its data in the checkout (.cloudstrype-data): the default storage root
    (<data-dir>/storages) takes local storages there too, while the checkout's code stays out
    of reach."""
    import shutil
    import uuid
    data_dir = ARTIFACTS / f"data-in-checkout-{uuid.uuid4().hex[:8]}"
    stack = start_stack(data_dir)
    try:
        user = register_and_login(Api(stack.url))
        made = add_local(user, "disk-a")
        assert made.status_code == 201, made.text
        assert made.json()["settings"]["path"] == str(data_dir / "storages" / "disk-a")
        made = add_local(user, str(data_dir / "storages" / "disk-b"))
        assert made.status_code == 201, made.text
        for path in (str(REPO), str(REPO / "layers"), str(data_dir)):
            assert_error(add_local(user, path), 400, "path_not_allowed")
    finally:
        assert stack.stop() == 0, stack.log()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_a_storage_inside_another_storages_folder_is_409(api, user, tmp_path):
    outer = add_local(user, str(tmp_path / "outer"))
    assert outer.status_code == 201, outer.text
    stranger = register_and_login(api)
    for who in (stranger, user):
        error = assert_error(add_local(who, str(tmp_path / "outer" / "sub" / "inner")), 409,
                             "directory_in_use")
        assert "inside" in error["message"]
    assert not (tmp_path / "outer" / "sub").exists()
    beside = add_local(stranger, str(tmp_path / "beside"))
    assert beside.status_code == 201, beside.text


def test_nested_claims_racing_never_both_hold(api, tmp_path):
    """Each claim looked for a storage above it before making its own: claims of a folder and
    of one inside it, at once, could both hold (concurrency sweep: one round in five). At most
    one holds now (all may be refused, each told why, and a claim again then holds)."""
    users = [register_and_login(api) for _ in range(3)]
    for attempt in range(20):
        top = tmp_path / f"nest-{attempt}"
        paths = [top, top / "inner", top / "inner" / "deeper", top]
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda n, p=paths: add_local(users[n % 3], str(p[n])),
                                    range(4)))
        held = [str(paths[n]) for n, a in enumerate(answers) if a.status_code == 201]
        assert len(held) <= 1, (held, [a.text for a in answers])
        for answer in answers:
            if answer.status_code != 201:
                assert answer.json()["error"]["code"] in (
                    "directory_in_use", "directory_not_empty", "concurrent_change"), answer.text
        markers = sorted(str(p.parent) for p in top.rglob(".cloudstrype-storage"))
        assert markers == held, markers


def test_a_marker_left_above_the_storage_root_refuses_nothing(user, stack):
    """The claim's second look walked up to / : a marker left in the data directory (a folder
    that was once a storage's) refused every local storage (review sweep)."""
    stale = stack.data_dir / ".cloudstrype-storage"
    stale.write_text('{"storage_id": "st-000000000000"}')
    try:
        made = add_local(user, "below-a-stale-marker")
        assert made.status_code == 201, made.text
    finally:
        stale.unlink()


def test_a_refused_local_storage_leaves_no_folder_behind(user, tmp_path):
    for config in ({"path": str(tmp_path / "a" / "b"), "capacity": -5},
                   {"path": str(tmp_path / "c"), "no_such_field": 1}):
        response = user.api.post("/api/cloud/storages", json={"kind": "local", "config": config})
        assert_error(response, 400)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
