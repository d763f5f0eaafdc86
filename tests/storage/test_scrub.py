"""The scheduled scrub, run by the local stack as EventBridge would run it in AWS."""
import contextlib
import os

from tests.storage.conftest import Storages
from tests.support import Api, register_and_login, start_stack, wait_for


def test_scrub_repairs_damaged_chunks_and_finishes_drains(tmp_path, external_s3):
    stack = start_stack(tmp_path / "data", env={"CLOUDSTRYPE_SCHEDULE_INTERVAL": "2"})
    try:
        user = register_and_login(Api(stack.url))
        disks = Storages(user, tmp_path, *external_s3)
        ids = [disks.add_local(f"disk{n}")["id"] for n in range(4)]
        data = os.urandom(150_000)
        stored = user.api.post("/api/chunk", files={"file": ("c", data)},
                               data={"durability": "rs(2,1)"}).json()
        shares = {s["index"]: s["storage_id"] for s in stored["shares"]}
        disks.corrupt(stored["chunk_id"], 0, shares[0])
        assert user.api.get(f"/api/chunk/{stored['chunk_id']}").content == data

        def healthy():
            info = user.api.get(f"/api/chunk/{stored['chunk_id']}/info").json()
            return info["healthy_shares"] == 3 and not info["needs_repair"] and info
        info = wait_for(healthy, what="the scrub to repair the corrupt share")
        assert user.api.get(f"/api/chunk/{stored['chunk_id']}").content == data

        # Draining a storage marks it; the scrub moves what a request left behind.
        holder = info["shares"][1]["storage_id"]
        assert user.api.post(f"/api/cloud/storages/{holder}/drain").status_code in (200, 202)
        wait_for(lambda: user.api.delete(f"/api/cloud/storages/{holder}").status_code == 204,
                 what="the drained storage to be deletable")
        assert holder in ids
        assert user.api.get(f"/api/chunk/{stored['chunk_id']}").content == data
    finally:
        assert stack.stop() == 0, stack.log()


@contextlib.contextmanager
def _three_disks(tmp_path, external_s3):
    """A stack whose scrub runs every 2 s, and a user with three local storages."""
    stack = start_stack(tmp_path / "data", env={"CLOUDSTRYPE_SCHEDULE_INTERVAL": "2"})
    try:
        user = register_and_login(Api(stack.url))
        disks = Storages(user, tmp_path, *external_s3)
        for n in range(3):
            disks.add_local(f"disk{n}")
        yield user, disks
    finally:
        assert stack.stop() == 0, stack.log()


def _store_rs(user, size: int) -> tuple[dict, bytes, dict]:
    """A chunk of `size` random bytes as rs(2,1): (the answer, the bytes, index -> storage)."""
    data = os.urandom(size)
    stored = user.api.post("/api/chunk", files={"file": ("c", data)},
                           data={"durability": "rs(2,1)"}).json()
    return stored, data, {s["index"]: s["storage_id"] for s in stored["shares"]}


def test_a_missing_share_chunk_info_finds_is_repaired_by_the_scrub(tmp_path, external_s3):
    """A parity share no read touches: chunk info (the web UI's details, the dashboard) finds
    it missing and queues it, and the scrub brings it back."""
    with _three_disks(tmp_path, external_s3) as (user, disks):
        stored, data, shares = _store_rs(user, 150_000)
        disks.destroy(stored["chunk_id"], 2, shares[2])
        assert user.api.get(f"/api/chunk/{stored['chunk_id']}").content == data   # no parity

        info = user.api.get(f"/api/chunk/{stored['chunk_id']}/info").json()
        assert [s["health"] for s in info["shares"]] == ["ok", "ok", "missing"], info

        def healthy():
            info = user.api.get(f"/api/chunk/{stored['chunk_id']}/info").json()
            return info["healthy_shares"] == 3 and info
        # Info checks that each share exists where its record says.
        info = wait_for(healthy, what="the scrub to write the missing share again")
        assert [s["health"] for s in info["shares"]] == ["ok", "ok", "ok"], info
        assert user.api.get(f"/api/chunk/{stored['chunk_id']}").content == data


