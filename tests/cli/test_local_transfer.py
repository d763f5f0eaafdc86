"""`cloudstrype get` from a server on this machine: through the server's local socket
(infra/local/transfer.py, local_transfer.py) the CLI asks for the file's direct-read plan and
reads its chunks' shares from the storages' folders itself; a chunk it cannot read so, the
server writes into the CLI's file as a range; none of it over HTTP. A socket that fails sends
the download over HTTP instead. The socket itself is held to what HTTP is: only GETs under
/api/, authorized as they are there, and nothing written into the file for an answer that is
not the content; the plan (the shares' files and keys) is given through it alone, and only
for the caller's own files."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
from cloudstrype_client import api as api_module
from cloudstrype_client import local_transfer
from cloudstrype_client.api import Client
from cloudstrype_client.errors import UNREACHABLE, CliError

from infra.local import transfer
from tests.cli.faults import WELL_KNOWN_PATH
from tests.cli.test_download_check import _upload_with_declared_sha256
from tests.support import Api, register_and_login, start_stack

MiB = 1024 * 1024
RANGES = r"^/api/filesystem/data/"


def _stored(user, size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    directory = f"/lt-{uuid.uuid4().hex[:8]}"
    _upload_with_declared_sha256(user, directory, "big.bin", data,
                                 hashlib.sha256(data).hexdigest())
    return f"{directory}/big.bin", data


def test_the_cli_and_the_server_agree_on_the_socket_protocol():
    assert local_transfer.WELL_KNOWN_PATH == transfer.WELL_KNOWN_PATH == WELL_KNOWN_PATH
    assert local_transfer.MAX_LINE_BYTES == transfer.MAX_LINE_BYTES
    assert local_transfer.NOT_TEXT == transfer.NOT_TEXT
    assert local_transfer.SWITCH == transfer.SWITCH


class _Relay:
    """A Unix socket in front of the stack's transfer socket: passes everything on both ways
    (the file handed over too) and keeps the request lines, so a test sees what the CLI asked
    through the socket."""

    def __init__(self, target: str, where):
        self.target, self.where = target, str(where)
        self.requests: list[dict] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.where)
        self._listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def plans(self) -> list[dict]:
        return [r for r in self.requests if r["query"].get("direct") == "1"]

    def ranges(self) -> list[str]:
        return [r["headers"]["Range"] for r in self.requests if r["into"] is not None]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            first, fds, _flags, _address = socket.recv_fds(client, 65536, 1)
            upstream.connect(self.target)
            socket.send_fds(upstream, [first], fds)
            for fd in fds:
                os.close(fd)
            threading.Thread(target=self._pump, args=(upstream, client, None),
                             daemon=True).start()
            self._pump(client, upstream, bytearray(first))

    def _pump(self, source: socket.socket, sink: socket.socket, lines: bytearray | None):
        try:
            while True:
                if lines is not None:
                    while b"\n" in lines:
                        line, _, rest = bytes(lines).partition(b"\n")
                        self.requests.append(json.loads(line))
                        lines[:] = rest
                data = source.recv(65536)
                if not data:
                    return
                if lines is not None:
                    lines += data
                sink.sendall(data)
        except OSError:
            return
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass


@pytest.fixture
def relay(api, proxy, tmp_path):
    """The stack's transfer socket behind a _Relay, found by the CLI through the proxy."""
    running = _Relay(api.get(WELL_KNOWN_PATH).json()["socket"], tmp_path / "relay.sock")
    proxy.local_socket = running.where
    yield running
    running.close()


def test_a_large_get_from_this_machine_reads_the_shares_itself(cli, cli_user, proxy, relay,
                                                                tmp_path):
    path, data = _stored(cli_user, 9 * MiB + 3)
    cli.ok("get", "-q", path, str(tmp_path / "got.bin"), env=proxy.env(cli_user.access_token))
    assert (tmp_path / "got.bin").read_bytes() == data
    assert proxy.count("GET", WELL_KNOWN_PATH) == 1
    assert proxy.count("GET", RANGES) == 0      # nothing over HTTP
    assert len(relay.plans()) == 1              # one plan for the three chunks,
    assert relay.ranges() == []                 # each read from its share's file


