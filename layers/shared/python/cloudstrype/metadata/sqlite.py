"""The SQLite engine: the metadata of `cloudstrype serve`, in one file of the data directory.

Layout: one SQL table per declared table, keyed (h, r) = (hash key, range key or ''), the other
fields as compact JSON in `body`; an `exp` column for tables that expire; two columns per sparse
index with a partial SQL index over them. The declared layout of each table is recorded, so a
table that gains an index is migrated in place (columns added, back-filled, indexed) and a table
whose keys changed is refused in words instead of misread.

Durability: WAL with synchronous=FULL, so a commit is on disk (fsync of the log) before a write
returns: nothing acknowledged is lost on `kill -9` or a power cut. Writes go through one
connection under a lock (SQLite has one writer anyway) and check their conditions inside the
same transaction; reads use a connection per thread and see every committed write.

The server opens the file as the primary: it records that it is open, so a later start that
finds the write-ahead log missing after an unclean stop refuses to run on a silently older
database.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from typing import Any, Iterator

import orjson

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
    StoreDamaged,
    StoreFull,
    Update,
    decode_cursor,
    encode_cursor,
)
from cloudstrype.metadata.schema import (
    BYTES,
    INT_SET,
    STR_SET,
    Table,
    check_value,
    value_checks,
)

# The engine's own format (how tables are laid out), in PRAGMA user_version.
FORMAT_VERSION = 1
_NO_RANGE = ""
_MAX_PAGE = 1000
_ABSENT = Condition.absent().clauses
_WRITER_CACHE = 64 * 1024 * 1024   # bytes of page cache for the one writing connection
_READER_CACHE = 8 * 1024 * 1024     # and for each reading thread's connection
# The write-ahead log is copied into the database by a thread of its own after this many
# commits (or this many seconds with any commit), beside the writer: SQLite's default made the
# commit that filled 1,000 pages copy them all and fsync the file while every writer waited.
# The writer still checkpoints when the log reaches _WAL_PAGES, by then copying only the last
# few commits, so that the next write starts the log from its beginning (a checkpoint from
# another connection never ends with nothing left to copy while writes go on).
_CHECKPOINT_COMMITS = 64
_CHECKPOINT_SECONDS = 2.0
_WAL_PAGES = 8192
_WAL_BYTES_KEPT = 64 * 1024 * 1024      # the log file is cut back to this when it restarts
_KEYS_PER_READ = 400                # get_many: (h, r) pairs per SELECT, within SQLite's limits
_BODY_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _encode_body(body: dict) -> str:
    """An item's body as JSON text. orjson writes the same text as the standard encoder for
    what items hold, a dozen times faster (JSON was ~15% of the server's busy time on a batch
    of small files); what it refuses (an integer past 64 bits, a key that is not a string)
    goes through the standard encoder as before."""
    try:
        return orjson.dumps(body).decode()
    except TypeError:
        return _BODY_ENCODER.encode(body)


def _decode_body(text: str | bytes) -> dict:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:         # what only the standard decoder reads (NaN, ...)
        return json.loads(text)


def _sql_name(table: Table) -> str:
    return "t_" + table.name.replace("-", "_")


def _index_columns(position: int) -> tuple[str, str]:
    return f"i{position}_h", f"i{position}_r"


def _layout(table: Table) -> dict:
    """What the SQL layout depends on; a change in anything else needs no migration."""
    return {"hash": table.hash_key, "range": table.range_key, "expires": table.expires,
            "indexes": [[i.name, i.hash_key, i.range_key] for i in table.indexes]}


# -- values ------------------------------------------------------------------------------------

def _encode_value(kind: str, value: Any) -> Any:
    if kind == BYTES:
        return base64.b64encode(bytes(value)).decode()
    if kind in (INT_SET, STR_SET):
        return sorted(value)
    return value


def _decode_value(kind: str, value: Any) -> Any:
    if kind == BYTES:
        return base64.b64decode(value)
    if kind in (INT_SET, STR_SET):
        return set(value)
    return value


def _prefix_end(prefix: str) -> str | None:
    """The smallest string above every string starting with `prefix` (UTF-8 order = code point
    order), or None when there is none."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            return prefix[:-1] + chr(last + 1 if last + 1 not in range(0xD800, 0xE000) else 0xE000)
        prefix = prefix[:-1]
    return None


