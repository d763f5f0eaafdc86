"""Bearer tokens: only RS256 tokens signed by this install's issuer, unexpired, for our client,
of a sign-in that has not ended, are accepted.

The tests hold the issuer's real signing key (an operator can read it from the data directory;
in the aws-emulated mode it is moto's, which moto ships), so they can mint tokens that are validly
signed but wrong in exactly one way, and prove each check on its own.
"""
import base64
import gzip
import hashlib
import hmac
import json
import os
import time
from pathlib import Path

import jwt
import moto
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import RSAAlgorithm

from tests.support import assert_error, register_and_login

MOTO_KEYS = Path(moto.__file__).parent / "cognitoidp" / "resources"


def is_local(stack) -> bool:
    return stack.stack_info().get("mode", "local") == "local"


def moto_key():
    """The private key moto ships and signs every emulated Cognito token with: public knowledge."""
    jwk = json.loads(gzip.decompress((MOTO_KEYS / "jwks-private.json.gz").read_bytes()))
    jwk = jwk["keys"][0] if "keys" in jwk else jwk
    return RSAAlgorithm.from_jwk(json.dumps(jwk)), jwk.get("kid", "dummy")


def install_key_path(stack) -> Path:
    from cloudstrype.settings import Settings
    name = Settings.env_names()["identity_key_path"]
    # Where the stack was told to keep it (its environment is this process's plus extra_env).
    configured = stack.extra_env.get(name) or os.environ.get(name)
    return Path(configured) if configured else stack.data_dir / "secrets" / "identity-key.pem"


@pytest.fixture(scope="module")
def pool_key(stack):
    """The issuer's signing key and its kid."""
    if not is_local(stack):
        return moto_key()
    # The JWKS first: the server makes its signing key on first use, and this module may be the
    # first to use a fresh stack.
    kid = requests.get(stack.url + "/.well-known/jwks.json", timeout=10).json()["keys"][0]["kid"]
    key = serialization.load_pem_private_key(install_key_path(stack).read_bytes(), None)
    return key, kid


@pytest.fixture(scope="module")
def signed_in(api):
    """A real sign-in whose claims the minted tokens reuse (so only the tested part differs)."""
    return register_and_login(api)


@pytest.fixture(scope="module")
def claims_template(signed_in):
    claims = jwt.decode(signed_in.access_token, options={"verify_signature": False})
    return {k: v for k, v in claims.items() if k not in ("iat", "exp")}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(key, kid, claims, **overrides):
    now = int(time.time())
    payload = {**claims, "iat": now, "exp": now + 600, **overrides}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def validate(api, token):
    return api.as_user(token).get("/api/auth/validate")


def test_a_correctly_minted_token_is_accepted(api, pool_key, claims_template, signed_in):
    # The control for every test below: the same minting, with nothing wrong.
    key, kid = pool_key
    response = validate(api, mint(key, kid, claims_template))
    assert response.status_code == 200, response.text
    assert response.json()["username"] == signed_in.username


def test_token_signed_with_motos_well_known_key_is_refused(api, stack, claims_template):
    key, kid = moto_key()
    forged = mint(key, kid, {**claims_template, "cognito:groups": ["admins"]})
    response = api.as_user(forged).get("/api/auth/users")
    if is_local(stack):
        # Anyone can read moto's key, so it must never sign anything a real server accepts.
        assert_error(response, 401, "invalid_token")
    else:
        # The aws-emulated test mode is moto: its key is the pool's (which is why it is a
        # test tool and never where a user's data lives). The token passes, but a group it
        # claims grants nothing: admin routes read the groups from the pool.
        assert validate(api, forged).status_code == 200
        assert_error(response, 403)


def test_the_jwks_url_serves_the_public_half_only(stack, pool_key):
    if is_local(stack):
        keys = requests.get(stack.url + "/.well-known/jwks.json", timeout=10).json()["keys"]
        assert [k["kid"] for k in keys] == [pool_key[1]]
        assert all(k["kty"] == "RSA" and "d" not in k and "p" not in k for k in keys)
        assert (install_key_path(stack).stat().st_mode & 0o777) == 0o600
    else:
        assert_error(requests.get(stack.url + "/.well-known/jwks.json", timeout=10), 404)