def test_switched_to_ranges_the_server_writes_every_range(cli, cli_user, proxy, relay, tmp_path):
    path, data = _stored(cli_user, 9 * MiB + 3)
    cli.ok("get", "-q", path, str(tmp_path / "got.bin"),
           env={**proxy.env(cli_user.access_token), "CLOUDSTRYPE_LOCAL_TRANSFER": "ranges"})
    assert (tmp_path / "got.bin").read_bytes() == data
    assert relay.plans() == []
    assert sorted(relay.ranges()) == [f"bytes=0-{4 * MiB - 1}", f"bytes={4 * MiB}-{8 * MiB - 1}",
                                      f"bytes={8 * MiB}-{9 * MiB + 2}"]   # asked in parallel
    assert proxy.count("GET", RANGES) == 0


def test_a_copy_that_fails_its_tag_is_read_by_the_server_which_reports_it(
        api, cli, cli_user, proxy, relay, tmp_path):
    """The middle chunk's first copy changed on disk (same size): the CLI's decode fails its
    tag, so that chunk is asked of the server, whose read takes the other copy and marks the
    changed one for repair. The file comes out whole, and nothing changed comes out."""
    path, data = _stored(cli_user, 9 * MiB + 3)
    node_id = cli_user.api.get("/api/filesystem/info", params={"path": path}).json()["id"]
    plan = _plan(api, cli_user, node_id, tmp_path)
    middle = plan["chunks"][1]["read"]
    share_file = middle["shares"][0]["file"]
    with open(share_file, "r+b") as share:
        share.seek(1000)
        byte = share.read(1)
        share.seek(1000)
        share.write(bytes([byte[0] ^ 0xFF]))

    cli.ok("get", "-q", path, str(tmp_path / "got.bin"), env=proxy.env(cli_user.access_token))

    assert (tmp_path / "got.bin").read_bytes() == data
    assert relay.ranges() == [f"bytes={4 * MiB}-{8 * MiB - 1}"]
    info = cli_user.api.get(f"/api/chunk/{middle['chunk']}/info").json()
    health = {s["index"]: s["health"] for s in info["shares"]}
    assert health[middle["shares"][0]["index"]] == "damaged", info


def test_a_server_across_a_network_sends_it_over_http(cli, cli_user, proxy, tmp_path):
    path, data = _stored(cli_user, 9 * MiB + 3)
    cli.ok("get", "-q", path, str(tmp_path / "got.bin"), env=proxy.env(cli_user.access_token))
    assert (tmp_path / "got.bin").read_bytes() == data
    assert proxy.count("GET", RANGES, range="bytes=") == 3


