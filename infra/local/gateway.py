"""A local API Gateway: HTTP and WebSocket traffic in, the same Lambda events AWS would send out.

REST: each request under /api/ becomes a REST proxy event for the service app that owns the route
(binary bodies base64-encoded, headers, query, path parameters), with API Gateway's and Lambda's
limits enforced (`cloudstrype.limits`) and its answers for unknown routes, wrong methods and
preflights as the CDK stack configures them. WebSocket: connect / message / disconnect become
`$connect` / `$default` / `$disconnect` events; a separate loopback-only listener serves the
management API (`POST /<secret>/@connections/{id}`, the secret standing in for AWS's signature)
so handlers reach sockets through boto3 exactly as in AWS.

Beyond API Gateway, because the functions share one process here: each caller (the `sub` of its
bearer token, or its address) has at most a few requests in flight, so one slow user cannot hold
every worker thread; and sign-in attempts are throttled per address. Bodies of 64 KiB and more
(file parts and ranges) pass between the gateway and the function as the bytes themselves
(`InProcessBody`, the event marked as in-process) rather than as base64 text that one side would
encode and the other decode again; Lambda's payload limit is still counted on that text's length.
"""
from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import json
import logging
import math
import re
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError
from cloudstrype import errors, limits
from cloudstrype.api.body import (
    IN_PROCESS_EVENT,
    IN_PROCESS_MIN_BYTES,
    LOCAL_TRANSFER_CONTEXT,
    InProcessBody,
)
from cloudstrype.api.security_headers import WEB_UI_HEADERS, web_ui_policy
from cloudstrype.auth.tokens import verified_user_id
from cloudstrype.sharing.links import redact

from infra.local import transfer

log = logging.getLogger("cloudstrype.gateway")


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a NUL in a header, a broken request line) at
    ERROR with a traceback, after answering it 400. Any client can send one, so each would put
    a traceback in the operator's log: it is one line at INFO instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        if not log.isEnabledFor(logging.INFO):
            return False
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = "refused a malformed request from %s: %s", (
            remote, exc.message)
        record.exc_info = record.exc_text = None
        return True


logging.getLogger("aiohttp.server").addFilter(_MalformedRequests())

STAGE = "local"
API_ID = "local"
# What API Gateway answers (the CDK's gateway response for MISSING_AUTHENTICATION_TOKEN) when no
# resource matches the path, or the resource has no such method.
NO_ROUTE_MESSAGE = "No route matches this method and path; GET /api/openapi.json lists the routes."
# Sign-in routes throttled per client address: "all" attempts count, or only "failures".
SIGN_IN_ROUTES = {"/api/auth/register": "all", "/api/auth/login": "failures",
                  "/api/auth/confirm": "failures", "/api/auth/password": "failures"}


# Bodies above this are base64-decoded on a worker thread rather than on the event loop.
_INLINE_BYTES = 64 * 1024
# Bodies from this size are sent after their headers rather than joined to them (Gateway._send).
_STREAMED_BODY_BYTES = 256 * 1024
_STREAMED_PIECE_BYTES = 512 * 1024


def _b64(body: bytes | bytearray) -> str | None:
    return base64.b64encode(body).decode() if body else None


def _event_body(body: bytes) -> str | InProcessBody | None:
    """The event's body: base64 text as API Gateway sends it, or for a large body the bytes
    themselves (the function runs in this process, and reads them without decoding)."""
    return InProcessBody(body) if len(body) >= IN_PROCESS_MIN_BYTES else _b64(body)


def _event_size(event: dict) -> int:
    """The invocation payload's size as Lambda counts it (the event as compact JSON, its body as
    base64 text), without serializing a large body again: base64 text needs no JSON escaping.
    The in-process mark is this gateway's, not part of what AWS would send."""
    body = event.get("body")
    shown = {k: v for k, v in event.items() if k != IN_PROCESS_EVENT}
    if not body:
        return len(json.dumps(shown, separators=(",", ":")))
    shown["body"] = None
    return len(json.dumps(shown, separators=(",", ":"))) - len("null") + len(body) + 2


# What an event holds besides the request's own text and its body (its keys, the request
# context's ids and times), counted generously.
_EVENT_FIXED_BYTES = 4096


