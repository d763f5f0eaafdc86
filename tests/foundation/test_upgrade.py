"""A data directory written by the Cloudstrype of the moto era (tests/fixtures/v0-data, made by
commit c430454; see tests/fixtures/make_v0_data.py) is imported on the first start, once: every
user logs in with the old password, reads every version of every file, the raw chunk and blob,
keeps their groups; the old state file, which held the passwords in plain text, is deleted once
everything is in the database."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.support import Api, login, start_stack

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory):
    manifest = json.loads((FIXTURE / "v0-data.json").read_text())
    data_dir = tmp_path_factory.mktemp("upgrade") / "data"
    shutil.copytree(FIXTURE / "v0-data", data_dir)
    legacy = (data_dir / "aws-state.pickle").read_bytes()
    stack = start_stack(data_dir)
    yield stack, manifest, legacy
    assert stack.stop() == 0, stack.log()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _as(stack, user: dict) -> Api:
    tokens = login(Api(stack.url), user["username"], user["password"])
    return Api(stack.url).as_user(tokens["access_token"])


def _read(api: Api, file_id: str, version: dict, part: int = 4 * 1024 * 1024) -> bytes:
    """The whole content, in ranges as the clients read large files."""
    data = b""
    while len(data) < version["size"] or not version["size"]:
        last = min(len(data) + part, version["size"]) - 1
        answer = api.get(f"/api/filesystem/data/{file_id}",
                         params={"version": version["version_id"]},
                         headers={"Range": f"bytes={len(data)}-{last}"} if version["size"] else {})
        assert answer.status_code in (200, 206), answer.text
        data += answer.content
        if not version["size"]:
            break
    return data


def test_the_import_runs_once_and_deletes_the_old_file_with_its_plain_passwords(upgraded):
    stack, manifest, legacy = upgraded
    assert "Imported:" in stack.log()
    mark = json.loads((stack.data_dir / "aws-state.imported").read_text())
    assert mark["items"]["users"] == len(manifest["users"]) + 1          # and the admin
    # moto kept the passwords as they were typed: the old file held every one.
    assert all(user["password"].encode() in legacy for user in manifest["users"])
    assert not (stack.data_dir / "aws-state.pickle").exists()
    for path in stack.data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(user["password"].encode() in content for user in manifest["users"]), \
                path


def test_every_user_logs_in_and_reads_every_version_of_every_file(upgraded):
    stack, manifest, _ = upgraded
    users = {u["username"]: u for u in manifest["users"]}
    for username, user in users.items():
        api = _as(stack, user)
        me = api.get("/api/auth/me").json()
        assert me["user_id"] == user["user_id"]
        assert sorted(me.get("groups", [])) == sorted(user["groups"])
        for record in (f for f in manifest["files"] if f["owner"] == username):
            info = api.get(f"/api/filesystem/info/{record['file_id']}")
            assert info.status_code == 200, info.text
            for version in record["versions"]:
                content = _read(api, record["file_id"], version)
                assert _sha256(content) == version["sha256"], record["path"]
        for chunk in (c for c in manifest["chunks"] if c["owner"] == username):
            data = api.get(f"/api/chunk/{chunk['chunk_id']}")
            assert data.status_code == 200 and _sha256(data.content) == chunk["sha256"]
        for blob in (b for b in manifest["blobs"] if b["owner"] == username):
            data = api.get(f"/api/cloud/{blob['chunk_id']}")
            assert data.status_code == 200 and _sha256(data.content) == blob["sha256"]


def test_the_admin_is_still_an_admin(upgraded):
    stack, manifest, _ = upgraded
    admin = _as(stack, manifest["admin"])
    listed = admin.get("/api/auth/users")
    assert listed.status_code == 200
    names = {u["username"] for u in listed.json()["users"]}
    assert {"alice", "bob", manifest["admin"]["username"]} <= names


def test_a_wrong_password_still_fails_after_the_import(upgraded):
    stack, manifest, _ = upgraded
    answer = Api(stack.url).post("/api/auth/login", json={
        "username": manifest["users"][0]["username"], "password": "Not-the-Passw0rd"})
    assert answer.status_code == 401
