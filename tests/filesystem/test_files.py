"""The filesystem service over real HTTP."""
import hashlib
import os
import time

import pytest

from tests.filesystem.conftest import download, session_upload, upload
from tests.filesystem.test_batch import read_many
from tests.support import assert_error, register_and_login

MiB = 1024 * 1024
SIZES = [0, 1, 4 * MiB - 1, 4 * MiB + 1]


@pytest.mark.parametrize("size", SIZES)
def test_one_shot_round_trip(fs_user, size):
    data = os.urandom(size)
    meta = upload(fs_user, "/one-shot", f"f{size}.bin", data)
    assert meta["size"] == size and meta["type"] == "file"
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["path"] == f"/one-shot/f{size}.bin"
    assert download(fs_user, meta["id"]) == data


@pytest.mark.parametrize("size", SIZES + [50 * MiB])
def test_session_round_trip(fs_user, size):
    data = os.urandom(size)
    parts = -(-size // (4 * MiB))
    order = list(reversed(range(parts)))          # any order is fine
    meta = session_upload(fs_user, "/sessions", f"s{size}.bin", data, order=order,
                          sha256=hashlib.sha256(data).hexdigest())
    assert meta["size"] == size and meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert download(fs_user, meta["id"]) == data


def test_a_session_under_a_file_is_refused_when_it_starts(fs_user):
    """Not after every part has been sent: a file where the path needs a folder is said at
    once; a folder that does not exist yet is made at the commit."""
    made = upload(fs_user, "/sd", "afile", b"x")
    assert made["path"] == "/sd/afile"
    for path in ("/sd/afile", "/sd/afile/sub"):
        refused = fs_user.api.post("/api/filesystem/uploads", json={
            "path": path, "name": "big.bin", "size": 5 * MiB})
        assert_error(refused, 409, "not_a_directory")
    fine = fs_user.api.post("/api/filesystem/uploads", json={
        "path": "/sd/not-yet/there", "name": "big.bin", "size": 5 * MiB})
    assert fine.status_code == 201, fine.text
    # A folder of the file's name: said at once too, not at the commit.
    assert fs_user.api.post("/api/filesystem/dirs", json={"path": "/sd/taken"}).status_code \
        == 201
    error = assert_error(fs_user.api.post("/api/filesystem/uploads", json={
        "path": "/sd", "name": "taken", "size": 5 * MiB}), 409, "name_exists")
    assert "'taken' is a directory" in error["message"]


def test_a_session_opened_with_the_clients_id_is_opened_once(fs_user, api):
    """A client that chose the session's id may send the request again after its answer was
    lost: the same session is answered (200), not a second one opened; the id of another
    session, another file's or another holder's, is refused by name."""
    upload_id = os.urandom(12).hex()
    body = {"path": "/mine", "name": "big.bin", "size": 5 * MiB, "upload_id": upload_id}
    opened = fs_user.api.post("/api/filesystem/uploads", json=body)
    assert opened.status_code == 201, opened.text
    assert opened.json()["upload_id"] == upload_id
    again = fs_user.api.post("/api/filesystem/uploads", json=body)
    assert again.status_code == 200, again.text
    assert again.json()["upload_id"] == upload_id and again.json()["missing"] == [0, 1]
    listed = fs_user.api.get("/api/filesystem/uploads").json()["uploads"]
    assert [u["upload_id"] for u in listed].count(upload_id) == 1
    for other in ({"name": "other.bin"}, {"size": 6 * MiB}, {"path": "/elsewhere"},
                  {"content_type": "image/png"}, {"sha256": "ab" * 32},
                  {"encryption": "none"}):
        # (Another type, sha256 or scheme is another request, not the same one sent again:
        # answering the first session would store the file otherwise than asked.)
        assert_error(fs_user.api.post("/api/filesystem/uploads", json={**body, **other}),
                     409, "upload_id_taken")
    # What the request names, named again the same (in another spelling), is the same.
    typed_id = os.urandom(12).hex()
    typed = {**body, "upload_id": typed_id, "content_type": "text/plain",
             "sha256": "AB" * 32, "encryption": "aes256-gcm"}
    assert fs_user.api.post("/api/filesystem/uploads", json=typed).status_code == 201
    same = fs_user.api.post("/api/filesystem/uploads", json={**typed, "sha256": "ab" * 32})
    assert same.status_code == 200, same.text
    for bad in ("ABCDEF" * 4, "0" * 23, "0" * 25, "../" + "0" * 21, 12):
        error = assert_error(fs_user.api.post("/api/filesystem/uploads",
                                              json={**body, "upload_id": bad}), 400)
        assert "upload_id" in error["message"]
    # Ids are the caller's own: another user's session of that id is neither found nor hurt.
    bob = register_and_login(api)
    theirs = bob.api.post("/api/filesystem/uploads", json=body)
    assert theirs.status_code == 201, theirs.text
    assert fs_user.api.get(f"/api/filesystem/uploads/{upload_id}").json()["path"] == "/mine"
    # Once ended, the id opens nothing again.
    assert fs_user.api.delete(f"/api/filesystem/uploads/{upload_id}").status_code == 204
    assert_error(fs_user.api.post("/api/filesystem/uploads", json=body), 409,
                 "upload_id_taken")


def test_a_content_type_is_a_media_type_or_refused_and_what_is_served_always_is_one(fs_user):
    # A type with a line break in it was stored, and the file could not be downloaded by
    # anyone after (the framework refused the header: a 500).
    for bad in ("text/plain\r\nSet-Cookie: a=b", "a\x01b", "text plain", "x" * 300 + "/y"):
        error = assert_error(fs_user.api.post("/api/filesystem/uploads", json={
            "name": "t.txt", "size": 5, "content_type": bad}), 400, "invalid_field")
        assert error["details"]["field"] == "content_type" and "media type" in error["message"]
    opened = fs_user.api.post("/api/filesystem/uploads", json={
        "name": "t.txt", "size": 5, "content_type": "text/markdown; charset=utf-8"}).json()
    assert fs_user.api.put(f"/api/filesystem/uploads/{opened['upload_id']}/parts/0",
                           data=b"hello").status_code == 200
    made = fs_user.api.post(f"/api/filesystem/uploads/{opened['upload_id']}/commit", json={})
    assert made.status_code == 201 and made.json()["content_type"] == "text/markdown"
    got = fs_user.api.get(f"/api/filesystem/data/{made.json()['id']}")
    assert got.status_code == 200 and got.headers["Content-Type"] == "text/markdown"
    # A form part's type that is none falls back on the name's.
    sent = fs_user.api.post("/api/filesystem/data", data={"path": "/", "name": "n.txt"},
                            files={"file": ("n.txt", b"hi", "a\x01b")})
    assert sent.status_code == 201 and sent.json()["content_type"] == "text/plain", sent.text


def test_a_stored_type_no_header_can_carry_is_served_as_octet_stream():
    from cloudstrype.tree import files
    assert files.served_type("text/plain\r\nSet-Cookie: a=b") == "application/octet-stream"
    assert files.served_type("image/png") == "image/png"
    assert files.guess_type("a.txt", "a\x01b") == "text/plain"


def _parts_sent(user, name: str, data: bytes, **declared) -> str:
    created = user.api.post("/api/filesystem/uploads", json={
        "path": "/late-hash", "name": name, "size": len(data), **declared})
    assert created.status_code == 201, created.text
    session = created.json()
    for part in range(session["parts"]):
        body = data[part * session["part_size"]:(part + 1) * session["part_size"]]
        assert user.api.put(f"/api/filesystem/uploads/{session['upload_id']}/parts/{part}",
                            data=body).status_code == 200
    return f"/api/filesystem/uploads/{session['upload_id']}/commit"


def test_the_hash_can_be_declared_at_commit(fs_user):
    data = os.urandom(9 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    commit = _parts_sent(fs_user, "late.bin", data)
    assert_error(fs_user.api.post(commit, json={"sha256": "xyz"}), 400, "invalid_field")
    made = fs_user.api.post(commit, json={"sha256": digest.upper()})
    assert made.status_code == 201, made.text
    assert made.json()["sha256"] == digest
    assert download(fs_user, made.json()["id"]) == data

    wrong_mtime = assert_error(fs_user.api.post(commit, json={"mtime": "yesterday"}), 400,
                               "invalid_field")
    assert wrong_mtime["message"] == "Field 'mtime' must be a number.", wrong_mtime
    # It must agree with a hash declared at the start, and with a one-part file's content.
    commit = _parts_sent(fs_user, "both.bin", data, sha256=digest)
    wrong = hashlib.sha256(b"other").hexdigest()
    assert_error(fs_user.api.post(commit, json={"sha256": wrong}), 409, "sha256_mismatch")
    assert fs_user.api.post(commit, json={"sha256": digest}).status_code == 201
    commit = _parts_sent(fs_user, "small.bin", b"one part")
    assert_error(fs_user.api.post(commit, json={"sha256": wrong}), 409, "sha256_mismatch")
    made = fs_user.api.post(commit, json={"sha256": hashlib.sha256(b"one part").hexdigest()})
    assert made.status_code == 201, made.text
    # A one-part (or empty) file declared at the start with a hash that is not its content's.
    for name, content in (("one.bin", b"one part"), ("empty.bin", b"")):
        commit = _parts_sent(fs_user, name, content, sha256=wrong)
        error = assert_error(fs_user.api.post(commit, json={}), 409, "sha256_mismatch")
        assert "declared when this upload started" in error["message"]


def test_one_shot_over_10_mb_is_413_pointing_to_sessions(fs_user):
    response = fs_user.api.post("/api/filesystem/data", data={"path": "/", "name": "big"},
                                files={"file": ("big", b"x" * (10 * MiB + 10))})
    assert_error(response, 413, "payload_too_large")


def test_small_file_reads_whole_with_headers(fs_user):
    meta = upload(fs_user, "/", "hello.txt", b"hello world")
    response = fs_user.api.get(f"/api/filesystem/data/{meta['id']}")
    assert response.status_code == 200 and response.content == b"hello world"
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Content-Length"] == "11"
    assert response.headers["ETag"] == meta["etag"]
    assert response.headers["Accept-Ranges"] == "bytes"
    again = fs_user.api.get(f"/api/filesystem/data/{meta['id']}",
                            headers={"If-None-Match": meta["etag"]})
    assert again.status_code == 304 and again.content == b""
    # RFC 9110: any ETag of a list, a weak one, or '*' matches; another ETag does not.
    for header, status in (("*", 304), (f'"other", {meta["etag"]}', 304),
                           (f"W/{meta['etag']}", 304), ('"other"', 200), ("W/\"other\"", 200)):
        answered = fs_user.api.get(f"/api/filesystem/data/{meta['id']}",
                                   headers={"If-None-Match": header})
        assert answered.status_code == status, (header, answered.status_code)


def test_large_file_without_range_is_a_clear_4xx(fs_user):
    data = os.urandom(4 * MiB + 1)
    meta = session_upload(fs_user, "/", "needs-ranges.bin", data)
    error = assert_error(fs_user.api.get(f"/api/filesystem/data/{meta['id']}"), 413, "use_range")
    assert "Range: bytes=0-" in error["message"]


def test_ranges_at_chunk_borders(fs_user):
    data = os.urandom(9 * MiB + 123)
    meta = session_upload(fs_user, "/", "ranges.bin", data)
    border = 4 * MiB
    for first, last in [(0, 0), (border - 1, border), (border - 10, border + 10),
                        (2 * border - 1, 2 * border + 1), (border, 2 * border - 1),
                        (len(data) - 5, len(data) - 1), (0, 4 * MiB - 1)]:
        response = fs_user.api.get(f"/api/filesystem/data/{meta['id']}",
                                   headers={"Range": f"bytes={first}-{last}"})
        assert response.status_code == 206, response.text
        assert response.content == data[first:last + 1], (first, last)
        assert response.headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    suffix = fs_user.api.get(f"/api/filesystem/data/{meta['id']}", headers={"Range": "bytes=-7"})
    assert suffix.content == data[-7:]
    open_end = fs_user.api.get(f"/api/filesystem/data/{meta['id']}",
                               headers={"Range": f"bytes={len(data) - 3}-"})
    assert open_end.content == data[-3:]


@pytest.mark.parametrize("header, status", [("bytes=99999999999-", 416), ("bytes=5-2", 416),
                                            ("lines=1-2", 400), ("bytes=0-1,4-5", 400),
                                            ("bytes=abc", 400), ("bytes=0-5000000", 413),
                                            ("bytes=+1-2", 400), ("bytes=--1", 400),
                                            ("bytes=1_0-20", 400), ("bytes=-", 400),
                                            ("bytes=\u0663-\u0665".encode(), 400)])
def test_bad_ranges(fs_user, header, status):
    meta = upload(fs_user, "/", f"r-{abs(hash(header))}.bin", os.urandom(4 * MiB + 100))
    response = fs_user.api.get(f"/api/filesystem/data/{meta['id']}", headers={"Range": header})
    assert_error(response, status)
    if status == 416:
        assert response.headers["Content-Range"] == f"bytes */{4 * MiB + 100}"
    if header == "bytes=5-2":
        assert "last byte (2) comes before its first (5)" in response.json()["error"]["message"]
    if header == "bytes=99999999999-":            # an open end past the file: outside it
        assert "outside the file's" in response.json()["error"]["message"]


def test_a_range_with_if_range_is_served_only_for_the_version_it_names(fs_user):
    """RFC 9110 13.1.5: a client resuming with If-Range gets the range only if the file is
    still the version it began; else the whole new version (200), never a range of it to
    splice onto bytes of the old one."""
    name = f"resume-{os.urandom(3).hex()}.txt"
    old = upload(fs_user, "/", name, b"AAAAAAAAAA")
    url = f"/api/filesystem/data/{old['id']}"
    first = fs_user.api.get(url, headers={"Range": "bytes=0-4"})
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    for validator in (etag, modified):
        same = fs_user.api.get(url, headers={"Range": "bytes=5-9", "If-Range": validator})
        assert (same.status_code, same.content) == (206, b"AAAAA"), validator
    time.sleep(1.1)                             # (a new Last-Modified second)
    upload(fs_user, "/", name, b"BBBBBBBBBB")
    for validator in (etag, modified, "W/" + etag, '"not-this-one"'):
        whole = fs_user.api.get(url, headers={"Range": "bytes=5-9", "If-Range": validator})
        assert (whole.status_code, whole.content) == (200, b"BBBBBBBBBB"), validator
        assert "Content-Range" not in whole.headers
    current = fs_user.api.get(url).headers["ETag"]
    again = fs_user.api.get(url, headers={"Range": "bytes=5-9", "If-Range": current})
    assert (again.status_code, again.content) == (206, b"BBBBB")


def test_if_match_refuses_a_range_of_a_file_replaced_since_the_first(fs_user):
    """A reader of several ranges sends the first answer's ETag in If-Match with the others
    (RFC 9110 13.1.1): once the file is replaced, 412 file_changed with the new ETag, never a
    range of the new version to join to the old one's (found by a sweep: a shared file's
    download, which pins no version, came back as a mix of two)."""
    name = f"if-match-{os.urandom(3).hex()}.txt"
    made = upload(fs_user, "/", name, b"AAAAAAAAAA")
    url = f"/api/filesystem/data/{made['id']}"
    first = fs_user.api.get(url, headers={"Range": "bytes=0-4"})
    etag = first.headers["ETag"]
    for header in (etag, f'"other", {etag}', "*"):
        same = fs_user.api.get(url, headers={"Range": "bytes=5-9", "If-Match": header})
        assert (same.status_code, same.content) == (206, b"AAAAA"), header
    upload(fs_user, "/", name, b"BBBBBBBBBB")
    for header in (etag, "W/" + etag):             # strong comparison: a weak tag never matches
        changed = fs_user.api.get(url, headers={"Range": "bytes=5-9", "If-Match": header})
        assert_error(changed, 412, "file_changed")
        assert "read it again from the start" in changed.json()["error"]["message"]
        assert changed.headers["ETag"] != etag
        assert changed.headers["ETag"] == fs_user.api.get(url).headers["ETag"]
    # The earlier version, named, still matches its own ETag.
    pinned = fs_user.api.get(url, params={"version": made["version"]},
                             headers={"Range": "bytes=5-9", "If-Match": etag})
    assert (pinned.status_code, pinned.content) == (206, b"AAAAA")


def test_if_range_by_date_is_no_validator_when_two_versions_share_its_second(fs_user):
    """Last-Modified has whole seconds: two versions made within one second have the same one,
    and a range of the new one would splice onto the old one's bytes (found by a sweep). The
    date then names no version: the whole file is the answer."""
    name = f"same-second-{os.urandom(3).hex()}.txt"
    for _ in range(5):                  # until both land in one second (almost always at once)
        old = upload(fs_user, "/", name, b"AAAAAAAAAA")
        modified = fs_user.api.get(f"/api/filesystem/data/{old['id']}").headers["Last-Modified"]
        upload(fs_user, "/", name, b"BBBBBBBBBB")
        url = f"/api/filesystem/data/{old['id']}"
        if fs_user.api.get(url).headers["Last-Modified"] == modified:
            break
    else:
        pytest.fail("no two versions were made within one second in five tries")
    whole = fs_user.api.get(url, headers={"Range": "bytes=5-9", "If-Range": modified})
    assert (whole.status_code, whole.content) == (200, b"BBBBBBBBBB")


def test_tree_listing_depth_and_info(fs_user):
    base = "/tree-" + os.urandom(3).hex()
    upload(fs_user, f"{base}/a/b", "deep.txt", b"deep")
    upload(fs_user, base, "top.txt", b"top")
    listing = fs_user.api.get("/api/filesystem/info", params={"path": base, "depth": 2}).json()
    assert listing["type"] == "directory" and listing["path"] == base
    names = {c["name"]: c for c in listing["children"]}
    assert set(names) == {"a", "top.txt"}
    assert names["top.txt"]["size"] == 3 and names["a"]["type"] == "directory"
    assert [c["name"] for c in names["a"]["children"]] == ["b"]
    assert "children" not in names["a"]["children"][0]          # two levels, as asked
    deep = fs_user.api.get("/api/filesystem/info", params={"path": base, "depth": 3}).json()
    a = next(c for c in deep["children"] if c["name"] == "a")
    assert [c["name"] for c in a["children"][0]["children"]] == ["deep.txt"]
    shallow = fs_user.api.get("/api/filesystem/info", params={"path": base, "depth": 0}).json()
    assert "children" not in shallow
    assert_error(fs_user.api.get("/api/filesystem/info", params={"path": base + "/nope"}), 404)
    assert_error(fs_user.api.get("/api/filesystem/info", params={"path": "relative"}), 400,
                 "invalid_path")


def test_mkdir_creates_parents_and_is_idempotent(fs_user):
    path = "/mk-" + os.urandom(3).hex() + "/x/y"
    first = fs_user.api.post("/api/filesystem/dirs", json={"path": path})
    assert first.status_code == 201 and first.json()["path"] == path
    again = fs_user.api.post("/api/filesystem/dirs", json={"path": path})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    upload(fs_user, path, "file", b"x")
    assert_error(fs_user.api.post("/api/filesystem/dirs", json={"path": path + "/file/sub"}),
                 409, "not_a_directory")


def test_rename_move_and_attributes(fs_user):
    base = "/mv-" + os.urandom(3).hex()
    meta = upload(fs_user, base, "old.txt", b"content")
    renamed = fs_user.api.post(f"/api/filesystem/info/{meta['id']}", json={"name": "new.txt"})
    assert renamed.status_code == 200 and renamed.json()["path"] == f"{base}/new.txt"
    moved = fs_user.api.post(f"/api/filesystem/info/{meta['id']}",
                             json={"path": f"{base}/archive/2024"})
    assert moved.json()["path"] == f"{base}/archive/2024/new.txt"
    tagged = fs_user.api.post(f"/api/filesystem/info/{meta['id']}",
                              json={"attributes": {"color": "blue", "stars": 3}})
    assert tagged.json()["attributes"] == {"color": "blue", "stars": 3}
    listing = fs_user.api.get("/api/filesystem/info", params={"path": base}).json()
    assert [c["name"] for c in listing["children"]] == ["archive"]
    assert download(fs_user, meta["id"]) == b"content"
    # Name clashes and impossible moves are refused.
    upload(fs_user, f"{base}/archive/2024", "other.txt", b"o")
    assert_error(fs_user.api.post(f"/api/filesystem/info/{meta['id']}",
                                  json={"name": "other.txt"}), 409, "name_exists")
    folder = fs_user.api.get("/api/filesystem/info", params={"path": f"{base}/archive"}).json()
    assert_error(fs_user.api.post(f"/api/filesystem/info/{folder['id']}",
                                  json={"path": f"{base}/archive/2024"}), 400, "invalid_target")
    assert_error(fs_user.api.post(f"/api/filesystem/info/{meta['id']}", json={}), 400)
    long_limit = assert_error(fs_user.api.get("/api/filesystem/info", params={
        "path": base, "limit": "9" * 20}), 400)
    assert "at most 18 digits" in long_limit["message"], long_limit
    unknown = assert_error(fs_user.api.post(f"/api/filesystem/info/{meta['id']}",
                                            json={"nmae": "typo.txt"}), 400, "unknown_field")
    assert unknown["details"] == {"field": "nmae"}
    assert_error(fs_user.api.post(f"/api/filesystem/info/{meta['id']}",
                                  json={"attributes": {"x": [1]}}), 400)
    # 16 KB in all, not per call: calls of 10 KB each stop at the second, on every engine
    # (DynamoDB refused the item past 400 KB; SQLite took any size).
    url = f"/api/filesystem/info/{meta['id']}"
    assert fs_user.api.post(url, json={"attributes": {"a": "x" * 10_000}}).status_code == 200
    too_many = assert_error(fs_user.api.post(url, json={"attributes": {"b": "x" * 10_000}}),
                            400, "invalid_field")
    assert "in all" in too_many["message"]
    assert fs_user.api.post(url, json={"attributes": {"a": None, "b": "x" * 10_000}}
                            ).status_code == 200     # one removed, the other fits


def test_a_renamed_moved_or_tagged_file_keeps_its_modified_time(fs_user):
    """`modified` is the content's time (the uploader's mtime): a rename, a move or new
    attributes do not change the content, so they leave it, and `put` of the same local file
    to the new path is still skipped as unchanged."""
    base = "/keep-mtime-" + os.urandom(3).hex()
    meta = upload(fs_user, base, "a.txt", b"content", mtime="1700000000.25")
    url = f"/api/filesystem/info/{meta['id']}"
    assert fs_user.api.post(url, json={"name": "b.txt"}).status_code == 200
    assert fs_user.api.post(url, json={"path": f"{base}/sub"}).status_code == 200
    assert fs_user.api.post(url, json={"attributes": {"k": "v"}}).status_code == 200
    info = fs_user.api.get(url).json()
    listed = fs_user.api.get("/api/filesystem/info", params={"path": f"{base}/sub"}).json()
    assert info["modified"] == meta["modified"] == listed["children"][0]["modified"], (
        meta, info, listed)
    assert info["modified"].startswith("2023-11-14T22:13:20.25"), info


def test_two_directories_moved_into_each_other_at_once_are_never_lost(fs_user):
    """x into y and y into x at the same moment: one move wins, the other is refused (either
    as a cycle or as a concurrent change); neither may go, each into the other, a loop cut off
    from the root with all it holds."""
    from concurrent.futures import ThreadPoolExecutor

    def mkdir(path):
        made = fs_user.api.post("/api/filesystem/dirs", json={"path": path})
        assert made.status_code == 201, made.text
        return made.json()["id"]

    def move(node_id, into):
        return fs_user.api.post(f"/api/filesystem/info/{node_id}", json={"path": into})

    base = "/cross-" + os.urandom(3).hex()
    with ThreadPoolExecutor(2) as pool:
        for trial in range(12):
            root = f"{base}/{trial}"
            x, y = mkdir(f"{root}/x"), mkdir(f"{root}/y")
            inside = {d: upload(fs_user, f"{root}/{d}", "in.txt", d.encode())["id"]
                      for d in ("x", "y")}
            answers = list(pool.map(lambda job: move(*job),
                                    [(x, f"{root}/y"), (y, f"{root}/x")]))
            codes = sorted(a.status_code for a in answers)
            assert codes[0] == 200 and codes[1] in (200, 400, 409), \
                [(a.status_code, a.text) for a in answers]
            for node_id in (x, y, *inside.values()):
                info = fs_user.api.get(f"/api/filesystem/info/{node_id}")
                assert info.status_code == 200, (trial, info.text)
                assert info.json()["path"].startswith(root + "/"), info.json()["path"]
            for d, file_id in inside.items():
                assert download(fs_user, file_id) == d.encode()


def test_versions_keep_old_content(fs_user):
    base = "/ver-" + os.urandom(3).hex()
    first = upload(fs_user, base, "doc.txt", b"version one")
    second = upload(fs_user, base, "doc.txt", b"version two!")
    assert second["id"] == first["id"]
    assert second["version"] != first["version"]
    by_path = fs_user.api.get("/api/filesystem/info", params={"path": f"{base}/doc.txt"}).json()
    assert by_path["versions"] == second["versions"]
    versions = second["versions"]
    assert [v["version"] for v in versions] == [first["version"], second["version"]]
    assert [v["current"] for v in versions] == [False, True]
    assert download(fs_user, first["id"]) == b"version two!"
    assert download(fs_user, first["id"], version=first["version"]) == b"version one"
    assert_error(fs_user.api.get(f"/api/filesystem/data/{first['id']}",
                                 params={"version": "0000"}), 404, "version_not_found")


def test_delete_file_and_directory_recursively_frees_chunks(fs_user):
    base = "/del-" + os.urandom(3).hex()
    kept = upload(fs_user, base, "a.txt", b"a")
    nested = upload(fs_user, f"{base}/sub/deeper", "b.txt", os.urandom(1000))
    upload(fs_user, f"{base}/sub/deeper", "b.txt", os.urandom(1000))     # a second version
    chunk = f"v{nested['version']}-0"
    assert fs_user.api.get(f"/api/chunk/{chunk}/info").status_code == 200
    sub = fs_user.api.get("/api/filesystem/info", params={"path": f"{base}/sub"}).json()
    assert fs_user.api.delete(f"/api/filesystem/info/{sub['id']}").status_code == 204
    assert_error(fs_user.api.get(f"/api/filesystem/info/{nested['id']}"), 404)
    # In the trash the chunks stay; deleted from there for good, they are freed.
    assert fs_user.api.get(f"/api/chunk/{chunk}/info").status_code == 200
    assert fs_user.api.delete(f"/api/filesystem/trash/{sub['id']}").status_code == 204
    assert_error(fs_user.api.get(f"/api/chunk/{chunk}/info"), 404)
    assert download(fs_user, kept["id"]) == b"a"
    assert fs_user.api.delete(f"/api/filesystem/info/{kept['id']}").status_code == 204
    root = fs_user.api.get("/api/filesystem/info", params={"path": "/"}).json()
    assert_error(fs_user.api.delete(f"/api/filesystem/info/{root['id']}"), 400)


def test_killed_upload_resumes(fs_user):
    data = os.urandom(13 * MiB)
    created = fs_user.api.post("/api/filesystem/uploads", json={
        "path": "/resume", "name": "big.bin", "size": len(data)}).json()
    upload_id, part_size = created["upload_id"], created["part_size"]
    assert created["parts"] == 4 and created["missing"] == [0, 1, 2, 3]
    for part in (0, 2):
        assert fs_user.api.put(f"/api/filesystem/uploads/{upload_id}/parts/{part}",
                               data=data[part * part_size:(part + 1) * part_size]).ok
    # The client "dies"; a new one asks what is missing and finishes.
    status = fs_user.api.get(f"/api/filesystem/uploads/{upload_id}").json()
    assert status["received"] == [0, 2] and status["missing"] == [1, 3]
    assert_error(fs_user.api.post(f"/api/filesystem/uploads/{upload_id}/commit"), 409,
                 "parts_missing")
    for part in status["missing"] + [2]:          # re-sending a part is harmless
        response = fs_user.api.put(f"/api/filesystem/uploads/{upload_id}/parts/{part}",
                                   data=data[part * part_size:(part + 1) * part_size])
        assert response.status_code == 200
    assert response.json()["stored"] == "already"
    meta = fs_user.api.post(f"/api/filesystem/uploads/{upload_id}/commit").json()
    assert download(fs_user, meta["id"]) == data
    assert_error(fs_user.api.post(f"/api/filesystem/uploads/{upload_id}/commit"), 409,
                 "upload_committed")


def test_bad_parts_are_refused(fs_user):
    created = fs_user.api.post("/api/filesystem/uploads", json={
        "name": "p.bin", "size": 5 * MiB}).json()
    url = f"/api/filesystem/uploads/{created['upload_id']}/parts"
    assert_error(fs_user.api.put(f"{url}/0", data=b"short"), 400, "invalid_part_size")
    assert_error(fs_user.api.put(f"{url}/2", data=b"x"), 400, "invalid_part")
    error = assert_error(fs_user.api.put(f"{url}/-1", data=b"x"), 400, "invalid_part")
    assert "0 to 1" in error["message"], error
    assert fs_user.api.delete(f"/api/filesystem/uploads/{created['upload_id']}").status_code == 204
    # An empty file's session has no parts to send: it is committed as it is.
    empty = fs_user.api.post("/api/filesystem/uploads", json={"name": "e.bin", "size": 0}).json()
    error = assert_error(fs_user.api.put(
        f"/api/filesystem/uploads/{empty['upload_id']}/parts/0", data=b""), 400, "invalid_part")
    assert "no parts" in error["message"] and "-1" not in error["message"], error
    committed = fs_user.api.post(f"/api/filesystem/uploads/{empty['upload_id']}/commit")
    assert committed.status_code == 201 and committed.json()["size"] == 0, committed.text
    assert_error(fs_user.api.get(f"/api/filesystem/uploads/{created['upload_id']}"), 404)
    assert_error(fs_user.api.post("/api/filesystem/uploads", json={"name": "x", "size": -1}),
                 400)
    assert_error(fs_user.api.post("/api/filesystem/uploads", json={"name": "x", "size": "9"}),
                 400)


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "nul\x00byte", "x" * 256, "é" * 128])
def test_bad_names_are_rejected(fs_user, name):
    response = fs_user.api.post("/api/filesystem/data", files={"file": ("f", b"x")},
                                data={"path": "/", "name": name})
    assert_error(response, 400)


