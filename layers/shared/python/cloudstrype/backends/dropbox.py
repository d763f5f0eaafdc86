"""Dropbox (API v2) as a backend: shares are files `/cloudstrype/<key>` in the app's folder."""
from __future__ import annotations

import json

import requests

from .base import Backend, BackendError, ShareNotFound, Usage, check_range
from .http import ProviderClient, RetryPolicy, is_429, is_507, range_headers
from .keys import check_key
from .oauth import PROVIDERS
from .pacing import Pacer, pacer_for


def _error_summary(response: requests.Response) -> str:
    """Dropbox explains a 409 in `error_summary`, e.g. "path/not_found/..."."""
    try:
        return str(response.json().get("error_summary", ""))
    except (ValueError, AttributeError):
        return ""


def _is_full(response: requests.Response) -> bool:
    return is_507(response) or (
        response.status_code == 409 and "insufficient_space" in _error_summary(response)
    )


def _is_not_found(response: requests.Response) -> bool:
    # "path/not_found/" (download, get_metadata) or "path_lookup/not_found/" (delete_v2).
    return response.status_code == 409 and "/not_found" in _error_summary(response)


class DropboxBackend(Backend):
    kind = "dropbox"
    # files/upload takes at most 150 MiB in one request.
    max_share_bytes = 150 * 1024 * 1024

    def __init__(self, session: requests.Session, *, folder: str = "/cloudstrype",
                 retry: RetryPolicy | None = None, pacer: Pacer | None = None):
        provider = PROVIDERS["dropbox"]
        self.folder = "/" + folder.strip("/")
        self._api_url = provider.base_url("api")
        self._content_url = provider.base_url("content")
        self._client = ProviderClient(session, provider.label, policy=retry,
                                      is_rate_limited=is_429, is_full=_is_full,
                                      pacer=pacer or pacer_for(self.kind))

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if len(data) > self.max_share_bytes:
            raise BackendError(f"Dropbox: a share of {len(data)} bytes is over the "
                               f"{self.max_share_bytes} byte single-upload limit")
        response = self._client.send(
            "POST", f"{self._content_url}/2/files/upload", write=True,
            headers={
                "Dropbox-API-Arg": _api_arg({"path": path, "mode": "overwrite",
                                             "autorename": False, "mute": True}),
                "Content-Type": "application/octet-stream",
            },
            data=data,
        )
        if response.status_code != 200:
            raise self._client.error_for(response, f"upload {key}")

    def get(self, key: str) -> bytes:
        response = self._client.send(
            "POST", f"{self._content_url}/2/files/download",
            headers={"Dropbox-API-Arg": _api_arg({"path": self._path(key)})},
        )
        if response.status_code == 200:
            return response.content
        if _is_not_found(response):
            raise ShareNotFound(f"Dropbox: no share {key}")
        raise self._client.error_for(response, f"download {key}")

    def get_range(self, key: str, start: int, length: int) -> bytes:
        # The content download endpoint takes a Range header, as a plain GET would.
        path = self._path(key)
        if check_range(start, length):
            return b""
        response = self._client.send(
            "POST", f"{self._content_url}/2/files/download",
            headers={"Dropbox-API-Arg": _api_arg({"path": path}),
                     **range_headers(start, length)},
        )
        body = self._client.ranged_body(response, start, length, f"download {key}")
        if body is not None:
            return body
        if _is_not_found(response):
            raise ShareNotFound(f"Dropbox: no share {key}")
        raise self._client.error_for(response, f"download {key}")

    def delete(self, key: str) -> None:
        response = self._client.send("POST", f"{self._api_url}/2/files/delete_v2", write=True,
                                     json={"path": self._path(key)})
        if response.status_code != 200 and not _is_not_found(response):
            raise self._client.error_for(response, f"delete {key}")

    def exists(self, key: str) -> bool:
        response = self._client.send("POST", f"{self._api_url}/2/files/get_metadata",
                                     json={"path": self._path(key)})
        if response.status_code == 200:
            return self._client.json(response, f"look up {key}").get(".tag") == "file"
        if _is_not_found(response):
            return False
        raise self._client.error_for(response, f"look up {key}")

    def usage(self) -> Usage:
        """The account's (or, in a team without per-member limits, the team's) usage."""
        # An RPC endpoint without arguments takes no body at all.
        response = self._client.send("POST", f"{self._api_url}/2/users/get_space_usage")
        if response.status_code != 200:
            raise self._client.error_for(response, "read the space usage")
        body = self._client.json(response, "read the space usage")
        allocation = body.get("allocation") or {}
        if allocation.get(".tag") == "individual":
            return Usage(used=int(body["used"]), capacity=int(allocation["allocated"]))
        if allocation.get(".tag") == "team":
            member_limit = int(allocation.get("user_within_team_space_allocated") or 0)
            if member_limit:   # 0 means no per-member limit
                return Usage(used=int(body["used"]), capacity=member_limit)
            return Usage(used=int(allocation["used"]), capacity=int(allocation["allocated"]))
        return Usage(used=int(body.get("used", 0)), capacity=None)

    def _path(self, key: str) -> str:
        return f"{self.folder}/{check_key(key)}"


def _api_arg(value: dict) -> str:
    # The header must be ASCII; json.dumps escapes anything else.
    return json.dumps(value, ensure_ascii=True)
