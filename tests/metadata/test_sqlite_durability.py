"""The SQLite engine's promises that only a real file and a real crash can prove: acknowledged
writes survive `kill -9`, a transaction killed half-way leaves all or nothing, a torn data
directory (lost write-ahead log, full disk) is refused in words, layouts migrate, and a backup
taken while writing is consistent."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cloudstrype.metadata.engine import Change, ConditionFailed, Put, StoreDamaged, StoreFull
from cloudstrype.metadata.schema import Index, Table
from cloudstrype.metadata.sqlite import SqliteEngine

REPO = Path(__file__).resolve().parents[2]
ITEMS = Table(name="crash-items", hash_key="batch", range_key="n",
              fields={"batch": "str", "n": "int", "payload": "str", "size": "int"})

# Writes transactions of 1-40 items (all of one batch) as fast as it can and prints each batch
# id only after `transact` returned: what it printed was acknowledged.
_WRITER = textwrap.dedent("""
    import random, sys
    sys.path.insert(0, {library!r})
    from cloudstrype.metadata.engine import Put
    from cloudstrype.metadata.schema import Table
    from cloudstrype.metadata.sqlite import SqliteEngine
    items = Table(name="crash-items", hash_key="batch", range_key="n",
                  fields={{"batch": "str", "n": "int", "payload": "str", "size": "int"}})
    engine = SqliteEngine({path!r}, primary=True)
    engine.create_tables([items])
    print("ready", flush=True)
    batch = 0
    while True:
        batch += 1
        size = random.randint(1, 40)
        engine.transact([Put(items, {{"batch": f"b{{batch}}", "n": n, "size": size,
                                      "payload": "x" * random.randint(10, 3000)}})
                         for n in range(size)])
        print(f"b{{batch}}", flush=True)
