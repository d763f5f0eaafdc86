"""The DynamoDB engine (the AWS deployment): the Engine interface through pynamodb.

Each schema.Table becomes a generated pynamodb Model (`model_for`); items cross this module as
plain dicts. The engine-neutral promises of engine.py that DynamoDB does not keep on its own are
made here: expired items are hidden (TTL deletes lazily, up to days late) and treated as absent by
conditions, cursors are opaque and bound to their query, transactions report which operation
failed.
"""
from __future__ import annotations

import functools
import hashlib
import json
import operator
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Callable, Iterable

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    NumberSetAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from cloudstrype.metadata import schema
from cloudstrype.metadata.engine import (
    MAX_TRANSACTION_ITEMS,
    BadCursor,
    Change,
    Check,
    Condition,
    ConditionFailed,
    Delete,
    Engine,
    MetadataError,
    Operation,
    Page,
    Put,
    Update,
    decode_cursor,
    encode_cursor,
)

_ATTRIBUTES: dict[str, Callable[..., Any]] = {
    schema.STR: UnicodeAttribute,
    schema.INT: NumberAttribute,
    schema.BOOL: BooleanAttribute,
    schema.BYTES: functools.partial(BinaryAttribute, legacy_encoding=False),
    schema.JSON: JSONAttribute,
    schema.INT_SET: NumberSetAttribute,
    schema.STR_SET: UnicodeSetAttribute,
}
_SET_TYPES = (schema.INT_SET, schema.STR_SET)
# Errors that say "try again later", not "you asked for something wrong".
_UNAVAILABLE = {"ProvisionedThroughputExceededException", "ThrottlingException",
                "RequestLimitExceeded", "InternalServerError", "ServiceUnavailable",
                "LimitExceededException", "TransactionInProgressException"}
_CONFLICT_RETRIES = 3
# Independent transactions of one transact_each in flight at once (DynamoDB's clients are safe
# to share between threads).
_transactions = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dynamodb-transact")


def _py(field_name: str) -> str:
    # Python names are prefixed so a field may be called `get`, `delete`, `count`... without
    # shadowing Model's methods; DynamoDB sees the field's own name (attr_name).
    return "f_" + field_name


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None


@functools.cache
def shared_connection(region: str, host: str | None) -> Connection:
    # One per process and endpoint: a new Connection means a new botocore client, which costs
    # 50-500 ms (endpoint rules parsed again). Every model and every transaction uses this one.
    return Connection(region=region, host=host)


_models: dict[tuple, tuple[schema.Table, type[Model]]] = {}
_models_lock = threading.Lock()


def model_for(table: schema.Table, prefix: str, region: str | None = None,
              host: str | None = None) -> type[Model]:
    """The pynamodb Model of a table (generated once per prefix and endpoint)."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") \
        or "us-east-1"
    host = host if host is not None else _endpoint()
    key = (prefix, table.name, region, host)
    known = _models.get(key)
    if known is None:
        with _models_lock:
            known = _models.get(key)
            if known is None:
                known = _models[key] = (table, _build_model(table, prefix + table.name,
                                                            region, host))
    if known[0] is not table and known[0] != table:
        raise ValueError(f"table {table.name} is declared twice, differently")
    return known[1]


def _build_model(table: schema.Table, table_name: str, region: str,
                 host: str | None) -> type[Model]:
    keys = {table.hash_key, table.range_key}
    attributes: dict[str, Any] = {
        _py(name): _ATTRIBUTES[kind](attr_name=name, hash_key=name == table.hash_key,
                                     range_key=name == table.range_key, null=name not in keys)
        for name, kind in table.fields.items()}
    for index in table.indexes:
        index_attributes = {
            _py(name): _ATTRIBUTES[table.fields[name]](attr_name=name, hash_key=is_hash,
                                                       range_key=not is_hash)
            for name, is_hash in ((index.hash_key, True), (index.range_key, False)) if name}
        meta = type("Meta", (), {"index_name": index.name, "projection": AllProjection()})
        attributes["i_" + index.name] = type(f"Index_{index.name}", (GlobalSecondaryIndex,),
                                             {"Meta": meta, **index_attributes})()
    attributes["Meta"] = type("Meta", (), {"table_name": table_name, "region": region,
                                           "host": host, "billing_mode": "PAY_PER_REQUEST"})
    model = type(f"Model_{table.name}", (Model,), attributes)
    # Route the model through the shared connection (see shared_connection), telling it the
    # table's key schema so no DescribeTable call is ever needed.
    table_connection = model._get_connection()
    shared = shared_connection(region, host)
    try:
        shared.add_meta_table(table_connection.connection.get_meta_table(table_name))
    except ValueError:
        pass                                    # the same table, already known
    table_connection.connection = shared
    return model


def _translate(error: Exception) -> MetadataError:
    """A pynamodb/botocore error as the engine's own."""
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, ClientError):
        code = cause.response.get("Error", {}).get("Code", "")
        message = cause.response.get("Error", {}).get("Message", "")
        if code == "ConditionalCheckFailedException":
            return ConditionFailed()
        if code in _UNAVAILABLE:
            return MetadataError(f"DynamoDB is busy or unavailable ({code}); try again shortly.")
        if code == "ResourceNotFoundException":
            return MetadataError(f"A DynamoDB table is missing ({message}): deploy the stack "
                                 f"(or create the tables) for this table prefix.")
        return MetadataError(f"DynamoDB refused the request ({code}: {message}).")
    if isinstance(cause, BotoCoreError):
        return MetadataError(f"DynamoDB cannot be reached ({cause}); try again shortly.")
    return MetadataError(f"DynamoDB request failed: {error}")


