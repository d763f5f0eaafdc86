"""login, logout, saved credentials, token refresh, and the auth-related exit codes."""
from __future__ import annotations

import json
import stat
import time

from tests.support import PASSWORD, register_and_login


def test_wrong_password_exits_3_with_the_servers_message(home, api):
    user = register_and_login(api)
    done = home.run("login", "--server", home.server, "--username", user.username,
                    "--password-stdin", input="not-the-password\n")
    assert done.returncode == 3, done
    assert "Wrong username or password" in done.stderr
    assert not home.credentials_file.exists()


def test_unknown_user_exits_3(home):
    done = home.run("login", "--server", home.server, "--username", "nobody-here-at-all",
                    "--password-stdin", input=PASSWORD + "\n")
    assert done.returncode == 3, done
    assert "Wrong username or password" in done.stderr


def test_logout_under_cloudstrype_token_ends_that_sign_in(home, api):
    """It said "Not logged in.", exit 0, and the token every command used kept working
    (accounts sweep); a saved login is another sign-in, and stays."""
    user, other = register_and_login(api), register_and_login(api)
    home.login(other)
    env = {"CLOUDSTRYPE_SERVER": home.server, "CLOUDSTRYPE_TOKEN": user.access_token}
    home.ok("ls", "/", env=env)
    done = home.ok("logout", env=env)
    assert "Ended the sign-in of CLOUDSTRYPE_TOKEN" in done.stderr
    assert "The saved login is another sign-in and stays" in done.stderr
    assert home.run("ls", "/", env=env).returncode == 3
    home.ok("logout", env=env)                # again: ended already, as a saved login's is
    assert api.as_user(user.access_token).get("/api/auth/me").status_code == 401
    home.ok("ls", "/")                                   # the saved login's sign-in lives


def test_login_saves_private_credentials_and_logout_forgets_them(home, api):
    user = register_and_login(api)
    home.login(user)
    path = home.credentials_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    saved = home.credentials()
    assert set(saved) == {"server", "username", "access_token", "id_token", "refresh_token",
                          "expires_at"}
    assert saved["server"] == home.server and saved["username"] == user.username
    assert saved["expires_at"] > time.time() + 600
    # No temporary files are left beside it (written atomically).
    assert sorted(p.name for p in path.parent.iterdir()) == ["credentials.json"]
    # The saved token works: a command needing auth succeeds.
    home.ok("ls", "/")

    done = home.ok("logout")
    assert "Logged out" in done.stderr
    # The tokens are gone; the server's address stays, for the hint and the next login.
    assert json.loads(path.read_text()) == {"server": home.server}
    again = home.run("ls", "/")
    assert again.returncode == 3
    assert f"Not logged in; run 'cloudstrype login --server {home.server}'" in again.stderr
    assert "Not logged in" in home.run("logout").stderr
    # Logging in again without --server goes back to that server (the stack has no other).
    home.ok("login", "--username", user.username, "--password-stdin", input=PASSWORD + "\n")
    assert home.credentials()["server"] == home.server
    home.ok("ls", "/")
    home.ok("logout")
    # The server was told: a copy of the deleted tokens works no more.
    assert api.as_user(saved["access_token"]).get("/api/auth/me").status_code == 401
    assert api.post("/api/auth/refresh",
                    json={"refresh_token": saved["refresh_token"]}).status_code == 401


def test_logging_in_as_someone_else_ends_the_previous_sign_in(home, api):
    first, second = register_and_login(api), register_and_login(api)
    home.login(first)
    before = home.credentials()
    home.login(second)
    assert home.credentials()["username"] == second.username
    assert api.as_user(before["access_token"]).get("/api/auth/me").status_code == 401
    home.ok("ls", "/")


def test_a_bad_server_address_or_credentials_file_is_said_in_words(home, api):
    for address in ("ftp://x", "file:///etc", "http://", "http://[::1"):
        done = home.run("login", "--server", address, "--username", "u", "--password-stdin",
                        input="p\n")
        assert done.returncode == 2, (address, done)
        assert "not an http:// or https:// address" in done.stderr
        assert "Traceback" not in done.stderr
    user = register_and_login(api)
    home.login(user)
    saved = home.credentials()
    home.credentials_file.write_text(json.dumps({**saved, "expires_at": "soon"}))
    done = home.run("ls", "/")
    assert done.returncode == 3, done
    assert "Not logged in" in done.stderr and "Traceback" not in done.stderr


def test_not_logged_in_exits_3(home):
    done = home.run("ls", "/", "--server", home.server)
    assert done.returncode == 3, done
    assert "cloudstrype login" in done.stderr