""")


def _start_writer(path: Path) -> subprocess.Popen:
    code = _WRITER.format(library=str(REPO / "layers/shared/python"), path=str(path))
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def _kill_after(process: subprocess.Popen, seconds: float) -> list[str]:
    time.sleep(seconds)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return [line.strip() for line in process.stdout.read().splitlines() if line.strip()]


def test_kill_9_loses_no_acknowledged_transaction_and_leaves_none_half_done(tmp_path):
    path = tmp_path / "metadata.db"
    writer = _start_writer(path)
    acknowledged = _kill_after(writer, 1.5)
    assert len(acknowledged) > 20, "the writer should have committed many batches in 1.5 s"

    engine = SqliteEngine(str(path), primary=True)
    engine.create_tables([ITEMS])
    try:
        batches = {}
        cursor = None
        while True:
            page = engine.scan(ITEMS, cursor=cursor, limit=1000)
            for item in page.items:
                batches.setdefault(item["batch"], []).append(item)
            cursor = page.cursor
            if not cursor:
                break
        missing = [b for b in acknowledged if b not in batches]
        assert not missing, f"acknowledged batches lost after kill -9: {missing[:5]}"
        torn = {b: (len(items), items[0]["size"]) for b, items in batches.items()
                if len(items) != items[0]["size"]}
        assert not torn, f"transactions left half-written: {torn}"
        # At most the one transaction in flight at the kill may exist without acknowledgement.
        assert len(set(batches) - set(acknowledged)) <= 1
    finally:
        engine.close()


def test_a_lost_write_ahead_log_after_a_crash_is_refused_in_words(tmp_path):
    path = tmp_path / "metadata.db"
    writer = _start_writer(path)
    _kill_after(writer, 0.5)
    assert Path(str(path) + "-wal").exists()
    os.unlink(str(path) + "-wal")
    # Either the lost log is noticed as such, or (when the kill came mid-checkpoint) the file it
    # leaves behind is torn: both refuse in words, neither opens a silently older database.
    with pytest.raises(StoreDamaged, match="write-ahead log .* is missing|malformed"):
        SqliteEngine(str(path), primary=True)


def test_a_clean_stop_needs_no_write_ahead_log(tmp_path):
    path = tmp_path / "metadata.db"
    engine = SqliteEngine(str(path), primary=True)
    engine.create_tables([ITEMS])
    engine.put(ITEMS, {"batch": "b", "n": 1, "size": 1, "payload": "p"})
    engine.close()
    assert not Path(str(path) + "-wal").exists() or \
        Path(str(path) + "-wal").stat().st_size == 0
    again = SqliteEngine(str(path), primary=True)
    again.create_tables([ITEMS])
    assert again.get(ITEMS, {"batch": "b", "n": 1})["payload"] == "p"
    again.close()


def test_a_full_disk_writes_nothing_and_says_so(tmp_path):
    engine = SqliteEngine(str(tmp_path / "metadata.db"), primary=True, max_pages=64)
    engine.create_tables([ITEMS])
    written = 0
    with pytest.raises(StoreFull, match="full; nothing was written"):
        for n in range(10_000):
            engine.transact([Put(ITEMS, {"batch": f"b{n}", "n": k, "size": 10,
                                         "payload": "y" * 2000}) for k in range(10)])
            written += 1
    # The refused transaction left nothing; every earlier one is whole; reads still work.
    for n in range(written + 1):
        page = engine.query(ITEMS, f"b{n}")
        assert len(page.items) == (10 if n < written else 0)
    engine.close()


def test_a_table_that_gains_an_index_is_migrated_in_place(tmp_path):
    path = str(tmp_path / "metadata.db")
    before = Table(name="grows", hash_key="owner", range_key="id",
                   fields={"owner": "str", "id": "str", "flag": "str"})
    engine = SqliteEngine(path)
    engine.create_tables([before])
    engine.put(before, {"owner": "a", "id": "1", "flag": "on"})
    engine.put(before, {"owner": "a", "id": "2"})
    engine.close()

    after = Table(name="grows", hash_key="owner", range_key="id",
                  fields={"owner": "str", "id": "str", "flag": "str"},
                  indexes=(Index("flagged", "flag", "id"),))
    engine = SqliteEngine(path)
    engine.create_tables([after])
    assert [i["id"] for i in engine.query_index(after, "flagged", "on").items] == ["1"]
    engine.close()

    rekeyed = Table(name="grows", hash_key="id", fields={"id": "str", "owner": "str"})
    engine = SqliteEngine(path)
    with pytest.raises(StoreDamaged, match="keys of another Cloudstrype version"):
        engine.create_tables([rekeyed])
    engine.close()


def test_a_database_of_a_newer_format_is_refused(tmp_path):
    path = tmp_path / "metadata.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreDamaged, match="newer Cloudstrype"):
        SqliteEngine(str(path))


def test_a_backup_taken_while_writing_is_consistent(tmp_path):
    engine = SqliteEngine(str(tmp_path / "metadata.db"), primary=True)
    engine.create_tables([ITEMS])
    counter = Table(name="crash-counter", hash_key="id", fields={"id": "str", "n": "int"})
    engine.create_tables([counter])
    for n in range(200):
        engine.transact([Put(ITEMS, {"batch": "b", "n": n, "size": 1, "payload": "p"})])
        engine.update(counter, {"id": "c"}, Change(add={"n": 1}))
    copy = tmp_path / "copy.db"
    engine.backup(str(copy))
    engine.close()
    restored = SqliteEngine(str(copy))
    restored.create_tables([ITEMS, counter])
    assert len(restored.query(ITEMS, "b").items) == 200
    assert restored.get(counter, {"id": "c"})["n"] == 200
    with pytest.raises(ConditionFailed):
        from cloudstrype.metadata.engine import Condition
        restored.put(counter, {"id": "c", "n": 0}, Condition.absent())
    restored.close()


def test_the_write_ahead_log_is_copied_beside_the_writer_and_stays_bounded(tmp_path,
                                                                             monkeypatch):
    from cloudstrype.metadata import sqlite as sqlite_module
    # Small bounds, so a few megabytes of writes cross them many times over.
    monkeypatch.setattr(sqlite_module, "_WAL_PAGES", 256)             # 1 MiB
    monkeypatch.setattr(sqlite_module, "_WAL_BYTES_KEPT", 2 * 1024 * 1024)
    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_COMMITS", 4)
    path = tmp_path / "meta.db"
    wal = Path(str(path) + "-wal")
    engine = SqliteEngine(str(path), primary=True)
    engine.create_tables([ITEMS])
    largest_log = 0
    for batch in range(300):                          # about 12 MB of rows in all
        engine.transact([Put(ITEMS, {"batch": f"b{batch}", "n": n, "size": 20,
                                     "payload": os.urandom(1000).hex()}) for n in range(20)])
        largest_log = max(largest_log, wal.stat().st_size)
    # The log was copied into the database while the engine was open, and never grew past
    # about its bound (it is cut back to _WAL_BYTES_KEPT whenever it starts again).
    assert path.stat().st_size > 8 * 1024 * 1024
    assert largest_log < 4 * 1024 * 1024, largest_log
    engine.close()
    reopened = SqliteEngine(str(path), primary=True)
    reopened.create_tables([ITEMS])
    assert len(reopened.query(ITEMS, "b299").items) == 20
    assert reopened.get(ITEMS, {"batch": "b0", "n": 19})["size"] == 20
    reopened.close()


def test_a_checkpoint_runs_beside_the_writer_without_waiting_for_the_log_to_fill(
        tmp_path, monkeypatch):
    from cloudstrype.metadata import sqlite as sqlite_module
    monkeypatch.setattr(sqlite_module, "_WAL_PAGES", 10**6)          # the writer never does
    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_COMMITS", 4)
    path = tmp_path / "meta.db"
    engine = SqliteEngine(str(path), primary=True)
    engine.create_tables([ITEMS])
    for batch in range(100):                          # about 4 MB of rows
        engine.transact([Put(ITEMS, {"batch": f"b{batch}", "n": n, "size": 20,
                                     "payload": os.urandom(1000).hex()}) for n in range(20)])
    deadline = time.monotonic() + 10
    while path.stat().st_size < 3 * 1024 * 1024 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size >= 3 * 1024 * 1024, "nothing was copied out of the log"
    engine.close()
