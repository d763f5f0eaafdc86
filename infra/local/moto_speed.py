"""Two costs of moto's server that grow with the data, removed for the local stack.

moto is a test double; the local stack uses it as a long-running database, where two of its
shortcuts turn into the bottleneck (measured with 400 small-file uploads: the time per upload
doubled and kept growing):

* ``DynamoDBBackend.transact_write_items`` deep-copies every table a transaction touches, all
  items included, so that it can roll back. Every tree write is a transaction, so each one cost
  O(size of the table). Here the rollback copies only the items the transaction names and puts
  exactly those back, which is what DynamoDB's all-or-nothing promise needs.
* ``Table.query`` on a table's own key walks and sorts every item of the table to find one
  partition, so each query cost O(n log n) in the table's size (listing a file's versions in a
  table of 10,000 files took longer than the upload itself). Here a query on the table's key
  looks at that partition's items only; queries on indexes are left as moto does them.
* the server finds the service of each request by listing moto's package folder on disk
  (``list_of_moto_modules``); the list never changes while the process runs, so it is kept.

Both are applied once, before the moto server starts; nothing here changes what an API call
answers. The local stack also runs transactions one at a time (see ``aws.MotoServer``), so a
rollback never undoes a write that another request made in between.
"""
from __future__ import annotations

import copy
import functools
import threading
from typing import Any

_applied = False
# The table and partition a running Table.query on the table's own key is about (per thread).
_query_scope = threading.local()


class _CopyKeepingTables:
    """Stands in for the ``copy`` module inside moto's DynamoDB models: a Table is not copied
    (the transaction wrapper below keeps the items it needs), anything else is."""

    def __init__(self, table_type: type):
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: dict | None = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _item_key(backend, op_type: str, op: dict) -> tuple[str, dict] | None:
    table_name = op.get("TableName")
    if not table_name or table_name not in backend.tables:
        return None
    if op_type == "Put":
        table = backend.tables[table_name]
        attrs = op.get("Item") or {}
        if table.hash_key_attr not in attrs:
            return None
        key = {table.hash_key_attr: attrs[table.hash_key_attr]}
        if table.range_key_attr is not None:
            if table.range_key_attr not in attrs:
                return None
            key[table.range_key_attr] = attrs[table.range_key_attr]
        return table_name, key
    key = op.get("Key")
    return (table_name, key) if isinstance(key, dict) else None


def _items_before(backend, transact_items: list[dict]) -> list[tuple[str, dict, dict | None]]:
    saved = []
    for entry in transact_items:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        op_type, op = next(iter(entry.items()))
        if op_type not in ("Put", "Update", "Delete") or not isinstance(op, dict):
            continue
        found = _item_key(backend, op_type, op)
        if found is None:
            continue
        table_name, key = found
        try:
            current = backend.get_item(table_name, key)
        except Exception:       # a malformed key: moto's own call reports it
            continue
        saved.append((table_name, copy.deepcopy(key),
                      copy.deepcopy(current.to_json()["Attributes"]) if current else None))
    return saved


def _restore(backend, saved: list[tuple[str, dict, dict | None]]) -> None:
    for table_name, key, attrs in reversed(saved):
        if attrs is None:
            backend.delete_item(table_name, key)
        else:
            backend.put_item(table_name, attrs)


def apply() -> None:
    global _applied
    if _applied:
        return
    from moto import backends
    from moto.dynamodb import models as dynamodb_models
    from moto.dynamodb.models.table import Table

    dynamodb_models.copy = _CopyKeepingTables(Table)
    original = dynamodb_models.DynamoDBBackend.transact_write_items

    @functools.wraps(original)
    def transact_write_items(self, transact_items):
        saved = _items_before(self, transact_items)
        try:
            return original(self, transact_items)
        except Exception:
            _restore(self, saved)
            raise

    dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items

    all_items = Table.all_items
    query = Table.query

    @functools.wraps(all_items)
    def partition_items(self):
        scope = getattr(_query_scope, "partition", None)
        if scope is None or scope[0] is not self:
            return all_items(self)
        # The same order moto's all_items gives, within one partition.
        return sorted(self.items.get(scope[1], {}).values(), key=lambda item: item.range_key)

    @functools.wraps(query)
    def partition_query(self, hash_key, *args, **kwargs):
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name or hash_key is None or not self.range_key_attr:
            return query(self, hash_key, *args, **kwargs)
        _query_scope.partition = (self, hash_key)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _query_scope.partition = None

    Table.all_items = partition_items
    Table.query = partition_query

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    _applied = True
