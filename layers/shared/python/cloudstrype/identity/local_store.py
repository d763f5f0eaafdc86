"""The local identity service's tables and their store (used by `cloudstrype serve` only; in AWS
Cognito holds all of this).

- users: one partition, keyed by the lower-cased username (usernames are case-insensitive, like
  the pool), so listing is a paged query, never a scan. A user's groups live on the user (a token
  is issued from one read) and, for listing a group, as rows of group-members; both are written
  in one transaction.
- refresh-tokens: one row per sign-in (session), keyed by user id: the revocation check on every
  request is one get of (sub, origin_jti). Only a hash of the refresh token is stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cloudstrype.metadata import schema
from cloudstrype.metadata.engine import (
    Change,
    Check,
    Condition,
    ConditionFailed,
    Delete,
    Engine,
    Put,
    Update,
    get_engine,
)
from cloudstrype.metadata.schema import INT, STR, STR_SET

USERS_PARTITION = "users"
GROUPS_PARTITION = "groups"
DELETING = "DELETING"          # a user being deleted: invisible, cannot sign in or refresh

USERS = schema.table(
    "identity-users", hash_key="pool", range_key="name_key", owner_module=__name__,
    local_only=True,
    # A token names its user by id (`sub`): found through this index, not by a name.
    indexes=(schema.Index("by-user-id", hash_key="user_id", range_key="name_key"),),
    fields={"pool": STR, "name_key": STR, "username": STR, "user_id": STR, "email": STR,
            "password_hash": STR, "status": STR, "created": INT, "groups": STR_SET,
            "failures": INT, "last_failure": INT, "code_hash": STR, "code_expires": INT})
GROUPS = schema.table(
    "identity-groups", hash_key="pool", range_key="name", owner_module=__name__,
    local_only=True,
    fields={"pool": STR, "name": STR, "description": STR, "created": INT})
GROUP_MEMBERS = schema.table(
    "identity-group-members", hash_key="group", range_key="name_key", owner_module=__name__,
    local_only=True,
    fields={"group": STR, "name_key": STR, "username": STR})
REFRESH_TOKENS = schema.table(
    "identity-refresh-tokens", hash_key="user_id", range_key="session", owner_module=__name__,
    local_only=True,
    expires="expires",
    fields={"user_id": STR, "session": STR, "name_key": STR, "token_hash": STR,
            "auth_time": INT, "created": INT, "expires": INT, "generation": INT,
            "rotated_at": INT})
TABLES = [USERS, GROUPS, GROUP_MEMBERS, REFRESH_TOKENS]


def name_key(username: str) -> str:
    """Usernames are ASCII and compared case aside. Only ASCII is folded: str.lower() made the
    Kelvin sign (U+212A) a 'k', so 'Kate' with it signed in as, and was shared with, kate."""
    return username.lower() if username.isascii() else username


@dataclass
class UserItem:
    username: str
    user_id: str
    email: str
    password_hash: str
    status: str
    created: int
    groups: set[str] = field(default_factory=set)
    failures: int = 0               # wrong passwords or codes in a row
    last_failure: int = 0
    code_hash: str | None = None
    code_expires: int | None = None

    @property
    def key(self) -> dict:
        return {"pool": USERS_PARTITION, "name_key": name_key(self.username)}


@dataclass
class Session:
    user_id: str
    session: str
    name_key: str
    token_hash: str
    auth_time: int
    created: int
    expires: int
    # Which refresh token of the sign-in is current (each names its generation and is
    # MACed by the server: identity.local), and when it last replaced the one before. 0: a
    # sign-in from before generations, whose token is checked by `token_hash` alone (empty
    # for the others: nothing of their tokens is stored).
    generation: int = 0
    rotated_at: int = 0


def _user_key(username: str) -> dict:
    return {"pool": USERS_PARTITION, "name_key": name_key(username)}


def _group_key(name: str) -> dict:
    return {"pool": GROUPS_PARTITION, "name": name}


def _user_from(item: dict) -> UserItem:
    return UserItem(username=item["username"], user_id=item["user_id"], email=item["email"],
                    password_hash=item["password_hash"], status=item["status"],
                    created=int(item["created"]), groups=set(item.get("groups") or ()),
                    failures=int(item.get("failures", 0)),
                    last_failure=int(item.get("last_failure", 0)),
                    code_hash=item.get("code_hash"),
                    code_expires=int(item["code_expires"]) if "code_expires" in item else None)


class IdentityStore:
    def __init__(self, engine: Engine | None = None):
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine or get_engine()

    # -- users --------------------------------------------------------------------------------
    def create_user(self, user: UserItem) -> bool:
        """False when the (case-insensitive) username is taken."""
        item = {**user.key, "username": user.username, "user_id": user.user_id,
                "email": user.email, "password_hash": user.password_hash, "status": user.status,
                "created": user.created}
        if user.code_hash:
            item.update(code_hash=user.code_hash, code_expires=user.code_expires)
        try:
            self.engine.put(USERS, item, Condition.absent())
        except ConditionFailed:
            return False
        return True

    def get_user(self, username: str) -> UserItem | None:
        """The user, unless absent or being deleted."""
        item = self.engine.get(USERS, _user_key(username))
        if item is None or item["status"] == DELETING:
            return None
        return _user_from(item)

    def get_user_by_id(self, user_id: str) -> UserItem | None:
        """The user with this id, unless absent or being deleted."""
        for item in self.engine.query_index(USERS, "by-user-id", user_id, limit=2).items:
            if item["status"] != DELETING:
                return _user_from(item)
        return None

    def list_users(self, limit: int, cursor: str | None) -> tuple[list[UserItem], str | None]:
        page = self.engine.query(USERS, USERS_PARTITION, limit=limit, cursor=cursor)
        users = [_user_from(i) for i in page.items if i["status"] != DELETING]
        return users, page.cursor

    def update_user(self, user: UserItem, change: Change,
                    condition: Condition | None = None) -> UserItem | None:
        """Apply to this very user (same id, not being deleted); None if it is gone."""
        guard = Condition.eq("user_id", user.user_id) & Condition.ne("status", DELETING)
        try:
            item = self.engine.update(USERS, user.key, change, guard & (condition or Condition()))
        except ConditionFailed:
            return None
        return _user_from(item)

    def mark_deleting(self, username: str) -> UserItem | None:
        """Step one of a deletion: from now on the user cannot sign in, refresh or gain a
        session, so the sessions listed next are all there will ever be. A deletion cut short
        (a crash) is resumed by deleting again."""
        try:
            item = self.engine.update(USERS, _user_key(username), Change(set={"status": DELETING}),
                                      Condition.exists())
        except ConditionFailed:
            return None
        return _user_from(item)

    def forget_user(self, user: UserItem) -> None:
        for group in user.groups:
            self.engine.delete(GROUP_MEMBERS, {"group": group, "name_key": name_key(user.username)})
        try:
            self.engine.delete(USERS, user.key, Condition.eq("user_id", user.user_id))
        except ConditionFailed:
            pass                # a concurrent deletion finished first

    # -- sessions (refresh tokens) ------------------------------------------------------------
    def create_session(self, session: Session, user: UserItem, status: str,
                       password_hash: str | None = None) -> bool:
        """Only while the user still exists with this status (a deletion may be under way) and,
        given `password_hash` (the one a sign-in checked), that password (a change ends every
        other sign-in: one checked against the old password must not begin after it)."""
        item = {"user_id": session.user_id, "session": session.session,
                "name_key": session.name_key, "token_hash": session.token_hash,
                "auth_time": session.auth_time, "created": session.created,
                "expires": session.expires, "generation": session.generation,
                "rotated_at": session.rotated_at}
        try:
            self.engine.transact([
                Check(USERS, user.key, Condition.eq("user_id", user.user_id)
                      & Condition.eq("status", status)
                      & (Condition.eq("password_hash", password_hash)
                         if password_hash is not None else Condition())),
                Put(REFRESH_TOKENS, item, Condition.absent()),
            ])
        except ConditionFailed:
            return False
        return True

    def get_session(self, user_id: str, session: str) -> Session | None:
        item = self.engine.get(REFRESH_TOKENS, {"user_id": user_id, "session": session})
        if item is None:
            return None
        return Session(**{k: item[k] for k in ("user_id", "session", "name_key", "token_hash")},
                       auth_time=int(item["auth_time"]), created=int(item["created"]),
                       expires=int(item["expires"]),
                       generation=int(item.get("generation") or 0),
                       rotated_at=int(item.get("rotated_at") or 0))

    def rotate_session(self, session: Session, generation: int, now: int) -> bool:
        """Move the sign-in to `generation` at `now`, compare-and-set on its generation (on the
        token hash for one from before generations): of two refreshes with one token, one
        wins. (Its end stays: a sign-in lasts its days from the login.)"""
        condition = Condition.eq("generation", session.generation) if session.generation \
            else Condition.eq("token_hash", session.token_hash)
        try:
            self.engine.update(REFRESH_TOKENS, {"user_id": session.user_id,
                                                "session": session.session},
                               Change(set={"generation": generation, "rotated_at": now}),
                               condition)
        except ConditionFailed:
            return False
        return True

    def end_session(self, user_id: str, session: str) -> bool:
        return self.engine.delete(REFRESH_TOKENS, {"user_id": user_id, "session": session}) \
            is not None

    def end_all_sessions(self, user_id: str, keep: str | None = None) -> int:
        """End every sign-in of the user but `keep` (a session id); how many ended."""
        ended = 0
        for item in list(self.engine.query_all(REFRESH_TOKENS, user_id)):
            if item["session"] != keep:
                ended += self.end_session(user_id, item["session"])
        return ended

    # -- groups -------------------------------------------------------------------------------
    def create_group(self, name: str, description: str, now: float) -> bool:
        try:
            self.engine.put(GROUPS, {**_group_key(name), "description": description,
                                     "created": now}, Condition.absent())
        except ConditionFailed:
            return False
        return True

    def group_exists(self, name: str) -> bool:
        return self.engine.get(GROUPS, _group_key(name)) is not None

    def group_created(self, name: str) -> float | None:
        item = self.engine.get(GROUPS, _group_key(name))
        return None if item is None else float(item.get("created", 0))

    def list_groups(self) -> list[dict]:
        return list(self.engine.query_all(GROUPS, GROUPS_PARTITION))

    def delete_group(self, name: str) -> bool:
        try:
            self.engine.delete(GROUPS, _group_key(name), Condition.exists())
        except ConditionFailed:
            return False
        # The group is gone first, so no membership can be added meanwhile (see set_membership).
        for row in list(self.engine.query_all(GROUP_MEMBERS, name)):
            self._drop_membership(name, row["name_key"])
        return True

    def _drop_membership(self, group: str, key: str) -> None:
        user = self.engine.get(USERS, {"pool": USERS_PARTITION, "name_key": key})
        ops = [Delete(GROUP_MEMBERS, {"group": group, "name_key": key})]
        if user is not None:
            ops.append(Update(USERS, {"pool": USERS_PARTITION, "name_key": key},
                              Change(remove_from_set={"groups": {group}}),
                              Condition.eq("user_id", user["user_id"])))
        try:
            self.engine.transact(ops)
        except ConditionFailed:
            # The user was replaced meanwhile (deleted, re-registered): just drop the row.
            self.engine.delete(GROUP_MEMBERS, {"group": group, "name_key": key})

    def set_membership(self, group: str, user: UserItem, member: bool) -> str | None:
        """None when done, else what was missing: "group" or "user"."""
        user_guard = Condition.eq("user_id", user.user_id) & Condition.ne("status", DELETING)
        row_key = {"group": group, "name_key": name_key(user.username)}
        if member:
            ops = [Check(GROUPS, _group_key(group), Condition.exists()),
                   Update(USERS, user.key, Change(add_to_set={"groups": {group}}), user_guard),
                   Put(GROUP_MEMBERS, {**row_key, "username": user.username})]
        else:
            ops = [Check(GROUPS, _group_key(group), Condition.exists()),
                   Update(USERS, user.key, Change(remove_from_set={"groups": {group}}),
                          user_guard),
                   Delete(GROUP_MEMBERS, row_key)]
        try:
            self.engine.transact(ops)
        except ConditionFailed as failed:
            if failed.index == 0 or (failed.index is None and not self.group_exists(group)):
                return "group"
            return "user"
        return None

    def group_members(self, group: str) -> list[str]:
        return sorted(row["username"] for row in self.engine.query_all(GROUP_MEMBERS, group))
