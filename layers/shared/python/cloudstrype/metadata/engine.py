"""The engine interface every metadata engine implements, with engine-neutral semantics.

Items are plain dicts of the table's declared fields (a missing field is absent, never None).
A key is a dict of the hash key and, where declared, the range key.

What every engine guarantees (the conformance suite in tests/metadata proves it per engine):
- `get` and `query` on a table are strongly consistent; `query_index` may lag in DynamoDB.
- Conditions are checked atomically with the write they guard (compare-and-set).
- `update` applies all its changes atomically and creates the item if absent (like DynamoDB's
  UpdateItem); guard it with `Condition.exists()` when it must not.
- `transact` applies all its operations or none; a failed condition raises `ConditionFailed`
  with the position of the operation whose condition failed (when the engine can tell).
- An item whose expiry field (Table.expires) is in the past is never returned.
- Pages: at most `limit` items and an opaque cursor (None at the end). A cursor is only good for
  the same query; a forged or foreign cursor raises `BadCursor`.
- A write returns only once it is durable (SQLite: committed with fsync; DynamoDB: acknowledged).
"""
from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from cloudstrype.metadata.schema import Table


class MetadataError(Exception):
    """The metadata store cannot do what was asked (unavailable, full, damaged)."""


class ConditionFailed(MetadataError):
    """A write's condition did not hold; nothing was written."""

    def __init__(self, message: str = "condition failed", index: int | None = None):
        super().__init__(message)
        self.index = index          # which operation of a transaction, when known


class BadCursor(MetadataError):
    """A paging cursor that this query did not hand out."""


class StoreFull(MetadataError):
    """The disk (or the database's size limit) is full; nothing was written."""


class StoreDamaged(MetadataError):
    """The data directory is not in a state the engine can trust (e.g. a lost write-ahead log)."""


@dataclass(frozen=True)
class Condition:
    """All clauses must hold. Build with the class methods and combine with `&`.

    Clauses: ("exists",), ("absent",) on the item; on a field: ("eq", f, v), ("ne", f, v)
    (true when the field is missing too), ("in", f, (v, ...)), ("has", f), ("missing", f),
    ("lt"|"le"|"gt"|"ge", f, v) (false when the field is missing).
    """
    clauses: tuple = ()

    def __and__(self, other: "Condition") -> "Condition":
        return Condition(self.clauses + other.clauses)

    @classmethod
    def exists(cls) -> "Condition":
        return cls((("exists",),))

    @classmethod
    def absent(cls) -> "Condition":
        return cls((("absent",),))

    @classmethod
    def eq(cls, name: str, value: Any) -> "Condition":
        return cls((("eq", name, value),))

    @classmethod
    def ne(cls, name: str, value: Any) -> "Condition":
        return cls((("ne", name, value),))

    @classmethod
    def is_in(cls, name: str, *values: Any) -> "Condition":
        return cls((("in", name, tuple(values)),))

    @classmethod
    def has(cls, name: str) -> "Condition":
        return cls((("has", name),))

    @classmethod
    def missing(cls, name: str) -> "Condition":
        return cls((("missing", name),))

    @classmethod
    def compare(cls, name: str, op: str, value: Any) -> "Condition":
        if op not in ("lt", "le", "gt", "ge"):
            raise ValueError(op)
        return cls(((op, name, value),))

    def holds(self, item: dict | None) -> bool:
        """The reference semantics (engines that check in Python use this)."""
        for clause in self.clauses:
            kind = clause[0]
            if kind == "exists":
                ok = item is not None
            elif kind == "absent":
                ok = item is None
            else:
                name = clause[1]
                present = item is not None and name in item
                value = item.get(name) if item is not None else None
                if kind == "eq":
                    ok = present and value == clause[2]
                elif kind == "ne":
                    ok = not present or value != clause[2]
                elif kind == "in":
                    ok = present and value in clause[2]
                elif kind == "has":
                    ok = present
                elif kind == "missing":
                    ok = not present
                else:
                    ok = present and {"lt": value < clause[2] if present else False,
                                      "le": value <= clause[2] if present else False,
                                      "gt": value > clause[2] if present else False,
                                      "ge": value >= clause[2] if present else False}[kind]
            if not ok:
                return False
        return True


@dataclass
class Change:
    """What an update does, applied atomically in this order: set, set_default, add, add_to_set,
    remove_from_set, remove.

    - set: field -> value;  set_default: field -> value, only where the field is missing
    - add: field -> number added (a missing field counts as 0): atomic counters
    - add_to_set / remove_from_set: field -> set of values (a set emptied is removed)
    - remove: fields to delete
    """
    set: dict = field(default_factory=dict)
    set_default: dict = field(default_factory=dict)
    add: dict = field(default_factory=dict)
    add_to_set: dict = field(default_factory=dict)
    remove_from_set: dict = field(default_factory=dict)
    remove: tuple = ()

    def apply(self, item: dict) -> dict:
        """The reference semantics, on a copy."""
        result = dict(item)
        result.update(self.set)
        for name, value in self.set_default.items():
            result.setdefault(name, value)
        for name, amount in self.add.items():
            result[name] = result.get(name, 0) + amount
        for name, values in self.add_to_set.items():
            result[name] = set(result.get(name) or ()) | set(values)
        for name, values in self.remove_from_set.items():
            left = set(result.get(name) or ()) - set(values)
            if left:
                result[name] = left
            else:
                result.pop(name, None)
        for name in self.remove:
            result.pop(name, None)
        return result


@dataclass(frozen=True)
class Put:
    table: Table
    item: dict
    condition: Condition | None = None


@dataclass(frozen=True)
class Update:
    table: Table
    key: dict
    change: Change
    condition: Condition | None = None


@dataclass(frozen=True)
class Delete:
    table: Table
    key: dict
    condition: Condition | None = None


