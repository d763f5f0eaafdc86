"""Starting, stopping and restarting `cloudstrype serve`: state survives, errors are clear."""
import os
import signal
import socket
import stat
import subprocess
import sys

import requests

from tests.support import REPO, Api, cli, free_port, login, register_and_login, start_stack


def test_state_survives_a_restart(tmp_path):
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    try:
        user = register_and_login(Api(first.url))
        old_token = user.access_token
    finally:
        assert first.stop(signal.SIGINT) == 0, first.log()
    assert "Stopped." in first.log()

    data_dir.chmod(0o755)       # opened up meanwhile: the next start closes it again
    second = start_stack(data_dir)
    try:
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        api = Api(second.url)
        # The old token is still valid: same pool, same signing keys.
        me = api.as_user(old_token).get("/api/auth/me")
        assert me.status_code == 200, me.text
        assert me.json()["user_id"] == user.user_id
        # And the password still works.
        assert login(api, user.username, user.password)["access_token"]
    finally:
        assert second.stop(signal.SIGTERM) == 0, second.log()


def _kill_9(stack) -> None:
    stack.process.send_signal(signal.SIGKILL)
    stack.process.wait()


def test_an_account_registered_just_before_kill_9_is_there_after(tmp_path):
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    user = register_and_login(Api(first.url))
    _kill_9(first)
    second = start_stack(data_dir)
    try:
        assert login(Api(second.url), user.username, user.password)["access_token"]
    finally:
        assert second.stop() == 0, second.log()


def test_every_acknowledged_upload_survives_kill_9(tmp_path):
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    user = register_and_login(Api(first.url))
    for n in range(3):
        made = user.api.post("/api/cloud/storages", json={
            "name": f"disk{n}", "kind": "local", "config": {"path": f"disk{n}"}})
        assert made.status_code == 201, made.text
    acknowledged = {}
    for n in range(20):
        content = os.urandom(2000 + n)
        answer = user.api.post("/api/filesystem/data", data={"path": "/crash"},
                               files={"file": (f"f{n}.bin", content)})
        assert answer.status_code == 201, answer.text
        acknowledged[answer.json()["id"]] = content
    _kill_9(first)                 # no clean stop: whatever was answered must be on disk

    data_dir.chmod(0o755)       # opened up meanwhile: the next start closes it again
    second = start_stack(data_dir)
    try:
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        api = Api(second.url).as_user(login(Api(second.url), user.username,
                                             user.password)["access_token"])
        for file_id, content in acknowledged.items():
            read = api.get(f"/api/filesystem/data/{file_id}")
            assert read.status_code == 200, read.text
            assert read.content == content
    finally:
        assert second.stop() == 0, second.log()


