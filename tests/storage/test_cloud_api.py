"""The cloud service over real HTTP: storages, sealed credentials, drain, raw blobs."""
import json
import os
from pathlib import Path

import pytest
from cloudstrype.metadata.sqlite import SqliteEngine
from cloudstrype.storages.store import STORAGES

from tests.storage.conftest import S3_KEYS, Storages
from tests.support import Api, assert_error, register_and_login, start_stack


@pytest.fixture
def fresh(api, tmp_path, external_s3):
    user = register_and_login(api)
    return Storages(user, tmp_path, *external_s3)


def test_providers_lists_what_this_deployment_offers(user):
    response = user.api.get("/api/cloud/providers")
    assert response.status_code == 200
    kinds = {p["kind"]: p for p in response.json()["providers"]}
    assert {"local", "s3"} <= set(kinds)
    fields = {f["name"]: f for f in kinds["s3"]["fields"]}
    assert fields["secret_key"]["secret"] is True and fields["bucket"]["secret"] is False


def test_add_list_get_delete_storages(fresh):
    local = fresh.add_local("disk")
    s3 = fresh.add_s3("bucket", f"b-{fresh.user.username}")
    listed = fresh.user.api.get("/api/cloud/storages").json()["storages"]
    assert {s["id"] for s in listed} == {local["id"], s3["id"]}
    for storage in listed:
        assert storage["online"] is True and storage["status"] == "active"
        assert storage["shares"] == 0
    one = fresh.user.api.get(f"/api/cloud/storages/{s3['id']}").json()
    assert one["settings"]["bucket"] == f"b-{fresh.user.username}"
    assert fresh.user.api.delete(f"/api/cloud/storages/{local['id']}").status_code == 204
    assert_error(fresh.user.api.get(f"/api/cloud/storages/{local['id']}"), 404,
                 "storage_not_found")


def test_secrets_never_appear_in_responses_and_are_sealed_at_rest(fresh, stack):
    created = fresh.add_s3("bucket", f"b-{fresh.user.username}")
    everything = json.dumps([created, fresh.user.api.get("/api/cloud/storages").json(),
                             fresh.user.api.get(f"/api/cloud/storages/{created['id']}").json()])
    assert S3_KEYS["secret_key"] not in everything
    assert "secret_key" not in created["settings"]
    # What the metadata store holds is sealed: the secret is not in the table, in any encoding
    # we'd use, nor anywhere in the database's files.
    engine = SqliteEngine(str(stack.data_dir / "metadata.db"))
    try:
        items = engine.scan(STORAGES).items
    finally:
        engine.close()
    dump = json.dumps(items, default=lambda value: value.hex() if isinstance(value, bytes)
                      else str(value))
    assert created["id"] in dump
    assert S3_KEYS["secret_key"] not in dump
    assert S3_KEYS["secret_key"].encode().hex() not in dump
    files = b"".join(path.read_bytes() for path in stack.data_dir.glob("metadata.db*"))
    assert created["id"].encode() in files
    assert S3_KEYS["secret_key"].encode() not in files


def test_one_bucket_place_is_one_storage(fresh, api):
    """Two storages whose keys overlap in one bucket would be one place for a chunk's copies
    (and count each other's shares): the second is refused, naming the first; a prefix of its
    own is a storage of its own, and so is another user's storage in the same place."""
    bucket = f"b-{fresh.user.username}"
    first = fresh.add_s3("first", bucket)                     # the whole bucket

    def add(user, name, **config):
        return user.api.post("/api/cloud/storages", json={"kind": "s3", "name": name, "config": {
            "endpoint_url": fresh.s3_endpoint, "bucket": bucket, **S3_KEYS, **config}})

    host, port = fresh.s3_endpoint.rsplit(":", 1)
    for config in ({}, {"prefix": "cloudstrype/"},
                   {"endpoint_url": fresh.s3_endpoint.upper() + "/"},
                   {"endpoint_url": f"{host}:0{port}"},                        # a leading 0
                   {"endpoint_url": f"http://localhost:{port}"}):       # another name of it
        error = assert_error(add(fresh.user, "second", **config), 409, "storage_place_taken")
        assert "'first'" in error["message"] and "whole bucket" in error["message"], error
        assert error["details"]["field"] == "prefix"
    assert fresh.user.api.delete(f"/api/cloud/storages/{first['id']}").status_code == 204

    assert add(fresh.user, "photos", prefix="photos/").status_code == 201
    assert add(fresh.user, "music", prefix="music/").status_code == 201
    assert add(fresh.user, "photo", prefix="photo").status_code == 201
    for prefix in ("photos/", "photos/2026/", ""):      # ("photo" is "photo/": its own)
        error = assert_error(add(fresh.user, "again", prefix=prefix), 409,
                             "storage_place_taken")
        assert "prefix" in error["message"], error
    other = register_and_login(api)
    assert add(other, "theirs", prefix="photos/").status_code == 201
    names = {s["name"] for s in fresh.user.api.get("/api/cloud/storages").json()["storages"]}
    assert names == {"photos", "music", "photo"}


