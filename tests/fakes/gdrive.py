"""A fake Google Drive: the Drive v3 endpoints the backend uses, on accounts.google.com (auth),
oauth2.googleapis.com (token) and www.googleapis.com (api, including /upload).

Files have ids, names and parents; names need not be unique. `files.list` understands the
subset of the query language the backend speaks (name, mimeType, `'<id>' in parents` joined
by `or`, trashed = false) and rejects anything else. Errors have Google's shape:
{"error": {"code", "message", "errors": [{"reason", ...}]}}.
"""
from __future__ import annotations

import itertools
import json
import re

from werkzeug.wrappers import Request, Response

from .base import FakeProvider, parse_multipart

FOLDER = "application/vnd.google-apps.folder"
_QUERY = re.compile(
    r"name = '(?P<name>[^'\\]*)'"
    r"(?: and mimeType = '(?P<mime>[^']*)')?"
    r" and \(?(?P<parents>'[^']+' in parents(?: or '[^']+' in parents)*)\)?"
    r" and trashed = false"
)
_REASONS = {400: "badRequest", 401: "authError", 403: "forbidden", 404: "notFound",
            429: "rateLimitExceeded", 500: "backendError", 503: "backendError"}


class FakeGoogleDrive(FakeProvider):
    name = "gdrive"
    roles = ("auth", "token", "api")
    authorize_path = "/auth/o/oauth2/v2/auth"
    token_path = "/token/token"
    pkce = True
    rotates_refresh_tokens = False
    max_multipart_bytes = 5 * 1024 * 1024

    def __init__(self, *args, **kwargs):
        # id -> {id, name, mimeType, parents, data, created, modified}
        self.files: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)   # a logical clock for createdTime / modifiedTime
        super().__init__(*args, **kwargs)

    def add_routes(self) -> None:
        self.route("GET", r"/api/drive/v3/files", self._list)
        self.route("POST", r"/api/drive/v3/files", self._create_metadata_only, write=True)
        self.route("GET", r"/api/drive/v3/files/(?P<file_id>[^/]+)", self._get)
        self.route("DELETE", r"/api/drive/v3/files/(?P<file_id>[^/]+)", self._delete,
                   write=True)
        self.route("POST", r"/api/upload/drive/v3/files", self._create_multipart, write=True)
        self.route("PATCH", r"/api/upload/drive/v3/files/(?P<file_id>[^/]+)", self._update_media,
                   write=True)
        self.route("GET", r"/api/drive/v3/about", self._about)

    def token_extras(self) -> dict:
        return {"scope": "https://www.googleapis.com/auth/drive.file"}

    def used_bytes(self) -> int:
        return sum(len(f["data"]) for f in self.files.values())

    def error(self, status, code, message, headers=None) -> Response:
        reason = code or _REASONS.get(status, "backendError")
        body = {"error": {"code": status, "message": message,
                          "errors": [{"domain": "global", "reason": reason, "message": message}]}}
        if status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
        return self.json_response(body, status, headers)

    def auth_error(self, reason: str) -> Response:
        return self.error(401, "authError", "Invalid Credentials")

    # Drive's per-user limit answers 403 userRateLimitExceeded without a time to come back:
    # the client backs off exponentially.
    announces_retry_after = False

    def throttle(self, retry_after: str | None) -> Response:
        headers = {"Retry-After": retry_after} if retry_after else None
        return self.error(403, "userRateLimitExceeded", "User Rate Limit Exceeded", headers)

    # --- helpers for tests ----------------------------------------------------------------------

    def names_in(self, folder_id: str) -> list[str]:
        return sorted(f["name"] for f in self.files.values() if folder_id in f["parents"])

    def folders_named(self, name: str) -> list[str]:
        return [f["id"] for f in self.files.values()
                if f["name"] == name and f["mimeType"] == FOLDER]

    def add_file(self, name: str, parents: list[str], data: bytes = b"",
                 mime_type: str = "application/octet-stream") -> str:
        file_id = f"file{next(self._ids)}"
        tick = next(self._clock)
        self.files[file_id] = {"id": file_id, "name": name, "mimeType": mime_type,
                               "parents": parents, "data": data, "created": tick, "modified": tick}
        return file_id

    # --- endpoints ------------------------------------------------------------------------------

    def _list(self, request: Request) -> Response:
        match = _QUERY.fullmatch(request.args.get("q", ""))
        if not match:
            return self.error(400, "invalid", f"Invalid Value: q={request.args.get('q')!r}")
        parents = set(re.findall(r"'([^']+)' in parents", match["parents"]))
        found = [f for f in self.files.values()
                 if f["name"] == match["name"] and set(f["parents"]) & parents
                 and (match["mime"] is None or f["mimeType"] == match["mime"])]
        order = request.args.get("orderBy", "")
        if order.startswith("createdTime"):
            found.sort(key=lambda f: f["created"], reverse=order.endswith("desc"))
        elif order.startswith("modifiedTime"):
            found.sort(key=lambda f: f["modified"], reverse=order.endswith("desc"))
        page_size = int(request.args.get("pageSize", 100))
        start = int(request.args.get("pageToken", 0))
        page = found[start:start + page_size]
        body = {"files": [{"id": f["id"]} for f in page]}
        if start + page_size < len(found):
            body["nextPageToken"] = str(start + page_size)
        return self.json_response(body)

    def _create_metadata_only(self, request: Request) -> Response:
        metadata = request.get_json(silent=True) or {}
        parents = list(metadata.get("parents", ["root"]))
        file_id = self.add_file(metadata.get("name", "Untitled"), parents,
                                mime_type=metadata.get("mimeType", "application/octet-stream"))
        return self.json_response({"id": file_id})

    def _create_multipart(self, request: Request) -> Response:
        if request.args.get("uploadType") != "multipart":
            return self.error(400, "badRequest", "this fake only implements uploadType=multipart")
        if request.mimetype != "multipart/related":
            return self.error(400, "badContent", "multipart/related expected")
        raw = request.get_data()
        if len(raw) > self.max_multipart_bytes + 64 * 1024:
            return self.error(413, "uploadTooLarge", "Request Too Large")
        try:
            parts = parse_multipart(request.headers["Content-Type"], raw)
        except ValueError as exc:
            return self.error(400, "badContent", f"malformed multipart body: {exc}")
        if (len(parts) != 2
                or not parts[0][0].get("content-type", "").startswith("application/json")):
            return self.error(400, "badContent", "metadata part then media part expected")
        metadata = json.loads(parts[0][1])
        data = parts[1][1]
        parents = list(metadata.get("parents", ["root"]))
        for parent in parents:
            if parent != "root" and parent not in self.files:
                return self.error(404, "notFound", f"File not found: {parent}.")
        if self.used_bytes() + len(data) > self.quota_bytes:
            return self.error(403, "storageQuotaExceeded",
                              "The user's Drive storage quota has been exceeded.")
        file_id = self.add_file(metadata["name"], parents, data)
        return self.json_response({"id": file_id})

    def _update_media(self, request: Request, file_id: str) -> Response:
        if request.args.get("uploadType") != "media":
            return self.error(400, "badRequest", "this fake only implements uploadType=media here")
        entry = self.files.get(file_id)
        if entry is None:
            return self.error(404, "notFound", f"File not found: {file_id}.")
        data = request.get_data()
        if self.used_bytes() - len(entry["data"]) + len(data) > self.quota_bytes:
            return self.error(403, "storageQuotaExceeded",
                              "The user's Drive storage quota has been exceeded.")
        entry["data"] = data
        entry["modified"] = next(self._clock)
        return self.json_response({"id": file_id})

    def _get(self, request: Request, file_id: str) -> Response:
        entry = self.files.get(file_id)
        if entry is None:
            return self.error(404, "notFound", f"File not found: {file_id}.")
        if request.args.get("alt") == "media":
            return self.serve_file(request, entry["data"])
        return self.json_response({"id": file_id, "name": entry["name"],
                                   "size": str(len(entry["data"]))})

    def _delete(self, request: Request, file_id: str) -> Response:
        if self.files.pop(file_id, None) is None:
            return self.error(404, "notFound", f"File not found: {file_id}.")
        return Response(status=204)

    def _about(self, request: Request) -> Response:
        fields = request.args.get("fields", "")
        if fields == "storageQuota":
            used = str(self.used_bytes())
            return self.json_response({"storageQuota": {
                "limit": str(self.quota_bytes), "usage": used, "usageInDrive": used,
                "usageInDriveTrash": "0"}})
        if fields == "user":
            return self.json_response({"user": {
                "kind": "drive#user", "displayName": "Fake Drive User",
                "emailAddress": "fake@example.org",
                "permissionId": self.account_of(request, "00112233445566778899")}})
        return self.error(400, "required", "The 'fields' parameter is required for this method.")
