"""Downloads written straight into the CLI's file, for a CLI on the server's own machine.

Over HTTP every byte of a download is copied into a socket by the server and out of it by the
CLI before the CLI writes it: on the benchmark's machine that hop, not the reading, decrypting or
writing, is most of what a 256 MiB `get` costs beyond what one Python process pays (README,
Benchmarks). A CLI run by the same OS user on this machine can instead connect to this Unix
socket (in a directory of the server's own, 0700), hand over the file it is writing with its
first message (SCM_RIGHTS: the server never opens a path anyone names), and send GET requests
as it would over HTTP. Each is answered by the gateway's own code (its limits, authentication,
the function and its authorization, see Gateway.respond); a 200 or 206 answer's body is
written into the file at the offset the request names instead of being sent back.

The protocol, one JSON object per line each way:
    request  {"path": "/api/...", "query": {...}, "headers": {...}, "into": OFFSET}
    answer   {"status": 206, "headers": {...}, "written": N}     (body written at OFFSET)
          or {"status": 404, "headers": {...}, "body": "..."}    (nothing written)
Only GET requests travel here; everything else goes over HTTP. The CLI finds the socket at
GET /.well-known/cloudstrype-transfer (answered to loopback callers only).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import struct
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urlencode

log = logging.getLogger("cloudstrype.local")

WELL_KNOWN_PATH = "/.well-known/cloudstrype-transfer"
# A request line is a path, a query and headers: API Gateway's own bound on those, with room.
MAX_LINE_BYTES = 64 * 1024
# CLOUDSTRYPE_LOCAL_TRANSFER=off: downloads go over HTTP only.
SWITCH = "CLOUDSTRYPE_LOCAL_TRANSFER"


def enabled() -> bool:
    return os.environ.get(SWITCH, "on").lower() not in ("off", "0", "false", "no")


class _Version:
    major, minor = 1, 1


class _NoBody:
    async def iter_chunked(self, _size: int):
        return
        yield b""                           # an async generator that yields nothing


class _Request:
    """A GET from the socket, with the fields Gateway.respond reads of aiohttp's request."""

    content_length = None
    method = "GET"
    version = _Version()
    content = _NoBody()

    def __init__(self, path: str, query: dict[str, str], headers: dict[str, str], host: str):
        from multidict import CIMultiDict, MultiDict
        self.path = unquote(path)
        self.raw_path = path + (f"?{urlencode(query)}" if query else "")
        self.rel_url = type("RelUrl", (), {"raw_path": path})()
        self.headers = CIMultiDict(headers)
        self.raw_headers = tuple((k.encode(), v.encode()) for k, v in headers.items())
        self.query = MultiDict(query)
        self.remote = "127.0.0.1"
        self.host = host


class TransferSocket:
    """The socket, its thread accepting connections and one thread per connection."""

    def __init__(self, gateway, loop: asyncio.AbstractEventLoop, host: str):
        self.gateway, self.loop, self.host = gateway, loop, host
        self.directory = Path(tempfile.mkdtemp(prefix="cloudstrype-"))     # 0700
        self.path = self.directory / "transfer.sock"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._listener.listen(64)
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="transfer-accept", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), name="transfer",
                             daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        fd = None
        try:
            if not _same_user(connection):
                return
            data, fds, _flags, _address = socket.recv_fds(connection, MAX_LINE_BYTES, 1)
            if fds:
                fd = fds[0]
                for extra in fds[1:]:
                    os.close(extra)
            pending = bytearray(data)
            while not self._closed.is_set():
                line = _next_line(connection, pending)
                if line is None:
                    return
                answer = self._answer(line, fd)
                connection.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass                            # the CLI went away
        finally:
            if fd is not None:
                os.close(fd)
            connection.close()

    def _answer(self, line: bytes, fd: int | None) -> dict:
        try:
            asked = json.loads(line)
            path, query = asked["path"], asked.get("query") or {}
            headers, into = asked.get("headers") or {}, asked["into"]
            if not (isinstance(path, str) and path.startswith("/api/") and
                    isinstance(query, dict) and isinstance(headers, dict) and
                    all(isinstance(v, str) for v in (*query, *query.values(), *headers,
                                                     *headers.values())) and
                    isinstance(into, int) and into >= 0):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return _refused("Each line is a JSON object with 'path' (under /api/), 'query' and "
                            "'headers' (strings) and 'into' (the file offset, 0 or more).")
        if fd is None:
            return _refused("The first message must carry the open file to write into.")
        request = _Request(path, query, headers, self.host)
        response = asyncio.run_coroutine_threadsafe(self.gateway.respond(request),
                                                    self.loop).result()
        shown = {name: value for name, value in response.headers.items()
                 if name.lower() != "content-length"}
        body = _body_bytes(response.body)
        if response.status not in (200, 206):
            return {"status": response.status, "headers": shown,
                    "body": bytes(body).decode("utf-8", "replace")}
        with memoryview(body) as view:
            written = 0
            while written < len(view):
                written += os.pwrite(fd, view[written:], into + written)
        return {"status": response.status, "headers": shown, "written": written}


def _refused(message: str) -> dict:
    return {"status": 400, "headers": {},
            "body": json.dumps({"error": {"code": "bad_request", "message": message}})}


def _body_bytes(body) -> bytes | bytearray | memoryview:
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return body
    return body._value                      # aiohttp's BytesPayload around the function's bytes


def _next_line(connection: socket.socket, pending: bytearray) -> bytes | None:
    while b"\n" not in pending:
        if len(pending) > MAX_LINE_BYTES:
            return None
        more = connection.recv(MAX_LINE_BYTES)
        if not more:
            return None
        pending += more
    end = pending.index(b"\n")
    line = bytes(pending[:end])
    del pending[:end + 1]
    return line


def _same_user(connection: socket.socket) -> bool:
    """Only the server's own OS user: its directory already keeps others out; this is the
    check that does not depend on it."""
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                        struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return uid == os.getuid()
