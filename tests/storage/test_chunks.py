"""The chunk pipeline over real HTTP: round trips, lost and corrupt shares, ownership."""
import itertools
import os

import pytest

from tests.support import assert_error, register_and_login

SIZES = [0, 1, 4095, 4 * 1024 * 1024]
ENCRYPTIONS = ["aes256-gcm", "aes256-md5", "none"]
DURABILITIES = ["raid1(1)", "raid1(3)", "rs(3,2)", "rs(2,1)", "rs(4,1)"]


def store(user, data: bytes, durability: str | None = None, encryption: str | None = None):
    fields = {}
    if durability:
        fields["durability"] = durability
    if encryption:
        fields["encryption"] = encryption
    response = user.api.post("/api/chunk", files={"file": ("chunk", data)}, data=fields)
    assert response.status_code == 201, response.text
    return response.json()


def read(user, chunk_id: str):
    return user.api.get(f"/api/chunk/{chunk_id}")


@pytest.mark.parametrize("encryption", ENCRYPTIONS)
@pytest.mark.parametrize("durability", DURABILITIES)
def test_round_trip_every_scheme_and_size(five_storages, encryption, durability):
    user = five_storages.user
    for size in SIZES:
        data = os.urandom(size)
        stored = store(user, data, durability, encryption)
        assert stored["size"] == size
        assert stored["encryption"] == encryption and stored["durability"] == durability
        holders = [s["storage_id"] for s in stored["shares"]]
        assert len(holders) == len(set(holders)), "two shares on one storage"
        response = read(user, stored["chunk_id"])
        assert response.status_code == 200
        assert response.content == data, f"{encryption} {durability} {size} B differs"


def test_defaults_are_aes256_gcm_and_raid1_2(five_storages):
    stored = store(five_storages.user, b"defaults")
    assert stored["encryption"] == "aes256-gcm" and stored["durability"] == "raid1(2)"