def _fake_socket(where, handle) -> socket.socket:
    """A Unix socket at `where` whose every connection goes to `handle(connection)` on a
    thread of its own; closed by closing what this returns."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(where))
    listener.listen(8)

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener


def test_a_socket_that_fails_leaves_the_download_to_http(cli, cli_user, proxy, tmp_path):
    """A socket that takes the file and hangs up: the CLI says so and downloads over HTTP."""
    where = tmp_path / "broken.sock"

    def hang_up(connection: socket.socket) -> None:
        connection.recv(65536)
        connection.close()

    broken = _fake_socket(where, hang_up)
    proxy.local_socket = str(where)
    try:
        path, data = _stored(cli_user, 9 * MiB + 3)
        done = cli.ok("get", path, str(tmp_path / "got.bin"),
                      env=proxy.env(cli_user.access_token))
    finally:
        broken.close()
    assert (tmp_path / "got.bin").read_bytes() == data
    assert "local socket failed" in done.stderr and "downloading over HTTP" in done.stderr
    assert proxy.count("GET", RANGES, range="bytes=") == 3


# -- the socket itself ----------------------------------------------------------------------------

def _ask(socket_path: str, fd: int | None, *requests: dict) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(60)
        connection.connect(socket_path)
        reader = connection.makefile("rb")
        answers = []
        for n, request in enumerate(requests):
            line = (request if isinstance(request, bytes) else
                    json.dumps(request).encode()) + b"\n"
            if n == 0 and fd is not None:
                socket.send_fds(connection, [line], [fd])
            else:
                connection.sendall(line)
            answers.append(json.loads(reader.readline()))
        return answers


def _range(node_id: str, token: str, first: int, last: int) -> dict:
    return {"path": f"/api/filesystem/data/{node_id}", "query": {},
            "headers": {"Authorization": f"Bearer {token}", "Range": f"bytes={first}-{last}"},
            "into": first}


def test_the_socket_writes_only_what_the_caller_may_read(api, stack, cli_user, tmp_path):
    where = api.get(WELL_KNOWN_PATH).json()["socket"]
    path, data = _stored(cli_user, 5 * MiB)
    node_id = cli_user.api.get("/api/filesystem/info", params={"path": path}).json()["id"]
    stranger = register_and_login(api)
    target = tmp_path / "out.bin"
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        theirs, forged, mine = _ask(
            where, fd, _range(node_id, stranger.access_token, 0, 99),
            _range(node_id, "not-a-token", 0, 99),
            _range(node_id, cli_user.access_token, MiB, 2 * MiB - 1))
    finally:
        os.close(fd)
    assert theirs["status"] == 404 and "written" not in theirs, theirs
    assert forged["status"] == 401 and "written" not in forged, forged
    assert mine["status"] == 206 and mine["written"] == MiB, mine
    assert mine["headers"]["Content-Range"] == f"bytes {MiB}-{2 * MiB - 1}/{len(data)}"
    written = target.read_bytes()
    assert written[:MiB] == bytes(MiB) and written[MiB:] == data[MiB:2 * MiB]


@pytest.mark.parametrize("request_line,fix", [
    (b"not json", "JSON object"),
    ({"path": "/config.json", "query": {}, "headers": {}, "into": 0}, "under /api/"),
    ({"path": "/api/filesystem/info", "query": {"a": 1}, "headers": {}, "into": 0}, "strings"),
    ({"path": "/api/filesystem/info", "query": {}, "headers": {}, "into": -1}, "offset"),
])
def test_the_socket_names_what_is_wrong_with_a_request(api, tmp_path, request_line, fix):
    where = api.get(WELL_KNOWN_PATH).json()["socket"]
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        (answer,) = _ask(where, fd, request_line)
    finally:
        os.close(fd)
    assert answer["status"] == 400 and fix in answer["body"], answer
    assert (tmp_path / "out.bin").stat().st_size == 0


def _plan_request(node_id: str, token: str, query: dict | None = None,
                  headers: dict | None = None) -> dict:
    return {"path": f"/api/filesystem/data/{node_id}", "query": {"direct": "1", **(query or {})},
            "headers": {"Authorization": f"Bearer {token}", **(headers or {})}, "into": None}


def _plan(api, user, node_id: str, tmp_path, **asked) -> dict:
    where = api.get(WELL_KNOWN_PATH).json()["socket"]
    fd = os.open(tmp_path / "plan.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        (answer,) = _ask(where, fd, _plan_request(node_id, user.access_token, **asked))
    finally:
        os.close(fd)
    assert answer["status"] == 200, answer
    return json.loads(answer["body"])


def test_the_plan_names_each_chunk_s_share_files_and_key(api, cli_user, tmp_path):
    path, data = _stored(cli_user, 9 * MiB + 3)
    node_id = cli_user.api.get("/api/filesystem/info", params={"path": path}).json()["id"]

    plan = _plan(api, cli_user, node_id, tmp_path)

    assert plan["size"] == len(data) and plan["sha256"] == hashlib.sha256(data).hexdigest()
    assert [(c["offset"], c["size"]) for c in plan["chunks"]] == [
        (0, 4 * MiB), (4 * MiB, 4 * MiB), (8 * MiB, MiB + 3)]
    reader = local_transfer.DirectReader()
    for chunk in plan["chunks"]:
        read = chunk["read"]
        assert len(read["shares"]) == 1                 # raid1(2): one copy is enough
        assert len(bytes.fromhex(read["key"])) == 32
        assert os.path.getsize(read["shares"][0]["file"]) == chunk["size"] + 16   # + GCM tag
        got = reader.read(read, chunk["size"])
        assert bytes(got) == data[chunk["offset"]:chunk["offset"] + chunk["size"]]
        reader.done(got)
    assert (tmp_path / "plan.bin").stat().st_size == 0  # a plan writes nothing into the file
    later = _plan(api, cli_user, node_id, tmp_path, headers={"Range": f"bytes={5 * MiB}-"})
    assert [c["offset"] for c in later["chunks"]] == [4 * MiB, 8 * MiB]


def test_a_file_of_many_chunks_is_read_directly_a_plan_at_a_time(cli, cli_user, proxy, relay,
                                                                  tmp_path):
    """A plan holds what fits in files.LOCAL_PLAN_MAX_BYTES (~45 raid1(2) chunks): a 50-chunk
    file takes more than one, and every chunk is still read from its share's file."""
    path, data = _stored(cli_user, 50 * 4 * MiB - 5)
    cli.ok("get", "-q", path, str(tmp_path / "got.bin"), env=proxy.env(cli_user.access_token))
    assert (tmp_path / "got.bin").read_bytes() == data
    offsets = [int(p["headers"]["Range"].split("=")[1].split("-")[0]) for p in relay.plans()]
    assert len(offsets) >= 2 and offsets[0] == 0 and offsets == sorted(offsets), offsets
    assert relay.ranges() == []
    assert proxy.count("GET", RANGES) == 0


