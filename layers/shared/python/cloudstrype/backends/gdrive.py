"""Google Drive (API v3) as a backend: shares are files named by their key in a folder
`cloudstrype` at the top of the user's Drive.

Drive allows several files of one name in a folder, and finds files by name only through a
`files.list` query, so: `put` updates the file of that name if there is one, `get` reads the
most recently modified one, `delete` removes them all. If two processes raced to create the
folder and made two, the oldest receives new shares and lookups search all of them.
"""
from __future__ import annotations

import json
import secrets
import threading

import requests

from .base import Backend, BackendError, ShareNotFound, Usage, check_range
from .http import ProviderClient, RetryPolicy, is_429, range_headers
from .keys import check_key
from .oauth import PROVIDERS
from .pacing import Pacer, pacer_for

FOLDER_MIME_TYPE = "application/vnd.google-apps.folder"
_RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
_FULL_REASONS = {"storageQuotaExceeded"}


def _error_reasons(response: requests.Response) -> set[str]:
    """Drive explains errors in error.errors[].reason, e.g. "storageQuotaExceeded"."""
    try:
        errors = response.json()["error"].get("errors") or []
        return {str(item.get("reason")) for item in errors if isinstance(item, dict)}
    except (ValueError, KeyError, TypeError, AttributeError):
        return set()


def _is_rate_limited(response: requests.Response) -> bool:
    # Drive answers 403 with a rate-limit reason as well as plain 429.
    return is_429(response) or (
        response.status_code == 403 and bool(_error_reasons(response) & _RATE_LIMIT_REASONS)
    )


def _is_full(response: requests.Response) -> bool:
    return response.status_code == 403 and bool(_error_reasons(response) & _FULL_REASONS)


