"""Compaction over real HTTP, run by the local stack's timer as EventBridge runs it in AWS:
deleting most of a batch's files leaves dead bytes in its pack (shown by GET /usage); the
scheduled job moves the rest into a new pack, frees the old one's shares on every storage,
and every remaining file reads back byte for byte — also while being read during the run."""
import random
import threading

from tests.filesystem.conftest import download
from tests.filesystem.test_batch import batch
from tests.support import Api, register_and_login, start_stack, wait_for

KiB = 1024


def share_files(disks) -> set:
    return {p for d in disks for p in d.rglob("*")
            if p.is_file() and not p.name.startswith((".", "~"))}


def test_the_scheduled_job_repacks_and_frees_dead_bytes(tmp_path):
    stack = start_stack(tmp_path / "data", env={"CLOUDSTRYPE_SCHEDULE_INTERVAL": "3"})
    try:
        user = register_and_login(Api(stack.url))
        disks = [tmp_path / f"d{n}" for n in range(3)]
        for n, path in enumerate(disks):
            assert user.api.post("/api/cloud/storages", json={
                "kind": "local", "name": f"disk{n}",
                "config": {"path": str(path)}}).status_code == 201
        rng = random.Random(2026)
        files = {f"f{n}.bin": rng.randbytes(rng.randint(1, 4 * KiB)) for n in range(120)}
        body = batch(user, "/many", list(files.items()), durability="raid1(3)")
        ids = {r["name"]: r["file"]["id"] for r in body["results"]}
        old_shares = share_files(disks)
        assert len(old_shares) == 3, "one pack, one share per storage"

        kept = dict(list(files.items())[::5])
        for name in files:
            if name not in kept:
                assert user.api.delete(f"/api/filesystem/info/{ids[name]}").status_code in (
                    200, 204)
        assert user.api.delete("/api/filesystem/trash").status_code == 200
        usage = user.api.get("/api/filesystem/usage").json()
        assert usage["dead_bytes"] > usage["live_bytes"] > 0, usage
        assert usage["trash_bytes"] == 0, "emptying the trash left nothing in it"
        before = usage

        problems, stop = [], threading.Event()

        def reader():
            while not stop.is_set():
                name = rng.choice(list(kept))
                try:
                    if download(user, ids[name]) != kept[name]:
                        problems.append(f"{name}: other bytes")
                except AssertionError as exc:
                    problems.append(f"{name}: {exc}")
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            def compacted():
                now = user.api.get("/api/filesystem/usage").json()
                return now["dead_bytes"] == 0 and now
            usage = wait_for(compacted, what="the scheduled compaction", timeout=60)
        finally:
            stop.set()
            thread.join()
        assert problems == []
        assert usage["stored_bytes"] == before["live_bytes"], "the dead bytes freed, no more"
        shares = share_files(disks)
        assert len(shares) == 3 and not shares & old_shares, "the old pack freed, a new one"
        for name, content in kept.items():
            assert download(user, ids[name]) == content
    finally:
        assert stack.stop() == 0, stack.log()
