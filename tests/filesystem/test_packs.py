"""Packed files over real HTTP: a batch's small files share one chunk (so few share writes),
read back byte for byte with every scheme, past lost and corrupt shares; deleting some leaves
the others readable and the last frees the pack."""
import random
from pathlib import Path

import pytest

from tests.filesystem.conftest import download
from tests.filesystem.test_batch import batch
from tests.support import assert_error, register_and_login

KiB = 1024
SCHEMES = ["raid1(1)", "raid1(3)", "rs(2,1)", "rs(3,2)"]


def five_disks(api, root: Path, folder: str = "d", name: str = "disk"):
    """A new user with five local storages in `root` (folders `folder`0..4, named `name`0..4):
    (user, [storage directories])."""
    user = register_and_login(api)
    disks = []
    for n in range(5):
        path = root / f"{folder}{n}"
        response = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"{name}{n}", "config": {"path": str(path)}})
        assert response.status_code == 201, response.text
        disks.append(path)
    return user, disks


@pytest.fixture(scope="module")
def packer(api, tmp_path_factory):
    """A user with five local storages; returns (user, [storage directories])."""
    return five_disks(api, tmp_path_factory.mktemp("pack-disks"))


def shares(disks: list[Path]) -> list[Path]:
    return [p for d in disks for p in d.iterdir()
            if p.is_file() and not p.name.startswith((".", "~"))]


def pack_shares(disks: list[Path], before: set[Path]) -> dict[int, Path]:
    """The shares written since `before`, by index (one pack, one share per storage)."""
    new = [p for p in shares(disks) if p not in before]
    return {int(p.name.split(".")[2]): p for p in new}


def small_files(seed: str, count: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"s{n}.bin": rng.randbytes(rng.randint(1, 4 * KiB)) for n in range(count)}


def stored(user, directory: str, files: dict[str, bytes], **fields) -> dict[str, str]:
    body = batch(user, directory, list(files.items()), **fields)
    assert body["failed"] == 0, body
    return {r["name"]: r["file"]["id"] for r in body["results"]}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("encryption", ["aes256-gcm", "none"])
def test_packed_files_read_back_with_every_scheme(packer, scheme, encryption):
    user, disks = packer
    before = set(shares(disks))
    files = small_files(scheme + encryption, 40)
    ids = stored(user, f"/p/{encryption}/{scheme}", files, durability=scheme,
                 encryption=encryption)
    # One pack: one share per storage the scheme needs, for all 40 files.
    durability = {"raid1(1)": 1, "raid1(3)": 3, "rs(2,1)": 3, "rs(3,2)": 5}[scheme]
    assert len(pack_shares(disks, before)) == durability
    for name, content in files.items():
        assert download(user, ids[name]) == content
        info = user.api.get(f"/api/filesystem/info/{ids[name]}").json()
        assert (info["durability"], info["encryption"]) == (scheme, encryption)


@pytest.mark.parametrize("scheme,lose", [("raid1(3)", [0, 2]), ("rs(2,1)", [1]),
                                         ("rs(3,2)", [0, 1]), ("rs(3,2)", [2, 4])])
def test_packed_files_survive_lost_shares(packer, scheme, lose):
    user, disks = packer
    before = set(shares(disks))
    files = small_files(f"lose{scheme}{lose}", 30)
    ids = stored(user, f"/lose/{scheme}{lose[0]}{lose[1] if len(lose) > 1 else ''}", files,
                 durability=scheme)
    made = pack_shares(disks, before)
    for index in lose:
        made[index].unlink()
    for name, content in files.items():
        assert download(user, ids[name]) == content


