"""Starting, stopping and restarting `cloudstrype serve`: state survives, errors are clear."""
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from tests.support import (
    PASSWORD,
    REPO,
    Api,
    assert_error,
    cli,
    free_port,
    login,
    register_and_login,
    start_stack,
)


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
    # create too: without --data-dir (or with a wrong one) it made a new database beside the
    # running server's and said the admin was made (README walk).
    made = cli("admin", "create", "root", "--email", "root@example.org", "--data-dir",
               str(typo), input="Adm1nPassword\n")
    assert made.returncode == 1, made
    assert "holds no Cloudstrype data" in made.stderr and not typo.exists()


def test_admin_create_reads_its_password_from_stdin_when_not_a_terminal(stack, api):
    """It crashed (EOFError, a traceback) with no terminal and nothing on stdin."""
    nothing = cli("admin", "create", "nobody", "--email", "n@example.org", "--data-dir",
                  str(stack.data_dir), input="")
    assert nothing.returncode == 2, nothing
    assert "no password" in nothing.stderr and "Traceback" not in nothing.stderr
    username = f"root{os.getpid()}"
    made = cli("admin", "create", username, "--email", f"{username}@example.org",
               "--data-dir", str(stack.data_dir), input="Adm1nPassword\n")
    assert made.returncode == 0, made.stderr
    assert login(api, username, "Adm1nPassword")["access_token"]


def test_an_operator_sets_a_forgotten_password_on_the_running_server(stack, api):
    """There was no way back from a forgotten password but deleting the account (and its
    files with it: a new account is another user): the operator sets a new one, and every
    sign-in the user had ends (accounts sweep)."""
    user = register_and_login(api)
    done = cli("admin", "set-password", user.username, "--data-dir", str(stack.data_dir),
               input="Rec0veredPass\n")
    assert done.returncode == 0, done.stderr
    assert "every sign-in they had has ended" in done.stdout
    assert_error(user.api.get("/api/auth/me"), 401, "token_revoked")
    assert api.post("/api/auth/login", json={"username": user.username,
                                             "password": PASSWORD}).status_code == 401
    assert login(api, user.username, "Rec0veredPass")["access_token"]
    weak = cli("admin", "set-password", user.username, "--data-dir", str(stack.data_dir),
               input="weak\n")
    assert weak.returncode == 2 and "too weak" in weak.stderr, weak
    missing = cli("admin", "set-password", "no-such-user-here", "--data-dir",
                  str(stack.data_dir), input="Rec0veredPass\n")
    assert missing.returncode == 1 and "there is no user" in missing.stderr, missing


def _serve(*args: str) -> subprocess.CompletedProcess:
    return _cloudstrype("serve", "--port", str(free_port()), *args)


