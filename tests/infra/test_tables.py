"""Translating schema table declarations into DynamoDB tables, on tables that exist only here."""
from __future__ import annotations

import pytest
from cloudstrype.metadata import schema

SESSIONS = schema.Table(
    "test-upload-sessions", hash_key="session_id", range_key="part", expires="expires_at",
    fields={"session_id": schema.STR, "part": schema.INT, "owner": schema.STR,
            "created": schema.INT, "digest": schema.STR, "size": schema.INT,
            "blob": schema.BYTES, "expires_at": schema.INT},
    indexes=(schema.Index("by-owner", "owner", "created"), schema.Index("by-digest", "digest")))
PLAIN = schema.Table("test-plain", hash_key="id", fields={"id": schema.STR})
LOCAL = schema.Table("test-local-users", hash_key="name", fields={"name": schema.STR},
                     local_only=True)


def _synth(tables, prefix="pre-"):
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.constructs.data import Tables

    stack = cdk.Stack(cdk.App())
    Tables(stack, "Tables", tables=tables, prefix=prefix)
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def tables() -> dict[str, dict]:
    body = _synth([SESSIONS, PLAIN, LOCAL]).to_json()
    return {r["Properties"]["TableName"]: r["Properties"] for r in body["Resources"].values()
            if r["Type"] == "AWS::DynamoDB::Table"}


def test_names_carry_the_prefix_and_local_only_tables_are_left_out(tables):
    assert set(tables) == {"pre-test-upload-sessions", "pre-test-plain"}


def test_keys_with_their_types(tables):
    props = tables["pre-test-upload-sessions"]
    assert props["KeySchema"] == [{"AttributeName": "session_id", "KeyType": "HASH"},
                                  {"AttributeName": "part", "KeyType": "RANGE"}]
    definitions = {d["AttributeName"]: d["AttributeType"] for d in props["AttributeDefinitions"]}
    # only key attributes (of the table and its indexes) are defined; DynamoDB is schemaless
    assert definitions == {"session_id": "S", "part": "N", "owner": "S", "created": "N",
                           "digest": "S"}
    assert tables["pre-test-plain"]["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]


def test_global_indexes_with_whole_items(tables):
    indexes = {i["IndexName"]: i for i in
               tables["pre-test-upload-sessions"]["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"by-owner", "by-digest"}
    assert indexes["by-owner"]["KeySchema"] == [{"AttributeName": "owner", "KeyType": "HASH"},
                                                {"AttributeName": "created", "KeyType": "RANGE"}]
    assert indexes["by-digest"]["KeySchema"] == [{"AttributeName": "digest", "KeyType": "HASH"}]
    for index in indexes.values():
        assert index["Projection"] == {"ProjectionType": "ALL"}
        assert "ProvisionedThroughput" not in index
    assert "GlobalSecondaryIndexes" not in tables["pre-test-plain"]


def test_ttl_only_where_the_table_expires(tables):
    assert tables["pre-test-upload-sessions"]["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at", "Enabled": True}
    assert "TimeToLiveSpecification" not in tables["pre-test-plain"]


def test_every_table_on_demand_with_point_in_time_recovery(tables):
    assert len(tables) == 2
    for props in tables.values():
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert "ProvisionedThroughput" not in props


def test_one_table_declared_twice_is_refused():
    twin = schema.Table("test-plain", hash_key="other", fields={"other": schema.STR})
    with pytest.raises(Exception, match="test-plain is declared twice"):
        _synth([PLAIN, twin])
