"""The HTTP client of the desktop commands: one server, one user, tokens kept fresh.

* The server is ``--server``, else ``$CLOUDSTRYPE_SERVER``, else the one logged in to, else
  http://127.0.0.1:8080.
* The bearer token is ``$CLOUDSTRYPE_TOKEN`` when set (used as is, never refreshed or saved),
  else the saved credentials' access token, refreshed when it is within two minutes of expiry or
  when the server answers 401, and saved again.
* Transient failures (connection errors, timeouts, 429, 502, 503, 504) of idempotent requests are
  retried with backoff. Errors become CliError with the server's message and an exit code.
* `Client.stop`, once set (Ctrl-C, or a transfer that found the server unreachable), makes every
  request not yet sent, and every retry waiting for its backoff, raise Cancelled at once.
"""
from __future__ import annotations

import base64
import json
import os
import random
import re
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cloudstrype_client import config, local_transfer
from cloudstrype_client.errors import (
    AUTH,
    BAD_LOCAL_NAME,
    FAILED,
    UNREACHABLE,
    AuthError,
    Cancelled,
    CliError,
    UsageError,
    exit_code_for_status,
)

if TYPE_CHECKING:
    import requests

# `requests` is imported when a request first goes over HTTP: a command whose requests all go
# through a local server's socket (local_transfer) does without it (~70 ms of a `get`).


def _requests():
    import requests
    return requests


class _LocalNoAnswer(Exception):
    """A GET sent through the local socket got no answer in time: a request that failed as
    a timed-out HTTP one does (retried as one, said as one)."""


def _network_errors() -> tuple[type[BaseException], ...]:
    """The errors of a request that got no (whole) answer: the local socket's, and requests'
    if it is loaded (if not, no request went over HTTP, so none can have failed so)."""
    if "requests" not in sys.modules:
        return (_LocalNoAnswer,)
    requests = sys.modules["requests"]
    return (_LocalNoAnswer, requests.ConnectionError, requests.Timeout,
            requests.exceptions.ChunkedEncodingError)

USER_AGENT = "cloudstrype-cli/0.1"
REFRESH_MARGIN = 120                    # seconds before expiry when a token is renewed
# A refresh is asked this many times at most (its backoff ~2 s in all: well inside the minute
# the local server gives the same new token again after an answer lost).
REFRESH_TRIES = 4
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A 429 of the gateway's in-flight limit (infra/local/gateway.py), or deployed API Gateway's
# throttling (infra/constructs/api.py answers it with this code): nothing ran, so any request
# is sent again, about a second apart, for up to this long.
BUSY = "too_many_requests"
BUSY_WAIT_SECONDS = 120.0
# A wait the server asks for that is said (shorter ones pass unsaid).
WAIT_TOLD_SECONDS = 5
CONNECT_TIMEOUT = 10
# The gateway answers every request within 29 s (API Gateway's integration timeout, which the
# local gateway keeps too: a 504 then), so a server silent past this is gone quiet: waiting 120 s
# five times made `ls` against a stalled server take ten minutes.
READ_TIMEOUT = 35
# A request's body is sent under the same socket timeout, which counts the whole send: a 4 MiB
# part on a slow uplink took longer than any fixed wait (every part of a file over 4 MiB timed
# out, and was sent again, below ~35 KB/s). A body may take as long as this rate allows.
SLOWEST_UPLOAD_BYTES_PER_SECOND = 8 * 1024
# How much of a body of unknown length is read at a time.
READ_PIECE = 1024 * 1024
# The filesystem routes that take ?share= (docs/sharing-api.md): all but the caller's own
# sharing, trash and account routes. Listed by exclusion so that a route added later never
# writes into the caller's own tree by mistake (the server refuses ?share= in its own words
# where it does not take it).
SHARE_SCOPED = re.compile(
    r"^/api/filesystem/(?!(shares|shared|links|public|trash|settings|usage)(/|$))")


