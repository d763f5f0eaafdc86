"""The batch upload (POST /api/filesystem/batch) over real HTTP: per-file results, each file
whole or not at all, the limits, mtimes, and working inside a share."""
import hashlib
import json
import os
import random
from urllib.parse import quote

from tests.filesystem.conftest import download
from tests.support import assert_error, register_and_login

BATCH = "/api/filesystem/batch"
KiB = 1024


def batch(user, directory: str, named: list[tuple[str, bytes]], params=None, **fields):
    response = user.api.post(BATCH, params=params, data={"path": directory, **fields},
                             files=[("file", (name, data)) for name, data in named])
    assert response.status_code == 207, response.text
    body = response.json()
    assert [r["name"] for r in body["results"]] == [name for name, _ in named]
    return body


def listing(user, path: str) -> dict:
    response = user.api.get("/api/filesystem/info", params={"path": path})
    assert response.status_code == 200, response.text
    return {child["name"]: child for child in response.json()["children"]}


def test_each_file_gets_its_own_result(fs_user):
    assert fs_user.api.post("/api/filesystem/dirs",
                            json={"path": "/batch1/taken"}).status_code == 201
    rng = random.Random(11)
    good = {f"f{n}.txt": rng.randbytes(rng.randint(1, 4 * KiB)) for n in range(20)}
    named = list(good.items()) + [("taken", b"a directory has this name"),
                                  ("..", b"not a name"), ("f3.txt", b"twice in one batch"),
                                  ("big.bin", os.urandom(300 * KiB)), ("empty", b"")]
    body = batch(fs_user, "/batch1", named)
    by_name = {}
    for result in body["results"]:
        by_name.setdefault(result["name"], []).append(result)
    for name in [*good, "big.bin", "empty"]:
        [result] = by_name[name] if name != "f3.txt" else by_name[name][:1]
        assert result["status"] == 201, result
        assert result["file"]["path"] == f"/batch1/{name}"
    assert by_name["taken"][0]["status"] == 409
    assert by_name["taken"][0]["error"]["code"] == "name_exists"
    assert by_name[".."][0]["status"] == 400 and by_name[".."][0]["error"]["message"]
    assert by_name["f3.txt"][1]["status"] == 400
    assert by_name["f3.txt"][1]["error"]["code"] == "duplicate_name"
    assert (body["created"], body["failed"]) == (len(good) + 2, 3)
    # Every file that was created is there whole; the failed ones are not there at all.
    children = listing(fs_user, "/batch1")
    assert set(children) == {*good, "big.bin", "empty", "taken"}
    assert children["taken"]["type"] == "directory"
    for result in body["results"]:
        if result["status"] == 201:
            content = {**dict(named), **good}[result["name"]]
            assert result["file"]["sha256"] == hashlib.sha256(content).hexdigest()
            assert download(fs_user, result["file"]["id"]) == content


def test_a_batch_that_cannot_be_stored_leaves_nothing(api, tmp_path):
    user = register_and_login(api)
    for n in range(2):
        assert user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"d{n}",
            "config": {"path": str(tmp_path / f"d{n}")}}).status_code == 201
    # Three copies on two storages: no file can be stored, and none appears in part.
    body = batch(user, "/nothing", [("a", b"1"), ("b", b"2" * 300 * KiB)],
                 durability="raid1(3)")
    assert body["created"] == 0
    assert {r["status"] for r in body["results"]} == {422}
    assert all(r["error"]["code"] == "not_enough_storages" for r in body["results"])
    assert listing(user, "/nothing") == {}
    assert user.api.get("/api/filesystem/usage").json()["stored_bytes"] == 0
    assert [p for p in tmp_path.rglob("*") if p.is_file() and
            not p.name.startswith(".cloudstrype")] == []


def test_a_name_again_is_a_new_version(fs_user):
    first = batch(fs_user, "/batch2", [("same.txt", b"one")])["results"][0]["file"]
    second = batch(fs_user, "/batch2", [("same.txt", b"two")])["results"][0]["file"]
    assert first["id"] == second["id"]
    info = fs_user.api.get(f"/api/filesystem/info/{first['id']}").json()
    assert len(info["versions"]) == 2
    assert download(fs_user, first["id"]) == b"two"
    assert download(fs_user, first["id"], info["versions"][0]["version"]) == b"one"


