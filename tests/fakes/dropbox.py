"""A fake Dropbox: the API v2 endpoints the backend uses, on www (auth), api and content hosts.

Paths are case-insensitive as on Dropbox. Errors follow Dropbox's shapes: 409 with an
`error_summary` such as "path/not_found/" for endpoint-specific errors, 401 with
"expired_access_token/", 429 with "too_many_requests/" and Retry-After.
"""
from __future__ import annotations

import email.utils
import json
import math
import time

from werkzeug.wrappers import Request, Response

from .base import FakeProvider


class FakeDropbox(FakeProvider):
    name = "dropbox"
    roles = ("auth", "api", "content")
    authorize_path = "/auth/oauth2/authorize"
    token_path = "/api/oauth2/token"
    pkce = True
    rotates_refresh_tokens = False
    access_token_lifetime = 14400

    def __init__(self, *args, **kwargs):
        self.files: dict[str, tuple[str, bytes]] = {}   # lowercased path -> (path, bytes)
        # get_space_usage's "allocation"; None: an individual account with quota_bytes.
        self.space_allocation: dict | None = None
        super().__init__(*args, **kwargs)

    def add_routes(self) -> None:
        self.route("POST", r"/content/2/files/upload", self._upload, write=True)
        self.route("POST", r"/content/2/files/download", self._download)
        self.route("POST", r"/api/2/files/delete_v2", self._delete, write=True)
        self.route("POST", r"/api/2/files/get_metadata", self._get_metadata)
        self.route("POST", r"/api/2/users/get_space_usage", self._space_usage)
        self.route("POST", r"/api/2/users/get_current_account", self._current_account)

    def token_extras(self) -> dict:
        return {"scope": "account_info.read files.content.read files.content.write "
                         "files.metadata.read", "account_id": "dbid:fake-account", "uid": "12345"}

    def used_bytes(self) -> int:
        return sum(len(data) for _, data in self.files.values())

    def error(self, status, code, message, headers=None) -> Response:
        if status == 429:
            body = {"error_summary": "too_many_requests/", "error": {
                "reason": {".tag": "too_many_requests"},
                "retry_after": int(float((headers or {}).get("Retry-After", 1)))}}
            return self.json_response(body, status, headers)
        if status == 401:
            tag = code or "invalid_access_token"
            return self.json_response({"error_summary": f"{tag}/", "error": {".tag": tag}},
                                      status, headers)
        if status == 409:
            return self.json_response({"error_summary": f"{code}/", "error": {".tag": code}},
                                      status, headers)
        # Dropbox's 5xx and 400 answers are plain text.
        return Response(message, status=status, headers=headers, mimetype="text/plain")

    def auth_error(self, reason: str) -> Response:
        return self.error(401, f"{reason}_access_token", "")

    def throttle(self, retry_after: str | None) -> Response:
        # Concurrent writes to one account: 429 too_many_write_operations, with Retry-After.
        return self.json_response({
            "error_summary": "too_many_write_operations/",
            "error": {"reason": {".tag": "too_many_write_operations"},
                      "retry_after": math.ceil(_seconds(retry_after))}},
            429, {"Retry-After": retry_after} if retry_after else None)

    # --- endpoints ------------------------------------------------------------------------------

    def _upload(self, request: Request) -> Response:
        arg, problem = _api_arg(request)
        if problem:
            return problem
        if request.content_type != "application/octet-stream":
            return Response("Bad HTTP \"Content-Type\" header", status=400)
        if arg.get("mode") != "overwrite":
            return Response("this fake only implements mode=overwrite", status=400)
        path, data = arg["path"], request.get_data()
        existing = self.files.get(path.lower(), ("", b""))[1]
        if self.used_bytes() - len(existing) + len(data) > self.quota_bytes:
            return self.json_response({
                "error_summary": "path/insufficient_space/",
                "error": {".tag": "path", "reason": {".tag": "insufficient_space"}},
            }, 409)
        self.files[path.lower()] = (path, data)
        return self.json_response(self._metadata(path.lower()))

    def _download(self, request: Request) -> Response:
        arg, problem = _api_arg(request)
        if problem:
            return problem
        entry = self.files.get(arg["path"].lower())
        if entry is None:
            return self._not_found("path")
        headers = {"Dropbox-API-Result": json.dumps(self._metadata(arg["path"].lower()))}
        return self.serve_file(request, entry[1], headers)

    def _delete(self, request: Request) -> Response:
        arg, problem = _json_arg(request)
        if problem:
            return problem
        if self.files.pop(arg["path"].lower(), None) is None:
            return self._not_found("path_lookup")
        return self.json_response({"metadata": {".tag": "file", "path_lower": arg["path"].lower()}})

    def _get_metadata(self, request: Request) -> Response:
        arg, problem = _json_arg(request)
        if problem:
            return problem
        if arg["path"].lower() not in self.files:
            return self._not_found("path")
        return self.json_response(self._metadata(arg["path"].lower()))

    def _space_usage(self, request: Request) -> Response:
        if request.get_data():
            return Response("this endpoint takes no arguments", status=400)
        allocation = self.space_allocation or {".tag": "individual", "allocated": self.quota_bytes}
        return self.json_response({"used": self.used_bytes(), "allocation": allocation})

    def _current_account(self, request: Request) -> Response:
        return self.json_response({
            "account_id": self.account_of(request, "dbid:fake-account"),
            "email": "fake@example.org",
            "name": {"display_name": "Fake Dropbox User", "given_name": "Fake"},
        })

    def _metadata(self, path_lower: str) -> dict:
        path, data = self.files[path_lower]
        return {".tag": "file", "name": path.rsplit("/", 1)[-1], "path_lower": path_lower,
                "path_display": path, "id": f"id:{abs(hash(path_lower))}", "size": len(data)}

    def _not_found(self, tag: str) -> Response:
        return self.json_response({"error_summary": f"{tag}/not_found/",
                                   "error": {".tag": tag, tag: {".tag": "not_found"}}}, 409)


def _api_arg(request: Request) -> tuple[dict, Response | None]:
    """The Dropbox-API-Arg header of a content endpoint."""
    try:
        return _with_path(json.loads(request.headers["Dropbox-API-Arg"])), None
    except (KeyError, ValueError):
        return {}, Response("Error in call: bad Dropbox-API-Arg", status=400)


def _json_arg(request: Request) -> tuple[dict, Response | None]:
    """The JSON body of an RPC endpoint."""
    if request.content_type != "application/json":
        return {}, Response("Bad HTTP \"Content-Type\" header", status=400)
    try:
        return _with_path(json.loads(request.get_data())), None
    except ValueError:
        return {}, Response("Error in call: bad JSON body", status=400)


def _with_path(arg) -> dict:
    if not isinstance(arg, dict) or not str(arg.get("path", "")).startswith("/"):
        raise ValueError("an argument object with an absolute path is required")
    return arg


def _seconds(retry_after: str | None) -> float:
    """Retry-After in seconds, whether given as a number or an HTTP date."""
    if not retry_after:
        return 1.0
    try:
        return float(retry_after)
    except ValueError:
        when = email.utils.parsedate_to_datetime(retry_after).timestamp()
        return max(1.0, when - time.time())
