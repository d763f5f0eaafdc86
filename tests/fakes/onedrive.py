"""A fake OneDrive: the Microsoft Graph v1.0 endpoints the backend uses, on
login.microsoftonline.com (login) and graph.microsoft.com (api).

Files live in the app folder (special/approot), addressed by path, names case-insensitive.
Downloads answer 302 to a pre-authenticated URL as Graph does; that URL honours Range. Errors
have Graph's shape: {"error": {"code", "message"}}; a full drive answers 507 quotaLimitReached.
Like Microsoft's token endpoint, a refresh returns a new refresh token and wants the scopes
repeated.
"""
from __future__ import annotations

import itertools
import secrets

from werkzeug.wrappers import Request, Response

from .base import FakeProvider

_CODES = {400: "invalidRequest", 401: "InvalidAuthenticationToken", 403: "accessDenied",
          404: "itemNotFound", 429: "activityLimitReached", 500: "generalException",
          503: "serviceNotAvailable", 507: "quotaLimitReached"}
_APPROOT = r"/api/v1\.0/me/drive/special/approot:/(?P<name>[^/:]+)"


class FakeOneDrive(FakeProvider):
    name = "onedrive"
    roles = ("login", "api")
    authorize_path = "/login/common/oauth2/v2.0/authorize"
    token_path = "/login/common/oauth2/v2.0/token"
    pkce = True
    rotates_refresh_tokens = True
    basic_client_auth = False

    def __init__(self, *args, **kwargs):
        self.items: dict[str, dict] = {}      # lowercased name -> {id, name, data}
        self._ids = itertools.count(1)
        self._downloads: dict[str, str] = {}  # download token -> lowercased name
        super().__init__(*args, **kwargs)

    def add_routes(self) -> None:
        self.route("PUT", _APPROOT + r":/content", self._upload, write=True)
        self.route("GET", _APPROOT + r":/content", self._download)
        self.route("GET", _APPROOT, self._item)
        self.route("DELETE", r"/api/v1\.0/me/drive/items/(?P<item_id>[^/]+)", self._delete,
                   write=True)
        self.route("GET", r"/api/v1\.0/me/drive", self._drive)
        self.route("GET", r"/api/v1\.0/me", self._me)
        self.route("GET", r"/download/(?P<token>[^/]+)", self._download_content, kind="public")

    def token_extras(self) -> dict:
        return {"scope": "https://graph.microsoft.com/Files.Read "
                         "https://graph.microsoft.com/Files.ReadWrite.AppFolder "
                         "https://graph.microsoft.com/User.Read", "ext_expires_in": 3600}

    def check_refresh_request(self, form: dict) -> str | None:
        if "Files.ReadWrite.AppFolder" not in form.get("scope", ""):
            return "AADSTS90009: the refresh request must repeat the scopes"
        return None

    def used_bytes(self) -> int:
        return sum(len(item["data"]) for item in self.items.values())

    def error(self, status, code, message, headers=None) -> Response:
        return self.json_response(
            {"error": {"code": code or _CODES.get(status, "generalException"), "message": message,
                       "innerError": {"request-id": secrets.token_hex(8)}}}, status, headers)

    def auth_error(self, reason: str) -> Response:
        message = "Lifetime validation failed, the token is expired." if reason == "expired" \
            else "IDX14100: JWT is not well formed."
        return self.error(401, "InvalidAuthenticationToken", message)

    # --- endpoints ------------------------------------------------------------------------------

    def _upload(self, request: Request, name: str) -> Response:
        data = request.get_data()
        existing = self.items.get(name.lower())
        replaced = len(existing["data"]) if existing else 0
        if self.used_bytes() - replaced + len(data) > self.quota_bytes:
            return self.error(507, "quotaLimitReached", "Insufficient Space Available")
        if existing:
            existing["data"] = data
            return self.json_response(self._drive_item(existing), 200)
        item = {"id": f"ITEM!{next(self._ids)}", "name": name, "data": data}
        self.items[name.lower()] = item
        return self.json_response(self._drive_item(item), 201)

    def _download(self, request: Request, name: str) -> Response:
        if name.lower() not in self.items:
            return self.error(404, "itemNotFound", "The resource could not be found.")
        token = secrets.token_urlsafe(12)
        self._downloads[token] = name.lower()
        return Response(status=302, headers={"Location": f"{self.url}/download/{token}?tempauth=x"})

    def _download_content(self, request: Request, token: str) -> Response:
        item = self.items.get(self._downloads.pop(token, ""))
        if item is None:
            return Response("expired download URL", status=410)
        return self.serve_file(request, item["data"])

    def _item(self, request: Request, name: str) -> Response:
        item = self.items.get(name.lower())
        if item is None:
            return self.error(404, "itemNotFound", "The resource could not be found.")
        return self.json_response(self._drive_item(item))

    def _delete(self, request: Request, item_id: str) -> Response:
        for key, item in list(self.items.items()):
            if item["id"] == item_id:
                del self.items[key]
                return Response(status=204)
        return self.error(404, "itemNotFound", "The resource could not be found.")

    def _drive(self, request: Request) -> Response:
        used = self.used_bytes()
        return self.json_response({"id": "fake-drive", "driveType": "personal", "quota": {
            "total": self.quota_bytes, "used": used, "remaining": self.quota_bytes - used,
            "deleted": 0, "state": "normal"}})

    def _me(self, request: Request) -> Response:
        return self.json_response({"id": self.account_of(request, "fake-user-id"),
                                   "displayName": "Fake OneDrive User",
                                   "userPrincipalName": "fake@example.org"})

    @staticmethod
    def _drive_item(item: dict) -> dict:
        return {"id": item["id"], "name": item["name"], "size": len(item["data"]), "file": {}}
