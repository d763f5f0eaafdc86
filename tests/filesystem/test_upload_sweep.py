"""Abandoned upload sessions do not leak storage: once a session expires, the scheduled sweep
(run by the local stack as EventBridge runs it in AWS) frees the chunks of the parts it received,
and leaves committed files alone."""
import os
from pathlib import Path

from tests.support import Api, register_and_login, start_stack, wait_for

MiB = 1024 * 1024


def _share_files(disks: list[Path]) -> int:
    return sum(1 for disk in disks for path in disk.rglob("*")
               if path.is_file() and not path.name.startswith("."))


def test_expired_sessions_free_their_chunks_and_committed_files_stay(tmp_path):
    stack = start_stack(tmp_path / "data", env={"CLOUDSTRYPE_SCHEDULE_INTERVAL": "2",
                                                "CLOUDSTRYPE_UPLOAD_TTL_SECONDS": "6"})
    try:
        user = register_and_login(Api(stack.url))
        disks = [tmp_path / f"disk{n}" for n in range(2)]
        for disk in disks:
            added = user.api.post("/api/cloud/storages", json={
                "kind": "local", "name": disk.name, "config": {"path": str(disk)}})
            assert added.status_code == 201, added.text
        data = os.urandom(2 * MiB + 100)

        # One session committed in time: its chunks are the file's.
        kept = user.api.post("/api/filesystem/uploads", json={
            "path": "/", "name": "kept.bin", "size": len(data)}).json()
        for part in range(kept["parts"]):
            body = data[part * kept["part_size"]:(part + 1) * kept["part_size"]]
            assert user.api.put(f"/api/filesystem/uploads/{kept['upload_id']}/parts/{part}",
                                data=body).status_code == 200
        committed = user.api.post(f"/api/filesystem/uploads/{kept['upload_id']}/commit")
        assert committed.status_code == 201, committed.text
        file_id = committed.json()["id"]
        with_file = _share_files(disks)

        # One abandoned after one part of three (raid1(2): two shares of that part's chunk).
        left = user.api.post("/api/filesystem/uploads", json={
            "path": "/", "name": "left.bin", "size": 3 * MiB * 4}).json()
        part = os.urandom(left["part_size"])
        assert user.api.put(f"/api/filesystem/uploads/{left['upload_id']}/parts/0",
                            data=part).status_code == 200
        assert _share_files(disks) == with_file + 2

        # Expired: refused at once with 410; then the sweep frees the shares and forgets it.
        wait_for(lambda: user.api.get(f"/api/filesystem/uploads/{left['upload_id']}")
                  .status_code == 404, what="the sweep to forget the expired session")
        assert _share_files(disks) == with_file
        listed = user.api.get("/api/cloud/storages").json()["storages"]
        assert sum(int(s["shares"]) for s in listed) == with_file

        download = user.api.get(f"/api/filesystem/data/{file_id}")
        assert download.status_code == 200 and download.content == data
    finally:
        assert stack.stop() == 0, stack.log()