def test_an_answer_longer_than_the_cli_reads_is_said_so(api, cli_user, tmp_path, monkeypatch):
    path, _ = _stored(cli_user, 9 * MiB)
    node_id = cli_user.api.get("/api/filesystem/info", params={"path": path}).json()["id"]
    monkeypatch.setattr(local_transfer, "ANSWER_MAX_BYTES", 1000)
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    channel = local_transfer.Channel(api.get(WELL_KNOWN_PATH).json()["socket"], fd, 60)
    try:
        with pytest.raises(local_transfer.Unavailable, match="longer than 1000 bytes"):
            channel.get(f"/api/filesystem/data/{node_id}", {"direct": "1"},
                        {"Authorization": f"Bearer {cli_user.access_token}"}, None)
    finally:
        channel.close()
        os.close(fd)


def test_the_cli_hands_its_file_to_no_other_user_s_socket(api, tmp_path, monkeypatch):
    """The server checks the CLI's OS user; the CLI checks the server's the same way."""
    monkeypatch.setattr(local_transfer, "_peer_uid", lambda connection: os.getuid() + 1)
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(local_transfer.Unavailable, match="another user's socket"):
            local_transfer.Channel(api.get(WELL_KNOWN_PATH).json()["socket"], fd, 60)
    finally:
        os.close(fd)