def normalize_server(url: str) -> str:
    """The server's address as requests are made to it: http:// added when no scheme is
    given; anything but an http(s) address with a host is refused (a usage error)."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:
        scheme, host = None, None
    if scheme not in ("http", "https") or not host:
        raise UsageError(f"The server address {url.strip()!r} is not an http:// or https:// "
                         f"address with a host, such as http://127.0.0.1:8080.")
    return text.rstrip("/")


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
    return CliError(message, exit_code_for_status(response.status_code, code),
                    status=response.status_code, code=code)


_NOT_ASKED = object()


def _token_username(token: str) -> str | None:
    """The username a JWT's claims name (Cognito's or the local identity's claim), or None."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        name = claims.get("cognito:username") or claims.get("username")
    except (IndexError, ValueError, AttributeError, TypeError):
        return None
    return name if isinstance(name, str) and name else None


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
        self._transfer_lock = threading.Lock()
        self._transfer_socket: str | None | object = _NOT_ASKED
        self._discovered: str | None | object = _NOT_ASKED
        self._discover_lock = threading.Lock()     # (transfer_socket holds its own meanwhile)
        self.stop = threading.Event()   # set: the command is stopping; no new request goes
        # Told, once per reason, when the server asks for a wait of some seconds before a
        # retry (storages out of reach): a command waiting minutes does not look hung.
        self.on_wait = None
        self._waits_told: set[str] = set()
        self._waits_lock = threading.Lock()
        # Refusals for storages out of reach that one request waited out in full and still
        # met: the command's other requests are not made to wait as long again for them.
        self._waited_out: set[str] = set()

    # -- construction from the command line ------------------------------------------------------

    @classmethod
    def from_args(cls, args, *, need_auth: bool = True, pool_size: int = 16) -> "Client":
        saved = config.load_credentials()
        chosen = getattr(args, "server", None) or os.environ.get("CLOUDSTRYPE_SERVER")
        server = normalize_server(chosen or config.remembered_server() or
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
        """Whose the requests are: the login's user, or (CLOUDSTRYPE_TOKEN) the user the token
        names, read without checking it (the server checks it; here it only keeps one user's
        resumable uploads apart from another's)."""
        if self.credentials:
            return self.credentials.get("username")
        return _token_username(self.fixed_token) if self.fixed_token else None

    # -- sessions --------------------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            requests = _requests()
            from requests.adapters import HTTPAdapter
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
        """New tokens from the refresh token, saved; a no-op when another thread, or another
        process sharing the credentials file, just did it. (The server replaces the refresh
        token on use: two processes refreshing at once would leave one of them refused.)"""
        with self._refresh_lock, config.locked(config.credentials_path()):
            creds = self.credentials
            if creds is None:
                raise AuthError("Not logged in; run 'cloudstrype login'.")
            if stale_token is not None and creds["access_token"] != stale_token:
                return                  # another thread refreshed meanwhile
            saved = config.load_credentials()
            if saved and saved["access_token"] != creds["access_token"] and \
                    (saved["server"], saved.get("username")) == \
                    (creds["server"], creds.get("username")):
                self.credentials = creds = saved     # another process refreshed meanwhile
                if float(saved.get("expires_at") or 0) - time.time() >= REFRESH_MARGIN:
                    return
            if not creds.get("refresh_token"):
                raise AuthError("Your session has expired; run 'cloudstrype login' again.")
            response = self._refresh_answer(creds["refresh_token"])
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

    def _refresh_answer(self, refresh_token: str) -> requests.Response:
        """POST /api/auth/refresh, asked again after an answer lost on the way (a connection
        that failed, a gateway's 502/504) or a busy server: the local server replaces the
        refresh token at each use, and gives the same new one again for a minute after
        (an answer lost signed the CLI out: the token it kept had been replaced)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send("POST", "/api/auth/refresh",
                                      json={"refresh_token": refresh_token}, auth=None)
            except _network_errors() as exc:
                if attempt >= REFRESH_TRIES:
                    raise CliError(f"Cannot reach the server at {self.server} to refresh the "
                                   f"login ({_failure(exc)}: {_short(exc)}).",
                                   UNREACHABLE) from None
                self.backoff(attempt)
                continue
            if response.status_code in (429, 502, 503, 504) and attempt < REFRESH_TRIES:
                self.backoff(attempt, response.headers.get("Retry-After"))
                continue
            return response

    # -- requests --------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, auth: str | None, headers: dict | None = None,
              timeout=None, **kwargs) -> requests.Response:
        all_headers = dict(headers or {})
        if auth:
            all_headers["Authorization"] = f"Bearer {auth}"
        if timeout is None:
            sending = _body_length(kwargs)
            timeout = (CONNECT_TIMEOUT,
                       max(READ_TIMEOUT, sending / SLOWEST_UPLOAD_BYTES_PER_SECOND))
        if method == "GET" and set(kwargs) <= {"params"}:
            answer = self._local_get(path, kwargs.get("params"), all_headers)
            if answer is not None:
                return answer
        try:
            return self.session.request(method, self.server + path, headers=all_headers,
                                        timeout=timeout, **kwargs)
        except _requests().exceptions.InvalidURL as exc:
            raise CliError(f"The server address {self.server!r} is not a valid URL ({exc}).",
                           2) from None
        except UnicodeEncodeError:
            # A name from a local file that is not UTF-8 (Python holds its bytes as
            # surrogates): it cannot travel. Refused here whatever the caller checked.
            raise CliError("A name is not valid UTF-8, so it cannot be a remote name; rename "
                           "the file.", FAILED, code=BAD_LOCAL_NAME) from None

    def request(self, method: str, path: str, *, auth: bool = True, retry: bool | None = None,
                ok: tuple[int, ...] | None = None, what: str | None = None,
                resend_lost: bool = True, **kwargs) -> requests.Response:
        """Send a request; a status outside `ok` (default: any 2xx/3xx) raises CliError.

        `retry` (default: for GET, HEAD, PUT, DELETE) re-sends after transient failures; bodies
        passed as bytes can be re-sent, generators cannot. `resend_lost` False: not after one
        whose answer may have been lost on the way (the connection failed, a gateway's 502 or
        504), which the caller settles itself (it may have done its work)."""
        if retry is None:
            retry = method.upper() in ("GET", "HEAD", "PUT", "DELETE")
        kwargs["params"] = self._scoped(path, kwargs.get("params"))
        response = self._exchange(
            lambda token: self._send(method, path, auth=token, **kwargs), auth=auth,
            attempts=self.retries + 1 if retry else 1, resend_lost=resend_lost)
        if (ok is not None and response.status_code not in ok) or \
                (ok is None and response.status_code >= 400):
            raise self._refusal(response, what, auth)
        return response

    def delete_settled(self, path: str, *, ok: tuple[int, ...],
                       what: str | None = None) -> requests.Response:
        """DELETE `path`; when an attempt's answer was lost on the way (it may have done the
        work), the next attempt's 404 means it did (a retried delete said "not found" though
        the first one had deleted)."""
        try:
            return self.request("DELETE", path, ok=ok, resend_lost=False, what=what)
        except CliError as exc:
            if not answer_lost(exc):
                raise
        self.backoff(1)
        return self.request("DELETE", path, ok=ok + (404,), what=what)

    def _scoped(self, path: str, params: dict | None) -> dict | None:
        """The query of a request to `path`: inside the client's share, if it works in one."""
        if self.share and SHARE_SCOPED.match(path):
            return {**(params or {}), "share": self.share}
        return params

    def _exchange(self, send, *, auth: bool, attempts: int,
                  resend_lost: bool = True) -> requests.Response:
        """send(token) until its answer stands: again after a failure that may pass (a lost
        connection, 429/502/503/504) up to `attempts` times, with backoff; once more with
        fresh tokens after a 401 that refuses the token."""
        refreshed = False
        attempt = 0
        busy_since, busy_waits = None, 0
        while True:
            attempt += 1
            if self.stop.is_set():
                raise Cancelled()
            token = self._token() if auth else None
            if auth and not token:
                raise AuthError("Not logged in; run 'cloudstrype login'.")
            try:
                response = send(token)
            except _network_errors() as exc:
                # (ChunkedEncodingError: the answer's body broke off as it was read)
                if attempt < attempts and resend_lost:
                    self.backoff(attempt)
                    continue
                raise CliError(f"Cannot reach the server at {self.server} ({_failure(exc)}: "
                               f"{_short(exc)}).", UNREACHABLE) from None
            if response.status_code == 401 and auth and not self.fixed_token \
                    and self.credentials and not refreshed and _token_refused(response):
                refreshed = True
                response.close()        # (a streamed answer holds its connection until then)
                self.refresh(token)
                continue
            if response.status_code == 429 and _error_code(response) == BUSY:
                # The gateway ran none of it (this caller has its most requests in flight):
                # sent again, whatever the request, until the others end - several commands
                # of one user at once gave up after ~4 s of this and failed their files.
                busy_since = busy_since or time.monotonic()
                if time.monotonic() - busy_since < BUSY_WAIT_SECONDS:
                    response.close()
                    busy_waits += 1
                    attempt -= 1
                    self.backoff(min(busy_waits, 3), response.headers.get("Retry-After"))
                    continue
            if response.status_code in (502, 504) and not resend_lost:
                return response         # the answer may be lost, the work done: the caller's
            if response.status_code in RETRY_STATUSES and not _for_good(response):
                code = _error_code(response) if response.status_code == 503 else None
                if code in WAITED_OUT_ONCE:
                    with self._waits_lock:
                        if code in self._waited_out:
                            return response     # waited out in full once: not again
                        if attempt >= attempts:
                            self._waited_out.add(code)
                if attempt < attempts:
                    self._tell_wait(response)
                    response.close()
                    self.backoff(attempt, response.headers.get("Retry-After"))
                    continue
            return response

    def _tell_wait(self, response: requests.Response) -> None:
        """Say once per reason why the command waits, when the server asks for some seconds."""
        retry_after = response.headers.get("Retry-After", "")
        if self.on_wait is None or not retry_after.isdigit() or \
                int(retry_after) < WAIT_TOLD_SECONDS:
            return
        try:
            reason = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            reason = f"the server answered {response.status_code}"
        with self._waits_lock:
            if reason in self._waits_told:
                return
            self._waits_told.add(reason)
        self.on_wait(f"waiting to try again ({retry_after} s): {reason}")

    def _refusal(self, response: requests.Response, what: str | None, auth: bool) -> CliError:
        error = error_from_response(response, what)
        if error.exit_code == AUTH and self.fixed_token and response.status_code == 401:
            error.message = f"CLOUDSTRYPE_TOKEN was refused: {error.message}"
        elif response.status_code == 401 and auth and _token_refused(response):
            error.message += " Run 'cloudstrype login'."
        return error

    # -- a server on this machine (local_transfer.py) --------------------------------------------

    def transfer_socket(self) -> str | None:
        """The server's local transfer socket, if it is on this machine (asked once)."""
        with self._transfer_lock:
            if self._transfer_socket is _NOT_ASKED:
                self._transfer_socket = local_transfer.locate(self)
            return self._transfer_socket

    def found_socket(self) -> str | None:
        """The server's socket as found among this user's (local_transfer.discover), looked
        for once: the plain GETs and a download's socket both use it."""
        with self._discover_lock:
            if self._discovered is _NOT_ASKED:
                self._discovered = local_transfer.discover(self.server)
            return self._discovered

    def _local_get(self, path: str, params: dict | None, headers: dict
                   ) -> local_transfer.Answer | None:
        """A GET sent through the local transfer socket, its answer sent back (each thread its
        own connection); None where it cannot go so (no socket found, a query that is not
        plain text, the socket failing twice): then over HTTP, as before."""
        query: dict[str, str] = {}
        for name, value in (params or {}).items():
            if value is None:
                continue                # (as requests leaves it out)
            if not isinstance(value, (str, int, float)):
                return None
            query[str(name)] = str(value)           # (as requests sends it: True, 1.5)
        found = self.found_socket()
        if found is None:
            return None
        try:
            for text in (path, *query.values()):
                text.encode("utf-8")
        except UnicodeEncodeError:
            return None             # refused in HTTP's words (_send)
        sent = {**headers, "User-Agent": USER_AGENT}
        for fresh in (False, True):
            channel = getattr(self._local, "channel", None)
            try:
                if channel is None or fresh:
                    channel = self._local.channel = local_transfer.Channel(found, None,
                                                                           READ_TIMEOUT)
                answer = channel.get(path, query, sent, None)[0]
                if answer.status_code == 400 and _error_code(answer) == local_transfer.NOT_TEXT:
                    return None         # a body that is not text: over HTTP
                return answer
            except local_transfer.Unavailable as exc:
                # (A connection the server closed after a minute idle fails once; a new
                # one is tried before HTTP. One that got no answer in time, or an answer too
                # long to read, is out of step with the server: closed either way.)
                if channel is not None:
                    channel.close()
                self._local.channel = None
                if isinstance(exc, local_transfer.NoAnswer):
                    raise _LocalNoAnswer(str(exc)) from None     # retried as a timeout is
                if isinstance(exc, local_transfer.AnswerTooLong):
                    return None
        return None

    def get_into_file(self, channel: local_transfer.Channel, path: str, *, params: dict,
                      headers: dict, into: int | None, ok: tuple[int, ...], what: str | None
                      ) -> tuple[requests.Response, int]:
        """A GET whose body the server writes into the channel's file at `into`: (the answer,
        bytes written); `into` None: the answer with its (text) body, nothing written.
        Retried, refreshed and refused as `request` does; raises local_transfer.Unavailable
        when the socket fails (the caller goes over HTTP)."""
        query = self._scoped(path, params) or {}
        written = 0

        def send(token: str) -> requests.Response:
            nonlocal written
            response, written = channel.get(path, query, {
                **headers, "Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}, into)
            return response

        response = self._exchange(send, auth=True, attempts=self.retries + 1)
        if response.status_code not in ok:
            raise self._refusal(response, what, True)
        return response, written

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
            body = self.open_body(path, ok=ok, what=what, **kwargs)
            try:
                if body.length is None:
                    return body.read_all(), body.headers
                if into is not None and len(into) >= body.length:
                    buffer = into if len(into) == body.length else \
                        memoryview(into)[:body.length]
                else:
                    buffer = bytearray(body.length)
                body.readinto(memoryview(buffer))
                return buffer, body.headers
            except BodyBroken as exc:
                if attempt < attempts:
                    self.backoff(attempt)
                    continue
                raise CliError(f"{what or path}: the connection broke {attempts} times while "
                               f"the bytes were arriving ({_short(exc)}); run the command "
                               f"again.", FAILED) from None
            finally:
                body.close()

    def open_body(self, path: str, *, ok: tuple[int, ...] = (200,), what: str | None = None,
                  **kwargs) -> Body:
        """A GET answered (status and headers read) whose body is still on its connection, to
        be read in pieces with Body.readinto and then closed. Failing to connect is retried
        as any request is; a connection that breaks while the body arrives raises BodyBroken
        from readinto, for the caller to ask again for what is missing."""
        return Body(self.request("GET", path, ok=ok, what=what, stream=True, **kwargs))

    def get_json(self, path: str, **kwargs) -> dict:
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, body: dict | None = None, **kwargs) -> dict:
        response = self.request("POST", path, json=body if body is not None else {}, **kwargs)
        return response.json() if response.content else {}

    def backoff(self, attempt: int, retry_after: str | None = None) -> None:
        """Wait before attempt `attempt` + 1; Cancelled at once when the command stops."""
        delay = min(8.0, 0.25 * 2 ** (attempt - 1)) * random.uniform(0.7, 1.3)
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(30.0, float(retry_after)))
        if self.stop.wait(delay):
            raise Cancelled()


