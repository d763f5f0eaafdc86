"""A fake Box: the API 2.0 endpoints the backend uses, on account.box.com (auth), api.box.com
(api, including the token endpoint) and upload.box.com (upload).

Folders and files have ids and one parent; a name is unique in its folder (case-insensitive),
and a clash answers 409 item_name_in_use naming the existing item, both on upload and in the
preflight check (OPTIONS /files/content). Downloads answer 302 to a pre-authenticated URL,
which honours Range. Box has no PKCE; its refresh tokens are single-use (each refresh returns a
new one). Errors have Box's shape: {"type": "error", "status", "code", "message",
"context_info"}.
"""
from __future__ import annotations

import itertools
import json
import secrets

from werkzeug.http import parse_options_header
from werkzeug.wrappers import Request, Response

from .base import FakeProvider, parse_multipart

_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 409: "conflict",
          429: "rate_limit_exceeded", 500: "internal_server_error", 503: "unavailable"}


class FakeBox(FakeProvider):
    name = "box"
    roles = ("auth", "api", "upload")
    authorize_path = "/auth/api/oauth2/authorize"
    token_path = "/api/oauth2/token"
    pkce = False
    rotates_refresh_tokens = True
    basic_client_auth = False

    def __init__(self, *args, **kwargs):
        self.folders: dict[str, dict] = {"0": {"id": "0", "name": "All Files", "parent": None}}
        self.files: dict[str, dict] = {}   # id -> {id, name, parent, data, versions}
        self._ids = itertools.count(1000)
        self._downloads: dict[str, str] = {}
        super().__init__(*args, **kwargs)

    def add_routes(self) -> None:
        self.route("POST", r"/api/2\.0/folders", self._create_folder, write=True)
        self.route("OPTIONS", r"/api/2\.0/files/content", self._preflight)
        self.route("POST", r"/upload/api/2\.0/files/content", self._upload_new, write=True)
        self.route("POST", r"/upload/api/2\.0/files/(?P<file_id>\d+)/content",
                   self._upload_version, write=True)
        self.route("GET", r"/api/2\.0/files/(?P<file_id>\d+)/content", self._download)
        self.route("DELETE", r"/api/2\.0/files/(?P<file_id>\d+)", self._delete, write=True)
        self.route("GET", r"/api/2\.0/users/me", self._me)
        self.route("GET", r"/download/(?P<token>[^/]+)", self._download_content, kind="public")

    def used_bytes(self) -> int:
        return sum(len(f["data"]) for f in self.files.values())

    def error(self, status, code, message, headers=None, context_info=None) -> Response:
        if status == 202:   # "not ready yet": an empty body and Retry-After
            return Response(status=202, headers=headers)
        body = {"type": "error", "status": status, "code": code or _CODES.get(status, "error"),
                "message": message, "request_id": secrets.token_hex(6)}
        if context_info is not None:
            body["context_info"] = context_info
        return self.json_response(body, status, headers)

    def auth_error(self, reason: str) -> Response:
        # Box answers a bad token with an empty body and the reason in WWW-Authenticate.
        return Response(status=401, headers={"WWW-Authenticate": (
            'Bearer realm="Service", error="invalid_token", '
            'error_description="The access token provided is invalid."')})

    # --- helpers for tests ----------------------------------------------------------------------

    def folder_named(self, name: str, parent: str = "0") -> str | None:
        return next((f["id"] for f in self.folders.values()
                     if f["parent"] == parent and f["name"].lower() == name.lower()), None)

    def file_named(self, name: str, parent: str) -> dict | None:
        return next((f for f in self.files.values()
                     if f["parent"] == parent and f["name"].lower() == name.lower()), None)

    # --- endpoints ------------------------------------------------------------------------------

    def _create_folder(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        parent = (body.get("parent") or {}).get("id")
        if parent not in self.folders or not body.get("name"):
            return self.error(404, "not_found", "parent folder not found")
        existing = self.folder_named(body["name"], parent)
        if existing:   # Box lists folder conflicts as an array
            return self._name_in_use([{"type": "folder", "id": existing, "name": body["name"]}])
        folder_id = str(next(self._ids))
        self.folders[folder_id] = {"id": folder_id, "name": body["name"], "parent": parent}
        return self.json_response({"type": "folder", "id": folder_id, "name": body["name"]}, 201)

    def _preflight(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        parent = (body.get("parent") or {}).get("id")
        if parent not in self.folders or not body.get("name"):
            return self.error(404, "not_found", "parent folder not found")
        existing = self.file_named(body["name"], parent)
        if existing:   # ... and, here, a file conflict as a single object
            return self._name_in_use(
                {"type": "file", "id": existing["id"], "name": existing["name"]})
        if self.used_bytes() + int(body.get("size") or 0) > self.quota_bytes:
            return self.error(403, "storage_limit_exceeded", "Account storage limit reached")
        return self.json_response({"upload_url": f"{self.url}/upload/api/2.0/files/content",
                                   "upload_token": None})

    def _upload_new(self, request: Request) -> Response:
        parsed = self._multipart(request)
        if isinstance(parsed, Response):
            return parsed
        attributes, data = parsed
        parent = (attributes.get("parent") or {}).get("id")
        if parent not in self.folders or not attributes.get("name"):
            return self.error(404, "not_found", "parent folder not found")
        existing = self.file_named(attributes["name"], parent)
        if existing:
            return self._name_in_use(
                [{"type": "file", "id": existing["id"], "name": existing["name"]}])
        if self.used_bytes() + len(data) > self.quota_bytes:
            return self.error(403, "storage_limit_exceeded", "Account storage limit reached")
        file_id = str(next(self._ids))
        self.files[file_id] = {"id": file_id, "name": attributes["name"], "parent": parent,
                               "data": data, "versions": 1}
        return self._file_entries(self.files[file_id])

    def _upload_version(self, request: Request, file_id: str) -> Response:
        parsed = self._multipart(request)
        if isinstance(parsed, Response):
            return parsed
        _, data = parsed
        entry = self.files.get(file_id)
        if entry is None:
            return self.error(404, "not_found", "file not found")
        if self.used_bytes() - len(entry["data"]) + len(data) > self.quota_bytes:
            return self.error(403, "storage_limit_exceeded", "Account storage limit reached")
        entry["data"] = data
        entry["versions"] += 1
        return self._file_entries(entry)

    def _download(self, request: Request, file_id: str) -> Response:
        if file_id not in self.files:
            return self.error(404, "not_found", "file not found")
        token = secrets.token_urlsafe(12)
        self._downloads[token] = file_id
        return Response(status=302, headers={"Location": f"{self.url}/download/{token}"})

    def _download_content(self, request: Request, token: str) -> Response:
        entry = self.files.get(self._downloads.pop(token, ""))
        if entry is None:
            return Response("expired download URL", status=410)
        return self.serve_file(request, entry["data"])

    def _delete(self, request: Request, file_id: str) -> Response:
        if self.files.pop(file_id, None) is None:
            return self.error(404, "not_found", "file not found")
        return Response(status=204)

    def _me(self, request: Request) -> Response:
        return self.json_response({"type": "user", "id": self.account_of(request, "11446498"),
                                   "name": "Fake Box User",
                                   "login": "fake@example.org", "space_amount": self.quota_bytes,
                                   "space_used": self.used_bytes()})

    def _name_in_use(self, conflicts) -> Response:
        return self.error(409, "item_name_in_use", "Item with the same name already exists",
                          context_info={"conflicts": conflicts})

    def _file_entries(self, entry: dict) -> Response:
        return self.json_response({"total_count": 1, "entries": [
            {"type": "file", "id": entry["id"], "name": entry["name"],
             "size": len(entry["data"])}]},
            201)

    def _multipart(self, request: Request) -> tuple[dict, bytes] | Response:
        """The attributes and file parts of an upload; Box wants attributes first."""
        if request.mimetype != "multipart/form-data":
            return self.error(400, "bad_request", "multipart/form-data expected")
        try:
            parts = parse_multipart(request.headers["Content-Type"], request.get_data())
        except ValueError as exc:
            return self.error(400, "bad_request", f"malformed multipart body: {exc}")
        names = [_form_field_name(headers) for headers, _ in parts]
        if names != ["attributes", "file"]:
            return self.error(400, "bad_request",
                              f"expected the parts attributes then file, got {names}")
        return json.loads(parts[0][1]), parts[1][1]


def _form_field_name(headers: dict[str, str]) -> str | None:
    _, options = parse_options_header(headers.get("content-disposition", ""))
    return options.get("name")
