"""A local API Gateway: HTTP and WebSocket traffic in, the same Lambda events AWS would send out.

REST: each request under /api/ becomes a REST proxy event for the service app that owns the route
(binary bodies base64-encoded, headers, query, path parameters), with API Gateway's and Lambda's
limits enforced. WebSocket: connect / message / disconnect become `$connect` / `$default` /
`$disconnect` events; a separate loopback-only listener serves the management API
(`POST /@connections/{id}`) so handlers reach sockets through boto3 exactly as in AWS.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from aiohttp import WSMsgType, web

log = logging.getLogger("cloudstrype.gateway")

# The limits of the AWS services this stands in for.
MAX_REQUEST_BYTES = 10 * 1024 * 1024          # API Gateway REST payload
MAX_LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024   # Lambda synchronous response, as sent (base64)
INTEGRATION_TIMEOUT_SECONDS = 29.0
MAX_WS_MESSAGE_BYTES = 128 * 1024
WS_IDLE_TIMEOUT_SECONDS = 600.0
STAGE = "local"
API_ID = "local"


def _error(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers=headers)


@dataclass
class Route:
    resource: str
    pattern: re.Pattern
    params: list[str]
    literal_segments: int
    app: object
    methods: set[str]


def compile_routes(apps: list) -> list[Route]:
    routes = []
    for app in apps:
        for resource, methods in app.routes.items():
            segments = [s for s in resource.split("/") if s]
            regex, params, literal = "", [], 0
            for segment in segments:
                match = re.fullmatch(r"\{([A-Za-z0-9_]+)\}", segment)
                if match:
                    regex += "/([^/]+)"
                    params.append(match.group(1))
                else:
                    regex += "/" + re.escape(segment)
                    literal += 1
            routes.append(Route(resource, re.compile(f"^{regex}$"), params, literal, app,
                                set(methods)))
    # API Gateway prefers the most specific resource: literal segments beat parameters.
    routes.sort(key=lambda r: (-r.literal_segments, r.resource))
    return routes


class Gateway:
    def __init__(self, apps: list, websocket_handlers: dict, web_dir: Path | None,
                 web_config: dict, workers: int = 32):
        self.routes = compile_routes(apps)
        self.ws_handlers = websocket_handlers          # route key -> Lambda handler callable
        self.web_dir = web_dir
        self.web_config = web_config
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        self.connections: dict[str, "Connection"] = {}
        self.on_request_done = None                    # hook: called after each REST request

    # -- applications ---------------------------------------------------------------------------
    def public_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES + 1024 * 1024)
        app.router.add_route("GET", "/ws", self.websocket)
        app.router.add_route("*", "/api", self.rest)
        app.router.add_route("*", "/api/{tail:.*}", self.rest)
        app.router.add_route("GET", "/config.json", self.config)
        app.router.add_route("GET", "/.well-known/jwks.json", self.jwks)
        app.router.add_route("GET", "/staging/{key:.*}", self.staging_get)
        app.router.add_route("PUT", "/staging/{key:.*}", self.staging_put)
        app.router.add_route("GET", "/{tail:.*}", self.static)
        return app

    def management_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("POST", "/@connections/{connection_id}", self.post_to_connection)
        app.router.add_route("GET", "/@connections/{connection_id}", self.get_connection)
        app.router.add_route("DELETE", "/@connections/{connection_id}", self.delete_connection)
        return app

    # -- REST -------------------------------------------------------------------------------
    def match(self, path: str) -> tuple[Route, dict] | None:
        for route in self.routes:
            found = route.pattern.match(path)
            if found:
                values = {name: unquote(v)
                          for name, v in zip(route.params, found.groups(), strict=True)}
                return route, values
        return None

    async def rest(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
            return _error(413, "payload_too_large", "The request body is larger than the 10 MB "
                          "limit; upload large files in parts (an upload session).")
        body = bytearray()
        async for chunk in request.content.iter_chunked(256 * 1024):
            body.extend(chunk)
            if len(body) > MAX_REQUEST_BYTES:
                return _error(413, "payload_too_large", "The request body is larger than the "
                              "10 MB limit; upload large files in parts (an upload session).")

        path = request.path.rstrip("/") or "/"
        matched = self.match(path)
        if matched is None:
            return _error(404, "not_found", f"No API route {request.path}.")
        route, params = matched
        method = request.method.upper()
        if method == "OPTIONS":
            return self._preflight(route)
        if method not in route.methods:
            allowed = ", ".join(sorted(route.methods))
            return _error(405, "method_not_allowed", f"{method} is not allowed on {route.resource};"
                          f" use {allowed}.", headers={"Allow": allowed})
        event = self._rest_event(request, route, params, bytes(body))
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self.executor, route.app, event, None),
                timeout=INTEGRATION_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            return _error(504, "timeout", "The function did not answer within API Gateway's 29 s "
                          "limit.")
        except Exception:
            log.exception("function crashed on %s %s", method, request.path)
            return _error(502, "bad_gateway", "The function failed; see the server log.")
        finally:
            if self.on_request_done is not None and method not in ("GET", "HEAD"):
                self.on_request_done()
        log.info("%s %s -> %s (%.0f ms)", method, request.path_qs, result.get("statusCode"),
                 (time.monotonic() - started) * 1000)
        return self._rest_response(result)

    def _preflight(self, route: Route) -> web.Response:
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": ", ".join(sorted(route.methods | {"OPTIONS"})),
            "Access-Control-Allow-Headers": "Authorization, Content-Type, Range, If-Match, "
                                            "If-None-Match, Content-Range",
            "Access-Control-Max-Age": "600",
        })

    def _rest_event(self, request: web.Request, route: Route, params: dict, body: bytes) -> dict:
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
            },
            # Every body travels base64-encoded: the API is configured with binary media */*.
            "body": base64.b64encode(body).decode() if body else None,
            "isBase64Encoded": bool(body),
        }

    def _rest_response(self, result: dict) -> web.Response:
        encoded = result.get("body") or ""
        if len(encoded) > MAX_LAMBDA_RESPONSE_BYTES:
            return _error(502, "response_too_large", "The function's answer exceeds Lambda's 6 MB "
                          "response limit; read large content by ranges.")
        data = base64.b64decode(encoded) if result.get("isBase64Encoded") else encoded.encode()
        response = web.Response(status=result.get("statusCode", 200), body=data)
        for name, value in (result.get("headers") or {}).items():
            response.headers[name] = str(value)
        for name, values in (result.get("multiValueHeaders") or {}).items():
            for value in values:
                response.headers.add(name, str(value))
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
        return response

    # -- static web UI -----------------------------------------------------------------------
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
        return web.json_response(config, headers={"Cache-Control": "no-store"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        if self.web_dir is None:
            return _error(404, "not_found", "No web UI is served here.")
        relative = request.match_info["tail"] or "index.html"
        root = self.web_dir.resolve()
        target = (root / relative).resolve()
        if root not in target.parents and target != root:
            return _error(404, "not_found", f"No page {request.path}.")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            return _error(404, "not_found", f"No page {request.path}.")
        return web.FileResponse(target)

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
        ws = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE_BYTES, autoping=True)
        await ws.prepare(request)
        connection.socket = ws
        self.connections[connection.id] = connection
        try:
            while True:
                try:
                    message = await ws.receive(timeout=WS_IDLE_TIMEOUT_SECONDS)
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
        if len(data) > MAX_WS_MESSAGE_BYTES:
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
