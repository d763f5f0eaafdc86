"""People with storages, groups, and the calls the sharing tests make."""
from __future__ import annotations

import pytest

from tests.support import register_and_login, start_stack, unique

# The `limited` stack's limits: link requests per minute per link and per address, and bytes
# each user may store.
PER_LINK, PER_ADDRESS = 4, 7
QUOTA = 1024 * 1024


@pytest.fixture(scope="session")
def limited(tmp_path_factory):
    """A stack of its own with tight limits, logging every request (INFO)."""
    running = start_stack(tmp_path_factory.mktemp("sharing-limits"), env={
        "CLOUDSTRYPE_LINK_REQUESTS_PER_MINUTE": str(PER_LINK),
        "CLOUDSTRYPE_LINK_REQUESTS_PER_MINUTE_PER_ADDRESS": str(PER_ADDRESS),
        "CLOUDSTRYPE_QUOTA_BYTES": str(QUOTA), "CLOUDSTRYPE_LOG_LEVEL": "INFO"})
    yield running
    assert running.stop() == 0, running.log()


def with_storages(api, user):
    """A user with two local storages and raid1(2), so they can own files."""
    for n in range(2):
        added = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"disk{n}", "config": {"path": unique("share-disk")}})
        assert added.status_code == 201, added.text
    assert user.api.put("/api/filesystem/settings",
                        json={"durability": "raid1(2)"}).status_code == 200
    return user


@pytest.fixture
def alice(api):
    return with_storages(api, register_and_login(api))


@pytest.fixture
def bob(api):
    return with_storages(api, register_and_login(api))


@pytest.fixture
def carol(api):
    return register_and_login(api)


@pytest.fixture
def group(admin):
    """A new group; the test adds and removes members with `membership`."""
    admin_api, _ = admin
    name = unique("team")
    made = admin_api.post("/api/auth/groups", json={"name": name})
    assert made.status_code == 201, made.text
    return name


def membership(admin, group: str, username: str, member: bool) -> None:
    admin_api, _ = admin
    path = f"/api/auth/groups/{group}/members/{username}"
    response = admin_api.put(path) if member else admin_api.delete(path)
    assert response.status_code == 204, response.text


def upload(user, directory: str, name: str, data: bytes, share: str | None = None):
    params = {"share": share} if share else None
    return user.api.post("/api/filesystem/data", params=params, files={"file": (name, data)},
                         data={"path": directory, "name": name})


def uploaded(user, directory: str, name: str, data: bytes, share: str | None = None) -> dict:
    response = upload(user, directory, name, data, share)
    assert response.status_code == 201, response.text
    return response.json()


def mkdir(user, path: str, share: str | None = None):
    params = {"share": share} if share else None
    return user.api.post("/api/filesystem/dirs", params=params, json={"path": path})


def share(owner, target: str, level: str = "read", *, user=None, group=None) -> dict:
    body = {"path": target, "level": level}
    if user is not None:
        body["user"] = user.username
    if group is not None:
        body["group"] = group
    response = owner.api.post("/api/filesystem/shares", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def usage(user) -> int:
    response = user.api.get("/api/filesystem/usage")
    assert response.status_code == 200, response.text
    return response.json()["stored_bytes"]
