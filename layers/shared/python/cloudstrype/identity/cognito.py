"""The Cognito user pool as the identity provider (in AWS; moto's in the adapter tests).

Revocation: Cognito's tokens are verified offline against its JWKS, so an access or id token stays
valid until it expires (at most `pool.ACCESS_TOKEN_MINUTES`) after a logout or a deletion; what
ends at once is the refresh token (GlobalSignOut, AdminDeleteUser). `is_revoked` is therefore
always False here.
"""
from __future__ import annotations

import time

from botocore.exceptions import ClientError

from cloudstrype import errors
from cloudstrype.auth import pool
from cloudstrype.identity.base import CONFIRMED, Group, IdentityProvider, Tokens, User, UserPage


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _message(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Message", "")


def _user_not_found(username: str) -> errors.NotFound:
    return errors.NotFound(f"No user '{errors.shown(username)}'.", code="user_not_found")


def _group_not_found(name: str) -> errors.NotFound:
    return errors.NotFound(f"No group '{errors.shown(name)}'.", code="group_not_found")


def _user(user: dict) -> User:
    attributes = {a["Name"]: a["Value"]
                  for a in user.get("Attributes", user.get("UserAttributes", []))}
    created = user.get("UserCreateDate")
    return User(user_id=attributes.get("sub"), username=user["Username"],
                email=attributes.get("email"), status=user.get("UserStatus", CONFIRMED),
                enabled=user.get("Enabled", True),
                created=created.isoformat() if hasattr(created, "isoformat") else created)


class CognitoIdentity(IdentityProvider):
    def __init__(self, user_pool_id: str, client_id: str, region: str, client=None):
        if not (user_pool_id and client_id):
            raise RuntimeError("Cognito is not configured: set CLOUDSTRYPE_USER_POOL_ID and "
                               "CLOUDSTRYPE_USER_POOL_CLIENT_ID.")
        self.pool_id = user_pool_id
        self.client_id = client_id
        if client is None:
            import boto3  # here, not at the top: boto3 is a large part of a cold start
            client = boto3.client("cognito-idp", region_name=region)
        self.client = client
        self._exists_until: dict[str, float] = {}       # user id -> until (user_exists)

    # -- accounts -----------------------------------------------------------------------------
    def register(self, username: str, email: str, password: str, *, confirmed: bool) -> User:
        try:
            result = self.client.sign_up(ClientId=self.client_id, Username=username,
                                         Password=password,
                                         UserAttributes=[{"Name": "email", "Value": email}])
        except ClientError as exc:
            if _code(exc) == "UsernameExistsException":
                raise errors.Conflict(f"The username '{username}' is taken.",
                                      code="username_taken") from None
            if _code(exc) in ("InvalidPasswordException", "InvalidParameterException"):
                raise errors.BadRequest(_message(exc) or "Invalid input.",
                                        code="invalid_input") from None
            raise
        status = CONFIRMED if result.get("UserConfirmed") else "UNCONFIRMED"
        if confirmed and status != CONFIRMED:
            self.client.admin_confirm_sign_up(UserPoolId=self.pool_id, Username=username)
            status = CONFIRMED
        return User(user_id=result["UserSub"], username=username, email=email, status=status)

    def confirm(self, username: str, code: str) -> None:
        # One answer for an unknown user, a wrong code and a confirmed account, so confirming
        # does not tell which usernames exist.
        refused = errors.BadRequest("The confirmation code is wrong or has expired (or the "
                                    "account is confirmed already: log in).",
                                    code="invalid_code")
        try:
            if self._get_user(username)["UserStatus"] == CONFIRMED:
                raise refused
        except errors.NotFound:
            raise refused from None
        try:
            self.client.confirm_sign_up(ClientId=self.client_id, Username=username,
                                        ConfirmationCode=code)
        except ClientError as exc:
            if _code(exc) in ("CodeMismatchException", "ExpiredCodeException",
                              "UserNotFoundException", "NotAuthorizedException"):
                raise refused from None
            if _code(exc) == "TooManyFailedAttemptsException":
                raise errors.TooManyRequests("Too many wrong codes; wait a while and try again.",
                                             code="too_many_attempts") from None
            raise

    def _get_user(self, username: str) -> dict:
        try:
            return self.client.admin_get_user(UserPoolId=self.pool_id, Username=username)
        except ClientError as exc:
            if _code(exc) == "UserNotFoundException":
                raise _user_not_found(username) from None
            raise

    # -- tokens -------------------------------------------------------------------------------
    @staticmethod
    def _tokens(result: dict, refresh_token: str | None = None) -> Tokens:
        auth = result["AuthenticationResult"]
        return Tokens(id_token=auth["IdToken"], access_token=auth["AccessToken"],
                      refresh_token=auth.get("RefreshToken") or refresh_token,
                      expires_in=auth.get("ExpiresIn", pool.ACCESS_TOKEN_MINUTES * 60))

    def login(self, username: str, password: str) -> Tokens:
        try:
            result = self.client.initiate_auth(
                ClientId=self.client_id, AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password})
        except ClientError as exc:
            if _code(exc) == "NotAuthorizedException" and "attempts exceeded" in _message(exc):
                # Cognito's own lockout after repeated wrong passwords.
                raise errors.TooManyRequests("Too many failed sign-ins; wait a while and try "
                                             "again.", code="too_many_attempts") from None
            if _code(exc) in ("NotAuthorizedException", "UserNotFoundException"):
                # One message for both, so login does not reveal which usernames exist.
                raise errors.Unauthorized("Wrong username or password.",
                                          code="invalid_credentials") from None
            if _code(exc) == "UserNotConfirmedException":
                raise errors.Forbidden("Confirm your account first (POST /api/auth/confirm with "
                                       "the code you were sent).", code="not_confirmed") from None
            raise
        if "AuthenticationResult" not in result:
            raise errors.Forbidden(f"Sign-in needs a further step ({result.get('ChallengeName')}"
                                   "), which this API does not offer.",
                                   code="challenge_required")
        return self._tokens(result)

    def refresh(self, refresh_token: str) -> Tokens:
        if not refresh_token:
            raise errors.Unauthorized("The refresh token is not valid; log in again.",
                                      code="invalid_refresh_token")
        try:
            result = self.client.initiate_auth(
                ClientId=self.client_id, AuthFlow="REFRESH_TOKEN_AUTH",
                AuthParameters={"REFRESH_TOKEN": refresh_token})
        except ClientError as exc:
            if _code(exc) in ("NotAuthorizedException", "UserNotFoundException"):
                raise errors.Unauthorized("The refresh token is not valid; log in again.",
                                          code="invalid_refresh_token") from None
            raise
        return self._tokens(result, refresh_token)

    def logout(self, access_token: str) -> None:
        # GlobalSignOut ends every refresh token of the user: Cognito has no per-session call
        # that takes an access token (RevokeToken wants the refresh token).
        try:
            self.client.global_sign_out(AccessToken=access_token)
        except ClientError as exc:
            if _code(exc) == "NotAuthorizedException":
                raise errors.Unauthorized("This sign-in has ended already; log in again.",
                                          code="token_revoked") from None
            raise

    def change_password(self, username: str, access_token: str, old_password: str,
                        new_password: str) -> None:
        # ChangePassword is a public client call made with the user's own access token. Other
        # sign-ins are not ended: Cognito ends sign-ins only all at once (GlobalSignOut),
        # this one included; the user can follow with a logout.
        try:
            self.client.change_password(PreviousPassword=old_password,
                                        ProposedPassword=new_password, AccessToken=access_token)
        except ClientError as exc:
            if _code(exc) == "LimitExceededException" or "attempts exceeded" in _message(exc):
                raise errors.TooManyRequests("Too many failed attempts; wait a while and try "
                                             "again.", code="too_many_attempts") from None
            if _code(exc) == "NotAuthorizedException":
                raise errors.Unauthorized("The current password is wrong.",
                                          code="wrong_password",
                                          details={"field": "old_password"}) from None
            if _code(exc) in ("InvalidPasswordException", "InvalidParameterException"):
                raise errors.BadRequest("Password is too weak for the user pool's policy.",
                                        code="weak_password",
                                        details={"field": "new_password"}) from None
            raise

    def reset_password(self, username: str, new_password: str) -> None:
        try:
            self.client.admin_set_user_password(UserPoolId=self.pool_id, Username=username,
                                                Password=new_password, Permanent=True)
            self.client.admin_user_global_sign_out(UserPoolId=self.pool_id, Username=username)
        except ClientError as exc:
            if _code(exc) == "UserNotFoundException":
                raise _user_not_found(username) from None
            if _code(exc) in ("InvalidPasswordException", "InvalidParameterException"):
                raise errors.BadRequest("Password is too weak for the user pool's policy.",
                                        code="weak_password",
                                        details={"field": "new_password"}) from None
            raise

    def is_revoked(self, claims: dict) -> bool:
        return False

    # -- directory ----------------------------------------------------------------------------
    def describe(self, username: str) -> User:
        user = _user(self._get_user(username))
        user.groups = self.groups_of(username)
        return user

    # A found account is taken as there for this long without asking again: every shared
    # request checks its owner, and the pool answers a listing ~30 times a second.
    USER_EXISTS_SECONDS = 60.0

    def user_exists(self, user_id: str) -> bool:
        now = time.monotonic()
        if self._exists_until.get(user_id, 0) > now:
            return True
        if self._by_sub(user_id) is None:
            return False
        if len(self._exists_until) > 10_000:
            self._exists_until.clear()
        self._exists_until[user_id] = now + self.USER_EXISTS_SECONDS
        return True

    def describe_by_id(self, user_id: str) -> User:
        found = self._by_sub(user_id)
        if found is None:
            raise errors.NotFound("No such user.", code="user_not_found")
        user = _user(found)
        user.groups = self.groups_of(user.username)
        return user

    def _by_sub(self, user_id: str) -> dict | None:
        """The pool's record of the account with this id (`sub`, an indexed attribute: a
        filtered listing finds it), None if there is none."""
        if not user_id or '"' in user_id or "\\" in user_id:
            return None
        found = self.client.list_users(UserPoolId=self.pool_id, Filter=f'sub = "{user_id}"',
                                       Limit=1)["Users"]
        return found[0] if found else None

    def list_users(self, limit: int, cursor: str | None) -> UserPage:
        args = {"UserPoolId": self.pool_id, "Limit": limit}
        if cursor:
            args["PaginationToken"] = cursor
        try:
            result = self.client.list_users(**args)
        except ClientError as exc:
            if _code(exc) in ("InvalidParameterException", "InvalidToken"):
                raise errors.BadRequest("The paging cursor ('next') is not valid; start the "
                                        "listing again.", code="invalid_cursor") from None
            raise
        return UserPage([_user(u) for u in result["Users"]], result.get("PaginationToken"))

    def delete_user(self, username: str) -> None:
        try:
            # Refresh tokens end first, explicitly, before the account goes.
            self.client.admin_user_global_sign_out(UserPoolId=self.pool_id, Username=username)
            self.client.admin_delete_user(UserPoolId=self.pool_id, Username=username)
        except ClientError as exc:
            if _code(exc) == "UserNotFoundException":
                raise _user_not_found(username) from None
            raise

    def groups_of(self, username: str) -> list[str]:
        groups = []
        try:
            for page in self.client.get_paginator("admin_list_groups_for_user").paginate(
                    UserPoolId=self.pool_id, Username=username):
                groups.extend(g["GroupName"] for g in page["Groups"])
        except ClientError as exc:
            if _code(exc) == "UserNotFoundException":
                raise _user_not_found(username) from None
            raise
        return sorted(groups)

    def list_groups(self) -> list[Group]:
        groups = []
        for page in self.client.get_paginator("list_groups").paginate(UserPoolId=self.pool_id):
            groups.extend(Group(g["GroupName"], g.get("Description", "")) for g in page["Groups"])
        return sorted(groups, key=lambda g: g.name)

    def create_group(self, name: str, description: str) -> Group:
        try:
            self.client.create_group(UserPoolId=self.pool_id, GroupName=name,
                                     Description=description)
        except ClientError as exc:
            if _code(exc) == "GroupExistsException":
                raise errors.Conflict(f"The group '{name}' exists already.",
                                      code="group_exists") from None
            raise
        return Group(name, description)

    def delete_group(self, name: str) -> None:
        try:
            self.client.delete_group(UserPoolId=self.pool_id, GroupName=name)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise _group_not_found(name) from None
            raise

    def group_created(self, name: str) -> float | None:
        try:
            group = self.client.get_group(UserPoolId=self.pool_id, GroupName=name)["Group"]
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise
        created = group.get("CreationDate")
        return created.timestamp() if hasattr(created, "timestamp") else 0.0

    def _require_group(self, name: str) -> None:
        try:
            self.client.get_group(UserPoolId=self.pool_id, GroupName=name)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise _group_not_found(name) from None
            raise

    def set_membership(self, group: str, username: str, member: bool) -> None:
        self._require_group(group)
        call = (self.client.admin_add_user_to_group if member
                else self.client.admin_remove_user_from_group)
        try:
            call(UserPoolId=self.pool_id, Username=username, GroupName=group)
        except ClientError as exc:
            if _code(exc) == "UserNotFoundException":
                raise _user_not_found(username) from None
            if _code(exc) == "ResourceNotFoundException":
                raise _group_not_found(group) from None
            raise

    def group_members(self, group: str) -> list[str]:
        self._require_group(group)
        names = []
        for page in self.client.get_paginator("list_users_in_group").paginate(
                UserPoolId=self.pool_id, GroupName=group):
            names.extend(u["Username"] for u in page["Users"])
        return sorted(names)
