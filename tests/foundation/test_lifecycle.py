"""Starting, stopping and restarting `cloudstrype serve`: state survives, errors are clear."""
import signal
import socket
import subprocess
import sys
import time

import requests

from tests.support import (REPO, Api, free_port, login, register_and_login, start_stack)


def test_state_survives_a_restart(tmp_path):
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    try:
        user = register_and_login(Api(first.url))
        old_token = user.access_token
    finally:
        assert first.stop(signal.SIGINT) == 0, first.log()
    assert "Stopped." in first.log()

    second = start_stack(data_dir)
    try:
        api = Api(second.url)
        # The old token is still valid: same pool, same signing keys.
        me = api.as_user(old_token).get("/api/auth/me")
        assert me.status_code == 200, me.text
        assert me.json()["user_id"] == user.user_id
        # And the password still works.
        assert login(api, user.username, user.password)["access_token"]
    finally:
        assert second.stop(signal.SIGTERM) == 0, second.log()


def test_writes_are_saved_without_a_clean_stop(tmp_path):
    # A crash (SIGKILL) loses at most the last second or so: the snapshot follows the writes.
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    try:
        user = register_and_login(Api(first.url))
        deadline = time.monotonic() + 10
        state = data_dir / "aws-state.pickle"
        while time.monotonic() < deadline:
            if state.exists() and user.username.encode() in state.read_bytes():
                break
            time.sleep(0.2)
    finally:
        first.process.kill()
        first.process.wait()
    second = start_stack(data_dir)
    try:
        assert login(Api(second.url), user.username, user.password)["access_token"]
    finally:
        second.stop()


def test_port_in_use_is_a_clear_message(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cloudstrype_client.cli", "serve", "--port", str(port),
             "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=60,
            cwd=REPO)
    assert done.returncode == 2
    assert f"Port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_second_server_on_the_same_data_dir_is_refused(stack):
    done = subprocess.run(
        [sys.executable, "-m", "cloudstrype_client.cli", "serve", "--port", str(free_port()),
         "--data-dir", str(stack.data_dir)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2
    assert "Another Cloudstrype server is using" in done.stderr
    assert requests.get(stack.url + "/api/health", timeout=5).status_code == 200