def test_an_endpoint_holding_a_password_is_refused_without_repeating_it(fresh):
    bucket = f"b-{fresh.user.username}"
    fresh.s3.create_bucket(Bucket=bucket)
    host = fresh.s3_endpoint.removeprefix("http://")
    answer = fresh.user.api.post("/api/cloud/storages", json={"kind": "s3", "config": {
        "endpoint_url": f"http://someone:S3cretPw@{host}", "bucket": bucket, **S3_KEYS}})
    error = assert_error(answer, 400)
    assert "user name or password" in error["message"] and "S3cretPw" not in answer.text
    assert fresh.user.api.get("/api/cloud/storages").json()["storages"] == []


def test_log_never_shows_the_secret(fresh, stack):
    fresh.add_s3("bucket", f"b-{fresh.user.username}")
    assert S3_KEYS["secret_key"] not in stack.log()


@pytest.mark.parametrize("body, field", [
    ({"kind": "s3", "config": {"bucket": "x-bucket", "access_key": "a"}}, "secret_key"),
    ({"kind": "s3", "config": {"access_key": "a", "secret_key": "b"}}, "bucket"),
    ({"kind": "floppy", "config": {}}, "kind"),
    ({"kind": "local", "config": {}}, "path"),
    ({"kind": "local", "config": {"path": "big", "capacity": 10 ** 23}}, "capacity"),
    ({"kind": "local", "config": {"path": "big", "capacity": "99999999999999999999999"}},
     "capacity"),
    ({"config": {}}, "kind"),
    # A misspelt field is named, not the field it was meant for (README walk: 'pth' was
    # answered "Field 'path' is required").
    ({"kind": "local", "config": {"pth": "disk9"}}, "pth"),
    ({"kind": "s3", "config": {"buckett": "b", "access_key": "a", "secret_key": "s"}},
     "buckett"),
])
def test_bad_storage_input_is_400_naming_the_field(fresh, body, field):
    response = fresh.user.api.post("/api/cloud/storages", json=body)
    error = assert_error(response, 400)
    assert field in error["message"]


def test_an_unknown_kind_is_told_the_kinds_this_server_offers(tmp_path):
    """The refusal listed every kind there is (box, dropbox, ...) on a server with no OAuth
    provider set up (README walk): it lists those GET /api/cloud/providers lists."""
    own = start_stack(tmp_path / "data")        # no provider's client id: local and s3 only
    try:
        user = register_and_login(Api(own.url))
        offered = sorted(p["kind"] for p in
                         user.api.get("/api/cloud/providers").json()["providers"])
        assert offered == ["local", "s3"]
        error = assert_error(user.api.post("/api/cloud/storages", json={
            "kind": "lcoal", "config": {}}), 400, "invalid_kind")
        assert error["message"].endswith("choose one of local, s3.")
    finally:
        own.stop()


def test_unreachable_or_wrong_s3_fails_the_probe_and_saves_nothing(fresh, external_s3):
    endpoint, _ = external_s3
    response = fresh.user.api.post("/api/cloud/storages", json={
        "kind": "s3", "config": {"endpoint_url": endpoint, "bucket": "no-such-bucket-here",
                                 **S3_KEYS}})
    assert_error(response, 400, "probe_failed")
    response = fresh.user.api.post("/api/cloud/storages", json={
        "kind": "s3", "config": {"endpoint_url": "http://127.0.0.1:9", "bucket": "bucket-x",
                                 **S3_KEYS}})
    assert_error(response, 400, "probe_failed")
    assert fresh.user.api.get("/api/cloud/storages").json()["storages"] == []


