"""The CLI's client reads a body of known length from the socket straight into the caller's
buffer (http.client's readinto), not through urllib3's readinto, which reads into a new bytes
object and copies it; a buffer given is filled in place and used again. Against a small local
HTTP server."""
from __future__ import annotations

import http.client
import http.server
import os
import sys
import threading

import pytest
from cloudstrype_client import api

BODY = os.urandom(3 * 1024 * 1024 + 17)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/ranges"):
            return self._range()
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for first in range(0, len(BODY), 1 << 20):
                piece = BODY[first:first + (1 << 20)]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        _PEERS.append(self.client_address)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def _range(self):
        asked = self.headers["Range"]
        _RANGES_ASKED.append(asked)
        first, last = (int(n) for n in asked.removeprefix("bytes=").split("-"))
        shown = f"bytes {first}-{last}/{len(BODY)}"
        if "wrong" in self.path and first > 0:
            shown = f"bytes {first + 1}-{last + 1}/{len(BODY)}"
        self.send_response(206)
        self.send_header("Content-Range", shown)
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        self.wfile.write(BODY[first:last + 1])

    def log_message(self, *args):
        pass


_RANGES_ASKED: list[str] = []
_PEERS: list[tuple] = []


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that closes a body part-way resets its connection: expected here.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_body_of_known_length_is_read_from_the_socket_into_the_buffer_given(server,
                                                                             monkeypatch):
    client = api.Client(server, token="t")
    used = []
    real = api._socket_readinto

    def spy(response):
        reader = real(response)
        used.append(reader)
        return reader
    monkeypatch.setattr(api, "_socket_readinto", spy)
    buffer = bytearray(4 * 1024 * 1024)
    body, headers = client.get_bytes("/plain", into=buffer)
    assert bytes(body) == BODY
    assert isinstance(body, memoryview) and body.obj is buffer, "filled in place"
    assert isinstance(used[0].__self__, http.client.HTTPResponse), used[0]
    # Again into the same buffer (a download uses its range buffers again).
    body2, _ = client.get_bytes("/plain", into=buffer)
    assert bytes(body2) == BODY and body2.obj is buffer
    # Too small a buffer, or none: a new one of the body's size.
    small = bytearray(10)
    body3, _ = client.get_bytes("/plain", into=small)
    assert bytes(body3) == BODY and small == bytearray(10)


def test_a_chunked_body_is_read_whole_without_the_shortcut(server):
    client = api.Client(server, token="t")
    body, headers = client.get_bytes("/chunked")
    assert bytes(body) == BODY


def test_a_download_lets_the_kernel_drop_pages_once_they_are_written_back(monkeypatch):
    """Each range written starts its writeback; the pages of the range written eight ranges
    before are dropped (written back by then), each range's once, none past the file."""
    from cloudstrype_client import transfer
    calls = []
    monkeypatch.setattr(transfer.os, "posix_fadvise",
                        lambda fd, start, length, advice: calls.append((start, length, advice)))
    size = transfer.RANGE_SIZE
    total = 20 * size - 100                     # the last range is short
    written, dropped, done = [], [], 0
    while done < total:
        last = min(size, total - done)
        done += last
        calls.clear()
        transfer._let_pages_go(7, done, last)
        assert all(advice == transfer.os.POSIX_FADV_DONTNEED for *_, advice in calls)
        written.append(calls[0][:2])
        dropped.extend(call[:2] for call in calls[1:])
    assert written == [(n * size, min(size, total - n * size)) for n in range(20)]
    assert dropped == [(n * size, size) for n in range(12)]      # all but the last eight


@pytest.fixture
def small_ranges(monkeypatch):
    from cloudstrype_client import transfer
    monkeypatch.setattr(transfer, "RANGE_SIZE", 1024 * 1024)
    _RANGES_ASKED.clear()
    return transfer


def test_ranges_are_read_in_order_in_pieces_from_one_buffer(server, small_ranges):
    """A file's bytes come to the consumer in order, READ_PIECE at a time, every piece a view
    of the same buffer; the ranges were asked for ahead (the window) before being read."""
    from concurrent.futures import ThreadPoolExecutor
    transfer = small_ranges
    client = api.Client(server, token="t")
    got, buffers, asked_when_first_read = [], set(), []

    def consume(offset, piece):
        if not got:
            asked_when_first_read.append(len(_RANGES_ASKED))
        assert offset == sum(len(p) for p in got)
        assert len(piece) <= transfer.READ_PIECE
        buffers.add(id(piece.obj))
        got.append(bytes(piece))

    with ThreadPoolExecutor(max_workers=3) as pool:
        transfer._read_ranges(client, "/ranges", {}, {}, len(BODY), "f", pool, 3, consume)
    assert b"".join(got) == BODY
    assert len(buffers) == 1
    assert sorted(_RANGES_ASKED) == sorted(
        f"bytes={n}-{min(len(BODY), n + 1024 * 1024) - 1}"
        for n in range(0, len(BODY), 1024 * 1024))
    # Reading began once the first range was answered; the window asked for up to 3 at once.
    assert 1 <= asked_when_first_read[0] <= 3


def test_a_range_answered_for_other_bytes_is_refused(server, small_ranges):
    from concurrent.futures import ThreadPoolExecutor
    transfer = small_ranges
    client = api.Client(server, token="t")
    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(
            transfer.CliError, match=r"f: the server sent the wrong range \(bytes 1048577-"):
        transfer._read_ranges(client, "/ranges-wrong", {}, {}, len(BODY), "f", pool, 2,
                              lambda offset, piece: None)


def test_a_consumer_that_fails_stops_the_download(server, small_ranges):
    """What the consumer raises ends the read at once: no range past the window is asked for,
    and the ranges answered meanwhile are closed (their connections are not left waiting)."""
    from concurrent.futures import ThreadPoolExecutor
    transfer = small_ranges
    client = api.Client(server, token="t")

    def consume(offset, piece):
        raise OSError("disk full")

    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(OSError, match="disk full"):
        transfer._read_ranges(client, "/ranges", {}, {}, len(BODY), "f", pool, 2, consume)
    assert len(_RANGES_ASKED) <= 2


def test_a_body_read_to_its_end_leaves_its_connection_for_the_next_request(server):
    """Read in place (past urllib3), a body read whole still gives its connection back to the
    pool; one left part-way closes it (what is left of it would be read as the next answer)."""
    client = api.Client(server, token="t")
    _PEERS.clear()
    for _ in range(3):
        body, _ = client.get_bytes("/plain")
        assert bytes(body) == BODY
    assert len(_PEERS) == 3 and len(set(_PEERS)) == 1
    opened = client.open_body("/plain")
    opened.readinto(memoryview(bytearray(1000)))
    opened.close()
    body, _ = client.get_bytes("/plain")
    assert bytes(body) == BODY
    assert len(set(_PEERS)) == 2