class BodyBroken(Exception):
    """The connection broke, or ended, before the body's announced length."""


class Body:
    """An answer's body left on its connection. With a Content-Length (and no encoding) it is
    read from the socket straight into the caller's buffers (see _socket_readinto)."""

    def __init__(self, response: requests.Response):
        self.response = response
        self.headers = response.headers
        length = response.headers.get("Content-Length", "")
        self.length = int(length) if length.isdigit() and \
            not response.headers.get("Content-Encoding") else None
        self.received = 0
        self._readinto = _socket_readinto(response) if self.length else None

    def readinto(self, view: memoryview) -> None:
        """Fill all of `view` with the body's next bytes."""
        got, wanted = 0, len(view)
        if self.received + wanted > (self.length or 0):
            raise ValueError(f"{wanted} bytes asked past the body's {self.length}")
        try:
            while got < wanted:
                count = self._readinto(view[got:])
                if not count:
                    raise BodyBroken(f"the body ended after {self.received + got} of "
                                     f"{self.length} bytes")
                got += count
        except (OSError, ValueError, sys.modules["urllib3"].exceptions.HTTPError) as exc:
            raise BodyBroken(str(exc)) from None
        finally:
            self.received += got

    def read_all(self) -> bytes:
        """A body of unknown length (or encoded), whole."""
        try:
            return b"".join(self.response.iter_content(chunk_size=READ_PIECE))
        except _network_errors() as exc:
            raise BodyBroken(str(exc)) from None

    def close(self) -> None:
        if self.length is not None and self.received == self.length:
            # Read to its end: the connection goes back to the pool for the next request.
            # (Closing the response would close it: urllib3 did not see the body read.)
            self.response.raw.release_conn()
        else:
            self.response.close()


