"""A file whose chunk is damaged past its redundancy (every storage answers, too few shares are
intact) fails at once with words saying so: the server answers 503 `chunk_damaged`, which the
CLI does not retry (retrying a 503 helps only when a storage is out of reach)."""
from __future__ import annotations

import os

from cloudstrype.backends.local import MARKER

from tests.cli.conftest import Cli, add_local_storages
from tests.support import register_and_login

DATA = r"^/api/filesystem/data/"


def test_a_file_damaged_past_its_redundancy_fails_at_once_and_says_so(api, stack, tmp_path,
                                                                     proxy):
    user = register_and_login(api)
    add_local_storages(user, tmp_path / "disks", count=2)
    assert user.api.put("/api/filesystem/settings",
                        json={"durability": "raid1(2)"}).status_code == 200
    home = tmp_path / "home"
    home.mkdir()
    runner = Cli(home, stack.url)
    runner.login(user)
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(600 * 1024))            # its own chunk, not in a pack
    runner.ok("put", str(local), "/damaged/big.bin")
    shares = [p for p in (tmp_path / "disks").rglob("*") if p.is_file() and p.name != MARKER]
    assert len(shares) == 2, shares
    for share in shares:
        share.unlink()

    done = runner.run("get", "/damaged/big.bin", str(tmp_path / "back.bin"),
                      env=proxy.env(user.access_token))
    assert done.returncode != 0
    assert "damaged past its redundancy" in done.stderr, done.stderr
    assert proxy.count("GET", DATA) == 1, proxy.seen          # asked once, not retried
    assert not (tmp_path / "back.bin").exists()