def test_mtimes_per_file(fs_user):
    body = batch(fs_user, "/batch3", [("a", b"a"), ("b", b"b"), ("c", b"c")],
                 mtimes=json.dumps({"a": 1700000000.5, "b": 10 ** 15}))
    statuses = {r["name"]: r["status"] for r in body["results"]}
    assert statuses == {"a": 201, "b": 400, "c": 201}
    assert body["results"][1]["error"]["details"] == {"field": "mtimes.b"}
    assert "'mtimes.b'" in body["results"][1]["error"]["message"]
    assert body["results"][0]["file"]["modified"].startswith("2023-11-14T22:13:20.5")
    for mtimes in ("[1, 2]", "[" * 100_000 + "]" * 100_000,
                   '{"x": ' + "[" * 5000 + "]" * 5000 + "}"):
        error = assert_error(fs_user.api.post(BATCH, data={"path": "/", "mtimes": mtimes},
                                              files=[("file", ("x", b"x"))]), 400)
        assert error["details"] == {"field": "mtimes"}, error
    # A name no file of the batch has (misspelt): refused whole, nothing written.
    error = assert_error(fs_user.api.post(BATCH, data={"path": "/batch4", "mtimes": json.dumps(
        {"a.txt": 1700000000, "b.txt": 1700000000})}, files=[("file", ("a.txt", b"a"))]), 400,
        "mtimes_name_unknown")
    assert error["details"] == {"field": "mtimes"} and "'b.txt'" in error["message"], error
    assert fs_user.api.get("/api/filesystem/info", params={"path": "/batch4"}).status_code == 404
    # A browser's form writes '"' in a filename as %22, and the server reads it back as '"':
    # the mtimes key the browser wrote (the name as it knows it) still finds its file.
    body = ('--b\r\nContent-Disposition: form-data; name="path"\r\n\r\n/batch5\r\n'
            '--b\r\nContent-Disposition: form-data; name="mtimes"\r\n\r\n'
            '{"say %22hi%22.txt": 1700000000}\r\n'
            '--b\r\nContent-Disposition: form-data; name="file"; filename="say %22hi%22.txt"'
            '\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n')
    sent = fs_user.api.post(BATCH, data=body.encode(),
                            headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert sent.status_code == 207, sent.text
    [result] = sent.json()["results"]
    assert result["name"] == 'say "hi".txt' and \
        result["file"]["modified"].startswith("2023-11-14T22:13:20"), result


def test_the_limits(fs_user):
    from cloudstrype import limits
    from cloudstrype.tree.files import MAX_BATCH_FILES
    too_many = [("file", (f"n{n}", b"x")) for n in range(MAX_BATCH_FILES + 1)]
    error = assert_error(fs_user.api.post(BATCH, data={"path": "/limits"}, files=too_many),
                         413, "batch_too_large")
    assert str(MAX_BATCH_FILES) in error["message"]
    assert error["details"] == {"max_batch_files": MAX_BATCH_FILES,
                                "max_batch_bytes": limits.ONE_SHOT_MAX_BYTES}
    # Over one request's bytes, though under what API Gateway lets through to the function.
    heavy = [("file", (f"h{n}", os.urandom(1024 * KiB))) for n in range(4)] + \
        [("file", ("tail", os.urandom(limits.ONE_SHOT_MAX_BYTES - 4 * 1024 * KiB + 10 * KiB)))]
    error = assert_error(fs_user.api.post(BATCH, data={"path": "/limits"}, files=heavy),
                         413, "batch_too_large")
    assert str(limits.ONE_SHOT_MAX_BYTES) in error["message"]
    # Far over: the gateway refuses it before the function runs, also naming the limit.
    huge = [("file", (f"g{n}", os.urandom(1024 * KiB))) for n in range(6)]
    error = assert_error(fs_user.api.post(BATCH, data={"path": "/limits"}, files=huge), 413)
    assert str(limits.ONE_SHOT_MAX_BYTES) in error["message"]
    assert listing(fs_user, "/").get("limits") is None
    assert_error(fs_user.api.post(BATCH, files=[("path", (None, "/limits"))]), 400,
                 "missing_field")
    assert_error(fs_user.api.post(BATCH, data={"path": "/limits", "name": "x"},
                                  files=[("file", ("x", b"x"))]), 400, "invalid_multipart")


def test_inside_a_share(api, fs_user):
    from tests.sharing.conftest import share
    bob = register_and_login(api)
    assert fs_user.api.post("/api/filesystem/dirs", json={"path": "/team"}).status_code == 201
    granted = share(fs_user, "/team", "write", user=bob)
    body = batch(bob, "/inbox", [("from-bob.txt", b"hello")], params={"share": granted["id"]})
    assert body["results"][0]["status"] == 201
    assert body["results"][0]["file"]["path"] == "/inbox/from-bob.txt"
    assert "versions" not in body["results"][0]["file"]
    mine = listing(fs_user, "/team/inbox")["from-bob.txt"]
    assert download(fs_user, mine["id"]) == b"hello"
    carol = register_and_login(api)
    reading = share(fs_user, "/team", "read", user=carol)
    assert_error(carol.api.post(BATCH, params={"share": reading["id"]}, data={"path": "/"},
                                files=[("file", ("no.txt", b"no"))]), 403)
    assert "no.txt" not in listing(fs_user, "/team")
    # Read back through the read share: the bytes, without what recipients are not shown.
    results, data = read_many(carol, [mine["id"]], params={"share": reading["id"]})
    [result] = results["results"]
    assert result["status"] == 200 and data == {mine["id"]: b"hello"}
    assert not {"version", "versions", "durability", "encryption"} & set(result["file"])


def test_each_result_describes_the_file_as_info_does(fs_user):
    """...but of its versions only the one written: every file's whole history made the
    answer of a batch of often replaced files grow past a response's 6 MB (a 502 after the
    batch was stored)."""
    batch(fs_user, "/described/deep", [("old.txt", b"first")])
    body = batch(fs_user, "/described/deep", [("old.txt", b"second"), ("new.txt", b"new")])
    for result in body["results"]:
        info = fs_user.api.get(f"/api/filesystem/info/{result['file']['id']}").json()
        (written,) = [v for v in info.pop("versions") if v["current"]]
        assert result["file"].pop("versions") == [written]
        assert result["file"] == {k: v for k, v in info.items() if k != "versions_total"}
    assert body["results"][1]["file"]["path"] == "/described/deep/new.txt"
    old = fs_user.api.get(f"/api/filesystem/info/{body['results'][0]['file']['id']}").json()
    assert len(old["versions"]) == old["versions_total"] == 2


def test_a_batch_repeating_content_stored_before_claims_it_for_every_file(fs_user):
    """Many files of one batch reading content the owner stores already: each transaction
    claims a content once for all its files (DynamoDB refuses two writes to one item in a
    transaction), and every file reads back."""
    rng = random.Random(41)
    originals = [(f"o{n}.txt", rng.randbytes(rng.randint(1, 4 * KiB))) for n in range(3)]
    batch(fs_user, "/repeat-first", originals)
    used = fs_user.api.get("/api/filesystem/usage").json()["stored_bytes"]
    copies = [(f"c{n}-{name}", data) for n in range(30) for name, data in originals]
    body = batch(fs_user, "/repeat-copies", copies)
    assert (body["created"], body["failed"]) == (90, 0), body
    assert fs_user.api.get("/api/filesystem/usage").json()["stored_bytes"] == used
    for result, (_, data) in zip(body["results"][::17], copies[::17], strict=True):
        assert download(fs_user, result["file"]["id"]) == data


def test_repeats_of_a_content_whose_first_file_failed_are_stored(fs_user):
    """The first file of a content repeated in a batch fails (a directory has its name): the
    repeats, which waited for it, store the content themselves (and then all read one copy;
    the others are dead bytes for compaction). This was a 500: the repeats registered the
    content several times in one transaction."""
    assert fs_user.api.post("/api/filesystem/dirs",
                            json={"path": "/repeat-fail/a-dir"}).status_code == 201
    data = random.Random(43).randbytes(3 * KiB)
    named = [("a-dir", data), ("one.txt", data), ("two.txt", data), ("three.txt", data)]
    body = batch(fs_user, "/repeat-fail", named)
    assert [r["status"] for r in body["results"]] == [409, 201, 201, 201], body
    for result in body["results"][1:]:
        assert download(fs_user, result["file"]["id"]) == data


ODD_NAMES = ['a"b.txt', "new\nline.txt", "cr\rname.txt", "back\\slash.txt", "semi;colon=1.txt",
             "ünï cödé 😀.txt", "quote'single.txt"]


def test_names_as_browsers_and_as_rfc_5987_write_them(fs_user):
    """A part's filename as browsers, curl and urllib3 2 write it ('"', LF and CR as %22, %0A,
    %0D) is read back as the name; `filename*=UTF-8''...` is exact for any name (a literal
    "%22" too) and wins over `filename`."""
    named = [(name, name.encode()) for name in ODD_NAMES]
    # requests (urllib3 2) writes names the browsers' way.
    body = batch(fs_user, "/odd-browser", named)
    assert body["created"] == len(named)
    assert sorted(listing(fs_user, "/odd-browser")) == sorted(ODD_NAMES)

    names = [*ODD_NAMES, "literal%22.txt", "100%.txt"]
    boundary = "b0undary"
    pieces = [f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n'
              f'/odd-5987\r\n'.encode()]
    for name in names:
        pieces.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                      f'filename="fallback.txt"; filename*=UTF-8\'\'{quote(name, safe="")}'
                      f'\r\n\r\n'.encode() + name.encode() + b"\r\n")
    pieces.append(f"--{boundary}--\r\n".encode())
    response = fs_user.api.post(BATCH, data=b"".join(pieces), headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 207, response.text
    assert [r["name"] for r in response.json()["results"]] == names
    children = listing(fs_user, "/odd-5987")
    assert sorted(children) == sorted(names)
    for name in names:
        assert download(fs_user, children[name]["id"]) == name.encode()


def test_a_filename_star_that_is_not_utf8_is_refused(fs_user):
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f"filename*=latin-1''caf%E9.txt\r\n\r\nx\r\n--{boundary}--\r\n").encode()
    assert_error(fs_user.api.post(BATCH, data=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"}), 400, "invalid_multipart")


READ = "/api/filesystem/read"


def read_many(user, ids: list[str], params=None) -> tuple[dict, dict[str, bytes]]:
    from cloudstrype.api.body import parse_multipart
    response = user.api.post(READ, json={"ids": ids}, params=params)
    assert response.status_code == 200, response.text
    assert len(response.content) <= files_limits()["answer"]
    boundary = response.headers["Content-Type"].split("boundary=", 1)[1].encode()
    parts = parse_multipart(response.content, boundary)
    assert parts[0].name == "results"
    return json.loads(parts[0].data), {p.name: p.data for p in parts[1:]}


def files_limits() -> dict:
    from cloudstrype.tree import files
    return {"answer": files.MAX_RESPONSE_BYTES, "file": files.READ_BATCH_FILE_MAX}


def test_many_small_files_are_read_in_one_answer(fs_user):
    """Each id gets its own result in order (a directory, an unknown id and a file too big
    for a batch fail alone); each file read comes whole, as its listing describes it."""
    rng = random.Random(5)
    limit = files_limits()["file"]
    sizes = [0, 1, 4 * KiB, limit] + [rng.randint(1, 4 * KiB) for _ in range(26)]
    named = [(f"r{n:02}.bin", rng.randbytes(size)) for n, size in enumerate(sizes)]
    body = batch(fs_user, "/reads", named)
    by_name = {r["name"]: r["file"] for r in body["results"]}
    big = fs_user.api.post("/api/filesystem/data", files={"file": ("big.bin", b"b" * (limit + 1))},
                           data={"path": "/reads", "name": "big.bin"}).json()
    folder = fs_user.api.post("/api/filesystem/dirs", json={"path": "/reads/sub"}).json()
    unknown = "0" * 32
    ids = [by_name[name]["id"] for name, _ in named]
    asked = ids[:2] + [folder["id"], unknown, big["id"], ids[0]] + ids[2:]
    results, data = read_many(fs_user, asked)
    shown = results["results"]
    assert [r["id"] for r in shown] == list(dict.fromkeys(asked))
    assert results["remaining"] == [] and results["read"] == len(named)
    assert results["failed"] == 3
    assert [r["status"] for r in shown[2:5]] == [400, 404, 413]
    assert [r["error"]["code"] for r in shown[2:5]] == [
        "not_a_file", "node_not_found", "file_too_large_for_batch"]
    for (name, content), result in zip(named, [r for r in shown if r["status"] == 200],
                                       strict=True):
        file = result["file"]
        assert data[file["id"]] == content, name
        assert (file["name"], file["size"]) == (name, len(content))
        assert file["sha256"] == hashlib.sha256(content).hexdigest()
        assert file["version"] == by_name[name]["version"]
        assert file["modified"] == by_name[name]["modified"]
    assert not ({folder["id"], unknown, big["id"]} & set(data))


def test_what_one_answer_cannot_carry_is_left_to_ask_again(fs_user):
    rng = random.Random(6)
    named = [(f"w{n:02}.bin", rng.randbytes(files_limits()["file"])) for n in range(20)]
    ids = []
    for first in range(0, 20, 5):                   # 5 a batch: each within one request
        ids += [r["file"]["id"] for r in batch(fs_user, "/wide", named[first:first + 5])
                ["results"]]
    results, data = read_many(fs_user, ids)
    assert 0 < results["read"] < 20
    assert results["remaining"] == ids[results["read"]:]
    got = dict(data)
    while results["remaining"]:
        results, data = read_many(fs_user, results["remaining"])
        assert results["read"] > 0
        got.update(data)
    assert [got[i] for i in ids] == [content for _, content in named]


def test_a_batch_read_names_what_to_fix(fs_user):
    assert_error(fs_user.api.post(READ, json={"ids": []}), 400, "invalid_field")
    assert_error(fs_user.api.post(READ, json={"ids": ["0" * 32] * 501}), 400, "invalid_field")
    assert_error(fs_user.api.post(READ, json={"ids": "0" * 32}), 400)
    assert_error(fs_user.api.post(READ, json={"ids": [7]}), 400, "invalid_field")
    assert_error(fs_user.api.post(READ, json={}), 400, "missing_field")


def test_a_file_bad_in_every_copy_fails_alone_in_a_batch_read(api, tmp_path):
    """Neighbours in a pack are read together; a blob no copy holds right fails its own file,
    and every other file of the answer still comes whole."""
    user = register_and_login(api)
    for n in range(2):
        assert user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"d{n}", "config": {"path": str(tmp_path / f"d{n}")}}
        ).status_code == 201
    assert user.api.put("/api/filesystem/settings",
                        json={"durability": "raid1(2)"}).status_code == 200
    named = [(f"n{n:02}.bin", os.urandom(2 * KiB)) for n in range(12)]
    ids = [r["file"]["id"] for r in batch(user, "/bad", named)["results"]]
    [pack] = {c for i in ids for c in user.api.get(
        f"/api/filesystem/chunks/{i}").json()["chunks"]}
    shares = [f for f in tmp_path.rglob("*") if f.is_file() and pack in f.name]
    assert len(shares) == 2
    for share in shares:                    # the same byte of both copies: mid-pack
        raw = bytearray(share.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        share.write_bytes(bytes(raw))
    results, data = read_many(user, ids)
    assert (results["read"], results["failed"]) == (11, 1)
    [bad] = [r for r in results["results"] if r["status"] != 200]
    assert bad["status"] >= 500 and bad["error"]["code"]
    for (name, content), result in zip(named, results["results"], strict=True):
        if result is not bad:
            assert data[result["id"]] == content, name


def test_files_under_a_deleted_folder_are_not_read(fs_user):
    """In the trash, directly or under a deleted folder, a file answers 404 as its own GET
    does; one beside the folder still reads."""
    inside = [r["file"]["id"] for r in batch(fs_user, "/gone/deep/er", [
        (f"x{n}.txt", b"x" * n) for n in range(1, 4)])["results"]]
    kept = batch(fs_user, "/gone-not", [("k1.txt", b"k"), ("k2.txt", b"kk")])["results"]
    folder = fs_user.api.get("/api/filesystem/info", params={"path": "/gone", "depth": 0})
    assert fs_user.api.delete(f"/api/filesystem/info/{folder.json()['id']}").status_code == 204
    results, data = read_many(fs_user, inside + [kept[0]["file"]["id"]])
    assert [r["status"] for r in results["results"]] == [404, 404, 404, 200]
    assert all(fs_user.api.get(f"/api/filesystem/data/{i}").status_code == 404 for i in inside)
    assert data == {kept[0]["file"]["id"]: b"k"}
