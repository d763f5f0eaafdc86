"""A chalice app per service, with the conventions every route shares.

A route handler receives a `Call` (the parsed request and, when the route needs it, the verified
caller) and returns a dict (200 JSON) or a `Reply`. Everything a caller can get wrong becomes an
`ApiError`, rendered as `{"error": {"code", "message"}}` with its status; anything unexpected is
logged with a request id and answered as a 500 that names that id, never a stack trace.
"""
from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from chalice import Chalice, Response

from cloudstrype import errors
from cloudstrype.api.body import IN_PROCESS_EVENT, IN_PROCESS_MIN_BYTES, Call, InProcessBody
from cloudstrype.api.security_headers import API_CACHE_CONTROL
from cloudstrype.metadata.engine import ConditionFailed, MetadataError, StoreFull

log = logging.getLogger("cloudstrype")

# Who may call a route: nobody in particular, any signed-in user, or members of a group.
PUBLIC = "public"
USER = "user"
ADMINS = "admins"


@dataclass
class Reply:
    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    # Raw bytes answer (file content); `body` is then ignored.
    data: bytes | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class RouteInfo:
    service: str
    path: str
    method: str
    auth: str
    view_name: str


def _live_groups(principal) -> frozenset[str]:
    """The caller's groups now, from the identity provider, not the token's claims: someone
    removed from `admins` loses its routes at their next request, not when their token expires
    (an hour in Cognito), and cannot put themselves back meanwhile. A deleted account has
    none."""
    from cloudstrype.identity import get_identity
    try:
        return frozenset(get_identity().groups_of(principal.username))
    except errors.NotFound:
        return frozenset()


class ServiceApp(Chalice):
    """Chalice with per-thread request state, JSON errors and declared access per route.

    Chalice keeps the current request on the app object. Lambda runs one invocation at a time,
    but the local gateway serves many at once from one process, so the request is kept per
    thread.
    """

    def __init__(self, service: str, base_path: str):
        self._state = threading.local()
        super().__init__(app_name=f"cloudstrype-{service}")
        self.service = service
        self.base_path = base_path.rstrip("/")
        self.route_info: list[RouteInfo] = []
        # Every body may be binary (chunk data, file content); API Gateway is configured alike.
        self.api.binary_types = ["*/*"]
        self.register_middleware(self._normalize, "http")

    # -- per-thread chalice state -------------------------------------------------------------
    @property
    def current_request(self):  # type: ignore[override]
        return getattr(self._state, "request", None)

    @current_request.setter
    def current_request(self, value):
        self._state.request = value

    @property
    def lambda_context(self):  # type: ignore[override]
        return getattr(self._state, "context", None)

    @lambda_context.setter
    def lambda_context(self, value):
        self._state.context = value

    # -- routes -------------------------------------------------------------------------------
    def endpoint(self, path: str, methods: tuple[str, ...] | list[str] = ("GET",), *,
                 auth: str = USER) -> Callable:
        """Declare a route under the service's base path. `path` "" is the base path itself."""
        full_path = self.base_path + path if path else self.base_path

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(handler)
            def view(**path_params):
                return self._run(handler, auth, path_params, full_path)

            view.__name__ = f"{handler.__name__}"
            # Chalice checks content types against this list before our code runs; we accept any
            # and let each handler say what it needs in words (415 names the expected type).
            self.route(full_path, methods=list(methods), content_types=["*/*"])(view)
            for method in methods:
                self.route_info.append(RouteInfo(self.service, full_path, method, auth,
                                                 handler.__name__))
            return handler

        return register

    def _run(self, handler, auth: str, path_params: dict, full_path: str) -> Response:
        request = self.current_request
        request_id = _request_id(request)
        try:
            call = Call.from_chalice(request, path_params)
            if auth != PUBLIC:
                from cloudstrype.auth.tokens import authenticate
                call.principal = authenticate(call.header("authorization"))
                if auth != USER and auth not in _live_groups(call.principal):
                    raise errors.Forbidden(f"This needs membership of the '{auth}' group.")
            fields = _json_fields(request.method.upper(), full_path)
            # (A route taking no body checks only a JSON one: `{"x": 1}` to logout was taken.)
            if fields is not None and (fields or call.content_type == "application/json"):
                call.only_fields(*fields)
            result = handler(call, **path_params)
            return to_response(result)
        except errors.ApiError as exc:
            return _json(exc.status, exc.body(), exc.headers)
        except ConditionFailed:
            # A write raced another one the domain code did not expect; nothing was written.
            conflict = errors.Conflict("This changed while we were writing; try again.",
                                       code="concurrent_change")
            return _json(conflict.status, conflict.body())
        except MetadataError as exc:
            # Nothing was written. The log says what the operator must fix (it names the
            # server's files); the caller is told what happened, not where.
            log.error("metadata store (request %s): %s", request_id, exc)
            if isinstance(exc, StoreFull):
                failure = errors.InsufficientStorage(
                    f"The server's disk is full; nothing was written. Try again once its "
                    f"operator has freed space (request {request_id}).")
            else:
                failure = errors.ServiceUnavailable(
                    f"The server's metadata store could not do this now; nothing was written. "
                    f"Try again (request {request_id}).")
            return _json(failure.status, failure.body(), {"Retry-After": "30"})
        except Exception:
            log.exception("unhandled error in %s %s (request %s)", request.method,
                          request.path if request else "?", request_id)
            return _json(500, errors.error_body(
                500, "internal_error",
                f"Something went wrong on our side. Quote request id {request_id} "
                "if you report it."))

    @staticmethod
    def _normalize(request, get_response):
        # Chalice refuses binary answers unless the caller sent an Accept header; callers that
        # send none (plain HTTP libraries) accept anything.
        if request is not None and "accept" not in request.headers:
            request.headers._dict["accept"] = "*/*"
        response = get_response(request)
        if request is not None and type(response) is Response and \
                request.to_original_event().get(IN_PROCESS_EVENT):
            response = InProcessResponse(response.body, response.headers, response.status_code)
        # The web UI calls from its own origin (CloudFront); bearer tokens, no cookies, so any
        # origin may read the answers.
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
        response.headers.setdefault("Access-Control-Expose-Headers",
                                    "Content-Range, Content-Length, ETag, Accept-Ranges, "
                                    "Retry-After")
        # No answer is ever read as another type than it says (a JSON error naming a file
        # "<script>…" stays JSON).
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", API_CACHE_CONTROL)
        # Chalice's own errors (405 and the like) come as {"Code", "Message"}; speak ours.
        body = response.body
        if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
            code = {405: "method_not_allowed"}.get(response.status_code, "bad_request")
            response.body = errors.error_body(response.status_code, code, str(body.get("Message")))
        return response

    def routes_table(self) -> list[RouteInfo]:
        return list(self.route_info)


