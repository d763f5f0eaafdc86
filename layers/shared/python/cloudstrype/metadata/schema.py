"""Tables, declared once by the domain module that owns them.

A table has a hash key, an optional range key, typed fields, optional sparse secondary indexes
and an optional expiry field. The SQLite engine, the DynamoDB engine, the CDK stack and the local
stack all read these declarations; nothing else describes a table.

Field types: `str`, `int` (any number, also floats), `bool`, `bytes`, `json` (dicts and lists),
`set[int]`, `set[str]`. A field may be missing from an item (None is never stored).
"""
from __future__ import annotations

from dataclasses import dataclass

STR, INT, BOOL, BYTES, JSON, INT_SET, STR_SET = ("str", "int", "bool", "bytes", "json",
                                                 "set[int]", "set[str]")
FIELD_TYPES = (STR, INT, BOOL, BYTES, JSON, INT_SET, STR_SET)
KEY_TYPES = (STR, INT)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What each field type accepts; both engines refuse anything else alike.
_ACCEPTS = {
    STR: lambda v: isinstance(v, str),
    INT: is_number,
    BOOL: lambda v: isinstance(v, bool),
    BYTES: lambda v: isinstance(v, (bytes, bytearray)),
    JSON: lambda v: isinstance(v, (dict, list)),
    INT_SET: lambda v: isinstance(v, (set, frozenset)) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in v),
    STR_SET: lambda v: isinstance(v, (set, frozenset)) and all(isinstance(x, str) for x in v),
}


# The exact Python types a value of a kind may have without a closer look (a bool is an int
# to isinstance, so `int` lists int and float only); a value of another type gets the full test.
_PLAIN_TYPES = {STR: (str,), INT: (int, float), BOOL: (bool,), JSON: (dict, list)}


def value_checks(table: "Table") -> tuple[dict, dict]:
    """For an engine that checks every field of every item it writes: per field, the exact
    types that pass at once, and the full test of a value (what `check_value` applies)."""
    return ({name: _PLAIN_TYPES[kind] for name, kind in table.fields.items()
             if kind in _PLAIN_TYPES},
            {name: _ACCEPTS[kind] for name, kind in table.fields.items()})


def check_value(table: "Table", name: str, value) -> None:
    """ValueError for a field the table does not declare, TypeError for a value of another type
    (a programming error, not a caller's: domain code builds the items)."""
    kind = table.fields.get(name)
    if kind is None:
        raise ValueError(f"table {table.name} declares no field {name!r}")
    if not _ACCEPTS[kind](value):
        raise TypeError(f"table {table.name}: field {name} is {kind}, "
                        f"got {type(value).__name__}")


def record_item(record) -> dict:
    """A flat dataclass record as an item: its fields, None left out (an item never stores
    None), a dict, list or set field copied one level. `dataclasses.asdict` deep-copies every
    value recursively, and it was the largest cost of writing a small file's records."""
    item = {}
    for name in record.__dataclass_fields__:
        value = getattr(record, name)
        if value is not None:
            item[name] = value.copy() if type(value) in _CONTAINERS else value
    return item


_CONTAINERS = frozenset((dict, list, set))


@dataclass(frozen=True)
class Index:
    """A sparse secondary index: only items that have `hash_key` (and `range_key`) appear.

    Reads through an index are eventually consistent in DynamoDB; use them for work queues
    (damaged chunks, draining storages, expired uploads), never for a check before a write.
    """
    name: str
    hash_key: str
    range_key: str | None = None


@dataclass(frozen=True)
class Table:
    name: str                                   # short name; engines add their prefix
    hash_key: str
    fields: dict[str, str]                      # every field, keys included: name -> type
    range_key: str | None = None
    indexes: tuple[Index, ...] = ()
    # An int field with a Unix time: once it has passed, the item is gone for every read, and
    # the engine purges it (DynamoDB's TTL, SQLite's purge_expired).
    expires: str | None = None
    owner_module: str = ""                      # the one module that writes this table
    # Only the local stack has it (e.g. the local identity service's users: in AWS Cognito holds
    # them), so the CDK stack does not create it.
    local_only: bool = False

    def __post_init__(self):
        for name, kind in self.fields.items():
            if kind not in FIELD_TYPES:
                raise ValueError(f"table {self.name}: field {name} has unknown type {kind!r}")
        keys = [self.hash_key] + ([self.range_key] if self.range_key else [])
        for index in self.indexes:
            keys += [index.hash_key] + ([index.range_key] if index.range_key else [])
        for key in keys:
            if self.fields.get(key) not in KEY_TYPES:
                raise ValueError(f"table {self.name}: key {key} must be a str or int field")
        if self.expires and self.fields.get(self.expires) != INT:
            raise ValueError(f"table {self.name}: expiry field {self.expires} must be an int")

    def key_of(self, item: dict) -> dict:
        key = {self.hash_key: item[self.hash_key]}
        if self.range_key:
            key[self.range_key] = item[self.range_key]
        return key

    def index(self, name: str) -> Index:
        for index in self.indexes:
            if index.name == name:
                return index
        raise KeyError(f"table {self.name} has no index {name!r}")


TABLES: dict[str, Table] = {}


def table(name: str, *, hash_key: str, fields: dict[str, str], range_key: str | None = None,
          indexes: tuple[Index, ...] = (), expires: str | None = None,
          owner_module: str = "", local_only: bool = False) -> Table:
    """Declare a table (at import of the module that owns it) and register it."""
    declared = Table(name=name, hash_key=hash_key, fields=dict(fields), range_key=range_key,
                     indexes=tuple(indexes), expires=expires, owner_module=owner_module,
                     local_only=local_only)
    existing = TABLES.get(name)
    if existing is not None and existing != declared:
        raise ValueError(f"table {name} is declared twice, differently "
                         f"({existing.owner_module} and {owner_module})")
    TABLES[name] = declared
    return declared


# The modules that declare tables; importing them fills TABLES.
TABLE_MODULES = (
    "cloudstrype.tree.store",
    "cloudstrype.pipeline.chunk_store",
    "cloudstrype.storages.store",
    "cloudstrype.array.store",
    "cloudstrype.keys.store",
    "cloudstrype.identity.local_store",
    "cloudstrype.quota",
    "cloudstrype.sharing.store",
)


def all_tables() -> list[Table]:
    import importlib
    for module in TABLE_MODULES:
        importlib.import_module(module)
    return [TABLES[name] for name in sorted(TABLES)]
