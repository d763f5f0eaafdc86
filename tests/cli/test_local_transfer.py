"""`cloudstrype get` from a server on this machine: the server writes a large file's ranges into
the CLI's own file through its local socket (infra/local/transfer.py, local_transfer.py), none
of them over HTTP; a socket that fails sends the download over HTTP instead. The socket itself
is held to what HTTP is: only GETs under /api/, authorized as they are there, and nothing
written into the file for an answer that is not the content."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import uuid

import pytest
from cloudstrype_client import local_transfer

from infra.local import transfer
from tests.cli.faults import PASS, WELL_KNOWN_PATH
from tests.cli.test_download_check import _upload_with_declared_sha256
from tests.support import Api, register_and_login, start_stack

MiB = 1024 * 1024
RANGES = r"^/api/filesystem/data/"


def _stored(user, size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    directory = f"/lt-{uuid.uuid4().hex[:8]}"
    _upload_with_declared_sha256(user, directory, "big.bin", data,
                                 hashlib.sha256(data).hexdigest())
    return f"{directory}/big.bin", data


def test_the_cli_and_the_server_agree_on_the_socket_protocol():
    assert local_transfer.WELL_KNOWN_PATH == transfer.WELL_KNOWN_PATH == WELL_KNOWN_PATH
    assert local_transfer.MAX_LINE_BYTES == transfer.MAX_LINE_BYTES
    assert local_transfer.SWITCH == transfer.SWITCH


def test_a_large_get_from_this_machine_is_written_by_the_server(cli, cli_user, proxy, tmp_path):
    proxy.local_socket = PASS                   # as if the proxy were not there
    path, data = _stored(cli_user, 9 * MiB + 3)
    cli.ok("get", "-q", path, str(tmp_path / "got.bin"), env=proxy.env(cli_user.access_token))
    assert (tmp_path / "got.bin").read_bytes() == data
    assert proxy.count("GET", WELL_KNOWN_PATH) == 1
    assert proxy.count("GET", RANGES) == 0      # all three ranges came through the socket


def test_a_server_across_a_network_sends_it_over_http(cli, cli_user, proxy, tmp_path):
    path, data = _stored(cli_user, 9 * MiB + 3)
    cli.ok("get", "-q", path, str(tmp_path / "got.bin"), env=proxy.env(cli_user.access_token))
    assert (tmp_path / "got.bin").read_bytes() == data
    assert proxy.count("GET", RANGES, range="bytes=") == 3


def test_a_socket_that_fails_leaves_the_download_to_http(cli, cli_user, proxy, tmp_path):
    """A socket that takes the file and hangs up: the CLI says so and downloads over HTTP."""
    broken = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    where = tmp_path / "broken.sock"
    broken.bind(str(where))
    broken.listen(8)

    def hang_up() -> None:
        while True:
            try:
                connection, _ = broken.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    proxy.local_socket = str(where)
    try:
        path, data = _stored(cli_user, 9 * MiB + 3)
        done = cli.ok("get", path, str(tmp_path / "got.bin"),
                      env=proxy.env(cli_user.access_token))
    finally:
        broken.close()
    assert (tmp_path / "got.bin").read_bytes() == data
    assert "local socket failed" in done.stderr and "downloading over HTTP" in done.stderr
    assert proxy.count("GET", RANGES, range="bytes=") == 3


# -- the socket itself ----------------------------------------------------------------------------

def _ask(socket_path: str, fd: int | None, *requests: dict) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(60)
        connection.connect(socket_path)
        reader = connection.makefile("rb")
        answers = []
        for n, request in enumerate(requests):
            line = (request if isinstance(request, bytes) else
                    json.dumps(request).encode()) + b"\n"
            if n == 0 and fd is not None:
                socket.send_fds(connection, [line], [fd])
            else:
                connection.sendall(line)
            answers.append(json.loads(reader.readline()))
        return answers


def _range(node_id: str, token: str, first: int, last: int) -> dict:
    return {"path": f"/api/filesystem/data/{node_id}", "query": {},
            "headers": {"Authorization": f"Bearer {token}", "Range": f"bytes={first}-{last}"},
            "into": first}


def test_the_socket_writes_only_what_the_caller_may_read(api, stack, cli_user, tmp_path):
    where = api.get(WELL_KNOWN_PATH).json()["socket"]
    path, data = _stored(cli_user, 5 * MiB)
    node_id = cli_user.api.get("/api/filesystem/info", params={"path": path}).json()["id"]
    stranger = register_and_login(api)
    target = tmp_path / "out.bin"
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        theirs, forged, mine = _ask(
            where, fd, _range(node_id, stranger.access_token, 0, 99),
            _range(node_id, "not-a-token", 0, 99),
            _range(node_id, cli_user.access_token, MiB, 2 * MiB - 1))
    finally:
        os.close(fd)
    assert theirs["status"] == 404 and "written" not in theirs, theirs
    assert forged["status"] == 401 and "written" not in forged, forged
    assert mine["status"] == 206 and mine["written"] == MiB, mine
    assert mine["headers"]["Content-Range"] == f"bytes {MiB}-{2 * MiB - 1}/{len(data)}"
    written = target.read_bytes()
    assert written[:MiB] == bytes(MiB) and written[MiB:] == data[MiB:2 * MiB]


@pytest.mark.parametrize("request_line,fix", [
    (b"not json", "JSON object"),
    ({"path": "/config.json", "query": {}, "headers": {}, "into": 0}, "under /api/"),
    ({"path": "/api/filesystem/info", "query": {"a": 1}, "headers": {}, "into": 0}, "strings"),
    ({"path": "/api/filesystem/info", "query": {}, "headers": {}, "into": -1}, "offset"),
])
def test_the_socket_names_what_is_wrong_with_a_request(api, tmp_path, request_line, fix):
    where = api.get(WELL_KNOWN_PATH).json()["socket"]
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        (answer,) = _ask(where, fd, request_line)
    finally:
        os.close(fd)
    assert answer["status"] == 400 and fix in answer["body"], answer
    assert (tmp_path / "out.bin").stat().st_size == 0


def test_a_request_without_the_file_is_refused(api, cli_user):
    where = api.get(WELL_KNOWN_PATH).json()["socket"]
    (answer,) = _ask(where, None, _range("x", cli_user.access_token, 0, 9))
    assert answer["status"] == 400 and "open file" in answer["body"], answer


def test_switched_off_there_is_no_socket(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("no-socket"),
                        env={"CLOUDSTRYPE_LOCAL_TRANSFER": "off"})
    try:
        answer = Api(stack.url).get(WELL_KNOWN_PATH)
        assert answer.status_code == 404, answer.text
    finally:
        assert stack.stop() == 0, stack.log()
