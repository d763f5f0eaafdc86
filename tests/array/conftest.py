"""Real member programs (`cloudstrype array`, as subprocesses) against the session's local stack."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ARTIFACTS, REPO, register_and_login, unique

MEMBER_SIZE = "50MB"
MEMBER_BYTES = 50_000_000


def wait_for(condition, timeout: float = 15.0, message: str = "condition", interval=0.05):
    """Poll `condition` until it returns something truthy; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


class MemberProcess:
    """One `cloudstrype array` program with its own folder."""

    def __init__(self, stack_url: str | None, folder: Path, token: str | None, name: str,
                 size: str = MEMBER_SIZE, extra: tuple = (), env: dict | None = None):
        self.stack_url, self.folder, self.token, self.name = stack_url, folder, token, name
        self.size, self.extra, self.env = size, extra, env or {}
        self.process: subprocess.Popen | None = None
        (ARTIFACTS / "members").mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / "members" / f"{name}.log"

    def start(self) -> "MemberProcess":
        log = self.log_path.open("a")
        args = [sys.executable, "-m", "cloudstrype_client.cli", "array", "--dir",
                str(self.folder), "--size", self.size, "--name", self.name, *self.extra]
        if self.stack_url is not None:
            args += ["--server", self.stack_url]
        if self.token is not None:
            args += ["--token", self.token]
        # A home of its own: a developer's saved login must not leak into a test.
        home = self.folder.parent / f"{self.name}-home"
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
        env.pop("CLOUDSTRYPE_TOKEN", None)
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                        env={**env, **self.env})
        log.close()
        return self

    @property
    def member_id(self) -> str:
        meta = wait_for(lambda: (self.folder / "member.json").exists() and
                        json.loads((self.folder / "member.json").read_text()),
                        message=f"{self.name} to write its member id")
        return meta["member_id"]

    @property
    def storage_id(self) -> str:
        return "mb-" + self.member_id

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def share_files(self, marker: str = "") -> list[Path]:
        shares = self.folder / "shares"
        if not shares.exists():
            return []
        return [p for p in shares.rglob("*") if p.is_file() and marker.lower() in p.name]

    def chunk_files(self, chunk_id: str, index: int | None = None) -> list[Path]:
        marker = f".{chunk_id.lower()}." + (f"{index}." if index is not None else "")
        return self.share_files(marker)


class Members:
    """Start members for a user; everything started is stopped at teardown."""

    def __init__(self, stack, tmp: Path):
        self.stack, self.tmp = stack, tmp
        self.started: list[MemberProcess] = []

    def start(self, user, name: str | None = None, token: str | None = "",
              extra: tuple = (), env: dict | None = None, folder: Path | None = None,
              wait: bool = True, server: str | None = "",
              size: str = MEMBER_SIZE) -> MemberProcess:
        """`token` "" is the user's own, None passes no --token; `server` likewise."""
        name = name or unique("member")
        member = MemberProcess(self.stack.url if server == "" else server,
                               folder or self.tmp / name,
                               user.access_token if token == "" else token, name, size=size,
                               extra=extra, env=env).start()
        self.started.append(member)
        if wait:
            self.wait_online(user, member)
        return member

    def restart(self, user, member: MemberProcess) -> MemberProcess:
        member.start()
        self.wait_online(user, member)
        return member

    def wait_online(self, user, member: MemberProcess, online: bool = True,
                    timeout: float = 30) -> dict:
        def state():
            if online and not member.alive():
                raise AssertionError(f"member {member.name} exited:\n{member.log()}")
            if not (member.folder / "member.json").exists():
                return None
            found = listing(user).get(member.member_id)
            return found if found and found["online"] is online else None
        return wait_for(state, timeout, f"{member.name} online={online}")

    def stop_all(self) -> None:
        for member in self.started:
            if member.alive():
                member.process.kill()
                member.process.wait(timeout=10)


def listing(user) -> dict[str, dict]:
    response = user.api.get("/api/array/members")
    assert response.status_code == 200, response.text
    return {m["id"]: m for m in response.json()["members"]}


@pytest.fixture
def members(stack, tmp_path):
    started = Members(stack, tmp_path)
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def trio(stack, api, tmp_path_factory):
    """A user with three members, each with its own folder."""
    user = register_and_login(api)
    group = Members(stack, tmp_path_factory.mktemp("trio"))
    started = [group.start(user, name=unique(f"trio{n}"), wait=False) for n in range(3)]
    for member in started:
        group.wait_online(user, member)
    yield user, group, started
    group.stop_all()


@pytest.fixture
def metadata(stack, monkeypatch):
    """The stack's metadata engine, for tests that play a failure the API cannot cause."""
    info = stack.stack_info()
    if info.get("mode", "local") == "local":
        from cloudstrype.metadata.sqlite import SqliteEngine

        from infra.local.services import METADATA_FILE
        engine = SqliteEngine(str(stack.data_dir / METADATA_FILE))
    else:
        from cloudstrype.metadata.dynamodb import DynamoEngine
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local-secret")
        engine = DynamoEngine(prefix="cloudstrype-", region="us-east-1",
                              host=info["aws_endpoint"])
    yield engine
    engine.close()
