"""Small things the command line says in words: a bad -j names the option and what it takes, a
server address ending in /api is not taken for a server, a storage still holding shares points
to the command that drains it, and a Ctrl-C while the command starts is an interrupt (130)."""
from __future__ import annotations

import json
import os

from cloudstrype_client import cli as cli_module

from tests.support import PASSWORD, register_and_login


def test_a_bad_jobs_value_names_the_option_and_what_it_takes(home):
    for value, words in (("abc", "argument -j/--jobs: 'abc' is not a number; give how many "
                                 "transfers run at once, 1 to 64"),
                         ("0", "argument -j/--jobs: 0 is out of range; use 1 to 64")):
        done = home.run("put", "-j", value, "x", "/")
        assert done.returncode == 2, done.stderr
        assert words in done.stderr and "_positive" not in done.stderr, done.stderr


def test_the_apis_address_is_not_taken_for_the_servers(home, api):
    user = register_and_login(api)
    done = home.run("login", "--server", f"{home.server}/api", "--username", user.username,
                    "--password-stdin", input=PASSWORD + "\n")
    assert done.returncode == 2, done.stderr
    assert f"{home.server}/api does not look like a Cloudstrype server" in done.stderr
    assert f"without '/api': {home.server}" in done.stderr, done.stderr
    assert not home.credentials_file.exists()


def test_removing_a_storage_that_holds_shares_points_to_the_drain_command(home, api, tmp_path):
    user = register_and_login(api)
    home.login(user)
    for n in range(3):
        home.ok("storages", "add", "local", str(tmp_path / f"d{n}"), "--name", f"d{n}")
    (tmp_path / "f.bin").write_bytes(os.urandom(300_000))
    home.ok("put", str(tmp_path / "f.bin"), "/f.bin")
    storages = json.loads(home.ok("storages", "list", "--json").stdout)
    holder = next(s for s in storages if s["shares"] > 0)

    refused = home.run("storages", "remove", holder["name"])

    assert refused.returncode == 5, refused.stderr
    assert f"'cloudstrype storages drain {holder['name']}', or 'storages remove --drain'" \
        in refused.stderr, refused.stderr
    assert "POST /api" not in refused.stderr


def test_a_members_refusal_points_to_the_drain_command_too():
    """A member's refusal names the array route, with more in its parentheses (found by the
    members sweep: `storages remove` of a member told a CLI user to POST to the API)."""
    from cloudstrype_client.commands import drain_advice
    said = drain_advice("Member 'm4' still holds 3 shares. Drain it first (POST /api/array/"
                        "members/abc/drain, again while it answers 202) to move them "
                        "elsewhere.", "m4")
    assert said == ("Member 'm4' still holds 3 shares. Drain it first ('cloudstrype storages "
                    "drain m4', or 'storages remove --drain') to move them elsewhere.")


def test_ctrl_c_while_the_command_starts_is_an_interrupt(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "build_parser", interrupted)
    assert cli_module.main(["ls", "/"]) == 130
    assert "Interrupted." in capsys.readouterr().err
