"""The local stack's moto server: DynamoDB transactions stay all-or-nothing with the cheaper
rollback, snapshots survive a restart, and a data directory with another table layout is refused
in words."""
from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.local import aws
from tests.support import cli, free_port

TABLE = "speed-test"


def _reset_dynamodb():
    # moto's backends are process-wide; each test starts from an empty DynamoDB.
    from moto.backends import get_backend
    get_backend("dynamodb").reset()


@pytest.fixture()
def moto_server(tmp_path, monkeypatch):
    for name, value in aws.LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    _reset_dynamodb()
    server = aws.MotoServer(tmp_path)
    server.start()
    yield server
    server.stop()
    _reset_dynamodb()


def _client(server):
    return boto3.client("dynamodb", endpoint_url=server.endpoint, region_name=aws.REGION)


def _table(client):
    client.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])


def _item(client, pk, sk):
    return client.get_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": sk}},
                           ConsistentRead=True).get("Item")


def test_failed_transaction_leaves_every_item_as_it_was(moto_server):
    client = _client(moto_server)
    _table(client)
    client.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "sk": {"S": "1"}, "v": {"S": "old"}})
    client.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "sk": {"S": "3"}, "v": {"S": "gone?"}})
    client.put_item(TableName=TABLE, Item={"pk": {"S": "b"}, "sk": {"S": "1"}, "v": {"S": "x"}})
    with pytest.raises(ClientError) as failure:
        client.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "a"}, "sk": {"S": "1"},
                                                  "v": {"S": "new"}}}},
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "a"}, "sk": {"S": "2"},
                                                  "v": {"S": "created"}}}},
            {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "a"}, "sk": {"S": "3"}},
                        "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"S": "changed"}}}},
            # Fails: the item exists, so the whole transaction must be undone.
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "b"}, "sk": {"S": "1"},
                                                  "v": {"S": "y"}},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
    assert failure.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert _item(client, "a", "1")["v"] == {"S": "old"}
    assert _item(client, "a", "2") is None
    assert _item(client, "a", "3")["v"] == {"S": "gone?"}
    assert _item(client, "b", "1")["v"] == {"S": "x"}


def test_successful_transaction_applies_every_item(moto_server):
    client = _client(moto_server)
    _table(client)
    client.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "sk": {"S": "1"}, "v": {"S": "old"}})
    client.transact_write_items(TransactItems=[
        {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "a"}, "sk": {"S": "2"},
                                              "v": {"S": "two"}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}}}},
    ])
    assert _item(client, "a", "1") is None
    assert _item(client, "a", "2")["v"] == {"S": "two"}


def test_transactions_do_not_copy_the_table(moto_server):
    from moto.backends import get_backend

    client = _client(moto_server)
    _table(client)
    tables = get_backend("dynamodb")["123456789012"][aws.REGION].tables
    before = tables[TABLE]
    with pytest.raises(ClientError):
        client.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "a"}, "sk": {"S": "1"}},
                     "ConditionExpression": "attribute_exists(pk)"}}])
    client.transact_write_items(TransactItems=[
        {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "a"}, "sk": {"S": "1"}}}}])
    # moto alone swaps in a deep copy of the whole table on every transaction's rollback path.
    assert tables[TABLE] is before
    assert _item(client, "a", "1") is not None


def test_state_survives_a_restart(tmp_path, monkeypatch):
    for name, value in aws.LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    _reset_dynamodb()
    first = aws.MotoServer(tmp_path)
    first.start()
    client = _client(first)
    _table(client)
    client.put_item(TableName=TABLE, Item={"pk": {"S": "kept"}, "sk": {"S": "1"}})
    first.stop()
    second = aws.MotoServer(tmp_path)
    second.start()
    try:
        assert _item(_client(second), "kept", "1") is not None
    finally:
        second.stop()
        _reset_dynamodb()


def test_a_data_directory_with_an_older_table_layout_is_refused_in_words(tmp_path,
                                                                          monkeypatch):
    from cloudstrype import db
    for name, value in aws.LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    _reset_dynamodb()
    old = aws.MotoServer(tmp_path)
    old.start()
    try:
        _client(old).create_table(
            TableName=db.table_name("versions"), BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "owner", "KeyType": "HASH"},
                       {"AttributeName": "version_key", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "owner", "AttributeType": "S"},
                                  {"AttributeName": "version_key", "AttributeType": "S"}])
    finally:
        old.stop()
        _reset_dynamodb()
    done = cli("serve", "--port", str(free_port()), "--data-dir", str(tmp_path), timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "older Cloudstrype" in done.stderr and "--data-dir" in done.stderr
    assert "Traceback" not in done.stderr


def test_queries_on_the_table_key_read_one_partition_in_order(moto_server):
    client = _client(moto_server)
    _table(client)
    for pk in ("a", "b", "c"):
        for sk in ("3", "1", "2", "10"):
            client.put_item(TableName=TABLE, Item={"pk": {"S": pk}, "sk": {"S": sk},
                                                   "v": {"S": f"{pk}{sk}"}})

    def query(**extra):
        pages = client.get_paginator("query").paginate(
            TableName=TABLE, KeyConditionExpression=extra.pop("condition", "pk = :p"),
            ExpressionAttributeValues={":p": {"S": "b"}, **extra.pop("values", {})}, **extra)
        return [item["sk"]["S"] for page in pages for item in page["Items"]]

    assert query() == ["1", "10", "2", "3"]
    assert query(ScanIndexForward=False) == ["3", "2", "10", "1"]
    assert query(condition="pk = :p AND begins_with(sk, :s)", values={":s": {"S": "1"}}) == \
        ["1", "10"]
    assert query(Limit=1) == ["1", "10", "2", "3"]      # page by page, nothing lost
    client.delete_item(TableName=TABLE, Key={"pk": {"S": "b"}, "sk": {"S": "2"}})
    assert query() == ["1", "10", "3"]
    assert client.query(TableName=TABLE, KeyConditionExpression="pk = :p",
                        ExpressionAttributeValues={":p": {"S": "zzz"}})["Items"] == []
