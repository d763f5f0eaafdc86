"""One conformance suite for IdentityProvider: the local identity service (on each metadata
engine) and Cognito (moto in-process) must answer alike.

Where moto cannot do what Cognito does (case-insensitive usernames, rejecting a wrong
confirmation code, locking an account out, rotating refresh tokens, revoking access tokens), the
shared tests assert only what both do, and the local service's own promises are proven by the
local-only tests at the end, on both engines.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
import requests
from cloudstrype import errors
from cloudstrype.auth import pool
from cloudstrype.identity import local_store
from cloudstrype.identity.base import CONFIRMED, UNCONFIRMED
from cloudstrype.metadata.engine import Change

from tests.metadata.conftest import make_engine

PASSWORD = "Str0ngPassw0rd"
CLIENT_ID = "conformance-client"
ISSUER = "http://127.0.0.1:1/conformance"


def _name(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local-sqlite", "local-dynamodb", "cognito"])
def provider(request, tmp_path):
    """(provider, codes): codes[username] is the confirmation code a user was sent, where the
    test can read it (locally); Cognito-on-moto accepts any code."""
    from cloudstrype.metadata.engine import set_engine
    codes: dict[str, str] = {}
    if request.param.startswith("local"):
        from cloudstrype.identity.local import LocalIdentity
        from cloudstrype.identity.local_store import IdentityStore
        engine = make_engine(request.param.split("-")[1], tmp_path, request)
        set_engine(engine)
        identity = LocalIdentity(str(tmp_path / "identity-key.pem"), ISSUER, CLIENT_ID,
                                 store=IdentityStore(engine), clock=Clock(),
                                 deliver_code=codes.__setitem__)
        identity.kind = "local"
        yield identity, codes
        set_engine(None)
        engine.close()
        return
    request.getfixturevalue("_moto")
    import boto3
    from cloudstrype.identity.cognito import CognitoIdentity
    client = boto3.client("cognito-idp", region_name="us-east-1")
    pool_id = client.create_user_pool(
        PoolName=pool.POOL_NAME, Policies={"PasswordPolicy": pool.PASSWORD_POLICY},
        UsernameConfiguration={"CaseSensitive": False})["UserPool"]["Id"]
    client_id = client.create_user_pool_client(
        UserPoolId=pool_id, ClientName=pool.CLIENT_NAME, GenerateSecret=False,
        ExplicitAuthFlows=pool.CLIENT_AUTH_FLOWS)["UserPoolClient"]["ClientId"]
    client.create_group(UserPoolId=pool_id, GroupName=pool.ADMIN_GROUP)
    identity = CognitoIdentity(pool_id, client_id, "us-east-1", client=client)
    identity.kind = "cognito"
    yield identity, codes


@pytest.fixture
def identity(provider):
    return provider[0]


def _user(identity, name=None, *, groups=()):
    name = name or _name()
    identity.register(name, f"{name}@example.org", PASSWORD, confirmed=True)
    for group in groups:
        identity.set_membership(group, name, True)
    return name


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _raises(kind, code, call, *args, **kwargs):
    with pytest.raises(kind) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


# -- shared promises ----------------------------------------------------------------------------

def test_register_then_login_issues_cognito_shaped_tokens(identity):
    name = _name()
    user = identity.register(name, f"{name}@example.org", PASSWORD, confirmed=True)
    assert user.username == name and user.status == CONFIRMED and user.user_id
    tokens = identity.login(name, PASSWORD)
    assert tokens.expires_in == pool.ACCESS_TOKEN_MINUTES * 60 and tokens.refresh_token
    assert jwt.get_unverified_header(tokens.access_token)["alg"] == "RS256"
    access, id_ = _claims(tokens.access_token), _claims(tokens.id_token)
    for claims in (access, id_):
        assert claims["sub"] == user.user_id
        assert claims["exp"] > claims["iat"] and "auth_time" in claims and claims["jti"]
        assert claims["origin_jti"] == access["origin_jti"]
    assert access["token_use"] == "access" and access["username"] == name
    assert access["client_id"] == identity.client_id
    assert id_["token_use"] == "id" and id_["cognito:username"] == name
    assert id_["aud"] == identity.client_id
    assert access["jti"] != id_["jti"]


def test_duplicate_username_is_a_conflict(identity):
    name = _user(identity)
    _raises(errors.Conflict, "username_taken", identity.register, name, "x@example.org",
            PASSWORD, confirmed=True)


def test_wrong_password_and_unknown_user_are_the_same_answer(identity):
    name = _user(identity)
    wrong = _raises(errors.Unauthorized, "invalid_credentials", identity.login, name, "Wr0ngPass1")
    unknown = _raises(errors.Unauthorized, "invalid_credentials", identity.login, _name(),
                      PASSWORD)
    assert wrong.message == unknown.message


def test_unconfirmed_user_confirms_with_the_code_then_logs_in(provider):
    identity, codes = provider
    name = _name()
    user = identity.register(name, f"{name}@example.org", PASSWORD, confirmed=False)
    assert user.status == UNCONFIRMED
    _raises(errors.Forbidden, "not_confirmed", identity.login, name, PASSWORD)
    # moto accepts any code; locally it is the code the user was sent.
    identity.confirm(name, codes.get(name, "123456"))
    assert identity.login(name, PASSWORD).access_token
    # Confirmed already and unknown: the answer to a wrong code (no username is revealed).
    _raises(errors.BadRequest, "invalid_code", identity.confirm, name, "123456")
    _raises(errors.BadRequest, "invalid_code", identity.confirm, _name(), "123456")


def test_refresh_gives_working_tokens_and_garbage_is_refused(identity):
    name = _user(identity)
    tokens = identity.login(name, PASSWORD)
    fresh = identity.refresh(tokens.refresh_token)
    assert _claims(fresh.access_token)["username"] == name
    assert _claims(fresh.id_token)["sub"] == _claims(tokens.id_token)["sub"]
    assert fresh.refresh_token
    for garbage in ("garbage", "a.b.c", ""):
        _raises(errors.Unauthorized, "invalid_refresh_token", identity.refresh, garbage)


def test_logout_ends_the_refresh_token(identity):
    name = _user(identity)
    tokens = identity.login(name, PASSWORD)
    identity.logout(tokens.access_token)
    _raises(errors.Unauthorized, "invalid_refresh_token", identity.refresh, tokens.refresh_token)
    assert identity.login(name, PASSWORD).access_token       # a new sign-in works


def test_describe_lists_and_deletes_users(identity):
    names = {_user(identity) for _ in range(5)}
    described = identity.describe(next(iter(names)))
    assert described.email.endswith("@example.org") and described.groups == []
    assert described.created and described.enabled
    _raises(errors.NotFound, "user_not_found", identity.describe, _name())
    # A name of kilobytes is not echoed whole.
    long = _raises(errors.NotFound, "user_not_found", identity.describe, "u" * 5000)
    assert len(long.message) < 400 and "characters)" in long.message, long.message
    assert identity.describe_by_id(described.user_id) == described
    _raises(errors.NotFound, "user_not_found", identity.describe_by_id, str(uuid.uuid4()))

    seen, cursor, pages = set(), None, 0
    while True:
        page = identity.list_users(2, cursor)
        assert len(page.users) <= 2
        seen.update(u.username for u in page.users)
        pages += 1
        cursor = page.cursor
        if not cursor:
            break
    assert names <= seen and pages >= 3
    _raises(errors.BadRequest, "invalid_cursor", identity.list_users, 2, "not-a-cursor")

    doomed = names.pop()
    doomed_id = identity.describe(doomed).user_id
    identity.delete_user(doomed)
    _raises(errors.NotFound, "user_not_found", identity.describe, doomed)
    _raises(errors.NotFound, "user_not_found", identity.describe_by_id, doomed_id)
    _raises(errors.NotFound, "user_not_found", identity.delete_user, doomed)
    _raises(errors.Unauthorized, "invalid_credentials", identity.login, doomed, PASSWORD)


def test_deleting_a_user_ends_their_refresh_token(identity):
    name = _user(identity)
    tokens = identity.login(name, PASSWORD)
    identity.delete_user(name)
    _raises(errors.Unauthorized, "invalid_refresh_token", identity.refresh, tokens.refresh_token)


def test_an_operator_resets_a_forgotten_password_and_every_sign_in_ends(identity):
    name = _user(identity)
    first, second = identity.login(name, PASSWORD), identity.login(name, PASSWORD)
    identity.reset_password(name, "Ch0senAgain!")
    for tokens in (first, second):
        _raises(errors.Unauthorized, "invalid_refresh_token", identity.refresh,
                tokens.refresh_token)
    _raises(errors.Unauthorized, "invalid_credentials", identity.login, name, PASSWORD)
    assert identity.login(name, "Ch0senAgain!").access_token
    _raises(errors.NotFound, "user_not_found", identity.reset_password, _name(),
            "Ch0senAgain!")
    _raises(errors.BadRequest, "weak_password", identity.reset_password, name, "short")


def test_groups_and_memberships(identity):
    group, member, other = _name("team"), _user(identity), _user(identity)
    assert identity.create_group(group, "A team").name == group
    _raises(errors.Conflict, "group_exists", identity.create_group, group, "")
    assert {"name": group, "description": "A team"} in \
        [{"name": g.name, "description": g.description} for g in identity.list_groups()]
    assert pool.ADMIN_GROUP in {g.name for g in identity.list_groups()}

    identity.set_membership(group, member, True)
    identity.set_membership(group, member, True)                 # twice is fine
    identity.set_membership(pool.ADMIN_GROUP, member, True)
    assert identity.group_members(group) == [member]
    assert identity.groups_of(member) == sorted([group, pool.ADMIN_GROUP])
    assert identity.describe(member).groups == sorted([group, pool.ADMIN_GROUP])
    assert identity.groups_of(other) == []
    # Groups travel in tokens issued after the change (Cognito orders them by precedence).
    assert set(_claims(identity.login(member, PASSWORD).access_token)["cognito:groups"]) == \
        {group, pool.ADMIN_GROUP}

    _raises(errors.NotFound, "user_not_found", identity.set_membership, group, _name(), True)
    _raises(errors.NotFound, "group_not_found", identity.set_membership, _name("g"), member,
            True)
    _raises(errors.NotFound, "group_not_found", identity.group_members, _name("g"))
    _raises(errors.NotFound, "user_not_found", identity.groups_of, _name())

    identity.set_membership(group, member, False)
    identity.set_membership(group, other, False)                 # not a member: fine
    assert identity.group_members(group) == []
    assert identity.groups_of(member) == [pool.ADMIN_GROUP]

    identity.set_membership(group, other, True)
    identity.delete_group(group)
    _raises(errors.NotFound, "group_not_found", identity.delete_group, group)
    assert group not in {g.name for g in identity.list_groups()}
    assert identity.groups_of(other) == []


def test_a_group_says_when_it_was_made_and_a_remade_one_is_newer(identity):
    group = _name("dated")
    assert identity.group_created(group) is None
    before = time.time()
    identity.create_group(group, "")
    made = identity.group_created(group)
    # With its fraction of a second where the provider keeps one (moto's Cognito and the local
    # store do): a group made again within a second is newer than a share made before it.
    assert made is not None and before - 1 <= made <= time.time() + 1
    identity.delete_group(group)
    assert identity.group_created(group) is None
    identity.create_group(group, "")
    remade = identity.group_created(group)
    assert remade is not None and remade >= made


def test_deleted_user_leaves_their_groups(identity):
    group = _name("team")
    identity.create_group(group, "")
    name = _user(identity, groups=[group])
    identity.delete_user(name)
    assert identity.group_members(group) == []


# -- the local service's own promises (what moto cannot show for Cognito) ------------------------

# Each test below runs on both engines; `local_param` narrows the provider fixture to them.
local_param = pytest.mark.parametrize("provider", ["local-sqlite", "local-dynamodb"],
                                      indirect=True)


@pytest.fixture
def local(provider):
    assert provider[0].kind == "local", "use @local_param"
    return provider


@pytest.fixture
def jwks_url(local):
    """The provider's JWKS served over HTTP, as the local gateway serves it."""
    identity, _ = local

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(identity.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture
def verifier(local, jwks_url):
    """The real verifier, fetching the keys from the JWKS URL, with this provider installed
    for its revocation check."""
    from cloudstrype.auth.tokens import TokenVerifier
    from cloudstrype.identity import set_identity
    set_identity(local[0])
    yield TokenVerifier(jwks_url, ISSUER, CLIENT_ID)
    set_identity(None)


@local_param
def test_usernames_are_case_insensitive(local):
    identity, _ = local
    name = _name("Mixed")
    identity.register(name, f"{name}@example.org", PASSWORD, confirmed=True)
    _raises(errors.Conflict, "username_taken", identity.register, name.upper(), "x@example.org",
            PASSWORD, confirmed=True)
    tokens = identity.login(name.lower(), PASSWORD)
    assert _claims(tokens.access_token)["username"] == name      # as registered
    assert identity.describe(name.upper()).username == name


@local_param
def test_password_is_stored_under_argon2id_only(local, tmp_path):
    identity, _ = local
    name = _user(identity)
    stored = identity.store.get_user(name).password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


@local_param
def test_wrong_confirmation_code_is_refused(local):
    identity, codes = local
    name = _name()
    identity.register(name, f"{name}@example.org", PASSWORD, confirmed=False)
    wrong = "000000" if codes[name] != "000000" else "111111"
    _raises(errors.BadRequest, "invalid_code", identity.confirm, name, wrong)
    identity.confirm(name, codes[name])
    assert identity.login(name, PASSWORD)


@local_param
def test_refresh_rotates_the_token_and_the_old_one_stops_working(local):
    identity, _ = local
    name = _user(identity)
    first = identity.login(name, PASSWORD)
    second = identity.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    third = identity.refresh(second.refresh_token)
    # A forged one (its MAC does not check) is refused, and ends nothing.
    user_id, sign_in, generation, mac = third.refresh_token.split(".")
    for forged in (f"{user_id}.{sign_in}.{int(generation) + 1}.{mac}",
                   f"{user_id}.{sign_in}.{generation}.{mac[:-2]}AA", "a.b.c.d.e", "a.b"):
        _raises(errors.Unauthorized, "invalid_refresh_token", identity.refresh, forged)
    assert identity.refresh(third.refresh_token).refresh_token
    assert _claims(third.access_token)["origin_jti"] == _claims(first.access_token)["origin_jti"]
    # Only a hash of the token is stored, and its generation.
    session = identity.store.get_session(_claims(first.access_token)["sub"],
                                         _claims(first.access_token)["origin_jti"])
    assert third.refresh_token.split(".")[3] not in json.dumps(session.__dict__)
    assert session.generation == 4             # login 1, three refreshes


@local_param
def test_logout_and_deletion_revoke_access_tokens_at_once(local, verifier):
    identity, _ = local
    name = _user(identity)
    kept, ended = identity.login(name, PASSWORD), identity.login(name, PASSWORD)
    assert verifier.verify(ended.access_token).username == name
    identity.logout(ended.access_token)
    for token in (ended.access_token, ended.id_token):
        _raises(errors.Unauthorized, "token_revoked", verifier.verify, token)
    assert verifier.verify(kept.access_token).username == name     # another sign-in lives on
    identity.delete_user(name)
    for token in (kept.access_token, kept.id_token):
        _raises(errors.Unauthorized, "token_revoked", verifier.verify, token)


@local_param
def test_login_is_throttled_per_account(local):
    from cloudstrype.identity.local import FREE_FAILURES, lock_seconds
    identity, _ = local
    name, bystander = _user(identity), _user(identity)
    for _ in range(FREE_FAILURES):
        _raises(errors.Unauthorized, "invalid_credentials", identity.login, name, "Wr0ngPass1")
    # Locked: even the right password waits, and the answer says how long.
    locked = _raises(errors.TooManyRequests, "too_many_attempts", identity.login, name, PASSWORD)
    assert int(locked.headers["Retry-After"]) == lock_seconds(FREE_FAILURES)
    assert identity.login(bystander, PASSWORD)                      # other accounts unaffected
    identity.clock.now += lock_seconds(FREE_FAILURES)
    _raises(errors.Unauthorized, "invalid_credentials", identity.login, name, "Wr0ngPass1")
    locked = _raises(errors.TooManyRequests, "too_many_attempts", identity.login, name, PASSWORD)
    assert int(locked.headers["Retry-After"]) == lock_seconds(FREE_FAILURES + 1) == \
        2 * lock_seconds(FREE_FAILURES)
    identity.clock.now += lock_seconds(FREE_FAILURES + 1)
    assert identity.login(name, PASSWORD)                           # and success resets
    assert identity.store.get_user(name).failures == 0


@local_param
def test_right_passwords_sent_at_once_are_never_locked_out(local):
    """Counting each attempt before its check (to bound wrong ones sent at once) counted the
    right ones in flight as failures: six correct logins at once got a 429 (review sweep).
    Attempts are counted after the check again."""
    identity, _ = local
    name = _user(identity)
    answers, start = [], threading.Barrier(12)

    def attempt():
        start.wait()
        try:
            answers.append(bool(identity.login(name, PASSWORD).access_token))
        except errors.ApiError as exc:
            answers.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [True] * 12, answers
    assert identity.store.get_user(name).failures == 0


@local_param
def test_wrong_passwords_sent_at_once_are_checked_no_more_than_in_a_row(local):
    """Counted after its check, each of 24 wrong passwords sent at the same moment was checked
    before the first was counted: 11 were tried where five lock the account (accounts sweep).
    One account's attempts take turns, so five are checked and the rest wait out the lock;
    a wrong confirmation code likewise."""
    from cloudstrype.identity.local import FREE_FAILURES
    identity, _ = local

    def at_once(attempt, count: int = 24) -> list[str]:
        answers, start = [], threading.Barrier(count)

        def one():
            start.wait()
            try:
                attempt()
                answers.append("ok")
            except errors.ApiError as exc:
                answers.append(exc.code)

        threads = [threading.Thread(target=one) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return answers

    name = _user(identity)
    answers = at_once(lambda: identity.login(name, "Wr0ngPass1"))
    assert answers.count("invalid_credentials") == FREE_FAILURES, answers
    assert answers.count("too_many_attempts") == 24 - FREE_FAILURES, answers
    assert identity.store.get_user(name).failures == FREE_FAILURES
    unconfirmed = _name()
    identity.register(unconfirmed, f"{unconfirmed}@example.org", PASSWORD, confirmed=False)
    answers = at_once(lambda: identity.confirm(unconfirmed, "not-a-code"))
    assert answers.count("invalid_code") == FREE_FAILURES, answers
    assert answers.count("too_many_attempts") == 24 - FREE_FAILURES, answers


@local_param
def test_sign_ins_of_other_accounts_do_not_wait_for_one_accounts_attempts(local):
    """The attempts took turns by one of 256 locks their name fell on: an account's sign-in
    waited behind another's that shared it (review sweep). Only the same name waits, and a
    name's lock lives only while attempts at it are in flight."""
    from cloudstrype.identity import local as local_identity
    identity, _ = local
    name = _user(identity)
    busy = [f"busy-{uuid.uuid4().hex}" for _ in range(2000)]   # every stripe there was
    holding, release, done = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with contextlib.ExitStack() as stack:
            for other in busy:
                stack.enter_context(local_identity._one_attempt_at_a_time(other))
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(30)
        signed_in = threading.Thread(target=lambda: identity.login(name, PASSWORD) and
                                     done.set())
        signed_in.start()
        assert done.wait(10), "a sign-in waited for other accounts' attempts"
        signed_in.join()
    finally:
        release.set()
        holder.join()
    assert local_identity._attempts == {}


@local_param
def test_right_answers_are_not_counted_as_failed_attempts(provider):
    """Attempts are counted before they are checked: the right password of an unconfirmed
    account, or a change refused for its weak new password, must not lock the account."""
    from cloudstrype.identity.local import FREE_FAILURES
    identity, _ = provider
    name = _name()
    identity.register(name, f"{name}@example.org", PASSWORD, confirmed=False)
    for _ in range(FREE_FAILURES + 2):
        _raises(errors.Forbidden, "not_confirmed", identity.login, name, PASSWORD)
    assert identity.store.get_user(name).failures == 0
    confirmed = _user(identity)
    tokens = identity.login(confirmed, PASSWORD)
    for _ in range(FREE_FAILURES + 2):
        _raises(errors.BadRequest, "weak_password", identity.change_password, confirmed,
                tokens.access_token, PASSWORD, "weak")
    identity.change_password(confirmed, tokens.access_token, PASSWORD, "N3wPassword!")


@local_param
def test_signing_key_is_per_install_private_and_served_as_jwks(local, verifier, jwks_url,
                                                               tmp_path):
    identity, _ = local
    served = requests.get(jwks_url, timeout=10).json()
    key_path = tmp_path / "identity-key.pem"
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert served["keys"][0]["kid"] and served["keys"][0]["alg"] == "RS256"
    assert "d" not in served["keys"][0]                             # the public half only
    tokens = identity.login(_user(identity), PASSWORD)
    assert jwt.get_unverified_header(tokens.access_token)["kid"] == served["keys"][0]["kid"]
    assert verifier.verify(tokens.id_token).token_use == "id"

    # Another install has another key: its tokens, for a real sign-in here, are refused.
    from cloudstrype.identity.local import LocalIdentity
    other = LocalIdentity(str(tmp_path / "other" / "key.pem"), ISSUER, CLIENT_ID,
                          store=identity.store, clock=identity.clock)
    assert other.jwks()["keys"][0]["kid"] != served["keys"][0]["kid"]
    _raises(errors.Unauthorized, "invalid_token", verifier.verify,
            other.login(_user(identity), PASSWORD).access_token)
    # The same key file is the same key (a restart keeps everyone signed in).
    again = LocalIdentity(str(key_path), ISSUER, CLIENT_ID, store=identity.store)
    assert again.jwks() == served

    os.chmod(key_path, 0o644)
    with pytest.raises(RuntimeError, match="chmod 600"):
        LocalIdentity(str(key_path), ISSUER, CLIENT_ID, store=identity.store).jwks()


@local_param
def test_a_checked_token_is_not_checked_again_but_still_expires_and_is_revoked(
        local, verifier, monkeypatch):
    """The verifier remembers a token whose signature and claims checked out; its expiry and
    its sign-in's revocation are still looked at on every request."""
    from cloudstrype.auth import tokens
    identity, _ = local
    name = _user(identity)
    signed_in = identity.login(name, PASSWORD)
    checks = []
    real = tokens.TokenVerifier._check
    monkeypatch.setattr(tokens.TokenVerifier, "_check",
                        lambda self, token: (checks.append(token), real(self, token))[1])
    for _ in range(5):
        assert verifier.verify(signed_in.access_token).username == name
    assert len(checks) == 1
    # Past its expiry (and the leeway), remembered or not, it is refused as expired.
    late = _claims(signed_in.access_token)["exp"] + tokens.LEEWAY_SECONDS + 1
    with monkeypatch.context() as later:
        later.setattr(tokens.time, "time", lambda: late)
        later.setattr(jwt.api_jwt, "datetime", _clock_at(late))
        _raises(errors.Unauthorized, "token_expired", verifier.verify, signed_in.access_token)
    assert len(checks) == 2
    # Logged out: refused at once though remembered.
    again = identity.login(name, PASSWORD)
    assert verifier.verify(again.access_token).username == name
    identity.logout(again.access_token)
    _raises(errors.Unauthorized, "token_revoked", verifier.verify, again.access_token)


@local_param
def test_the_verifier_remembers_a_bounded_number_of_tokens(local, verifier, monkeypatch):
    from cloudstrype.auth import tokens
    identity, _ = local
    monkeypatch.setattr(tokens, "VERIFIED_TOKENS", 3)
    name = _user(identity)
    for _ in range(6):
        verifier.verify(identity.login(name, PASSWORD).access_token)
    assert len(verifier._verified) == 3


def _clock_at(timestamp: float):
    """A datetime class whose now() is `timestamp` (PyJWT's clock, for a token's expiry)."""
    from datetime import datetime, timezone

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(timestamp, tz or timezone.utc)
    return Frozen


@local_param
def test_a_sign_in_checked_against_the_old_password_does_not_outlive_a_change(local,
                                                                             monkeypatch):
    """A password change ends every other sign-in; a login that had checked the old password
    just before it began its session just after, and lived on with its refresh token (accounts
    sweep: 4–6 of ~40 racing logins survived a change)."""
    identity, _ = local
    name = _user(identity)
    changer = identity.login(name, PASSWORD)
    begin_session = identity.store.create_session

    def changed_first(*args, **kwargs):
        # The change lands between the racing login's check and its session.
        identity.change_password(name, changer.access_token, PASSWORD, "N3wPassword!")
        return begin_session(*args, **kwargs)

    monkeypatch.setattr(identity.store, "create_session", changed_first)
    _raises(errors.Unauthorized, "invalid_credentials", identity.login, name, PASSWORD)
    monkeypatch.setattr(identity.store, "create_session", begin_session)
    assert identity.login(name, "N3wPassword!").refresh_token
    assert not identity.is_revoked(jwt.decode(changer.access_token,
                                              options={"verify_signature": False}))


@local_param
def test_a_sign_in_lasts_its_days_from_the_login_however_often_refreshed(local):
    """A refresh moved the sign-in's end on by REFRESH_TOKEN_DAYS, so one refreshed within
    them never ended (Cognito's refresh tokens count from the sign-in: accounts sweep)."""
    from cloudstrype.auth import pool
    identity, _ = local
    name = _user(identity)
    tokens = identity.login(name, PASSWORD)
    for _ in range(3):
        identity.clock.now += (pool.REFRESH_TOKEN_DAYS - 1) * 86400 / 3
        tokens = identity.refresh(tokens.refresh_token)
    identity.clock.now += 2 * 86400                 # past the days from the login
    _raises(errors.Unauthorized, "invalid_refresh_token", identity.refresh,
            tokens.refresh_token)


@local_param
def test_a_username_with_a_letter_that_folds_to_ascii_is_not_another_users(local):
    """str.lower() made the Kelvin sign (U+212A) a 'k': '\u212aate' signed in as kate, was shared
    with as kate and deleted kate (accounts sweep)."""
    identity, _ = local
    name = _user(identity, "kate" + uuid.uuid4().hex[:8])
    lookalike = "\u212a" + name[1:]
    assert lookalike.lower() == name                         # (what folding did)
    _raises(errors.Unauthorized, "invalid_credentials", identity.login, lookalike, PASSWORD)
    _raises(errors.NotFound, "user_not_found", identity.describe, lookalike)
    _raises(errors.NotFound, "user_not_found", identity.delete_user, lookalike)
    assert identity.login(name.upper(), PASSWORD).access_token       # ASCII case still folds


@local_param
def test_a_refresh_asked_again_soon_gives_the_same_successor(local):
    """A refresh whose answer was lost is asked again with the token it replaced: the same
    new token comes back (it was signed out: accounts and network sweeps), and it works."""
    identity, _ = local
    name = _user(identity)
    first = identity.login(name, PASSWORD)
    second = identity.refresh(first.refresh_token)
    identity.clock.now += pool_grace() - 1
    again = identity.refresh(first.refresh_token)
    assert again.refresh_token == second.refresh_token
    assert again.access_token != second.access_token        # new access tokens each time
    assert identity.refresh(again.refresh_token).refresh_token


@local_param
def test_two_refreshes_with_one_token_at_once_both_get_its_successor(local):
    identity, _ = local
    name = _user(identity)
    first = identity.login(name, PASSWORD)
    results, barrier = [], threading.Barrier(4)

    def refresh() -> None:
        barrier.wait()
        results.append(identity.refresh(first.refresh_token).refresh_token)

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert identity.refresh(results[0]).refresh_token


@local_param
def test_a_replaced_refresh_token_used_late_or_refreshed_past_ends_the_sign_in(local, verifier):
    """Reuse detection: a replaced token used after the grace, or any older one of the
    sign-in (a thief who refreshed twice at once does not escape it: review sweep), is a copy
    in other hands (or the holder's, with the copy in use): the sign-in ends, its access
    tokens with it."""
    identity, _ = local
    name = _user(identity)
    first = identity.login(name, PASSWORD)
    second = identity.refresh(first.refresh_token)
    identity.clock.now += pool_grace() + 1
    _raises(errors.Unauthorized, "refresh_token_reused", identity.refresh, first.refresh_token)
    _raises(errors.Unauthorized, "invalid_refresh_token", identity.refresh,
            second.refresh_token)
    _raises(errors.Unauthorized, "token_revoked", verifier.verify, second.access_token)
    # Refreshed twice by a thief at once; the holder's token, two behind, within the grace.
    kept = identity.login(name, PASSWORD)
    stolen = identity.login(name, PASSWORD)
    thief = identity.refresh(identity.refresh(stolen.refresh_token).refresh_token)
    _raises(errors.Unauthorized, "refresh_token_reused", identity.refresh,
            stolen.refresh_token)
    _raises(errors.Unauthorized, "invalid_refresh_token", identity.refresh,
            thief.refresh_token)
    # Another sign-in of the user is not touched by their end.
    assert not identity.is_revoked(jwt.decode(kept.access_token,
                                              options={"verify_signature": False}))
    assert identity.refresh(kept.refresh_token).refresh_token


@local_param
def test_a_sign_in_from_before_generations_moves_to_them_at_its_first_refresh(local):
    """Its random token is checked by its hash once; from then on it has the grace and
    reuse detection as any other (review sweep: such sign-ins never got them)."""
    identity, _ = local
    name = _user(identity)
    tokens = identity.login(name, PASSWORD)
    claims = _claims(tokens.access_token)
    old_token = f"{claims['sub']}.{claims['origin_jti']}.{uuid.uuid4().hex}"
    session = identity.store.get_session(claims["sub"], claims["origin_jti"])
    identity.store.engine.update(
        local_store.REFRESH_TOKENS, {"user_id": session.user_id, "session": session.session},
        Change(set={"token_hash": hashlib.sha256(old_token.encode()).hexdigest()},
               remove={"generation", "rotated_at"}))
    assert identity.store.get_session(claims["sub"], claims["origin_jti"]).generation == 0
    fresh = identity.refresh(old_token)
    assert len(fresh.refresh_token.split(".")) == 4
    assert identity.refresh(fresh.refresh_token).refresh_token
    identity.clock.now += pool_grace() + 1
    _raises(errors.Unauthorized, "refresh_token_reused", identity.refresh, fresh.refresh_token)


def pool_grace() -> int:
    return pool.REFRESH_REUSE_GRACE_SECONDS