def test_serve_refuses_what_it_cannot_use_in_one_line(tmp_path):
    for port in ("70000", "-1", "0", "http"):
        done = _cloudstrype("serve", "--port", port, "--data-dir", str(tmp_path / "p"))
        assert done.returncode == 2 and "is not a port (1-65535)" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "p").exists()            # nothing made for a start refused

    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    done = _serve("--data-dir", str(a_file))
    assert done.returncode == 2, done.stderr
    assert f"{a_file} is a file, not a folder" in done.stderr
    assert "Traceback" not in done.stderr and a_file.read_text() == "mine"

    done = _serve("--data-dir", "/proc/cloudstrype-data")     # cannot be made
    assert done.returncode == 2, done.stderr
    assert "Cannot use /proc/cloudstrype-data as the data directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_does_not_take_over_a_folder_of_other_files(tmp_path):
    """`--data-dir ~` or `/tmp` by mistake: the folder was closed to everyone else (0700, its
    sticky bit gone) and filled with the server's files."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "someone-elses-file").write_text("theirs")
    done = _serve("--data-dir", str(shared))
    assert done.returncode == 2, done.stderr
    assert "holds other files and no Cloudstrype data" in done.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert [p.name for p in shared.iterdir()] == ["someone-elses-file"]
    # An empty folder is taken, and closed.
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    stack = start_stack(empty)
    try:
        assert stat.S_IMODE(empty.stat().st_mode) == 0o700
    finally:
        assert stack.stop() == 0, stack.log()


def _backed_up_stack(tmp_path):
    """A data directory with one user, one stored file, and its backup (the server stopped)."""
    data_dir = tmp_path / "data"
    stack = start_stack(data_dir)
    user = register_and_login(Api(stack.url))
    assert user.api.post("/api/cloud/storages", json={
        "name": "disk", "kind": "local", "config": {"path": str(tmp_path / "disk")}}
    ).status_code == 201
    stored = user.api.post("/api/filesystem/data", data={"path": "/kept"},
                           files={"file": ("a.txt", b"backed up")})
    assert stored.status_code == 201, stored.text
    done = _cloudstrype("backup", str(tmp_path / "backup"), "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert stack.stop() == 0, stack.log()
    return data_dir, tmp_path / "backup", user, stored.json()["id"]


def test_a_backup_is_private_and_never_inside_what_it_backs_up(tmp_path):
    data_dir, backup, _, _ = _backed_up_stack(tmp_path)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    for path in backup.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) in (0o700, 0o600), path
    inside = _cloudstrype("backup", str(data_dir / "bk"), "--data-dir", str(data_dir))
    assert inside.returncode == 2 and "inside the data directory" in inside.stderr
    assert not (data_dir / "bk").exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    onto_file = _cloudstrype("backup", str(a_file), "--data-dir", str(data_dir))
    assert onto_file.returncode == 2 and "is a file" in onto_file.stderr
    assert "Traceback" not in inside.stderr + onto_file.stderr and a_file.read_text() == "mine"
    unwritable = _cloudstrype("backup", "/proc/cloudstrype-backup", "--data-dir", str(data_dir))
    assert unwritable.returncode == 1 and "Traceback" not in unwritable.stderr, unwritable.stderr
    assert "Nothing was replaced" in unwritable.stderr


def test_a_restore_onto_its_own_backup_is_refused_and_the_backup_kept(tmp_path):
    """It deleted the backup's secrets before copying them onto themselves: the master key,
    the only key that opens the users' keys, was gone for good."""
    data_dir, backup, _, _ = _backed_up_stack(tmp_path)
    before = {p.relative_to(backup): p.read_bytes() for p in backup.rglob("*") if p.is_file()}
    assert Path("secrets/master.key") in before
    for target in (backup, backup / "inner", backup.parent):
        done = _cloudstrype("restore", str(backup), "--data-dir", str(target))
        assert done.returncode == 2, done.stderr
        assert "one holds the other" in done.stderr and "Traceback" not in done.stderr
    assert {p.relative_to(backup): p.read_bytes() for p in backup.rglob("*")
            if p.is_file()} == before


def test_a_database_without_its_master_key_is_refused_not_given_a_new_one(tmp_path):
    """A new master key opens none of the users' keys: every download and storage failed 503
    keys_unavailable, on a server that had started as if all were well."""
    data_dir, backup, user, file_id = _backed_up_stack(tmp_path)
    keyless = tmp_path / "keyless"
    shutil.copytree(backup, keyless)
    (keyless / "secrets" / "master.key").unlink()
    restored = tmp_path / "restored"
    done = _cloudstrype("restore", str(keyless), "--data-dir", str(restored))
    assert done.returncode == 2, done.stderr
    assert "holds users' keys but not secrets/master.key" in done.stderr
    assert not (restored / "metadata.db").exists()

    # The same database in place, its key lost: the server does not start.
    (data_dir / "secrets" / "master.key").rename(tmp_path / "master.key")
    started = _serve("--data-dir", str(data_dir))
    assert started.returncode == 2, started.stderr
    assert "master.key is missing" in started.stderr and "Traceback" not in started.stderr
    assert not (data_dir / "secrets" / "master.key").exists()
    # Put back, all is there.
    (tmp_path / "master.key").rename(data_dir / "secrets" / "master.key")
    stack = start_stack(data_dir)
    try:
        api = Api(stack.url).as_user(login(Api(stack.url), user.username,
                                           user.password)["access_token"])
        assert api.get(f"/api/filesystem/data/{file_id}").content == b"backed up"
    finally:
        assert stack.stop() == 0, stack.log()


