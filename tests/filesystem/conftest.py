"""A user with three local storages, for the filesystem tests."""
import pytest
from cloudstrype.tree.store import TreeStore

from tests.support import register_and_login


@pytest.fixture(scope="module")
def fs_user(api, tmp_path_factory):
    user = register_and_login(api)
    disks = tmp_path_factory.mktemp("fs-disks")
    for n in range(3):
        response = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"disk{n}", "config": {"path": str(disks / f"d{n}")}})
        assert response.status_code == 201, response.text
    assert user.api.put("/api/filesystem/settings",
                        json={"durability": "raid1(2)"}).status_code == 200
    return user


def upload(user, directory: str, name: str, data: bytes, **fields):
    response = user.api.post("/api/filesystem/data", files={"file": (name, data)},
                             data={"path": directory, "name": name, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def session_upload(user, directory: str, name: str, data: bytes, order=None, **extra):
    created = user.api.post("/api/filesystem/uploads", json={
        "path": directory, "name": name, "size": len(data), **extra})
    assert created.status_code == 201, created.text
    session = created.json()
    part_size = session["part_size"]
    for part in (order or range(session["parts"])):
        body = data[part * part_size:(part + 1) * part_size]
        response = user.api.put(f"/api/filesystem/uploads/{session['upload_id']}/parts/{part}",
                                data=body)
        assert response.status_code == 200, response.text
    committed = user.api.post(f"/api/filesystem/uploads/{session['upload_id']}/commit")
    assert committed.status_code == 201, committed.text
    return committed.json()


def download(user, file_id: str, version: str | None = None) -> bytes:
    """The whole content, by ranges of at most 4 MiB, as the clients do it."""
    info = user.api.get(f"/api/filesystem/info/{file_id}").json()
    size = info["size"] if version is None else next(
        v["size"] for v in info["versions"] if v["version"] == version)
    params = {"version": version} if version else {}
    if size == 0:
        response = user.api.get(f"/api/filesystem/data/{file_id}", params=params)
        assert response.status_code == 200
        return response.content
    out = bytearray()
    step = 4 * 1024 * 1024
    for first in range(0, size, step):
        last = min(size, first + step) - 1
        response = user.api.get(f"/api/filesystem/data/{file_id}", params=params,
                                headers={"Range": f"bytes={first}-{last}"})
        assert response.status_code == 206, response.text
        assert response.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        out += response.content
    return bytes(out)


def stack_tree_store(stack) -> TreeStore:
    """The running (embedded) stack's tree store, opened beside the server to seed data in
    bulk: SQLite lets a second process write the same database file."""
    from cloudstrype.metadata.sqlite import SqliteEngine
    return TreeStore(SqliteEngine(str(stack.data_dir / "metadata.db")))