class _Layout:
    """How one declared table maps onto its SQL table."""

    def __init__(self, table: Table):
        self.table = table
        self.sql = _sql_name(table)
        self.keys = {table.hash_key} | ({table.range_key} if table.range_key else set())
        self.index_positions = {index.name: position
                                for position, index in enumerate(table.indexes)}
        # Every write checks and encodes each field; these keep that to a dict lookup for the
        # common kinds (a str, an int, a bool field), the full test only for the others.
        self._plain_types, self._accepts = value_checks(table)
        self._encoded = {name: kind for name, kind in table.fields.items()
                         if kind in (BYTES, INT_SET, STR_SET)}
        self.set_fields = [name for name, kind in table.fields.items()
                           if kind in (INT_SET, STR_SET)]
        self.column_names = ["h", "r", "body"] + (["exp"] if table.expires else []) + \
            [column for position in range(len(table.indexes))
             for column in _index_columns(position)]
        marks = ", ".join("?" for _ in self.column_names)
        self.insert_sql = {
            verb: f"{verb} INTO {self.sql} ({', '.join(self.column_names)}) VALUES ({marks})"
            for verb in ("INSERT", "INSERT OR REPLACE")}

    def columns(self, item: dict) -> list:
        """The row of `item`, in the order of `column_names`."""
        t, encoded = self.table, self._encoded
        body = {k: (_encode_value(encoded[k], v) if k in encoded else v)
                for k, v in item.items() if k not in self.keys}
        row = [item[t.hash_key], item[t.range_key] if t.range_key else _NO_RANGE,
               _encode_body(body)]
        if t.expires:
            row.append(item.get(t.expires))
        for index in t.indexes:
            present = index.hash_key in item and (not index.range_key or index.range_key in item)
            row.append(item[index.hash_key] if present else None)
            row.append((item[index.range_key] if index.range_key else _NO_RANGE)
                       if present else None)
        return row

    def item(self, h: Any, r: Any, body: str) -> dict:
        t = self.table
        item = {k: _decode_value(t.fields[k], v) for k, v in _decode_body(body).items()}
        item[t.hash_key] = h
        if t.range_key:
            item[t.range_key] = r
        return item

    def key(self, key: dict) -> tuple:
        t = self.table
        try:
            h = key[t.hash_key]
            r = key[t.range_key] if t.range_key else _NO_RANGE
        except KeyError as missing:
            raise ValueError(f"table {t.name}: the key needs {missing}") from None
        return h, r

    def validate(self, item: dict) -> None:
        accepts, plain = self._accepts, self._plain_types
        for name, value in item.items():
            if type(value) in plain.get(name, ()):
                continue
            accept = accepts.get(name)
            if accept is None or not accept(value):
                check_value(self.table, name, value)     # raises, naming the field
        self.key(item)


class _WriteRequest:
    __slots__ = ("work", "result", "error", "done")

    def __init__(self, work):
        self.work = work
        self.result = None
        self.error: BaseException | None = None
        self.done = False


