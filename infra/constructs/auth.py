"""The Cognito user pool, its public app client and the `admins` group.

Everything comes from `cloudstrype.auth.pool`, the declaration the local stack builds moto's pool
from too, so both stacks issue the same kind of tokens under the same rules.
"""
from __future__ import annotations

from typing import Iterable

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from cloudstrype.auth import pool as pool_spec
from constructs import Construct

# Cognito API flow name -> the CDK AuthFlow field. ALLOW_REFRESH_TOKEN_AUTH is always on in CDK.
_AUTH_FLOW_FIELDS = {
    "ALLOW_USER_PASSWORD_AUTH": "user_password",
    "ALLOW_USER_SRP_AUTH": "user_srp",
    "ALLOW_ADMIN_USER_PASSWORD_AUTH": "admin_user_password",
    "ALLOW_CUSTOM_AUTH": "custom",
    "ALLOW_USER_AUTH": "user",
}

# The scope Cognito puts into access tokens from InitiateAuth. Naming it on a method makes the
# REST API's Cognito authorizer accept access tokens (without scopes it only takes id tokens).
ACCESS_TOKEN_SCOPE = "aws.cognito.signin.user.admin"


def password_policy() -> cognito.PasswordPolicy:
    spec = pool_spec.PASSWORD_POLICY
    return cognito.PasswordPolicy(
        min_length=spec["MinimumLength"],
        require_uppercase=spec["RequireUppercase"],
        require_lowercase=spec["RequireLowercase"],
        require_digits=spec["RequireNumbers"],
        require_symbols=spec["RequireSymbols"],
    )


def auth_flows() -> cognito.AuthFlow:
    fields = {}
    for flow in pool_spec.CLIENT_AUTH_FLOWS:
        if flow == "ALLOW_REFRESH_TOKEN_AUTH":
            continue
        if flow not in _AUTH_FLOW_FIELDS:
            raise ValueError(f"cloudstrype.auth.pool.CLIENT_AUTH_FLOWS names {flow!r}, which the "
                             f"stack cannot map; known: {sorted(_AUTH_FLOW_FIELDS)}")
        fields[_AUTH_FLOW_FIELDS[flow]] = True
    return cognito.AuthFlow(**fields)


class UserDirectory(Construct):
    """User pool + app client (no secret) + `admins` group, and how functions verify tokens."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self, "UserPool",
            user_pool_name=pool_spec.POOL_NAME,
            self_sign_up_enabled=True,
            sign_in_aliases=cognito.SignInAliases(username=True),
            sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)),
            password_policy=password_policy(),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.client = self.user_pool.add_client(
            "Client",
            user_pool_client_name=pool_spec.CLIENT_NAME,
            generate_secret=False,
            auth_flows=auth_flows(),
            disable_o_auth=True,
            prevent_user_existence_errors=True,
            access_token_validity=Duration.minutes(pool_spec.ACCESS_TOKEN_MINUTES),
            id_token_validity=Duration.minutes(pool_spec.ID_TOKEN_MINUTES),
            refresh_token_validity=Duration.days(pool_spec.REFRESH_TOKEN_DAYS),
        )
        self.admins_group = self.user_pool.add_group(
            "AdminsGroup", group_name=pool_spec.ADMIN_GROUP,
            description="May manage users and groups")

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{Aws.REGION}.{Aws.URL_SUFFIX}/{self.user_pool.user_pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/.well-known/jwks.json"

    def grant_admin(self, grantee: iam.IGrantable, actions: Iterable[str]) -> iam.Grant:
        """Cognito actions (e.g. AdminGetUser) on the pool; infra/access.py names them."""
        return self.user_pool.grant(grantee, *[f"cognito-idp:{a}" for a in actions])
