"""moto's DynamoDB made to cost what DynamoDB's work costs, for the aws-emulated stack.

moto answers each query by reading and sorting every item of the table, and copies every table
a transaction touches (to roll back): a stack that serves a whole test session slows with each
item it keeps, until its requests pass the gateway's 29 s. DynamoDB does neither. Here a table
query reads its one partition, an index query scans unsorted (the query sorts what it keeps),
and a transaction checks every condition first, against the items as they were (as DynamoDB
does: one transaction never touches an item twice), then writes, keeping copies of only the
items it writes. Same answers: the metadata conformance suite (tests/metadata) holds the
DynamoDB engine on this stand-in to the stores' contract.
"""
from __future__ import annotations

import copy
import threading

_EVERY_ITEM = object()
_asked = threading.local()
_stock: dict = {}


def install() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    if _stock:
        return
    _stock.update(all_items=Table.all_items, query=Table.query,
                  transact=DynamoDBBackend.transact_write_items)
    Table.all_items, Table.query = _all_items, _query
    DynamoDBBackend.transact_write_items = _transact_write_items


def uninstall() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    if not _stock:
        return
    Table.all_items, Table.query = _stock["all_items"], _stock["query"]
    DynamoDBBackend.transact_write_items = _stock["transact"]
    _stock.clear()


def _all_items(table):
    key = getattr(_asked, "key", _EVERY_ITEM)
    if key is _EVERY_ITEM:
        return _stock["all_items"](table)
    if key is None:                     # an index query
        return [item for held in table.items.values()
                for item in (held.values() if table.range_key_attr else (held,))]
    held = table.items.get(key)         # .get: table.items is a defaultdict
    if held is None:
        return []
    return list(held.values()) if table.range_key_attr else [held]


def _query(table, hash_key, *args, **kwargs):
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    if hash_key is None and not index_name:
        return _stock["query"](table, hash_key, *args, **kwargs)
    _asked.key = None if index_name else hash_key
    try:
        return _stock["query"](table, hash_key, *args, **kwargs)
    finally:
        del _asked.key


def _transact_write_items(backend, transact_items: list[dict]) -> None:
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    planned, touched = [], set()
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        kind, op = next(iter(entry.items()))
        table = backend.get_table(op["TableName"])
        if kind == "Put":
            key = {name: op["Item"][name] for name in (table.hash_key_attr, table.range_key_attr)
                   if name is not None}
        else:
            key = op["Key"]
        once = (op["TableName"], str(dict(sorted(key.items()))))
        if once in touched:
            raise MultipleTransactionsException()
        touched.add(once)
        planned.append((kind, op, table, key))

    reasons, refused = [], False
    for _kind, op, _table, key in planned:
        current = backend.get_item(op["TableName"], key)
        condition = op.get("ConditionExpression")
        if condition is not None and not get_filter_expression(
                condition, op.get("ExpressionAttributeNames"),
                op.get("ExpressionAttributeValues")).expr(current):
            old = (current.to_json()["Attributes"] if current is not None and
                   op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None)
            reasons.append(("ConditionalCheckFailed", ConditionalCheckFailed().message, old))
            refused = True
        else:
            reasons.append((None, None, None))
    if refused:
        raise TransactionCanceledException(reasons)

    saved = [(table, *backend.get_keys_value(table, key),
              copy.deepcopy(backend.get_item(op["TableName"], key)))
             for _kind, op, table, key in planned if _kind != "ConditionCheck"]
    at = 0
    try:
        for at, (kind, op, _table, key) in enumerate(planned):  # noqa: B007 (read below)
            given = dict(condition_expression=op.get("ConditionExpression"),
                         expression_attribute_names=op.get("ExpressionAttributeNames"),
                         expression_attribute_values=op.get("ExpressionAttributeValues"))
            if kind == "Put":
                backend.put_item(op["TableName"], op["Item"], **given)
            elif kind == "Delete":
                backend.delete_item(op["TableName"], key, **given)
            elif kind == "Update":
                backend.update_item(op["TableName"], key,
                                    update_expression=op["UpdateExpression"], **given)
            elif kind != "ConditionCheck":
                raise ValueError("Unsupported transaction operation")
    except Exception as exc:
        for table, hash_key, range_key, old in reversed(saved):
            _put_back(table, hash_key, range_key, old)
        if isinstance(exc, (MultipleTransactionsException, MockValidationException)):
            raise
        reasons = [(None, None, None)] * len(planned)
        reasons[at] = (type(exc).__name__, str(exc), None)
        raise TransactionCanceledException(reasons) from exc


def _put_back(table, hash_key, range_key, old) -> None:
    if range_key is None:
        if old is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = old
    elif old is None:
        held = table.items.get(hash_key)
        if held is not None:
            held.pop(range_key, None)
    else:
        table.items[hash_key][range_key] = old
