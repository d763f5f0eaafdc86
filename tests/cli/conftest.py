"""The `cloudstrype` desktop commands, run as subprocesses against the session's local stack.

Every CLI run gets HOME and XDG_CONFIG_HOME in a temporary folder, so no real user config is read
or written, and none of the CLOUDSTRYPE_* overrides of the calling environment leak in.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.faults import FaultyProxy
from tests.support import PASSWORD, User, register_and_login

_OVERRIDES = ("CLOUDSTRYPE_SERVER", "CLOUDSTRYPE_TOKEN")


@dataclass
class Cli:
    """One desktop user's home: runs `cloudstrype ...` with it."""
    home: Path
    server: str
    user: User | None = None

    @property
    def config_dir(self) -> Path:
        return self.home / ".config" / "cloudstrype"

    @property
    def credentials_file(self) -> Path:
        return self.config_dir / "credentials.json"

    def env(self, extra: dict | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES}
        env.update({"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
                    "PYTHONUNBUFFERED": "1"})
        env.update(extra or {})
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cloudstrype_client.cli", *args]

    def run(self, *args: str, input: str | bytes | None = None, env: dict | None = None,
            timeout: float = 120, text: bool = True) -> subprocess.CompletedProcess:
        if input is not None and not text and isinstance(input, str):
            input = input.encode()
        return subprocess.run(self.command(*args), capture_output=True, text=text,
                              input=input, env=self.env(env), timeout=timeout, cwd=self.home)

    def ok(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        done = self.run(*args, **kwargs)
        assert done.returncode == 0, (f"cloudstrype {' '.join(args)} -> {done.returncode}\n"
                                      f"stdout: {done.stdout!r}\nstderr: {done.stderr!r}")
        return done

    def login(self, user: User) -> None:
        self.ok("login", "--server", self.server, "--username", user.username,
                "--password-stdin", input=PASSWORD + "\n")
        self.user = user

    def credentials(self) -> dict:
        return json.loads(self.credentials_file.read_text())


def remote_info(user: User, path: str) -> dict | None:
    """GET /api/filesystem/info/{id} of what is at `path` (None if nothing is)."""
    node = user.api.get("/api/filesystem/info", params={"path": path, "depth": 0})
    if node.status_code == 404:
        return None
    assert node.status_code == 200, node.text
    return user.api.get(f"/api/filesystem/info/{node.json()['id']}").json()


def add_local_storages(user: User, root: Path, count: int = 3) -> None:
    for n in range(count):
        response = user.api.post("/api/cloud/storages", json={
            "kind": "local", "name": f"disk{n}", "config": {"path": str(root / f"d{n}")}})
        assert response.status_code == 201, response.text


@pytest.fixture
def home(stack, tmp_path) -> Cli:
    """A fresh desktop home, not logged in."""
    folder = tmp_path / "home"
    folder.mkdir()
    return Cli(folder, stack.url)


@pytest.fixture(scope="module")
def cli_user(api, tmp_path_factory) -> User:
    """A user with three local storages and raid1(2) by default."""
    user = register_and_login(api)
    add_local_storages(user, tmp_path_factory.mktemp("cli-disks"))
    assert user.api.put("/api/filesystem/settings",
                        json={"durability": "raid1(2)"}).status_code == 200
    return user


@pytest.fixture(scope="module")
def cli(stack, cli_user, tmp_path_factory) -> Cli:
    """A desktop home logged in as `cli_user` (shared by the tests of a module)."""
    runner = Cli(tmp_path_factory.mktemp("cli-home"), stack.url)
    runner.login(cli_user)
    return runner


@pytest.fixture
def proxy(stack):
    """A proxy in front of the stack that breaks the requests a test picks (faults.py)."""
    running = FaultyProxy(stack.url)
    yield running
    running.close()
