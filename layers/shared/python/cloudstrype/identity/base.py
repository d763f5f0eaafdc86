"""The identity seam: who the users are, their passwords, groups and tokens.

Two providers: Cognito in AWS (`cognito.py`) and the local identity service of `cloudstrype serve`
(`local.py`). Both issue the same RS256 JWTs, verified by the one verifier in
`cloudstrype.auth.tokens`. Providers raise `cloudstrype.errors` with stable codes; checking what a
caller typed (username shape, password policy, protected groups) is the domain layer's work
(`cloudstrype.auth.users`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from cloudstrype import errors

CONFIRMED = "CONFIRMED"
UNCONFIRMED = "UNCONFIRMED"


@dataclass
class User:
    user_id: str                      # the token's `sub`: every item a user owns is keyed by it
    username: str
    email: str | None = None
    status: str = CONFIRMED
    enabled: bool = True
    created: str | None = None        # ISO 8601
    groups: list[str] = field(default_factory=list)


@dataclass
class Group:
    name: str
    description: str = ""


@dataclass
class Tokens:
    id_token: str
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass
class UserPage:
    users: list[User]
    cursor: str | None = None         # opaque; None at the end


class IdentityProvider(ABC):
    """One user directory. Usernames are case-insensitive; group names are not (as in Cognito)."""

    @abstractmethod
    def register(self, username: str, email: str, password: str, *, confirmed: bool) -> User:
        """A new user; `confirmed` skips the confirmation code (local stack, admin CLI).
        Conflict `username_taken` when the name is in use."""

    @abstractmethod
    def confirm(self, username: str, code: str) -> None:
        """BadRequest `invalid_code`, the same answer for an unknown user, a wrong or expired
        code and an account confirmed already (it does not tell which usernames exist)."""

    @abstractmethod
    def login(self, username: str, password: str) -> Tokens:
        """Unauthorized `invalid_credentials` (same answer for unknown users), Forbidden
        `not_confirmed`, TooManyRequests `too_many_attempts` (with Retry-After)."""

    @abstractmethod
    def refresh(self, refresh_token: str) -> Tokens:
        """Fresh id and access tokens; Unauthorized `invalid_refresh_token`. The refresh token
        returned may differ from the one given (the local service rotates it)."""

    @abstractmethod
    def logout(self, access_token: str) -> None:
        """End the sign-in the (already verified) access token belongs to: its refresh token
        stops working."""

    @abstractmethod
    def change_password(self, username: str, access_token: str, old_password: str,
                        new_password: str) -> None:
        """Set a new password for the signed-in user (the access token is theirs, verified)
        after checking the old one: Unauthorized `wrong_password` (throttled as sign-ins are),
        BadRequest `weak_password`. Every other sign-in of the user ends (where the provider
        can end them alone; Cognito cannot, see its implementation)."""

    @abstractmethod
    def reset_password(self, username: str, new_password: str) -> None:
        """The operator's recovery for a forgotten password: set it without the old one, and
        end every sign-in of the user (its refresh tokens stop working). NotFound
        `user_not_found`, BadRequest `weak_password`."""

    @abstractmethod
    def is_revoked(self, claims: dict) -> bool:
        """Whether verified token claims belong to a sign-in that has ended (logout, deleted
        user). Called on every authenticated request, so it must be cheap."""

    @abstractmethod
    def describe(self, username: str) -> User:
        """The user with their groups; NotFound `user_not_found`."""

    @abstractmethod
    def describe_by_id(self, user_id: str) -> User:
        """The user whose id (a token's `sub`) this is, with their groups; NotFound
        `user_not_found`."""

    @abstractmethod
    def list_users(self, limit: int, cursor: str | None) -> UserPage:
        """A page of users; BadRequest `invalid_cursor` for a cursor not handed out here."""

    @abstractmethod
    def delete_user(self, username: str) -> None:
        """NotFound `user_not_found`."""

    @abstractmethod
    def list_groups(self) -> list[Group]:
        """Every group, by name."""

    @abstractmethod
    def create_group(self, name: str, description: str) -> Group:
        """Conflict `group_exists`."""

    @abstractmethod
    def delete_group(self, name: str) -> None:
        """NotFound `group_not_found`; members lose the group."""

    @abstractmethod
    def set_membership(self, group: str, username: str, member: bool) -> None:
        """Add or remove (removing a non-member is fine). NotFound `group_not_found` or
        `user_not_found`."""

    @abstractmethod
    def group_members(self, group: str) -> list[str]:
        """Usernames, sorted; NotFound `group_not_found`."""

    @abstractmethod
    def groups_of(self, username: str) -> list[str]:
        """Group names, sorted; NotFound `user_not_found`."""

    def user_exists(self, user_id: str) -> bool:
        """Whether the account with this id is still there (a deleted owner's shares and links
        stop granting)."""
        try:
            self.describe_by_id(user_id)
        except errors.NotFound:
            return False
        return True

    @abstractmethod
    def group_created(self, name: str) -> float | None:
        """When the group of that name was created (Unix seconds, with the fraction the provider
        keeps), None when there is none: a grant to a group is good only for the group that
        existed when it was made (a group deleted and made again within a second is another)."""

    def jwks(self) -> dict | None:
        """The public signing keys, where this provider publishes them itself (None: the
        provider serves its own JWKS URL, as Cognito does)."""
        return None
