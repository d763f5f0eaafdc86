"""What the CLI says when it cannot write its output or read an answer, in words and with an
exit code, never a traceback: a full disk under `cat` and `ls`, a closed output, a login whose
input ends before the password; and `cat` of several
paths goes on past one that cannot be read, as cat(1) does."""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from cloudstrype_client.errors import FAILED, NOT_FOUND, USAGE

from tests.support import PASSWORD, register_and_login

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


@pytest.fixture(scope="module")
def stored(cli, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("out") / "f"
    folder.mkdir()
    (folder / "small.txt").write_text("small\n")
    (folder / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    root = f"/out-{uuid.uuid4().hex[:8]}"
    cli.ok("put", "-q", str(folder) + "/", root + "/")
    return root


def _run(cli, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cli.command(*args), env=cli.env(), cwd=cli.home, timeout=120,
                          stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_full_disk_under_cat_and_ls_is_said_without_a_traceback(cli, stored):
    with open("/dev/full", "wb") as full:
        for args in (("cat", f"{stored}/small.txt"), ("cat", f"{stored}/big.bin"),
                     ("ls", "-R", "/")):
            done = _run(cli, *args, stdout=full)
            assert done.returncode == FAILED, (args, done.stderr)
            assert "Traceback" not in done.stderr, done.stderr
            assert "No space left on device" in done.stderr, done.stderr
            assert done.stderr.count("cloudstrype") == 1, done.stderr


def test_a_closed_output_is_said(cli, stored):
    done = _run(cli, "cat", f"{stored}/small.txt", preexec_fn=lambda: os.close(1))
    assert done.returncode == USAGE and "output is closed" in done.stderr, done.stderr


def test_cat_goes_on_past_a_path_it_cannot_read(cli, stored):
    done = _run(cli, "cat", f"{stored}/nope.txt", f"{stored}/small.txt",
                stdout=subprocess.PIPE)
    assert done.stdout == "small\n", done
    assert done.returncode == NOT_FOUND and "nope.txt" in done.stderr, done.stderr


def test_a_password_piped_in_without_a_terminal_gets_no_python_warning(home, api):
    """Without a terminal, getpass reads stdin and warned twice ("GetPassWarning: Can not
    control echo … Password input may be echoed"): noise, as a pipe echoes nothing (README
    walk). No session: no terminal to fall back to, as under a service or CI."""
    user = register_and_login(api)
    done = _run(home, "login", "--server", home.server, "-u", user.username,
                input=PASSWORD + "\n", start_new_session=True)
    assert done.returncode == 0, done.stderr
    assert "GetPassWarning" not in done.stderr and "echoed" not in done.stderr, done.stderr


def test_a_login_whose_input_ends_before_the_password_says_so(home):
    done = _run(home, "login", "--server", home.server, "-u", "someone",
                stdin=subprocess.DEVNULL)
    assert done.returncode == USAGE and "Traceback" not in done.stderr, done.stderr
    assert "--password-stdin" in done.stderr, done.stderr
