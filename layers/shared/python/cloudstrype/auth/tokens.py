"""Verifying Cognito-issued JWTs ourselves, whatever sits in front of the function.

RS256 only, against the issuer's JWKS URL (cached; Cognito's, or the local gateway's for the
local identity service), checking signature, expiry, issuer, the app client and
`token_use`. Both id and access tokens are accepted as bearer tokens. Then the identity provider
says whether the sign-in has ended (logout, deleted user): the local service answers from its
store on every request; Cognito's tokens live until they expire (see identity/cognito.py).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import jwt
from jwt import PyJWKClient

from cloudstrype import errors
from cloudstrype.identity import get_identity, token_settings
from cloudstrype.settings import get_settings

ALGORITHM = "RS256"
# Clock skew tolerated between the token's issuer and this function.
LEEWAY_SECONDS = 30
# Tokens a verifier remembers as checked (the oldest forgotten first).
VERIFIED_TOKENS = 4096


@dataclass(frozen=True)
class Principal:
    user_id: str            # Cognito `sub`: every item this user owns is keyed by it
    username: str
    groups: frozenset[str] = field(default_factory=frozenset)
    token_use: str = "access"
    claims: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_admin(self) -> bool:
        return "admins" in self.groups


class TokenVerifier:
    def __init__(self, jwks_url: str, issuer: str, client_id: str):
        if not (jwks_url and issuer and client_id):
            raise RuntimeError("Token verification is not configured: set CLOUDSTRYPE_JWKS_URL, "
                               "CLOUDSTRYPE_TOKEN_ISSUER and CLOUDSTRYPE_USER_POOL_CLIENT_ID.")
        self.issuer = issuer
        self.client_id = client_id
        # PyJWKClient caches the key set and refetches it when a token names an unknown key.
        self._jwks = PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=10)
        # Tokens whose signature and claims checked out, with their expiry: a client sends
        # the same token with every request (a download's 64 ranges), and checking it again
        # took 7% of the server's GIL-holding time in one (py-spy). Expiry and revocation are
        # still checked on every request.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._verified_lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        with self._verified_lock:
            known = self._verified.get(token)
        if known is not None and time.time() <= known[1] + LEEWAY_SECONDS:
            principal = known[0]
        else:
            if known is not None:
                with self._verified_lock:
                    self._verified.pop(token, None)     # expired: _check says so
            principal = self._check(token)
            with self._verified_lock:
                self._verified[token] = (principal, float(principal.claims["exp"]))
                while len(self._verified) > VERIFIED_TOKENS:
                    self._verified.popitem(last=False)
        if get_identity().is_revoked(principal.claims):
            raise errors.Unauthorized("This sign-in has ended (logged out, the password "
                                      "changed or reset, or the account deleted); log in "
                                      "again.", code="token_revoked")
        return principal

    def known(self, token: str) -> Principal | None:
        """The principal of a token this verifier has checked already and that has not expired,
        without checking anything (no I/O: callers may be on an event loop)."""
        with self._verified_lock:
            known = self._verified.get(token)
        if known is None or time.time() > known[1] + LEEWAY_SECONDS:
            return None
        return known[0]

    def _check(self, token: str) -> Principal:
        """The token's principal if its signature and claims check out (not its revocation)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise errors.Unauthorized("The bearer token is not a well-formed JWT.",
                                      code="invalid_token") from None
        if header.get("alg") != ALGORITHM:
            raise errors.Unauthorized(f"Tokens must be signed with {ALGORITHM}.",
                                      code="invalid_token")
        try:
            signing_key = self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError:
            raise errors.ServiceUnavailable("The token signing keys could not be fetched; try "
                                            "again shortly.") from None
        except jwt.PyJWTError:
            raise errors.Unauthorized("The token was not signed by this user pool.",
                                      code="invalid_token") from None
        try:
            claims = jwt.decode(
                token, signing_key, algorithms=[ALGORITHM], issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "sub", "token_use"],
                         # The audience claim exists only on id tokens; checked below per kind.
                         "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise errors.Unauthorized("The token has expired; refresh it or log in again.",
                                      code="token_expired") from None
        except jwt.PyJWTError as exc:
            raise errors.Unauthorized(f"The token is not valid: {exc}.",
                                      code="invalid_token") from None

        token_use = claims.get("token_use")
        if token_use == "id":
            audience = claims.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
            if self.client_id not in audiences:
                raise errors.Unauthorized("The token was issued to another application.",
                                          code="invalid_token")
            username = claims.get("cognito:username")
        elif token_use == "access":
            if claims.get("client_id") != self.client_id:
                raise errors.Unauthorized("The token was issued to another application.",
                                          code="invalid_token")
            username = claims.get("username")
        else:
            raise errors.Unauthorized("Only id and access tokens are accepted.",
                                      code="invalid_token")
        return Principal(user_id=claims["sub"], username=username or claims["sub"],
                         groups=frozenset(claims.get("cognito:groups") or ()),
                         token_use=token_use, claims=claims)


_verifier: TokenVerifier | None = None
_verifier_lock = threading.Lock()


def get_verifier() -> TokenVerifier:
    global _verifier
    with _verifier_lock:
        settings = get_settings()
        key = token_settings(settings)
        if _verifier is None or (_verifier._jwks.uri, _verifier.issuer, _verifier.client_id) != key:
            _verifier = TokenVerifier(*key)
        return _verifier


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise errors.Unauthorized("Sign in first: send 'Authorization: Bearer <token>'.",
                                  code="missing_token", headers={"WWW-Authenticate": "Bearer"})
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("The Authorization header must be 'Bearer <token>'.",
                                  code="missing_token", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def authenticate(authorization: str | None) -> Principal:
    return get_verifier().verify(bearer_token(authorization))


def verified_user_id(authorization: str | None, *, check: bool = False) -> str | None:
    """The `sub` of a valid bearer token, else None. Without `check`, only a token this process
    has verified before counts (TokenVerifier.known: no I/O, for an event loop); with it, the
    token is verified now (it may fetch the signing keys)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    if not check:
        principal = _verifier.known(token.strip()) if _verifier is not None else None
        return principal.user_id if principal is not None else None
    try:
        return get_verifier().verify(token.strip()).user_id
    except Exception:       # noqa: BLE001 - any token that does not verify: the handler says why
        return None
