"""Abandoned upload sessions do not leak storage: once a session expires, the scheduled sweep
(run by the local stack as EventBridge runs it in AWS) frees the chunks of the parts it received,
and leaves committed files alone."""
import os
import time
import uuid
from pathlib import Path

from cloudstrype.tree.store import DIRECTORY, Node

from tests.filesystem.conftest import stack_tree_store
from tests.support import Api, register_and_login, start_stack, unique, wait_for

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


def _shares(user) -> int:
    listed = user.api.get("/api/cloud/storages").json()["storages"]
    return sum(int(s["shares"]) for s in listed)


def _stored_bytes(user) -> int:
    return user.api.get("/api/filesystem/usage").json()["stored_bytes"]


def test_long_work_answers_at_once_and_the_sweep_finishes_it(tmp_path):
    """Aborting a session declared at 512 GiB (131,072 parts) and deleting a tree of 8,000
    nodes answer at once; the scheduled sweep frees what they held afterwards (issue 12 #4)."""
    stack = start_stack(tmp_path / "data", env={"CLOUDSTRYPE_SCHEDULE_INTERVAL": "2",
                                                "CLOUDSTRYPE_UPLOAD_TTL_SECONDS": "100"})
    try:
        user = register_and_login(Api(stack.url))
        for n in range(2):
            added = user.api.post("/api/cloud/storages", json={
                "kind": "local", "name": f"disk{n}", "config": {"path": unique("long")}})
            assert added.status_code == 201, added.text

        huge = user.api.post("/api/filesystem/uploads", json={
            "path": "/", "name": "huge.bin", "size": 512 * 1024 ** 3})
        assert huge.status_code == 201, huge.text
        session = huge.json()
        assert session["parts"] == 131072
        for part in range(2):
            stored = user.api.put(
                f"/api/filesystem/uploads/{session['upload_id']}/parts/{part}",
                data=os.urandom(session["part_size"]))
            assert stored.status_code == 200, stored.text
        assert _shares(user) == 4 and _stored_bytes(user) == 2 * session["part_size"]
        started = time.monotonic()
        aborted = user.api.delete(f"/api/filesystem/uploads/{session['upload_id']}")
        assert aborted.status_code == 204, aborted.text
        assert time.monotonic() - started < 2
        assert user.api.get(f"/api/filesystem/uploads/{session['upload_id']}").status_code \
            == 404
        assert user.api.get("/api/filesystem/usage").json()["open_uploads"] == 0
        wait_for(lambda: _shares(user) == 0, timeout=60,
                 what="the sweep to free the aborted session's parts")
        assert _stored_bytes(user) == 0

        # A tree of 8,000 directories and one real file, deleted in one request.
        kept = user.api.post("/api/filesystem/data", files={"file": ("f", b"in the tree")},
                             data={"path": "/big/inner", "name": "f.txt"})
        assert kept.status_code == 201, kept.text
        big = user.api.get("/api/filesystem/info", params={"path": "/big"}).json()
        trees = stack_tree_store(stack)
        stamp = time.time()
        seeded = [Node(user.user_id, uuid.uuid4().hex, DIRECTORY, f"d{n:05d}", big["id"], stamp,
                       stamp) for n in range(8_000)]
        trees.create_many([(node, None) for node in seeded])
        assert _shares(user) == 2
        started = time.monotonic()
        deleted = user.api.delete(f"/api/filesystem/info/{big['id']}")
        assert deleted.status_code == 204, deleted.text
        assert time.monotonic() - started < 5
        # Gone for the user at once: by path, by id, and its name is free again.
        assert user.api.get("/api/filesystem/info", params={"path": "/big"}).status_code == 404
        assert user.api.get(f"/api/filesystem/info/{big['id']}").status_code == 404
        assert user.api.post("/api/filesystem/dirs", json={"path": "/big"}).status_code == 201
        # In the trash now; deleted from there for good, it too answers at once.
        started = time.monotonic()
        assert user.api.delete(f"/api/filesystem/trash/{big['id']}").status_code == 204
        assert time.monotonic() - started < 5
        assert trees.get_node(user.user_id, seeded[-1].node_id) is not None  # not freed yet
        wait_for(lambda: trees.get_node(user.user_id, seeded[-1].node_id) is None
                 and trees.get_node(user.user_id, big["id"]) is None, timeout=120,
                 what="the sweep to free the deleted tree")
        assert _shares(user) == 0 and _stored_bytes(user) == 0
        trees.engine.close()
    finally:
        assert stack.stop() == 0, stack.log()


def test_revoking_a_share_ends_the_sessions_opened_through_it_and_frees_their_parts(tmp_path):
    """The parts of a recipient's unfinished session count in the owner's stored bytes, and the
    owner can neither see nor abort that session: revoking the share aborts it, and the sweep
    frees its parts (not a week later, when it would expire)."""
    # (the sweep leaves an aborted session a tenth of the TTL, at most a minute, for parts
    # still on their way)
    stack = start_stack(tmp_path / "data", env={"CLOUDSTRYPE_SCHEDULE_INTERVAL": "2",
                                                "CLOUDSTRYPE_UPLOAD_TTL_SECONDS": "100"})
    try:
        api = Api(stack.url)
        owner, recipient = register_and_login(api), register_and_login(api)
        for n in range(2):
            added = owner.api.post("/api/cloud/storages", json={
                "kind": "local", "name": f"disk{n}", "config": {"path": unique("revoked")}})
            assert added.status_code == 201, added.text
        assert owner.api.post("/api/filesystem/dirs", json={"path": "/in"}).status_code == 201
        shared = owner.api.post("/api/filesystem/shares", json={
            "path": "/in", "user": recipient.username, "level": "write"}).json()["id"]
        through = {"share": shared}
        sessions = [recipient.api.post("/api/filesystem/uploads", params=through, json={
            "name": f"{n}.bin", "size": 2 * MiB}).json() for n in range(2)]
        for session in sessions:
            assert recipient.api.put(
                f"/api/filesystem/uploads/{session['upload_id']}/parts/0", params=through,
                data=os.urandom(2 * MiB)).status_code == 200
        assert _stored_bytes(owner) == 4 * MiB and _shares(owner) == 4
        # The owner's own session stays: only what came through the share ends.
        own = owner.api.post("/api/filesystem/uploads", json={"name": "own.bin", "size": 10})
        assert own.status_code == 201, own.text

        assert owner.api.delete(f"/api/filesystem/shares/{shared}").status_code == 204
        assert recipient.api.get("/api/filesystem/usage").json()["open_uploads"] == 0
        wait_for(lambda: _shares(owner) == 0, timeout=60,
                 what="the sweep to free the revoked share's sessions' parts")
        assert _stored_bytes(owner) == 0
        assert owner.api.get(f"/api/filesystem/uploads/{own.json()['upload_id']}"
                             ).json()["committed"] is False
    finally:
        assert stack.stop() == 0, stack.log()