def test_the_scrub_finds_a_gone_and_a_changed_share_no_read_touches(tmp_path, external_s3):
    """Nothing reads the parity shares and nobody asks for chunk info: the scrub's own checks
    find one share gone and one changed in place, repair both, and the storages say so."""
    with _three_disks(tmp_path, external_s3) as (user, disks):
        stored = [_store_rs(user, size) for size in (150_000, 120_000)]
        (gone, _, gone_on), (changed, _, changed_on) = stored
        disks.destroy(gone["chunk_id"], 2, gone_on[2])
        disks.corrupt(changed["chunk_id"], 2, changed_on[2], offset=1000)

        def found():
            checks = {s["id"]: s["check"] for s in
                      user.api.get("/api/cloud/storages").json()["storages"]}
            return (checks[gone_on[2]]["missing_found"] == 1
                    and checks[changed_on[2]]["corrupt_found"] == 1 and checks)
        checks = wait_for(found, what="the scrub's checks to find both shares")
        assert all(c["last_full_pass"] for c in checks.values()), checks
        for answer, data, _ in stored:
            info = user.api.get(f"/api/chunk/{answer['chunk_id']}/info").json()
            assert [s["health"] for s in info["shares"]] == ["ok", "ok", "ok"], info
            assert user.api.get(f"/api/chunk/{answer['chunk_id']}").content == data
        # Repaired means rewritten: the share found gone is back on a storage.
        fresh = user.api.get(f"/api/chunk/{gone['chunk_id']}/info").json()["shares"][2]
        assert disks.share_objects(gone["chunk_id"], 2, fresh["storage_id"])


def test_a_share_that_cannot_be_deleted_now_is_deleted_by_the_scrub_later(tmp_path):
    """Deleting a chunk while one of its storages is unreachable leaves that share behind;
    the scrub deletes it once the storage answers again."""
    import boto3
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.server import ThreadedMotoServer

    from tests.support import free_port

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3_server.start()
    stack = start_stack(tmp_path / "data", env={"CLOUDSTRYPE_SCHEDULE_INTERVAL": "2",
                                                "CLOUDSTRYPE_OUTBOUND_ALLOW": f"127.0.0.1:{port}"})
    try:
        user = register_and_login(Api(stack.url))
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="y")
        disks = Storages(user, tmp_path, endpoint, s3)
        bucket = f"flaky-{user.username}"
        disks.add_local("disk")
        disks.add_s3("flaky", bucket)
        stored = user.api.post("/api/chunk", files={"file": ("c", os.urandom(50_000))},
                               data={"durability": "raid1(2)"})
        assert stored.status_code == 201, stored.text
        chunk_id = stored.json()["chunk_id"]
        assert len(s3.list_objects_v2(Bucket=bucket).get("Contents", [])) == 1

        s3_server.stop()                 # the provider is unreachable
        deleted = user.api.delete(f"/api/chunk/{chunk_id}")
        assert deleted.status_code == 204, deleted.text
        assert user.api.get(f"/api/chunk/{chunk_id}").status_code == 404
        assert not [p for p in (tmp_path / "disk").rglob("*")
                    if p.is_file() and not p.name.startswith(".")]
        # moto's S3 lives in this test process: the share is still in the bucket.
        assert len(get_backend("s3")[DEFAULT_ACCOUNT_ID]["aws"].buckets[bucket].keys) == 1

        s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        s3_server.start()                # the provider answers again
        wait_for(lambda: not s3.list_objects_v2(Bucket=bucket).get("Contents"),
                 what="the scrub to delete the share left in the bucket")
        storages = {s["name"]: s for s in user.api.get("/api/cloud/storages").json()["storages"]}
        assert storages["flaky"]["shares"] == 0
        assert user.api.delete(f"/api/cloud/storages/{storages['flaky']['id']}").status_code == 204
    finally:
        assert stack.stop() == 0, stack.log()
        s3_server.stop()
