"""Per-user quota and session limits (issue 12, findings 10 and 11): bytes stored are counted as
they are written and deleted, a write past the quota is 413 naming the quota and the usage, and
upload sessions are bounded in number and declared size, refused before anything is saved."""
import os
import threading

import pytest

from tests.support import Api, assert_error, register_and_login, start_stack, unique, wait_for

MiB = 1024 * 1024
QUOTA = 8 * MiB
MAX_OPEN = 3


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("quota"), env={
        "CLOUDSTRYPE_QUOTA_BYTES": str(QUOTA), "CLOUDSTRYPE_MAX_OPEN_UPLOADS": str(MAX_OPEN)})
    yield Api(stack.url)
    assert stack.stop() == 0, stack.log()


@pytest.fixture
def quota_user(limited):
    user = register_and_login(limited)
    for n in range(2):
        added = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"q{n}", "config": {"path": unique("quota")}})
        assert added.status_code == 201, added.text
    assert user.api.put("/api/filesystem/settings",
                        json={"durability": "raid1(2)"}).status_code == 200
    return user


def _usage(user) -> dict:
    response = user.api.get("/api/filesystem/usage")
    assert response.status_code == 200, response.text
    return response.json()


def _upload(user, name: str, size: int):
    return user.api.post("/api/filesystem/data", files={"file": (name, os.urandom(size))},
                         data={"path": "/", "name": name})


def test_stored_bytes_are_counted_and_the_quota_is_413_naming_quota_and_usage(quota_user):
    assert _usage(quota_user) == {"stored_bytes": 0, "live_bytes": 0, "trash_bytes": 0,
                                  "dead_bytes": 0,
                                  "quota_bytes": QUOTA, "open_uploads": 0,
                                  "max_open_uploads": MAX_OPEN,
                                  "max_file_bytes": 1024 ** 4}
    first = _upload(quota_user, "a.bin", 3 * MiB)
    assert first.status_code == 201, first.text
    assert _upload(quota_user, "b.bin", 3 * MiB).status_code == 201
    assert _usage(quota_user)["stored_bytes"] == 6 * MiB

    refused = _upload(quota_user, "c.bin", 3 * MiB)
    error = assert_error(refused, 413, "quota_exceeded")
    assert error["details"] == {"quota_bytes": QUOTA, "stored_bytes": 6 * MiB,
                                "needed_bytes": 3 * MiB}
    assert str(QUOTA) in error["message"] and str(6 * MiB) in error["message"]
    assert _usage(quota_user)["stored_bytes"] == 6 * MiB
    listed = quota_user.api.get("/api/filesystem/info", params={"path": "/"}).json()
    assert sorted(c["name"] for c in listed["children"]) == ["a.bin", "b.bin"]

    # Raw chunks and blobs count too, and deleting gives the bytes back.
    chunk = quota_user.api.post("/api/chunk", files={"file": ("c", os.urandom(MiB))})
    assert chunk.status_code == 201, chunk.text
    blob = quota_user.api.post("/api/cloud/quota-blob", data=os.urandom(MiB))
    assert blob.status_code == 201, blob.text
    assert _usage(quota_user)["stored_bytes"] == 8 * MiB
    assert_error(quota_user.api.post("/api/cloud/quota-blob-2", data=b"1"), 413,
                 "quota_exceeded")
    assert_error(quota_user.api.post("/api/chunk", files={"file": ("c", b"1")}), 413,
                 "quota_exceeded")
    assert quota_user.api.delete(f"/api/chunk/{chunk.json()['chunk_id']}").status_code == 204
    assert quota_user.api.delete("/api/cloud/quota-blob").status_code == 204
    assert quota_user.api.delete(f"/api/filesystem/info/{first.json()['id']}").status_code \
        == 204
    # The trash counts until it is emptied.
    assert _usage(quota_user)["trash_bytes"] == 3 * MiB
    assert quota_user.api.delete("/api/filesystem/trash").status_code == 200
    wait_for(lambda: _usage(quota_user)["stored_bytes"] == 3 * MiB, timeout=30,
             what="the deleted file's bytes to be given back")
    assert _upload(quota_user, "c.bin", 3 * MiB).status_code == 201


def test_racing_writers_cannot_overshoot_the_quota_together(quota_user):
    answers = []
    start = threading.Barrier(6)

    def write(n: int) -> None:
        start.wait()
        answers.append(_upload(quota_user, f"race{n}.bin", 3 * MiB).status_code)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [201] * 2 + [413] * 4, answers
    assert _usage(quota_user)["stored_bytes"] == 6 * MiB


