"""Users and groups: what callers may ask, checked here; the identity provider (Cognito in AWS,
the local identity service in `serve`) does the rest."""
from __future__ import annotations

import re
from dataclasses import asdict

from cloudstrype import errors
from cloudstrype.auth import pool
from cloudstrype.identity import get_identity
from cloudstrype.identity.base import CONFIRMED, Tokens
from cloudstrype.settings import get_settings

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")
GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_EMAIL = 254                                  # RFC 5321's limit on a forward path
# Explicit about what is not allowed (control characters, whitespace, BOM, direction marks and
# zero-width characters), so Python and the OpenAPI document's ECMA regex, whose \s differ,
# agree on every address.
_NOT_IN_EMAIL = r"\s\x00-\x1f\x7f-\x9f\ufeff\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069"
EMAIL_RE = re.compile(rf"^[^@{_NOT_IN_EMAIL}]{{1,64}}@[^@{_NOT_IN_EMAIL}]+"
                      rf"\.[^@.{_NOT_IN_EMAIL}]{{2,}}$")
# Longer inputs are refused before any hashing (argon2 of megabytes of "password" is a DoS).
MAX_PASSWORD = 256
MAX_SECRET = 4096


def validate_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username):
        raise errors.BadRequest("Username must be 3-64 characters: letters, digits, '.', '_' or "
                                "'-', starting with a letter or digit.", code="invalid_username",
                                details={"field": "username"})
    return username


def validate_group(group: str, field: str = "name") -> str:
    """`field`: where the name came from (the body's `name`, or the path's `group`)."""
    if not GROUP_RE.fullmatch(group):
        raise errors.BadRequest("Group name must be 1-128 characters: letters, digits, '.', '_' "
                                "or '-'.", code="invalid_group", details={"field": field})
    return group


def validate_email(email: str) -> str:
    if not EMAIL_RE.fullmatch(email) or len(email) > MAX_EMAIL:
        raise errors.BadRequest(f"'{errors.shown(email)}' is not a valid e-mail address.",
                                code="invalid_email",
                                details={"field": "email"})
    return email


def validate_password(password: str) -> str:
    if len(password) > MAX_PASSWORD:
        raise errors.BadRequest(f"Password must be at most {MAX_PASSWORD} characters.",
                                code="invalid_password", details={"field": "password"})
    problems = pool.password_problems(password)
    if problems:
        raise errors.BadRequest("Password is too weak: it needs " + ", ".join(problems) + ".",
                                code="weak_password", details={"field": "password"})
    return password


def _short(value: str, name: str, limit: int = MAX_SECRET) -> str:
    if len(value) > limit:
        raise errors.BadRequest(f"'{name}' is too long.", code="invalid_field",
                                details={"field": name})
    return value


def _tokens(tokens: Tokens) -> dict:
    return {**asdict(tokens), "token_type": "Bearer"}


def register(username: str, email: str, password: str) -> dict:
    validate_username(username)
    validate_email(email)
    validate_password(password)
    user = get_identity().register(username, email, password,
                                   confirmed=get_settings().flag("auto_confirm_users"))
    return {"user_id": user.user_id, "username": user.username,
            "confirmed": user.status == CONFIRMED}


def confirm(username: str, code: str) -> None:
    get_identity().confirm(_short(username, "username", 128), _short(code, "code", 64))


def login(username: str, password: str) -> dict:
    if len(username) > 128 or len(password) > MAX_PASSWORD:
        raise errors.Unauthorized("Wrong username or password.", code="invalid_credentials")
    return _tokens(get_identity().login(username, password))


def refresh(refresh_token: str) -> dict:
    return _tokens(get_identity().refresh(_short(refresh_token, "refresh_token")))


def logout(access_token: str, token_use: str) -> None:
    if token_use != "access":
        raise errors.BadRequest("Log out with the access token (not the id token).",
                                code="access_token_required")
    get_identity().logout(access_token)


