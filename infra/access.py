"""What each service's functions may touch in AWS, declared once.

The stack grants exactly this (infra/stack.py `_grant_service`); tests/infra/test_access.py
reads every function's IAM policies from the synthesized template and compares them with it.
It is derived from the code by reading it, not yet checked against the code by a test: static
import analysis cannot tell the services apart (every app's import closure, meta's and auth's
included, reaches every store module through cloudstrype.api), so that check needs the handlers
run over moto with table and AWS calls recorded per service (open work).

Tables are named by their `cloudstrype.metadata.schema` names. Everything a service may touch
beyond its tables:
  kms              KMS actions on the user-key key (GenerateDataKey makes a user's key, Decrypt
                   unwraps it; nothing ever calls Encrypt)
  staging          the staging bucket: READ, or WRITE (presigned PUT/GET for members; a
                   presigned URL carries the rights of the role that signs it)
  oauth_secrets    read the OAuth client secrets (Secrets Manager), needed to refresh a
                   provider's tokens
  cognito          Cognito admin actions on the user pool (sign-up, sign-in and refresh are
                   public client calls and need none)
  manage_connections  post to / drop a member's WebSocket connection

The auth service holds no data-plane rights at all: no table, no key, no bucket, no secret.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

READ = "read"
WRITE = "write"     # includes read

# What the auth service calls with its own role (cloudstrype.identity.cognito).
COGNITO_ADMIN_ACTIONS = (
    "AdminGetUser", "AdminConfirmSignUp", "AdminDeleteUser", "AdminUserGlobalSignOut",
    "AdminListGroupsForUser", "AdminAddUserToGroup", "AdminRemoveUserFromGroup", "ListUsers",
    "ListUsersInGroup", "ListGroups", "GetGroup", "CreateGroup", "DeleteGroup",
)
# What sharing reads of the user pool (identity.cognito describe, groups_of, list_groups,
# and user_exists / describe_by_id: a share's owner and grantees by id, a filtered listing).
SHARING_COGNITO_ACTIONS = ("AdminGetUser", "AdminListGroupsForUser", "ListGroups", "ListUsers",
                           "GetGroup")
# Cognito operations of the public app client: IAM does not authorize them.
COGNITO_PUBLIC_OPERATIONS = ("SignUp", "ConfirmSignUp", "InitiateAuth", "GlobalSignOut",
                             "ChangePassword", "RevokeToken")

KMS_USER_KEYS = ("GenerateDataKey", "Decrypt")


@dataclass(frozen=True)
class ServiceAccess:
    tables: Mapping[str, str] = field(default_factory=dict)
    kms: tuple[str, ...] = ()
    staging: str | None = None
    oauth_secrets: bool = False
    cognito: tuple[str, ...] = ()
    manage_connections: bool = False

    def table_names(self, mode: str | None = None) -> set[str]:
        return {name for name, granted in self.tables.items()
                if mode is None or granted == mode}


# The chunk pipeline: every service that stores, reads, repairs or deletes chunks runs it in
# process (filesystem -> chunk -> cloud | array), with the users' keys, their storages and the
# array members that hold shares.
_PIPELINE = {
    "chunks": WRITE, "placements": WRITE, "pending-deletes": WRITE,
    "storages": WRITE, "user-keys": WRITE,
    "members": WRITE, "member-connections": WRITE, "member-requests": WRITE,
    # Each stored chunk is counted against its owner's quota (cloudstrype.quota).
    "usage": WRITE,
}
_PIPELINE_RIGHTS = dict(kms=KMS_USER_KEYS, staging=WRITE, oauth_secrets=True,
                        manage_connections=True)

SERVICES: dict[str, ServiceAccess] = {
    # Health, the OpenAPI document, the public configuration: nothing.
    "meta": ServiceAccess(),
    # Identity lives in Cognito only.
    "auth": ServiceAccess(cognito=COGNITO_ADMIN_ACTIONS),
    # Storages and their OAuth connection; draining moves chunks (the pipeline).
    "cloud": ServiceAccess(tables={**_PIPELINE, "oauth-states": WRITE}, **_PIPELINE_RIGHTS),
    "chunk": ServiceAccess(tables=dict(_PIPELINE), **_PIPELINE_RIGHTS),
    # Members, their connections and requests; the WebSocket handlers too.
    "array": ServiceAccess(tables=dict(_PIPELINE), **_PIPELINE_RIGHTS),
    # The file tree on top of the pipeline; shares and links (cloudstrype.sharing), which look
    # up a recipient by username and a caller's groups live in the user pool.
    "filesystem": ServiceAccess(
        tables={**_PIPELINE, "nodes": WRITE, "entries": WRITE, "versions": WRITE,
                "uploads": WRITE, "upload-parts": WRITE, "profiles": WRITE,
                # Contents stored once (pipeline.chunk_store BLOBS): only the tree's uploads,
                # deletes, trash and pack compaction use them.
                "blobs": WRITE,
                "shares": WRITE, "links": WRITE, "link-hits": WRITE},
        cognito=SHARING_COGNITO_ACTIONS, **_PIPELINE_RIGHTS),
}


def of(service: str) -> ServiceAccess:
    try:
        return SERVICES[service]
    except KeyError:
        raise KeyError(f"infra/access.py declares no access for the service {service!r}: "
                       f"add it to SERVICES") from None
