"""The identity provider of this process, chosen by the `identity_provider` setting."""
from __future__ import annotations

import threading

from cloudstrype.identity.base import IdentityProvider

_provider: IdentityProvider | None = None
_provider_key: tuple | None = None
_lock = threading.Lock()


LOCAL_CLIENT_ID = "cloudstrype-local"


def token_settings(settings) -> tuple[str, str, str]:
    """(JWKS URL, issuer, client id) of the tokens this deployment accepts. The local service is
    its own issuer at the public URL, whose gateway serves the JWKS, unless set otherwise."""
    if settings.identity_provider == "local":
        base = settings.public_url.rstrip("/")
        return (settings.jwks_url or f"{base}/.well-known/jwks.json",
                settings.token_issuer or base,
                settings.user_pool_client_id or LOCAL_CLIENT_ID)
    return settings.jwks_url, settings.token_issuer, settings.user_pool_client_id


def get_identity() -> IdentityProvider:
    global _provider, _provider_key
    from cloudstrype.settings import get_settings
    key = _settings_key()
    with _lock:
        if _provider is None or _provider_key != key:
            _provider, _provider_key = _make(get_settings()), key
        return _provider


def _make(settings) -> IdentityProvider:
    if settings.identity_provider == "local":
        from cloudstrype.identity.local import LocalIdentity
        _, issuer, client_id = token_settings(settings)
        return LocalIdentity(settings.identity_key_path, issuer, client_id)
    if settings.identity_provider == "cognito":
        from cloudstrype.identity.cognito import CognitoIdentity
        return CognitoIdentity(settings.user_pool_id, settings.user_pool_client_id,
                               settings.region)
    raise RuntimeError(f"Unknown identity provider {settings.identity_provider!r}: set "
                       f"CLOUDSTRYPE_IDENTITY_PROVIDER to cognito or local.")


def set_identity(provider: IdentityProvider | None) -> None:
    """For tests and tools: use this provider in this process (None: back to the settings)."""
    global _provider, _provider_key
    with _lock:
        _provider = provider
        _provider_key = None if provider is None else _settings_key()


def _settings_key() -> tuple:
    from cloudstrype.settings import get_settings
    s = get_settings()
    return (s.identity_provider, s.identity_key_path, s.user_pool_id, s.region,
            s.public_url) + token_settings(s)
