"""The local transfer socket (infra/local/transfer.py) against a stand-in gateway, for what a
running stack cannot show quickly: a client that sends nothing is let go, connections past the
cap are closed, a file that cannot be written into is refused before anything runs, requests
no JSON line should carry are answered 400 (the connection goes on), and a write into the
file that fails is answered as such, which the CLI raises as its own write's error."""
from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import threading
import time

import pytest
from aiohttp import web
from cloudstrype_client import local_transfer

from infra.local import transfer


class Gateway:
    """Answers every GET with ten bytes of content, and counts the calls."""

    def __init__(self):
        self.calls = 0

    async def respond(self, request) -> web.Response:
        self.calls += 1
        return web.Response(status=206, body=b"0123456789",
                            headers={"Content-Range": "bytes 0-9/10"})


@pytest.fixture
def served(monkeypatch, tmp_path):
    monkeypatch.setattr(transfer, "IDLE_SECONDS", 0.5)
    monkeypatch.setattr(transfer, "MAX_CONNECTIONS", 2)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    gateway = Gateway()
    opened = transfer.TransferSocket(gateway, loop, "127.0.0.1:1", tmp_path / "t.sock")
    yield opened, gateway
    opened.close()
    loop.call_soon_threadsafe(loop.stop)


def _connect(opened) -> socket.socket:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(5)
    connection.connect(str(opened.path))
    return connection


def _ask(connection, request, fd=None) -> dict:
    line = (request if isinstance(request, bytes) else json.dumps(request).encode()) + b"\n"
    if fd is None:
        connection.sendall(line)
    else:
        socket.send_fds(connection, [line], [fd])
    answer = b""
    while not answer.endswith(b"\n"):
        more = connection.recv(65536)
        assert more, "the server closed the connection without an answer"
        answer += more
    return json.loads(answer)


GOOD = {"path": "/api/filesystem/data/f", "query": {}, "headers": {}, "into": 0}


def test_a_client_that_sends_nothing_is_let_go(served):
    opened, _ = served
    with _connect(opened) as idle:
        started = time.monotonic()
        assert idle.recv(10) == b""
        assert time.monotonic() - started < 4


def test_connections_past_the_cap_are_closed_at_once(served, tmp_path):
    opened, _ = served
    first, second = _connect(opened), _connect(opened)
    try:
        time.sleep(0.1)
        with _connect(opened) as third:
            assert third.recv(10) == b""
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("kind", ["read-only file", "pipe", "directory"])
def test_a_file_that_cannot_be_written_into_is_refused_before_anything_runs(served, tmp_path,
                                                                             kind):
    opened, gateway = served
    target = tmp_path / "f"
    target.write_bytes(b"")
    if kind == "read-only file":
        fd, other = os.open(target, os.O_RDONLY), None
    elif kind == "pipe":
        fd, other = os.pipe()
    else:
        fd, other = os.open(tmp_path, os.O_RDONLY), None
    try:
        with _connect(opened) as connection:
            answer = _ask(connection, GOOD, fd)
    finally:
        os.close(fd)
        if other is not None:
            os.close(other)
    assert answer["status"] == 400 and "regular file open for writing" in answer["body"]
    assert gateway.calls == 0


@pytest.mark.parametrize("bad", [
    {**GOOD, "path": "/api/filesystem/data/\ud800"},
    {**GOOD, "headers": {"Range": "\ud800"}},
    {**GOOD, "query": {"version": "\ud800"}},
    {**GOOD, "into": 2 ** 64},
    {**GOOD, "into": True},
])
def test_a_request_no_line_should_carry_is_a_400_and_the_connection_goes_on(served, tmp_path,
                                                                           bad):
    opened, gateway = served
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with _connect(opened) as connection:
            refused = _ask(connection, json.dumps(bad).encode(), fd)
            answered = _ask(connection, GOOD)
    finally:
        os.close(fd)
    assert refused["status"] == 400 and "UTF-8 strings" in refused["body"], refused
    assert answered["status"] == 206 and answered["written"] == 10
    assert gateway.calls == 1
    assert (tmp_path / "f").read_bytes() == b"0123456789"


def test_a_failed_write_is_answered_and_the_cli_raises_it_as_its_own(tmp_path):
    """The server side of the pair is a plain socket answering as the server does when its
    pwrite fails; the CLI's channel raises the errno it names."""
    where = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(where))
    server.listen(1)

    def answer() -> None:
        connection, _ = server.accept()
        with connection:
            socket.recv_fds(connection, 65536, 1)
            connection.sendall(json.dumps({"status": 206, "headers": {}, "write_error": {
                "errno": errno.ENOSPC, "message": "No space left on device"}}).encode() + b"\n")

    threading.Thread(target=answer, daemon=True).start()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    channel = local_transfer.Channel(str(where), fd, 5)
    try:
        with pytest.raises(OSError) as raised:
            channel.get("/api/filesystem/data/f", {}, {}, 0)
    finally:
        channel.close()
        os.close(fd)
        server.close()
    assert raised.value.errno == errno.ENOSPC


def test_one_socket_per_data_directory_in_a_private_folder(tmp_path):
    """A restart (after kill -9 too) takes its data directory's socket again rather than
    leaving one behind; two data directories get two."""
    first = transfer.socket_path(tmp_path / "a")
    assert first == transfer.socket_path(tmp_path / "a")
    assert first != transfer.socket_path(tmp_path / "b")
    assert first.parent.stat().st_mode & 0o777 == 0o700
    assert len(str(first)) < 100


def test_a_socket_left_by_a_killed_server_is_taken(tmp_path):
    where = tmp_path / "left.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(where))
    left.close()                            # its file stays, as after kill -9
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    opened = transfer.TransferSocket(Gateway(), loop, "127.0.0.1:1", where)
    try:
        with _connect(opened) as connection:
            fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                assert _ask(connection, GOOD, fd)["written"] == 10
            finally:
                os.close(fd)
    finally:
        opened.close()
        loop.call_soon_threadsafe(loop.stop)
    assert not where.exists()
