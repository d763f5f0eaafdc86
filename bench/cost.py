"""Cost benchmark: what each operation makes AWS do, counted, and what that costs.

Run: ``python -m bench --only cost`` (``-- --repeat N``).

A stack in aws-emulated mode (infra/local/aws.py: the same handlers against DynamoDB, KMS, S3 and
Cognito as moto emulates them) runs in this process, so every AWS call the handlers make passes
through botocore here and is counted by operation (``BaseClient._make_api_call`` is wrapped):

- DynamoDB calls, and their capacity units by DynamoDB's rules from the sizes of the items
  involved (reads: 4 KB units, half for eventually consistent reads, a query by the total size
  it reads; writes: 1 KB units of the larger of the item before and after, which the counter
  reads aside, uncounted; transactions twice). moto reports no real consumed capacity, so the
  units are computed, not read back.
- S3 calls on the staging bucket, KMS calls, and any other AWS call.
- Lambda: one invocation per REST request (each route is its own function), with the duration
  of the handler as measured here (chalice app call) and the memory the stack gives the service
  (infra/constructs/lambdas.py); GB-s = memory x duration. Durations are this machine's, not
  Lambda's.
- Bytes to and from the storages (the user's own: cloud accounts, buckets, members) and to the
  client: what leaves AWS is charged as data transfer out.

The operations, each repeated ``--repeat`` times after one uncounted warm-up: a small-file
upload (4 KiB, one request), a 4 MiB upload, a 4 MiB ranged read, a listing of a 1,000-entry
directory; and DynamoDB bytes stored per 4 MiB file and per small file (table scans before and
after). The storages are three ``local`` storages with ``raid1(2)`` and ``aes256-gcm``.

Prices: PRICES below, us-east-1 on-demand list prices (free tiers ignored), as of PRICES_AS_OF.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "layers/shared/python"))

PRICES_AS_OF = "2025-06-01"
PRICES = {   # USD, us-east-1, on-demand list prices
    "apigw_rest_per_million": 3.50,          # REST API requests (first 333 M a month)
    "waf_per_million": 0.60,                 # WAF requests (the REST stage's web ACL)
    "lambda_per_million": 0.20,              # Lambda requests
    "lambda_per_gb_s": 0.0000166667,         # Lambda x86 duration
    "ddb_wru_per_million": 0.625,            # DynamoDB on-demand write request units
    "ddb_rru_per_million": 0.125,            # DynamoDB on-demand read request units
    "ddb_gb_month": 0.25,                    # DynamoDB Standard table storage
    "s3_put_per_thousand": 0.005,            # S3 Standard PUT, COPY, POST, LIST
    "s3_get_per_thousand": 0.0004,           # S3 Standard GET and the rest
    "kms_per_10k": 0.03,                     # KMS symmetric requests
    "secrets_per_10k": 0.05,                 # Secrets Manager API calls
    "egress_per_gb": 0.09,                   # data transfer out to the internet (first 10 TB)
}
SMALL_FILE = 4 * 1024
CHUNK = 4 * 1024 * 1024
LISTING = 1000
DURABILITY, ENCRYPTION = "raid1(2)", "aes256-gcm"
S3_PUT_CLASS = {"PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart",
                "CompleteMultipartUpload", "ListObjectsV2", "ListObjects", "ListBuckets"}


# -- DynamoDB item sizes (the documented rules) ----------------------------------------------

def _value_size(value: dict) -> int:
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = len(inner.lstrip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "B":
        return len(inner) if isinstance(inner, (bytes, bytearray)) else len(inner.encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode()) for v in inner)
    if kind == "NS":
        return sum(_value_size({"N": v}) for v in inner)
    if kind == "BS":
        return sum(len(v) for v in inner)
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    return 0


def item_size(item: dict | None) -> int:
    return sum(len(k.encode()) + _value_size(v) for k, v in (item or {}).items())


class Meter:
    """Everything counted, by phase (the operation being measured; None: not counted)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.phase: str | None = None
        self.calls: dict = collections.defaultdict(collections.Counter)
        self.units: dict = collections.defaultdict(collections.Counter)
        self.invocations: dict = collections.defaultdict(list)      # phase -> [(service, ms)]
        self.bytes: dict = collections.defaultdict(collections.Counter)
        self._aside = threading.local()
        self._keys: dict[str, list[str]] = {}
        self.staging_bucket = ""

    def add(self, kind: str, counter: str, amount: float = 1) -> None:
        if self.phase is None:
            return
        with self.lock:
            getattr(self, kind)[self.phase][counter] += amount

    # -- botocore -------------------------------------------------------------------------
    def install(self) -> None:
        from botocore.client import BaseClient
        original = BaseClient._make_api_call
        meter = self

        def counted(client, operation, params):
            if getattr(meter._aside, "on", False) or meter.phase is None:
                return original(client, operation, params)
            service = client.meta.service_model.service_name
            before = meter._dynamodb_before(client, original, operation, params) \
                if service == "dynamodb" else None
            response = original(client, operation, params)
            if service == "dynamodb":
                meter._dynamodb_units(client, original, operation, params, response, before)
            elif service == "s3":
                bucket = params.get("Bucket", "")
                label = "staging" if bucket == meter.staging_bucket else bucket
                meter.add("calls", f"s3 {label} {operation}")
            meter.add("calls", f"{service} {operation}")
            return response

        BaseClient._make_api_call = counted

    def _aside_call(self, client, original, operation, params):
        self._aside.on = True
        try:
            return original(client, operation, params)
        finally:
            self._aside.on = False

    def _key(self, client, original, table: str, item: dict) -> dict:
        if table not in self._keys:
            described = self._aside_call(client, original, "DescribeTable", {"TableName": table})
            self._keys[table] = [k["AttributeName"] for k in described["Table"]["KeySchema"]]
        return {name: item[name] for name in self._keys[table] if name in item}

    def _stored_size(self, client, original, table: str, key: dict) -> int:
        got = self._aside_call(client, original, "GetItem",
                               {"TableName": table, "Key": key, "ConsistentRead": True})
        return item_size(got.get("Item"))

    def _writes(self, operation: str, params: dict) -> list[tuple[str, str, dict, dict | None]]:
        """(kind, table, key-or-item, new item) of each item a write touches."""
        if operation == "PutItem":
            return [("put", params["TableName"], params["Item"], params["Item"])]
        if operation in ("UpdateItem", "DeleteItem"):
            return [(operation, params["TableName"], params["Key"], None)]
        if operation == "TransactWriteItems":
            found = []
            for entry in params["TransactItems"]:
                kind, body = next(iter(entry.items()))
                if kind == "Put":
                    found.append(("put", body["TableName"], body["Item"], body["Item"]))
                else:
                    found.append((kind, body["TableName"], body["Key"], None))
            return found
        if operation == "BatchWriteItem":
            found = []
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        item = request["PutRequest"]["Item"]
                        found.append(("put", table, item, item))
                    else:
                        found.append(("DeleteItem", table, request["DeleteRequest"]["Key"], None))
            return found
        return []

    def _dynamodb_before(self, client, original, operation, params):
        sizes = []
        for _kind, table, key_or_item, _new in self._writes(operation, params):
            key = self._key(client, original, table, key_or_item)
            sizes.append(self._stored_size(client, original, table, key))
        return sizes

    def _dynamodb_units(self, client, original, operation, params, response, before):
        if operation in ("GetItem", "Query", "Scan"):
            factor = 1.0 if params.get("ConsistentRead") else 0.5
            if operation == "GetItem":
                size = item_size(response.get("Item"))
            else:
                size = sum(item_size(i) for i in response.get("Items", []))
            self.add("units", "rru", max(1, math.ceil(size / 4096)) * factor)
        elif operation == "BatchGetItem":
            for table, items in response.get("Responses", {}).items():
                factor = 1.0 if params["RequestItems"][table].get("ConsistentRead") else 0.5
                for item in items:
                    self.add("units", "rru", max(1, math.ceil(item_size(item) / 4096)) * factor)
        elif operation == "TransactGetItems":
            for entry in response.get("Responses", []):
                self.add("units", "rru", 2 * max(1, math.ceil(item_size(entry.get("Item")) / 4096)))
        else:
            writes = self._writes(operation, params)
            factor = 2 if operation == "TransactWriteItems" else 1
            for (kind, table, key_or_item, new), old in zip(writes, before or [], strict=False):
                if kind == "put":
                    size = max(old, item_size(new))
                elif kind == "UpdateItem" or kind == "Update":
                    key = self._key(client, original, table, key_or_item)
                    size = max(old, self._stored_size(client, original, table, key))
                else:
                    size = old
                self.add("units", "wru", factor * max(1, math.ceil(size / 1024)))

    def table_bytes(self) -> int:
        """The size of every item in every table (read aside, uncounted)."""
        import boto3
        client = boto3.client("dynamodb")
        self._aside.on = True
        try:
            total = 0
            for table in client.list_tables()["TableNames"]:
                for page in client.get_paginator("scan").paginate(TableName=table):
                    total += sum(item_size(i) + 100 for i in page["Items"])  # +100: per item
            return total
        finally:
            self._aside.on = False


