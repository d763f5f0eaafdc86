"""The OAuth2 providers (Dropbox, Google Drive, OneDrive, Box) and the authorization-code flow.

Connecting a storage:
    url, verifier = authorization_url("dropbox", redirect_uri, state)   # keep state + verifier
    ... the user consents; the provider redirects to redirect_uri?code=...&state=...
    token = exchange_code("dropbox", code, redirect_uri, verifier)       # store it encrypted
    session = make_session("dropbox", token, on_token_refreshed=save)
    account_info("dropbox", session)   # {"account_id", "display_name"} to label the storage

Client ids and secrets come from the settings (CLOUDSTRYPE_<PROVIDER>_CLIENT_ID / _SECRET).
Every base URL can be pointed elsewhere (tests, the local stack) through the setting
CLOUDSTRYPE_PROVIDER_URL_OVERRIDES, a JSON object whose keys are `<provider>_<role>`:

    dropbox_auth      https://www.dropbox.com              authorize page
    dropbox_api       https://api.dropboxapi.com           token endpoint, RPC endpoints
    dropbox_content   https://content.dropboxapi.com       upload / download
    gdrive_auth       https://accounts.google.com          authorize page
    gdrive_token      https://oauth2.googleapis.com        token endpoint
    gdrive_api        https://www.googleapis.com           Drive v3 and its upload endpoint
    onedrive_login    https://login.microsoftonline.com    authorize page, token endpoint
    onedrive_api      https://graph.microsoft.com          Microsoft Graph
    box_auth          https://account.box.com              authorize page
    box_api           https://api.box.com                  token endpoint, API
    box_upload        https://upload.box.com               uploads

or just `<provider>` (e.g. "box") to send every role of that provider to one base URL. A base
URL may carry a path ("http://127.0.0.1:5001/api"); API paths are appended to it. oauthlib
refuses plain-HTTP URLs unless OAUTHLIB_INSECURE_TRANSPORT is set, which only local test
servers should need.

requests-oauthlib logs whole tokens at DEBUG level; this module raises that logger's level so
they never reach a log.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable
from urllib.parse import urlencode

import requests
from oauthlib.oauth2 import OAuth2Error
from requests_oauthlib import OAuth2Session

from . import outbound
from .base import BackendAuthError, BackendError
from .http import DEFAULT_POLICY, ProviderClient, RetryPolicy, error_detail
from .providers import (  # noqa: F401  (the provider table, importable from here as before)
    OVERRIDE_KEYS,
    PROVIDERS,
    Provider,
    ProviderNotConfigured,
    get_provider,
    provider_url_overrides,
)

# Its debug lines hold token requests and answers (secrets): never below warnings, whatever the
# process's level (the local server says the same of it: infra/local/server.py).
logging.getLogger("requests_oauthlib").setLevel(logging.WARNING)

TokenCallback = Callable[[dict], None]

# Refresh this long before the access token's stated expiry, so a request never races it.
REFRESH_MARGIN_SECONDS = 60
TOKEN_REQUEST_TIMEOUT = (5.0, 10.0)
# Token errors that mean the grant is gone and a person must connect the storage again.
_DEAD_GRANT_ERRORS = {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied"}


def new_code_verifier() -> str:
    """A PKCE code verifier: 64 URL-safe characters (RFC 7636 asks for 43 to 128)."""
    return secrets.token_urlsafe(48)


def code_challenge_s256(code_verifier: str) -> str:
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(provider: str, redirect_uri: str, state: str) -> tuple[str, str | None]:
    """The URL to send the user to, and the PKCE code verifier to keep until the code comes
    back (None for providers without PKCE). `state` must be unguessable and checked on return."""
    p = get_provider(provider)
    if not state:
        raise ValueError("state must be a non-empty, unguessable string")
    client_id, _ = p.client_credentials()
    params = dict(p.authorize_params)
    code_verifier = None
    if p.pkce:
        code_verifier = new_code_verifier()
        params["code_challenge"] = code_challenge_s256(code_verifier)
        params["code_challenge_method"] = "S256"
    session = OAuth2Session(client_id, redirect_uri=redirect_uri, scope=list(p.scopes) or None)
    url, _ = session.authorization_url(p.authorize_url, state=state, **params)
    return url, code_verifier


def exchange_code(provider: str, code: str, redirect_uri: str,
                  code_verifier: str | None) -> dict:
    """Trade the authorization code for a token dict (access_token, refresh_token, expires_at,
    ...). Raises BackendAuthError if the provider refuses, BackendError if it cannot be reached."""
    p = get_provider(provider)
    client_id, client_secret = p.client_credentials()
    if p.pkce and not code_verifier:
        raise ValueError(f"{p.label} uses PKCE: pass the code verifier from authorization_url")
    # No scope on this session: providers answer with their own spelling of the granted scopes,
    # which oauthlib would otherwise report as a scope change and raise.
    session = OAuth2Session(client_id, redirect_uri=redirect_uri)
    # The request carries the app's client secret, the code and the PKCE verifier: it goes to
    # an allowed address only (outbound), and nowhere else by a redirect (a token endpoint
    # never redirects; a redirect is refused, not followed).
    outbound.guard_session(session)
    session.max_redirects = 0
    session.register_compliance_hook("access_token_response", _raise_if_transient(p))
    extra = {"code_verifier": code_verifier} if p.pkce else {}
    try:
        token = session.fetch_token(
            p.token_url, code=code, include_client_id=True, client_secret=client_secret,
            timeout=TOKEN_REQUEST_TIMEOUT, **extra,
        )
    except OAuth2Error as exc:
        raise BackendAuthError(
            f"{p.label} refused the authorization code ({_bounded(exc.error)}); start "
            f"connecting again") from exc
    except requests.TooManyRedirects as exc:
        raise BackendError(f"{p.label}'s token endpoint answered with a redirect, which is "
                           f"not followed") from exc
    except requests.RequestException as exc:
        raise BackendError(f"could not reach {p.label}'s token endpoint: "
                           f"{type(exc).__name__}") from exc
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise BackendError(f"{p.label}'s token endpoint gave an answer that is not an OAuth "
                           f"token") from exc
    return _checked_token(p, token)


def _bounded(text, limit: int = 100) -> str:
    """A provider's words in our message: at most `limit` characters of them."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "…"


