"""A big file (an upload session) is committed only when nothing wrote to it from before its
sha256 was read to after its last part was: one changed while `put` sends it is reported, not
stored, and its session is gone, so the same command again sends it as it is then. A session
whose commit is refused for good (a folder of the file's name is there) is not left open."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
import uuid

from tests.cli.conftest import remote_info

MiB = 1024 * 1024
PART = 4 * MiB
PARTS = r"^/api/filesystem/uploads/[0-9a-f]+/parts/"


def _root() -> str:
    return f"/changed-{uuid.uuid4().hex[:8]}"


def _upload_ids(proxy) -> set[str]:
    return {m.group(1) for _, path, _ in proxy.seen
            if (m := re.match(r"^/api/filesystem/uploads/([0-9a-f]+)/parts/", path))}


def _saved_sessions(cli, remote: str) -> list[dict]:
    state = cli.config_dir / "uploads.json"
    if not state.exists():
        return []
    return [e for e in json.loads(state.read_text()).values() if e.get("remote") == remote]


def _put_while_changing(cli, cli_user, proxy, source, remote, change) -> tuple[int, str, str]:
    """`put -j 1 SOURCE REMOTE` with its first part slowed down, change() run once that part is
    on its way (the sha256 is read by then, the last parts not yet); (exit code, out, err)."""
    proxy.fail("PUT", PARTS + "0$", "slow", delay=2.0)
    running = subprocess.Popen(cli.command("put", "-j", "1", str(source), remote),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cli.env(proxy.env(cli_user.access_token)), cwd=cli.home)
    deadline = time.monotonic() + 60
    while proxy.count("PUT", PARTS + "0$") == 0:
        assert running.poll() is None and time.monotonic() < deadline, running.communicate()
        time.sleep(0.02)
    time.sleep(0.3)
    change()
    out, err = running.communicate(timeout=120)
    return running.returncode, out, err


def _assert_not_stored_and_sent_again(cli, cli_user, proxy, source, remote, code, out, err):
    assert code == 1, (code, out, err)
    assert f"{source} changed while it was being sent, so it was not stored; running the " \
           f"command again sends it" in err, err
    assert "0 sent, 0 skipped (unchanged), 1 failed" in out, out
    assert "run the same command again" in err, err
    assert remote_info(cli_user, remote) is None                      # nothing committed
    assert _saved_sessions(cli, remote) == []                   # nothing to resume
    (upload_id,) = _upload_ids(proxy)
    assert cli_user.api.get(f"/api/filesystem/uploads/{upload_id}").status_code in (404, 410)
    # The same command again sends the file as it is now.
    proxy.heal()
    cli.ok("put", str(source), remote, env=proxy.env(cli_user.access_token))
    info = remote_info(cli_user, remote)
    assert info["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    back = source.with_name("back.bin")
    cli.ok("get", remote, str(back))
    assert back.read_bytes() == source.read_bytes()


def test_a_file_edited_in_place_while_sent_is_not_committed(cli, cli_user, tmp_path, proxy):
    source = tmp_path / "edited.bin"
    source.write_bytes(os.urandom(3 * PART + 999))
    before = os.stat(source)
    remote = f"{_root()}/edited.bin"

    def edit_keeping_size_and_mtime() -> None:       # as `cp -p` or `rsync -t` would leave it
        with open(source, "r+b") as f:
            f.seek(3 * PART + 10)
            f.write(b"Z" * 500)
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))

    code, out, err = _put_while_changing(cli, cli_user, proxy, source, remote,
                                         edit_keeping_size_and_mtime)
    _assert_not_stored_and_sent_again(cli, cli_user, proxy, source, remote, code, out, err)


def test_a_file_growing_while_sent_is_not_committed(cli, cli_user, tmp_path, proxy):
    source = tmp_path / "growing.bin"
    source.write_bytes(os.urandom(3 * PART + 999))
    remote = f"{_root()}/growing.bin"

    def append() -> None:
        with open(source, "ab") as f:
            f.write(os.urandom(100_000))

    code, out, err = _put_while_changing(cli, cli_user, proxy, source, remote, append)
    _assert_not_stored_and_sent_again(cli, cli_user, proxy, source, remote, code, out, err)


def test_a_session_refused_for_good_at_its_commit_is_deleted(cli, cli_user, tmp_path, proxy):
    """A folder of the file's name made while the parts are on their way: the commit is
    refused for good (a folder there already when it starts is refused then, before any
    part is sent)."""
    source = tmp_path / "taken.bin"
    source.write_bytes(os.urandom(PART + 5))
    early, root = _root(), _root()
    cli.ok("mkdir", "-p", f"{early}/taken.bin")
    refused = cli.run("put", str(source), f"{early}/", env=proxy.env(cli_user.access_token))
    assert refused.returncode == 5 and "is a directory" in refused.stderr, refused.stderr
    assert proxy.count("PUT", PARTS) == 0 and _saved_sessions(cli, f"{early}/taken.bin") == []

    code, out, err = _put_while_changing(
        cli, cli_user, proxy, source, f"{root}/taken.bin",
        lambda: cli.ok("mkdir", "-p", f"{root}/taken.bin"))     # a folder of the file's name

    assert code == 5, err
    assert "running the same command again does not help" in err
    assert _saved_sessions(cli, f"{root}/taken.bin") == []
    (upload_id,) = _upload_ids(proxy)
    assert cli_user.api.get(f"/api/filesystem/uploads/{upload_id}").status_code in (404, 410)


def test_a_session_whose_part_is_refused_for_good_is_deleted(cli, cli_user, tmp_path, proxy):
    """A part refused as it is (a share revoked or made read-only, the session gone): running
    again cannot resume it, so the session is not kept for a resume, and its parts are freed."""
    source = tmp_path / "refused.bin"
    source.write_bytes(os.urandom(2 * PART + 5))
    remote = f"{_root()}/refused.bin"
    proxy.fail("PUT", PARTS + "1$", "status", status=403, times=None)
    done = cli.run("put", "-j", "1", str(source), remote, env=proxy.env(cli_user.access_token))
    assert done.returncode != 0 and "injected failure 403" in done.stderr, done.stderr
    assert _saved_sessions(cli, remote) == []
    (upload_id,) = _upload_ids(proxy)
    assert cli_user.api.get(f"/api/filesystem/uploads/{upload_id}").status_code in (404, 410)
    assert remote_info(cli_user, remote) is None


def test_a_resume_whose_name_is_a_folder_now_sends_nothing(cli, cli_user, tmp_path, proxy):
    """A session kept for a resume, and a folder of the file's name made meanwhile: the next
    run refuses the file before sending its parts again (the commit would refuse it after),
    and frees the session."""
    source = tmp_path / "later.bin"
    source.write_bytes(os.urandom(2 * PART + 5))
    root = _root()
    remote = f"{root}/later.bin"
    proxy.fail("PUT", PARTS + "1$", "status", status=503, times=None)
    first = cli.run("put", "-j", "1", str(source), f"{root}/",
                    env=proxy.env(cli_user.access_token))
    assert first.returncode != 0 and len(_saved_sessions(cli, remote)) == 1, first.stderr
    proxy.heal()
    cli.ok("mkdir", "-p", remote)
    sent = proxy.count("PUT", PARTS)
    again = cli.run("put", "-j", "1", str(source), f"{root}/",
                    env=proxy.env(cli_user.access_token))
    assert again.returncode == 5 and "is a directory now" in again.stderr, again.stderr
    assert proxy.count("PUT", PARTS) == sent
    assert _saved_sessions(cli, remote) == []
