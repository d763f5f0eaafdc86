"""The scheduled scrub, run by the local stack as EventBridge would run it in AWS."""
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
