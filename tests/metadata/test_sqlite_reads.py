"""The SQLite engine's reads find their rows through the primary key, so what a read costs does
not grow with the table: a batched read that scanned the table made each upload batch slower
than the one before as the tree grew."""
from __future__ import annotations

from cloudstrype.metadata.engine import Put
from cloudstrype.metadata.schema import Table
from cloudstrype.metadata.sqlite import SqliteEngine

ROWS = Table(name="read-rows", hash_key="group", range_key="n",
             fields={"group": "str", "n": "int", "payload": "str"})
SESSIONS = Table(name="read-sessions", hash_key="id",
                 fields={"id": "str", "note": "str", "expires": "int"}, expires="expires")


def _steps(engine: SqliteEngine, read) -> int:
    """The SQLite virtual machine instructions a read on this thread's connection takes."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    connection = engine._reader()
    connection.set_progress_handler(count, 1)
    try:
        read()
    finally:
        connection.set_progress_handler(None, 1)
    return steps


def _fill(engine: SqliteEngine, table: Table, items) -> None:
    items = list(items)
    for start in range(0, len(items), 100):
        engine.transact([Put(table, item) for item in items[start:start + 100]])


def test_a_batched_read_costs_the_same_in_a_large_table_as_in_a_small_one(tmp_path):
    engine = SqliteEngine(tmp_path / "meta.db", primary=True)
    engine.create_tables([ROWS, SESSIONS])
    wanted = [{"group": "g", "n": n} for n in range(0, 40, 4)] + [{"group": "g", "n": 10**6}]
    _fill(engine, ROWS, ({"group": "g", "n": n, "payload": "x" * 100} for n in range(40)))
    small = _steps(engine, lambda: engine.get_many(ROWS, wanted))

    _fill(engine, ROWS, ({"group": f"other-{n % 7}", "n": n, "payload": "x" * 100}
                         for n in range(5000)))
    found: list[dict] = []
    large = _steps(engine, lambda: found.extend(engine.get_many(ROWS, wanted)))

    assert [item["n"] for item in found] == list(range(0, 40, 4))
    # A scan would visit 5,040 rows instead of 40: over a hundred times the steps.
    assert large < 2 * small, (small, large)
    engine.close()


def test_a_batched_read_of_a_table_with_expiry_uses_the_key_too(tmp_path):
    engine = SqliteEngine(tmp_path / "meta.db", primary=True)
    engine.create_tables([ROWS, SESSIONS])
    far = 4_000_000_000
    _fill(engine, SESSIONS, ({"id": f"s{n}", "note": "n", "expires": far} for n in range(20)))
    wanted = [{"id": f"s{n}"} for n in range(5)]
    small = _steps(engine, lambda: engine.get_many(SESSIONS, wanted))
    _fill(engine, SESSIONS, ({"id": f"t{n}", "note": "n", "expires": far} for n in range(3000)))
    _fill(engine, SESSIONS, [{"id": "gone", "note": "n", "expires": 1}])
    found: list[dict] = []
    large = _steps(engine, lambda: found.extend(
        engine.get_many(SESSIONS, wanted + [{"id": "gone"}])))

    assert [item["id"] for item in found] == [f"s{n}" for n in range(5)]   # expired: not found
    assert large < 2 * small, (small, large)
    engine.close()


def test_tables_append_rows_and_find_them_by_a_unique_key_index(tmp_path, monkeypatch):
    import sqlite3

    from cloudstrype.metadata import sqlite as sqlite_module
    engine = SqliteEngine(str(tmp_path / "now.db"), primary=True)
    engine.create_tables([ROWS])
    monkeypatch.setattr(sqlite_module, "_new_table", sqlite_module._new_clustered_table)
    before = SqliteEngine(str(tmp_path / "before.db"), primary=True)
    before.create_tables([ROWS])
    for made in (engine, before):
        _fill(made, ROWS, ({"group": "g", "n": n, "payload": "x"} for n in range(3)))
        assert [i["n"] for i in made.query(ROWS, "g").items] == [0, 1, 2]
        made.close()

    def layout(path) -> str:
        db = sqlite3.connect(path)
        try:
            return " ".join(sql for (sql,) in db.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name LIKE '%read%rows%'") if sql)
        finally:
            db.close()
    now, old = layout(tmp_path / "now.db"), layout(tmp_path / "before.db")
    assert "WITHOUT ROWID" not in now and "CREATE UNIQUE INDEX" in now
    assert "WITHOUT ROWID" in old and "CREATE UNIQUE INDEX" not in old
    # A data directory written before is read as it is.
    reopened = SqliteEngine(str(tmp_path / "before.db"), primary=True)
    reopened.create_tables([ROWS])
    assert reopened.get(ROWS, {"group": "g", "n": 2}) == {"group": "g", "n": 2, "payload": "x"}
    reopened.close()
