"""OneDrive (Microsoft Graph v1.0) as a backend: shares are files in the app's own folder,
`/me/drive/special/approot` (Apps/<application name> in the user's OneDrive), addressed by path.
"""
from __future__ import annotations

from urllib.parse import quote

import requests

from .base import Backend, BackendError, ShareNotFound, Usage, check_range
from .http import ProviderClient, RetryPolicy, is_429, is_507, range_headers
from .keys import check_key
from .oauth import PROVIDERS
from .pacing import Pacer, pacer_for


def _is_rate_limited(response: requests.Response) -> bool:
    """429, or 503 with Retry-After: Graph throttles SharePoint and OneDrive with either
    (learn.microsoft.com/graph/throttling; /sharepoint/dev/general-development/how-to-avoid-
    getting-throttled-or-blocked-in-sharepoint-online)."""
    return is_429(response) or (response.status_code == 503 and
                                bool(response.headers.get("Retry-After")))


class OneDriveBackend(Backend):
    kind = "onedrive"
    # "Simple upload" (PUT .../content) takes files up to 250 MB.
    max_share_bytes = 250 * 1024 * 1024

    def __init__(self, session: requests.Session, *, retry: RetryPolicy | None = None,
                 pacer: Pacer | None = None):
        provider = PROVIDERS["onedrive"]
        self._drive_url = provider.base_url("api") + "/v1.0/me/drive"
        # Graph answers 507 Insufficient Storage (code quotaLimitReached) when the drive is full.
        self._client = ProviderClient(session, provider.label, policy=retry,
                                      is_rate_limited=_is_rate_limited, is_full=is_507,
                                      pacer=pacer or pacer_for(self.kind))

    def put(self, key: str, data: bytes) -> None:
        item_url = self._item_url(key)
        if len(data) > self.max_share_bytes:
            raise BackendError(f"OneDrive: a share of {len(data)} bytes is over the "
                               f"{self.max_share_bytes} byte simple-upload limit")
        # PUT .../content replaces an existing file of that name.
        response = self._client.send("PUT", f"{item_url}:/content", data=data, write=True,
                                     headers={"Content-Type": "application/octet-stream"})
        if response.status_code not in (200, 201):
            raise self._client.error_for(response, f"upload {key}")

    def get(self, key: str) -> bytes:
        # Graph answers 302 to a pre-authenticated download URL; requests follows it (and drops
        # our Authorization header, since that URL is on another host).
        response = self._client.send("GET", f"{self._item_url(key)}:/content")
        if response.status_code == 200:
            return response.content
        if response.status_code == 404:
            raise ShareNotFound(f"OneDrive: no share {key}")
        raise self._client.error_for(response, f"download {key}")

    def get_range(self, key: str, start: int, length: int) -> bytes:
        # The Range header is for the pre-authenticated URL of the 302; requests keeps it
        # when it follows the redirect.
        item_url = self._item_url(key)
        if check_range(start, length):
            return b""
        response = self._client.send("GET", f"{item_url}:/content",
                                     headers=range_headers(start, length))
        body = self._client.ranged_body(response, start, length, f"download {key}")
        if body is not None:
            return body
        if response.status_code == 404:
            raise ShareNotFound(f"OneDrive: no share {key}")
        raise self._client.error_for(response, f"download {key}")

    def delete(self, key: str) -> None:
        item_id = self._item_id(key)
        if item_id is None:
            return
        response = self._client.send("DELETE", f"{self._drive_url}/items/{quote(item_id, safe='')}",
                                     write=True)
        if response.status_code not in (204, 404):
            raise self._client.error_for(response, f"delete {key}")

    def exists(self, key: str) -> bool:
        return self._item_id(key) is not None

    def usage(self) -> Usage:
        """The drive's quota (for personal accounts, shared with Outlook and the rest)."""
        response = self._client.send("GET", self._drive_url, params={"$select": "quota"})
        if response.status_code != 200:
            raise self._client.error_for(response, "read the quota")
        quota = self._client.json(response, "read the quota").get("quota") or {}
        total = quota.get("total")
        return Usage(used=int(quota.get("used", 0)), capacity=int(total) if total else None)

    def _item_url(self, key: str) -> str:
        return f"{self._drive_url}/special/approot:/{check_key(key)}"

    def _item_id(self, key: str) -> str | None:
        response = self._client.send("GET", self._item_url(key), params={"$select": "id"})
        if response.status_code == 200:
            return str(self._client.json(response, f"look up {key}")["id"])
        if response.status_code == 404:
            return None
        raise self._client.error_for(response, f"look up {key}")
