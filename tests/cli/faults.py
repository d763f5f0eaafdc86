"""A reverse proxy in front of the local stack that breaks chosen requests, for the CLI's retry
and failure tests.

Every request is passed to the stack unchanged and its answer passed back, except those a rule
picks (method, path and optionally the Range header, for the first `times` matches or all):

* ``status``: answered with that HTTP status and an error body, the stack never sees it;
* ``drop``: the request is read, then the connection closed with no answer (a part lost on the
  way);
* ``cut``: the stack's answer goes back with its full Content-Length but only half its body,
  then the connection closes (a download broken half-way);
* ``lost``: the stack does the request, then the connection closes with none of its answer
  (the work done, the answer lost on the way back);
* ``slow``: passed on as any other, after waiting ``delay`` seconds (a slow network, so that a
  test can interrupt a transfer half-way);
* ``call``: passed on as any other, after ``call()`` has run (something done to the server at
  that very moment, e.g. a file replaced between two ranges of its download).

Every request seen is recorded as (method, path, Range header), broken or not.

A proxy stands for a network between the CLI and the server, so it does not pass on where the
server's local transfer socket is (local_transfer.py), unless told to (`local_socket`: PASS, or
the path to answer instead).
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PASS = "pass"
WELL_KNOWN_PATH = "/.well-known/cloudstrype-transfer"
# Not passed on: they describe one connection, not the message.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te",
              "trailer", "upgrade"}


@dataclass
class Rule:
    method: str
    path: re.Pattern
    action: str                      # "status", "drop", "cut", "lost" or "slow"
    status: int = 0
    delay: float = 0.0
    range: re.Pattern | None = None
    times: int | None = None         # None: every match
    hits: int = 0
    retry_after: int | None = None   # "status": sent as its Retry-After
    code: str = "injected"           # "status": the error code of its body
    message: str | None = None       # "status": the error message of its body
    call: Callable[[], None] | None = None  # "call": run before the request is passed on

    def picks(self, method: str, path: str, range_header: str) -> bool:
        if method != self.method or not self.path.search(path):
            return False
        if self.range is not None and not self.range.search(range_header):
            return False
        return self.times is None or self.hits < self.times


@dataclass
class FaultyProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    local_socket: str | None = None  # None: not found; PASS: the stack's; else this path
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        target = urlsplit(self.upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"           # keep-alive, as the CLI's sessions expect

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                range_header = self.headers.get("Range") or ""
                rule = proxy._pick(self.command, path, range_header)
                if path == WELL_KNOWN_PATH and proxy.local_socket != PASS:
                    found = proxy.local_socket is not None
                    payload = json.dumps({"socket": proxy.local_socket} if found else
                                         {"error": {"code": "not_found"}}).encode()
                    self.send_response(200 if found else 404)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if rule is not None and rule.action == "drop":
                    self._close()
                    return
                if rule is not None and rule.action == "slow":
                    time.sleep(rule.delay)
                if rule is not None and rule.action == "call":
                    rule.call()
                if rule is not None and rule.action == "status":
                    payload = json.dumps({"error": {
                        "code": rule.code,
                        "message": rule.message or f"injected failure {rule.status}"}}
                    ).encode()
                    self.send_response(rule.status)
                    self.send_header("Content-Type", "application/json")
                    if rule.retry_after is not None:
                        self.send_header("Retry-After", str(rule.retry_after))
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
                    upstream.request(self.command, self.path, body=body or None,
                                     headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                if rule is not None and rule.action == "lost":
                    self._close()
                    return
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if rule is not None and rule.action == "cut":
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self._close()
                    return
                self.wfile.write(data)

            def _close(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            do_GET = do_PUT = do_POST = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _pick(self, method: str, path: str, range_header: str) -> Rule | None:
        with self._lock:
            self.seen.append((method, path, range_header))
            for rule in self.rules:
                if rule.picks(method, path, range_header):
                    rule.hits += 1
                    return rule
            return None

    def fail(self, method: str, path: str, action: str, *, status: int = 0,
             range: str | None = None, times: int | None = 1, delay: float = 0.0,
             retry_after: int | None = None, code: str = "injected",
             message: str | None = None) -> Rule:
        """Break requests matching `method` and the `path` regex (and the `range` regex)."""
        rule = Rule(method, re.compile(path), action, status, delay,
                    re.compile(range) if range else None, times, retry_after=retry_after,
                    code=code, message=message)
        with self._lock:
            self.rules.append(rule)
        return rule

    def before(self, method: str, path: str, call: Callable[[], None], *,
               range: str | None = None, times: int | None = 1) -> Rule:
        """Run `call` before passing on requests matching `method`, `path` (and `range`)."""
        rule = Rule(method, re.compile(path), "call", range=re.compile(range) if range else None,
                    times=times, call=call)
        with self._lock:
            self.rules.append(rule)
        return rule

    def heal(self) -> None:
        """Break nothing from now on."""
        with self._lock:
            self.rules.clear()

    def count(self, method: str, path: str, range: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, p, r in self.seen if m == method and re.search(path, p)
                       and (range is None or re.search(range, r)))

    def env(self, token: str) -> dict:
        """The CLI's environment to go through this proxy as the user of `token`."""
        return {"CLOUDSTRYPE_SERVER": self.url, "CLOUDSTRYPE_TOKEN": token}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
