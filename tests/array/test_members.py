"""Three member programs on one machine store and serve chunks through the local stack's API."""
from __future__ import annotations

import os
import time
from datetime import datetime

import pytest

from tests.array.conftest import MEMBER_BYTES, listing, wait_for
from tests.support import assert_error, unique

SIZES = [0, 1, 100_000, 4 * 1024 * 1024]


def put_chunk(user, data: bytes, durability: str, encryption: str = "aes256-gcm") -> dict:
    response = user.api.post("/api/chunk", files={"file": ("chunk", data)},
                             data={"durability": durability, "encryption": encryption})
    assert response.status_code == 201, response.text
    return response.json()


def read_chunk(user, chunk_id: str) -> bytes:
    response = user.api.get(f"/api/chunk/{chunk_id}")
    assert response.status_code == 200, response.text
    return response.content


def test_three_members_are_listed_online_with_their_space(trio):
    user, _group, started = trio
    listed = listing(user)
    for member in started:
        info = listed[member.member_id]
        assert info["online"] is True and info["status"] == "active"
        assert info["name"] == member.name
        assert info["capacity"] == MEMBER_BYTES       # --size 50MB, the disk has more free
        assert info["storage_id"] == member.storage_id
        seen = datetime.fromisoformat(info["last_seen"]).timestamp()
        assert time.time() - seen < 120
    one = user.api.get(f"/api/array/members/{started[0].member_id}")
    assert one.status_code == 200 and one.json()["name"] == started[0].name
    assert_error(user.api.get("/api/array/members/no-such-member-id"), 404, "member_not_found")


@pytest.mark.parametrize("durability", ["raid1(3)", "rs(2,1)"])
@pytest.mark.parametrize("size", SIZES)
def test_chunks_round_trip_with_one_share_on_each_member(trio, durability, size):
    user, _group, started = trio
    data = os.urandom(size)
    stored = put_chunk(user, data, durability)
    assert {s["storage_id"] for s in stored["shares"]} == {m.storage_id for m in started}
    for member in started:
        # Exactly one share of the chunk, durable in the member's folder.
        assert len(member.chunk_files(stored["chunk_id"])) == 1, member.share_files()
    assert read_chunk(user, stored["chunk_id"]) == data
    info = user.api.get(f"/api/chunk/{stored['chunk_id']}/info").json()
    assert [s["health"] for s in info["shares"]] == ["ok"] * 3


def test_array_blob_is_stored_as_given_on_n_members_and_deleted(trio):
    user, _group, started = trio
    data = os.urandom(300_000)
    blob = unique("blob")
    response = user.api.post(f"/api/array/{blob}?replicas=2", data=data)
    assert response.status_code == 201, response.text
    holders = {m["id"] for m in response.json()["members"]}
    assert len(holders) == 2 and holders <= {m.member_id for m in started}
    assert response.json()["encryption"] == "none"
    for member in started:
        files = member.chunk_files(blob)
        if member.member_id in holders:
            assert [f.read_bytes() for f in files] == [data]    # the body itself, as given
        else:
            assert files == []
    got = user.api.get(f"/api/array/{blob}")
    assert got.status_code == 200 and got.content == data
    assert user.api.delete(f"/api/array/{blob}").status_code == 204
    wait_for(lambda: all(not m.chunk_files(blob) for m in started), 10, "shares deleted")
    assert_error(user.api.get(f"/api/array/{blob}"), 404, "chunk_not_found")


def test_more_replicas_than_members_is_a_clear_422(trio):
    user, _group, _started = trio
    error = assert_error(user.api.post(f"/api/array/{unique('big')}?replicas=4", data=b"x"),
                         422, "not_enough_storages")
    assert "4" in error["message"]


