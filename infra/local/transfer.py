"""Downloads written straight into the CLI's file, for a CLI on the server's own machine.

Over HTTP every byte of a download is copied into a socket by the server and out of it by the
CLI before the CLI writes it: on the benchmark's machine that hop, not the reading, decrypting or
writing, is most of what a 256 MiB `get` costs beyond what one Python process pays (README,
Benchmarks). A CLI run by the same OS user on this machine can instead connect to this Unix
socket (in a 0700 folder of the OS user's own), hand over the file it is writing with its
first message (SCM_RIGHTS: the server never opens a path anyone names), and send GET requests
as it would over HTTP. Each is answered by the gateway's own code (its limits, authentication,
the function and its authorization, see Gateway.respond); a 200 or 206 answer's body is
written into the file at the offset the request names instead of being sent back. A request
without an offset has its answer's body sent back (text only): that is how the CLI asks for
a file's direct-read plan (GET /data/{id}?direct=1, which the function answers to requests
of this socket alone: the CLI then reads the shares' files and decodes them itself, and asks
here, by ranges, for what it cannot read).

The protocol, one JSON object per line each way:
    request  {"path": "/api/...", "query": {...}, "headers": {...}, "into": OFFSET}
    answer   {"status": 206, "headers": {...}, "written": N}     (body written at OFFSET)
          or {"status": 404, "headers": {...}, "body": "..."}    (nothing written)
    request  {"path": "/api/...", "query": {...}, "headers": {...}, "into": null}
    answer   {"status": 200, "headers": {...}, "body": "..."}    (a UTF-8 body, sent back)
          or {"status": 206, "headers": {...}, "write_error": {"errno": 28, "message": "..."}}
             (the answer was the content, but writing it into the file failed)
The file must be a regular file open for writing. A connection whose first message carries
no file may send only requests with "into": null: the CLI's other GETs (listings, a file's
details) come this way too, so a command run against a server on this machine needs no HTTP
client at all (importing one was a sixth of a 256 MiB `get`). A connection idle for
IDLE_SECONDS is closed, and at most MAX_CONNECTIONS are served at once (more are closed at
once). Only GET requests travel here; everything else goes over HTTP. The CLI finds the socket
among its OS user's (socket_path's folder) by asking each
    request  {"path": "/.well-known/cloudstrype-transfer", "query": {}, "headers": {},
              "into": null}
    answer   {"status": 200, "headers": {...},
              "body": "{\"socket\": PATH, \"server\": \"127.0.0.1:8080\"}"}
for the address its server listens on, else at GET /.well-known/cloudstrype-transfer over HTTP
(answered to loopback callers only).
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import socket
import stat
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
# A CLI asks for its next range as soon as it has hashed one: a minute without a line is a
# client gone or stuck, whose thread and descriptor go back.
IDLE_SECONDS = 60.0
# Each connection holds a thread and a descriptor: one stuck local program must not take all
# the server's (HTTP's users share them). A CLI opens 2 x jobs connections.
MAX_CONNECTIONS = 64
# An offset past any file Cloudstrype stores (limits: 1 TiB) is not a range of one.
MAX_OFFSET = 1 << 50
# The refusal of an answer sent back that is not text: the CLI asks for it over HTTP.
NOT_TEXT = "answer_not_text"


def enabled() -> bool:
    return os.environ.get(SWITCH, "on").lower() not in ("off", "0", "false", "no")


def socket_path(data_dir: Path) -> Path:
    """The socket of the server of `data_dir`: in this OS user's own private folder under the
    temporary directory (a data directory's path may be too long for a socket's, 108 bytes),
    named after the data directory, so a restart after a crash reuses it rather than leaving
    one behind. Raises OSError if that folder is not this user's alone."""
    folder = Path(tempfile.gettempdir()) / f"cloudstrype-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    found = os.lstat(folder)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or \
            found.st_mode & 0o077:
        raise OSError(f"{folder} is not a folder of this user's alone")
    name = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:20]
    return folder / f"{name}.sock"


class _Version:
    major, minor = 1, 1


class _NoBody:
    async def iter_chunked(self, _size: int):
        return
        yield b""                           # an async generator that yields nothing


