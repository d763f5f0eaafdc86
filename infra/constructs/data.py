"""Where user data lives: the DynamoDB tables, the KMS key that protects user keys, and the
staging bucket that carries share bytes between functions and array members.

Tables are not declared here: each one is translated from its `cloudstrype.metadata.schema`
declaration (keys, sparse global indexes, expiry), the same declaration the DynamoDB engine and
the SQLite engine read.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from cloudstrype.metadata import schema
from constructs import Construct

_KEY_TYPES = {schema.STR: dynamodb.AttributeType.STRING,
              schema.INT: dynamodb.AttributeType.NUMBER}

# Share bytes only pass through staging (presigned PUT/GET); nothing there outlives a day.
STAGING_EXPIRY = Duration.days(1)


def _construct_id(table: schema.Table) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", table.name)) + \
        "Table"


class Tables(Construct):
    """One on-demand table with point-in-time recovery per declared table, except those only the
    local stack has (`local_only`)."""

    def __init__(self, scope: Construct, construct_id: str, *, tables: Iterable[schema.Table],
                 prefix: str):
        super().__init__(scope, construct_id)
        self.by_name: dict[str, dynamodb.Table] = {}
        for declared in tables:
            if declared.local_only:
                continue
            if declared.name in self.by_name:
                raise ValueError(f"the table {declared.name} is declared twice")

            def key(name: str | None, declared=declared) -> dynamodb.Attribute | None:
                return dynamodb.Attribute(name=name, type=_KEY_TYPES[declared.fields[name]]) \
                    if name else None

            table = dynamodb.Table(
                self, _construct_id(declared),
                table_name=prefix + declared.name,
                partition_key=key(declared.hash_key),
                sort_key=key(declared.range_key),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True),
                time_to_live_attribute=declared.expires,
                # User data: a stack update or deletion never drops a table.
                removal_policy=RemovalPolicy.RETAIN,
            )
            for index in declared.indexes:
                # Whole items, as the engine's query_index returns them.
                table.add_global_secondary_index(
                    index_name=index.name, partition_key=key(index.hash_key),
                    sort_key=key(index.range_key), projection_type=dynamodb.ProjectionType.ALL)
            self.by_name[declared.name] = table

    @property
    def all(self) -> list[dynamodb.Table]:
        return list(self.by_name.values())

    def grant(self, grantee: iam.IGrantable, tables: Mapping[str, str]) -> None:
        """`tables`: schema table name -> "read" or "write" (infra/access.py)."""
        for name, mode in tables.items():
            if name not in self.by_name:
                raise KeyError(f"no table {name!r} in the stack; known: {sorted(self.by_name)}")
            table = self.by_name[name]
            if mode == "write":
                table.grant_read_write_data(grantee)
            elif mode == "read":
                table.grant_read_data(grantee)
            else:
                raise ValueError(f"table {name}: mode must be read or write, not {mode!r}")


class DataStore(Construct):
    """Tables + the user-key KMS key + the staging bucket."""

    def __init__(self, scope: Construct, construct_id: str, *,
                 tables: Iterable[schema.Table], table_prefix: str) -> None:
        super().__init__(scope, construct_id)
        self.tables = Tables(self, "Tables", tables=tables, prefix=table_prefix)
        self.key = kms.Key(
            self, "UserKeys",
            description="Cloudstrype: wraps the per-user keys that wrap chunk data keys",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.staging_bucket = s3.Bucket(
            self, "StagingBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(
                id="expire-staged-shares",
                expiration=STAGING_EXPIRY,
                abort_incomplete_multipart_upload_after=STAGING_EXPIRY,
            )],
            # Members and browsers move share bytes with presigned URLs.
            cors=[s3.CorsRule(
                allowed_methods=[s3.HttpMethods.PUT, s3.HttpMethods.GET, s3.HttpMethods.HEAD],
                allowed_origins=["*"],
                allowed_headers=["*"],
                exposed_headers=["ETag", "Content-Length", "Content-Range"],
                max_age=3600,
            )],
        )

    def grant_key(self, grantee: iam.IGrantable, actions: Iterable[str]) -> None:
        """KMS actions (e.g. Decrypt) on the user-key key."""
        actions = [f"kms:{action}" for action in actions]
        if actions:
            self.key.grant(grantee, *actions)

    def grant_staging(self, grantee: iam.IGrantable, mode: str | None) -> None:
        """Only what cloudstrype.staging.s3 calls (get, put, delete an object; presigned GET
        and PUT carry the signer's rights), not CDK's grant_read_write (tagging, retention,
        legal hold, multipart abort). ListBucket stays: without it S3 answers a missing key
        with AccessDenied, not NoSuchKey, and a staged share that is not there yet would read
        as a failure."""
        if mode not in (None, "read", "write"):
            raise ValueError(f"staging: mode must be read or write, not {mode!r}")
        if mode is None:
            return
        objects = ["s3:GetObject"] + (["s3:PutObject", "s3:DeleteObject"] if mode == "write"
                                      else [])
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=objects, resources=[self.staging_bucket.arn_for_objects("*")]))
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[self.staging_bucket.bucket_arn]))