@pytest.mark.parametrize("scheme", ["raid1(3)", "rs(3,2)"])
def test_packed_files_survive_a_corrupt_share(packer, scheme):
    user, disks = packer
    before = set(shares(disks))
    files = small_files(f"corrupt{scheme}", 30)
    ids = stored(user, f"/corrupt/{scheme}", files, durability=scheme)
    first = pack_shares(disks, before)[0]
    raw = bytearray(first.read_bytes())
    for at in range(0, len(raw), 97):          # damage every file's bytes in that share
        raw[at] ^= 0x5A
    first.write_bytes(bytes(raw))
    for name, content in files.items():
        assert download(user, ids[name]) == content


def test_deleting_packed_files_keeps_the_others_and_the_last_frees_the_pack(packer):
    user, disks = packer
    before = set(shares(disks))
    files = small_files("delete", 10)
    ids = stored(user, "/del", files, durability="raid1(2)")
    made = pack_shares(disks, before)
    assert len(made) == 2
    used = user.api.get("/api/filesystem/usage").json()["stored_bytes"]
    names = sorted(files)
    for name in names[:-1]:
        assert user.api.delete(f"/api/filesystem/info/{ids[name]}").status_code == 204
        assert user.api.delete(f"/api/filesystem/trash/{ids[name]}").status_code == 204
        survivor = names[-1]
        assert download(user, ids[survivor]) == files[survivor]
    # The pack stays (its dead bytes counted) while one file uses it.
    assert all(p.exists() for p in made.values())
    assert user.api.get("/api/filesystem/usage").json()["stored_bytes"] == used
    assert user.api.delete(f"/api/filesystem/info/{ids[names[-1]]}").status_code == 204
    assert user.api.delete(f"/api/filesystem/trash/{ids[names[-1]]}").status_code == 204
    assert not any(p.exists() for p in made.values())
    assert user.api.get("/api/filesystem/usage").json()["stored_bytes"] == used - sum(
        len(c) + 28 for c in files.values())


def test_share_writes_per_small_file(api, tmp_path):
    user = register_and_login(api)
    disks = [tmp_path / f"d{n}" for n in range(3)]
    for n, path in enumerate(disks):
        assert user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"d{n}", "config": {"path": str(path)}}).status_code == 201
    files = {f"f{n}.txt": random.Random(n).randbytes(1024 + n * 30) for n in range(100)}
    stored(user, "/hundred", files, durability="raid1(3)")
    assert len(shares(disks)) / len(files) <= 0.05


def test_a_pack_in_use_cannot_be_deleted_as_a_chunk(packer):
    user, disks = packer
    before = set(shares(disks))
    files = small_files("guard", 3)
    ids = stored(user, "/guard", files, durability="raid1(2)")
    chunk_id = pack_shares(disks, before)[0].name.split(".")[1]
    for route in ("/api/chunk/", "/api/cloud/"):
        error = assert_error(user.api.delete(f"{route}{chunk_id}"), 409, "chunk_in_use")
        assert "3 files" in error["message"]
    for name, content in files.items():
        assert download(user, ids[name]) == content


def test_a_files_chunk_cannot_be_deleted_or_named_through_the_chunk_apis(packer):
    """The chunk, cloud and array APIs delete a chunk by name: one holding a file's content
    (named in GET /api/filesystem/chunks) is refused, and the file still reads; nor can those
    APIs store a chunk of their own under such a name."""
    user, _ = packer
    content = random.Random("guarded").randbytes(4 * 1024 * 1024 + 7)
    answer = user.api.post("/api/filesystem/data", data={"path": "/guarded",
                                                          "durability": "raid1(2)"},
                           files={"file": ("big.bin", content)})
    assert answer.status_code == 201, answer.text
    file_id = answer.json()["id"]
    chunks = user.api.get(f"/api/filesystem/chunks/{file_id}").json()["chunks"]
    assert len(chunks) == 2
    for route in ("/api/chunk/", "/api/cloud/", "/api/array/"):
        error = assert_error(user.api.delete(f"{route}{chunks[0]}"), 409, "chunk_in_use")
        assert "delete the file instead" in error["message"]
    assert download(user, file_id) == content
    unused = chunks[0].rsplit("-", 1)[0] + "-99"
    for route in ("/api/cloud/", "/api/array/"):
        error = assert_error(user.api.post(f"{route}{unused}", data=b"x"), 400,
                             "reserved_chunk_id")
        assert unused in error["message"]
    # Other names stay the caller's to choose and delete.
    assert user.api.post("/api/cloud/v1-mine", data=b"mine").status_code == 201
    assert user.api.delete("/api/cloud/v1-mine").status_code == 204


