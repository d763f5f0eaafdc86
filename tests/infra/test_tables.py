"""Translating pynamodb models into DynamoDB tables, on models that exist only in this test."""
from __future__ import annotations

import pytest
from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import (AllProjection, GlobalSecondaryIndex, IncludeProjection,
                              KeysOnlyProjection, LocalSecondaryIndex)
from pynamodb.models import Model


class ByOwner(GlobalSecondaryIndex):
    class Meta:
        index_name = "by-owner"
        projection = IncludeProjection(["size"])

    owner = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class ByDigest(GlobalSecondaryIndex):
    class Meta:
        index_name = "by-digest"
        projection = KeysOnlyProjection()

    digest = BinaryAttribute(hash_key=True, legacy_encoding=False)


class ByName(LocalSecondaryIndex):
    class Meta:
        index_name = "by-name"
        projection = AllProjection()

    session_id = UnicodeAttribute(hash_key=True, attr_name="pk")
    name = UnicodeAttribute(range_key=True)


class UploadSession(Model):
    """Not registered with cloudstrype.db: it exists for this test only."""

    class Meta:
        table_name = "test-upload-sessions"
        ttl_attribute = "expires_at"

    session_id = UnicodeAttribute(hash_key=True, attr_name="pk")   # stored as "pk"
    part = NumberAttribute(range_key=True)
    owner = UnicodeAttribute()
    created = NumberAttribute()
    digest = BinaryAttribute(legacy_encoding=False)
    name = UnicodeAttribute()
    size = NumberAttribute()
    by_owner = ByOwner()
    by_digest = ByDigest()
    by_name = ByName()


class Plain(Model):
    class Meta:
        table_name = "test-plain"

    id = UnicodeAttribute(hash_key=True)


def _synth(models):
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.constructs.data import Tables

    stack = cdk.Stack(cdk.App())
    Tables(stack, "Tables", models=models)
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def tables() -> dict[str, dict]:
    body = _synth([UploadSession, Plain]).to_json()
    return {r["Properties"]["TableName"]: r["Properties"] for r in body["Resources"].values()
            if r["Type"] == "AWS::DynamoDB::Table"}


def test_keys_use_the_stored_attribute_names_and_types(tables):
    props = tables["test-upload-sessions"]
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "part", "KeyType": "RANGE"}]
    definitions = {d["AttributeName"]: d["AttributeType"] for d in props["AttributeDefinitions"]}
    assert definitions == {"pk": "S", "part": "N", "owner": "S", "created": "N", "digest": "B",
                           "name": "S"}


def test_global_indexes_with_their_keys_and_projections(tables):
    indexes = {i["IndexName"]: i for i in tables["test-upload-sessions"]["GlobalSecondaryIndexes"]}
    assert indexes["by-owner"]["KeySchema"] == [{"AttributeName": "owner", "KeyType": "HASH"},
                                                {"AttributeName": "created", "KeyType": "RANGE"}]
    assert indexes["by-owner"]["Projection"] == {"ProjectionType": "INCLUDE",
                                                 "NonKeyAttributes": ["size"]}
    assert indexes["by-digest"]["KeySchema"] == [{"AttributeName": "digest", "KeyType": "HASH"}]
    assert indexes["by-digest"]["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_local_index(tables):
    (index,) = tables["test-upload-sessions"]["LocalSecondaryIndexes"]
    assert index["IndexName"] == "by-name"
    assert index["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "name", "KeyType": "RANGE"}]
    assert index["Projection"] == {"ProjectionType": "ALL"}


def test_ttl_only_where_the_model_declares_it(tables):
    assert tables["test-upload-sessions"]["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at", "Enabled": True}
    assert "TimeToLiveSpecification" not in tables["test-plain"]


def test_every_table_on_demand_with_point_in_time_recovery(tables):
    assert len(tables) == 2
    for props in tables.values():
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert "ProvisionedThroughput" not in props


def test_two_models_on_one_table_are_refused():
    class Twin(Model):
        class Meta:
            table_name = "test-plain"

        other = UnicodeAttribute(hash_key=True)

    with pytest.raises(Exception, match="both declare the table test-plain"):
        _synth([Plain, Twin])
