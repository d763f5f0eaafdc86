"""Large files stored once per account, through the real CLI and the local stack: the same
content put again under another name (the CLI sends it in parts, an upload session) adds
nothing to the storages or to the stored bytes, reads back whole, and outlives the file that
stored it first; the last file's deletion frees it."""
from __future__ import annotations

import os
from pathlib import Path

from tests.cli.conftest import add_local_storages
from tests.support import register_and_login

MiB = 1024 * 1024


def _files_in(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".", "~"))}


def test_a_large_file_put_again_under_another_name_is_stored_once(api, home, tmp_path):
    user = register_and_login(api)
    disks = tmp_path / "disks"
    add_local_storages(user, disks, 2)
    assert user.api.put("/api/filesystem/settings",
                        json={"durability": "raid1(2)"}).status_code == 200
    home.login(user)
    data = os.urandom(9 * MiB + 12345)          # three chunks, sent in three parts
    local = tmp_path / "video.bin"
    local.write_bytes(data)

    home.ok("put", "-q", str(local), "/first/video.bin")
    written = _files_in(disks)
    stored = user.api.get("/api/filesystem/usage").json()["stored_bytes"]
    home.ok("put", "-q", str(local), "/second/copy.bin")
    assert _files_in(disks) == written
    assert user.api.get("/api/filesystem/usage").json()["stored_bytes"] == stored

    home.ok("rm", "/first/video.bin")
    home.ok("trash", "empty", "--yes")
    back = tmp_path / "back.bin"
    home.ok("get", "-q", "/second/copy.bin", str(back))
    assert back.read_bytes() == data
    assert _files_in(disks) == written

    home.ok("rm", "/second/copy.bin")
    home.ok("trash", "empty", "--yes")
    assert _files_in(disks) == set()
    assert user.api.get("/api/filesystem/usage").json()["stored_bytes"] == 0