def install_lambda_and_storage_meters(meter: Meter) -> None:
    from cloudstrype.api.service import ServiceApp
    from cloudstrype.backends.local import LocalBackend

    call = ServiceApp.__call__

    def timed(app, event, context):
        started = time.perf_counter()
        try:
            return call(app, event, context)
        finally:
            if meter.phase is not None:
                with meter.lock:
                    meter.invocations[meter.phase].append(
                        (app.service, (time.perf_counter() - started) * 1000))
    ServiceApp.__call__ = timed
    put, get = LocalBackend.put, LocalBackend.get

    def counted_put(backend, key, data):
        meter.add("bytes", "to storages", len(data))
        meter.add("calls", "storage put")
        return put(backend, key, data)

    def counted_get(backend, key):
        data = get(backend, key)
        meter.add("bytes", "from storages", len(data))
        meter.add("calls", "storage get")
        return data
    LocalBackend.put, LocalBackend.get = counted_put, counted_get


# -- the operations --------------------------------------------------------------------------

def run_operations(url: str, meter: Meter, repeat: int, root: Path) -> dict:
    from tests.support import Api, register_and_login
    api = Api(url)
    user = register_and_login(api)
    owner = user.api.get("/api/auth/me").json()["user_id"]
    for n in range(3):
        created = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"disk{n}", "config": {"path": f"disk{n}"}})
        assert created.status_code == 201, created.text

    def upload(name: str, data: bytes, folder: str = "/bench") -> dict:
        response = user.api.post("/api/filesystem/data", data={
            "path": folder, "name": name, "durability": DURABILITY, "encryption": ENCRYPTION},
            files={"file": (name, data)})
        assert response.status_code == 201, response.text
        meter.add("bytes", "from client", len(data))
        return response.json()

    results = {}

    def measure(phase: str, action) -> None:
        action(f"warm-{phase}")             # uncounted: first-use work (the user's key, caches)
        for n in range(repeat):
            meter.phase = phase
            try:
                action(f"{phase}-{n}")
            finally:
                meter.phase = None

    measure("small-file upload", lambda name: upload(f"{name}.txt", os.urandom(SMALL_FILE)))
    measure("4 MiB upload", lambda name: upload(f"{name}.bin", os.urandom(CHUNK)))
    big = upload("read-me.bin", os.urandom(CHUNK))

    def read(_name):
        response = user.api.get(f"/api/filesystem/data/{big['id']}",
                                headers={"Range": f"bytes=0-{CHUNK - 1}"})
        assert response.status_code == 206 and len(response.content) == CHUNK, response.text
        meter.add("bytes", "to client", len(response.content))
    measure("4 MiB ranged read", read)

    from cloudstrype.tree import tree
    for n in range(LISTING):
        tree.make_dirs(owner, f"/many/entry-{n:04}")

    def listing(_name):
        response = user.api.get("/api/filesystem/info",
                                params={"path": "/many", "depth": 1, "limit": LISTING})
        assert response.status_code == 200, response.text
        meter.add("bytes", "to client", len(response.content))
    measure("1,000-entry listing", listing)

    before = meter.table_bytes()
    for n in range(repeat):
        upload(f"stored-{n}.txt", os.urandom(SMALL_FILE), "/stored")
    results["table bytes per small file"] = (meter.table_bytes() - before) / repeat
    before = meter.table_bytes()
    for n in range(repeat):
        upload(f"stored-{n}.bin", os.urandom(CHUNK), "/stored")
    results["table bytes per 4 MiB file"] = (meter.table_bytes() - before) / repeat
    return results


