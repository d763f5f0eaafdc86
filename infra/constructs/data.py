"""Where user data lives: the DynamoDB tables, the KMS key that protects user keys, and the
staging bucket that carries share bytes between functions and array members.

Tables are not declared here: each one is translated from a pynamodb model registered with
`cloudstrype.db` (keys, attribute types, secondary indexes with their projections, TTL), the same
schema `Model.create_table` gives the local stack.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct
from pynamodb.models import Model

_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
_PROJECTIONS = {
    "ALL": dynamodb.ProjectionType.ALL,
    "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY,
    "INCLUDE": dynamodb.ProjectionType.INCLUDE,
}

# Share bytes only pass through staging (presigned PUT/GET); nothing there outlives a day.
STAGING_EXPIRY = Duration.days(1)


@dataclass
class IndexSpec:
    name: str
    partition_key: dynamodb.Attribute
    sort_key: dynamodb.Attribute | None
    projection: dynamodb.ProjectionType
    non_key_attributes: list[str] | None = None


@dataclass
class TableSpec:
    """A table as the model declares it, in CDK terms."""
    table_name: str
    partition_key: dynamodb.Attribute
    sort_key: dynamodb.Attribute | None = None
    ttl_attribute: str | None = None
    global_indexes: list[IndexSpec] = field(default_factory=list)
    local_indexes: list[IndexSpec] = field(default_factory=list)


def table_spec(model: type[Model]) -> TableSpec:
    """Translate a pynamodb model into a TableSpec through the schema pynamodb itself builds."""
    schema = model._get_schema()
    definitions = list(schema["attribute_definitions"])
    for index_schema in schema["global_secondary_indexes"] + schema["local_secondary_indexes"]:
        definitions += index_schema["attribute_definitions"]
    types = {d["AttributeName"]: d["AttributeType"] for d in definitions}

    def keys(key_schema) -> tuple[dynamodb.Attribute, dynamodb.Attribute | None]:
        by_type = {k["KeyType"]: k["AttributeName"] for k in key_schema}
        if "HASH" not in by_type:
            raise ValueError(f"{model.__name__} declares no hash key")

        def attribute(name):
            return dynamodb.Attribute(name=name, type=_ATTRIBUTE_TYPES[types[name]])
        return attribute(by_type["HASH"]), attribute(by_type["RANGE"]) if "RANGE" in by_type \
            else None

    def index(index_schema) -> IndexSpec:
        partition, sort = keys(index_schema["key_schema"])
        projection = index_schema["projection"]
        return IndexSpec(index_schema["index_name"], partition, sort,
                         _PROJECTIONS[projection["ProjectionType"]],
                         list(projection.get("NonKeyAttributes") or []) or None)

    partition, sort = keys(schema["key_schema"])
    return TableSpec(
        table_name=model.Meta.table_name,
        partition_key=partition,
        sort_key=sort,
        ttl_attribute=getattr(model.Meta, "ttl_attribute", None) or None,
        global_indexes=[index(i) for i in schema["global_secondary_indexes"]],
        local_indexes=[index(i) for i in schema["local_secondary_indexes"]],
    )


def _construct_id(model: type[Model]) -> str:
    return f"{model.__name__}Table"


class Tables(Construct):
    """One on-demand table with point-in-time recovery per registered pynamodb model."""

    def __init__(self, scope: Construct, construct_id: str, *, models: Iterable[type[Model]]):
        super().__init__(scope, construct_id)
        self.by_model: dict[type[Model], dynamodb.Table] = {}
        owners: dict[str, str] = {}
        for model in models:
            spec = table_spec(model)
            if spec.table_name in owners:
                raise ValueError(f"{model.__name__} and {owners[spec.table_name]} both declare "
                                 f"the table {spec.table_name}; each model needs its own table.")
            owners[spec.table_name] = model.__name__
            table = dynamodb.Table(
                self, _construct_id(model),
                table_name=spec.table_name,
                partition_key=spec.partition_key,
                sort_key=spec.sort_key,
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True),
                time_to_live_attribute=spec.ttl_attribute,
                # User data: a stack update or deletion never drops a table.
                removal_policy=RemovalPolicy.RETAIN,
            )
            for gsi in spec.global_indexes:
                table.add_global_secondary_index(
                    index_name=gsi.name, partition_key=gsi.partition_key, sort_key=gsi.sort_key,
                    projection_type=gsi.projection, non_key_attributes=gsi.non_key_attributes)
            for lsi in spec.local_indexes:
                table.add_local_secondary_index(
                    index_name=lsi.name, sort_key=lsi.sort_key, projection_type=lsi.projection,
                    non_key_attributes=lsi.non_key_attributes)
            self.by_model[model] = table

    @property
    def all(self) -> list[dynamodb.Table]:
        return list(self.by_model.values())

    def grant_read_write(self, grantee: iam.IGrantable) -> None:
        for table in self.all:
            table.grant_read_write_data(grantee)


class DataStore(Construct):
    """Tables + the user-key KMS key + the staging bucket."""

    def __init__(self, scope: Construct, construct_id: str, *,
                 models: Iterable[type[Model]]) -> None:
        super().__init__(scope, construct_id)
        self.tables = Tables(self, "Tables", models=models)
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

    def grant_data_access(self, grantee: iam.IGrantable) -> None:
        """Tables read/write, encrypt/decrypt/generate data keys, staging read/write."""
        self.tables.grant_read_write(grantee)
        self.key.grant_encrypt_decrypt(grantee)
        self.staging_bucket.grant_read_write(grantee)