@pytest.mark.parametrize("path", ["/a/../b", "/./a", "a/b", "//a", "/a//b", "/x/\x00"])
def test_path_traversal_and_bad_paths_are_rejected(fs_user, path):
    assert_error(fs_user.api.post("/api/filesystem/dirs", json={"path": path}), 400)
    response = fs_user.api.post("/api/filesystem/data", files={"file": ("f", b"x")},
                                data={"path": path, "name": "f"})
    assert_error(response, 400)


def test_unicode_names_work(fs_user):
    name = "Résumé 履歴書 📄.txt"
    meta = upload(fs_user, "/ünïcode", name, b"unicode")
    assert meta["name"] == name and meta["path"] == f"/ünïcode/{name}"
    assert download(fs_user, meta["id"]) == b"unicode"
    assert len(("é" * 127).encode()) == 254
    upload(fs_user, "/ünïcode", "é" * 127, b"ok at 254 bytes")


def test_another_users_file_is_404(fs_user, api):
    meta = upload(fs_user, "/private", "secret.txt", b"mine")
    stranger = register_and_login(api)
    for method, path, body in [("GET", f"/api/filesystem/info/{meta['id']}", None),
                               ("GET", f"/api/filesystem/data/{meta['id']}", None),
                               ("POST", f"/api/filesystem/info/{meta['id']}", {"name": "x"}),
                               ("DELETE", f"/api/filesystem/info/{meta['id']}", None)]:
        assert_error(stranger.api.request(method, path, json=body), 404)
    # Their own tree does not show it.
    assert stranger.api.get("/api/filesystem/info", params={"path": "/"}).json()["children"] == []
    assert download(fs_user, meta["id"]) == b"mine"


