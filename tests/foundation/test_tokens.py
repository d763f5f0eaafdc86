"""Bearer tokens: only RS256 tokens signed by the pool, unexpired, for our client, are accepted.

The pool's real signing key is moto's (it ships it), so these tests can mint tokens that are
validly signed but wrong in exactly one way, and prove each check on its own.
"""
import base64
import gzip
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import moto
import requests
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import RSAAlgorithm

from tests.support import assert_error

MOTO_KEYS = Path(moto.__file__).parent / "cognitoidp" / "resources"


@pytest.fixture(scope="module")
def pool_key():
    jwk = json.loads(gzip.decompress((MOTO_KEYS / "jwks-private.json.gz").read_bytes()))
    jwk = jwk["keys"][0] if "keys" in jwk else jwk
    return RSAAlgorithm.from_jwk(json.dumps(jwk)), jwk.get("kid", "dummy")


@pytest.fixture(scope="module")
def claims_template(stack):
    info = stack.stack_info()
    return {"iss": f"https://cognito-idp.us-east-1.amazonaws.com/{info['user_pool_id']}",
            "client_id": info["user_pool_client_id"], "token_use": "access",
            "username": "mallory", "sub": "00000000-0000-0000-0000-000000000001"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(key, kid, claims, **overrides):
    now = int(time.time())
    payload = {**claims, "iat": now, "exp": now + 600, **overrides}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def me(api, token):
    return api.as_user(token).get("/api/auth/me")


def validate(api, token):
    return api.as_user(token).get("/api/auth/validate")


def test_a_correctly_minted_token_is_accepted(api, pool_key, claims_template):
    # The control for every test below: the same minting, with nothing wrong.
    key, kid = pool_key
    response = validate(api, mint(key, kid, claims_template))
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "mallory"


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


def test_forged_signature_is_rejected(api, user, claims_template):
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for kid in ("dummy", "unknown-kid"):
        token = mint(impostor, kid, claims_template)
        assert_error(validate(api, token), 401, "invalid_token")


def test_alg_none_is_rejected(api, user):
    header, payload, _ = user.access_token.split(".")
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    for token in (f"{none_header}.{payload}.", f"{none_header}.{payload}"):
        assert_error(validate(api, token), 401, "invalid_token")


def test_hs256_signed_with_the_public_key_is_rejected(api, stack, user):
    jwks_url = f"{stack.stack_info()['aws_endpoint']}/{stack.stack_info()['user_pool_id']}" \
               "/.well-known/jwks.json"
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