# 401s that are about something else than the request's token (a password it carries).
_NOT_THE_TOKEN = frozenset({"wrong_password"})


# 503s that say trying again will not help (data damaged past its redundancy).
_NOT_PASSING = frozenset({"chunk_damaged"})


# 503s for storages out of reach: waited for (Retry-After) once in full by a command; its
# other requests then fail at once instead of each waiting as long again (a folder of files
# took minutes each while a member was away).
WAITED_OUT_ONCE = frozenset({"storages_unavailable"})


def _error_code(response: requests.Response) -> str | None:
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        code = response.json().get("error", {}).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) else None


def _for_good(response: requests.Response) -> bool:
    """Whether a 503 says the failure will not pass by itself (then it is not retried)."""
    return response.status_code == 503 and _error_code(response) in _NOT_PASSING


def _token_refused(response: requests.Response) -> bool:
    """Whether a 401 refuses the token (worth a refresh, then a login), not a password the
    request carried."""
    try:
        code = response.json().get("error", {}).get("code")
    except (ValueError, AttributeError):
        return True
    return code not in _NOT_THE_TOKEN


def _socket_readinto(response: requests.Response):
    """What fills a buffer with the body: http.client's readinto, which reads from the socket
    into it, when urllib3 has read nothing of the body yet. urllib3's own readinto reads into a
    new bytes object and copies that: a 4 MiB allocation, its page faults and a copy per
    range."""
    import http.client
    raw = response.raw
    plain = getattr(raw, "_fp", None)
    if isinstance(plain, http.client.HTTPResponse) and not plain.chunked and \
            getattr(raw, "_fp_bytes_read", None) == 0 and not getattr(raw, "_decoded_buffer", None):
        return plain.readinto
    return raw.readinto