@dataclass(frozen=True)
class Check:
    """A condition on an item the transaction does not write."""
    table: Table
    key: dict
    condition: Condition


Operation = Put | Update | Delete | Check
# DynamoDB's limit on one transaction; the SQLite engine enforces the same so both agree.
MAX_TRANSACTION_ITEMS = 100


@dataclass
class Page:
    items: list[dict]
    cursor: str | None = None


def encode_cursor(payload: dict) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, UnicodeError, RecursionError):
        raise BadCursor("The paging cursor is not valid; start the listing again.") from None
    if not isinstance(payload, dict):
        raise BadCursor("The paging cursor is not valid; start the listing again.")
    return payload


def _every_item(read_page: Callable[[str | None], Page]) -> Iterator[dict]:
    """The items of every page `read_page(cursor)` gives, from the first to the last."""
    cursor = None
    while True:
        page = read_page(cursor)
        yield from page.items
        cursor = page.cursor
        if not cursor:
            return


class Engine(ABC):
    """One metadata database. Thread-safe: one instance serves a whole process."""

    name: str = ""

    @abstractmethod
    def create_tables(self, tables: list[Table]) -> None:
        """Create what is missing (idempotent). In AWS the CDK does this instead."""

    @abstractmethod
    def get(self, table: Table, key: dict) -> dict | None: ...

    @abstractmethod
    def put(self, table: Table, item: dict, condition: Condition | None = None) -> None:
        """Write the whole item (replacing any), if the condition holds on the current one."""

    @abstractmethod
    def update(self, table: Table, key: dict, change: Change,
               condition: Condition | None = None) -> dict:
        """Apply the change (creating the item if absent) if the condition holds; returns the
        item as it is after the update."""

    @abstractmethod
    def delete(self, table: Table, key: dict, condition: Condition | None = None) -> dict | None:
        """Delete if the condition holds; returns the deleted item (None if there was none)."""

    @abstractmethod
    def query(self, table: Table, hash_value: Any, *, prefix: str | None = None,
              start: Any = None, end: Any = None, limit: int | None = None,
              reverse: bool = False, cursor: str | None = None) -> Page:
        """Items of one partition in range-key order. `prefix` (str range keys) and the
        inclusive bounds `start`/`end` narrow the range."""

    @abstractmethod
    def query_index(self, table: Table, index: str, hash_value: Any, *,
                    before: Any = None, limit: int | None = None,
                    cursor: str | None = None) -> Page:
        """Items of a sparse index partition in index range-key order; `before` keeps those
        whose index range key is below it (e.g. expired by a time)."""

    @abstractmethod
    def transact(self, operations: list[Operation]) -> None:
        """All or nothing; at most MAX_TRANSACTION_ITEMS operations, each on a distinct item."""

    def transact_each(self, transactions: list[list[Operation]]) -> list[ConditionFailed | None]:
        """Several independent transactions, each all or nothing on its own: per transaction,
        None when it was applied or the ConditionFailed that undid it. Any other failure is
        raised. Engines that can make them durable together override this."""
        outcomes: list[ConditionFailed | None] = []
        for operations in transactions:
            try:
                self.transact(operations)
                outcomes.append(None)
            except ConditionFailed as failed:
                outcomes.append(failed)
        return outcomes

    @abstractmethod
    def scan(self, table: Table, *, limit: int | None = None, cursor: str | None = None) -> Page:
        """Every item of a table, in pages. For maintenance (export, import, benchmarks) only:
        domain code reads by key, partition or index."""

    def get_many(self, table: Table, keys: list[dict]) -> list[dict]:
        """The items that exist, in the order of `keys`, each as `get` reads it. Engines that
        can read many keys in one call override this."""
        found = (self.get(table, key) for key in keys)
        return [item for item in found if item is not None]

    def query_all(self, table: Table, hash_value: Any, **kwargs) -> Iterator[dict]:
        """Every item of a partition, following cursors."""
        return _every_item(lambda cursor: self.query(table, hash_value, cursor=cursor,
                                                     **kwargs))

    def query_index_all(self, table: Table, index: str, hash_value: Any,
                        **kwargs) -> Iterator[dict]:
        """Every item of a sparse index partition, following cursors (`limit` is the page
        size)."""
        return _every_item(lambda cursor: self.query_index(table, index, hash_value,
                                                           cursor=cursor, **kwargs))

    def purge_expired(self, now: float | None = None) -> int:
        """Delete expired items; returns how many. DynamoDB's TTL does this on its own."""
        return 0

    def close(self) -> None:
        """Release files and connections (a clean stop)."""
        # Deliberately optional: an engine that holds nothing open (DynamoDB) has nothing to do.
        return None


_engine: Engine | None = None


# The engines, by the name the `metadata_engine` setting uses; loaded by name on first use, so a
# Lambda loads only its own engine (and the engines, which import this module, form no cycle).
ENGINES = {"sqlite": "cloudstrype.metadata.sqlite", "dynamodb": "cloudstrype.metadata.dynamodb"}


def get_engine() -> Engine:
    """The process's engine, chosen by the `metadata_engine` setting."""
    global _engine
    if _engine is None:
        import importlib

        from cloudstrype.settings import get_settings
        settings = get_settings()
        if settings.metadata_engine not in ENGINES:
            raise MetadataError(f"Unknown metadata engine {settings.metadata_engine!r}: "
                                f"set CLOUDSTRYPE_METADATA_ENGINE to one of {sorted(ENGINES)}.")
        module = importlib.import_module(ENGINES[settings.metadata_engine])
        _engine = module.open_engine(settings)
    return _engine


def set_engine(engine: Engine | None) -> None:
    """For the local stack and tests: use this engine in this process."""
    global _engine
    _engine = engine