def test_the_plan_is_given_through_the_socket_alone_and_to_the_owner_alone(api, cli_user,
                                                                            tmp_path):
    path, _ = _stored(cli_user, 5 * MiB)
    node_id = cli_user.api.get("/api/filesystem/info", params={"path": path}).json()["id"]
    over_http = cli_user.api.get(f"/api/filesystem/data/{node_id}", params={"direct": "1"})
    assert over_http.status_code == 400 and over_http.json()["error"]["code"] == \
        "direct_local_only", over_http.text

    reader = register_and_login(api)
    folder = path.rsplit("/", 1)[0]
    shared = cli_user.api.post("/api/filesystem/shares", json={
        "path": folder, "user": reader.username, "level": "read"})
    assert shared.status_code == 201, shared.text
    stranger = register_and_login(api)
    packed = cli_user.api.post("/api/filesystem/batch", data={"path": folder}, files=[
        ("file", (f"small-{n}.txt", os.urandom(100))) for n in range(2)])
    assert packed.status_code == 207 and packed.json()["created"] == 2, packed.text
    small_id = cli_user.api.get("/api/filesystem/info",
                                params={"path": f"{folder}/small-0.txt"}).json()["id"]
    where = api.get(WELL_KNOWN_PATH).json()["socket"]
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        theirs, through_share, wrong_value, packed = _ask(
            where, fd, _plan_request(node_id, stranger.access_token),
            _plan_request(node_id, reader.access_token,
                          {"share": shared.json()["id"]}),
            _plan_request(node_id, cli_user.access_token, {"direct": "yes"}),
            _plan_request(small_id, cli_user.access_token))
    finally:
        os.close(fd)
    assert theirs["status"] == 404, theirs
    assert through_share["status"] == 400 and "not_in_a_share" in through_share["body"]
    assert wrong_value["status"] == 400 and "invalid_parameter" in wrong_value["body"]
    assert packed["status"] == 400 and "not_chunked" in packed["body"], packed
    for answer in (theirs, through_share, wrong_value, packed):
        assert "key" not in answer["body"] and "file" not in json.loads(answer["body"])
    assert (tmp_path / "out.bin").stat().st_size == 0


def test_a_request_without_the_file_is_refused(api, cli_user):
    where = api.get(WELL_KNOWN_PATH).json()["socket"]
    (answer,) = _ask(where, None, _range("x", cli_user.access_token, 0, 9))
    assert answer["status"] == 400 and "open file" in answer["body"], answer


def test_switched_off_there_is_no_socket(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("no-socket"),
                        env={"CLOUDSTRYPE_LOCAL_TRANSFER": "off"})
    try:
        answer = Api(stack.url).get(WELL_KNOWN_PATH)
        assert answer.status_code == 404, answer.text
    finally:
        assert stack.stop() == 0, stack.log()


# -- every GET of a command through the socket: no HTTP client ------------------------------------

# Runs the CLI, then says whether it loaded an HTTP client (requests) on the way.
_SAYS_IF_HTTP = ("import sys\n"
                 "from cloudstrype_client import cli\n"
                 "code = cli.main(sys.argv[1:])\n"
                 "print('http client:', 'requests' in sys.modules, file=sys.stderr)\n"
                 "sys.exit(code)\n")