def answer_lost(exc: CliError) -> bool:
    """Whether a request that failed so may have done its work all the same (what a request
    sent with resend_lost=False leaves to its caller): the connection failed, perhaps after the
    request was sent, or a gateway lost the server's answer."""
    return exc.exit_code == UNREACHABLE or exc.status in (502, 504)


def _body_length(kwargs: dict) -> int:
    """The bytes a request's body carries (data as bytes, files as (name, bytes, ...))."""
    total = 0
    data = kwargs.get("data")
    if isinstance(data, (bytes, bytearray, memoryview)):
        total += len(data)
    for value in (kwargs.get("files") or {}).values():
        content = value[1] if isinstance(value, tuple) and len(value) > 1 else value
        if isinstance(content, (bytes, bytearray, memoryview)):
            total += len(content)
    return total


def _failure(exc: Exception) -> str:
    """What went wrong with a request that got no answer, in a word or three."""
    if isinstance(exc, _LocalNoAnswer):
        return "no answer in time"
    requests = _requests()
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    text = str(exc)
    if isinstance(exc, requests.exceptions.ConnectionError) and any(
            marker in text for marker in ("NewConnectionError", "Connection refused",
                                          "Name or service not known", "No route to host")):
        return "could not connect"
    return "the connection was lost"


def _short(exc: Exception) -> str:
    text = str(exc)
    # urllib3 nests reasons; the last clause is the useful one
    if "Caused by" in text or "(" in text:
        for marker in ("Connection refused", "Name or service not known", "timed out",
                       "No route to host", "Connection reset", "Connection broken",
                       "Connection aborted", "Remote end closed connection"):
            if marker in text:
                return marker
    return text[:160]