def _event_size_bound(header_items, raw_path: str, body) -> int:
    """More than _event_size can be, without serializing the event: each character of the
    request's path and headers appears at most three times in it (single- and multi-value
    forms, and the request context), as at most 12 characters of JSON (a character beyond the
    BMP, escaped as two surrogates)."""
    text = len(raw_path) + sum(len(name) + len(value) for name, value in header_items)
    return 36 * text + _EVENT_FIXED_BYTES + (len(body) if body else 0)


def _too_large() -> web.Response:
    return _error(413, "payload_too_large", "The request is larger than API Gateway accepts "
                  f"({limits.REST_REQUEST_MAX_BYTES // limits.MiB} MB); upload big files in "
                  "parts.")


def _error(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers=headers)


def _web_ui_headers(request: web.Request) -> dict[str, str]:
    """What CloudFront sends with the web UI when deployed (cloudstrype.api.security_headers):
    here the API is this origin, the WebSocket this host's /ws."""
    scheme = "wss" if request.secure else "ws"
    return {"Content-Security-Policy": web_ui_policy(f"{scheme}://{request.host}"),
            **WEB_UI_HEADERS}


def caller_key(user_id: str | None, address: str | None) -> str:
    """Whom a request counts against: the user of its bearer token once the token is verified
    (never its claims unverified: anyone could name another user's `sub` in a forged token and
    spend that user's slots), else the client address."""
    return f"user:{user_id}" if user_id else f"address:{address or '?'}"


