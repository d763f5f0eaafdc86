"""A transfer stops as a whole: on Ctrl-C within about a second (nothing more asked for, a session
whose parts were cut short not committed, the counts said, exit 130, and running it again
resumes), and once the server cannot be reached (one message with the counts, exit 6), instead of
trying every file one by one. Through the proxy of faults.py, slowed or dropping requests."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
import uuid

from tests.support import wait_for

MiB = 1024 * 1024
PARTS = r"^/api/filesystem/uploads/[0-9a-f]+/parts/"
BATCH = r"^/api/filesystem/batch$"
DATA = r"^/api/filesystem/data"


def _root() -> str:
    return f"/stop-{uuid.uuid4().hex[:8]}"


def _interrupt(cli, env: dict, args: list[str], ready, again_after: float | None = None
               ) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI, send SIGINT once ready() holds (and again `again_after` seconds later, as
    an impatient user presses Ctrl-C twice); (what it did, seconds from SIGINT to exit)."""
    # SIGINT as a terminal gives it, whatever this suite's shell did: a job a script starts in
    # the background inherits SIGINT ignored, and Python then leaves it ignored.
    running = subprocess.Popen(cli.command(*args), env=cli.env(env), cwd=cli.home, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: ready() or running.poll() is not None, 60, "the transfer to start",
                 interval=0.02)
        assert running.poll() is None, running.communicate()
        running.send_signal(signal.SIGINT)
        sent = time.monotonic()
        if again_after is not None:
            time.sleep(again_after)
            assert running.poll() is None, "stopped before the second Ctrl-C"
            running.send_signal(signal.SIGINT)
        out, err = running.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    return subprocess.CompletedProcess(args, running.returncode, out, err), took


def _put_interrupted(cli, cli_user, proxy, tmp_path, data: bytes):
    """(local file, remote path, what the CLI did, seconds to stop): a put of `data` through
    slowed parts, Ctrl-C once two parts were asked for."""
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    remote = _root() + "/big.bin"
    proxy.fail("PUT", PARTS, "slow", delay=0.4, times=None)
    done, took = _interrupt(cli, proxy.env(cli_user.access_token),
                            ["put", "-j", "2", str(source), remote],
                            lambda: proxy.count("PUT", PARTS) >= 2)
    return source, remote, done, took


def test_ctrl_c_stops_a_big_put_without_committing_and_a_rerun_resumes(cli, cli_user, tmp_path,
                                                                       proxy):
    data = os.urandom(10 * 4 * MiB - 5)
    source, remote, done, took = _put_interrupted(cli, cli_user, proxy, tmp_path, data)

    assert done.returncode == 130, done.stderr
    assert took < 3, took
    assert "interrupted: 0 of 1 files sent, 1 not sent" in done.stderr, done.stderr
    asked = proxy.count("PUT", PARTS)
    assert asked <= 5, asked                          # no part asked for after Ctrl-C
    assert proxy.count("POST", r"/commit$") == 0       # the session was not committed
    assert cli.run("info", remote).returncode == 4

    proxy.heal()
    again = cli.ok("put", "-j", "2", str(source), remote, env=proxy.env(cli_user.access_token))
    assert re.search(rf"Resuming upload of {re.escape(remote)}: \d+ of 10 parts", again.stderr)
    assert proxy.count("PUT", PARTS) - asked < 10      # only what was missing
    back = tmp_path / "back.bin"
    cli.ok("get", remote, str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_a_rerun_after_the_file_changed_frees_the_session_it_cannot_resume(cli, cli_user,
                                                                          tmp_path, proxy):
    """Its size changed, so the interrupted session cannot be continued: it was left open for
    a week, against the quota and the open-uploads limit."""
    source, remote, done, _ = _put_interrupted(cli, cli_user, proxy, tmp_path,
                                               os.urandom(10 * 4 * MiB - 5))
    assert done.returncode == 130, done.stderr
    (first,) = cli_user.api.get("/api/filesystem/uploads").json()["uploads"]

    proxy.heal()
    data = os.urandom(9 * 4 * MiB)
    source.write_bytes(data)
    asked = proxy.count("PUT", PARTS)
    cli.ok("put", "-j", "2", str(source), remote, env=proxy.env(cli_user.access_token))

    assert proxy.count("PUT", PARTS) - asked == 9          # a new session: every part sent
    assert proxy.count("DELETE", r"^/api/filesystem/uploads/[0-9a-f]+$") == 1   # the old one
    assert cli_user.api.get("/api/filesystem/uploads").json()["uploads"] == []
    gone = cli_user.api.get(f"/api/filesystem/uploads/{first['upload_id']}")
    assert gone.status_code in (404, 410), gone.text
    back = tmp_path / "back.bin"
    cli.ok("get", remote, str(back))
    assert back.read_bytes() == data


def test_ctrl_c_stops_a_folder_of_small_files_between_batches(cli, cli_user, tmp_path, proxy):
    folder = tmp_path / "many"
    for d in range(12):                               # a batch per directory
        (folder / f"d{d:02d}").mkdir(parents=True)
        for n in range(5):
            (folder / f"d{d:02d}" / f"f{n}").write_bytes(os.urandom(100))
    proxy.fail("POST", BATCH, "slow", delay=0.5, times=None)

    done, took = _interrupt(cli, proxy.env(cli_user.access_token),
                            ["put", "-j", "2", str(folder), _root()],
                            lambda: proxy.count("POST", BATCH) >= 1)

    assert done.returncode == 130, done.stderr
    assert took < 3, took
    match = re.search(r"interrupted: (\d+) of 60 files sent, (\d+) not sent", done.stderr)
    assert match, done.stderr
    sent, left = int(match.group(1)), int(match.group(2))
    assert sent + left == 60 and left >= 30, done.stderr
    assert proxy.count("POST", BATCH) <= 4
    assert f"put: {sent} sent, 0 skipped (unchanged), 0 failed, {left} not sent" in done.stdout


def _stored_then_slowed(cli, proxy, tmp_path, delay: float) -> tuple[str, object]:
    """(remote path, empty local folder): a 32 MiB file stored, its reads then slowed."""
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(8 * 4 * MiB))
    remote = _root() + "/big.bin"
    cli.ok("put", str(source), remote)
    proxy.fail("GET", DATA, "slow", delay=delay, times=None)
    out = tmp_path / "out"
    out.mkdir()
    return remote, out