# -- costs -----------------------------------------------------------------------------------

def per_operation(meter: Meter, phase: str, repeat: int) -> dict:
    from infra.constructs.lambdas import DEFAULT_MEMORY_MB, MEMORY_MB
    calls = {k: v / repeat for k, v in meter.calls[phase].items()}
    units = {k: v / repeat for k, v in meter.units[phase].items()}
    moved = {k: v / repeat for k, v in meter.bytes[phase].items()}
    invocations = meter.invocations[phase]
    gb_s = sum(MEMORY_MB.get(s, DEFAULT_MEMORY_MB) / 1024 * math.ceil(ms) / 1000
               for s, ms in invocations) / repeat
    lambda_ms = sum(ms for _, ms in invocations) / repeat
    requests = len(invocations) / repeat
    egress = moved.get("to storages", 0) + moved.get("to client", 0)
    s3_put = sum(v for k, v in calls.items() if k.startswith("s3 staging ") and
                 k.split()[-1] in S3_PUT_CLASS)
    s3_get = sum(v for k, v in calls.items() if k.startswith("s3 staging ")) - s3_put
    kms = sum(v for k, v in calls.items() if k.startswith("kms "))
    secrets = sum(v for k, v in calls.items() if k.startswith("secretsmanager "))
    p = PRICES
    cost = {
        "API Gateway + WAF": requests * (p["apigw_rest_per_million"] + p["waf_per_million"])
        / 1e6,
        "Lambda": requests * p["lambda_per_million"] / 1e6 + gb_s * p["lambda_per_gb_s"],
        "DynamoDB": units.get("wru", 0) * p["ddb_wru_per_million"] / 1e6 +
        units.get("rru", 0) * p["ddb_rru_per_million"] / 1e6,
        "S3 staging": s3_put * p["s3_put_per_thousand"] / 1e3 +
        s3_get * p["s3_get_per_thousand"] / 1e3,
        "KMS": kms * p["kms_per_10k"] / 1e4 + secrets * p["secrets_per_10k"] / 1e4,
        "egress": egress / 1e9 * p["egress_per_gb"],
    }
    return {"requests": requests, "lambda_ms": lambda_ms, "gb_s": gb_s, "calls": calls,
            "units": units, "bytes": moved, "egress": egress, "cost": cost,
            "total": sum(cost.values())}