def test_a_session_larger_than_the_quota_left_is_refused_before_it_is_saved(quota_user):
    assert _upload(quota_user, "a.bin", 3 * MiB).status_code == 201
    refused = quota_user.api.post("/api/filesystem/uploads", json={"name": "big.bin",
                                                                   "size": 6 * MiB})
    assert_error(refused, 413, "quota_exceeded")
    assert _usage(quota_user)["open_uploads"] == 0


def test_a_5_tib_session_is_413_before_anything_is_saved(quota_user):
    for size in (5 * 1024 ** 4, 1024 ** 4 + 1):
        refused = quota_user.api.post("/api/filesystem/uploads", json={"name": "huge.bin",
                                                                       "size": size})
        error = assert_error(refused, 413, "file_too_large")
        assert error["details"]["max_file_bytes"] == 1024 ** 4
    assert _usage(quota_user)["open_uploads"] == 0


def test_open_sessions_are_bounded_and_freed_by_commit_and_abort(quota_user):
    sessions = []
    for n in range(MAX_OPEN):
        created = quota_user.api.post("/api/filesystem/uploads",
                                      json={"name": f"s{n}.bin", "size": 0})
        assert created.status_code == 201, created.text
        sessions.append(created.json()["upload_id"])
    assert _usage(quota_user)["open_uploads"] == MAX_OPEN
    one_more = {"name": "more.bin", "size": 0}
    error = assert_error(quota_user.api.post("/api/filesystem/uploads", json=one_more), 409,
                         "too_many_uploads")
    assert str(MAX_OPEN) in error["message"]

    assert quota_user.api.delete(f"/api/filesystem/uploads/{sessions[0]}").status_code == 204
    # Aborting twice, or committing the aborted one, frees nothing more.
    assert quota_user.api.delete(f"/api/filesystem/uploads/{sessions[0]}").status_code == 404
    assert quota_user.api.post(f"/api/filesystem/uploads/{sessions[0]}/commit").status_code \
        == 404
    committed = quota_user.api.post(f"/api/filesystem/uploads/{sessions[1]}/commit")
    assert committed.status_code == 201, committed.text
    assert quota_user.api.post(f"/api/filesystem/uploads/{sessions[1]}/commit").status_code \
        == 409
    assert _usage(quota_user)["open_uploads"] == 1
    for n in range(2):
        created = quota_user.api.post("/api/filesystem/uploads",
                                      json={"name": f"t{n}.bin", "size": 0})
        assert created.status_code == 201, created.text
    assert_error(quota_user.api.post("/api/filesystem/uploads", json=one_more), 409,
                 "too_many_uploads")


def _batch(user, files: dict[str, bytes]):
    return user.api.post("/api/filesystem/batch", data={"path": "/batch"},
                         files=[("file", (name, data)) for name, data in files.items()])


def test_a_batch_past_the_quota_answers_each_file_and_stores_what_fits(quota_user):
    """A batch is answered file by file (207), a quota too full for some of its files too: the
    files that cannot fit even alone are 413 each, and what fits is stored."""
    assert _upload(quota_user, "a.bin", 4 * MiB).status_code == 201
    assert _upload(quota_user, "b.bin", 4 * MiB - 100 * 1024).status_code == 201  # 100 KiB left
    answer = _batch(quota_user, {"fits.txt": os.urandom(20 * 1024),
                                 "too-big.txt": os.urandom(200 * 1024)})
    assert answer.status_code == 207, answer.text
    results = {r["name"]: r for r in answer.json()["results"]}
    assert results["fits.txt"]["status"] == 201, results
    assert results["too-big.txt"]["status"] == 413, results
    assert results["too-big.txt"]["error"]["code"] == "quota_exceeded", results
    stored = _usage(quota_user)["stored_bytes"]      # the file in its pack: + nonce and tag
    assert 8 * MiB - 80 * 1024 < stored < 8 * MiB - 80 * 1024 + 100, stored

    # No room at all: still each file's own answer.
    assert _upload(quota_user, "c.bin", 8 * MiB - stored).status_code == 201
    full = _batch(quota_user, {"x.txt": b"x" * 10, "y.txt": b"y" * 10})
    assert full.status_code == 207, full.text
    assert [r["status"] for r in full.json()["results"]] == [413, 413], full.text
    assert _usage(quota_user)["stored_bytes"] == 8 * MiB