def change_password(username: str, access_token: str, token_use: str, old_password: str,
                    new_password: str) -> None:
    if token_use != "access":
        raise errors.BadRequest("Change the password with the access token (not the id "
                                "token).", code="access_token_required")
    for name, value in (("old_password", old_password), ("new_password", new_password)):
        if not isinstance(value, str) or not value:
            raise errors.BadRequest(f"Field '{name}' is required.", code="missing_field",
                                    details={"field": name})
    _short(old_password, "old_password", MAX_PASSWORD)
    if len(new_password) > MAX_PASSWORD:
        raise errors.BadRequest(f"Password must be at most {MAX_PASSWORD} characters.",
                                code="invalid_password", details={"field": "new_password"})
    if new_password == old_password:
        # Taken, it changed nothing but the other sign-ins ended: a slip, not a change.
        raise errors.BadRequest("The new password is the one you have now; choose another.",
                                code="same_password", details={"field": "new_password"})
    get_identity().change_password(username, access_token, old_password, new_password)


def groups_of(username: str) -> list[str]:
    return get_identity().groups_of(username)


def describe(username: str) -> dict:
    return asdict(get_identity().describe(username))


def describe_by_id(user_id: str) -> dict:
    return asdict(get_identity().describe_by_id(user_id))


def list_users(limit: int, next_token: str | None, field: str = "cursor") -> dict:
    """A page of users; `field`: the query parameter the cursor came in (said if it is bad)."""
    try:
        page = get_identity().list_users(limit, _short(next_token, field) if next_token
                                         else None)
    except errors.ApiError as exc:
        if exc.code != "invalid_cursor":
            raise
        raise errors.BadRequest(f"The '{field}' is not one this API gave out.",
                                code="invalid_cursor", details={"field": field}) from None
    users = []
    for user in page.users:
        record = asdict(user)
        record.pop("groups")        # a listing does not look up every user's groups
        users.append(record)
    # `next_cursor` as every other listing says it; `next` for clients of its first name.
    return {"users": users, "next_cursor": page.cursor, "next": page.cursor}


def delete_user(username: str, acting_username: str) -> None:
    if username.lower() == acting_username.lower():
        raise errors.Conflict("You cannot delete your own account here; ask another admin.",
                              code="self_delete")
    get_identity().delete_user(username)


def list_groups() -> list[dict]:
    return [asdict(g) for g in get_identity().list_groups()]


def create_group(name: str, description: str) -> dict:
    validate_group(name)
    if len(description) > 2048:
        raise errors.BadRequest("Field 'description' must be at most 2048 characters.",
                                code="invalid_field", details={"field": "description"})
    identity = get_identity()
    # Told apart by case alone, two groups read as one ("Admins" beside admins, a share to
    # "Team" meant for team).
    taken = next((g.name for g in identity.list_groups()
                  if g.name.lower() == name.lower() and g.name != name), None)
    if taken is not None:
        raise errors.Conflict(f"The group '{taken}' exists already; names differing only in "
                              f"case are one name here.", code="group_exists",
                              details={"field": "name"})
    return asdict(identity.create_group(name, description))


def delete_group(name: str) -> None:
    validate_group(name, "group")
    if name == pool.ADMIN_GROUP:
        raise errors.Conflict("The admins group cannot be deleted.", code="protected_group")
    get_identity().delete_group(name)


def set_membership(group: str, username: str, member: bool) -> None:
    validate_group(group, "group")
    username = _short(username, "username", 128)
    identity = get_identity()
    last_admin = errors.Conflict(f"{username} is the last member of {group}; make someone "
                                 f"else an admin first.", code="last_admin")
    if not member and group == pool.ADMIN_GROUP:
        admins = identity.group_members(group)
        if [name.lower() for name in admins] == [username.lower()]:
            # No one could manage users and groups after (only the operator's
            # `cloudstrype admin promote` on the server's machine could undo it).
            raise last_admin
    identity.set_membership(group, username, member)
    if not member and group == pool.ADMIN_GROUP and not identity.group_members(group):
        # Two admins taking themselves (or each other) out at once each saw the other one
        # still in: looked at again after, the one that left none puts its member back.
        identity.set_membership(group, username, True)
        raise last_admin


def group_members(group: str) -> list[str]:
    validate_group(group, "group")
    return get_identity().group_members(group)
