"""storages (list, add local, connect, drain, remove) and members through the CLI."""
from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

from tests.support import register_and_login


def test_add_local_list_and_remove(home, api, tmp_path):
    user = register_and_login(api)
    home.login(user)
    assert "No storages yet" in home.ok("storages", "list").stderr
    added = home.ok("storages", "add", "local", str(tmp_path / "disk-a"), "--name", "disk-a",
                    "--capacity", "1G")
    storage_id = added.stdout.strip()
    assert storage_id and "Added local storage 'disk-a'" in added.stderr
    listed = json.loads(home.ok("storages", "list", "--json").stdout)
    assert [(s["id"], s["kind"], s["name"], s["capacity"]) for s in listed] == [
        (storage_id, "local", "disk-a", 1024 ** 3)]
    table = home.ok("storages", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "KIND", "NAME", "STATUS", "STORED", "CAPACITY", "SHARES"]
    assert table[1].split()[:4] == [storage_id, "local", "disk-a", "active"]
    assert home.ok("storages").stdout.splitlines() == table          # `list` is the default
    # A relative path is taken from the current directory (the server is this machine).
    (home.home / "rel").mkdir()
    home.ok("storages", "add", "local", "rel", "--name", "relative")
    paths = {s["name"]: s["settings"].get("path")
             for s in json.loads(home.ok("storages", "list", "--json").stdout)}
    assert paths["relative"] == str(home.home / "rel")
    again = home.run("storages", "add", "local", str(tmp_path / "disk-a"))
    assert again.returncode == 5, again                               # directory in use
    home.ok("storages", "remove", "disk-a")                            # by name
    home.ok("storages", "remove", "relative")
    assert json.loads(home.ok("storages", "list", "--json").stdout) == []
    assert home.run("storages", "remove", storage_id).returncode == 4
    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/disk\xff")
    refused = home.run("storages", "add", "local", odd)
    assert refused.returncode == 2 and "not valid UTF-8" in refused.stderr, refused
    assert "surrogate" not in refused.stderr


def test_a_storage_with_shares_is_drained_before_removal(home, api, tmp_path):
    user = register_and_login(api)
    home.login(user)
    for n in range(3):
        home.ok("storages", "add", "local", str(tmp_path / f"d{n}"), "--name", f"d{n}")
    data = os.urandom(300_000)
    (tmp_path / "f.bin").write_bytes(data)
    home.ok("put", str(tmp_path / "f.bin"), "/f.bin")      # durability: the server's default
    storages = json.loads(home.ok("storages", "list", "--json").stdout)
    holder = next(s for s in storages if s["shares"] > 0)
    refused = home.run("storages", "remove", holder["id"])
    assert refused.returncode == 5 and "Drain it first" in refused.stderr
    done = home.ok("storages", "remove", "--drain", holder["name"])
    assert "0 remain" in done.stderr
    left = json.loads(home.ok("storages", "list", "--json").stdout)
    assert holder["id"] not in {s["id"] for s in left}
    assert home.run("cat", "/f.bin", text=False).stdout == data


def test_a_drain_with_nowhere_to_go_is_undone(home, api, tmp_path):
    user = register_and_login(api)
    home.login(user)
    for n in range(2):
        home.ok("storages", "add", "local", str(tmp_path / f"u{n}"), "--name", f"u{n}")
    (tmp_path / "f.bin").write_bytes(os.urandom(5000))
    home.ok("put", str(tmp_path / "f.bin"), "/f.bin")
    stuck = home.run("storages", "drain", "u0")
    assert stuck.returncode == 1 and "u0: 1 share could not be moved" in stuck.stderr, stuck
    assert "draining" in home.ok("storages", "list").stdout
    undone = home.ok("storages", "undrain", "U0")           # a name whatever its case
    assert "u0: active; it takes new shares again" in undone.stderr, undone
    states = {s["name"]: s["status"] for s in
              json.loads(home.ok("storages", "list", "--json").stdout)}
    assert states == {"u0": "active", "u1": "active"}
    assert home.run("storages", "undrain", "nothere").returncode == 4