def test_defaults_apply_to_uploads(fs_user, api, tmp_path):
    settings = fs_user.api.get("/api/filesystem/settings").json()
    assert settings == {"durability": "raid1(2)", "encryption": "aes256-gcm",
                        "trash_retention_days": 30}
    meta = upload(fs_user, "/", "defaults.txt", b"d")
    assert meta["durability"] == "raid1(2)" and meta["encryption"] == "aes256-gcm"
    explicit = upload(fs_user, "/", "explicit.txt", b"e", durability="rs(2,1)",
                      encryption="none")
    assert explicit["durability"] == "rs(2,1)" and explicit["encryption"] == "none"
    assert_error(fs_user.api.put("/api/filesystem/settings", json={"durability": "rs(0,0)"}),
                 400)


def test_listings_carry_each_files_sha256(fs_user):
    first = upload(fs_user, "/hashes", "a.txt", b"first")
    upload(fs_user, "/hashes", "b.txt", b"other")
    assert fs_user.api.post("/api/filesystem/dirs", json={"path": "/hashes/sub"}).status_code \
        == 201

    def listed() -> dict:
        info = fs_user.api.get("/api/filesystem/info", params={"path": "/hashes"}).json()
        return {c["name"]: c.get("sha256") for c in info["children"]}
    assert listed() == {"a.txt": hashlib.sha256(b"first").hexdigest(),
                        "b.txt": hashlib.sha256(b"other").hexdigest(), "sub": None}
    upload(fs_user, "/hashes", "a.txt", b"second")          # a new version
    assert listed()["a.txt"] == hashlib.sha256(b"second").hexdigest()
    moved = fs_user.api.post(f"/api/filesystem/info/{first['id']}", json={"name": "c.txt"})
    assert moved.status_code == 200, moved.text
    assert listed()["c.txt"] == hashlib.sha256(b"second").hexdigest()