def test_one_directory_cannot_be_two_storages(fresh, api):
    first = fresh.add_local("disk")
    again = fresh.user.api.post("/api/cloud/storages", json={
        "kind": "local", "config": {"path": first["settings"]["path"]}})
    assert_error(again, 409, "directory_in_use")
    stranger = register_and_login(api)
    theirs = stranger.api.post("/api/cloud/storages", json={
        "kind": "local", "config": {"path": first["settings"]["path"]}})
    assert_error(theirs, 409, "directory_in_use")


def test_the_folder_of_a_storage_removed_while_away_says_what_to_do(fresh):
    """Removed while its folder was away (moved, unmounted), the storage could not take its
    marker with it: the folder back, adding it again said only that it is 'already a
    Cloudstrype storage' (trash sweep), naming a storage that no longer exists."""
    import shutil
    disk = fresh.add_local("away")
    folder = Path(disk["settings"]["path"])
    aside = fresh.tmp / "aside"
    shutil.move(folder, aside)
    assert fresh.user.api.delete(f"/api/cloud/storages/{disk['id']}").status_code == 204
    shutil.move(aside, folder)
    again = fresh.user.api.post("/api/cloud/storages", json={
        "kind": "local", "config": {"path": str(folder)}})
    error = assert_error(again, 409, "directory_in_use")
    assert f"storage that has been removed ({disk['id']})" in error["message"], error
    assert "Empty the folder" in error["message"]
    for leftover in folder.iterdir():
        leftover.unlink()
    assert fresh.user.api.post("/api/cloud/storages", json={
        "kind": "local", "config": {"path": str(folder)}}).status_code == 201


def test_a_users_storages_have_distinct_names(fresh, api):
    user = fresh.user
    fresh.add_local("Disk")
    taken = user.api.post("/api/cloud/storages", json={
        "kind": "local", "name": " disk ", "config": {"path": str(fresh.tmp / "other")}})
    error = assert_error(taken, 409, "name_taken")
    # The message names the storage the user has.
    assert "You have a storage named 'Disk' already" in error["message"], error
    assert error["details"] == {"field": "name"}
    assert not (fresh.tmp / "other").exists()                   # nothing made, nothing kept
    # Names that read the same are the same: composed or not, invisible characters, full-width.
    fresh.add_local("Á")
    for same in ("A\u0301", "\u00c1\u200b", "Ｄｉｓｋ", "disk\u00a0", "\u200bDISK"):
        again = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": same, "config": {"path": str(fresh.tmp / "same")}})
        assert_error(again, 409, "name_taken")
    # Unnamed ones get the kind's name, numbered when taken.
    names = [user.api.post("/api/cloud/storages", json={
        "kind": "local", "config": {"path": str(fresh.tmp / f"unnamed{n}")}, **blank}
    ).json()["name"] for n, blank in enumerate(({}, {"name": ""}, {"name": None}))]
    assert names == ["local", "local 2", "local 3"]
    for bad in ("   ", "c1\u009aname", "del\u007f", "\u202egnp.exe", "two\u2028lines",
                "\u200b\u200b"):
        refused = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": bad, "config": {"path": str(fresh.tmp / "bad")}})
        assert_error(refused, 400, "invalid_name")
    # Another user's names are theirs.
    other = register_and_login(api)
    made = other.api.post("/api/cloud/storages", json={
        "kind": "local", "name": "Disk", "config": {"path": str(fresh.tmp / "theirs")}})
    assert made.status_code == 201, made.text
    # Connecting a cloud account under a taken name is refused before the provider is asked.
    assert_error(user.api.get("/api/cloud/oauth/dropbox/authorize", params={"name": "DISK"}),
                 409, "name_taken")


def test_oauth_kinds_are_not_added_with_keys(fresh):
    response = fresh.user.api.post("/api/cloud/storages",
                                   json={"kind": "dropbox", "config": {"token": {}}})
    assert_error(response, 400, "use_oauth")