class _Request:
    """A GET from the socket, with the fields Gateway.respond reads of aiohttp's request."""

    content_length = None
    local_transfer = True                   # the function may answer what only this socket gets
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

    def __init__(self, gateway, loop: asyncio.AbstractEventLoop, host: str, path: Path):
        """`path`: where to listen (socket_path(data_dir): one per data directory, whose lock
        makes this server its only user, so a socket left there by a killed one is taken)."""
        self.gateway, self.loop, self.host = gateway, loop, host
        self.path = path
        self.path.unlink(missing_ok=True)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._listener.listen(64)
        self._closed = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        threading.Thread(target=self._accept, name="transfer-accept", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                connection.close()          # the CLI goes over HTTP
                continue
            threading.Thread(target=self._serve, args=(connection,), name="transfer",
                             daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        fd, unusable = None, None
        try:
            if not _same_user(connection):
                return
            connection.settimeout(IDLE_SECONDS)
            data, fds, _flags, _address = socket.recv_fds(connection, MAX_LINE_BYTES, 1)
            for extra in fds[1:]:
                os.close(extra)
            if fds:
                fd = fds[0]
                unusable = _unusable(fd)
            pending = bytearray(data)
            while not self._closed.is_set():
                line = _next_line(connection, pending)
                if line is None:
                    return
                try:
                    answer = _refused(unusable) if unusable else self._answer(line, fd)
                except Exception:           # a request this code did not foresee: answered
                    log.exception("local transfer: a request failed")
                    answer = {"status": 500, "headers": {}, "body": json.dumps({"error": {
                        "code": "internal_error", "message": "The request failed; see the "
                        "server log."}})}
                # (Not ASCII-escaped: a listing's non-ASCII names would take six bytes each.)
                connection.sendall(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
        except OSError:
            pass                            # the CLI went away, or sent nothing for a minute
        finally:
            if fd is not None:
                os.close(fd)
            connection.close()
            self._slots.release()

    def _answer(self, line: bytes, fd: int | None) -> dict:
        try:
            asked = json.loads(line)
            path, query = asked["path"], asked.get("query") or {}
            headers, into = asked.get("headers") or {}, asked["into"]
            if not (isinstance(path, str) and (path.startswith("/api/") or
                                               path == WELL_KNOWN_PATH) and
                    isinstance(query, dict) and isinstance(headers, dict) and
                    all(isinstance(v, str) for v in (*query, *query.values(), *headers,
                                                     *headers.values())) and
                    (into is None or isinstance(into, int) and not isinstance(into, bool) and
                     0 <= into <= MAX_OFFSET)):
                raise ValueError
            for text in (path, *query, *query.values(), *headers, *headers.values()):
                text.encode("utf-8")        # a lone surrogate has no UTF-8: not a name
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeEncodeError):
            return _refused("Each line is a JSON object with 'path' (under /api/), 'query' and "
                            "'headers' (UTF-8 strings) and 'into' (the file offset, 0 to "
                            f"{MAX_OFFSET}, or null to have the answer's body sent back).")
        if path == WELL_KNOWN_PATH:
            # Which server this socket is (its address as the CLI names it): a CLI finds its
            # server's socket among this user's without asking over HTTP first.
            return {"status": 200, "headers": {"Content-Type": "application/json"},
                    "body": json.dumps({"socket": str(self.path), "server": self.host})}
        if fd is None and into is not None:
            return _refused("A request with 'into' writes into a file: the first message must "
                            "carry the open file.")
        request = _Request(path, query, headers, self.host)
        response = asyncio.run_coroutine_threadsafe(self.gateway.respond(request),
                                                    self.loop).result()
        shown = {name: value for name, value in response.headers.items()
                 if name.lower() != "content-length"}
        body = _body_bytes(response.body)
        if response.status not in (200, 206):
            return {"status": response.status, "headers": shown,
                    "body": bytes(body).decode("utf-8", "replace")}
        if into is None:
            try:
                return {"status": response.status, "headers": shown,
                        "body": bytes(body).decode("utf-8")}
            except UnicodeDecodeError:
                return _refused("The answer is not text; give 'into' to have it written into "
                                "the file.", code=NOT_TEXT)
        try:
            with memoryview(body) as view:
                written = 0
                while written < len(view):
                    written += os.pwrite(fd, view[written:], into + written)
        except OSError as exc:
            # The CLI's own file failed (full, too big): its error, as its own write's would be.
            return {"status": response.status, "headers": shown,
                    "write_error": {"errno": exc.errno or 0, "message": exc.strerror or str(exc)}}
        return {"status": response.status, "headers": shown, "written": written}


def _unusable(fd: int) -> str | None:
    """Why the file handed over cannot be written into (None if it can)."""
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    except OSError:
        regular = writable = False
    if regular and writable:
        return None
    return "The file handed over must be a regular file open for writing."


def _refused(message: str, code: str = "bad_request") -> dict:
    return {"status": 400, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"error": {"code": code, "message": message}})}


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
