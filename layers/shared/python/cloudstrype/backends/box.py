"""Box (API 2.0) as a backend: shares are files named by their key in a folder `cloudstrype`
at the top of the user's Box.

Box finds a file by name without listing the folder through the documented upload preflight
check (OPTIONS /files/content): for a name already taken it answers 409 naming the existing
file's id. The search API is not used because its index lags behind uploads, and listing the
folder grows with the number of shares.
"""
from __future__ import annotations

import json

import requests

from .base import Backend, BackendError, ShareNotFound, Usage, check_range
from .http import ProviderClient, RetryPolicy, is_429, is_507, range_headers
from .keys import check_key
from .oauth import PROVIDERS
from .pacing import Pacer, pacer_for

ROOT_FOLDER_ID = "0"
_FULL_CODES = {"storage_limit_exceeded", "insufficient_storage"}


def _error_body(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _is_rate_limited(response: requests.Response) -> bool:
    # 202 + Retry-After on a download: the file is not ready yet; wait as told.
    return is_429(response) or (
        response.status_code == 202 and "Retry-After" in response.headers
    )


def _is_full(response: requests.Response) -> bool:
    return is_507(response) or (
        response.status_code == 403 and _error_body(response).get("code") in _FULL_CODES
    )


def _conflicting_id(response: requests.Response, item_type: str) -> str | None:
    """The id of the file or folder whose name is taken, from a 409 item_name_in_use answer.
    Box has sent `conflicts` both as a list and as a single object."""
    body = _error_body(response)
    if response.status_code != 409 or body.get("code") != "item_name_in_use":
        return None
    conflicts = (body.get("context_info") or {}).get("conflicts")
    if isinstance(conflicts, dict):
        conflicts = [conflicts]
    for item in conflicts or []:
        if isinstance(item, dict) and item.get("type") == item_type and item.get("id"):
            return str(item["id"])
    return None


class BoxBackend(Backend):
    kind = "box"
    # The direct upload API takes files up to 50 MB in one request.
    max_share_bytes = 50 * 1024 * 1024

    def __init__(self, session: requests.Session, *, folder_name: str = "cloudstrype",
                 retry: RetryPolicy | None = None, pacer: Pacer | None = None):
        provider = PROVIDERS["box"]
        self.folder_name = folder_name
        self._api_url = provider.base_url("api") + "/2.0"
        self._upload_url = provider.base_url("upload") + "/api/2.0"
        self._client = ProviderClient(session, provider.label, policy=retry,
                                      is_rate_limited=_is_rate_limited, is_full=_is_full,
                                      pacer=pacer or pacer_for(self.kind))
        self._folder_id: str | None = None

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        if len(data) > self.max_share_bytes:
            raise BackendError(f"Box: a share of {len(data)} bytes is over the "
                               f"{self.max_share_bytes} byte direct-upload limit")
        response = self._upload(f"{self._upload_url}/files/content",
                                {"name": key, "parent": {"id": self._folder()}}, key, data)
        if response.status_code == 404:
            # The folder we knew was deleted meanwhile: find or make it again.
            self._folder_id = None
            response = self._upload(f"{self._upload_url}/files/content",
                                    {"name": key, "parent": {"id": self._folder()}}, key, data)
        existing_id = _conflicting_id(response, "file")
        if existing_id is not None:
            # The name is taken: upload a new version of that file instead.
            response = self._upload(f"{self._upload_url}/files/{existing_id}/content",
                                    {"name": key}, key, data)
        if response.status_code not in (200, 201):
            raise self._client.error_for(response, f"upload {key}")

    def get(self, key: str) -> bytes:
        file_id = self._file_id(key)
        if file_id is not None:
            # 302 to a pre-authenticated download URL on another host; requests follows it.
            response = self._client.send("GET", f"{self._api_url}/files/{file_id}/content")
            if response.status_code == 200:
                return response.content
            if response.status_code != 404:   # 404: deleted since we looked it up
                raise self._client.error_for(response, f"download {key}")
        raise ShareNotFound(f"Box: no share {key}")

    def get_range(self, key: str, start: int, length: int) -> bytes:
        # GET /files/{id}/content takes a Range header; requests keeps it on the 302.
        check_key(key)
        if check_range(start, length):
            return b""
        file_id = self._file_id(key)
        if file_id is not None:
            response = self._client.send("GET", f"{self._api_url}/files/{file_id}/content",
                                         headers=range_headers(start, length))
            body = self._client.ranged_body(response, start, length, f"download {key}")
            if body is not None:
                return body
            if response.status_code != 404:   # 404: deleted since we looked it up
                raise self._client.error_for(response, f"download {key}")
        raise ShareNotFound(f"Box: no share {key}")

    def delete(self, key: str) -> None:
        file_id = self._file_id(key)
        if file_id is None:
            return
        response = self._client.send("DELETE", f"{self._api_url}/files/{file_id}", write=True)
        if response.status_code not in (204, 404):
            raise self._client.error_for(response, f"delete {key}")

    def exists(self, key: str) -> bool:
        return self._file_id(key) is not None

    def usage(self) -> Usage:
        response = self._client.send("GET", f"{self._api_url}/users/me",
                                     params={"fields": "space_amount,space_used"})
        if response.status_code != 200:
            raise self._client.error_for(response, "read the space usage")
        body = self._client.json(response, "read the space usage")
        amount = body.get("space_amount")
        return Usage(used=int(body.get("space_used", 0)),
                     capacity=int(amount) if amount is not None else None)

    def _upload(self, url: str, attributes: dict, key: str, data: bytes) -> requests.Response:
        # Box requires the attributes part before the file part.
        return self._client.send("POST", url, write=True, files=[
            ("attributes", (None, json.dumps(attributes), "application/json")),
            ("file", (key, data, "application/octet-stream")),
        ])

    def _file_id(self, key: str) -> str | None:
        check_key(key)
        response = self._preflight(key)
        if response.status_code == 404:   # our folder was deleted meanwhile
            self._folder_id = None
            response = self._preflight(key)
        if response.status_code == 200:
            return None
        existing_id = _conflicting_id(response, "file")
        if existing_id is None:
            raise self._client.error_for(response, f"look up {key}")
        return existing_id

    def _preflight(self, key: str) -> requests.Response:
        return self._client.send("OPTIONS", f"{self._api_url}/files/content",
                                 json={"name": key, "parent": {"id": self._folder()}, "size": 0})

    def _folder(self) -> str:
        """Our folder's id: created on first use; a 409 names the one that already exists."""
        if self._folder_id is None:
            response = self._client.send(
                "POST", f"{self._api_url}/folders", params={"fields": "id"}, write=True,
                json={"name": self.folder_name, "parent": {"id": ROOT_FOLDER_ID}},
            )
            if response.status_code == 201:
                self._folder_id = str(self._client.json(response, "create the folder")["id"])
            else:
                self._folder_id = _conflicting_id(response, "folder")
                if self._folder_id is None:
                    raise self._client.error_for(response, "create the folder")
        return self._folder_id
