"""The OAuth2 providers this server can connect (Dropbox, Google Drive, OneDrive, Box): their
names, endpoints, scopes and this deployment's client credentials and URL overrides.

Apart from the flow itself (oauth.py), so that what only needs to know the providers (the
registry of storage kinds, the API description, the start of a connection) does not import
requests and oauthlib on a function's cold start. The overrides are described in oauth.py.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..settings import get_settings


class ProviderNotConfigured(RuntimeError):
    """This deployment has no OAuth application (client id) for the provider."""


@dataclass(frozen=True)
class Provider:
    name: str                         # also the storage kind: "dropbox", "gdrive", ...
    label: str                        # for people: "Google Drive"
    default_base_urls: Mapping[str, str]   # role -> base URL
    authorize_endpoint: tuple[str, str]    # (role, path)
    token_endpoint: tuple[str, str]
    scopes: tuple[str, ...]
    pkce: bool                        # S256 code challenge in the authorization request
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    # Microsoft wants the scopes repeated when refreshing; the others keep the granted ones.
    refresh_with_scope: bool = False

    def base_url(self, role: str) -> str:
        overrides = provider_url_overrides()
        url = overrides.get(f"{self.name}_{role}") or overrides.get(self.name)
        return (url or self.default_base_urls[role]).rstrip("/")

    @property
    def authorize_url(self) -> str:
        role, path = self.authorize_endpoint
        return self.base_url(role) + path

    @property
    def token_url(self) -> str:
        role, path = self.token_endpoint
        return self.base_url(role) + path

    def client_credentials(self) -> tuple[str, str]:
        settings = get_settings()
        client_id = getattr(settings, f"{self.name}_client_id")
        client_secret = getattr(settings, f"{self.name}_client_secret")
        if not client_id:
            raise ProviderNotConfigured(
                f"{self.label} is not set up on this server: "
                f"CLOUDSTRYPE_{self.name.upper()}_CLIENT_ID is empty"
            )
        return client_id, client_secret

    @property
    def configured(self) -> bool:
        return bool(getattr(get_settings(), f"{self.name}_client_id"))


PROVIDERS: Mapping[str, Provider] = MappingProxyType({
    "dropbox": Provider(
        name="dropbox",
        label="Dropbox",
        default_base_urls={
            "auth": "https://www.dropbox.com",
            "api": "https://api.dropboxapi.com",
            "content": "https://content.dropboxapi.com",
        },
        authorize_endpoint=("auth", "/oauth2/authorize"),
        token_endpoint=("api", "/oauth2/token"),
        scopes=("account_info.read", "files.metadata.read", "files.content.read",
                "files.content.write"),
        pkce=True,
        # Without it Dropbox issues a short-lived access token and no refresh token.
        authorize_params={"token_access_type": "offline"},
    ),
    "gdrive": Provider(
        name="gdrive",
        label="Google Drive",
        default_base_urls={
            "auth": "https://accounts.google.com",
            "token": "https://oauth2.googleapis.com",
            "api": "https://www.googleapis.com",
        },
        authorize_endpoint=("auth", "/o/oauth2/v2/auth"),
        token_endpoint=("token", "/token"),
        # drive.file: only the files this app created, nothing else of the user's.
        scopes=("https://www.googleapis.com/auth/drive.file",),
        pkce=True,
        # offline: a refresh token; consent: issue it again when the user reconnects.
        authorize_params={"access_type": "offline", "prompt": "consent"},
    ),
    "onedrive": Provider(
        name="onedrive",
        label="OneDrive",
        default_base_urls={
            "login": "https://login.microsoftonline.com",
            "api": "https://graph.microsoft.com",
        },
        authorize_endpoint=("login", "/common/oauth2/v2.0/authorize"),
        token_endpoint=("login", "/common/oauth2/v2.0/token"),
        # AppFolder: read/write in Apps/<app> only. Files.Read is the least scope Graph
        # accepts for GET /me/drive, the only place the quota is stated.
        scopes=("offline_access", "User.Read", "Files.Read", "Files.ReadWrite.AppFolder"),
        pkce=True,
        refresh_with_scope=True,
    ),
    "box": Provider(
        name="box",
        label="Box",
        default_base_urls={
            "auth": "https://account.box.com",
            "api": "https://api.box.com",
            "upload": "https://upload.box.com",
        },
        authorize_endpoint=("auth", "/api/oauth2/authorize"),
        token_endpoint=("api", "/oauth2/token"),
        scopes=(),   # Box grants the scopes configured on the application
        pkce=False,  # Box does not support PKCE
    ),
})

OVERRIDE_KEYS = frozenset(
    [name for name in PROVIDERS]
    + [f"{p.name}_{role}" for p in PROVIDERS.values() for role in p.default_base_urls]
)


def provider_url_overrides() -> dict[str, str]:
    """The CLOUDSTRYPE_PROVIDER_URL_OVERRIDES setting, checked (ValueError if malformed)."""
    raw = get_settings().provider_url_overrides.strip()
    if not raw:
        return {}
    try:
        overrides = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"CLOUDSTRYPE_PROVIDER_URL_OVERRIDES is not valid JSON: {exc}") from None
    if not isinstance(overrides, dict) or not all(isinstance(v, str) for v in overrides.values()):
        raise ValueError("CLOUDSTRYPE_PROVIDER_URL_OVERRIDES must be a JSON object of URL strings")
    unknown = sorted(set(overrides) - OVERRIDE_KEYS)
    if unknown:
        raise ValueError(
            f"CLOUDSTRYPE_PROVIDER_URL_OVERRIDES has unknown keys {unknown}; "
            f"known keys are {sorted(OVERRIDE_KEYS)}"
        )
    return overrides


def get_provider(provider: str | Provider) -> Provider:
    if isinstance(provider, Provider):
        return provider
    try:
        return PROVIDERS[provider]
    except KeyError:
        raise ValueError(
            f"unknown OAuth provider {provider!r}; expected one of {sorted(PROVIDERS)}"
        ) from None