def test_settings_refuse_unknown_fields_and_null_resets_a_default(fs_user):
    error = assert_error(fs_user.api.put("/api/filesystem/settings",
                                         json={"trash_retention_day": 5}), 400, "unknown_field")
    assert "trash_retention_day'" in error["message"] and "trash_retention_days" in \
        error["message"]
    chosen = fs_user.api.put("/api/filesystem/settings",
                             json={"durability": "rs(2,1)", "trash_retention_days": 7})
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["durability"] == "rs(2,1)"
    kept = fs_user.api.put("/api/filesystem/settings", json={"encryption": "aes256-gcm"})
    assert kept.json()["durability"] == "rs(2,1)" and kept.json()["trash_retention_days"] == 7
    reset = fs_user.api.put("/api/filesystem/settings",
                            json={"durability": None, "trash_retention_days": None})
    assert reset.status_code == 200, reset.text
    assert reset.json() == {"durability": None, "encryption": "aes256-gcm",
                            "trash_retention_days": 30}
    meta = upload(fs_user, "/", "automatic.txt", b"a")
    assert meta["durability"] == "raid1(2)"       # chosen from the two storages again
    assert_error(fs_user.api.put("/api/filesystem/settings", json={"durability": 3}), 400)


def test_a_move_or_restore_that_would_put_items_past_the_depth_limit_is_refused(fs_user):
    """Paths are at most 64 levels: a move (or a restore into another folder) that would put
    anything deeper is refused, nothing moved; before, it went through and the item's path
    came out cut short, and a restore rebuilt it in the wrong place."""
    base = "/deep-" + os.urandom(3).hex()
    chain = base + "".join(f"/l{n}" for n in range(2, 63))          # 62 levels
    assert fs_user.api.post("/api/filesystem/dirs", json={"path": chain}).status_code == 201
    meta = upload(fs_user, f"{base}-src/y/w", "f.txt", b"deep")       # w holds f
    folder = fs_user.api.get("/api/filesystem/info", params={"path": f"{base}-src/y/w"}).json()

    refused = assert_error(fs_user.api.post(f"/api/filesystem/info/{folder['id']}",
                                            json={"path": chain + "/l63"}), 400, "too_deep")
    assert "64 levels" in refused["message"]
    info = fs_user.api.get(f"/api/filesystem/info/{meta['id']}").json()
    assert info["path"] == f"{base}-src/y/w/f.txt"
    # Level 64 is a path still: the file may go there, and the folder one level higher.
    file_moved = fs_user.api.post(f"/api/filesystem/info/{meta['id']}",
                                  json={"path": chain + "/l63"})
    assert file_moved.status_code == 200 and file_moved.json()["path"] == \
        chain + "/l63/f.txt", file_moved.text
    assert_error(fs_user.api.post(f"/api/filesystem/info/{meta['id']}",
                                  json={"path": chain + "/l63/l64"}), 400, "too_deep")
    assert fs_user.api.post(f"/api/filesystem/info/{meta['id']}",
                            json={"path": f"{base}-src/y/w"}).status_code == 200
    assert fs_user.api.post(f"/api/filesystem/info/{folder['id']}",
                            json={"path": chain}).status_code == 200
    # Moved higher again (no deeper than it was): no need to look inside.
    assert fs_user.api.post(f"/api/filesystem/info/{folder['id']}",
                            json={"path": base}).status_code == 200

    # A restore into a folder too deep for what it brings back is refused the same way.
    assert fs_user.api.delete(f"/api/filesystem/info/{folder['id']}").status_code == 204
    assert_error(fs_user.api.post(f"/api/filesystem/trash/{folder['id']}/restore",
                                  json={"path": chain + "/l63"}), 400, "too_deep")
    back = fs_user.api.post(f"/api/filesystem/trash/{folder['id']}/restore")
    assert back.status_code == 200 and back.json()["path"] == f"{base}/w", back.text
    assert download(fs_user, meta["id"]) == b"deep"


def test_reading_a_directory_s_content_names_it_and_the_root_as_slash(fs_user):
    folder = fs_user.api.post("/api/filesystem/dirs", json={"path": "/no-content"}).json()
    for node_id, named in (("root", "'/' (the root)"), (folder["id"], "'no-content'")):
        error = assert_error(fs_user.api.get(f"/api/filesystem/data/{node_id}"), 400,
                             "not_a_file")
        assert error["message"].startswith(f"{named} is a directory"), error
        results, _ = read_many(fs_user, [node_id])
        (result,) = results["results"]
        assert result["error"]["code"] == "not_a_file", result
        assert result["error"]["message"].startswith(f"{named} is a directory"), result