class InFlight:
    """At most `limit` requests in flight per caller. A slot is freed when the function really
    returns, not when the gateway stops waiting (a timed-out function still holds its thread)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> bool:
        with self._lock:
            if self._counts.get(key, 0) >= self.limit:
                return False
            self._counts[key] = self._counts.get(key, 0) + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            left = self._counts.get(key, 0) - 1
            if left > 0:
                self._counts[key] = left
            else:
                self._counts.pop(key, None)


class AddressBuckets:
    """A token bucket per client address: `burst` attempts at once, one more every
    `refill_seconds`."""

    MAX_TRACKED = 10_000

    def __init__(self, burst: int, refill_seconds: float, clock=time.monotonic):
        self.burst, self.refill_seconds, self.clock = burst, refill_seconds, clock
        self._buckets: dict[str, tuple[float, float]] = {}   # address -> (tokens, at)
        self._lock = threading.Lock()

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) / self.refill_seconds)

    def wait_seconds(self, address: str) -> int:
        """0 when an attempt may go ahead, else whole seconds until one may."""
        with self._lock:
            tokens = self._tokens(address, self.clock())
        return 0 if tokens >= 1 else math.ceil((1 - tokens) * self.refill_seconds)

    def take(self, address: str) -> None:
        with self._lock:
            now = self.clock()
            self._buckets[address] = (max(0.0, self._tokens(address, now) - 1), now)
            if len(self._buckets) > self.MAX_TRACKED:
                # Forget the addresses whose buckets have filled up again.
                self._buckets = {a: v for a, v in self._buckets.items()
                                 if self._tokens(a, now) < self.burst}


@dataclass
class Route:
    resource: str
    pattern: re.Pattern
    params: list[str]
    literal_segments: int
    app: object
    methods: set[str]


def _route(resource: str, app, methods: set[str]) -> Route:
    regex, params, literal = "", [], 0
    for segment in (s for s in resource.split("/") if s):
        match = re.fullmatch(r"\{([A-Za-z0-9_]+)\}", segment)
        if match:
            regex += "/([^/]+)"
            params.append(match.group(1))
        else:
            regex += "/" + re.escape(segment)
            literal += 1
    return Route(resource, re.compile(f"^{regex}$"), params, literal, app, methods)


def compile_routes(apps: list) -> list[Route]:
    routes, declared = [], set()
    for app in apps:
        for resource, methods in app.routes.items():
            routes.append(_route(resource, app, set(methods)))
            declared.add(resource)
    # The CDK creates every parent of a route's path as a resource too (with only the CORS
    # preflight): a path naming one reaches it, not a parameter route beside it.
    parents = {"/".join(r.split("/")[:n]) for r in declared for n in range(2, r.count("/") + 1)}
    routes += [_route(parent, None, set()) for parent in sorted(parents - declared)]
    # API Gateway prefers the most specific resource: literal segments beat parameters.
    routes.sort(key=lambda r: (-r.literal_segments, r.resource))
    return routes


class Gateway:
    def __init__(self, apps: list, websocket_handlers: dict, web_dir: Path | None,
                 web_config: dict, management_secret: str | None = None):
        from cloudstrype.settings import get_settings
        settings = get_settings()
        self.routes = compile_routes(apps)
        self.ws_handlers = websocket_handlers          # route key -> Lambda handler callable
        self.web_dir = web_dir
        self.web_config = web_config
        self.management_secret = management_secret or secrets.token_urlsafe(24)
        self.executor = ThreadPoolExecutor(max_workers=int(settings.gateway_workers),
                                           thread_name_prefix="lambda")
        self.in_flight = InFlight(int(settings.gateway_max_in_flight_per_caller))
        self.sign_in = AddressBuckets(int(settings.sign_in_burst_per_address),
                                      float(settings.sign_in_refill_seconds))
        self.connections: dict[str, "Connection"] = {}
        self.on_request_done = None                    # hook: called after each REST request
        self.transfer_socket: str | None = None        # infra/local/transfer.py, once open

    # -- applications ---------------------------------------------------------------------------
    def public_app(self) -> web.Application:
        app = web.Application(client_max_size=limits.REST_REQUEST_MAX_BYTES + 1024 * 1024)
        app.router.add_route("GET", "/ws", self.websocket)
        app.router.add_route("*", "/api", self.rest)
        # [\s\S]: any path, a decoded newline (%0A) included, reaches the API's own 404.
        app.router.add_route("*", "/api/{tail:[\\s\\S]*}", self.rest)
        app.router.add_route("GET", "/config.json", self.config)
        app.router.add_route("GET", "/.well-known/jwks.json", self.jwks)
        app.router.add_route("GET", transfer.WELL_KNOWN_PATH, self.transfer_location)
        app.router.add_route("GET", "/staging/{key:.*}", self.staging_get)
        app.router.add_route("PUT", "/staging/{key:.*}", self.staging_put)
        # The web UI's files answer HEAD too, as CloudFront does.
        app.router.add_route("GET", "/{tail:[\\s\\S]*}", self.static)
        app.router.add_route("HEAD", "/{tail:[\\s\\S]*}", self.static)
        return app

    def management_app(self) -> web.Application:
        """Served on loopback only. Its path starts with this run's secret (where AWS has the
        stage), which only the handlers know: another program on the machine cannot reach the
        users' sockets."""
        app = web.Application(middlewares=[self._management_guard])
        base = f"/{self.management_secret}/@connections/{{connection_id}}"
        app.router.add_route("POST", base, self.post_to_connection)
        app.router.add_route("GET", base, self.get_connection)
        app.router.add_route("DELETE", base, self.delete_connection)
        return app

    @web.middleware
    async def _management_guard(self, request: web.Request, handler):
        prefix = f"/{self.management_secret}/"
        if not hmac.compare_digest(request.path[:len(prefix)].encode(), prefix.encode()):
            # What API Gateway answers an unsigned management call.
            return web.json_response({"message": "Missing Authentication Token"}, status=403,
                                     headers={"x-amzn-ErrorType": "MissingAuthenticationToken"})
        return await handler(request)

    # -- REST -------------------------------------------------------------------------------
    def match(self, path: str) -> tuple[Route, dict] | None:
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found:
                values = {name: unquote(v)
                          for name, v in zip(route.params, found.groups(), strict=True)}
                return route, values
        return None

    async def rest(self, request: web.Request) -> web.StreamResponse:
        return await self._send(request, await self.respond(request))

    async def respond(self, request) -> web.Response:
        """The answer to a REST request, as API Gateway and the function make it (its body
        whole). `request` is aiohttp's, or one of the local transfer socket's
        (infra/local/transfer.py), which has the same fields."""
        if request.content_length is not None and \
                request.content_length > limits.REST_REQUEST_MAX_BYTES:
            return _too_large()
        head = len(request.method) + len(request.raw_path) + sum(
            len(value) for _, value in request.raw_headers)
        if head > limits.REST_HEADERS_MAX_BYTES:
            return _error(431, "headers_too_large", f"The request line and headers are {head} "
                          f"bytes; API Gateway takes at most {limits.REST_HEADERS_MAX_BYTES}.")
        pieces, received = [], 0
        try:
            async for chunk in request.content.iter_chunked(256 * 1024):
                pieces.append(chunk)
                received += len(chunk)
                if received > limits.REST_REQUEST_MAX_BYTES:
                    return _too_large()
        except ConnectionResetError:
            # The client went away before its request was whole (a bad network does that):
            # nothing ran and no one is left to answer; a line, not a stack trace.
            log.info("client went away mid-request: %s %s", request.method,
                     redact(request.path))
            return _error(400, "request_incomplete", "The connection closed before the "
                          "request was whole.")
        body = b"".join(pieces)
        del pieces

        # Routed on the path as sent, as API Gateway routes it: an encoded "/" (%2F) belongs to
        # the segment it is in (GET /info/%2F asks for the item whose id is "/"), and each
        # parameter is decoded once matched.
        path = request.rel_url.raw_path.rstrip("/") or "/"
        method = request.method.upper()
        matched = self.match(path)
        if matched is not None and method == "OPTIONS":
            return self._preflight()
        if matched is None or method not in matched[0].methods:
            # API Gateway answers an unknown resource and a method a resource lacks alike.
            return _error(404, "not_found", NO_ROUTE_MESSAGE)
        route, params = matched
        loop = asyncio.get_running_loop()
        event_body = _event_body(body)
        event = self._rest_event(request, route, params, event_body)
        # Counted exactly only when it could matter (serializing every event cost more than
        # the rest of a small request's trip through the gateway).
        payload = _event_size(event) if _event_size_bound(
            request.raw_headers, request.raw_path, event_body) > \
            limits.LAMBDA_PAYLOAD_MAX_BYTES else 0
        if payload > limits.LAMBDA_PAYLOAD_MAX_BYTES:
            # Lambda refuses an invocation this large; the function never runs.
            return _error(413, "payload_too_large", f"This request reaches the function as "
                          f"{payload} bytes (its body base64-encoded), over Lambda's "
                          f"{limits.LAMBDA_PAYLOAD_MAX_BYTES} bytes: send at most "
                          f"{limits.ONE_SHOT_MAX_BYTES} bytes in one request and upload "
                          f"larger files in parts (POST /api/filesystem/uploads, an upload "
                          f"session).")

        address = request.remote or "127.0.0.1"
        throttled = SIGN_IN_ROUTES.get(route.resource) if method == "POST" else None
        if throttled is not None:
            wait = self.sign_in.wait_seconds(address)
            if wait:
                return _error(429, "too_many_attempts", f"Too many sign-in attempts from your "
                              f"address; try again in {wait} s.",
                              headers={"Retry-After": str(wait)})
            if throttled == "all":
                self.sign_in.take(address)
        authorization = request.headers.get("Authorization")
        user_id = verified_user_id(authorization)
        if user_id is None and authorization:
            # A token not seen yet is verified once, off the loop; the handler then finds it
            # verified (TokenVerifier keeps the last 4,096).
            user_id = await asyncio.get_running_loop().run_in_executor(
                self.executor, functools.partial(verified_user_id, authorization, check=True))
        caller = caller_key(user_id, address)
        if not self.in_flight.acquire(caller):
            return _error(429, "too_many_requests", f"You have {self.in_flight.limit} requests "
                          f"in progress already; wait for one to finish and try again.",
                          headers={"Retry-After": "1"})
        started = time.monotonic()
        try:
            future = self.executor.submit(route.app, event, None)
        except RuntimeError:                           # shutting down
            self.in_flight.release(caller)
            return _error(503, "unavailable", "The server is stopping.")
        # The slot is freed when the function returns, even after the gateway gave up on it.
        future.add_done_callback(lambda _: self.in_flight.release(caller))
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future),
                                            timeout=limits.INTEGRATION_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            return _error(504, "timeout", "The request took longer than "
                          f"{limits.INTEGRATION_TIMEOUT_SECONDS} seconds; try again or use a "
                          "smaller part.")
        except Exception:
            log.exception("function crashed on %s %s", method, redact(request.path))
            return _error(502, "bad_gateway", "The function failed; see the server log.")
        finally:
            if self.on_request_done is not None and method not in ("GET", "HEAD"):
                self.on_request_done()
        status = result.get("statusCode")
        if throttled == "failures" and isinstance(status, int) and 400 <= status < 500 \
                and status != 429:
            self.sign_in.take(address)
        # The path only: query strings carry secrets (an OAuth callback's code and state); a
        # public link's token is cut out of it.
        log.info("%s %s -> %s (%.0f ms)", method, redact(request.path), status,
                 (time.monotonic() - started) * 1000)
        encoded_answer = result.get("body") or ""
        if result.get("isBase64Encoded") and isinstance(encoded_answer, str) and \
                _INLINE_BYTES < len(encoded_answer) <= limits.LAMBDA_PAYLOAD_MAX_BYTES:
            # Base64 of megabytes, off the event loop (it serves every other request meanwhile).
            decoded = await loop.run_in_executor(None, base64.b64decode, encoded_answer)
            return self._rest_response(result, decoded)
        return self._rest_response(result)

    @staticmethod
    async def _send(request: web.Request, response: web.Response) -> web.StreamResponse:
        """A large body goes after its headers, as it is: given to aiohttp whole, it is first
        joined to them (a copy of every byte, on Python before 3.12)."""
        body = response.body
        if not isinstance(body, bytes) or len(body) < _STREAMED_BODY_BYTES or \
                request.method == "HEAD" or response.status in (204, 304):
            return response
        streamed = web.StreamResponse(status=response.status, headers=response.headers)
        streamed.content_length = len(body)
        try:
            await streamed.prepare(request)
            with memoryview(body) as view:
                for start in range(0, len(body), _STREAMED_PIECE_BYTES):
                    await streamed.write(view[start:start + _STREAMED_PIECE_BYTES])
            await streamed.write_eof()
        except ConnectionError:
            # The client went away mid-answer (a download stopped): its business, not a
            # server error with a traceback.
            log.info("%s %s: the client closed the connection before the answer was sent",
                     request.method, redact(request.path))
        return streamed

    def _preflight(self) -> web.Response:
        # The CDK's preflight: a mock integration on every resource, the same answer on each.
        return web.Response(status=204, headers={
            "Access-Control-Allow-Headers": ",".join(limits.CORS_ALLOW_HEADERS),
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": ",".join(limits.CORS_ALLOW_METHODS),
            "Access-Control-Max-Age": str(limits.CORS_MAX_AGE_SECONDS),
        })

    def _rest_event(self, request: web.Request, route: Route, params: dict,
                    body: str | InProcessBody | None) -> dict:
        headers, multi_headers = {}, {}
        for name, value in request.headers.items():
            headers[name] = value
            multi_headers.setdefault(name, []).append(value)
        query, multi_query = {}, {}
        for name, value in request.query.items():
            query[name] = value
            multi_query.setdefault(name, []).append(value)
        peer = request.remote or "127.0.0.1"
        now = time.time()
        return {
            "resource": route.resource,
            "path": request.path,
            "httpMethod": request.method.upper(),
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route.resource,
                "httpMethod": request.method.upper(),
                "path": f"/{STAGE}{request.path}",
                "stage": STAGE,
                "requestId": str(uuid.uuid4()),
                "apiId": API_ID,
                "domainName": request.host,
                "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                "identity": {"sourceIp": peer, "userAgent": request.headers.get("User-Agent")},
                "requestTimeEpoch": int(now * 1000),
                **({LOCAL_TRANSFER_CONTEXT: True} if getattr(request, "local_transfer", False)
                   else {}),
            },
            # Every body travels base64-encoded: the API is configured with binary media */*.
            "body": body,
            "isBase64Encoded": bool(body),
            IN_PROCESS_EVENT: True,
        }

    def _rest_response(self, result: dict, decoded: bytes | None = None) -> web.Response:
        encoded = result.get("body") or ""
        if len(encoded) > limits.LAMBDA_PAYLOAD_MAX_BYTES:
            return _error(502, "response_too_large", "The function's answer exceeds Lambda's 6 MB "
                          "response limit (a file's content is read by ranges, with Range; a "
                          "folder's listing by pages, with limit and cursor).")
        if decoded is not None:
            data = decoded
        elif isinstance(encoded, InProcessBody) and result.get("isBase64Encoded"):
            data = encoded.raw              # the function's own bytes: nothing to decode
        else:
            data = base64.b64decode(encoded) if result.get("isBase64Encoded") \
                else encoded.encode()
        response = web.Response(status=result.get("statusCode", 200), body=data)
        for name, value in (result.get("headers") or {}).items():
            response.headers[name] = str(value)
        for name, values in (result.get("multiValueHeaders") or {}).items():
            for value in values:
                response.headers.add(name, str(value))
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
        return response

    # -- static web UI -----------------------------------------------------------------------
    async def transfer_location(self, request: web.Request) -> web.Response:
        """Where a CLI on this machine finds the transfer socket (infra/local/transfer.py);
        not found for anyone else, or when it is off."""
        if self.transfer_socket is None or request.remote not in ("127.0.0.1", "::1"):
            return _error(404, "not_found", "There is no local transfer socket here.")
        return web.json_response({"socket": self.transfer_socket})

    async def jwks(self, request: web.Request) -> web.Response:
        """The local identity service's public signing keys: the JWKS URL its tokens are
        verified against (Cognito serves its own)."""
        from cloudstrype.identity import get_identity
        keys = await asyncio.get_running_loop().run_in_executor(
            None, lambda: get_identity().jwks())
        if keys is None:
            return _error(404, "not_found", "This server's tokens are issued by Cognito; its "
                          "JWKS is at the user pool's URL.")
        return web.json_response(keys, headers={"Cache-Control": "public, max-age=300"})

    async def config(self, request: web.Request) -> web.Response:
        config = dict(self.web_config)
        scheme = "wss" if request.secure else "ws"
        config.setdefault("websocketUrl", f"{scheme}://{request.host}/ws")
        return web.json_response(config, headers={"Cache-Control": "no-store",
                                                  **_web_ui_headers(request)})

    async def static(self, request: web.Request) -> web.StreamResponse:
        if self.web_dir is None:
            return _error(404, "not_found", "No web UI is served here.")
        relative = request.match_info["tail"] or "index.html"
        root = self.web_dir.resolve()
        missing = _error(404, "not_found", f"No page {errors.shown(request.path)}.")
        try:
            target = (root / relative).resolve()
            if root not in target.parents and target != root:
                return missing
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                return missing
        except (ValueError, OSError):   # a NUL in the path, a name too long: no such page
            return missing
        return web.FileResponse(target, headers=_web_ui_headers(request))

    # -- staging (what S3's presigned URLs are in AWS) ----------------------------------------
    def _staging(self, request: web.Request, method: str):
        """The local staging area and the request's PUT limit, or an error response."""
        from cloudstrype.staging import get_staging
        from cloudstrype.staging.local import LocalStaging, StagingDenied
        staging = get_staging()
        if not isinstance(staging, LocalStaging):
            return None, None, _error(404, "not_found", f"No page {request.path}.")
        try:
            limit = staging.authorize(method, request.match_info["key"], request.query)
        except StagingDenied as exc:
            return None, None, _error(403, "forbidden", str(exc))
        return staging, limit, None

    async def staging_get(self, request: web.Request) -> web.StreamResponse:
        staging, _, refused = self._staging(request, "GET")
        if refused is not None:
            return refused
        path = staging.path_for(request.match_info["key"])
        if not path.is_file():
            return _error(404, "not_found", "Nothing is staged here (expired or deleted).")
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

    async def staging_put(self, request: web.Request) -> web.StreamResponse:
        staging, limit, refused = self._staging(request, "PUT")
        if refused is not None:
            return refused
        too_large = _error(413, "payload_too_large", f"This staging URL takes at most {limit} "
                           f"bytes.")
        if request.content_length is not None and request.content_length > limit:
            return too_large
        received = 0
        try:
            with staging.receive(request.match_info["key"]) as out:
                async for block in request.content.iter_chunked(256 * 1024):
                    received += len(block)
                    if received > limit:
                        raise _BodyTooLarge
                    out.write(block)
        except _BodyTooLarge:
            return too_large
        return web.Response(status=200)

    # -- WebSocket --------------------------------------------------------------------------
    def _ws_event(self, connection: "Connection", route_key: str, event_type: str,
                  body: str | None = None) -> dict:
        request = connection.request
        event = {
            "requestContext": {
                "routeKey": route_key,
                "eventType": event_type,
                "connectionId": connection.id,
                "domainName": request.host,
                "stage": STAGE,
                "apiId": API_ID,
                "requestId": str(uuid.uuid4()),
                "connectedAt": int(connection.connected_at * 1000),
                "requestTimeEpoch": int(time.time() * 1000),
                "identity": {"sourceIp": request.remote or "127.0.0.1",
                             "userAgent": request.headers.get("User-Agent")},
            },
            "isBase64Encoded": False,
        }
        if route_key == "$connect":
            event["headers"] = dict(request.headers)
            event["multiValueHeaders"] = {k: request.headers.getall(k) for k in request.headers}
            event["queryStringParameters"] = dict(request.query) or None
        if body is not None:
            event["body"] = body
        return event

    async def _invoke_ws(self, connection: "Connection", route_key: str, event_type: str,
                         body: str | None = None) -> dict:
        handler = self.ws_handlers.get(route_key) or self.ws_handlers.get("$default")
        if handler is None:
            return {"statusCode": 200}
        event = self._ws_event(connection, route_key, event_type, body)
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self.executor, handler, event, None)
        except Exception:
            log.exception("WebSocket %s handler failed", route_key)
            return {"statusCode": 500}
        return result or {"statusCode": 200}

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        connection = Connection(id=_connection_id(), request=request)
        result = await self._invoke_ws(connection, "$connect", "CONNECT")
        status = int(result.get("statusCode", 200))
        if status >= 300:
            # API Gateway refuses the upgrade with the handler's status.
            return web.Response(status=status, text=result.get("body") or "Forbidden")
        ws = web.WebSocketResponse(max_msg_size=limits.WS_MESSAGE_MAX_BYTES, autoping=True)
        await ws.prepare(request)
        connection.socket = ws
        self.connections[connection.id] = connection
        try:
            while True:
                try:
                    message = await ws.receive(timeout=limits.WS_IDLE_TIMEOUT_SECONDS)
                except asyncio.TimeoutError:
                    await ws.close(code=1001, message=b"Going away: idle timeout")
                    break
                if message.type == WSMsgType.TEXT:
                    connection.last_active = time.time()
                    await self._invoke_ws(connection, "$default", "MESSAGE", message.data)
                elif message.type == WSMsgType.BINARY:
                    # API Gateway WebSocket APIs here carry JSON text only.
                    await ws.close(code=1003, message=b"Text frames only")
                    break
                elif message.type == WSMsgType.ERROR and ws.exception() is not None:
                    # e.g. a message over 128 KB: aiohttp closes with 1009.
                    break
                else:
                    break
        finally:
            self.connections.pop(connection.id, None)
            await self._invoke_ws(connection, "$disconnect", "DISCONNECT")
        return ws

    async def post_to_connection(self, request: web.Request) -> web.Response:
        connection = self.connections.get(request.match_info["connection_id"])
        if connection is None or connection.socket is None or connection.socket.closed:
            return _gone()
        data = await request.read()
        if len(data) > limits.WS_MESSAGE_MAX_BYTES:
            return web.json_response({"message": "Message too long"}, status=413,
                                     headers={"x-amzn-ErrorType": "PayloadTooLargeException"})
        try:
            await connection.socket.send_str(data.decode("utf-8"))
        except (ConnectionError, RuntimeError, UnicodeDecodeError):
            return _gone()
        return web.Response(status=200)

    async def get_connection(self, request: web.Request) -> web.Response:
        connection = self.connections.get(request.match_info["connection_id"])
        if connection is None:
            return _gone()
        return web.json_response({
            "ConnectedAt": _iso(connection.connected_at),
            "LastActiveAt": _iso(connection.last_active),
            "Identity": {"SourceIp": connection.request.remote or "127.0.0.1",
                         "UserAgent": connection.request.headers.get("User-Agent", "")},
        })

    async def delete_connection(self, request: web.Request) -> web.Response:
        connection = self.connections.get(request.match_info["connection_id"])
        if connection is None or connection.socket is None:
            return _gone()
        await connection.socket.close(code=1000, message=b"Closed by the server")
        return web.Response(status=204)


@dataclass
class Connection:
    id: str
    request: web.Request
    socket: web.WebSocketResponse | None = None
    connected_at: float = 0.0
    last_active: float = 0.0

    def __post_init__(self):
        self.connected_at = self.last_active = time.time()


class _BodyTooLarge(Exception):
    """A staging upload past its URL's limit (nothing of it is kept)."""


def _connection_id() -> str:
    # API Gateway's ids are 12-16 characters of base64url text ending in '='.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes[:11]).decode().rstrip("=") + "="


def _gone() -> web.Response:
    return web.json_response({"message": "Gone"}, status=410,
                             headers={"x-amzn-ErrorType": "GoneException"})


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
