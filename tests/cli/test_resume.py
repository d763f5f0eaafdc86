"""A `put` of a big file killed half-way continues where it stopped when run again."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid

from tests.cli.conftest import add_local_storages
from tests.support import register_and_login

MiB = 1024 * 1024
PARTS = 12


def _session_of(cli, remote_path: str) -> str | None:
    state_file = cli.config_dir / "uploads.json"
    try:
        state = json.loads(state_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    for entry in state.values():
        if entry.get("remote") == remote_path:
            return entry["upload_id"]
    return None


def _kill_put_after_parts(cli, cli_user, source, remote_path: str, parts: int = 3,
                          share: str | None = None) -> dict:
    """Start a `put` of `source` (inside `share`, if given), kill -9 it once the server has
    `parts` of its parts; the session's status then."""
    inside = ("--share", share) if share else ()
    params = {"share": share} if share else None
    first = subprocess.Popen(cli.command("put", "-j", "1", *inside, str(source), remote_path),
                             env=cli.env(), cwd=cli.home, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    upload_id, received = None, 0
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and received < parts:
            assert first.poll() is None, "the upload finished before it could be interrupted"
            upload_id = upload_id or _session_of(cli, remote_path)
            if upload_id:
                answer = cli_user.api.get(f"/api/filesystem/uploads/{upload_id}",
                                          params=params)
                # (The CLI remembers the session's id before it asks the server to open it.)
                received = len(answer.json()["received"]) if answer.status_code == 200 else 0
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert upload_id and received >= parts, \
        f"no progress to interrupt: {first.stderr.read()!r}"
    status = cli_user.api.get(f"/api/filesystem/uploads/{upload_id}", params=params).json()
    assert status["parts"] == PARTS and len(status["missing"]) > 0 and not status["committed"]
    assert cli.run("info", *inside, remote_path).returncode == 4   # nothing committed yet
    return status


def test_a_killed_put_resumes_on_rerun(cli, cli_user, tmp_path):
    data = os.urandom(PARTS * 4 * MiB - 1000)
    source = tmp_path / "large.bin"
    source.write_bytes(data)
    remote_path = f"/resume-{uuid.uuid4().hex[:8]}/large.bin"
    status = _kill_put_after_parts(cli, cli_user, source, remote_path)
    upload_id = status["upload_id"]

    done = cli.ok("put", "-j", "2", str(source), remote_path)
    match = re.search(rf"Resuming upload of {re.escape(remote_path)}: (\d+) of {PARTS} parts "
                      rf"already uploaded", done.stderr)
    assert match, done.stderr
    already = int(match.group(1))
    assert already >= len(status["received"])
    # Only the missing parts travelled the second time.
    sent = (PARTS - already) * 4 * MiB - (1000 if already < PARTS else 0)
    assert f"{sent / MiB:.1f} MiB transferred" in done.stderr, done.stderr
    assert _session_of(cli, remote_path) is None               # the state entry is gone

    out = tmp_path / "back.bin"
    cli.ok("get", remote_path, str(out))
    assert out.read_bytes() == data
    # The old session is committed: it cannot be resumed a second time.
    assert cli_user.api.get(f"/api/filesystem/uploads/{upload_id}").json()["committed"] is True


def test_a_resumed_put_sends_again_the_parts_the_file_no_longer_holds(cli, cli_user, tmp_path):
    """The file changed after the kill with its size and modification time kept (as `cp -p`
    or `rsync -t` leave it): the parts the server has are checked, and the changed one is sent
    again, so the file is stored as it is now, not half old."""
    data = bytearray(os.urandom(PARTS * 4 * MiB - 1000))
    source = tmp_path / "changing.bin"
    source.write_bytes(data)
    remote_path = f"/resume-{uuid.uuid4().hex[:8]}/changing.bin"
    status = _kill_put_after_parts(cli, cli_user, source, remote_path)
    assert 0 in status["received"] and set(status["part_sha256"]) == \
        {str(n) for n in status["received"]}
    before = source.stat()
    data[100:200] = os.urandom(100)                  # inside part 0, which the server has
    source.write_bytes(data)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))

    done = cli.ok("put", "-j", "2", str(source), remote_path)
    assert "1 changed since, sent again" in done.stderr, done.stderr
    out = tmp_path / "back.bin"
    cli.ok("get", remote_path, str(out))
    assert out.read_bytes() == bytes(data)


def test_a_killed_put_into_a_share_resumes_through_that_share(cli, cli_user, api, tmp_path):
    owner = register_and_login(api)
    add_local_storages(owner, tmp_path / "owners-disks")
    folder = f"/inbox-{uuid.uuid4().hex[:8]}"
    assert owner.api.post("/api/filesystem/dirs", json={"path": folder}).status_code == 201
    made = owner.api.post("/api/filesystem/shares", json={
        "path": folder, "user": cli_user.username, "level": "write"})
    assert made.status_code == 201, made.text
    share = made.json()["id"]
    data = os.urandom(PARTS * 4 * MiB - 1000)
    source = tmp_path / "large.bin"
    source.write_bytes(data)
    status = _kill_put_after_parts(cli, cli_user, source, "/large.bin", share=share)

    # The same file put to the same path of the user's own tree meanwhile is another upload
    # (a session of its own: the one in the share is not found there) and leaves this one be.
    cli.ok("put", "-j", "2", str(source), "/large.bin")
    done = cli.ok("put", "-j", "2", "--share", share, str(source), "/large.bin")
    match = re.search(rf"Resuming upload of /large.bin: (\d+) of {PARTS} parts already "
                      rf"uploaded", done.stderr)
    assert match and int(match.group(1)) >= len(status["received"]), done.stderr
    assert _session_of(cli, "/large.bin") is None
    # The owner's file, whole.
    info = owner.api.get("/api/filesystem/info", params={"path": f"{folder}/large.bin"}).json()
    assert info["size"] == len(data)
    out = tmp_path / "back.bin"
    cli.ok("get", "--share", share, "/large.bin", str(out))
    assert out.read_bytes() == data
    cli.ok("rm", "/large.bin")
