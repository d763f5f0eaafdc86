"""Connecting a cloud account: the OAuth2 authorization-code flow, server side.

`start` stores a random `state` (with the PKCE verifier, sealed, and a 10-minute lifetime) and
returns the provider's consent URL. The provider sends the browser back to the callback with
`code` and `state`; `finish` consumes the state exactly once — a reused, expired, unknown or
other-provider state is refused — exchanges the code and saves the storage for the user who
started the flow.
"""
from __future__ import annotations

import secrets
import time
from urllib.parse import unquote, urlencode

from cloudstrype import errors, vault
from cloudstrype.backends import oauth, registry
from cloudstrype.backends.base import BackendAuthError, BackendError
from cloudstrype.settings import get_settings
from cloudstrype.storages import service
from cloudstrype.storages.store import OAuthState, OAuthStateStore, Storage

STATE_TTL_SECONDS = 600

_states = OAuthStateStore()


def redirect_uri(provider: str) -> str:
    return f"{get_settings().public_url.rstrip('/')}/api/cloud/oauth/{provider}/callback"


def _provider(provider: str):
    if provider not in registry.KINDS or registry.KINDS[provider].auth != "oauth":
        raise errors.NotFound(f"No OAuth provider '{provider}'; choose one of "
                              f"{', '.join(sorted(oauth.PROVIDERS))}.", code="unknown_provider")
    p = oauth.get_provider(provider)
    if not p.configured:
        raise errors.BadRequest(f"{p.label} is not set up on this deployment (no OAuth client "
                                f"id); ask the operator to configure it.",
                                code="provider_not_configured")
    return p


RETURN_TO_MAX = 500


def _safe_return_to(value: str | None) -> str | None:
    # Only paths on this site: the callback must never become an open redirect. Browsers drop
    # tabs and newlines and read "\\" as "/", so "/\t/evil.example" would be "//evil.example";
    # the decoded form is checked too, for a redirect that is decoded once more on the way.
    if not value:
        return None
    for form in (value, unquote(value)):
        if not form.startswith("/") or form.startswith("//") or "\\" in form \
                or any(ord(c) < 32 or ord(c) == 127 for c in form) \
                or len(form) > RETURN_TO_MAX:
            raise errors.BadRequest("return_to must be a path on this site, like /#/storages "
                                    "(one leading '/', no '//', backslash or control "
                                    "characters).", code="invalid_return_to")
    return value


def start(owner: str, provider: str, name: str | None, return_to: str | None) -> dict:
    p = _provider(provider)
    state = secrets.token_urlsafe(32)
    url, verifier = oauth.authorization_url(provider, redirect_uri(provider), state)
    record = OAuthState(state, owner=owner, provider=provider,
                        storage_name=(name or p.label)[:100],
                        return_to=_safe_return_to(return_to),
                        expires_at=int(time.time()) + STATE_TTL_SECONDS)
    if verifier:
        record.sealed_verifier = vault.seal(owner, verifier.encode(), f"oauth-state:{state}")
    _states.create(record)
    return {"provider": provider, "authorize_url": url, "state": state,
            "expires_in": STATE_TTL_SECONDS}


def finish(provider: str, code: str | None, state: str | None, error: str | None = None,
           caller: str | None = None) -> tuple[Storage, str | None]:
    if error:
        raise errors.BadRequest(f"The provider did not grant access: {error}.",
                                code="access_denied")
    if not code or not state:
        raise errors.BadRequest("The callback needs both 'code' and 'state' query parameters.",
                                code="missing_parameter")
    _provider(provider)
    record = _states.get(state)
    if record is None:
        raise errors.BadRequest("This sign-in link is not one we issued (unknown state); start "
                                "connecting again.", code="invalid_state")
    if record.provider != provider:
        raise errors.BadRequest("This state was issued for another provider.",
                                code="invalid_state")
    if caller is not None and caller != record.owner:
        raise errors.Forbidden("This connection was started by another user.",
                               code="invalid_state")
    if record.expires_at < time.time():
        raise errors.BadRequest("This sign-in link has expired; start connecting again.",
                                code="expired_state")
    # Consume exactly once, even if the browser sends the callback twice at the same time.
    if not _states.consume(state):
        raise errors.BadRequest("This sign-in link was used already; start connecting again.",
                                code="reused_state")
    verifier = None
    if record.sealed_verifier:
        verifier = vault.open_sealed(record.owner, record.sealed_verifier,
                                     f"oauth-state:{state}").decode()
    try:
        token = oauth.exchange_code(provider, code, redirect_uri(provider), verifier)
        account = oauth.account_info(provider, oauth.make_session(provider, token))
    except BackendAuthError as exc:
        raise errors.BadRequest(f"The provider refused the authorization code: {exc}",
                                code="code_rejected") from None
    except BackendError as exc:
        raise errors.ServiceUnavailable(f"The provider could not be reached: {exc}") from None
    saved = service.save_oauth_storage(record.owner, provider, record.storage_name, token,
                                       account)
    return saved, record.return_to


def return_location(return_to: str, storage_id: str) -> str:
    # Absolute, on the web UI's origin: a relative path would resolve against the API's host.
    separator = "&" if "?" in return_to else "?"
    return f"{get_settings().web_origin()}{return_to}{separator}" \
           f"{urlencode({'connected': storage_id})}"
