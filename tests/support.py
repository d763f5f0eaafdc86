"""Starting real local stacks and talking to them over HTTP, for the tests."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
PASSWORD = "Str0ngPassw0rd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class RunningStack:
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen
    log_path: Path
    extra_env: dict = field(default_factory=dict)

    def stop(self, sig=signal.SIGINT, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    def stack_info(self) -> dict:
        return json.loads((self.data_dir / "stack.json").read_text())


def start_stack(data_dir: Path, port: int | None = None, env: dict | None = None,
                wait: float = 60, mode: str = "local") -> RunningStack:
    """`mode`: "local" (the embedded default) or "aws-emulated" (the AWS adapters on moto).
    Without a `port`, a free one; if another process takes it before the server binds it (the
    test workers and their fake servers pick ports at the same time), another one."""
    for attempt in range(3):
        try:
            return _start_stack(data_dir, port or free_port(), env, wait, mode)
        except _PortTaken:
            if port is not None or attempt == 2:
                raise
    raise AssertionError("unreachable")


class _PortTaken(RuntimeError):
    pass


def _start_stack(data_dir: Path, port: int, env: dict | None, wait: float,
                 mode: str) -> RunningStack:
    env = {**(env or {}), "CLOUDSTRYPE_SERVE_MODE": mode}
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"stack-{port}.log"
    # Where users reach it, only as a test says: a value another stack of this process
    # exported for its functions would otherwise be taken for the operator's.
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("CLOUDSTRYPE_PUBLIC_URL", "CLOUDSTRYPE_WEB_URL",
                              "CLOUDSTRYPE_WEBSOCKET_URL")}
    process_env = {**inherited, **(env or {})}
    process_env.setdefault("CLOUDSTRYPE_LOG_LEVEL", "WARNING")
    # Every test registers its users from 127.0.0.1: the per-address sign-in throttle is proven
    # by its own stack (tests/security/test_gateway.py), not by the shared ones.
    process_env.setdefault("CLOUDSTRYPE_SIGN_IN_BURST_PER_ADDRESS", "100000")
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "cloudstrype_client.cli", "serve", "--port", str(port),
         "--data-dir", str(data_dir)],
        stdout=log_file, stderr=subprocess.STDOUT, env=process_env, cwd=REPO)
    stack = RunningStack(f"http://127.0.0.1:{port}", port, data_dir, process, log_path,
                         env or {})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = stack.log()
            failure = _PortTaken if "address already in use" in log else RuntimeError
            raise failure(f"the local stack exited early:\n{log}")
        try:
            if requests.get(stack.url + "/api/health", timeout=1).status_code == 200:
                return stack
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    stack.stop()
    raise RuntimeError(f"the local stack did not answer within {wait}s:\n{stack.log()}")


class Api:
    """requests against one stack, optionally as one signed-in user."""

    def __init__(self, base_url: str, token: str | None = None):
        self.base_url = base_url
        self.session = requests.Session()
        self.token = token

    def as_user(self, token: str | None) -> "Api":
        return Api(self.base_url, token)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {}) or {}
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, self.base_url + path, headers=headers, **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


@dataclass
class User:
    username: str
    email: str
    password: str
    user_id: str
    tokens: dict
    api: Api

    @property
    def access_token(self) -> str:
        return self.tokens["access_token"]


def register_and_login(api: Api, username: str | None = None,
                       password: str = PASSWORD) -> User:
    username = username or unique()
    email = f"{username}@example.org"
    created = api.post("/api/auth/register",
                       json={"username": username, "email": email, "password": password})
    assert created.status_code == 201, created.text
    tokens = login(api, username, password)
    return User(username, email, password, created.json()["user_id"], tokens,
                api.as_user(tokens["access_token"]))


def login(api: Api, username: str, password: str = PASSWORD) -> dict:
    response = api.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def cli(*args: str, env: dict | None = None, input: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudstrype_client.cli", *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          input=input, timeout=timeout, cwd=REPO)


def assert_error(response: requests.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert error["message"], "an error must say what is wrong"
    if code is not None:
        assert error["code"] == code, error
    return error


def wait_for(condition, timeout: float = 60.0, what: str = "condition", interval: float = 0.5):
    """Poll `condition` until it returns something true (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def embedded_library(tmp_path: Path, monkeypatch, **settings: str):
    """The shared library in this process as `serve` runs it: a SQLite metadata engine with every
    table and a local master key under `tmp_path`, plus any further settings (env name -> value).
    Yields the engine; puts everything back afterwards."""
    from cloudstrype import vault
    from cloudstrype.metadata import schema
    from cloudstrype.metadata.engine import set_engine
    from cloudstrype.metadata.sqlite import SqliteEngine
    from cloudstrype.settings import reset_settings_cache
    monkeypatch.setenv("CLOUDSTRYPE_KEY_PROTECTOR", "local")
    monkeypatch.setenv("CLOUDSTRYPE_MASTER_KEY_PATH", str(tmp_path / "master.key"))
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    engine = SqliteEngine(str(tmp_path / "metadata.db"))
    engine.create_tables(schema.all_tables())
    set_engine(engine)
    vault.forget_cached_keys()
    try:
        yield engine
    finally:
        vault.forget_cached_keys()
        set_engine(None)
        engine.close()
        monkeypatch.undo()
        reset_settings_cache()


def flipped_first_byte(raw: bytes) -> bytes:
    """Bytes damaged for sure: setting the first byte to a value it may already hold (1 in 256
    for random bytes) leaves them intact, and a test expecting damage then fails now and then."""
    return bytes([raw[0] ^ 0xFF]) + raw[1:]
