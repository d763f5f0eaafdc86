"""Users and groups in the Cognito user pool (moto's, locally)."""
from __future__ import annotations

import re

import boto3
from botocore.exceptions import ClientError

from cloudstrype import errors
from cloudstrype.auth import pool
from cloudstrype.settings import get_settings

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")
GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")


def _cognito():
    return boto3.client("cognito-idp", region_name=get_settings().region)


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def validate_username(username: str) -> str:
    if not USERNAME_RE.match(username):
        raise errors.BadRequest("Username must be 3-64 characters: letters, digits, '.', '_' or "
                                "'-', starting with a letter or digit.", code="invalid_username",
                                details={"field": "username"})
    return username


def validate_group(group: str) -> str:
    if not GROUP_RE.match(group):
        raise errors.BadRequest("Group name must be 1-128 characters: letters, digits, '.', '_' "
                                "or '-'.", code="invalid_group", details={"field": "name"})
    return group


def register(username: str, email: str, password: str) -> dict:
    settings = get_settings()
    validate_username(username)
    if not EMAIL_RE.match(email) or len(email) > 254:
        raise errors.BadRequest(f"'{email}' is not a valid e-mail address.", code="invalid_email",
                                details={"field": "email"})
    problems = pool.password_problems(password)
    if problems:
        raise errors.BadRequest("Password is too weak: it needs " + ", ".join(problems) + ".",
                                code="weak_password", details={"field": "password"})
    client = _cognito()
    try:
        result = client.sign_up(ClientId=settings.user_pool_client_id, Username=username,
                                Password=password,
                                UserAttributes=[{"Name": "email", "Value": email}])
    except ClientError as exc:
        if _code(exc) == "UsernameExistsException":
            raise errors.Conflict(f"The username '{username}' is taken.",
                                  code="username_taken") from None
        if _code(exc) in ("InvalidPasswordException", "InvalidParameterException"):
            raise errors.BadRequest(exc.response["Error"].get("Message", "Invalid input."),
                                    code="invalid_input") from None
        raise
    confirmed = bool(result.get("UserConfirmed"))
    if not confirmed and settings.flag("auto_confirm_users"):
        client.admin_confirm_sign_up(UserPoolId=settings.user_pool_id, Username=username)
        confirmed = True
    return {"user_id": result["UserSub"], "username": username, "confirmed": confirmed}


def confirm(username: str, code: str) -> None:
    settings = get_settings()
    try:
        status = _cognito().admin_get_user(UserPoolId=settings.user_pool_id,
                                           Username=username)["UserStatus"]
    except ClientError as exc:
        if _code(exc) == "UserNotFoundException":
            raise errors.NotFound(f"No user '{username}'.", code="user_not_found") from None
        raise
    if status == "CONFIRMED":
        raise errors.Conflict("This account is confirmed already; log in.",
                              code="already_confirmed")
    try:
        _cognito().confirm_sign_up(ClientId=get_settings().user_pool_client_id,
                                   Username=username, ConfirmationCode=code)
    except ClientError as exc:
        if _code(exc) in ("CodeMismatchException", "ExpiredCodeException"):
            raise errors.BadRequest("The confirmation code is wrong or has expired.",
                                    code="invalid_code") from None
        if _code(exc) == "UserNotFoundException":
            raise errors.NotFound(f"No user '{username}'.") from None
        if _code(exc) == "NotAuthorizedException":
            raise errors.Conflict("This user is already confirmed.") from None
        raise


def _tokens(result: dict, refresh_token: str | None = None) -> dict:
    auth = result["AuthenticationResult"]
    return {
        "id_token": auth["IdToken"],
        "access_token": auth["AccessToken"],
        "refresh_token": auth.get("RefreshToken", refresh_token),
        "expires_in": auth.get("ExpiresIn", pool.ACCESS_TOKEN_MINUTES * 60),
        "token_type": "Bearer",
    }


def login(username: str, password: str) -> dict:
    try:
        result = _cognito().initiate_auth(
            ClientId=get_settings().user_pool_client_id, AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password})
    except ClientError as exc:
        if _code(exc) in ("NotAuthorizedException", "UserNotFoundException"):
            # One message for both, so login does not reveal which usernames exist.
            raise errors.Unauthorized("Wrong username or password.",
                                      code="invalid_credentials") from None
        if _code(exc) == "UserNotConfirmedException":
            raise errors.Forbidden("Confirm your account first (POST /api/auth/confirm with the "
                                   "code you were sent).", code="not_confirmed") from None
        raise
    if "AuthenticationResult" not in result:
        raise errors.Forbidden(f"Sign-in needs a further step ({result.get('ChallengeName')}), "
                               "which this API does not offer.", code="challenge_required")
    return _tokens(result)