def test_the_chunks_holding_a_file_are_named_by_the_server(packer):
    """GET /api/filesystem/chunks/{id} lists the chunks holding a version (and says when that is
    a pack shared with other small files), so a client never derives chunk ids itself: a packed
    file and content stored once live in chunks named after other files' versions."""
    user, _ = packer
    ids = stored(user, "/where", small_files("where", 3), durability="raid1(2)")
    big = random.Random("big").randbytes(4 * 1024 * 1024 + 10)
    made = []
    for name in ("one.bin", "two.bin"):
        answer = user.api.post("/api/filesystem/data", data={"path": "/where-big",
                                                              "durability": "raid1(2)"},
                               files={"file": (name, big)})
        assert answer.status_code == 201, answer.text
        made.append(answer.json())

    def current(file_id: str) -> dict:
        answer = user.api.get(f"/api/filesystem/chunks/{file_id}")
        assert answer.status_code == 200, answer.text
        info = user.api.get(f"/api/filesystem/info/{file_id}").json()
        assert answer.json()["version"] == info["version"]
        return answer.json()

    packed = [current(file_id) for file_id in ids.values()]
    assert all(v["packed"] and len(v["chunks"]) == 1 for v in packed)
    assert len({v["chunks"][0] for v in packed}) == 1            # the same pack
    first, second = current(made[0]["id"]), current(made[1]["id"])
    assert not first["packed"] and len(first["chunks"]) == 2
    assert second["chunks"] == first["chunks"]                  # stored once: the first's
    for version in (*packed, second):
        for chunk_id in version["chunks"]:
            info = user.api.get(f"/api/chunk/{chunk_id}/info")
            assert info.status_code == 200, info.text
            assert info.json()["readable"]
    # An earlier version by id; another user's file, an unknown version, or inside a share: no.
    one = current(made[0]["id"])
    assert user.api.get(f"/api/filesystem/chunks/{made[0]['id']}",
                        params={"version": one["version"]}).json() == one
    assert_error(user.api.get(f"/api/filesystem/chunks/{made[0]['id']}",
                              params={"version": "0" * 17}), 404, "version_not_found")
    stranger = register_and_login(user.api.__class__(user.api.base_url))
    assert stranger.api.get(f"/api/filesystem/chunks/{made[0]['id']}").status_code == 404
    assert_error(user.api.get(f"/api/filesystem/chunks/{made[0]['id']}",
                              params={"share": "s" + "0" * 31}), 400, "not_in_a_share")


def test_a_packed_file_past_its_redundancy_names_every_storage_away(api, tmp_path):
    """The ranged read's storage was left out of the whole chunk's read and then of the message
    (only two of three away were named), and each storage's reason was cut at 120 characters,
    mid-sentence, losing its advice (concurrency sweep)."""
    user, disks = five_disks(api, tmp_path, "away", "away")
    ids = stored(user, "/away", small_files("away", 10), durability="rs(3,2)")
    made = pack_shares(disks, set())
    gone = sorted({made[i].parent for i in (0, 1, 2)})
    for disk in gone:
        disk.rename(disk.with_name(disk.name + "-moved"))
    try:
        refused = user.api.get(f"/api/filesystem/data/{ids['s0.bin']}")
        error = assert_error(refused, 503, "not_enough_shares")
        for disk in gone:
            assert f"{disk.name}: " in error["message"], error["message"]
        assert error["message"].count("Put the folder back") == 3, error["message"]
    finally:
        for disk in gone:
            disk.with_name(disk.name + "-moved").rename(disk)