@contextmanager
def _errors():
    try:
        yield
    except (PynamoDBException, ClientError, BotoCoreError) as error:
        raise _translate(error) from error


def _fingerprint(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, default=repr).encode()
    return hashlib.sha256(raw).hexdigest()[:20]


class DynamoEngine(Engine):
    name = "dynamodb"

    def __init__(self, prefix: str, region: str, host: str | None = None):
        self.prefix = prefix
        self.region = region
        self.host = host if host is not None else _endpoint()
        self._connection = shared_connection(region, self.host)

    # -- helpers -------------------------------------------------------------------------------

    def _model(self, table: schema.Table) -> type[Model]:
        return model_for(table, self.prefix, self.region, self.host)

    @staticmethod
    def _attr(model: type[Model], name: str):
        try:
            return getattr(model, _py(name))
        except AttributeError:
            raise ValueError(f"unknown field {name!r}") from None

    @staticmethod
    def _dict(instance: Model) -> dict:
        return {name[2:]: value for name, value in instance.attribute_values.items()
                if value is not None}

    def _instance(self, model: type[Model], table: schema.Table, item: dict) -> Model:
        for name, value in item.items():
            schema.check_value(table, name, value)
        # DynamoDB cannot store an empty set: it is a missing field.
        return model(**{_py(name): value for name, value in item.items()
                        if not (table.fields[name] in _SET_TYPES and not value)})

    @staticmethod
    def _key_values(table: schema.Table, key: dict) -> tuple:
        try:
            return key[table.hash_key], key[table.range_key] if table.range_key else None
        except KeyError as missing:
            raise ValueError(f"table {table.name}: the key needs {missing}") from None

    @staticmethod
    def _expired(table: schema.Table, item: dict | None, now: float) -> bool:
        return bool(item and table.expires and table.expires in item
                    and item[table.expires] <= now)

    def _condition(self, model, table: schema.Table, condition: Condition | None, now: float):
        """The pynamodb condition, where an expired item counts as absent (as it does for
        reads): each clause holds on a live item as written, on an expired one as on no item."""
        if condition is None or not condition.clauses:
            return None
        expires = self._attr(model, table.expires) if table.expires else None
        parts = []
        for clause in condition.clauses:
            built, holds_when_absent = self._clause(model, table, clause)
            if expires is not None:
                built = built | (expires <= now) if holds_when_absent else \
                    built & (expires.does_not_exist() | (expires > now))
            parts.append(built)
        return functools.reduce(operator.and_, parts)

    def _clause(self, model, table: schema.Table, clause: tuple):
        kind = clause[0]
        hash_attr = self._attr(model, table.hash_key)
        if kind == "exists":
            return hash_attr.exists(), False
        if kind == "absent":
            return hash_attr.does_not_exist(), True
        attr = self._attr(model, clause[1])
        if kind == "eq":
            return attr == clause[2], False
        if kind == "ne":
            # DynamoDB's <> is false on a missing field; the interface says true.
            return (attr != clause[2]) | attr.does_not_exist(), True
        if kind == "in":
            if not clause[2]:               # DynamoDB's IN needs a value: "in nothing" is false
                return hash_attr.exists() & hash_attr.does_not_exist(), False
            return attr.is_in(*clause[2]), False
        if kind == "has":
            return attr.exists(), False
        if kind == "missing":
            return attr.does_not_exist(), True
        if kind in ("lt", "le", "gt", "ge"):
            compare = {"lt": operator.lt, "le": operator.le, "gt": operator.gt,
                       "ge": operator.ge}[kind]
            return compare(attr, clause[2]), False
        raise ValueError(f"unknown condition clause {kind!r}")

    def _actions(self, model, table: schema.Table, change: Change) -> list:
        """The update actions. DynamoDB refuses two actions on one field in one update, so the
        parts are first merged per field, with the semantics (and order) of Change.apply."""
        plan: dict[str, tuple] = {}
        for name, value in change.set.items():
            schema.check_value(table, name, value)
            plan[name] = ("set", value)
        for name, value in change.set_default.items():
            schema.check_value(table, name, value)
            plan.setdefault(name, ("default", value))
        for name, amount in change.add.items():
            if not schema.is_number(amount):
                raise TypeError(f"table {table.name}: add needs a number for {name}")
            kind, *args = plan.get(name, ("add", 0))
            plan[name] = {"set": ("set", args and args[0] + amount),
                          "default": ("default+add", args and args[0], amount),
                          "add": ("add", amount)}[kind]
        for parts, op, merge in ((change.add_to_set, "add_set", operator.or_),
                                 (change.remove_from_set, "delete_set", operator.sub)):
            for name, values in parts.items():
                kind, *args = plan.get(name, (op, set()))
                if kind == "set":
                    plan[name] = ("set", merge(set(args[0]), set(values)))
                elif kind == op:
                    plan[name] = (op, set(values))
                else:
                    raise ValueError(f"table {table.name}: one update cannot both {kind} and "
                                     f"{op} the field {name} (DynamoDB); split it in two")
        for name in change.remove:
            plan[name] = ("remove",)

        actions = []
        for name, (kind, *args) in plan.items():
            attr = self._attr(model, name)
            # DynamoDB stores no empty set: setting one removes the field, adding none is no-op
            empty = table.fields[name] in _SET_TYPES and kind != "remove" and not args[0]
            if kind == "remove" or (kind == "set" and empty):
                actions.append(attr.remove())
            elif empty:
                continue
            elif kind == "set":
                actions.append(attr.set(args[0]))
            elif kind == "default":
                actions.append(attr.set(attr | args[0]))
            elif kind == "default+add":
                actions.append(attr.set((attr | args[0]) + args[1]))
            elif kind in ("add", "add_set"):
                actions.append(attr.add(args[0]))
            else:                                   # DynamoDB drops a set emptied by DELETE
                actions.append(attr.delete(args[0]))
        return actions

    # -- the interface -------------------------------------------------------------------------

    def create_tables(self, tables: list[schema.Table]) -> None:
        client = self._connection.client
        for table in tables:
            model = self._model(table)
            with _errors():
                if not model.exists():
                    model.create_table(wait=True)
                if table.expires:
                    name = model.Meta.table_name
                    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
                    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                        client.update_time_to_live(TableName=name, TimeToLiveSpecification={
                            "Enabled": True, "AttributeName": table.expires})

    def get(self, table: schema.Table, key: dict) -> dict | None:
        model = self._model(table)
        hash_value, range_value = self._key_values(table, key)
        with _errors():
            try:
                item = self._dict(model.get(hash_value, range_value, consistent_read=True))
            except DoesNotExist:
                return None
        return None if self._expired(table, item, time.time()) else item

    def get_many(self, table: schema.Table, keys: list[dict]) -> list[dict]:
        """BatchGetItem (pynamodb sends 100 keys a call and asks again for unprocessed ones),
        strongly consistent like `get`."""
        model = self._model(table)
        wanted = [self._key_values(table, key) for key in keys]
        found: dict[tuple, dict] = {}
        now = time.time()
        with _errors():
            for instance in model.batch_get(
                    list(dict.fromkeys(w if table.range_key else w[0] for w in wanted)),
                    consistent_read=True):
                item = self._dict(instance)
                if not self._expired(table, item, now):
                    found[self._key_values(table, item)] = item
        return [found[w] for w in wanted if w in found]

    def put(self, table: schema.Table, item: dict, condition: Condition | None = None) -> None:
        model = self._model(table)
        instance = self._instance(model, table, item)
        with _errors():
            instance.save(condition=self._condition(model, table, condition, time.time()))

    def update(self, table: schema.Table, key: dict, change: Change,
               condition: Condition | None = None) -> dict:
        model = self._model(table)
        hash_value, range_value = self._key_values(table, key)
        actions = self._actions(model, table, change)
        for _ in range(2):
            now = time.time()
            built = self._condition(model, table, condition, now)
            if table.expires:
                # An expired item must not lend its stale fields to the new one: update only a
                # live or absent item, and clear away an expired one first (below).
                expires = self._attr(model, table.expires)
                live = self._attr(model, table.hash_key).does_not_exist() | \
                    expires.does_not_exist() | (expires > now)
                built = live if built is None else built & live
            try:
                with _errors():
                    if actions:
                        instance = model(**self._key_kwargs(table, hash_value, range_value))
                        instance.update(actions=actions, condition=built)
                        return self._dict(instance)
                    return self._touch(model, table, key, hash_value, range_value, built)
            except ConditionFailed:
                if not table.expires or not self._purge_if_expired(model, table, hash_value,
                                                                   range_value):
                    raise
        raise ConditionFailed()

    def _touch(self, model, table, key, hash_value, range_value, built) -> dict:
        """An update without changes (pynamodb sends no UpdateItem without actions): create the
        bare key if absent, else only check the condition and return the item."""
        instance = model(**self._key_kwargs(table, hash_value, range_value))
        hash_attr = self._attr(model, table.hash_key)
        try:
            with _errors():
                absent = hash_attr.does_not_exist()
                instance.save(condition=absent if built is None else absent & built)
            return self._dict(instance)
        except ConditionFailed:
            pass                                # there is an item: only check the condition
        if built is not None:
            try:
                with TransactWrite(connection=self._connection) as transaction:
                    transaction.condition_check(model, hash_value, range_value,
                                                condition=built & hash_attr.exists())
            except TransactWriteError as error:
                reasons = [getattr(r, "code", None) for r in error.cancellation_reasons or []]
                raise (ConditionFailed() if "ConditionalCheckFailed" in reasons
                       else _translate(error)) from error
        return self.get(table, key) or self._dict(instance)

    def _key_kwargs(self, table, hash_value, range_value) -> dict:
        kwargs = {_py(table.hash_key): hash_value}
        if table.range_key:
            kwargs[_py(table.range_key)] = range_value
        return kwargs

    def _purge_if_expired(self, model, table, hash_value, range_value) -> bool:
        """Delete the item if it is (still) expired; True if it was."""
        expires = self._attr(model, table.expires)
        table_connection = model._get_connection()
        try:
            with _errors():
                table_connection.delete_item(*model._serialize_keys(hash_value, range_value),
                                             condition=expires <= time.time())
        except ConditionFailed:
            return False
        return True

    def delete(self, table: schema.Table, key: dict,
               condition: Condition | None = None) -> dict | None:
        model = self._model(table)
        hash_value, range_value = self._key_values(table, key)
        now = time.time()
        with _errors():
            response = model._get_connection().delete_item(
                *model._serialize_keys(hash_value, range_value),
                condition=self._condition(model, table, condition, now),
                return_values="ALL_OLD")
        raw = response.get("Attributes")
        item = self._dict(model.from_raw_data(raw)) if raw else None
        return None if self._expired(table, item, now) else item

    def transact_each(self, transactions: list[list[Operation]]) -> list[ConditionFailed | None]:
        # Independent transactions need not wait for each other: a batch's 20 TransactWriteItems
        # calls take about as long as the slowest few, not as all of them one after another.
        if len(transactions) <= 1:
            return super().transact_each(transactions)

        def one(operations: list[Operation]) -> ConditionFailed | None:
            try:
                self.transact(operations)
            except ConditionFailed as failed:
                return failed
            return None
        futures = [_transactions.submit(one, operations) for operations in transactions]
        wait(futures)               # every one has ended before any failure is raised
        return [future.result() for future in futures]

    def transact(self, operations: list[Operation]) -> None:
        if not operations:
            return
        if len(operations) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"a transaction holds at most {MAX_TRANSACTION_ITEMS} operations, "
                             f"not {len(operations)}")
        seen = set()
        for operation in operations:
            key = operation.table.key_of(operation.item) if isinstance(operation, Put) \
                else operation.key
            ident = (operation.table.name, json.dumps(key, sort_keys=True, default=repr))
            if ident in seen:
                raise ValueError(f"a transaction writes each item once; {ident} appears twice")
            seen.add(ident)
        for attempt in range(_CONFLICT_RETRIES):
            try:
                with TransactWrite(connection=self._connection) as transaction:
                    sent = self._add_operations(transaction, operations, time.time())
                return
            except TransactWriteError as error:
                reasons = [getattr(reason, "code", None)
                           for reason in (error.cancellation_reasons or [])]
                if "ConditionalCheckFailed" in reasons:
                    failed = reasons.index("ConditionalCheckFailed")
                    raise ConditionFailed(index=sent[failed] if failed < len(sent) else None) \
                        from error
                # Another transaction touched one of the items meanwhile: retrying is safe,
                # since nothing of this one was applied.
                if "TransactionConflict" in reasons and attempt + 1 < _CONFLICT_RETRIES:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise _translate(error) from error
            except (PynamoDBException, ClientError, BotoCoreError) as error:
                raise _translate(error) from error

    def _add_operations(self, transaction: TransactWrite, operations: Iterable[Operation],
                        now: float) -> list[int]:
        """Adds the operations; returns their positions in the order pynamodb sends them (it
        groups checks, deletes, puts, updates), to map a cancellation reason back.

        An Update of an expired (not yet purged) item keeps its other stale fields here;
        single updates clear those first, transactions cannot without another round trip."""
        order: dict[type, list[int]] = {Check: [], Delete: [], Put: [], Update: []}
        for position, operation in enumerate(operations):
            if type(operation) not in order:
                raise TypeError(f"not a transaction operation: {operation!r}")
            order[type(operation)].append(position)
            table = operation.table
            model = self._model(table)
            built = self._condition(model, table, operation.condition, now)
            if isinstance(operation, Put):
                transaction.save(self._instance(model, table, operation.item), condition=built)
                continue
            hash_value, range_value = self._key_values(table, operation.key)
            if isinstance(operation, Check):
                transaction.condition_check(model, hash_value, range_value, condition=built)
            elif isinstance(operation, Delete):
                transaction.delete(model(**self._key_kwargs(table, hash_value, range_value)),
                                   condition=built)
            else:
                actions = self._actions(model, table, operation.change)
                if not actions:
                    raise ValueError("a transaction's Update needs at least one change")
                transaction.update(model(**self._key_kwargs(table, hash_value, range_value)),
                                   actions=actions, condition=built)
        return order[Check] + order[Delete] + order[Put] + order[Update]

    # -- listings ------------------------------------------------------------------------------

    def query(self, table: schema.Table, hash_value: Any, *, prefix: str | None = None,
              start: Any = None, end: Any = None, limit: int | None = None,
              reverse: bool = False, cursor: str | None = None) -> Page:
        model = self._model(table)
        range_key = table.range_key
        if range_key is None and (prefix, start, end) != (None, None, None):
            raise ValueError(f"table {table.name} has no range key to narrow by")
        if prefix is not None and table.fields[range_key] != schema.STR:
            raise ValueError(f"table {table.name}: prefix needs a str range key")
        if start is not None and end is not None and start > end:
            return Page([])

        def wanted(item: dict) -> bool:
            value = item[range_key]
            return ((prefix is None or value.startswith(prefix))
                    and (start is None or value >= start) and (end is None or value <= end))

        condition = self._range_condition(self._attr(model, range_key), prefix, start, end,
                                          reverse) if range_key else None
        fingerprint = _fingerprint("query", model.Meta.table_name, hash_value, prefix, start,
                                   end, reverse)
        keys = [table.hash_key] + ([range_key] if range_key else [])
        start_key = self._start_key(model, table, keys, {table.hash_key: hash_value},
                                    fingerprint, cursor, wanted if range_key else None)

        def read(page_size):
            return model.query(hash_value, range_key_condition=condition, consistent_read=True,
                               scan_index_forward=not reverse, page_size=page_size,
                               last_evaluated_key=start_key)
        return self._page(table, read, wanted if range_key else None, keys, fingerprint, limit,
                          cursor)

    @staticmethod
    def _range_condition(attr, prefix, start, end, reverse):
        """The key condition. DynamoDB takes one per query, so with a prefix and bounds the key
        condition carries what bounds the side the read starts from (nothing is read only to
        be skipped) and `wanted` checks the rest: the first item it refuses ends the listing."""
        if prefix is not None:
            if reverse:
                covered = end is None or (end > prefix and not end.startswith(prefix))
            else:
                covered = start is None or start <= prefix
            if covered:
                return attr.startswith(prefix)
        if start is not None and end is not None:
            return attr.between(start, end)
        if start is not None:
            return attr >= start
        if end is not None:
            return attr <= end
        return None

    def query_index(self, table: schema.Table, index: str, hash_value: Any, *,
                    before: Any = None, limit: int | None = None,
                    cursor: str | None = None) -> Page:
        model = self._model(table)
        declared = table.index(index)
        if before is not None and declared.range_key is None:
            raise ValueError(f"index {index} of table {table.name} has no range key")
        condition = self._attr(model, declared.range_key) < before \
            if before is not None else None
        fingerprint = _fingerprint("index", model.Meta.table_name, index, hash_value, before)
        keys = list(dict.fromkeys([table.hash_key, table.range_key, declared.hash_key,
                                   declared.range_key]))
        keys = [k for k in keys if k]
        start_key = self._start_key(
            model, table, keys, {declared.hash_key: hash_value}, fingerprint, cursor,
            (lambda item: item[declared.range_key] < before) if before is not None else None)

        def read(page_size):
            # Index reads cannot be strongly consistent in DynamoDB (engine.py says so).
            return model.query(hash_value, range_key_condition=condition, index_name=index,
                               page_size=page_size, last_evaluated_key=start_key)
        return self._page(table, read, None, keys, fingerprint, limit, cursor)

    def scan(self, table: schema.Table, *, limit: int | None = None,
             cursor: str | None = None) -> Page:
        model = self._model(table)
        fingerprint = _fingerprint("scan", model.Meta.table_name)
        keys = [table.hash_key] + ([table.range_key] if table.range_key else [])
        start_key = self._start_key(model, table, keys, {}, fingerprint, cursor, None)

        def read(page_size):
            return model.scan(consistent_read=True, page_size=page_size,
                              last_evaluated_key=start_key)
        return self._page(table, read, None, keys, fingerprint, limit, cursor)

    def _page(self, table, read, wanted, keys, fingerprint, limit, cursor) -> Page:
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        now = time.time()
        items, more = [], False
        # One more than asked, so the last page says "no more" instead of handing out a cursor
        # to an empty page.
        results = read(min(limit + 1, 1000) if limit else None)
        try:
            with _errors():
                for instance in results:
                    item = self._dict(instance)
                    if wanted is not None and not wanted(item):
                        break
                    if self._expired(table, item, now):
                        continue
                    if limit is not None and len(items) == limit:
                        more = True
                        break
                    items.append(item)
        except MetadataError as error:
            cause = error.__cause__
            if cursor and getattr(cause, "cause_response_code", None) == "ValidationException":
                raise BadCursor("The paging cursor is not valid; start the listing again.") \
                    from None
            raise
        next_cursor = encode_cursor({"q": fingerprint, "k": {k: items[-1][k] for k in keys}}) \
            if more else None
        return Page(items, next_cursor)

    def _start_key(self, model, table, keys, fixed, fingerprint, cursor, wanted) -> dict | None:
        """The DynamoDB ExclusiveStartKey a cursor stands for, after checking the cursor was
        handed out by this very query (same table, partition, index and range)."""
        if not cursor:
            return None
        payload = decode_cursor(cursor)
        position = payload.get("k")
        bad = BadCursor("The paging cursor belongs to another listing; start it again.")
        if payload.get("q") != fingerprint or not isinstance(position, dict) \
                or set(position) != set(keys):
            raise bad
        for name in keys:
            value = position[name]
            expected = str if table.fields[name] == schema.STR else (int, float)
            if isinstance(value, bool) or not isinstance(value, expected):
                raise bad
        if any(position[name] != value for name, value in fixed.items()):
            raise bad
        if wanted is not None and not wanted(position):
            raise bad
        start_key = {}
        for name in keys:
            attr = self._attr(model, name)
            start_key[name] = {attr.attr_type: attr.serialize(position[name])}
        return start_key


def open_engine(settings) -> DynamoEngine:
    """The engine of a function whose settings name this one (what the CDK sets)."""
    return DynamoEngine(prefix=settings.table_prefix, region=settings.region)