def test_ctrl_c_stops_a_get_and_leaves_no_temporary_file(cli, cli_user, tmp_path, proxy):
    remote, out = _stored_then_slowed(cli, proxy, tmp_path, 0.4)

    done, took = _interrupt(cli, proxy.env(cli_user.access_token),
                            ["get", "-j", "1", remote, str(out) + "/"],
                            lambda: proxy.count("GET", DATA) >= 1)

    assert done.returncode == 130, done.stderr
    assert took < 3, took
    assert "interrupted: 0 of 1 files received, 1 not received" in done.stderr, done.stderr
    assert list(out.iterdir()) == []
    assert proxy.count("GET", DATA) <= 4


def test_a_second_ctrl_c_while_a_get_stops_still_leaves_no_temporary_file(cli, cli_user,
                                                                         tmp_path, proxy):
    """The second one lands while the first one's stop waits for the ranges under way."""
    remote, out = _stored_then_slowed(cli, proxy, tmp_path, 0.6)

    done, _ = _interrupt(cli, proxy.env(cli_user.access_token),
                         ["get", "-j", "4", remote, str(out) + "/"],
                         lambda: proxy.count("GET", DATA) >= 2, again_after=0.15)

    assert done.returncode == 130, done.stderr
    assert "nothing half-written was left" in done.stderr, done.stderr
    assert list(out.iterdir()) == []


def test_an_unreachable_server_stops_a_put_with_one_message(cli, cli_user, tmp_path, proxy):
    folder = tmp_path / "lone"
    for n in range(40):                               # each over the batch size: one by one
        (folder / f"d{n:02d}").mkdir(parents=True)
        (folder / f"d{n:02d}" / "f").write_bytes(os.urandom(300_000))
    root = _root()
    # Every upload's connection is dropped, as a server that died leaves them.
    proxy.fail("POST", DATA, "drop", times=None)

    started = time.monotonic()
    done = cli.run("put", "-j", "4", str(folder), root, env=proxy.env(cli_user.access_token))

    assert done.returncode == 6, done.stderr
    assert time.monotonic() - started < 30
    assert done.stderr.count("Cannot reach the server") == 1, done.stderr
    assert "Stopped: 0 of 40 files sent, 40 not sent" in done.stderr, done.stderr
    assert "once the server answers, running the same command again" in done.stderr
    assert proxy.count("POST", DATA) <= 4 * 5          # a few files' retries, not all 40
    assert "0 sent, 0 skipped (unchanged), 0 failed, 40 not sent" in done.stdout


def test_an_unreachable_server_stops_a_get_with_one_message(cli, cli_user, tmp_path, proxy):
    folder = tmp_path / "lone"
    folder.mkdir()
    for n in range(20):
        (folder / f"f{n:02d}").write_bytes(os.urandom(300_000))
    root = _root()
    cli.ok("put", str(folder), root)
    proxy.fail("GET", DATA, "drop", times=None)
    out = tmp_path / "out"

    done = cli.run("get", "-j", "4", root + "/lone", str(out),
                   env=proxy.env(cli_user.access_token))

    assert done.returncode == 6, done.stderr
    assert done.stderr.count("Cannot reach the server") == 1, done.stderr
    assert "Stopped: 0 of 20 files received, 20 not received" in done.stderr, done.stderr
    assert proxy.count("GET", DATA) <= 4 * 5
    assert not [p for p in out.rglob("*") if p.is_file()]