def _said_if_http(cli, *args: str):
    done = subprocess.run([sys.executable, "-c", _SAYS_IF_HTTP, *args], capture_output=True,
                          text=True, env=cli.env(), cwd=cli.home, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_a_command_against_this_machine_s_server_sends_its_gets_through_the_socket(
        cli, cli_user, tmp_path):
    path, data = _stored(cli_user, 9 * MiB + 3)
    got = _said_if_http(cli, "get", "-q", path, str(tmp_path / "got.bin"))
    assert (tmp_path / "got.bin").read_bytes() == data
    assert "http client: False" in got.stderr, got.stderr
    listed = _said_if_http(cli, "ls", "-l", path.rsplit("/", 1)[0])
    assert "big.bin" in listed.stdout and "http client: False" in listed.stderr, listed
    # Refused as over HTTP, in the same words.
    missing = cli.run("ls", "/no-such-folder-" + uuid.uuid4().hex[:8])
    assert missing.returncode != 0 and "no-such-folder" in missing.stderr, missing


def test_switched_off_a_command_goes_over_http(cli, cli_user, tmp_path):
    path, data = _stored(cli_user, 5 * MiB)
    done = subprocess.run([sys.executable, "-c", _SAYS_IF_HTTP, "get", "-q", path,
                           str(tmp_path / "got.bin")], capture_output=True, text=True,
                          env=cli.env({"CLOUDSTRYPE_LOCAL_TRANSFER": "off"}), cwd=cli.home,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "got.bin").read_bytes() == data
    assert "http client: True" in done.stderr, done.stderr


def test_the_socket_says_which_server_it_is_to_a_connection_without_a_file(api, stack):
    where = api.get(WELL_KNOWN_PATH).json()["socket"]
    (told,) = _ask(where, None, {"path": WELL_KNOWN_PATH, "query": {}, "headers": {},
                                 "into": None})
    assert told["status"] == 200, told
    assert json.loads(told["body"]) == {"socket": where,
                                        "server": stack.url.split("://", 1)[1]}
    assert local_transfer.discover(stack.url) == where
    assert local_transfer.discover(stack.url.replace("127.0.0.1", "localhost")) == where
    assert local_transfer.discover("http://127.0.0.1:1") is None       # no server of it
    assert local_transfer.discover("http://192.0.2.1:" + stack.url.rsplit(":", 1)[1]) is None


def test_only_its_server_s_socket_in_a_private_folder_is_taken(tmp_path, monkeypatch):
    """Among this user's sockets: not one left by a killed server, not another server's,
    not anything in a folder others may write into."""
    monkeypatch.setattr(local_transfer.tempfile, "gettempdir", lambda: str(tmp_path))
    folder = tmp_path / f"cloudstrype-{os.getuid()}"
    folder.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(folder / "a-stale.sock"))
    stale.close()                               # the file stays; nobody listens

    def answering(name: str, server: str) -> socket.socket:
        def tell(connection: socket.socket) -> None:
            with connection:
                connection.recv(65536)
                body = json.dumps({"socket": str(folder / name), "server": server})
                connection.sendall(json.dumps({"status": 200, "headers": {},
                                               "body": body}).encode() + b"\n")

        return _fake_socket(folder / name, tell)

    listeners = [answering("b-other.sock", "127.0.0.1:5001"),
                 answering("c-ours.sock", "127.0.0.1:5002"),
                 # The same port on ::1 and on 127.0.0.1: two servers (review sweep: the port
                 # alone took the ::1 one's socket for 127.0.0.1, and sent it the token).
                 answering("d-v6.sock", "::1:5004"), answering("e-v4.sock", "127.0.0.1:5004"),
                 answering("f-any.sock", "0.0.0.0:5005")]
    try:
        assert local_transfer.discover("http://127.0.0.1:5002") == str(folder / "c-ours.sock")
        assert local_transfer.discover("http://localhost:5002") == str(folder / "c-ours.sock")
        assert local_transfer.discover("http://[::1]:5002") is None
        assert local_transfer.discover("http://127.0.0.1:5003") is None
        assert local_transfer.discover("http://[::1]:5004") == str(folder / "d-v6.sock")
        assert local_transfer.discover("http://127.0.0.1:5004") == str(folder / "e-v4.sock")
        assert local_transfer.discover("http://localhost:5004") is None      # which one?
        assert local_transfer.discover("http://127.0.0.1:5005") == str(folder / "f-any.sock")
        folder.chmod(0o770)
        assert local_transfer.discover("http://127.0.0.1:5002") is None
    finally:
        for listener in listeners:
            listener.close()


def test_a_connection_the_server_closed_is_replaced_before_http_is_used(api, stack, cli_user):
    client = Client(stack.url, token=cli_user.access_token)
    first = client.get_json("/api/filesystem/usage")
    channel = client._local.channel
    assert channel is not None                  # it went through the socket
    channel.sock.shutdown(socket.SHUT_RDWR)     # as the server does after a minute idle
    again = client.get_json("/api/filesystem/usage")
    assert again == first
    assert client._local.channel is not None and client._local.channel is not channel


