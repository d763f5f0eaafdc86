"""Metadata benchmark: the store operations on SQLite beside DynamoDB-on-moto, and a library of
a million files.

Run: ``python -m bench --only metadata`` (``make bench`` runs every part), with ``-- --files N
--ops N`` to change the workload.

1. Operations. Each engine operation (put, conditional put, get, update with a counter, a page
   of 100 from a partition, a 10-item transaction, delete), timed on the SQLite engine (a real
   file, commits fsynced) and on the DynamoDB engine against moto in this process, the AWS
   adapter's test stand-in. The ratio is DynamoDB-on-moto's time over SQLite's (how many times
   faster the embedded default is); moto's figures are not AWS's and are shown only as that.
2. Library. ``--files`` files (1,000,000 by default) in a realistic tree, written through the
   tree store into a stack's data directory: one folder of 10,000 files and project folders
   of ten sub-folders with 1,000 files each. Then, in the store: list the 10,000-entry folder
   (every page), stat (a node by id, an entry by name), create one file, rename a folder
   holding 10,000 descendants; the database's size; and through a running ``cloudstrype serve``
   on that data directory: the same listing over HTTP (every page) and the server's resident
   memory.

Targets (issue 10): list 10,000 entries < 100 ms in the store and < 500 ms over HTTP; stat
< 1 ms in the store; server RSS < 300 MB with the library loaded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "layers/shared/python"))
from tests.support import Api, login, register_and_login, start_stack  # noqa: E402

BIG_DIR_ENTRIES = 10_000
FILES_PER_SUBDIR = 1_000
SUBDIRS_PER_PROJECT = 10


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


# -- 1. operations -----------------------------------------------------------------------------

def _operations(engine, ops: int) -> dict[str, float]:
    from cloudstrype.metadata.engine import Change, Condition, Put
    from cloudstrype.metadata.schema import Table

    table = Table(name=f"bench-{uuid.uuid4().hex[:6]}", hash_key="owner", range_key="id",
                  fields={"owner": "str", "id": "str", "size": "int", "name": "str",
                          "meta": "json"})
    engine.create_tables([table])
    item = {"size": 1234, "name": "report.pdf", "meta": {"type": "file", "etag": "x" * 32}}
    for n in range(100):
        engine.put(table, {"owner": "list", "id": f"{n:05d}", **item})
    results: dict[str, list[float]] = {}

    def timed(name, call):
        started = time.perf_counter()
        call()
        results.setdefault(name, []).append(time.perf_counter() - started)

    # timed() calls each lambda at once; the defaults only pin this iteration's n and key.
    for n in range(ops):
        key = {"owner": "o", "id": f"{n:06d}"}
        timed("put", lambda key=key: engine.put(table, {**key, **item}))
        timed("put if absent", lambda n=n: engine.put(table, {"owner": "c", "id": f"{n:06d}",
                                                              **item}, Condition.absent()))
        timed("get", lambda key=key: engine.get(table, key))
        timed("update (counter)", lambda: engine.update(table, {"owner": "n", "id": "ctr"},
                                                        Change(add={"size": 1})))
        timed("query 100", lambda: engine.query(table, "list", limit=100))
        timed("transaction of 10", lambda n=n: engine.transact(
            [Put(table, {"owner": "t", "id": f"{n:06d}-{k}", **item}) for k in range(10)]))
        timed("delete", lambda key=key: engine.delete(table, key))
    return {name: _median_us(samples) for name, samples in results.items()}


def _dynamodb_operations(ops: int) -> dict[str, float]:
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    from cloudstrype.metadata.dynamodb import DynamoEngine
    from moto import mock_aws
    with mock_aws():
        return _operations(DynamoEngine(prefix="bench-", region="us-east-1"), ops)


def bench_operations(ops: int) -> None:
    from cloudstrype.metadata.sqlite import SqliteEngine
    with tempfile.TemporaryDirectory() as tmp:
        engine = SqliteEngine(str(Path(tmp) / "metadata.db"), primary=True)
        sqlite = _operations(engine, ops)
        engine.close()
    dynamo = _dynamodb_operations(max(50, ops // 10))
    print(f"  {'operation':<22}{'SQLite µs':>12}{'DynamoDB-on-moto µs':>22}{'ratio':>10}")
    for name, sqlite_us in sqlite.items():
        print(f"  {name:<22}{sqlite_us:>12.1f}{dynamo[name]:>22.1f}"
              f"{dynamo[name] / sqlite_us:>9.1f}×")


# -- 2. the library ----------------------------------------------------------------------------

def _generate(store, owner: str, files: int) -> dict:
    """The tree, written in transactions of many files through TreeStore.create_many."""
    from cloudstrype.tree.store import DIRECTORY, FILE, ROOT, Node, Version

    now = time.time()
    store.ensure_root(owner, now)

    def directory(parent: str, name: str) -> Node:
        node = Node(owner, uuid.uuid4().hex, DIRECTORY, name, parent, now, now)
        store.create(node)
        return node

    def file_pair(parent: str, name: str):
        node_id, version_id = uuid.uuid4().hex, uuid.uuid4().hex
        size = 1024 + (hash(name) % 3072)
        node = Node(owner, node_id, FILE, name, parent, now, now, version_id=version_id,
                    size=size, content_type="application/octet-stream", etag=version_id,
                    durability="raid1(3)", encryption="aes256-gcm")
        return node, Version(owner, node_id, version_id, size, 4 << 20, 1, version_id,
                             "application/octet-stream", "raid1(3)", "aes256-gcm", now)

    def fill(parent: str, count: int, prefix: str) -> None:
        batch = []
        for n in range(count):
            batch.append(file_pair(parent, f"{prefix}-{n:05d}.dat"))
            if len(batch) == 500:
                store.create_many(batch)
                batch = []
        if batch:
            store.create_many(batch)

    big = directory("root", "big")
    fill(big.node_id, min(BIG_DIR_ENTRIES, files), "file")
    left = files - min(BIG_DIR_ENTRIES, files)
    projects = directory("root", "projects")
    first_project = None
    number = 0
    while left > 0:
        project = directory(projects.node_id, f"project-{number:04d}")
        first_project = first_project or project
        for sub in range(SUBDIRS_PER_PROJECT):
            if left <= 0:
                break
            folder = directory(project.node_id, f"folder-{sub:02d}")
            count = min(FILES_PER_SUBDIR, left)
            fill(folder.node_id, count, "doc")
            left -= count
        number += 1
    return {"big": big, "project": first_project, "projects": projects, "ROOT": ROOT}


def _list_all_store(store, owner: str, directory_id: str) -> int:
    count, cursor = 0, None
    while True:
        entries, cursor = store.list_entries(owner, directory_id, 1000, cursor)
        count += len(entries)
        if not cursor:
            return count


def _list_all_http(api: Api, path: str) -> int:
    count, cursor = 0, None
    while True:
        params = {"path": path, "depth": 1, "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        answer = api.get("/api/filesystem/info", params=params)
        answer.raise_for_status()
        body = answer.json()
        count += len(body["children"])
        cursor = body.get("next_cursor")
        if not cursor:
            return count


def _rss_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def bench_library(files: int) -> bool:
    """The library part, in a data directory removed afterwards whatever happens (it holds
    1.4 GB at a million files)."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-metadata-"))
    try:
        return _bench_library(files, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _bench_library(files: int, data_dir: Path) -> bool:
    from cloudstrype.metadata import schema
    from cloudstrype.metadata.sqlite import SqliteEngine
    from cloudstrype.tree.store import TreeStore

    met = True
    stack = start_stack(data_dir)
    user = register_and_login(Api(stack.url))
    stack.stop()

    engine = SqliteEngine(str(data_dir / "metadata.db"), primary=True)
    engine.create_tables(schema.all_tables())
    store = TreeStore(engine)
    started = time.perf_counter()
    made = _generate(store, user.user_id, files)
    took = time.perf_counter() - started
    print(f"  generated {files:,} files in {took:.0f} s ({files / took:,.0f} files/s)")

    owner, big = user.user_id, made["big"]
    listing = []
    for _ in range(5):
        t0 = time.perf_counter()
        count = _list_all_store(store, owner, big.node_id)
        listing.append(time.perf_counter() - t0)
    assert count == min(BIG_DIR_ENTRIES, files), count
    entries, _ = store.list_entries(owner, big.node_id, 1000)
    stats_by_id, stats_by_name = [], []
    for entry in entries:
        t0 = time.perf_counter()
        store.get_node(owner, entry.node_id)
        stats_by_id.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        store.get_entry(owner, big.node_id, entry.name)
        stats_by_name.append(time.perf_counter() - t0)
    from cloudstrype.tree.store import FILE, Node
    creates = []
    for n in range(200):
        now = time.time()
        node = Node(owner, uuid.uuid4().hex, FILE, f"new-{n}.txt", big.node_id, now, now)
        t0 = time.perf_counter()
        store.create(node)
        creates.append(time.perf_counter() - t0)
    project = made["project"]
    rename = None
    if project is not None:
        t0 = time.perf_counter()
        store.move(store.get_node(owner, project.node_id), made["projects"].node_id,
                   project.name + "-renamed")
        rename = time.perf_counter() - t0
    engine.close()
    size_mb = sum(p.stat().st_size for p in data_dir.glob("metadata.db*")) / 1e6

    list_ms = statistics.median(listing) * 1000
    stat_us = max(_median_us(stats_by_id), _median_us(stats_by_name))
    print(f"  store: list {count:,} entries {list_ms:.1f} ms (target < 100 ms); stat by id "
          f"{_median_us(stats_by_id):.0f} µs, by name {_median_us(stats_by_name):.0f} µs "
          f"(target < 1000 µs); create {_median_us(creates):.0f} µs; rename of a folder "
          f"holding {SUBDIRS_PER_PROJECT * FILES_PER_SUBDIR:,} descendants "
          f"{(rename or 0) * 1000:.1f} ms; database {size_mb:,.0f} MB")
    met &= list_ms < 100 and stat_us < 1000

    stack = start_stack(data_dir, port=stack.port)
    try:
        api = Api(stack.url).as_user(login(Api(stack.url), user.username,
                                           user.password)["access_token"])
        _list_all_http(api, "/big")                      # warm: the first request loads code
        http = []
        for _ in range(5):
            t0 = time.perf_counter()
            listed = _list_all_http(api, "/big")
            http.append(time.perf_counter() - t0)
        rss, peak = _rss_mb(stack.process.pid)
        http_ms = statistics.median(http) * 1000
        print(f"  HTTP: list {listed:,} entries {http_ms:.0f} ms (target < 500 ms); server RSS "
              f"{rss:.0f} MB, peak {peak:.0f} MB (target < 300 MB)")
        met &= http_ms < 500 and rss < 300
    finally:
        stack.stop()
    requests.Session().close()
    return met


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench --only metadata")
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args(argv)
    print("  operations, median per call:")
    bench_operations(args.ops)
    print(f"  library of {args.files:,} files:")
    return 0 if bench_library(args.files) else 1
