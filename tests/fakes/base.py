"""What every fake provider shares: a real HTTP server on 127.0.0.1 (werkzeug, in a thread, on
an ephemeral port), an OAuth2 authorization server (authorize page, token endpoint with the
authorization_code and refresh_token grants, PKCE S256 checks, expiring access tokens), and
switches that make the next requests fail, and a rate limit on writes (`limit_writes`) that
answers the provider's own throttling response and counts whether the client obeyed it.
Downloads (`serve_file`) honour a Range header as the providers do (206 + Content-Range, 416
past the end) and count the file bytes they send (`bytes_served`).

Each of the provider's hosts is served under its own path prefix on the one port — the
provider's `dropbox_content` base URL is `<server>/content` — so a client that sends a request
to the wrong host gets a 404 instead of passing by accident.
"""
from __future__ import annotations

import abc
import base64
import email.utils
import hashlib
import json
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from werkzeug.http import parse_options_header, parse_range_header
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"

Handler = Callable[..., Response]


class FakeProvider(abc.ABC):
    name = ""                          # the provider, as in cloudstrype.backends.oauth.PROVIDERS
    roles: tuple[str, ...] = ()        # its hosts, each served under /<role>
    authorize_path = ""                # full path on this server, including the role prefix
    token_path = ""
    pkce = True                        # does the provider support PKCE (S256)?
    rotates_refresh_tokens = False     # does a refresh retire the old refresh token?
    basic_client_auth = True           # does the token endpoint accept HTTP Basic client auth?
    access_token_lifetime = 3600

    def __init__(self, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET):
        self.client_id = client_id
        self.client_secret = client_secret
        self.lock = threading.RLock()
        self.quota_bytes = 1 << 30
        # Observations for tests.
        self.api_calls: list[str] = []           # "METHOD /path" of every API request
        self.token_grants: list[str] = []        # grant_type of every token request
        self.token_requests: list[dict] = []     # their form fields, client secret removed
        self.authorize_requests: list[dict] = []
        # OAuth state.
        self._codes: dict[str, dict] = {}
        self._access_tokens: dict[str, float] = {}    # token -> expiry (time.time())
        self._refresh_tokens: set[str] = set()
        # Whose each token is: "" for the one account everything is stored in, or the name
        # a consent gave as `fake_account` (another account of this provider: its own id in
        # the current-account answer; the files are the fake's one set).
        self._token_accounts: dict[str, str] = {}
        # Injected failures for the next API requests (that match a method and path, if given).
        self._failures: list[_Failure] = []
        self._token_failures: deque[int] = deque()
        self._token_answers: deque[Response] = deque()
        self._routes: list[tuple[str, re.Pattern, Handler, str, bool]] = []
        # The write rate limit (off until limit_writes) and what it saw.
        self._write_limit: _WriteLimit | None = None
        self.writes_accepted = 0     # writes that passed the limit
        self.throttled = 0           # throttling answers sent
        self.early_requests = 0      # requests that came before an announced Retry-After elapsed
        # Downloads: file bytes sent in bodies, the Range header of each (None: no header), and
        # a switch to answer a Range with the whole file (200), which HTTP allows.
        self.bytes_served = 0
        self.download_ranges: list[str | None] = []
        self.honour_ranges = True
        self._server = None
        self._thread: threading.Thread | None = None
        self.route("GET", self.authorize_path, self._authorize, kind="oauth")
        self.route("POST", self.token_path, self._token, kind="oauth")
        self.add_routes()

    # --- for subclasses -----------------------------------------------------------------------

    @abc.abstractmethod
    def add_routes(self) -> None:
        """Register the provider's API endpoints with `route`."""

    @abc.abstractmethod
    def error(self, status: int, code: str | None, message: str,
              headers: dict | None = None) -> Response:
        """An error response in the provider's own format."""

    def auth_error(self, reason: str) -> Response:
        """401 for a missing, unknown ("invalid") or expired ("expired") access token."""
        return self.error(401, reason, f"access token {reason}")

    @abc.abstractmethod
    def used_bytes(self) -> int:
        """Bytes stored, as the provider's quota endpoint reports them."""

    def token_extras(self) -> dict:
        return {}

    def route(self, method: str, pattern: str, handler: Handler, *, kind: str = "api",
              write: bool = False) -> None:
        """kind: "api" (bearer token checked, failures injected), "oauth", or "public"
        (pre-authenticated download URLs). `write`: counts against the write rate limit."""
        self._routes.append((method, re.compile(pattern), handler, kind, write))

    def serve_file(self, request: Request, data: bytes, headers: dict | None = None) -> Response:
        """A file download: all of `data` (200), or the one byte range a Range header asks for
        (206 + Content-Range), or 416 + Content-Range "bytes */<size>" for a range that starts
        past the end. A Range header that is malformed or asks for several ranges is ignored
        (RFC 9110 allows both) and the whole file is sent."""
        header = request.headers.get("Range")
        parsed = parse_range_header(header) if header and self.honour_ranges else None
        headers = {"Accept-Ranges": "bytes", **(headers or {})}
        with self.lock:
            self.download_ranges.append(header)
            if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
                self.bytes_served += len(data)
                return Response(data, headers=headers, mimetype="application/octet-stream")
            span = parsed.range_for_length(len(data))
            if span is None:
                return self.error(416, None, "requested range not satisfiable",
                                  {**headers, "Content-Range": f"bytes */{len(data)}"})
            start, stop = span
            self.bytes_served += stop - start
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
            return Response(data[start:stop], status=206, headers=headers,
                            mimetype="application/octet-stream")

    def throttle(self, retry_after: str | None) -> Response:
        """The provider's answer to a client over its rate limit (Retry-After, if given)."""
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return self.error(429, None, "rate limit exceeded", headers)

    # Whether the throttling answer names a time to come back (Google Drive's 403 does not:
    # the client is to back off exponentially).
    announces_retry_after = True

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "FakeProvider":
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url_overrides(self) -> dict[str, str]:
        """The CLOUDSTRYPE_PROVIDER_URL_OVERRIDES entries that point the client here."""
        return {f"{self.name}_{role}": f"{self.url}/{role}" for role in self.roles}

    # --- switches -----------------------------------------------------------------------------

    def fail_next(self, status: int, *, times: int = 1, code: str | None = None,
                  retry_after: float | None = None, method: str | None = None,
                  path: str | None = None) -> None:
        """The next `times` API requests get `status` (in the provider's error format, with
        the error `code` if given); only requests with `method` and a path matching the regex
        `path`, if those are given."""
        failure = _Failure(status, code, retry_after, method, re.compile(path) if path else None)
        with self.lock:
            self._failures.extend([failure] * times)

    def limit_writes(self, per_second: float, burst: int, *, retry_after: float = 1.0,
                     as_http_date: bool = False, in_flight_grace: float = 0.0) -> None:
        """From now on, writes past `burst` at once or `per_second` sustained (a token bucket,
        as the providers do) get the provider's throttling answer with Retry-After
        `retry_after` seconds (as an HTTP date if asked). Until that time has passed, every API
        request is throttled again, and counted in `early_requests` unless it came within
        `in_flight_grace` seconds of the throttling answer (sent by a concurrent client thread
        before that answer could have reached it)."""
        with self.lock:
            self._write_limit = _WriteLimit(per_second, burst, retry_after, as_http_date,
                                            in_flight_grace, tokens=float(burst),
                                            refilled=time.monotonic())

    def stop_limiting_writes(self) -> None:
        with self.lock:
            self._write_limit = None

    def fail_next_token_request(self, status: int, *, times: int = 1) -> None:
        with self.lock:
            self._token_failures.extend([status] * times)

    def answer_next_token_request(self, status: int, body: bytes | str = b"",
                                  headers: dict | None = None) -> None:
        """The next token request gets exactly this answer (a redirect, a malformed token): what
        a broken or hostile token endpoint could send."""
        with self.lock:
            self._token_answers.append(Response(body, status=status, headers=headers or {}))

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working now (the client still thinks it
        valid), as when a provider ends a token early."""
        with self.lock:
            now = time.time()
            self._access_tokens = {token: now - 1 for token in self._access_tokens}

    def revoke_grants(self) -> None:
        """The user disconnected the app: no access or refresh token works any more."""
        with self.lock:
            self._access_tokens.clear()
            self._refresh_tokens.clear()

    def issue_token(self, lifetime: float | None = None) -> dict:
        """A token as a completed authorization would give it, for tests that skip the dance."""
        with self.lock:
            token = self._new_token(with_refresh_token=True, lifetime=lifetime)
        token["expires_at"] = time.time() + token["expires_in"]
        return token

    def refresh_token_is_valid(self, refresh_token: str) -> bool:
        with self.lock:
            return refresh_token in self._refresh_tokens

    def revoke_account(self, account: str) -> None:
        """The user of the account a consent named `account` disconnected the app: its access
        and refresh tokens stop working (the other accounts' go on)."""
        with self.lock:
            for token, whose in self._token_accounts.items():
                if whose == account:
                    self._access_tokens.pop(token, None)
                    self._refresh_tokens.discard(token)

    def account_of(self, request: Request, base_id: str) -> str:
        """The id of the account a request's bearer token is for: `base_id` for the default
        one, `base_id-<name>` for one a consent named."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with self.lock:
            account = self._token_accounts.get(token, "")
        return f"{base_id}-{account}" if account else base_id

    def access_token_is_valid(self, access_token: str) -> bool:
        with self.lock:
            return self._access_tokens.get(access_token, 0) > time.time()

    # --- HTTP plumbing ------------------------------------------------------------------------

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _route(self, request: Request):
        """The first route matching the request's method and path: (match, handler, kind)."""
        for method, pattern, handler, kind, write in self._routes:
            match = pattern.fullmatch(request.path)
            if match and request.method == method:
                return match, handler, kind, write
        return None

    def _dispatch(self, request: Request) -> Response:
        found = self._route(request)
        if found is None:
            return Response(f"no route for {request.method} {request.path}", status=404)
        match, handler, kind, write = found
        with self.lock:
            if kind == "api":
                self.api_calls.append(f"{request.method} {request.path}")
                failure = next((f for f in self._failures if f.applies_to(request)), None)
                if failure is not None:
                    self._failures.remove(failure)
                    headers = ({} if failure.retry_after is None
                               else {"Retry-After": f"{failure.retry_after:g}"})
                    return self.error(failure.status, failure.code, "injected failure", headers)
                problem = self._bearer_problem(request)
                if problem:
                    return self.auth_error(problem)
                if self._write_limit is not None:
                    throttled = self._write_limit.check(self, write)
                    if throttled is not None:
                        return throttled
            return handler(request, **match.groupdict())

    def _bearer_problem(self, request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer "):
            return "invalid"
        expiry = self._access_tokens.get(header[7:].strip())
        if expiry is None:
            return "invalid"
        return "expired" if expiry <= time.time() else None

    @staticmethod
    def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
        return Response(json.dumps(body), status=status, headers=headers,
                        mimetype="application/json")

    # --- OAuth --------------------------------------------------------------------------------

    def _authorize(self, request: Request) -> Response:
        args = request.args.to_dict()
        self.authorize_requests.append(args)
        if args.get("client_id") != self.client_id or args.get("response_type") != "code" \
                or not args.get("redirect_uri"):
            return Response("bad authorization request", status=400)
        challenge = args.get("code_challenge") if self.pkce else None
        if challenge and args.get("code_challenge_method") != "S256":
            return Response("only S256 code challenges", status=400)
        code = secrets.token_urlsafe(16)
        self._codes[code] = {"redirect_uri": args["redirect_uri"], "challenge": challenge,
                             "account": args.get("fake_account", "")}
        query = {"code": code}
        if "state" in args:
            query["state"] = args["state"]
        return Response(status=302,
                        headers={"Location": f"{args['redirect_uri']}?{urlencode(query)}"})

    def _token(self, request: Request) -> Response:
        form = request.form.to_dict()
        self.token_grants.append(form.get("grant_type", ""))
        self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"})
        if self._token_answers:
            return self._token_answers.popleft()
        if self._token_failures:
            return Response("token service unavailable", status=self._token_failures.popleft())
        if self._client_from(request, form) != (self.client_id, self.client_secret):
            return self._oauth_error(401, "invalid_client", "client authentication failed")
        grant = form.get("grant_type")
        if grant == "authorization_code":
            issued = self._codes.pop(form.get("code", ""), None)
            if issued is None or form.get("redirect_uri") != issued["redirect_uri"]:
                return self._oauth_error(400, "invalid_grant", "bad code or redirect_uri")
            if issued["challenge"] and _s256(form.get("code_verifier", "")) != issued["challenge"]:
                return self._oauth_error(400, "invalid_grant", "PKCE verification failed")
            return self.json_response(self._new_token(with_refresh_token=True,
                                                      account=issued["account"]))
        if grant == "refresh_token":
            refresh_token = form.get("refresh_token", "")
            if refresh_token not in self._refresh_tokens:
                return self._oauth_error(400, "invalid_grant", "unknown refresh token")
            problem = self.check_refresh_request(form)
            if problem:
                return self._oauth_error(400, "invalid_request", problem)
            if self.rotates_refresh_tokens:
                self._refresh_tokens.discard(refresh_token)
            return self.json_response(
                self._new_token(with_refresh_token=self.rotates_refresh_tokens,
                                account=self._token_accounts.get(refresh_token, "")))
        return self._oauth_error(400, "unsupported_grant_type", f"grant_type {grant!r}")

    def check_refresh_request(self, form: dict) -> str | None:
        """A provider-specific complaint about a refresh request, or None."""
        return None

    def _client_from(self, request: Request, form: dict) -> tuple[str | None, str | None]:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic ") and self.basic_client_auth:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return client_id, secret
        return form.get("client_id"), form.get("client_secret")

    def _new_token(self, *, with_refresh_token: bool, lifetime: float | None = None,
                   account: str = "") -> dict:
        access_token = "at-" + secrets.token_urlsafe(16)
        lifetime = self.access_token_lifetime if lifetime is None else lifetime
        self._access_tokens[access_token] = time.time() + lifetime
        self._token_accounts[access_token] = account
        token = {"access_token": access_token, "token_type": "bearer", "expires_in": lifetime,
                 **self.token_extras()}
        if with_refresh_token:
            refresh_token = "rt-" + secrets.token_urlsafe(16)
            self._refresh_tokens.add(refresh_token)
            self._token_accounts[refresh_token] = account
            token["refresh_token"] = refresh_token
        return token

    def _oauth_error(self, status: int, error: str, description: str) -> Response:
        return self.json_response({"error": error, "error_description": description}, status)


@dataclass
class _WriteLimit:
    per_second: float
    burst: int
    retry_after: float
    as_http_date: bool
    grace: float
    tokens: float
    refilled: float
    until: float = 0.0       # time.time() before which the client was told not to come back
    told_at: float = 0.0     # when it was told

    def check(self, fake: FakeProvider, write: bool) -> Response | None:
        """None if the request may pass; else the throttling answer (the caller holds the lock)."""
        now = time.time()
        if now < self.until:
            if now - self.told_at > self.grace:
                fake.early_requests += 1
            fake.throttled += 1
            return fake.throttle(self._header(self.until - now))
        if not write:
            return None
        clock = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (clock - self.refilled) * self.per_second)
        self.refilled = clock
        if self.tokens >= 1:
            self.tokens -= 1
            fake.writes_accepted += 1
            return None
        fake.throttled += 1
        if not fake.announces_retry_after:
            return fake.throttle(None)
        self.told_at = now
        if self.as_http_date:
            # An HTTP date has whole seconds: announce the first whole second after the wait.
            self.until = math.ceil(now + self.retry_after)
        else:
            self.until = now + self.retry_after
        return fake.throttle(self._header(self.until - now))

    def _header(self, seconds: float) -> str:
        if self.as_http_date:
            return email.utils.formatdate(self.until, usegmt=True)
        return f"{math.ceil(seconds * 1000) / 1000:g}"


@dataclass(frozen=True)
class _Failure:
    status: int
    code: str | None
    retry_after: float | None
    method: str | None
    path: re.Pattern | None

    def applies_to(self, request: Request) -> bool:
        return (self.method in (None, request.method)
                and (self.path is None or self.path.fullmatch(request.path) is not None))


def parse_multipart(content_type: str, raw: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body, in order, each as (lowercased headers, exact bytes).
    Raises ValueError if the body is not well formed."""
    _, options = parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        raise ValueError("no boundary in Content-Type")
    delimiter = b"--" + boundary.encode()
    body = raw.rstrip(b"\r\n")
    if not body.startswith(delimiter) or not body.endswith(b"\r\n" + delimiter + b"--"):
        raise ValueError("the body does not start and end with the boundary")
    parts = []
    for chunk in body[len(delimiter):-len(delimiter) - 4].split(b"\r\n" + delimiter):
        if not chunk.startswith(b"\r\n") or b"\r\n\r\n" not in chunk:
            raise ValueError("a part without headers")
        head, content = chunk[2:].split(b"\r\n\r\n", 1)
        headers = {}
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
    return parts


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