def test_a_drain_that_cannot_finish_says_why(fresh):
    user = fresh.user
    disks = [fresh.add_local(f"disk{i}") for i in range(2)]
    stored = user.api.post("/api/chunk", files={"file": ("c", os.urandom(5_000))},
                           data={"durability": "raid1(2)"})
    assert stored.status_code == 201, stored.text
    drained = user.api.post(f"/api/cloud/storages/{disks[0]['id']}/drain")
    assert drained.status_code in (200, 202), drained.text
    answer = drained.json()
    assert answer["remaining"] == 1 and len(answer["problems"]) == 1, answer
    assert "0 of the 0 storages that hold no share of this chunk yet" in answer["problems"][0]


def test_a_drain_that_cannot_finish_can_be_stopped(fresh):
    """A drain started by mistake (or with nowhere to go) is undone: the storage takes new
    shares again, and the scrub does not start it again."""
    user = fresh.user
    disks = [fresh.add_local(f"disk{i}") for i in range(2)]
    data = os.urandom(5_000)
    stored = user.api.post("/api/chunk", files={"file": ("c", data)},
                           data={"durability": "raid1(2)"}).json()
    assert user.api.post(f"/api/cloud/storages/{disks[0]['id']}/drain").status_code == 202
    # While draining, it takes no new shares: two copies need both storages.
    refused = user.api.post("/api/chunk", files={"file": ("c", b"new")},
                            data={"durability": "raid1(2)"})
    assert refused.status_code == 422, refused.text
    assert "1 of your 2 storages are usable now (disk0: draining)" in refused.text, refused.text

    stopped = user.api.delete(f"/api/cloud/storages/{disks[0]['id']}/drain")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "active" and stopped.json()["shares"] == 1
    again = user.api.delete(f"/api/cloud/storages/{disks[0]['id']}/drain")   # idempotent
    assert again.status_code == 200 and again.json()["status"] == "active"
    # A client still looping on the drain goes on with a drain under way only: this one was
    # stopped, and stays stopped.
    looped = user.api.post(f"/api/cloud/storages/{disks[0]['id']}/drain?continue=1")
    assert looped.status_code == 202 and looped.json()["status"] == "active", looped.text
    assert looped.json()["moved"] == 0
    assert user.api.get(f"/api/cloud/storages/{disks[0]['id']}").json()["status"] == "active"
    assert_error(user.api.post(f"/api/cloud/storages/{disks[0]['id']}/drain?continue=2"), 400,
                 "invalid_parameter")
    taken = user.api.post("/api/chunk", files={"file": ("c", b"new")},
                          data={"durability": "raid1(2)"})
    assert taken.status_code == 201, taken.text
    assert disks[0]["id"] in {s["storage_id"] for s in taken.json()["shares"]}
    assert user.api.get(f"/api/chunk/{stored['chunk_id']}").content == data
    assert_error(user.api.delete("/api/cloud/storages/st-nothere/drain"), 404,
                 "storage_not_found")


def test_storage_with_shares_is_409_until_drained(fresh):
    user = fresh.user
    disks = [fresh.add_local(f"disk{i}") for i in range(3)]
    data = [os.urandom(20_000) for _ in range(4)]
    chunks = []
    for blob in data:
        response = user.api.post("/api/chunk", files={"file": ("c", blob)},
                                 data={"durability": "raid1(2)"})
        assert response.status_code == 201
        chunks.append(response.json())
    victim = next(d for d in disks if any(s["storage_id"] == d["id"]
                                          for c in chunks for s in c["shares"]))
    error = assert_error(user.api.delete(f"/api/cloud/storages/{victim['id']}"), 409,
                         "storage_not_empty")
    assert "drain" in error["message"].lower()

    drained = user.api.post(f"/api/cloud/storages/{victim['id']}/drain")
    assert drained.status_code == 200, drained.text
    assert drained.json()["remaining"] == 0 and drained.json()["moved"] >= 1
    assert user.api.get(f"/api/cloud/storages/{victim['id']}").json()["status"] == "draining"
    for chunk, blob in zip(chunks, data, strict=True):
        info = user.api.get(f"/api/chunk/{chunk['chunk_id']}/info").json()
        assert victim["id"] not in {s["storage_id"] for s in info["shares"]}
        assert info["healthy_shares"] == 2
        assert user.api.get(f"/api/chunk/{chunk['chunk_id']}").content == blob
    assert user.api.delete(f"/api/cloud/storages/{victim['id']}").status_code == 204
    assert list((fresh.tmp / victim["name"]).rglob("*.*.*.*")) == []