def test_expired_token_is_rejected(api, pool_key, claims_template):
    key, kid = pool_key
    token = mint(key, kid, claims_template, iat=int(time.time()) - 7200,
                 exp=int(time.time()) - 3600)
    assert_error(validate(api, token), 401, "token_expired")


def test_token_from_another_issuer_is_rejected(api, pool_key, claims_template):
    key, kid = pool_key
    token = mint(key, kid, claims_template,
                 iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_someoneelse")
    assert_error(validate(api, token), 401, "invalid_token")


def test_token_for_another_client_is_rejected(api, pool_key, claims_template):
    key, kid = pool_key
    assert_error(validate(api, mint(key, kid, claims_template, client_id="another-app")), 401,
                 "invalid_token")
    id_claims = {**claims_template, "token_use": "id", "aud": "another-app", "client_id": None}
    assert_error(validate(api, mint(key, kid, id_claims)), 401, "invalid_token")


@pytest.mark.parametrize("token_use", ["refresh", "", None])
def test_token_use_other_than_id_or_access_is_rejected(api, pool_key, claims_template, token_use):
    key, kid = pool_key
    assert_error(validate(api, mint(key, kid, claims_template, token_use=token_use)), 401,
                 "invalid_token")


def test_token_without_expiry_is_rejected(api, pool_key, claims_template):
    key, kid = pool_key
    token = jwt.encode({**claims_template, "iat": int(time.time())}, key, algorithm="RS256",
                       headers={"kid": kid})
    assert_error(validate(api, token), 401, "invalid_token")


def test_validly_signed_token_of_no_live_sign_in_is_refused(api, stack, pool_key,
                                                            claims_template):
    key, kid = pool_key
    response = validate(api, mint(key, kid, claims_template,
                                  origin_jti="00000000-0000-0000-0000-000000000000"))
    if is_local(stack):
        assert_error(response, 401, "token_revoked")
    else:
        # Cognito's tokens are checked offline only (see cloudstrype/identity/cognito.py).
        assert response.status_code == 200, response.text


def test_forged_signature_is_rejected(api, pool_key, claims_template):
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for kid in ("dummy", "unknown-kid", pool_key[1]):
        token = mint(impostor, kid, claims_template)
        assert_error(validate(api, token), 401, "invalid_token")


def test_alg_none_is_rejected(api, user):
    header, payload, _ = user.access_token.split(".")
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    for token in (f"{none_header}.{payload}.", f"{none_header}.{payload}"):
        assert_error(validate(api, token), 401, "invalid_token")


def test_hs256_signed_with_the_public_key_is_rejected(api, stack, user):
    info = stack.stack_info()
    jwks_url = stack.url + "/.well-known/jwks.json" if is_local(stack) else \
        f"{info['aws_endpoint']}/{info['user_pool_id']}/.well-known/jwks.json"
    public_jwk = requests.get(jwks_url, timeout=10).json()["keys"][0]
    public_pem = RSAAlgorithm.from_jwk(json.dumps(public_jwk)).public_bytes(
        encoding=Encoding.PEM, format=PublicFormat.SubjectPublicKeyInfo)
    _, payload, _ = user.access_token.split(".")
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": public_jwk["kid"]}).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = _b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    assert_error(validate(api, f"{header}.{payload}.{signature}"), 401, "invalid_token")


def test_tampered_payload_is_rejected(api, user):
    header, payload, signature = user.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["cognito:groups"] = ["admins"]
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert_error(user.api.get("/api/auth/users", headers={"Authorization": f"Bearer {forged}"}),
                 401, "invalid_token")


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc",
                                    "Bearer not.a.jwt", "Bearer a.b"])
def test_malformed_authorization_header_is_401(api, header):
    response = api.as_user(None).get("/api/auth/me", headers={"Authorization": header})
    assert_error(response, 401)


def test_missing_token_is_401_with_www_authenticate(api):
    response = api.as_user(None).get("/api/auth/me")
    assert_error(response, 401, "missing_token")
    assert response.headers.get("WWW-Authenticate") == "Bearer"