@functools.lru_cache(maxsize=None)
def _json_fields(method: str, path: str) -> tuple[str, ...] | None:
    # The API description is read on the first request with a body, not when a handler loads
    # (it imports every driver's declarations: cold starts).
    from cloudstrype.api.spec import json_fields
    return json_fields(method, path)


class InProcessResponse(Response):
    """The answer to an event of the local gateway (the function runs in its process): a large
    binary body goes back as an InProcessBody, the bytes, instead of base64 text."""

    def _base64encode(self, data: bytes) -> str | InProcessBody:
        if isinstance(data, bytes) and len(data) >= IN_PROCESS_MIN_BYTES:
            return InProcessBody(data)
        return super()._base64encode(data)


def to_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, Reply):
        headers = dict(result.headers)
        if result.data is not None:
            headers.setdefault("Content-Type", result.content_type or "application/octet-stream")
            return Response(body=bytes(result.data), status_code=result.status, headers=headers)
        if result.status in (204, 304) or (300 <= result.status < 400 and result.body is None):
            return Response(body="", status_code=result.status, headers=headers)
        return _json(result.status, result.body, headers)
    return _json(200, result)


def _json(status: int, body: Any, headers: dict | None = None) -> Response:
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return Response(body=json_text(body), status_code=status, headers=all_headers)


# Dataclasses and datetimes go through _json_default, as with the standard encoder (orjson
# would write a dataclass's every field).
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def json_text(body: Any) -> str:
    """orjson, a dozen times faster than the standard encoder (a batch's answer describes 500
    files); what it refuses (an integer past 64 bits, a key that is not a string) goes through
    the standard encoder."""
    try:
        return orjson.dumps(body, default=_json_default, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return json.dumps(body, default=_json_default)


def _json_default(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _request_id(request) -> str:
    try:
        return request.context.get("requestId") or uuid.uuid4().hex
    except AttributeError:
        return uuid.uuid4().hex
