"""The HTTP client of the desktop commands: one server, one user, tokens kept fresh.

* The server is ``--server``, else ``$CLOUDSTRYPE_SERVER``, else the one logged in to, else
  http://127.0.0.1:8080.
* The bearer token is ``$CLOUDSTRYPE_TOKEN`` when set (used as is, never refreshed or saved),
  else the saved credentials' access token, refreshed when it is within two minutes of expiry or
  when the server answers 401, and saved again.
* Transient failures (connection errors, timeouts, 429, 502, 503, 504) of idempotent requests are
  retried with backoff. Errors become CliError with the server's message and an exit code.
"""
from __future__ import annotations

import http.client
import os
import random
import re
import threading
import time
from collections.abc import Mapping

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from cloudstrype_client import config
from cloudstrype_client.errors import (
    AUTH,
    FAILED,
    UNREACHABLE,
    AuthError,
    CliError,
    exit_code_for_status,
)

USER_AGENT = "cloudstrype-cli/0.1"
REFRESH_MARGIN = 120                    # seconds before expiry when a token is renewed
RETRY_STATUSES = frozenset({429, 502, 503, 504})
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 120
# How much of a body of unknown length is read at a time.
READ_PIECE = 1024 * 1024
# The filesystem routes that take ?share= (docs/sharing-api.md): all but the caller's own
# sharing, trash and account routes. Listed by exclusion so that a route added later (and
# uploads, which the server refuses inside a share in its own words) never writes into the
# caller's own tree by mistake.
SHARE_SCOPED = re.compile(
    r"^/api/filesystem/(?!(shares|shared|links|public|trash|settings|usage)(/|$))")


def normalize_server(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def error_from_response(response: requests.Response, what: str | None = None) -> CliError:
    code, message = None, None
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code, message = error.get("code"), error.get("message")
    except ValueError:
        pass
    if not message:
        text = (response.text or "").strip().replace("\n", " ")
        message = f"the server answered HTTP {response.status_code}" + (
            f": {text[:200]}" if text else ".")
    if what:
        message = f"{what}: {message}"
    return CliError(message, exit_code_for_status(response.status_code),
                    status=response.status_code, code=code)


class Client:
    def __init__(self, server: str, credentials: dict | None = None, token: str | None = None,
                 *, retries: int = 4, pool_size: int = 16, share: str | None = None):
        self.server = normalize_server(server)
        self.share = share      # a share id: the filesystem routes work inside that share
        self.credentials = credentials
        self.fixed_token = token
        self.retries = retries
        self.pool_size = pool_size
        self._local = threading.local()
        self._refresh_lock = threading.Lock()

    # -- construction from the command line ------------------------------------------------------

    @classmethod
    def from_args(cls, args, *, need_auth: bool = True, pool_size: int = 16) -> "Client":
        saved = config.load_credentials()
        chosen = getattr(args, "server", None) or os.environ.get("CLOUDSTRYPE_SERVER")
        server = normalize_server(chosen or (saved or {}).get("server") or
                                  config.DEFAULT_SERVER)
        token = os.environ.get("CLOUDSTRYPE_TOKEN") or None
        if token:
            return cls(server, token=token, pool_size=pool_size)
        if saved and normalize_server(saved["server"]) == server:
            return cls(server, saved, pool_size=pool_size)
        if need_auth:
            if saved:
                raise AuthError(f"You are logged in to {saved['server']}, not {server}; run "
                                f"'cloudstrype login --server {server}'.")
            raise AuthError(f"Not logged in; run 'cloudstrype login --server {server}' (or set "
                            f"CLOUDSTRYPE_TOKEN).")
        return cls(server, pool_size=pool_size)

    @property
    def username(self) -> str | None:
        return (self.credentials or {}).get("username")

    # -- sessions --------------------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.pool_size)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = USER_AGENT
            self._local.session = session
        return session

    # -- tokens ----------------------------------------------------------------------------------

    def _token(self) -> str | None:
        if self.fixed_token:
            return self.fixed_token
        if not self.credentials:
            return None
        if float(self.credentials.get("expires_at") or 0) - time.time() < REFRESH_MARGIN:
            self.refresh(self.credentials["access_token"])
        return self.credentials["access_token"]

    def refresh(self, stale_token: str | None = None) -> None:
        """New tokens from the refresh token, saved; a no-op when another thread just did it."""
        with self._refresh_lock:
            creds = self.credentials
            if creds is None:
                raise AuthError("Not logged in; run 'cloudstrype login'.")
            if stale_token is not None and creds["access_token"] != stale_token:
                return                  # someone else refreshed meanwhile
            if not creds.get("refresh_token"):
                raise AuthError("Your session has expired; run 'cloudstrype login' again.")
            response = self._send("POST", "/api/auth/refresh",
                                  json={"refresh_token": creds["refresh_token"]}, auth=None)
            if response.status_code in (400, 401, 403):
                error = error_from_response(response)
                raise AuthError(f"Your session has expired ({error.message}); run "
                                f"'cloudstrype login' again.")
            if response.status_code != 200:
                raise error_from_response(response, "refreshing the login")
            fresh = config.tokens_to_credentials(creds["server"], creds.get("username"),
                                                 response.json(), creds.get("refresh_token"))
            self.credentials = fresh
            config.save_credentials(fresh)

    # -- requests --------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, auth: str | None, headers: dict | None = None,
              timeout=None, **kwargs) -> requests.Response:
        all_headers = dict(headers or {})
        if auth:
            all_headers["Authorization"] = f"Bearer {auth}"
        try:
            return self.session.request(method, self.server + path, headers=all_headers,
                                        timeout=timeout or (CONNECT_TIMEOUT, READ_TIMEOUT),
                                        **kwargs)
        except requests.exceptions.InvalidURL as exc:
            raise CliError(f"The server address {self.server!r} is not a valid URL ({exc}).",
                           2) from None

    def request(self, method: str, path: str, *, auth: bool = True, retry: bool | None = None,
                ok: tuple[int, ...] | None = None, what: str | None = None,
                **kwargs) -> requests.Response:
        """Send a request; a status outside `ok` (default: any 2xx/3xx) raises CliError.

        `retry` (default: for GET, HEAD, PUT, DELETE) re-sends after transient failures; bodies
        passed as bytes can be re-sent, generators cannot."""
        if retry is None:
            retry = method.upper() in ("GET", "HEAD", "PUT", "DELETE")
        if self.share and SHARE_SCOPED.match(path):
            kwargs["params"] = {**(kwargs.get("params") or {}), "share": self.share}
        attempts = self.retries + 1 if retry else 1
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            token = self._token() if auth else None
            if auth and not token:
                raise AuthError("Not logged in; run 'cloudstrype login'.")
            try:
                response = self._send(method, path, auth=token, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < attempts:
                    self._backoff(attempt)
                    continue
                kind = "timed out" if isinstance(exc, requests.Timeout) else "could not connect"
                raise CliError(f"Cannot reach the server at {self.server} ({kind}: "
                               f"{_short(exc)}).", UNREACHABLE) from None
            if response.status_code == 401 and auth and not self.fixed_token \
                    and self.credentials and not refreshed:
                refreshed = True
                response.close()        # (a streamed answer holds its connection until then)
                self.refresh(token)
                continue
            if response.status_code in RETRY_STATUSES and attempt < attempts:
                response.close()
                self._backoff(attempt, response.headers.get("Retry-After"))
                continue
            break
        if (ok is not None and response.status_code not in ok) or \
                (ok is None and response.status_code >= 400):
            error = error_from_response(response, what)
            if error.exit_code == AUTH and self.fixed_token and response.status_code == 401:
                error.message = f"CLOUDSTRYPE_TOKEN was refused: {error.message}"
            elif response.status_code == 401 and auth:
                error.message += " Run 'cloudstrype login'."
            raise error
        return response

    def get_bytes(self, path: str, *, ok: tuple[int, ...] = (200,), what: str | None = None,
                  into: bytearray | None = None,
                  **kwargs) -> tuple[bytes | bytearray | memoryview, Mapping[str, str]]:
        """(body, headers) of a GET. A body of known length is read straight into one buffer
        (not in requests' 10 KiB pieces joined afterwards: a 4 MiB range costs a few reads and
        no copy): `into`, if it is large enough (the body is then a view of its start), else a
        new one. A connection that breaks while it arrives is retried as a failed request
        is."""
        attempts = self.retries + 1
        attempt = 0
        while True:
            attempt += 1
            response = self.request("GET", path, ok=ok, what=what, stream=True, **kwargs)
            length = response.headers.get("Content-Length", "")
            try:
                if length.isdigit() and int(length) > 0 and \
                        not response.headers.get("Content-Encoding"):
                    return _read_exactly(response, int(length), into), response.headers
                return b"".join(response.iter_content(chunk_size=READ_PIECE)), response.headers
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError, _ShortBody) as exc:
                response.close()
                if attempt < attempts:
                    self._backoff(attempt)
                    continue
                raise CliError(f"{what or path}: the connection broke {attempts} times while "
                               f"the bytes were arriving ({_short(exc)}); run the command "
                               f"again.", FAILED) from None

    def get_json(self, path: str, **kwargs) -> dict:
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, body: dict | None = None, **kwargs) -> dict:
        response = self.request("POST", path, json=body if body is not None else {}, **kwargs)
        return response.json() if response.content else {}

    @staticmethod
    def _backoff(attempt: int, retry_after: str | None = None) -> None:
        delay = min(8.0, 0.25 * 2 ** (attempt - 1)) * random.uniform(0.7, 1.3)
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(30.0, float(retry_after)))
        time.sleep(delay)