def test_a_server_that_does_not_answer_on_its_socket_fails_as_a_timeout_does(tmp_path,
                                                                            monkeypatch):
    """One that answers who it is, then nothing: each try waits its timeout once, as over
    HTTP, and the command says "no answer in time" (review sweep: a timeout was tried on a new
    connection, then over HTTP, three times the wait)."""
    monkeypatch.setattr(local_transfer.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(api_module, "READ_TIMEOUT", 0.3)
    monkeypatch.setattr(Client, "backoff", lambda self, attempt, retry_after=None: None)
    folder = tmp_path / f"cloudstrype-{os.getuid()}"
    folder.mkdir(mode=0o700)
    where = folder / "stalled.sock"
    asked: list[dict] = []
    held: list[socket.socket] = []

    def serve(connection: socket.socket) -> None:
        line = json.loads(connection.recv(65536).split(b"\n")[0])
        asked.append(line)
        if line["path"] == WELL_KNOWN_PATH:
            body = json.dumps({"socket": str(where), "server": "127.0.0.1:1"})
            connection.sendall(json.dumps({"status": 200, "headers": {},
                                           "body": body}).encode() + b"\n")
            connection.close()
        else:
            held.append(connection)         # left open, never answered

    listener = _fake_socket(where, serve)
    try:
        client = Client("http://127.0.0.1:1", token="t", retries=1)
        started = time.monotonic()
        with pytest.raises(CliError, match="no answer in time") as failed:
            client.get_json("/api/filesystem/usage")
        took = time.monotonic() - started
    finally:
        listener.close()
    assert failed.value.exit_code == UNREACHABLE
    assert [a["path"] for a in asked].count("/api/filesystem/usage") == 2   # 2 tries, no more
    assert took < 2.0, took


def test_an_answer_too_long_for_the_socket_goes_over_http_at_once(api, stack, cli_user,
                                                                 monkeypatch):
    client = Client(stack.url, token=cli_user.access_token)
    expected = client.get_json("/api/filesystem/usage")
    assert client._local.channel is not None
    monkeypatch.setattr(local_transfer, "ANSWER_MAX_BYTES", 20)
    sent = []
    real_get = local_transfer.Channel.get

    def counted(self, *args, **kwargs):
        sent.append(args[0])
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(local_transfer.Channel, "get", counted)
    assert client.get_json("/api/filesystem/usage") == expected      # over HTTP
    assert sent == ["/api/filesystem/usage"]       # one try on the socket, not a second
    assert client._local.channel is None           # out of step: closed


def test_a_get_whose_answer_is_not_text_goes_over_http(api, stack, cli_user):
    """The socket sends back text only; a plain GET of bytes (a small file's content) is
    asked over HTTP instead of failing with the socket's 400."""
    data = bytes(range(256)) * 4
    directory = f"/nt-{uuid.uuid4().hex[:8]}"
    made = cli_user.api.post("/api/filesystem/data", data={"path": directory, "name": "bin.dat"},
                             files={"file": ("bin.dat", data)})
    assert made.status_code == 201, made.text
    node_id = cli_user.api.get("/api/filesystem/info",
                               params={"path": f"{directory}/bin.dat"}).json()["id"]
    client = Client(stack.url, token=cli_user.access_token)
    answer = client.request("GET", f"/api/filesystem/data/{node_id}")
    assert answer.content == data


def test_a_command_looks_for_its_server_s_socket_once(api, stack, cli_user, monkeypatch):
    """Its GETs and its download use the same socket, found by asking the user's sockets
    once (each ask connects to every socket in the folder)."""
    asked = []
    real_discover = local_transfer.discover
    monkeypatch.setattr(local_transfer, "discover",
                        lambda server: asked.append(server) or real_discover(server))
    client = Client(stack.url, token=cli_user.access_token)
    client.get_json("/api/filesystem/usage")
    where = api.get(WELL_KNOWN_PATH).json()["socket"]
    assert client.transfer_socket() == where
    client.get_json("/api/filesystem/usage")
    assert asked == [stack.url]