def test_drain_with_nowhere_to_go_reports_problems(fresh):
    user = fresh.user
    disks = [fresh.add_local(f"disk{i}") for i in range(2)]
    # Of five sizes: the reason's words name each chunk's share size, and it is still one.
    contents = [b"two copies %d" % n * (1 + 50 * n) for n in range(5)]
    stored = [user.api.post("/api/chunk", files={"file": ("c", data)},
                            data={"durability": "raid1(2)"}).json() for data in contents]
    drained = user.api.post(f"/api/cloud/storages/{disks[0]['id']}/drain")
    assert drained.status_code == 202
    # One reason, said once, naming how many chunks it holds back.
    [problem] = drained.json()["problems"]
    assert drained.json()["remaining"] == 5 and "(5 chunks: " in problem, problem
    for data, chunk in zip(contents, stored, strict=True):
        assert user.api.get(f"/api/chunk/{chunk['chunk_id']}").content == data
    removed = assert_error(user.api.delete(f"/api/cloud/storages/{disks[0]['id']}"), 409,
                           "storage_not_empty")
    assert "is draining but still holds 5 shares" in removed["message"], removed


def test_blob_round_trip_with_replicas(fresh):
    user = fresh.user
    for i in range(3):
        fresh.add_local(f"disk{i}")
    body = os.urandom(100_000)
    response = user.api.post("/api/cloud/blob-1?replicas=3", data=body,
                             headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    assert response.json()["chunk_id"] == "blob-1"
    assert len({s["storage_id"] for s in response.json()["shares"]}) == 3
    fetched = user.api.get("/api/cloud/blob-1")
    assert fetched.status_code == 200 and fetched.content == body
    assert fetched.headers["Content-Type"] == "application/octet-stream"
    # Stored as given: the bytes on disk are the body (the caller encrypts).
    copies = [p for p in fresh.tmp.rglob("*") if p.is_file() and ".blob-1." in p.name]
    assert len(copies) == 3 and all(p.read_bytes() == body for p in copies)
    assert_error(user.api.post("/api/cloud/blob-1", data=b"again"), 409, "chunk_exists")
    assert user.api.get("/api/cloud/blob-1").content == body
    assert user.api.delete("/api/cloud/blob-1").status_code == 204
    assert_error(user.api.get("/api/cloud/blob-1"), 404)


@pytest.mark.parametrize("chunk_id", ["has.dot", "x" * 129, "sp%20ace", "semi;colon"])
def test_bad_blob_ids_are_400(fresh, chunk_id):
    fresh.add_local("disk")
    assert_error(fresh.user.api.post(f"/api/cloud/{chunk_id}", data=b"x"), 400,
                 "invalid_chunk_id")


def test_blob_ids_are_scoped_to_their_owner(fresh, api):
    for i in range(2):
        fresh.add_local(f"disk{i}")
    assert fresh.user.api.post("/api/cloud/shared-name", data=b"owner's").status_code == 201
    other = Storages(register_and_login(api), fresh.tmp / "other", fresh.s3_endpoint, fresh.s3)
    other.add_local("their-disk")
    assert_error(other.user.api.get("/api/cloud/shared-name"), 404)
    assert_error(other.user.api.delete("/api/cloud/shared-name"), 404)
    # The same name is free for them, and does not touch the owner's blob.
    assert other.user.api.post("/api/cloud/shared-name?replicas=1",
                               data=b"theirs").status_code == 201
    assert fresh.user.api.get("/api/cloud/shared-name").content == b"owner's"
    assert other.user.api.get("/api/cloud/shared-name").content == b"theirs"


def test_bad_replica_count_is_400(fresh):
    fresh.add_local("disk")
    assert_error(fresh.user.api.post("/api/cloud/b?replicas=zero", data=b"x"), 400)
    assert_error(fresh.user.api.post("/api/cloud/b?replicas=0", data=b"x"), 400)