def _checked_token(p: Provider, token) -> dict:
    """The token a provider gave, if it is one: a bearer access token of sane length, and a
    number of seconds (if any) until it expires."""
    if not isinstance(token, dict):
        raise BackendError(f"{p.label}'s token endpoint gave an answer that is not an OAuth "
                           f"token")
    access = token.get("access_token")
    kind = token.get("token_type", "bearer")
    expires = token.get("expires_in", 0)
    refresh = token.get("refresh_token")
    if not isinstance(access, str) or not 0 < len(access) <= 8192 or \
            not isinstance(kind, str) or kind.lower() != "bearer" or \
            isinstance(expires, bool) or not isinstance(expires, (int, float, str)) or \
            (refresh is not None and (not isinstance(refresh, str) or len(refresh) > 8192)):
        raise BackendError(f"{p.label}'s token answer is malformed (a bearer access token and "
                           f"its expiry are expected)")
    try:
        float(expires)
    except ValueError:
        raise BackendError(f"{p.label}'s token answer is malformed (its expires_in is not a "
                           f"number)") from None
    return dict(token)


class ProviderSession(OAuth2Session):
    """An OAuth2Session for one connected storage.

    It refreshes the access token shortly before the token's stated expiry (auto refresh) and
    when asked to after a 401 (`refresh_access_token`), and hands every new token to
    `on_token_refreshed` so the caller can persist it — Box retires the old refresh token at
    once (and Microsoft may), so a token not saved is a storage lost. Safe to share between
    threads: one refresh at a time, and a thread that saw an old token does not refresh again.
    """

    def __init__(self, provider: str | Provider, token: dict,
                 on_token_refreshed: TokenCallback | None = None,
                 stored_token: Callable[[], dict | None] | None = None):
        self.provider = get_provider(provider)
        client_id, client_secret = self.provider.client_credentials()
        super().__init__(
            client_id,
            token=dict(token),
            auto_refresh_url=self.provider.token_url,
            auto_refresh_kwargs={"client_id": client_id, "client_secret": client_secret},
            token_updater=self._token_refreshed,
        )
        self._on_token_refreshed = on_token_refreshed
        self._stored_token = stored_token
        self._refresh_lock = threading.Lock()
        self.register_compliance_hook("refresh_token_response", _raise_if_transient(self.provider))

    def request(self, method, url, data=None, headers=None, withhold_token=False, **kwargs):
        if not withhold_token and self._expires_soon():
            self.refresh_access_token(stale=self.access_token)
        if url == self.provider.token_url:
            # A refresh carries the app's client secret and the refresh token: as at the code
            # exchange, a redirect (a 307 or 308 would post them again, to wherever it names)
            # is refused, not followed (_raise_if_transient).
            kwargs["allow_redirects"] = False
        return super().request(method, url, data=data, headers=headers,
                               withhold_token=withhold_token, **kwargs)

    def refresh_access_token(self, stale: str | None = None) -> dict:
        """Get a new access token with the refresh token. If `stale` is given and the session
        already holds a different access token, another thread refreshed: nothing to do."""
        p = self.provider
        with self._refresh_lock:
            if stale is not None and self.access_token != stale:
                return self.token
            if not self.token.get("refresh_token"):
                raise BackendAuthError(
                    f"{p.label}: the access token expired and there is no refresh token; "
                    "reconnect the storage"
                )
            try:
                token = self._refresh_once()
            except _DeadGrant as dead:
                # Another process (another function, the scrub) may have refreshed with this
                # refresh token and stored the new one: Box retires a refresh token once used.
                stored = self._stored_token() if self._stored_token is not None else None
                used = self.token.get("refresh_token")
                if not stored or not stored.get("access_token") or \
                        stored.get("refresh_token") in (None, used):
                    raise dead.error from dead.__cause__
                self.token = dict(stored)
                if not self._expires_soon():
                    return self.token
                try:
                    token = self._refresh_once()
                except _DeadGrant as again:
                    raise again.error from again.__cause__
            self._token_refreshed(token)
            return token

    def _refresh_once(self) -> dict:
        """One refresh with the session's refresh token; _DeadGrant if the provider says the
        grant is dead (revoked, or a rotated refresh token used again)."""
        p = self.provider
        body = urlencode({"scope": " ".join(p.scopes)}) if p.refresh_with_scope else ""
        try:
            return self.refresh_token(p.token_url, body=body, timeout=TOKEN_REQUEST_TIMEOUT)
        except OAuth2Error as exc:
            if exc.error in _DEAD_GRANT_ERRORS:
                raise _DeadGrant(BackendAuthError(
                    f"{p.label} refused to refresh the access token ({exc.error}); "
                    "reconnect the storage")) from exc
            raise BackendError(f"{p.label}: token refresh failed ({exc.error})") from exc
        except requests.RequestException as exc:
            raise BackendError(
                f"could not reach {p.label}'s token endpoint: {type(exc).__name__}"
            ) from exc

    def _expires_soon(self) -> bool:
        expires_at = (self.token or {}).get("expires_at")
        return bool(expires_at) and float(expires_at) - time.time() < REFRESH_MARGIN_SECONDS

    def _token_refreshed(self, token: dict) -> None:
        if self._on_token_refreshed is not None:
            self._on_token_refreshed(dict(token))