def test_a_backup_taken_while_serving_restores_every_user_and_file(tmp_path):
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    user = register_and_login(Api(first.url))
    made = user.api.post("/api/cloud/storages", json={
        "name": "disk", "kind": "local", "config": {"path": str(tmp_path / "disk")}})
    assert made.status_code == 201, made.text
    stored = user.api.post("/api/filesystem/data", data={"path": "/kept"},
                           files={"file": ("a.txt", b"backed up")})
    assert stored.status_code == 201, stored.text
    done = subprocess.run([sys.executable, "-m", "cloudstrype_client.cli", "backup",
                           str(tmp_path / "backup"), "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert first.stop() == 0, first.log()

    restored = tmp_path / "restored"
    # Restored as the README says, into a new data directory.
    done = _cloudstrype("restore", str(tmp_path / "backup"), "--data-dir", str(restored))
    assert done.returncode == 0, done.stderr
    assert {p.name for p in restored.iterdir()} >= {"metadata.db", "secrets", "install-id"}
    second = start_stack(restored)
    try:
        # A token given out before the backup still works (same install id: same issuer).
        assert Api(second.url).as_user(user.access_token).get(
            "/api/auth/me").status_code == 200
        api = Api(second.url).as_user(login(Api(second.url), user.username,
                                             user.password)["access_token"])
        read = api.get(f"/api/filesystem/data/{stored.json()['id']}")
        assert read.status_code == 200 and read.content == b"backed up"
    finally:
        assert second.stop() == 0, second.log()


def _cloudstrype(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudstrype_client.cli", *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def test_a_restore_after_a_crash_is_the_backup_and_nothing_else(tmp_path):
    """The usual reason to restore is a crash, which leaves the database's write-ahead log
    behind: copied over by hand, the old log was applied to the restored database on the next
    start (it came up corrupt, or still holding what was written after the backup).
    `cloudstrype restore` puts the backup back with no log of another database."""
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    user = register_and_login(Api(first.url))
    assert user.api.post("/api/cloud/storages", json={
        "name": "disk", "kind": "local", "config": {"path": str(tmp_path / "disk")}}
    ).status_code == 201

    def upload(name: str) -> str:
        stored = user.api.post("/api/filesystem/data", data={"path": "/r"},
                               files={"file": (name, name.encode())})
        assert stored.status_code == 201, stored.text
        return stored.json()["id"]

    before = upload("before.txt")
    done = _cloudstrype("backup", str(tmp_path / "backup"), "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    after = [upload(f"after-{n}.txt") for n in range(20)]
    refused = _cloudstrype("restore", str(tmp_path / "backup"), "--data-dir", str(data_dir))
    assert refused.returncode == 2 and "stop it first" in refused.stderr, refused.stderr
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=30)
    assert (data_dir / "metadata.db-wal").exists()        # what a crash leaves

    done = _cloudstrype("restore", str(tmp_path / "backup"), "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert "Restored" in done.stdout
    second = start_stack(data_dir)
    try:
        api = Api(second.url).as_user(user.access_token)
        listed = api.get("/api/filesystem/info", params={"path": "/r"})
        assert listed.status_code == 200, listed.text
        assert [c["name"] for c in listed.json()["children"]] == ["before.txt"]
        assert api.get(f"/api/filesystem/data/{before}").content == b"before.txt"
        for file_id in after:
            assert api.get(f"/api/filesystem/info/{file_id}").status_code == 404
        assert api.post("/api/filesystem/data", data={"path": "/r"},
                        files={"file": ("new.txt", b"new")}).status_code == 201
    finally:
        assert second.stop() == 0, second.log()
    missing = _cloudstrype("restore", str(tmp_path / "nothing"), "--data-dir", str(data_dir))
    assert missing.returncode == 2 and "is not a backup" in missing.stderr


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


def test_a_lost_write_ahead_log_after_kill_9_stops_the_start_in_words(tmp_path):
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    register_and_login(Api(first.url))
    _kill_9(first)
    (data_dir / "metadata.db-wal").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "cloudstrype_client.cli", "serve", "--port", str(free_port()),
         "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2
    assert "write-ahead log" in done.stderr and "is missing" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_stop_does_not_wait_for_a_storage_that_never_answers(tmp_path):
    """A read hedged past a share that never answers (here a named pipe nobody writes, where
    the share file was) leaves a work thread waiting on it for good; Ctrl-C still stops the
    server at once, the file's other copy having answered the request."""
    import time
    stack = start_stack(tmp_path / "data")
    try:
        user = register_and_login(Api(stack.url))
        disks = []
        for n in range(2):
            disks.append(stack.data_dir / "storages" / f"d{n}")
            added = user.api.post("/api/cloud/storages", json={
                "kind": "local", "name": f"d{n}", "config": {"path": str(disks[-1])}})
            assert added.status_code == 201, added.text
        content = os.urandom(300 * 1024)
        made = user.api.post("/api/filesystem/data", data={"path": "/", "durability": "raid1(2)"},
                             files={"file": ("f.bin", content)})
        assert made.status_code == 201, made.text
        [chunk] = user.api.get(f"/api/filesystem/chunks/{made.json()['id']}").json()["chunks"]
        [first] = [p for d in disks for p in d.iterdir() if f".{chunk}.0." in p.name]
        first.unlink()
        os.mkfifo(first)
        read = user.api.get(f"/api/filesystem/data/{made.json()['id']}")
        assert read.status_code == 200 and read.content == content
    finally:
        started = time.monotonic()
        code = stack.stop(signal.SIGINT)
        assert code == 0, stack.log()
        assert time.monotonic() - started < 15
    assert "Stopped." in stack.log()


def test_admin_promote_on_a_mistyped_data_dir_says_so_and_makes_nothing(tmp_path):
    typo = tmp_path / "no-such-data"
    done = cli("admin", "promote", "alice", "--data-dir", str(typo))
    assert done.returncode == 1, done
    assert "holds no Cloudstrype data" in done.stderr
    assert not typo.exists()
