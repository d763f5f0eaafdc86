"""The OAuth client secrets of the cloud providers, kept in Secrets Manager (never in env vars).

The secret holds one JSON object whose keys are the environment names of the secret settings
(`CLOUDSTRYPE_DROPBOX_CLIENT_SECRET`, ...). The stack creates it with a placeholder value and never
writes it again, so values put there with `aws secretsmanager put-secret-value` survive deploys;
or the stack uses an existing secret whose ARN is given as the `oauthSecretArn` context value.
Functions find it through the ARN in `OAUTH_SECRETS_ARN_ENV`.
"""
from __future__ import annotations

import dataclasses

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from cloudstrype.settings import Settings
from constructs import Construct

OAUTH_SECRETS_ARN_ENV = "CLOUDSTRYPE_OAUTH_SECRETS_ARN"


def secret_setting_names() -> list[str]:
    """Environment names of the settings that must never travel in environment variables."""
    return [f.metadata["env"] for f in dataclasses.fields(Settings) if f.metadata.get("secret")]


class OAuthAppSecrets(Construct):
    def __init__(self, scope: Construct, construct_id: str, *,
                 existing_secret_arn: str | None = None) -> None:
        super().__init__(scope, construct_id)
        if existing_secret_arn:
            self.secret = secretsmanager.Secret.from_secret_complete_arn(
                self, "Secret", existing_secret_arn)
        else:
            self.secret = secretsmanager.Secret(
                self, "Secret",
                description="Cloudstrype OAuth app secrets: a JSON object with the keys "
                            + ", ".join(secret_setting_names()),
                # A JSON object from the start (the generated key is a placeholder); the
                # template never changes with the values, so a deploy does not reset them.
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template="{}", generate_string_key="placeholder",
                    exclude_punctuation=True),
                removal_policy=RemovalPolicy.RETAIN,
            )

    @property
    def arn(self) -> str:
        return self.secret.secret_arn

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        return self.secret.grant_read(grantee)