class GoogleDriveBackend(Backend):
    kind = "gdrive"
    # uploadType=multipart is for files of 5 MB or less.
    max_share_bytes = 5 * 1024 * 1024

    def __init__(self, session: requests.Session, *, folder_name: str = "cloudstrype",
                 retry: RetryPolicy | None = None, pacer: Pacer | None = None):
        provider = PROVIDERS["gdrive"]
        self.folder_name = folder_name
        self._files_url = provider.base_url("api") + "/drive/v3/files"
        self._upload_url = provider.base_url("api") + "/upload/drive/v3/files"
        self._about_url = provider.base_url("api") + "/drive/v3/about"
        self._client = ProviderClient(session, provider.label, policy=retry,
                                      is_rate_limited=_is_rate_limited, is_full=_is_full,
                                      pacer=pacer or pacer_for(self.kind))
        self._folder_ids: list[str] = []
        # Our folder is looked for, and made, by one thread at a time: writes at once after it
        # went missing made one each, and this backend then searched only the last one made
        # (shares it had just written read as missing).
        self._folder_lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        if len(data) > self.max_share_bytes:
            raise BackendError(f"Google Drive: a share of {len(data)} bytes is over the "
                               f"{self.max_share_bytes} byte multipart-upload limit")
        existing = self._find(key)
        if existing:
            response = self._client.send(
                "PATCH", f"{self._upload_url}/{existing[0]}", write=True,
                params={"uploadType": "media", "fields": "id"},
                headers={"Content-Type": "application/octet-stream"}, data=data,
            )
        else:
            response, used = self._create(key, data)
            if response.status_code == 404:
                # The folder we knew was deleted meanwhile: find or make it again.
                self._forget_folder(used)
                response, _ = self._create(key, data)
        if response.status_code not in (200, 201):
            raise self._client.error_for(response, f"upload {key}")

    def get(self, key: str) -> bytes:
        for file_id in self._find(key):
            response = self._client.send("GET", f"{self._files_url}/{file_id}",
                                         params={"alt": "media"})
            if response.status_code == 200:
                return response.content
            if response.status_code != 404:   # 404: deleted since we listed it
                raise self._client.error_for(response, f"download {key}")
        raise ShareNotFound(f"Google Drive: no share {key}")

    def get_range(self, key: str, start: int, length: int) -> bytes:
        # files.get?alt=media takes a Range header ("partial download").
        check_key(key)
        if check_range(start, length):
            return b""
        for file_id in self._find(key):
            response = self._client.send("GET", f"{self._files_url}/{file_id}",
                                         params={"alt": "media"},
                                         headers=range_headers(start, length))
            body = self._client.ranged_body(response, start, length, f"download {key}")
            if body is not None:
                return body
            if response.status_code != 404:   # 404: deleted since we listed it
                raise self._client.error_for(response, f"download {key}")
        raise ShareNotFound(f"Google Drive: no share {key}")

    def delete(self, key: str) -> None:
        for file_id in self._find(key):
            response = self._client.send("DELETE", f"{self._files_url}/{file_id}", write=True)
            if response.status_code not in (200, 204, 404):
                raise self._client.error_for(response, f"delete {key}")

    def exists(self, key: str) -> bool:
        return bool(self._find(key))

    def usage(self) -> Usage:
        """The account's storage (shared by Drive, Gmail and Photos); no limit when unlimited."""
        response = self._client.send("GET", self._about_url, params={"fields": "storageQuota"})
        if response.status_code != 200:
            raise self._client.error_for(response, "read the storage quota")
        quota = self._client.json(response, "read the storage quota").get("storageQuota") or {}
        limit = quota.get("limit")   # int64 values come as strings
        return Usage(used=int(quota.get("usage", 0)), capacity=int(limit) if limit else None)

    def _create(self, key: str, data: bytes) -> tuple[requests.Response, list[str]]:
        """(the answer, the folders known when it was sent: a 404 forgets those alone)."""
        folders = self._folders(create=True)
        metadata = {"name": key, "parents": [folders[0]]}
        body, content_type = _multipart_related(metadata, data)
        return self._client.send(
            "POST", self._upload_url, write=True,
            params={"uploadType": "multipart", "fields": "id"},
            headers={"Content-Type": content_type}, data=body,
        ), folders

    def _find(self, key: str) -> list[str]:
        """Ids of the files named `key` in our folder(s), most recently modified first."""
        check_key(key)
        folders = self._folders(create=False)
        if not folders:
            return []
        in_folders = " or ".join(f"'{folder_id}' in parents" for folder_id in folders)
        # Keys contain no quote or backslash, so they need no escaping inside '...'.
        query = f"name = '{key}' and ({in_folders}) and trashed = false"
        files = self._list(query, order_by="modifiedTime desc", action=f"look up {key}")
        return [item["id"] for item in files]

    def _forget_folder(self, known: list[str]) -> None:
        """Look for our folder again on the next use, if `known` (the folders a request that
        met a 404 used) are still the ones known: another thread may have found or made the
        folder again meanwhile."""
        with self._folder_lock:
            if self._folder_ids == known:
                self._folder_ids = []

    def _folders(self, *, create: bool) -> list[str]:
        """Ids of our folder(s), oldest first; creates it when asked to and it is missing."""
        with self._folder_lock:
            if not self._folder_ids:
                self._folder_ids = self._listed_folders()
            if not self._folder_ids and create:
                response = self._client.send(
                    "POST", self._files_url, params={"fields": "id"}, write=True,
                    json={"name": self.folder_name, "mimeType": FOLDER_MIME_TYPE,
                          "parents": ["root"]},
                )
                if response.status_code not in (200, 201):
                    raise self._client.error_for(response, "create the folder")
                made = self._client.json(response, "create the folder")["id"]
                # Another process may have made one at the same moment: every lookup searches
                # all of them, and new shares go to the oldest.
                listed = self._listed_folders()
                self._folder_ids = listed if made in listed else [*listed, made]
            return list(self._folder_ids)

    def _listed_folders(self) -> list[str]:
        name = self.folder_name.replace("\\", "\\\\").replace("'", "\\'")
        query = (f"name = '{name}' and mimeType = '{FOLDER_MIME_TYPE}' "
                 "and 'root' in parents and trashed = false")
        found = self._list(query, order_by="createdTime", action="find the folder")
        return [item["id"] for item in found]

    def _list(self, query: str, *, order_by: str, action: str) -> list[dict]:
        files: list[dict] = []
        params = {"q": query, "fields": "nextPageToken, files(id)", "orderBy": order_by,
                  "spaces": "drive", "pageSize": 100}
        while True:
            response = self._client.send("GET", self._files_url, params=params)
            if response.status_code != 200:
                raise self._client.error_for(response, action)
            body = self._client.json(response, action)
            files.extend(body.get("files") or [])
            if not body.get("nextPageToken"):
                return files
            params["pageToken"] = body["nextPageToken"]


def _multipart_related(metadata: dict, data: bytes) -> tuple[bytes, str]:
    """A multipart/related body (JSON metadata, then the bytes) and its Content-Type."""
    boundary = secrets.token_hex(16)
    while boundary.encode() in data:   # practically never; but a boundary must not occur
        boundary = secrets.token_hex(16)
    head = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            f"{json.dumps(metadata)}\r\n"
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + data + tail, f"multipart/related; boundary={boundary}"