def test_expired_token_is_refreshed_and_saved(home, api):
    user = register_and_login(api)
    home.login(user)
    before = home.credentials()
    stale = {**before, "expires_at": int(time.time()) - 10}
    home.credentials_file.write_text(json.dumps(stale))
    home.ok("mkdir", "-p", "/refreshed")
    after = home.credentials()
    assert after["access_token"] != before["access_token"]
    assert after["expires_at"] > time.time() + 600
    # Refresh tokens rotate: the new one is saved, the old one is spent.
    assert after["refresh_token"] and after["refresh_token"] != before["refresh_token"]
    assert stat.S_IMODE(home.credentials_file.stat().st_mode) == 0o600
    assert "refreshed/" in home.ok("ls", "/").stdout.splitlines()


def test_a_refused_token_is_refreshed_on_401(home, api):
    user = register_and_login(api)
    home.login(user)
    saved = home.credentials()
    # The expiry says fine, the server says no: the 401 triggers the refresh.
    home.credentials_file.write_text(json.dumps({**saved, "access_token": "not-a-jwt"}))
    home.ok("ls", "/")
    assert home.credentials()["access_token"] not in ("not-a-jwt", saved["access_token"])


def test_a_revoked_refresh_token_asks_to_log_in_again(home, api):
    user = register_and_login(api)
    home.login(user)
    saved = home.credentials()
    home.credentials_file.write_text(json.dumps({**saved, "expires_at": 0,
                                                 "refresh_token": "bogus"}))
    done = home.run("ls", "/")
    assert done.returncode == 3, done
    assert "cloudstrype login" in done.stderr


def test_token_and_server_overrides(home, api, cli_user):
    # No credentials file at all: CLOUDSTRYPE_TOKEN and CLOUDSTRYPE_SERVER are enough.
    env = {"CLOUDSTRYPE_TOKEN": cli_user.access_token, "CLOUDSTRYPE_SERVER": home.server}
    home.ok("mkdir", "-p", "/override-check", env=env)
    assert "override-check/" in home.ok("ls", "/", env=env).stdout.splitlines()
    refused = home.run("ls", "/", env={**env, "CLOUDSTRYPE_TOKEN": "garbage"})
    assert refused.returncode == 3
    assert "CLOUDSTRYPE_TOKEN was refused" in refused.stderr
    assert not home.credentials_file.exists()


def test_passwd_changes_the_password_with_the_current_one(home, api):
    user = register_and_login(api)
    home.login(user)
    wrong = home.run("passwd", "--password-stdin", input="not-it\nN3w-Passw0rd-X\n")
    assert wrong.returncode == 3, wrong
    assert "current password is wrong" in wrong.stderr
    weak = home.run("passwd", "--password-stdin", input=f"{user.password}\nshort\n")
    assert weak.returncode == 2 and "too weak" in weak.stderr, weak
    done = home.ok("passwd", "--password-stdin", input=f"{user.password}\nN3w-Passw0rd-X\n")
    assert "Password changed" in done.stderr
    home.ok("ls", "/")                          # this sign-in goes on
    assert api.post("/api/auth/login", json={"username": user.username,
                                             "password": "N3w-Passw0rd-X"}).status_code == 200


def test_a_refresh_whose_answer_is_lost_is_asked_again_and_the_login_lives_on(home, api, proxy):
    """The server replaces the refresh token at each use: an answer lost on the way left the
    CLI with a replaced token, and it was signed out. It asks again (the server gives the
    same new tokens again within a minute) and goes on."""
    user = register_and_login(api)
    home.ok("login", "--server", proxy.url, "--username", user.username, "--password-stdin",
            input=PASSWORD + "\n")
    saved = home.credentials()
    home.credentials_file.write_text(json.dumps({**saved, "expires_at": 0}))
    proxy.fail("POST", "^/api/auth/refresh$", "lost")
    home.ok("ls", "/")
    assert proxy.count("POST", "^/api/auth/refresh$") == 2
    renewed = home.credentials()
    assert renewed["refresh_token"] != saved["refresh_token"]
    # The token kept is the sign-in's current one: the next refresh takes it.
    home.credentials_file.write_text(json.dumps({**renewed, "expires_at": 0}))
    home.ok("ls", "/")
    assert home.credentials()["refresh_token"] not in (saved["refresh_token"],
                                                       renewed["refresh_token"])


def test_a_refresh_that_cannot_reach_the_server_says_so(home, api, proxy):
    user = register_and_login(api)
    home.ok("login", "--server", proxy.url, "--username", user.username, "--password-stdin",
            input=PASSWORD + "\n")
    home.credentials_file.write_text(json.dumps({**home.credentials(), "expires_at": 0}))
    proxy.fail("POST", "^/api/auth/refresh$", "drop", times=None)
    done = home.run("ls", "/")
    assert done.returncode == 6, done
    assert "to refresh the login" in done.stderr and "Traceback" not in done.stderr