def report(meter: Meter, repeat: int, stored: dict) -> None:
    phases = ["small-file upload", "4 MiB upload", "4 MiB ranged read", "1,000-entry listing"]
    rows = {phase: per_operation(meter, phase, repeat) for phase in phases}
    print(f"Per operation (mean of {repeat}); prices: us-east-1 on-demand list prices as of "
          f"{PRICES_AS_OF}")
    for phase, row in rows.items():
        ddb = sum(v for k, v in row["calls"].items() if k.startswith("dynamodb "))
        print(f"\n## {phase}: {row['requests']:.0f} Lambda invocation(s), "
              f"{row['lambda_ms']:.0f} ms here, {row['gb_s']:.4f} GB-s; DynamoDB {ddb:.1f} calls, "
              f"{row['units'].get('rru', 0):.1f} RRU, {row['units'].get('wru', 0):.1f} WRU; "
              f"egress {row['egress'] / 1e6:.3f} MB; total ${row['total']:.8f}")
        for name, count in sorted(row["calls"].items()):
            if not name.startswith("s3 ") or name.startswith("s3 staging"):
                print(f"    {name:<40} {count:8.1f}")
        print("    cost: " + ", ".join(f"{k} ${v:.8f}" for k, v in row["cost"].items()))
    small, big = rows["small-file upload"], rows["4 MiB upload"]
    chunks_per_tb = 1e12 / CHUNK
    per_small = stored["table bytes per small file"]
    per_big = stored["table bytes per 4 MiB file"]
    print(f"\n## stored: DynamoDB {per_small:.0f} B per small file, {per_big:.0f} B per 4 MiB "
          "file (items + 100 B overhead each)")
    tb_month = per_big * chunks_per_tb / 1e9 * PRICES["ddb_gb_month"]
    print(f"per TB-month (4 MiB files): DynamoDB storage {per_big * chunks_per_tb / 1e9:.2f} GB "
          f"-> ${tb_month:.2f}; writing the TB once: ${big['total'] * chunks_per_tb:.2f} "
          f"(of which egress to the storages ${big['cost']['egress'] * chunks_per_tb:.2f})")
    million = per_small * 1e6 / 1e9
    print(f"per 1 M small files: DynamoDB storage {million:.2f} GB -> "
          f"${million * PRICES['ddb_gb_month']:.2f}/month; uploading them one by one: "
          f"${small['total'] * 1e6:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench --only cost")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from infra.local import aws
    from infra.local.server import LocalStack
    from tests.support import free_port

    meter = Meter()
    meter.staging_bucket = aws.STAGING_BUCKET
    meter.install()
    install_lambda_and_storage_meters(meter)
    with tempfile.TemporaryDirectory(prefix="cost-") as tmp:
        root = Path(tmp)
        stack = LocalStack("127.0.0.1", free_port(), root / "data", mode="aws-emulated")
        result: dict = {}

        async def drive():
            ready, stop = asyncio.Event(), asyncio.Event()
            serving = asyncio.create_task(stack.run(ready, stop))
            await ready.wait()
            try:
                result.update(await asyncio.to_thread(
                    run_operations, stack.url, meter, args.repeat, root))
            finally:
                stop.set()
                await serving
        asyncio.run(drive())
    report(meter, args.repeat, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