class SqliteEngine(Engine):
    name = "sqlite"

    def __init__(self, path: str, *, primary: bool = False, max_pages: int | None = None):
        """`primary`: this process is the server that owns the file (it records open/closed,
        to detect a lost write-ahead log). `max_pages` caps the file (tests of a full disk)."""
        self.path = os.path.abspath(path)
        self.primary = primary
        self._max_pages = max_pages
        self._write_lock = threading.RLock()
        self._queue: list[_WriteRequest] = []
        self._queue_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._layouts: dict[str, _Layout] = {}
        self._commits_unchecked = 0
        self._checkpoint_wanted = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._closing = False
        wal_existed = os.path.exists(self.path + "-wal")
        db_existed = os.path.exists(self.path)
        self._writer = self._connect(writer=True)
        with self._writing() as db:
            db.execute("CREATE TABLE IF NOT EXISTS cloudstrype_state "
                       "(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
            db.execute("CREATE TABLE IF NOT EXISTS cloudstrype_tables "
                       "(name TEXT PRIMARY KEY, layout TEXT NOT NULL) WITHOUT ROWID")
        version = self._writer.execute("PRAGMA user_version").fetchone()[0]
        if version > FORMAT_VERSION:
            self._writer.close()
            raise StoreDamaged(f"{self.path} was written by a newer Cloudstrype (format "
                               f"{version}); upgrade Cloudstrype to open it.")
        if version < FORMAT_VERSION:
            self._writer.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        if primary:
            state = self._state("open")
            if db_existed and state == "1" and not wal_existed:
                self._writer.close()
                raise StoreDamaged(
                    f"The write-ahead log {self.path}-wal is missing, but the server did not "
                    f"stop cleanly: the most recent writes would be silently lost. Put the "
                    f"log back, or restore the data directory from a backup.")
            self._set_state("open", "1")
            # The "open" mark must be in the main file, not only in the log it guards.
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- connections ---------------------------------------------------------------------------

    def _connect(self, writer: bool) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=OFF")
            # New files land at random places in the node, version and content tables; with
            # SQLite's default 2 MB page cache the inserts kept re-reading pages from the OS
            # (10,000 small files: about 10% of the server's time).
            cache = _WRITER_CACHE if writer else _READER_CACHE
            db.execute(f"PRAGMA cache_size = -{cache // 1024}")
            if writer:                                  # see _checkpoint_loop
                db.execute(f"PRAGMA wal_autocheckpoint = {_WAL_PAGES}")
                db.execute(f"PRAGMA journal_size_limit = {_WAL_BYTES_KEPT}")
            if writer and self._max_pages:
                db.execute(f"PRAGMA max_page_count = {int(self._max_pages)}")
            if not writer:
                db.execute("PRAGMA query_only = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreDamaged(f"Cannot open the metadata database {self.path}: {exc}. Restore "
                               f"it from a backup.") from None
        return db

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._connect(writer=False)
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed (and fsynced) on success, rolled back otherwise."""
        with self._write_lock:
            db = self._writer
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise _translate(exc, self.path) from None
                raise

    def _write(self, work):
        """Run `work(db)` as one logical transaction, committed together with the others waiting
        (group commit: one fsync for every writer queued meanwhile). Each runs in a savepoint, so
        one whose condition fails is undone alone; each caller returns only after the commit
        that made its write durable."""
        request = _WriteRequest(work)
        self._run_requests([request])
        if request.error is not None:
            raise request.error
        return request.result

    def _run_requests(self, requests: list[_WriteRequest]) -> None:
        """Queue `requests` and return once a commit has made them all durable (or failed)."""
        with self._queue_lock:
            self._queue.extend(requests)
        with self._write_lock:
            if not all(request.done for request in requests):
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)

    def _commit(self, batch: list[_WriteRequest]) -> None:
        db = self._writer
        try:
            db.execute("BEGIN IMMEDIATE")
            for request in batch:
                db.execute("SAVEPOINT one_write")
                try:
                    request.result = request.work(db)
                except sqlite3.OperationalError:
                    raise                           # the disk or the file: the whole batch fails
                except Exception as exc:            # handed to its own caller
                    db.execute("ROLLBACK TO one_write")
                    request.error = exc
                db.execute("RELEASE one_write")
            db.execute("COMMIT")
            self._committed()
        except sqlite3.OperationalError as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            failure = _translate(exc, self.path)
            for request in batch:
                request.result, request.error = None, failure
        finally:
            for request in batch:
                request.done = True

    def _committed(self) -> None:
        """Count a commit (under the write lock); enough of them wake the checkpointer."""
        self._commits_unchecked += 1
        if self._checkpointer is None:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                                  name="sqlite-checkpoint")
            self._checkpointer.start()
        if self._commits_unchecked >= _CHECKPOINT_COMMITS:
            self._checkpoint_wanted.set()

    def _checkpoint_loop(self) -> None:
        """Copy the write-ahead log into the database beside the writer (PASSIVE: it waits for
        nobody and stops at the oldest page a reader still needs). Once all of it is copied the
        next writer starts the log from its beginning again, so it does not grow without end."""
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                 check_same_thread=False)
        except sqlite3.Error:
            return              # the writer checkpoints at close; nothing is at risk
        try:
            while not self._closing:
                self._checkpoint_wanted.wait(_CHECKPOINT_SECONDS)
                self._checkpoint_wanted.clear()
                if self._closing:
                    break
                if not self._commits_unchecked:
                    continue
                self._commits_unchecked = 0
                with contextlib.suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            db.close()

    def _state(self, key: str) -> str | None:
        row = self._writer.execute("SELECT value FROM cloudstrype_state WHERE key = ?",
                                   (key,)).fetchone()
        return row[0] if row else None

    def _set_state(self, key: str, value: str) -> None:
        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO cloudstrype_state (key, value) VALUES (?, ?)",
                       (key, value))

    # -- tables --------------------------------------------------------------------------------

    def create_tables(self, tables: list[Table]) -> None:
        with self._writing() as db:
            for table in tables:
                self._create_or_migrate(db, table)
        for table in tables:
            self._layouts[table.name] = _Layout(table)

    def _create_or_migrate(self, db: sqlite3.Connection, table: Table) -> None:
        sql = _sql_name(table)
        wanted = _layout(table)
        row = db.execute("SELECT layout FROM cloudstrype_tables WHERE name = ?",
                         (table.name,)).fetchone()
        if row is None:
            columns = ["h NOT NULL", "r NOT NULL", "body TEXT NOT NULL"]
            if table.expires:
                columns.append("exp INTEGER")
            for position in range(len(table.indexes)):
                columns += list(_index_columns(position))
            _new_table(db, sql, columns)
            self._create_indexes(db, table, range(len(table.indexes)))
        else:
            have = json.loads(row[0])
            if (have["hash"], have["range"]) != (wanted["hash"], wanted["range"]):
                raise StoreDamaged(
                    f"The table {table.name} in {self.path} has the keys of another Cloudstrype "
                    f"version ({have['hash']}, {have['range']}); this one cannot read it.")
            self._migrate(db, table, have, wanted)
        db.execute("INSERT OR REPLACE INTO cloudstrype_tables (name, layout) VALUES (?, ?)",
                   (table.name, json.dumps(wanted)))

    def _create_indexes(self, db, table: Table, positions) -> None:
        sql = _sql_name(table)
        for position in positions:
            h_col, r_col = _index_columns(position)
            db.execute(f"CREATE INDEX IF NOT EXISTS {sql}_i{position} ON {sql} "
                       f"({h_col}, {r_col}, h, r) WHERE {h_col} IS NOT NULL")
        if table.expires:
            db.execute(f"CREATE INDEX IF NOT EXISTS {sql}_exp ON {sql} (exp) "
                       f"WHERE exp IS NOT NULL")

    def _migrate(self, db, table: Table, have: dict, wanted: dict) -> None:
        """Bring a table of an older layout to the declared one: new expiry or index columns are
        added and filled from the stored items."""
        if have == wanted:
            return
        sql = _sql_name(table)
        existing = {r[1] for r in db.execute(f"PRAGMA table_info({sql})")}
        if table.expires and "exp" not in existing:
            db.execute(f"ALTER TABLE {sql} ADD COLUMN exp INTEGER")
        for position in range(len(table.indexes)):
            for column in _index_columns(position):
                if column not in existing:
                    db.execute(f"ALTER TABLE {sql} ADD COLUMN {column}")
            db.execute(f"DROP INDEX IF EXISTS {sql}_i{position}")
        layout = _Layout(table)
        rows = db.execute(f"SELECT h, r, body FROM {sql}").fetchall()
        for h, r, body in rows:
            columns = dict(zip(layout.column_names, layout.columns(layout.item(h, r, body)),
                               strict=True))
            assignments = [c for c in columns if c not in ("h", "r", "body")]
            if assignments:
                db.execute(f"UPDATE {sql} SET {', '.join(f'{c} = ?' for c in assignments)} "
                           f"WHERE h = ? AND r = ?",
                           [columns[c] for c in assignments] + [h, r])
        self._create_indexes(db, table, range(len(table.indexes)))

    def _layout_of(self, table: Table) -> _Layout:
        layout = self._layouts.get(table.name)
        if layout is None or layout.table is not table:
            if layout is None:
                self.create_tables([table])
            layout = self._layouts[table.name] = _Layout(table)
        return layout

    # -- reads ---------------------------------------------------------------------------------

    def _read(self, sql: str, params) -> list:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise _translate(exc, self.path) from None

    @staticmethod
    def _live(layout: _Layout, alias: str = "") -> str:
        return f"({alias}exp IS NULL OR {alias}exp > ?)" if layout.table.expires else "?"

    def _live_param(self, layout: _Layout, now: float | None = None):
        return (now if now is not None else time.time()) if layout.table.expires else 1

    def get(self, table: Table, key: dict) -> dict | None:
        layout = self._layout_of(table)
        h, r = layout.key(key)
        rows = self._read(f"SELECT h, r, body FROM {layout.sql} WHERE h = ? AND r = ? AND "
                          f"{self._live(layout)}", (h, r, self._live_param(layout)))
        return layout.item(*rows[0]) if rows else None

    def get_many(self, table: Table, keys: list[dict]) -> list[dict]:
        layout = self._layout_of(table)
        wanted = [layout.key(key) for key in keys]
        found: dict[tuple, dict] = {}
        for start in range(0, len(wanted), _KEYS_PER_READ):
            part = wanted[start:start + _KEYS_PER_READ]
            # A join from the keys, not `(h, r) IN (VALUES ...)`: SQLite answers that form by
            # scanning the whole table, which made each batch slower as the table grew.
            rows = self._read(
                f"WITH wanted(h, r) AS (VALUES {', '.join('(?, ?)' for _ in part)}) "
                f"SELECT t.h, t.r, t.body FROM wanted JOIN {layout.sql} AS t "
                f"ON t.h = wanted.h AND t.r = wanted.r WHERE {self._live(layout, 't.')}",
                [value for pair in part for value in pair] + [self._live_param(layout)])
            found.update(((h, r), layout.item(h, r, body)) for h, r, body in rows)
        # Each key as `get` reads it (a repeated key twice, each its own copy).
        return [dict(found[key]) for key in wanted if key in found]

    def _get_in(self, db, layout: _Layout, h, r) -> dict | None:
        row = db.execute(f"SELECT h, r, body FROM {layout.sql} WHERE h = ? AND r = ? AND "
                         f"{self._live(layout)}", (h, r, self._live_param(layout))).fetchone()
        return layout.item(*row) if row else None

    def query(self, table: Table, hash_value: Any, *, prefix: str | None = None,
              start: Any = None, end: Any = None, limit: int | None = None,
              reverse: bool = False, cursor: str | None = None) -> Page:
        layout = self._layout_of(table)
        fingerprint = _fingerprint("q", table.name, hash_value, prefix, start, end, reverse)
        where = ["h = ?", self._live(layout)]
        params: list = [hash_value, self._live_param(layout)]
        if prefix:
            where.append("r >= ?")
            params.append(prefix)
            upper = _prefix_end(prefix)
            if upper is not None:
                where.append("r < ?")
                params.append(upper)
        if start is not None:
            where.append("r >= ?")
            params.append(start)
        if end is not None:
            where.append("r <= ?")
            params.append(end)
        if cursor:
            (after,) = _open_cursor(cursor, fingerprint, 1)
            where.append("r < ?" if reverse else "r > ?")
            params.append(after)
        order = "DESC" if reverse else "ASC"
        return self._page(layout, f"SELECT h, r, body FROM {layout.sql} WHERE "
                          f"{' AND '.join(where)} ORDER BY r {order}", params, limit,
                          lambda row: [row[1]], fingerprint)

    def query_index(self, table: Table, index: str, hash_value: Any, *, before: Any = None,
                    limit: int | None = None, cursor: str | None = None) -> Page:
        layout = self._layout_of(table)
        position = layout.index_positions.get(index)
        if position is None:
            raise KeyError(f"table {table.name} has no index {index!r}")
        h_col, r_col = _index_columns(position)
        fingerprint = _fingerprint("i", table.name, index, hash_value, before)
        where = [f"{h_col} = ?", self._live(layout)]
        params: list = [hash_value, self._live_param(layout)]
        if before is not None:
            where.append(f"{r_col} < ?")
            params.append(before)
        if cursor:
            after = _open_cursor(cursor, fingerprint, 3)
            where.append(f"({r_col}, h, r) > (?, ?, ?)")
            params += after
        return self._page(layout, f"SELECT h, r, body, {r_col} FROM {layout.sql} WHERE "
                          f"{' AND '.join(where)} ORDER BY {r_col}, h, r", params, limit,
                          lambda row: [row[3], row[0], row[1]], fingerprint)

    def scan(self, table: Table, *, limit: int | None = None, cursor: str | None = None) -> Page:
        layout = self._layout_of(table)
        fingerprint = _fingerprint("s", table.name)
        where, params = [self._live(layout)], [self._live_param(layout)]
        if cursor:
            where.append("(h, r) > (?, ?)")
            params += _open_cursor(cursor, fingerprint, 2)
        return self._page(layout, f"SELECT h, r, body FROM {layout.sql} WHERE "
                          f"{' AND '.join(where)} ORDER BY h, r", params, limit,
                          lambda row: [row[0], row[1]], fingerprint)

    def _page(self, layout: _Layout, sql: str, params: list, limit: int | None, position,
              fingerprint: str) -> Page:
        size = _MAX_PAGE if not limit else max(1, min(int(limit), _MAX_PAGE))
        rows = self._read(f"{sql} LIMIT ?", params + [size + 1])
        more = len(rows) > size
        rows = rows[:size]
        items = [layout.item(row[0], row[1], row[2]) for row in rows]
        cursor = encode_cursor({"q": fingerprint, "p": position(rows[-1])}) \
            if more and rows else None
        return Page(items, cursor)

    # -- writes --------------------------------------------------------------------------------

    def put(self, table: Table, item: dict, condition: Condition | None = None) -> None:
        self.transact([Put(table, item, condition)])

    def update(self, table: Table, key: dict, change: Change,
               condition: Condition | None = None) -> dict:
        layout = self._layout_of(table)
        return self._write(lambda db: self._apply(db, Update(table, key, change, condition),
                                                  layout, 0))

    def delete(self, table: Table, key: dict, condition: Condition | None = None) -> dict | None:
        layout = self._layout_of(table)
        return self._write(lambda db: self._apply(db, Delete(table, key, condition), layout, 0))

    def transact(self, operations: list[Operation]) -> None:
        self._write(self._transaction(operations))

    def transact_each(self, transactions: list[list[Operation]]) -> list[ConditionFailed | None]:
        # Queued together, so one commit (one fsync) makes them all durable; each still runs
        # in its own savepoint, so one whose condition fails is undone alone.
        requests = [_WriteRequest(self._transaction(operations))
                    for operations in transactions]
        self._run_requests(requests)
        outcomes: list[ConditionFailed | None] = []
        for request in requests:
            if request.error is not None and not isinstance(request.error, ConditionFailed):
                raise request.error
            outcomes.append(request.error)
        return outcomes

    def _transaction(self, operations: list[Operation]):
        """The work of one transaction, its operations checked first."""
        if len(operations) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"a transaction holds at most {MAX_TRANSACTION_ITEMS} operations")
        layouts = [self._layout_of(op.table) for op in operations]
        seen = set()
        for op, layout in zip(operations, layouts, strict=True):
            target = (op.table.name, layout.key(op.item if isinstance(op, Put) else op.key))
            if target in seen:
                raise ValueError(f"a transaction names one item twice ({op.table.name})")
            seen.add(target)

        def work(db):
            for position, (op, layout) in enumerate(zip(operations, layouts, strict=True)):
                self._apply(db, op, layout, position)
        return work

    def _apply(self, db, op: Operation, layout: _Layout, position: int):
        kind = type(op)
        key_source = op.item if kind is Put else op.key
        h, r = layout.key(key_source)
        # A Put without a condition replaces whatever is there, and one that needs the item
        # absent (in a table without expiry) lets the primary key refuse it: nothing to read.
        insert_only = kind is Put and op.condition is not None and \
            op.condition.clauses == _ABSENT and not layout.table.expires
        if kind is Put and (op.condition is None or insert_only):
            current = None
        else:
            current = self._get_in(db, layout, h, r)
            if op.condition is not None and not op.condition.holds(current):
                raise ConditionFailed(f"condition failed on {op.table.name}", index=position)
        if kind is Check:
            return None
        if kind is Delete:
            if current is not None:
                db.execute(f"DELETE FROM {layout.sql} WHERE h = ? AND r = ?", (h, r))
            return current
        if kind is Put:
            item = dict(op.item)
        else:
            base = current if current is not None else layout.table.key_of(op.key)
            item = op.change.apply(base)
            for name in layout.keys:
                if item.get(name) != key_source[name]:
                    raise ValueError(f"an update cannot change the key field {name}")
        layout.validate(item)
        for name in layout.set_fields:          # no empty sets, as in DynamoDB
            if name in item and not item[name]:
                del item[name]
        try:
            db.execute(layout.insert_sql["INSERT" if insert_only else "INSERT OR REPLACE"],
                       layout.columns(item))
        except sqlite3.IntegrityError:      # only the key (primary or unique index) refuses
            raise ConditionFailed(f"condition failed on {op.table.name}",
                                  index=position) from None
        return item

    # -- maintenance ---------------------------------------------------------------------------

    def purge_expired(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        removed = 0
        for layout in list(self._layouts.values()):
            if layout.table.expires:
                with self._writing() as db:
                    removed += db.execute(f"DELETE FROM {layout.sql} WHERE exp IS NOT NULL "
                                          f"AND exp <= ?", (now,)).rowcount
        return removed

    def backup(self, destination: str) -> None:
        """A consistent copy of the whole database while it is in use (SQLite's backup API),
        written next to `destination` and moved into place when complete."""
        partial = destination + ".partial"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        target = sqlite3.connect(partial)
        try:
            with self._write_lock:
                self._writer.backup(target)
            # The copy is complete and closed: a server started on it did stop cleanly.
            target.execute("UPDATE cloudstrype_state SET value = '0' WHERE key = 'open'")
            target.commit()
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
        with open(partial, "rb") as copy:
            os.fsync(copy.fileno())
        os.replace(partial, destination)

    def close(self) -> None:
        with self._readers_lock:
            for db in self._readers:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._readers.clear()
        self._closing = True
        self._checkpoint_wanted.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=30)
        with self._write_lock:
            if self._writer is None:
                return
            if self.primary:
                with contextlib.suppress(MetadataError):
                    self._set_state("open", "0")
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._writer.close()
            self._writer = None


def _new_table(db: sqlite3.Connection, sql: str, columns: list[str]) -> None:
    """Rows in the order written, found through a unique index on the key: a row (JSON of a few
    hundred bytes) is appended, and only its small index entry lands where the key says.
    Clustered by key instead (_new_clustered_table), a random key such as a content HMAC moved a
    page of whole rows per insert: SQLite's part of writing 10,000 small files took ~40% more
    CPU. Every statement of this engine reads and writes both kinds alike."""
    db.execute(f"CREATE TABLE {sql} ({', '.join(columns)})")
    db.execute(f"CREATE UNIQUE INDEX {sql}_key ON {sql} (h, r)")


def _new_clustered_table(db: sqlite3.Connection, sql: str, columns: list[str]) -> None:
    """How tables were made before: clustered by key. Data directories written then keep them;
    the engine's conformance suite runs on them too."""
    db.execute(f"CREATE TABLE {sql} ({', '.join(columns)}, PRIMARY KEY (h, r)) WITHOUT ROWID")


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _open_cursor(cursor: str, fingerprint: str, size: int) -> list:
    payload = decode_cursor(cursor)
    position = payload.get("p")
    if payload.get("q") != fingerprint or not isinstance(position, list) or \
            len(position) != size or not all(map(_key_value, position)):
        raise BadCursor("The paging cursor belongs to another listing; start again.")
    return position


def _key_value(value) -> bool:
    """What a key column can hold: a cursor is the caller's text, so SQLite must not see
    lists, huge integers or unencodable strings from it."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -2 ** 63 <= value < 2 ** 63
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    return False


def _translate(exc: sqlite3.OperationalError, path: str) -> MetadataError:
    message = str(exc)
    if "full" in message:
        return StoreFull(f"The disk holding {path} is full; nothing was written. Free some "
                         f"space and try again.")
    if "locked" in message or "busy" in message:
        return MetadataError(f"The metadata database {path} is busy; try again.")
    return MetadataError(f"The metadata database {path} failed: {message}.")


def open_engine(settings) -> SqliteEngine:
    """The engine of a process whose settings name this one (a stack opens it itself first)."""
    if not settings.metadata_path:
        raise MetadataError("CLOUDSTRYPE_METADATA_PATH must name the SQLite database file.")
    return SqliteEngine(settings.metadata_path)