def test_seed_unnamed_data_part_is_accepted(five_storages):
    user = five_storages.user
    boundary = "seedboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"durability\"\r\n\r\n"
            f"raid1(2)\r\n--{boundary}\r\nContent-Disposition: form-data\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + b"\x00seed\xff" + \
        f"\r\n--{boundary}--\r\n".encode()
    response = user.api.post("/api/chunk", data=body,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 201, response.text
    assert read(user, response.json()["chunk_id"]).content == b"\x00seed\xff"


def test_stored_shares_are_not_the_plaintext(five_storages):
    data = b"a very recognisable plaintext " * 100
    stored = store(five_storages.user, data, "raid1(3)")
    for share in stored["shares"]:
        for item in five_storages.share_objects(stored["chunk_id"], share["index"],
                                                share["storage_id"]):
            content = item.read_bytes() if hasattr(item, "read_bytes") else \
                five_storages.s3.get_object(Bucket=item[0], Key=item[1])["Body"].read()
            assert b"recognisable plaintext" not in content


@pytest.mark.parametrize("durability", ["raid1(3)", "rs(3,2)"])
def test_every_loss_up_to_the_redundancy_still_reads(five_storages, durability):
    user = five_storages.user
    total, tolerated = (3, 2) if durability == "raid1(3)" else (5, 2)
    for lost in itertools.chain.from_iterable(
            itertools.combinations(range(total), n) for n in range(1, tolerated + 1)):
        data = os.urandom(100_000)
        stored = store(user, data, durability)
        by_index = {s["index"]: s["storage_id"] for s in stored["shares"]}
        for index in lost:
            five_storages.destroy(stored["chunk_id"], index, by_index[index])
        response = read(user, stored["chunk_id"])
        assert response.status_code == 200, f"lost {lost}: {response.text}"
        assert response.content == data, f"lost {lost}: wrong bytes"


@pytest.mark.parametrize("durability, lost", [("raid1(3)", (0, 1, 2)), ("rs(3,2)", (0, 2, 4)),
                                              ("rs(3,2)", (1, 3, 4))])
def test_one_loss_past_the_redundancy_is_a_clear_error(five_storages, durability, lost):
    user = five_storages.user
    stored = store(user, os.urandom(50_000), durability)
    by_index = {s["index"]: s["storage_id"] for s in stored["shares"]}
    for index in lost:
        five_storages.destroy(stored["chunk_id"], index, by_index[index])
    # Every storage answered; the shares are gone: said to be damage, not an outage.
    error = assert_error(read(user, stored["chunk_id"]), 503, "chunk_damaged")
    assert "damaged past its redundancy" in error["message"], error
    assert "will not help" in error["message"]
    intact, needed = (0, 1) if durability.startswith("raid1") else (2, 3)
    assert (f"only {intact} of its shares {'is' if intact == 1 else 'are'} intact and {needed} "
            f"{'is' if needed == 1 else 'are'} needed") in error["message"], error
    info = user.api.get(f"/api/chunk/{stored['chunk_id']}/info").json()
    assert info["readable"] is False
    assert sorted(s["index"] for s in info["shares"] if s["health"] == "missing") == list(lost)


@pytest.mark.parametrize("encryption", ["aes256-gcm", "none"])
def test_raid1_copies_each_damaged_in_another_place_are_merged_back(five_storages, encryption):
    """Bit rot on both copies of a raid1(2) chunk, in different places: no copy is intact,
    but together they are. The read and the repair merge them into the copy whose hash was
    recorded (nothing else would be accepted), and the repair rewrites both."""
    user = five_storages.user
    data = os.urandom(300_000)
    stored = store(user, data, "raid1(2)", encryption)
    first, second = stored["shares"]
    five_storages.corrupt(stored["chunk_id"], first["index"], first["storage_id"], offset=1234)
    five_storages.corrupt(stored["chunk_id"], second["index"], second["storage_id"],
                          offset=200_000)
    response = read(user, stored["chunk_id"])
    assert response.status_code == 200 and response.content == data, response.text[:200]
    repaired = user.api.post(f"/api/chunk/{stored['chunk_id']}/repair")
    assert repaired.status_code == 200, repaired.text
    assert sorted(repaired.json()["repaired"]) == [0, 1]
    info = user.api.get(f"/api/chunk/{stored['chunk_id']}/info").json()
    assert info["healthy_shares"] == 2 and info["needs_repair"] is False, info
    # Each new copy is whole: either alone reads the chunk.
    share = info["shares"][0]
    five_storages.destroy(stored["chunk_id"], share["index"], share["storage_id"])
    assert read(user, stored["chunk_id"]).content == data

    # Damaged in the same place on both: nothing to merge from, and said so.
    again = store(user, os.urandom(50_000), "raid1(2)", encryption)
    for share in again["shares"]:
        five_storages.corrupt(again["chunk_id"], share["index"], share["storage_id"],
                              offset=777)
    assert_error(read(user, again["chunk_id"]), 503, "chunk_damaged")


@pytest.mark.parametrize("durability", ["raid1(3)", "rs(3,2)"])
def test_corrupt_share_is_detected_and_the_chunk_still_reads(five_storages, durability):
    user = five_storages.user
    data = os.urandom(300_000)
    stored = store(user, data, durability)
    first = stored["shares"][0]
    five_storages.corrupt(stored["chunk_id"], first["index"], first["storage_id"], offset=1234)
    response = read(user, stored["chunk_id"])
    assert response.status_code == 200 and response.content == data
    info = user.api.get(f"/api/chunk/{stored['chunk_id']}/info").json()
    assert {s["index"]: s["health"] for s in info["shares"]}[first["index"]] == "damaged"
    assert info["needs_repair"] is True

    repaired = user.api.post(f"/api/chunk/{stored['chunk_id']}/repair")
    assert repaired.status_code == 200, repaired.text
    assert repaired.json()["repaired"] == [first["index"]]
    info = user.api.get(f"/api/chunk/{stored['chunk_id']}/info").json()
    assert info["healthy_shares"] == len(info["shares"]) and info["needs_repair"] is False
    # After repair the chunk survives losing a different set of shares.
    others = [s for s in info["shares"] if s["index"] != first["index"]]
    for share in others[:2]:
        five_storages.destroy(stored["chunk_id"], share["index"], share["storage_id"])
    assert read(user, stored["chunk_id"]).content == data


def test_repair_recreates_destroyed_shares(five_storages):
    user = five_storages.user
    data = os.urandom(200_000)
    stored = store(user, data, "rs(3,2)")
    for share in stored["shares"][:2]:
        five_storages.destroy(stored["chunk_id"], share["index"], share["storage_id"])
    repaired = user.api.post(f"/api/chunk/{stored['chunk_id']}/repair").json()
    assert repaired["repaired"] == [0, 1]
    info = user.api.get(f"/api/chunk/{stored['chunk_id']}/info").json()
    assert all(s["health"] == "ok" for s in info["shares"])
    for share in info["shares"][2:4]:
        five_storages.destroy(stored["chunk_id"], share["index"], share["storage_id"])
    assert read(user, stored["chunk_id"]).content == data


def test_delete_removes_every_share(five_storages):
    user = five_storages.user
    stored = store(user, os.urandom(10_000), "rs(3,2)")
    assert user.api.delete(f"/api/chunk/{stored['chunk_id']}").status_code == 204
    for share in stored["shares"]:
        assert five_storages.share_objects(stored["chunk_id"], share["index"],
                                           share["storage_id"]) == []
    assert_error(read(user, stored["chunk_id"]), 404, "chunk_not_found")
    assert_error(user.api.delete(f"/api/chunk/{stored['chunk_id']}"), 404)


def test_another_users_chunk_is_404_everywhere(five_storages, api):
    stored = store(five_storages.user, b"mine")
    stranger = register_and_login(api)
    for method, path in [("GET", f"/api/chunk/{stored['chunk_id']}"),
                         ("GET", f"/api/chunk/{stored['chunk_id']}/info"),
                         ("DELETE", f"/api/chunk/{stored['chunk_id']}"),
                         ("POST", f"/api/chunk/{stored['chunk_id']}/repair")]:
        assert_error(stranger.api.request(method, path), 404, "chunk_not_found")
    assert read(five_storages.user, stored["chunk_id"]).content == b"mine"


@pytest.mark.parametrize("fields, code, words", [
    ({"durability": "rs(0,1)"}, "invalid_durability", "K"),
    ({"durability": "rs(20,20)"}, "invalid_durability", "32"),
    ({"durability": "raid1(0)"}, "invalid_durability", "raid1"),
    ({"durability": "mirror"}, "invalid_durability", "raid1"),
    ({"encryption": "rot13"}, "invalid_encryption", "aes256-gcm"),
])
def test_bad_schemes_are_400_naming_the_problem(five_storages, fields, code, words):
    response = five_storages.user.api.post("/api/chunk", files={"file": ("c", b"x")}, data=fields)
    error = assert_error(response, 400)
    assert words in error["message"]


def test_more_shares_than_storages_is_422(five_storages):
    response = five_storages.user.api.post("/api/chunk", files={"file": ("c", b"x")},
                                           data={"durability": "rs(4,3)"})
    error = assert_error(response, 422, "not_enough_storages")
    assert "7 storages" in error["message"]


def test_chunk_over_4_mib_is_413(five_storages):
    response = five_storages.user.api.post("/api/chunk",
                                           files={"file": ("c", b"x" * (4 * 1024 * 1024 + 1))})
    assert_error(response, 413, "chunk_too_large")


def test_missing_data_part_and_wrong_content_type(five_storages):
    user = five_storages.user
    assert_error(user.api.post("/api/chunk", files={"durability": (None, "raid1(2)")}), 400,
                 "missing_field")
    assert_error(user.api.post("/api/chunk", data=b"raw", headers={"Content-Type":
                                                                   "application/octet-stream"}),
                 415, "unsupported_media_type")
    assert_error(user.api.post("/api/chunk", data=b"--x\r\nbroken",
                               headers={"Content-Type": "multipart/form-data; boundary=x"}),
                 400, "invalid_multipart")


def test_user_without_storages_gets_a_clear_422(api):
    newcomer = register_and_login(api)
    response = newcomer.api.post("/api/chunk", files={"file": ("c", b"data")})
    error = assert_error(response, 422, "not_enough_storages")
    assert "Add storages" in error["message"]