class _DeadGrant(Exception):
    """The provider refused the refresh token (`error`: the BackendAuthError to raise)."""

    def __init__(self, error: BackendAuthError):
        super().__init__(str(error))
        self.error = error


def make_session(provider: str, token: dict,
                 on_token_refreshed: TokenCallback | None = None, *,
                 stored_token: Callable[[], dict | None] | None = None) -> ProviderSession:
    """A session that signs requests with `token` and keeps it fresh (see ProviderSession);
    `stored_token`: the token as stored now, looked at when the provider refuses a refresh."""
    if not isinstance(token, dict) or not token.get("access_token"):
        raise ValueError("token must be a dict with an access_token")
    return ProviderSession(provider, token, on_token_refreshed, stored_token)


def _raise_if_transient(p: Provider) -> Callable[[requests.Response], requests.Response]:
    """A compliance hook: a token endpoint that is down or busy is a passing BackendError, not
    an OAuth error (which would read as a dead grant)."""
    def check(response: requests.Response) -> requests.Response:
        if response.is_redirect:
            raise BackendError(f"{p.label}'s token endpoint answered with a redirect, which is "
                               f"not followed; try again later")
        if response.status_code == 429 or response.status_code >= 500:
            raise BackendError(
                f"{p.label}'s token endpoint answered HTTP {response.status_code} "
                f"({error_detail(response)}); try again later"
            )
        return response
    return check


# How each provider names the connected account: (role, method, path, id path, name paths).
_ACCOUNT_ENDPOINTS = {
    "dropbox": ("api", "POST", "/2/users/get_current_account",
                ("account_id",), (("name", "display_name"), ("email",))),
    "gdrive": ("api", "GET", "/drive/v3/about?fields=user",
               ("user", "permissionId"), (("user", "displayName"), ("user", "emailAddress"))),
    "onedrive": ("api", "GET", "/v1.0/me",
                 ("id",), (("displayName",), ("userPrincipalName",))),
    "box": ("api", "GET", "/2.0/users/me?fields=id,name,login",
            ("id",), (("name",), ("login",))),
}


def account_info(provider: str, session: requests.Session,
                 policy: RetryPolicy = DEFAULT_POLICY) -> dict[str, str]:
    """{"account_id", "display_name"} of the account behind `session`, from the provider's
    current-user endpoint, to label the connected storage."""
    p = get_provider(provider)
    role, method, path, id_path, name_paths = _ACCOUNT_ENDPOINTS[p.name]
    client = ProviderClient(session, p.label, policy=policy)
    response = client.send(method, p.base_url(role) + path)
    if response.status_code != 200:
        raise client.error_for(response, "read the account")
    body = client.json(response, "read the account")
    account_id = _dig(body, id_path)
    if isinstance(account_id, bool) or not isinstance(account_id, (str, int)) or \
            not 0 < len(str(account_id)) <= 256:
        raise BackendError(f"{p.label}: the account answer has no id (or not one of at most "
                           f"256 characters)")
    names = (_dig(body, name_path) for name_path in name_paths)
    display_name = next((_printable(name) for name in names
                         if isinstance(name, str) and _printable(name)), str(account_id))
    return {"account_id": str(account_id), "display_name": display_name[:200]}


def _printable(text: str) -> str:
    """A provider's name for an account, as we show it: without control or format characters
    (terminal escapes, line breaks, bidi overrides)."""
    return "".join(c for c in text if unicodedata.category(c) not in
                   ("Cc", "Cf", "Zl", "Zp")).strip()


def _dig(body: dict, path: tuple[str, ...]):
    for part in path:
        if not isinstance(body, dict):
            return None
        body = body.get(part)
    return body