class _ShortBody(Exception):
    """The connection ended before the body's announced length."""


def _read_exactly(response: requests.Response, length: int,
                  into: bytearray | None = None) -> bytearray | memoryview:
    if into is not None and len(into) >= length:
        buffer = into if len(into) == length else memoryview(into)[:length]
    else:
        buffer = bytearray(length)
    view, got = memoryview(buffer), 0
    readinto = _socket_readinto(response)
    try:
        while got < length:
            count = readinto(view[got:])
            if not count:
                raise _ShortBody(f"the body ended after {got} of {length} bytes")
            got += count
    except (OSError, ValueError, urllib3.exceptions.HTTPError) as exc:
        raise _ShortBody(str(exc)) from None
    finally:
        response.close()
    return buffer


def _socket_readinto(response: requests.Response):
    """What fills a buffer with the body: http.client's readinto, which reads from the socket
    into it, when urllib3 has read nothing of the body yet. urllib3's own readinto reads into a
    new bytes object and copies that: a 4 MiB allocation, its page faults and a copy per
    range."""
    raw = response.raw
    plain = getattr(raw, "_fp", None)
    if isinstance(plain, http.client.HTTPResponse) and not plain.chunked and \
            getattr(raw, "_fp_bytes_read", None) == 0 and not getattr(raw, "_decoded_buffer", None):
        return plain.readinto
    return raw.readinto


def _short(exc: Exception) -> str:
    text = str(exc)
    # urllib3 nests reasons; the last clause is the useful one
    if "Caused by" in text or "(" in text:
        for marker in ("Connection refused", "Name or service not known", "timed out",
                       "No route to host", "Connection reset"):
            if marker in text:
                return marker
    return text[:160]
