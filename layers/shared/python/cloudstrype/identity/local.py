"""The local identity service of `cloudstrype serve`: Cognito-compatible, on the metadata store.

- Tokens: RS256 JWTs with Cognito's claims, signed by an RSA key generated per install and kept
  0600 in the data directory; the public half is served as a JWKS by the local gateway
  (`GET /.well-known/jwks.json`, the JWKS URL), so the one verifier in `cloudstrype.auth.tokens`
  fetches and checks these tokens exactly as it does Cognito's.
- Passwords: argon2id (argon2-cffi). Sign-in is throttled per account: after FREE_FAILURES wrong
  passwords (or confirmation codes) each further try waits exponentially longer (429).
- Refresh tokens: `user.sign-in.generation.mac`, the MAC (HMAC-SHA256) under a key derived from
  the signing key (not in the database: a copy of it cannot make tokens); only the sign-in's
  current generation is stored, and each refresh moves it to the next. The token just
  replaced gives the same successor again for REFRESH_REUSE_GRACE_SECONDS (a refresh whose
  answer was lost is asked again); any older token of the sign-in, or that one later, ends the
  sign-in (`refresh_token_reused`: a copy of a token is in other hands — however many times
  the copy was refreshed since). A token whose MAC does not check is only refused.
  Access and id tokens name their sign-in (`origin_jti`, as Cognito's do); logout and user
  deletion end the sign-in, and `is_revoked` refuses its tokens from then on.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cloudstrype import errors
from cloudstrype.auth import pool
from cloudstrype.identity.base import (
    CONFIRMED,
    UNCONFIRMED,
    Group,
    IdentityProvider,
    Tokens,
    User,
    UserPage,
)
from cloudstrype.identity.local_store import IdentityStore, Session, UserItem, name_key
from cloudstrype.metadata.engine import BadCursor, Change, Condition

log = logging.getLogger("cloudstrype.identity")

# OWASP's argon2id settings (19 MiB, 2 passes): memory-hard, yet cheap enough for a server that
# signs many users in at once.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
FREE_FAILURES = 5
LOCK_BASE_SECONDS = 2
LOCK_MAX_SECONDS = 15 * 60
CODE_LIFETIME_SECONDS = 24 * 3600
ACCESS_SCOPE = "aws.cognito.signin.user.admin"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _refresh_token(key: bytes, user_id: str, session: str, generation: int) -> str:
    """The sign-in's refresh token of `generation`: unforgeable without the server's key."""
    body = f"{user_id}.{session}.{generation}"
    return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# One account's attempts (a password or a confirmation code) are checked one at a time in
# this process: each is counted, if wrong, before the next one is checked. Counted only after
# its check, wrong ones sent at the same moment were otherwise all checked before the first
# was counted (11 of 24 at once where five lock the account); counted before, right ones in
# flight were counted as failures. A lock per account name while attempts at it are in
# flight (kept only as long: not a lock for every name ever tried); re-entrant, as a login
# may meet a password change of the same account in one thread.
_attempts: dict[str, list] = {}         # name -> [its lock, attempts holding or awaiting it]
_attempts_lock = threading.Lock()
# How long an attempt waits for the ones before it (each a password hash, ~0.1 s): past it,
# too many at once.
ATTEMPT_WAIT_SECONDS = 30


@contextlib.contextmanager
def _one_attempt_at_a_time(username):
    name = str(username).lower()
    with _attempts_lock:
        entry = _attempts.setdefault(name, [threading.RLock(), 0])
        entry[1] += 1
    try:
        if not entry[0].acquire(timeout=ATTEMPT_WAIT_SECONDS):
            raise errors.TooManyRequests("Too many sign-in attempts for this account at once; "
                                         "try again in a minute.", code="too_many_attempts",
                                         headers={"Retry-After": "60"})
        try:
            yield
        finally:
            entry[0].release()
    finally:
        with _attempts_lock:
            entry[1] -= 1
            if not entry[1]:
                del _attempts[name]


def lock_seconds(failures: int) -> int:
    """How long an account waits after this many failures in a row."""
    if failures < FREE_FAILURES:
        return 0
    return min(LOCK_BASE_SECONDS * 2 ** (failures - FREE_FAILURES), LOCK_MAX_SECONDS)


def _create_file(path: Path, data: bytes, mode: int) -> None:
    """Write beside, fsync, then link into place: readers never see half a file, and of two
    processes creating the key at once (server and admin CLI), one key wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class SigningKey:
    """The install's RSA key: created on first use, 0600, never replaced."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            _create_file(self.path, pem, 0o600)
        if self.path.stat().st_mode & 0o077:
            raise RuntimeError(f"The token signing key {self.path} is readable by others; "
                               f"run 'chmod 600 {self.path}' (or remove it to make a new one, "
                               f"which signs everyone out).")
        self.key = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        numbers = self.key.public_key().public_numbers()
        public = {"e": _uint(numbers.e), "kty": "RSA", "n": _uint(numbers.n)}
        # RFC 7638 thumbprint: a kid that names exactly this key.
        self.kid = _b64(hashlib.sha256(json.dumps(public, separators=(",", ":"),
                                                  sort_keys=True).encode()).digest())
        self.jwk = {**public, "alg": "RS256", "use": "sig", "kid": self.kid}
        # The refresh tokens' MAC key, from the private key: nothing in the database makes one.
        secret = self.key.private_bytes(serialization.Encoding.DER,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        self.refresh_key = hmac.new(secret, b"cloudstrype refresh tokens",
                                    hashlib.sha256).digest()

    def jwks(self) -> dict:
        return {"keys": [self.jwk]}

    def sign(self, claims: dict) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


def _log_code(username: str, code: str) -> None:
    # There is no mail server locally: the operator reads the code from the server log.
    log.warning("Confirmation code for %s: %s", username, code)


class LocalIdentity(IdentityProvider):
    def __init__(self, key_path: str | None, issuer: str, client_id: str, *,
                 store: IdentityStore | None = None,
                 clock: Callable[[], float] = time.time,
                 deliver_code: Callable[[str, str], None] = _log_code):
        self.key_path = key_path
        self.issuer = issuer
        self.client_id = client_id
        self.store = store or IdentityStore()
        self.clock = clock
        self.deliver_code = deliver_code
        self._key: SigningKey | None = None
        self._key_lock = threading.Lock()
        self._dummy_hash: str | None = None
        self._admins_ready = False

    # -- keys ---------------------------------------------------------------------------------
    @property
    def signing_key(self) -> SigningKey:
        with self._key_lock:
            if self._key is None:
                if not self.key_path:
                    raise RuntimeError("The local identity service has no signing key: set "
                                       "CLOUDSTRYPE_IDENTITY_KEY_PATH.")
                self._key = SigningKey(self.key_path)
            return self._key

    def jwks(self) -> dict:
        return self.signing_key.jwks()

    def _now(self) -> int:
        return int(self.clock())

    # -- accounts -----------------------------------------------------------------------------
    def register(self, username: str, email: str, password: str, *, confirmed: bool) -> User:
        problems = pool.password_problems(password)
        if problems:
            raise errors.BadRequest("Password is too weak: it needs " + ", ".join(problems) + ".",
                                    code="weak_password", details={"field": "password"})
        now = self._now()
        code = None if confirmed else f"{secrets.randbelow(10 ** 6):06d}"
        user = UserItem(username=username, user_id=str(uuid.uuid4()), email=email,
                        password_hash=HASHER.hash(password),
                        status=CONFIRMED if confirmed else UNCONFIRMED, created=now,
                        code_hash=_hash(code) if code else None,
                        code_expires=now + CODE_LIFETIME_SECONDS if code else None)
        if not self.store.create_user(user):
            raise errors.Conflict(f"The username '{username}' is taken.", code="username_taken")
        if code:
            self.deliver_code(username, code)
        return self._public(user)

    def _existing(self, username: str) -> UserItem:
        user = self.store.get_user(username)
        if user is None:
            raise errors.NotFound(f"No user '{errors.shown(username)}'.", code="user_not_found")
        return user

    def _check_throttle(self, user: UserItem) -> None:
        wait = user.last_failure + lock_seconds(user.failures) - self._now()
        if user.failures >= FREE_FAILURES and wait > 0:
            raise errors.TooManyRequests(
                f"Too many failed attempts for this account; try again in {wait} s.",
                code="too_many_attempts", headers={"Retry-After": str(wait)})

    def _record_failure(self, user: UserItem) -> None:
        # Counted after the check, not before: counted before, right answers in flight
        # counted as failures (six correct logins at once locked the account). The checks of
        # one account take turns (_one_attempt_at_a_time), so the next one sees this count.
        self.store.update_user(user, Change(add={"failures": 1},
                                            set={"last_failure": self._now()}))

    def confirm(self, username: str, code: str) -> None:
        with _one_attempt_at_a_time(username):
            self._confirm(username, code)

    def _confirm(self, username: str, code: str) -> None:
        # One answer for an unknown user, a wrong code and a confirmed account, so confirming
        # does not tell which usernames exist.
        refused = errors.BadRequest("The confirmation code is wrong or has expired (or the "
                                    "account is confirmed already: log in).",
                                    code="invalid_code")
        user = self.store.get_user(username)
        if user is None or user.status == CONFIRMED:
            raise refused
        self._check_throttle(user)
        if not (user.code_hash and (user.code_expires or 0) > self._now()
                and hmac.compare_digest(user.code_hash, _hash(code))):
            self._record_failure(user)
            raise refused
        self.store.update_user(user, Change(set={"status": CONFIRMED, "failures": 0},
                                            remove=("code_hash", "code_expires")))

    # -- tokens -------------------------------------------------------------------------------
    def _password_matches(self, user: UserItem | None, password: str) -> bool:
        if user is None:
            # Hash anyway, so an unknown username takes as long as a wrong password.
            if self._dummy_hash is None:
                self._dummy_hash = HASHER.hash(secrets.token_urlsafe(16))
            target = self._dummy_hash
        else:
            target = user.password_hash
        try:
            return HASHER.verify(target, password) and user is not None
        except (VerificationError, InvalidHashError):
            return False

    def login(self, username: str, password: str) -> Tokens:
        with _one_attempt_at_a_time(username):
            return self._login(username, password)

    def _login(self, username: str, password: str) -> Tokens:
        user = self.store.get_user(username)
        if user is not None:
            self._check_throttle(user)
        if not self._password_matches(user, password):
            if user is not None:
                self._record_failure(user)
            raise errors.Unauthorized("Wrong username or password.", code="invalid_credentials")
        if user.status != CONFIRMED:
            raise errors.Forbidden("Confirm your account first (POST /api/auth/confirm with the "
                                   "code you were sent).", code="not_confirmed")
        change = Change()
        if user.failures:
            change.set["failures"] = 0
        if HASHER.check_needs_rehash(user.password_hash):
            change.set["password_hash"] = HASHER.hash(password)
        # The password checked is the one the session begins with (a change made meanwhile
        # ended every sign-in but its own, and must end this one too).
        checked = user.password_hash
        if change.set:
            if self.store.update_user(user, change,
                                      Condition.eq("password_hash", checked)) is None:
                raise errors.Unauthorized("Wrong username or password.",
                                          code="invalid_credentials")
            checked = change.set.get("password_hash", checked)
        now = self._now()
        session_id = str(uuid.uuid4())
        refresh_token = _refresh_token(self.signing_key.refresh_key, user.user_id, session_id,
                                       1)
        session = Session(user_id=user.user_id, session=session_id,
                          name_key=name_key(user.username), token_hash="",
                          auth_time=now, created=now,
                          expires=now + pool.REFRESH_TOKEN_DAYS * 86400, generation=1,
                          rotated_at=now)
        if not self.store.create_session(session, user, CONFIRMED, checked):
            # Deleted, replaced or given another password between the check and now.
            raise errors.Unauthorized("Wrong username or password.", code="invalid_credentials")
        return self._issue(user, session, refresh_token)

    def refresh(self, refresh_token: str) -> Tokens:
        invalid = errors.Unauthorized("The refresh token is not valid; log in again.",
                                      code="invalid_refresh_token")
        parts = refresh_token.split(".") if isinstance(refresh_token, str) else []
        if len(parts) not in (3, 4) or not all(parts):
            raise invalid
        key = self.signing_key.refresh_key
        given = None                        # the token's generation (None: one from before)
        if len(parts) == 4:
            if not parts[2].isdigit() or not hmac.compare_digest(
                    refresh_token, _refresh_token(key, parts[0], parts[1], int(parts[2]))):
                raise invalid
            given = int(parts[2])
        now = self._now()
        for _ in range(5):
            session = self.store.get_session(parts[0], parts[1])
            if session is None or session.expires <= now:
                raise invalid
            current = session.generation
            if given is None:
                # A token from before generations: its hash, then the next generation.
                if current or not hmac.compare_digest(session.token_hash,
                                                      _hash(refresh_token)):
                    raise invalid
                successor = 1
            elif given == current:
                successor = current + 1
            elif given == current - 1 and now - session.rotated_at <= \
                    pool.REFRESH_REUSE_GRACE_SECONDS:
                # Asked again soon after (the answer was lost on the way, or two commands
                # refreshed at once): the same successor, the current token.
                successor = None
            elif given < current:
                # A token of this sign-in replaced before: a copy of one is being used by
                # someone else than the holder of the sign-in, or the other way round, and
                # the two cannot be told apart. The sign-in ends for both.
                self.store.end_session(session.user_id, session.session)
                log.warning("a replaced refresh token was used again; sign-in %s of user %s "
                            "ended", session.session, session.user_id)
                raise errors.Unauthorized(
                    "This refresh token was replaced by a newer one and was used again, so "
                    "the sign-in has been ended in case a copy of it is in other hands; log "
                    "in again.", code="refresh_token_reused")
            else:
                raise invalid
            fresh = _refresh_token(key, session.user_id, session.session,
                                   successor or current)
            # (A sign-in lasts REFRESH_TOKEN_DAYS from the login, refreshed or not, as
            # Cognito's does: a refresh that moved it on kept a stolen token alive.)
            if successor is not None and \
                    not self.store.rotate_session(session, successor, now):
                continue            # another refresh moved it on: look again
            user = self.store.get_user(session.name_key)
            if user is None or user.user_id != session.user_id or user.status != CONFIRMED:
                raise invalid
            return self._issue(user, session, fresh)
        raise invalid

    def _issue(self, user: UserItem, session: Session, refresh_token: str) -> Tokens:
        now = self._now()
        common = {"sub": user.user_id, "iss": self.issuer, "origin_jti": session.session,
                  "event_id": str(uuid.uuid4()), "auth_time": session.auth_time, "iat": now}
        if user.groups:
            common["cognito:groups"] = sorted(user.groups)
        id_claims = {**common, "token_use": "id", "aud": self.client_id,
                     "cognito:username": user.username, "email": user.email,
                     "email_verified": True, "jti": str(uuid.uuid4()),
                     "exp": now + pool.ID_TOKEN_MINUTES * 60}
        access_claims = {**common, "token_use": "access", "client_id": self.client_id,
                         "username": user.username, "scope": ACCESS_SCOPE,
                         "jti": str(uuid.uuid4()), "exp": now + pool.ACCESS_TOKEN_MINUTES * 60}
        key = self.signing_key
        return Tokens(id_token=key.sign(id_claims), access_token=key.sign(access_claims),
                      refresh_token=refresh_token, expires_in=pool.ACCESS_TOKEN_MINUTES * 60)

    def logout(self, access_token: str) -> None:
        try:
            claims = jwt.decode(access_token, self.signing_key.key.public_key(),
                                algorithms=["RS256"], issuer=self.issuer,
                                options={"verify_aud": False, "verify_exp": False,
                                         "require": ["sub", "origin_jti"]})
        except jwt.PyJWTError:
            raise errors.Unauthorized("The token was not issued here.",
                                      code="invalid_token") from None
        # Idempotent: a sign-in that has ended already stays ended.
        self.store.end_session(claims["sub"], claims["origin_jti"])

    def change_password(self, username: str, access_token: str, old_password: str,
                        new_password: str) -> None:
        with _one_attempt_at_a_time(username):
            self._change_password(username, access_token, old_password, new_password)

    def _change_password(self, username: str, access_token: str, old_password: str,
                         new_password: str) -> None:
        user = self._existing(username)
        # Said before the current password is tried: a weak new one is no failed attempt.
        problems = pool.password_problems(new_password)
        if problems:
            raise errors.BadRequest("Password is too weak: it needs " + ", ".join(problems) +
                                    ".", code="weak_password",
                                    details={"field": "new_password"})
        self._check_throttle(user)
        if not self._password_matches(user, old_password):
            self._record_failure(user)
            raise errors.Unauthorized("The current password is wrong.", code="wrong_password",
                                      details={"field": "old_password"})
        changed = self.store.update_user(user, Change(set={
            "password_hash": HASHER.hash(new_password), "failures": 0}),
            Condition.eq("password_hash", user.password_hash))
        if changed is None:
            raise errors.Conflict("The password was changed (or the account deleted) meanwhile; "
                                  "try again.", code="concurrent_change")
        # Whoever knew the old password is signed out everywhere but here.
        claims = jwt.decode(access_token, options={"verify_signature": False})
        self.store.end_all_sessions(user.user_id, keep=claims.get("origin_jti"))

    def reset_password(self, username: str, new_password: str) -> None:
        user = self._existing(username)
        problems = pool.password_problems(new_password)
        if problems:
            raise errors.BadRequest("Password is too weak: it needs " + ", ".join(problems) +
                                    ".", code="weak_password",
                                    details={"field": "new_password"})
        # A sign-in that checked the old hash cannot begin after this (create_session).
        if self.store.update_user(user, Change(set={"password_hash": HASHER.hash(new_password),
                                                    "failures": 0})) is None:
            raise errors.NotFound(f"No user '{errors.shown(username)}'.", code="user_not_found")
        self.store.end_all_sessions(user.user_id)

    def is_revoked(self, claims: dict) -> bool:
        user_id, session = claims.get("sub"), claims.get("origin_jti")
        if not (isinstance(user_id, str) and isinstance(session, str) and user_id and session):
            return True
        return self.store.get_session(user_id, session) is None

    # -- directory ----------------------------------------------------------------------------
    @staticmethod
    def _public(user: UserItem) -> User:
        return User(user_id=user.user_id, username=user.username, email=user.email,
                    status=user.status, enabled=True,
                    created=datetime.fromtimestamp(user.created, timezone.utc).isoformat(),
                    groups=sorted(user.groups))

    def describe(self, username: str) -> User:
        return self._public(self._existing(username))

    def describe_by_id(self, user_id: str) -> User:
        user = self.store.get_user_by_id(user_id)
        if user is None:
            raise errors.NotFound("No such user.", code="user_not_found")
        return self._public(user)

    def list_users(self, limit: int, cursor: str | None) -> UserPage:
        try:
            users, next_cursor = self.store.list_users(limit, cursor)
        except BadCursor:
            raise errors.BadRequest("The paging cursor ('next') is not valid; start the listing "
                                    "again.", code="invalid_cursor") from None
        return UserPage([self._public(u) for u in users], next_cursor)

    def delete_user(self, username: str) -> None:
        user = self.store.mark_deleting(username)
        if user is None:
            raise errors.NotFound(f"No user '{errors.shown(username)}'.", code="user_not_found")
        # Sessions first: from here on every token of the user is refused (is_revoked).
        self.store.end_all_sessions(user.user_id)
        self.store.forget_user(user)

    def _groups(self):
        """The group store, with the `admins` group in it (the pool declares it, as the CDK and
        Cognito do)."""
        if not self._admins_ready:
            self.store.create_group(pool.ADMIN_GROUP, "May manage users and groups", self._now())
            self._admins_ready = True
        return self.store

    def groups_of(self, username: str) -> list[str]:
        return sorted(self._existing(username).groups)

    def group_created(self, name: str) -> float | None:
        return self.store.group_created(name)

    def list_groups(self) -> list[Group]:
        return [Group(g["name"], g.get("description", "")) for g in self._groups().list_groups()]

    def create_group(self, name: str, description: str) -> Group:
        if not self._groups().create_group(name, description, time.time()):
            raise errors.Conflict(f"The group '{name}' exists already.", code="group_exists")
        return Group(name, description)

    def delete_group(self, name: str) -> None:
        if not self._groups().delete_group(name):
            raise errors.NotFound(f"No group '{errors.shown(name)}'.", code="group_not_found")

    def set_membership(self, group: str, username: str, member: bool) -> None:
        if not self._groups().group_exists(group):
            raise errors.NotFound(f"No group '{errors.shown(group)}'.", code="group_not_found")
        missing = self.store.set_membership(group, self._existing(username), member)
        if missing == "group":
            raise errors.NotFound(f"No group '{errors.shown(group)}'.", code="group_not_found")
        if missing == "user":
            raise errors.NotFound(f"No user '{errors.shown(username)}'.", code="user_not_found")

    def group_members(self, group: str) -> list[str]:
        if not self._groups().group_exists(group):
            raise errors.NotFound(f"No group '{errors.shown(group)}'.", code="group_not_found")
        return self.store.group_members(group)