def test_corrupt_share_in_a_member_folder_is_caught_and_the_read_is_right(trio):
    user, _group, started = trio
    by_storage = {m.storage_id: m for m in started}
    for durability in ("raid1(3)", "rs(2,1)"):
        data = os.urandom(200_000)
        stored = put_chunk(user, data, durability)
        chunk_id = stored["chunk_id"]
        # Share 0 is fetched first: flip a byte of it on its member's disk.
        holder = by_storage[next(s["storage_id"] for s in stored["shares"] if s["index"] == 0)]
        [path] = holder.chunk_files(chunk_id, 0)
        damaged = bytearray(path.read_bytes())
        damaged[len(damaged) // 2] ^= 0x01
        path.write_bytes(bytes(damaged))
        assert read_chunk(user, chunk_id) == data
        info = user.api.get(f"/api/chunk/{chunk_id}/info").json()
        health = {s["index"]: s["health"] for s in info["shares"]}
        assert health[0] == "damaged", health      # the pipeline's hash caught it
        # The member hashes its shares in place: it names the same share, and nothing else.
        verified = user.api.post(f"/api/array/members/{holder.member_id}/verify")
        assert verified.status_code == 200, verified.text
        bad = verified.json()["bad"]
        assert {"chunk_id": chunk_id, "index": 0, "problem": "corrupt"} in bad
        assert all(b["chunk_id"] != chunk_id or b["index"] == 0 for b in bad)
        path.write_bytes(bytes(damaged[:10]))     # now short as well: still caught
        assert read_chunk(user, chunk_id) == data


def test_verify_of_a_clean_member_finds_nothing(trio):
    user, _group, started = trio
    stored = put_chunk(user, os.urandom(50_000), "raid1(3)")
    target = started[1]
    result = user.api.post(f"/api/array/members/{target.member_id}/verify").json()
    assert result["checked"] >= 1 and result["remaining"] == 0
    assert not [b for b in result["bad"] if b["chunk_id"] == stored["chunk_id"]]


def test_repair_replaces_a_corrupt_blob_share_on_a_member(trio):
    user, _group, started = trio
    data = os.urandom(120_000)
    blob = unique("repair")
    response = user.api.post(f"/api/array/{blob}?replicas=2", data=data)
    assert response.status_code == 201, response.text
    held_by = {h["id"] for h in response.json()["members"]}
    holders = [m for m in started if m.member_id in held_by]
    [path] = holders[0].chunk_files(blob)
    path.write_bytes(b"garbage" + path.read_bytes()[7:])
    repaired = user.api.post(f"/api/chunk/{blob}/repair")
    assert repaired.status_code == 200, repaired.text
    assert len(repaired.json()["repaired"]) == 1

    def copies():
        found = {m.name: [f.read_bytes() for f in m.chunk_files(blob)] for m in started}
        return found if sorted(len(v) for v in found.values()) == [0, 1, 1] else None
    # Two good copies on two members again; the corrupt file is gone.
    found = wait_for(copies, 10, "two copies after the repair")
    assert [c for files in found.values() for c in files] == [data, data]
    assert user.api.get(f"/api/array/{blob}").content == data


def test_killed_member_loses_nothing_and_comes_back_as_itself(trio):
    user, group, started = trio
    written = {}
    for durability in ("raid1(3)", "rs(2,1)"):
        for size in (1, 150_000, 4 * 1024 * 1024):
            data = os.urandom(size)
            written[put_chunk(user, data, durability)["chunk_id"]] = data
    blobs = {}
    for _ in range(3):
        blob, data = unique("kb"), os.urandom(70_000)
        assert user.api.post(f"/api/array/{blob}?replicas=2", data=data).status_code == 201
        blobs[blob] = data
    victim = started[0]
    before = listing(user)[victim.member_id]
    victim.kill()
    gone = group.wait_online(user, victim, online=False, timeout=10)
    assert gone["connected_since"] is None
    assert all(listing(user)[m.member_id]["online"] for m in started[1:])
    for chunk_id, data in written.items():
        started_at = time.monotonic()
        assert read_chunk(user, chunk_id) == data
        # An offline member is skipped at once, never waited for.
        assert time.monotonic() - started_at < 5
    for blob, data in blobs.items():
        got = user.api.get(f"/api/array/{blob}")
        assert got.status_code == 200 and got.content == data
    # New writes go to the members that are there; more shares than that waits for the one
    # away: a 503 naming it, to retry (nothing stored with fewer shares than asked).
    fresh = put_chunk(user, b"while one is away", "raid1(2)")
    assert victim.storage_id not in {s["storage_id"] for s in fresh["shares"]}
    waiting = user.api.post("/api/chunk", files={"file": ("c", b"x")},
                            data={"durability": "rs(2,1)"})
    error = assert_error(waiting, 503, "storages_unavailable")
    assert "offline" in error["message"] and int(waiting.headers["Retry-After"]) > 0, error
    # The same folder comes back as the same member, with its shares.
    group.restart(user, victim)
    back = listing(user)[victim.member_id]
    assert back["online"] and back["status"] == "active"
    assert back["last_seen"] > before["last_seen"]
    for other in started[1:]:
        other.kill()
    try:
        for chunk_id, data in written.items():
            if user.api.get(f"/api/chunk/{chunk_id}/info").json()["durability"] == "raid1(3)":
                assert read_chunk(user, chunk_id) == data      # from the restarted member alone
    finally:
        for other in started[1:]:
            group.restart(user, other)


def _bytes_read(member) -> int:
    """What the member program has read from files so far (Linux's count; its sockets are read
    with recv, which that count leaves out). A share it sends is read first."""
    io = dict(line.split(": ") for line in
              (open(f"/proc/{member.process.pid}/io").read().splitlines()))
    return int(io["rchar"])


def test_a_packed_file_read_from_members_moves_about_its_own_size(trio):
    """A small file lives in a pack (a chunk of many files, one share on each member): reading
    it has a member send the file's own bytes, not the pack's share."""
    user, _group, started = trio
    assert user.api.put("/api/filesystem/settings", json={
        "durability": "raid1(3)", "encryption": "aes256-gcm"}).status_code == 200
    files = {f"p{n}.bin": os.urandom(4 * 1024) for n in range(200)}
    response = user.api.post("/api/filesystem/batch", data={"path": "/packed"},
                             files=[("file", item) for item in files.items()])
    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201] * len(files)
    pack_shares = [max(m.share_files(), key=lambda p: p.stat().st_size) for m in started]
    assert all(p.stat().st_size > 200 * 4 * 1024 for p in pack_shares)   # one pack, whole

    wanted = results[123]["file"]
    before = sum(_bytes_read(m) for m in started)
    read = user.api.get(f"/api/filesystem/data/{wanted['id']}")
    assert read.status_code == 200, read.text
    assert read.content == files[wanted["name"]]
    moved = sum(_bytes_read(m) for m in started) - before
    # The file's 4 KiB (sealed) were read and sent by a member; a whole share is 800 KiB.
    assert 4 * 1024 <= moved <= 64 * 1024, moved
