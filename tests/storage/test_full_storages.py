"""Storages that are full: a write they refuse is a 422 that names them and says what to do,
never a 503 that sounds like an outage; nothing of the file is kept, and the next write is
placed knowing they are full."""
from __future__ import annotations

import os

from tests.support import assert_error, register_and_login


def _with_small_storages(api, tmp_path, prefix: str, capacity: int):
    """A new user with two local storages of `capacity` bytes each."""
    user = register_and_login(api)
    for n in range(2):
        made = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"{prefix}{n}",
            "config": {"path": str(tmp_path / f"{prefix}{n}"), "capacity": capacity}})
        assert made.status_code == 201, made.text
    return user


def test_a_write_to_full_storages_is_422_naming_them(api, tmp_path):
    user = _with_small_storages(api, tmp_path, "small", 1500)
    first = user.api.post("/api/filesystem/data", files={"file": ("a.bin", os.urandom(1000))},
                          data={"path": "/", "durability": "raid1(2)", "encryption": "none"})
    assert first.status_code == 201, first.text
    for name in ("b.bin", "c.bin"):
        refused = user.api.post("/api/filesystem/data",
                                files={"file": (name, os.urandom(1000))},
                                data={"path": "/", "durability": "raid1(2)",
                                      "encryption": "none"})
        error = assert_error(refused, 422, "not_enough_storages")
        assert "storages" in error["message"]
    listing = user.api.get("/api/filesystem/info", params={"path": "/"}).json()
    assert [c["name"] for c in listing["children"]] == ["a.bin"]
    shares = [p for n in range(2) for p in (tmp_path / f"small{n}").iterdir()
              if p.is_file() and not p.name.startswith((".", "~"))]
    assert len(shares) == 2, "only the first file's two shares"
    # Both storages stay usable (full is not down): a small file still fits.
    assert user.api.post("/api/filesystem/data", files={"file": ("d.bin", b"tiny")},
                         data={"path": "/", "durability": "raid1(2)",
                               "encryption": "none"}).status_code == 201


def test_a_batch_too_big_for_the_room_left_stores_each_file_that_fits(api, tmp_path):
    """Found by a sweep: storages with room for a few of a batch's files refused the whole
    pack, so every file failed. Smaller packs are tried: the files that fit are stored, and
    only the rest fail, each alone, naming the storages."""
    user = _with_small_storages(api, tmp_path, "near", 700_000)
    files = [("file", (f"f{n}.bin", os.urandom(200_000))) for n in range(8)]
    answer = user.api.post("/api/filesystem/batch", files=files,
                           data={"path": "/", "durability": "raid1(2)", "encryption": "none"})
    assert answer.status_code == 207, answer.text
    statuses = [r["status"] for r in answer.json()["results"]]
    stored = statuses.count(201)
    assert 1 <= stored <= 3 and set(statuses) <= {201, 422}, statuses
    for result in answer.json()["results"]:
        if result["status"] == 422:
            assert result["error"]["code"] == "not_enough_storages"
    listing = user.api.get("/api/filesystem/info", params={"path": "/"}).json()
    assert len(listing["children"]) == stored
