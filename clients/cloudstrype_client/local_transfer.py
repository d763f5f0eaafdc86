"""Downloads from a server on this machine written by the server straight into the file.

`cloudstrype serve` opens a Unix socket for this (its infra/local/transfer.py describes it):
the CLI hands over the file it is writing and asks for ranges as it would over HTTP; the server
writes each range's bytes into the file instead of sending them, which saves the copy into a
socket and out of it. The CLI then reads each range back (from the page cache) for its
end-to-end SHA-256, as it hashes what arrives over HTTP. Any server but one on this machine (or
CLOUDSTRYPE_LOCAL_TRANSFER=off) gets HTTP.
"""
from __future__ import annotations

import json
import os
import socket
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

# The server's infra/local/transfer.py declares these; tests/cli checks the copies.
WELL_KNOWN_PATH = "/.well-known/cloudstrype-transfer"
MAX_LINE_BYTES = 64 * 1024
SWITCH = "CLOUDSTRYPE_LOCAL_TRANSFER"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class Unavailable(Exception):
    """The socket cannot carry this download (gone, closed, refused): HTTP then."""


def enabled() -> bool:
    return os.environ.get(SWITCH, "on").lower() not in ("off", "0", "false", "no")


def locate(client) -> str | None:
    """The transfer socket of the client's server, if it is on this machine and has one."""
    if not enabled() or not hasattr(socket, "send_fds") or \
            urlsplit(client.server).hostname not in LOOPBACK:
        return None
    try:
        response = client.session.get(client.server + WELL_KNOWN_PATH, timeout=(2, 5))
        found = response.json().get("socket") if response.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) and os.path.exists(found) else None


class Channel:
    """One connection to the socket; the file goes with its first request."""

    def __init__(self, path: str, fd: int, timeout: float):
        self.fd = fd
        self.sent_file = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as exc:
            self.sock.close()
            raise Unavailable(f"cannot connect to {path}: {exc}") from None
        self.reader = self.sock.makefile("rb")

    def get(self, path: str, query: dict, headers: dict, into: int) -> tuple[
            requests.Response, int]:
        """(the answer as a requests.Response without its body if it was written, the bytes
        written into the file at `into`)."""
        line = json.dumps({"path": path, "query": query, "headers": headers,
                           "into": into}).encode() + b"\n"
        try:
            if self.sent_file:
                self.sock.sendall(line)
            else:
                socket.send_fds(self.sock, [line], [self.fd])
                self.sent_file = True
            answer = self.reader.readline(MAX_LINE_BYTES)
        except OSError as exc:
            raise Unavailable(f"the transfer socket failed: {exc}") from None
        if not answer.endswith(b"\n"):
            raise Unavailable("the server closed the transfer socket")
        try:
            parsed = json.loads(answer)
            failed = parsed.get("write_error")
        except (ValueError, AttributeError):
            raise Unavailable("the transfer socket answered something else than JSON") \
                from None
        if isinstance(failed, dict):
            # The server could not write into this file (full, too big): as if the CLI's own
            # write had failed, which HTTP would meet too.
            number = int(failed.get("errno") or 0)
            message = str(failed.get("message") or "the write into the file failed")
            raise OSError(number, message) if number else OSError(message)
        try:
            response = requests.Response()
            response.status_code = int(parsed["status"])
            response.headers = CaseInsensitiveDict(parsed.get("headers") or {})
            response._content = str(parsed.get("body") or "").encode()
            response.encoding = "utf-8"
            return response, int(parsed.get("written") or 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Unavailable("the transfer socket answered something else than JSON") \
                from None

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