def _connect_process(home, *args):
    import subprocess
    return subprocess.Popen(home.command("storages", "connect", "dropbox", "--no-browser",
                                         *args),
                            env=home.env(), cwd=home.home, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _approve(url: str) -> dict:
    """The browser: consent at the fake provider, then our callback, which sends it to the web
    UI with the finish code in the fragment."""
    consent = requests.get(url, allow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    callback = requests.get(consent.headers["Location"], allow_redirects=False, timeout=30)
    assert callback.status_code == 302, callback.text
    hash_route = urlsplit(callback.headers["Location"]).fragment
    return {k: v[0] for k, v in parse_qs(hash_route.partition("?")[2]).items()}


def test_connect_prints_the_consent_address_and_takes_the_finish_code(home, api):
    user = register_and_login(api)
    home.login(user)
    process = _connect_process(home, "--name", "My Dropbox", "--wait", "60")
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http"), (url, process.stderr.read() if process.poll() else "")
        back = _approve(url)
        # Approving alone connects nothing: the command waits for the code.
        assert json.loads(home.ok("storages", "list", "--json").stdout) == []
        assert process.poll() is None
        process.stdin.write(back["finish_code"] + "\n")
        process.stdin.flush()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stdout, stderr = process.stdout.read(), process.stderr.read()
    assert "paste it here" in stderr and "Connected dropbox storage 'My Dropbox'" in stderr
    listed = json.loads(home.ok("storages", "list", "--json").stdout)
    assert [(s["kind"], s["name"]) for s in listed] == [("dropbox", "My Dropbox")]
    assert stdout.strip() == listed[0]["id"]


def test_connecting_an_account_again_says_it_is_reconnected(home, api):
    import os
    user = register_and_login(api)
    home.login(user)
    account = f"cli-again-{os.urandom(4).hex()}"
    messages, ids = [], []
    for name in ("First", "Second"):
        process = _connect_process(home, "--name", name, "--wait", "60")
        try:
            url = process.stdout.readline().strip()
            back = _approve(f"{url}&fake_account={account}")
            process.stdin.write(back["finish_code"] + "\n")
            process.stdin.flush()
            assert process.wait(timeout=60) == 0, process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        ids.append(process.stdout.read().strip())
        messages.append(process.stderr.read())
    assert "Connected dropbox storage 'First'" in messages[0]
    assert f"is your storage 'First' ({ids[0]}) already: it is reconnected" in messages[1]
    assert ids[0] == ids[1]
    listed = json.loads(home.ok("storages", "list", "--json").stdout)
    assert [(s["id"], s["name"]) for s in listed] == [(ids[0], "First")]


def test_connect_with_a_wrong_or_no_finish_code_fails_clearly(home, api):
    user = register_and_login(api)
    home.login(user)
    process = _connect_process(home)
    try:
        _approve(process.stdout.readline().strip())
        _, stderr = process.communicate("not-the-code\n", timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0 and "finish code is not the one shown" in stderr
    process = _connect_process(home, "--wait", "1")
    _, stderr = process.communicate(timeout=60)       # stdin closed: no code at all
    assert process.returncode == 1 and "No finish code was given" in stderr
    assert json.loads(home.ok("storages", "list", "--json").stdout) == []


def test_members_lists_none_for_a_new_user(home, api):
    user = register_and_login(api)
    home.login(user)
    assert json.loads(home.ok("members", "--json").stdout) == []
    assert "No array members yet" in home.ok("members").stderr


class _NoMembersRoute(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"error": {"code": "not_found",
                                     "message": f"No API route {self.path}."}}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_members_on_a_server_without_the_route_fails_clearly(home):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoMembersRoute)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        done = home.run("members", "--server", f"http://127.0.0.1:{server.server_port}",
                        env={"CLOUDSTRYPE_TOKEN": "any"})
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1, done
    assert "does not list array members" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_server_exits_6(home):
    done = home.run("ls", "/", "--server", "http://127.0.0.1:9", env={"CLOUDSTRYPE_TOKEN": "x"})
    assert done.returncode == 6, done
    assert "Cannot reach the server" in done.stderr
