"""A `put` of a big file killed half-way continues where it stopped when run again."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid

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


def _kill_put_after_parts(cli, cli_user, source, remote_path: str, parts: int = 3) -> dict:
    """Start a `put` of `source`, kill -9 it once the server has `parts` of its parts; the
    session's status then."""
    first = subprocess.Popen(cli.command("put", "-j", "1", str(source), remote_path),
                             env=cli.env(), cwd=cli.home, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    upload_id, received = None, 0
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and received < parts:
            assert first.poll() is None, "the upload finished before it could be interrupted"
            upload_id = upload_id or _session_of(cli, remote_path)
            if upload_id:
                status = cli_user.api.get(f"/api/filesystem/uploads/{upload_id}").json()
                received = len(status["received"])
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert upload_id and received >= parts, \
        f"no progress to interrupt: {first.stderr.read()!r}"
    status = cli_user.api.get(f"/api/filesystem/uploads/{upload_id}").json()
    assert status["parts"] == PARTS and len(status["missing"]) > 0 and not status["committed"]
    assert cli.run("info", remote_path).returncode == 4        # nothing committed yet
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