def test_a_restore_is_private_and_says_what_it_cannot_bring_back(tmp_path):
    _, backup, _, _ = _backed_up_stack(tmp_path)
    restored = tmp_path / "restored"
    done = _cloudstrype("restore", str(backup), "--data-dir", str(restored))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(restored.stat().st_mode) == 0o700
    for name in ("metadata.db", "install-id", "secrets/master.key"):
        assert stat.S_IMODE((restored / name).stat().st_mode) == 0o600, name
    # The shares of files written after the backup are not removed by anything: said so.
    assert "stay on the storages unused" in done.stdout
    assert "must be connected again" in done.stdout
    assert not [p for p in restored.iterdir() if p.name.endswith((".restoring", ".replaced"))]


def test_a_public_address_behind_a_proxy_is_what_users_are_given(tmp_path):
    """Behind a TLS proxy the server cannot tell its users' address: OAuth's redirect URI,
    links and the web UI's WebSocket named http://127.0.0.1:PORT, so none worked there."""
    public = "https://files.example.org"
    stack = start_stack(tmp_path / "data", env={"CLOUDSTRYPE_PUBLIC_URL": public + "/"})
    try:
        assert f"Users reach it at {public}" in stack.log()
        assert requests.get(stack.url + "/config.json", timeout=10).json()["websocketUrl"] == \
            "wss://files.example.org/ws"
        user = register_and_login(Api(stack.url))
        assert user.api.post("/api/cloud/storages", json={
            "name": "disk", "kind": "local", "config": {"path": "disk"}}).status_code == 201
        assert user.api.post("/api/filesystem/data", data={"path": "/"},
                             files={"file": ("a.txt", b"a")}).status_code == 201
        link = user.api.post("/api/filesystem/links", json={"path": "/a.txt"})
        assert link.status_code == 201, link.text
        assert link.json()["url"].startswith(public + "/#/link/")
    finally:
        assert stack.stop() == 0, stack.log()
    # Without one, the browser's own address is used, as before.
    plain = start_stack(tmp_path / "plain")
    try:
        host = plain.url.split("://", 1)[1]
        assert requests.get(plain.url + "/config.json", timeout=10).json()["websocketUrl"] == \
            f"ws://{host}/ws"
        assert "Users reach it" not in plain.log() and "Warning" not in plain.log()
    finally:
        assert plain.stop() == 0, plain.log()
    for wrong in ("files.example.org", "https://files.example.org/app", "ftp://x.org",
                  "https://user@files.example.org"):
        done = subprocess.run(
            [sys.executable, "-m", "cloudstrype_client.cli", "serve", "--port", str(free_port()),
             "--data-dir", str(tmp_path / "wrong")], capture_output=True, text=True, timeout=60,
            cwd=REPO, env={**os.environ, "CLOUDSTRYPE_PUBLIC_URL": wrong})
        assert done.returncode == 2, (wrong, done.stderr)
        assert "CLOUDSTRYPE_PUBLIC_URL must be an address such as" in done.stderr
        assert "Traceback" not in done.stderr


def test_listening_beyond_loopback_in_plain_http_warns(tmp_path):
    server = subprocess.Popen(
        [sys.executable, "-m", "cloudstrype_client.cli", "serve", "--host", "0.0.0.0",
         "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "CLOUDSTRYPE_PUBLIC_URL"})
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(server.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        # The warning comes right after the line saying where it runs.
        while time.monotonic() < deadline and not any("is running at" in x for x in said):
            time.sleep(0.1)
        time.sleep(1)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
        reader.join(timeout=10)
    assert any("Warning: listening on 0.0.0.0 in plain HTTP" in line for line in said), said


def test_a_client_gone_mid_request_is_a_line_not_a_stack_trace(stack):
    """Each client that dropped off mid-upload left a full traceback at ERROR in the server's
    log (network sweep: 71 of them)."""
    host, port = stack.url.split("://", 1)[1].split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /api/filesystem/data HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/octet-stream\r\n"
                         b"Content-Length: 100000\r\n\r\n" + b"x" * 1000)
            # Reset, not a clean close: what a broken network leaves.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert requests.get(stack.url + "/api/health", timeout=5).status_code == 200
    assert "Traceback" not in stack.log() and "ConnectionResetError" not in stack.log()
