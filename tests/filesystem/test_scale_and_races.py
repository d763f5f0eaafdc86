"""Concurrent writes of one path, and a directory of 10,000 entries."""
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from cloudstrype.tree.store import FILE, Node

from tests.filesystem.conftest import download, stack_tree_store, upload
from tests.support import Api


def test_concurrent_uploads_to_one_path_make_one_file_with_every_version(fs_user, stack):
    base = "/race-" + os.urandom(3).hex()
    bodies = [f"writer {n}".encode() for n in range(8)]
    writer_api = [Api(stack.url, fs_user.access_token) for _ in bodies]

    def write(n):
        response = writer_api[n].post("/api/filesystem/data", files={"file": ("f", bodies[n])},
                                      data={"path": base, "name": "same.txt"})
        return response.status_code, response.json()

    with ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(write, range(len(bodies))))
    assert all(status == 201 for status, _ in results), [m for s, m in results if s != 201]
    ids = {meta["id"] for _, meta in results}
    assert len(ids) == 1, "one path, one file"
    listing = fs_user.api.get("/api/filesystem/info", params={"path": base}).json()
    assert [c["name"] for c in listing["children"]] == ["same.txt"]
    info = fs_user.api.get(f"/api/filesystem/info/{ids.pop()}").json()
    assert len(info["versions"]) == len(bodies)
    assert download(fs_user, info["id"]) in bodies
    for version in info["versions"]:
        assert download(fs_user, info["id"], version["version"]) in bodies


def test_concurrent_mkdirs_make_one_directory(fs_user, stack):
    path = "/mk-race-" + os.urandom(3).hex() + "/a/b"
    apis = [Api(stack.url, fs_user.access_token) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda a: a.post("/api/filesystem/dirs", json={"path": path}),
                                apis))
    assert all(r.status_code in (200, 201) for r in results)
    assert len({r.json()["id"] for r in results}) == 1
    parent = fs_user.api.get("/api/filesystem/info", params={"path": path.rsplit("/", 1)[0]})
    assert [c["name"] for c in parent.json()["children"]] == ["b"]


def test_ten_thousand_entries_list_in_fast_pages(fs_user, stack):
    directory = upload(fs_user, "/ten-thousand", "seed.txt", b"seed")
    parent_id = fs_user.api.get("/api/filesystem/info",
                                params={"path": "/ten-thousand"}).json()["id"]
    # Seed the directory directly through the tree store, beside the server (the thing under
    # test is the listing, not 10,000 uploads): empty files, as the service writes them.
    names = [f"file-{n:05d}.txt" for n in range(10_000)]
    trees = stack_tree_store(stack)
    stamp = time.time()
    trees.create_many([(Node(fs_user.user_id, uuid.uuid4().hex, FILE, name, parent_id, stamp,
                             stamp), None) for name in names])
    trees.engine.close()
    seen, cursor, pages = [], None, 0
    while True:
        params = {"path": "/ten-thousand", "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = fs_user.api.get("/api/filesystem/info", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["children"]) <= 1000
        seen += [c["name"] for c in body["children"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(names + ["seed.txt"])
    assert pages in (11, 12)
    assert directory["name"] == "seed.txt"


def test_bad_cursor_is_400(fs_user):
    response = fs_user.api.get("/api/filesystem/info", params={"path": "/", "cursor": "%%%"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_cursor"