def refresh(refresh_token: str) -> dict:
    try:
        result = _cognito().initiate_auth(
            ClientId=get_settings().user_pool_client_id, AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": refresh_token})
    except ClientError as exc:
        if _code(exc) in ("NotAuthorizedException", "UserNotFoundException"):
            raise errors.Unauthorized("The refresh token is not valid; log in again.",
                                      code="invalid_refresh_token") from None
        raise
    return _tokens(result, refresh_token)


def _user_record(user: dict) -> dict:
    attributes = {a["Name"]: a["Value"] for a in user.get("Attributes", user.get("UserAttributes", []))}
    created = user.get("UserCreateDate")
    return {
        "user_id": attributes.get("sub"),
        "username": user["Username"],
        "email": attributes.get("email"),
        "status": user.get("UserStatus"),
        "enabled": user.get("Enabled", True),
        "created": created.isoformat() if hasattr(created, "isoformat") else created,
    }


def groups_of(username: str) -> list[str]:
    settings = get_settings()
    paginator = _cognito().get_paginator("admin_list_groups_for_user")
    groups = []
    for page in paginator.paginate(UserPoolId=settings.user_pool_id, Username=username):
        groups.extend(g["GroupName"] for g in page["Groups"])
    return sorted(groups)


def describe(username: str) -> dict:
    try:
        user = _cognito().admin_get_user(UserPoolId=get_settings().user_pool_id,
                                         Username=username)
    except ClientError as exc:
        if _code(exc) == "UserNotFoundException":
            raise errors.NotFound(f"No user '{username}'.", code="user_not_found") from None
        raise
    record = _user_record(user)
    record["groups"] = groups_of(username)
    return record


def list_users(limit: int, next_token: str | None) -> dict:
    args = {"UserPoolId": get_settings().user_pool_id, "Limit": limit}
    if next_token:
        args["PaginationToken"] = next_token
    try:
        result = _cognito().list_users(**args)
    except ClientError as exc:
        if _code(exc) == "InvalidParameterException":
            raise errors.BadRequest("The 'next' token is not valid.") from None
        raise
    return {"users": [_user_record(u) for u in result["Users"]],
            "next": result.get("PaginationToken")}


def delete_user(username: str, acting_username: str) -> None:
    if username == acting_username:
        raise errors.Conflict("You cannot delete your own account here; ask another admin.",
                              code="self_delete")
    try:
        _cognito().admin_delete_user(UserPoolId=get_settings().user_pool_id, Username=username)
    except ClientError as exc:
        if _code(exc) == "UserNotFoundException":
            raise errors.NotFound(f"No user '{username}'.", code="user_not_found") from None
        raise


def list_groups() -> list[dict]:
    paginator = _cognito().get_paginator("list_groups")
    groups = []
    for page in paginator.paginate(UserPoolId=get_settings().user_pool_id):
        for g in page["Groups"]:
            groups.append({"name": g["GroupName"], "description": g.get("Description", "")})
    return sorted(groups, key=lambda g: g["name"])


def create_group(name: str, description: str) -> dict:
    validate_group(name)
    if len(description) > 2048:
        raise errors.BadRequest("Description must be at most 2048 characters.",
                                details={"field": "description"})
    try:
        _cognito().create_group(UserPoolId=get_settings().user_pool_id, GroupName=name,
                                Description=description)
    except ClientError as exc:
        if _code(exc) == "GroupExistsException":
            raise errors.Conflict(f"The group '{name}' exists already.",
                                  code="group_exists") from None
        raise
    return {"name": name, "description": description}


def delete_group(name: str) -> None:
    validate_group(name)
    if name == pool.ADMIN_GROUP:
        raise errors.Conflict("The admins group cannot be deleted.", code="protected_group")
    try:
        _cognito().delete_group(UserPoolId=get_settings().user_pool_id, GroupName=name)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            raise errors.NotFound(f"No group '{name}'.", code="group_not_found") from None
        raise


def _require_group(name: str) -> None:
    try:
        _cognito().get_group(UserPoolId=get_settings().user_pool_id, GroupName=name)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            raise errors.NotFound(f"No group '{name}'.", code="group_not_found") from None
        raise


def set_membership(group: str, username: str, member: bool) -> None:
    validate_group(group)
    _require_group(group)
    client = _cognito()
    pool_id = get_settings().user_pool_id
    try:
        if member:
            client.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)
        else:
            client.admin_remove_user_from_group(UserPoolId=pool_id, Username=username,
                                                GroupName=group)
    except ClientError as exc:
        if _code(exc) == "UserNotFoundException":
            raise errors.NotFound(f"No user '{username}'.", code="user_not_found") from None
        if _code(exc) == "ResourceNotFoundException":
            raise errors.NotFound(f"No group '{group}'.", code="group_not_found") from None
        raise


def group_members(group: str) -> list[str]:
    validate_group(group)
    _require_group(group)
    paginator = _cognito().get_paginator("list_users_in_group")
    names = []
    for page in paginator.paginate(UserPoolId=get_settings().user_pool_id, GroupName=group):
        names.extend(u["Username"] for u in page["Users"])
    return sorted(names)
