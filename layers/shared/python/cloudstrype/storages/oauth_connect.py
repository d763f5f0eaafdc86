"""Connecting a cloud account: the OAuth2 authorization-code flow, server side, in three steps.

1. `start` (the signed-in user) stores a random `state` (with the PKCE verifier, sealed, and a
   10-minute lifetime) and returns the provider's consent URL.
2. `callback` (public: the provider sends the browser back with `code` and `state`) consumes
   the state exactly once — a reused, expired, unknown or other-provider state is refused —
   exchanges the code, and keeps the grant sealed on the state with a one-time finish code,
   stored only as its hash. No storage exists yet: the callback cannot tell who the browser
   is (the provider's redirect carries no bearer token, and a cookie from the API would not
   reach it cross-origin), so on its own it would let anyone who lures a victim through an
   attacker's consent link attach the victim's cloud account to the attacker's Cloudstrype
   account. The finish code goes only to the browser that came back, in the URL fragment
   (never sent to a server, never logged).
3. `finish` (signed in again) creates the storage, only for the user who started and only
   with the finish code: the account that gains the storage is the one that asked for it,
   and the person who approved at the provider is the one who hands over the code.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from urllib.parse import quote, unquote, urlencode

from cloudstrype import errors, vault
from cloudstrype.backends import providers, registry
from cloudstrype.backends.base import BackendAuthError, BackendError
from cloudstrype.settings import get_settings
from cloudstrype.storages import service
from cloudstrype.storages.store import OAuthState, OAuthStateStore, Storage

# What an OAuth error code looks like (RFC 6749: access_denied, invalid_scope, ...).
OAUTH_ERROR_CODE = re.compile(r"[a-z_]{1,64}")

STATE_TTL_SECONDS = 600
# After the callback: how long the grant waits for its finish, how much randomness its code
# has, how many wrong codes end it.
FINISH_TTL_SECONDS = 600
FINISH_CODE_BYTES = 24
FINISH_ATTEMPTS = 5
FINISH_FIELD_MAX = 200
# Where the browser goes back to when the connect did not say (the CLI's): the storages page,
# which shows the finish code to paste.
DEFAULT_RETURN_TO = "/#/storages"

_states = OAuthStateStore()


def _flow():
    """The authorization-code flow (backends/oauth.py), imported when a connection starts or
    returns: it brings requests and oauthlib, which the cloud function's cold start (and every
    other request it serves) does without."""
    from cloudstrype.backends import oauth
    return oauth


def redirect_uri(provider: str) -> str:
    return f"{get_settings().public_url.rstrip('/')}/api/cloud/oauth/{provider}/callback"


def _provider(provider: str):
    if provider not in registry.KINDS or registry.KINDS[provider].auth != "oauth":
        raise errors.NotFound(f"No OAuth provider '{provider}'; choose one of "
                              f"{', '.join(sorted(providers.PROVIDERS))}.", code="unknown_provider")
    p = providers.get_provider(provider)
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
    service.check_name_free(owner, name, p.label)
    state = secrets.token_urlsafe(32)
    url, verifier = _flow().authorization_url(provider, redirect_uri(provider), state)
    record = OAuthState(state, owner=owner, provider=provider,
                        storage_name=(name or p.label)[:100],
                        return_to=_safe_return_to(return_to),
                        expires_at=int(time.time()) + STATE_TTL_SECONDS)
    if verifier:
        record.sealed_verifier = vault.seal(owner, verifier.encode(), f"oauth-state:{state}")
    _states.create(record)
    return {"provider": provider, "authorize_url": url, "state": state,
            "expires_in": STATE_TTL_SECONDS}


def callback(provider: str, code: str | None, state: str | None,
             error: str | None = None) -> str:
    """Exchange the provider's code and hold the grant; the web UI address to send the
    browser to, with the state and the finish code in its fragment."""
    if error:
        # An OAuth error code (RFC 6749 4.1.2.1) is a short word; anything else is not
        # repeated (it would be someone's text shown on this site).
        said = f" ({error})" if OAUTH_ERROR_CODE.fullmatch(error) else ""
        raise errors.BadRequest(f"The provider did not grant access{said}; connect the "
                                f"storage again to retry.", code="access_denied")
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
        flow = _flow()
        token = flow.exchange_code(provider, code, redirect_uri(provider), verifier)
        account = flow.account_info(provider, flow.make_session(provider, token))
    except BackendAuthError as exc:
        raise errors.BadRequest(f"The provider refused the authorization code: {exc}",
                                code="code_rejected") from None
    except BackendError as exc:
        raise errors.ServiceUnavailable(f"The provider could not be reached: {exc}") from None
    finish_code = secrets.token_urlsafe(FINISH_CODE_BYTES)
    sealed = vault.seal(record.owner, json.dumps({"token": token, "account": account}).encode(),
                        f"oauth-grant:{state}")
    if not _states.hold_grant(state, sealed, _finish_hash(finish_code),
                              int(time.time()) + FINISH_TTL_SECONDS):
        raise errors.BadRequest("This sign-in link was used already; start connecting again.",
                                code="reused_state")
    return return_location(record.return_to or DEFAULT_RETURN_TO,
                           {"provider": provider, "state": state, "finish_code": finish_code})


def finish(owner: str, provider: str, state: str | None,
           code: str | None) -> tuple[Storage, bool]:
    """Create the storage from a held grant: only for the user who started, with the finish
    code the callback gave the browser; once. -> (storage, whether the account was connected
    already: then that storage was given the new grant; see service.save_oauth_storage)."""
    _provider(provider)
    for name, value in (("state", state), ("code", code)):
        if not isinstance(value, str) or not value or len(value) > FINISH_FIELD_MAX:
            raise errors.BadRequest(f"Field '{name}' must be the {name} from the address the "
                                    f"browser came back to (1 to {FINISH_FIELD_MAX} "
                                    f"characters).", code="invalid_field",
                                    details={"field": name})
    record = _states.get(state)
    # Someone else's connection is answered like one that does not exist.
    if record is None or record.owner != owner or record.provider != provider:
        raise errors.NotFound(f"No {provider} connection in progress with this state for you; "
                              f"start connecting again.", code="unknown_connection")
    if record.finished:
        raise errors.Gone("This connection was finished already; see your storages.",
                          code="already_finished")
    if not record.finish_hash:
        if record.used:       # the callback failed (the code was refused, or a provider error)
            raise errors.Gone("This connection did not complete at the provider; start "
                              "connecting again.", code="connection_failed")
        raise errors.BadRequest("Access has not been approved at the provider yet: open the "
                                "authorize_url, approve, then finish with the code shown.",
                                code="not_approved")
    if (record.finish_expires_at or 0) < time.time():
        raise errors.Gone("This finish code has expired; start connecting again.",
                          code="expired_finish_code")
    if record.finish_failures >= FINISH_ATTEMPTS:
        raise errors.Gone("Too many wrong finish codes; start connecting again.",
                          code="too_many_attempts")
    if not hmac.compare_digest(_finish_hash(code), record.finish_hash):
        _states.count_finish_failure(state)
        raise errors.BadRequest("This finish code is not the one shown when you came back "
                                "from the provider; copy it again.", code="invalid_finish_code")
    if not _states.take_grant(state, record.finish_hash, FINISH_ATTEMPTS):
        raise errors.Gone("This connection was finished already; see your storages.",
                          code="already_finished")
    grant = json.loads(vault.open_sealed(owner, record.sealed_grant, f"oauth-grant:{state}"))
    return service.save_oauth_storage(owner, provider, record.storage_name, grant["token"],
                                      grant["account"])


def _finish_hash(code: str) -> str:
    # The code is random (FINISH_CODE_BYTES), so a plain hash is enough: only its holder can
    # produce it, and the table never holds it.
    return hashlib.sha256(code.encode()).hexdigest()


def return_location(return_to: str, params: dict) -> str:
    """Absolute, on the web UI's origin (a relative path would resolve against the API's
    host), with `params` in the fragment: a browser never sends it to a server, so the finish
    code is in no request line, log or Referer. The web UI routes by the fragment
    (#/storages?...), so they join its query there; a path without one gets the storages
    page's."""
    if "#" not in return_to:
        return_to += "#" + DEFAULT_RETURN_TO.partition("#")[2]
    separator = "&" if "?" in return_to.partition("#")[2] else "?"
    # Percent-encoded as a Location header needs (ASCII only); what is already encoded stays.
    shown = quote(return_to, safe="/#?&=%+:@!$'()*,;~-._")
    return f"{get_settings().web_origin()}{shown}{separator}{urlencode(params)}"
