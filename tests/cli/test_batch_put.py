"""`cloudstrype put` of a folder sends its small files in batches (POST /api/filesystem/batch):
they read back byte for byte, are packed (few share files on the storages), keep their
modification times so a second put skips them, and a file the server refuses fails alone."""
from __future__ import annotations

import hashlib
import os
import random
import re
import uuid
from pathlib import Path

import pytest
from cloudstrype import limits

from tests.cli.conftest import Cli, add_local_storages
from tests.foundation.test_gateway import _js_constant
from tests.support import register_and_login

KiB = 1024
MiB = 1024 * 1024


def _counts(output: str) -> tuple[int, int, int]:
    match = re.search(r"put: (\d+) sent, (\d+) skipped \(unchanged\), (\d+) failed", output)
    assert match, output
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _share_files(disks: list[Path]) -> int:
    return sum(1 for d in disks if d.exists() for p in d.rglob("*")
               if p.is_file() and not p.name.startswith((".", "~")))


def test_the_clients_batch_limits_match_the_server():
    from cloudstrype.pipeline import packs
    from cloudstrype.tree import files
    from cloudstrype_client import transfer
    assert transfer.BATCH_FILE_MAX == packs.PACK_THRESHOLD
    assert transfer.BATCH_MAX_FILES == files.MAX_BATCH_FILES
    assert transfer.BATCH_MAX_BYTES <= limits.ONE_SHOT_MAX_BYTES
    assert _js_constant("web/js/transfers.js", "BATCH_FILE_MAX") == packs.PACK_THRESHOLD
    assert _js_constant("web/js/transfers.js", "BATCH_MAX_FILES") == files.MAX_BATCH_FILES
    assert _js_constant("web/js/transfers.js", "BATCH_MAX_BYTES") <= limits.ONE_SHOT_MAX_BYTES


@pytest.fixture
def packer(api, stack, tmp_path):
    """A desktop home logged in as a fresh user with three storages and raid1(2)."""
    user = register_and_login(api)
    disks_root = tmp_path / "disks"
    add_local_storages(user, disks_root)
    assert user.api.put("/api/filesystem/settings",
                        json={"durability": "raid1(2)"}).status_code == 200
    home = Cli(tmp_path / "home", stack.url)
    home.home.mkdir()
    home.login(user)
    return home, [disks_root / f"d{n}" for n in range(3)]


def _tree(top: Path) -> dict[str, bytes]:
    """300 small files (250 at the top, 50 below), 20 of 250 KiB (more than one batch's bytes
    together), one of 600 KiB (alone, one request) and one of 5 MiB (an upload session)."""
    rng = random.Random(13)
    files = {f"s{n:03}.txt": rng.randbytes(rng.randint(1, 4 * KiB)) for n in range(250)}
    files.update({f"sub/t{n:02}.bin": rng.randbytes(rng.randint(1, 4 * KiB)) for n in range(50)})
    files.update({f"mid/m{n:02}.bin": rng.randbytes(250 * KiB) for n in range(20)})
    files["large/six.bin"] = rng.randbytes(600 * KiB)
    files["large/five.bin"] = rng.randbytes(5 * MiB + 7)
    for name, data in files.items():
        path = top / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_a_folder_of_small_files_goes_up_in_packed_batches(packer, tmp_path):
    cli, disks = packer
    top = tmp_path / "many"
    files = _tree(top)
    root = f"/batch-{uuid.uuid4().hex[:8]}"
    first = cli.ok("put", "-j", "4", str(top) + "/", root)
    assert _counts(first.stdout) == (len(files), 0, 0)

    # Every file reads back byte for byte (a listing's sizes, then each file's bytes).
    got = tmp_path / "back"
    cli.ok("get", "-j", "4", root + "/", str(got))
    back = {str(p.relative_to(got)): p.read_bytes() for p in got.rglob("*") if p.is_file()}
    assert back.keys() == files.keys()
    assert all(back[name] == data for name, data in files.items())

    # Packed: without batches each file would be a chunk of its own, two shares each.
    written = _share_files(disks)
    assert written <= 0.05 * len(files) * 2, written

    # Their modification times went with them: a second put skips every file and sends none.
    again = cli.ok("put", "-j", "4", str(top) + "/", root)
    assert _counts(again.stdout) == (0, len(files), 0)
    assert _share_files(disks) == written


def test_a_file_the_server_refuses_fails_alone(packer, tmp_path):
    cli, _ = packer
    top = tmp_path / "mixed"
    top.mkdir()
    for n in range(10):
        (top / f"ok{n}.txt").write_bytes(f"file {n}\n".encode())
    (top / "taken").write_bytes(b"a directory has this name remotely")
    # A name that is not UTF-8 cannot be a remote name: refused here, before any request.
    os.close(os.open(os.fsencode(top) + b"/bad\xff.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    root = f"/refused-{uuid.uuid4().hex[:8]}"
    assert cli.user.api.post("/api/filesystem/dirs",
                             json={"path": f"{root}/taken"}).status_code == 201
    done = cli.run("put", str(top) + "/", root)
    assert done.returncode != 0, done.stderr
    assert "put: 10 sent" in done.stdout, done.stderr
    assert _counts(done.stdout) == (10, 0, 2)
    assert re.search(rf"put: .*taken: {re.escape(root)}/taken: .*director", done.stderr), \
        done.stderr
    assert "UTF-8" in done.stderr, done.stderr
    listing = cli.user.api.get("/api/filesystem/info", params={"path": root}).json()
    children = {c["name"]: c for c in listing["children"]}
    assert sorted(children) == sorted([f"ok{n}.txt" for n in range(10)] + ["taken"])
    assert children["taken"]["type"] == "directory"
    for n in range(10):
        info = cli.user.api.get("/api/filesystem/info",
                                params={"path": f"{root}/ok{n}.txt", "depth": 0}).json()
        assert info["sha256"] == hashlib.sha256(f"file {n}\n".encode()).hexdigest()


def test_a_file_the_server_refuses_as_bad_input_fails_the_put_not_its_usage(packer, tmp_path):
    """Exit 1 (an operation failed), not 2 (usage): the command line was right."""
    cli, _ = packer
    top = tmp_path / "deep"
    deepest = top.joinpath(*[f"l{n}" for n in range(70)])      # past the 64 levels allowed
    deepest.mkdir(parents=True)
    (deepest / "leaf.txt").write_bytes(b"leaf")
    (top / "top.txt").write_bytes(b"top")
    root = f"/deep-{uuid.uuid4().hex[:8]}"
    done = cli.run("put", str(top) + "/", root)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "leaf.txt" in done.stderr and _counts(done.stdout)[0] == 1, done.stderr
    assert cli.run("info", f"{root}/top.txt").returncode == 0


def test_two_files_bound_for_one_remote_path_are_refused_before_anything_is_sent(packer,
                                                                                  tmp_path):
    cli, _ = packer
    for side in ("twoA", "twoB"):
        (tmp_path / side / "sub").mkdir(parents=True)
        (tmp_path / side / "sub" / "same.txt").write_bytes(side.encode())
        (tmp_path / side / "sub" / f"only-{side}.txt").write_bytes(b"x")
    root = f"/twice-{uuid.uuid4().hex[:8]}"
    done = cli.run("put", str(tmp_path / "twoA" / "sub"), str(tmp_path / "twoB" / "sub"),
                   root + "/")
    assert done.returncode == 2, done.stderr
    assert f"twoA/sub/same.txt and {tmp_path}/twoB/sub/same.txt would both be " \
           f"{root}/sub/same.txt" in done.stderr, done.stderr
    assert cli.run("info", root).returncode == 4          # nothing was sent


def test_a_batch_into_a_share_lands_in_the_owners_folder(packer, api, stack, tmp_path):
    owner, _ = packer
    owner.user.api.post("/api/filesystem/dirs", json={"path": "/team"})
    writer_user = register_and_login(api)
    writer = Cli(tmp_path / "writer", stack.url)
    writer.home.mkdir()
    writer.login(writer_user)
    share_id = owner.ok("share", "/team", "--with", writer_user.username,
                        "--write").stdout.strip()
    top = tmp_path / "drop"
    top.mkdir()
    sent = {f"n{n}.txt": f"note {n}\n".encode() for n in range(12)}
    for name, data in sent.items():
        (top / name).write_bytes(data)
    done = writer.ok("put", "--share", share_id, str(top) + "/", "/")
    assert _counts(done.stdout) == (12, 0, 0)
    for name, data in sent.items():
        assert owner.ok("cat", f"/team/{name}", text=False).stdout == data
    # Nothing landed in the writer's own tree.
    mine = writer_user.api.get("/api/filesystem/info", params={"path": "/"}).json()
    assert not [c for c in mine["children"] if c["name"].startswith("n")]
    again = writer.ok("put", "--share", share_id, str(top) + "/", "/")
    assert _counts(again.stdout) == (0, 12, 0)


def test_any_name_goes_up_in_a_batch_as_it_is(packer, tmp_path):
    """Quotes, line breaks, '%22' itself, backslashes and emoji: each file lands under its own
    name and comes back byte for byte (requests wrote '"' as %22, and the server kept it)."""
    cli, _ = packer
    top = tmp_path / "odd"
    top.mkdir()
    names = ['a"b.txt', "new\nline.txt", "cr\rname.txt", "literal%22.txt", "back\\slash.txt",
             "semi;colon=1.txt", "ünï cödé 😀.txt", "plain.txt"]
    for name in names:
        (top / name).write_bytes(name.encode() * 3)
    root = f"/odd-{uuid.uuid4().hex[:8]}"
    done = cli.ok("put", str(top) + "/", root)
    assert _counts(done.stdout) == (len(names), 0, 0)
    listing = cli.user.api.get("/api/filesystem/info", params={"path": root}).json()
    assert sorted(c["name"] for c in listing["children"]) == sorted(names)
    back = tmp_path / "back"
    cli.ok("get", root + "/", str(back))
    assert {p.name: p.read_bytes() for p in back.iterdir()} == \
        {name: name.encode() * 3 for name in names}
    assert _counts(cli.ok("put", str(top) + "/", root).stdout) == (0, len(names), 0)


def test_a_small_file_grown_since_its_folder_was_read_goes_alone_and_its_batch_goes_on(
        packer, tmp_path):
    """Listed as small, it was 5 MiB by the time its batch was read: sent with it, the batch
    was too large for a request and all its files failed."""
    from concurrent.futures import ThreadPoolExecutor

    from cloudstrype_client import transfer
    from cloudstrype_client.api import Client
    from cloudstrype_client.config import UploadState
    from cloudstrype_client.progress import Progress

    cli, _ = packer
    root = f"/grown-{uuid.uuid4().hex[:8]}"
    assert cli.user.api.post("/api/filesystem/dirs", json={"path": root}).status_code == 201
    top = tmp_path / "growing"
    top.mkdir()
    contents, items = {}, []
    for name, size in [(f"small{n}.txt", 100 + n) for n in range(5)] + [("grew.bin", 100)]:
        (top / name).write_bytes(os.urandom(size))
        items.append(transfer.Upload(str(top / name), size, (top / name).stat().st_mtime_ns,
                                     root, name))
    (top / "grew.bin").write_bytes(os.urandom(transfer.BATCH_MAX_BYTES + MiB))
    for name in [item.name for item in items]:
        contents[name] = (top / name).read_bytes()
    with ThreadPoolExecutor(2) as parts:
        uploader = transfer.Uploader(
            Client(cli.server, token=cli.user.access_token),
            Progress("put", sum(len(c) for c in contents.values()), len(items), quiet=True),
            UploadState(tmp_path / "uploads.json"), parts)
        failures = uploader.send_batch(items)

    assert failures == []
    for name, content in contents.items():
        info = cli.user.api.get("/api/filesystem/info",
                                params={"path": f"{root}/{name}", "depth": 0}).json()
        assert (info["size"], info["sha256"]) == (len(content),
                                                  hashlib.sha256(content).hexdigest()), name


def test_a_session_that_cannot_be_recorded_is_freed_and_the_record_file_named(packer, tmp_path):
    """The state file's disk is full: no later run could resume the session, so it is not
    left open, and the error names the file that could not be written, not the one sent."""
    import errno
    from concurrent.futures import ThreadPoolExecutor

    from cloudstrype_client import transfer
    from cloudstrype_client.api import Client
    from cloudstrype_client.config import UploadState
    from cloudstrype_client.errors import CliError
    from cloudstrype_client.progress import Progress

    class FullDisk(UploadState):
        def put(self, key, entry):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    cli, _ = packer
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * MiB))
    item = transfer.Upload(str(big), big.stat().st_size, big.stat().st_mtime_ns, "/", "big.bin")
    state = FullDisk(tmp_path / "uploads.json")
    with ThreadPoolExecutor(2) as parts:
        uploader = transfer.Uploader(Client(cli.server, token=cli.user.access_token),
                                     Progress("put", item.size, 1, quiet=True), state, parts)
        with pytest.raises(CliError) as failed:
            uploader.upload(item)

    assert str(state.path) in failed.value.message and "No space left" in \
        failed.value.message, failed.value.message
    assert str(big) not in failed.value.message
    assert cli.user.api.get("/api/filesystem/uploads").json()["uploads"] == []
    assert cli.user.api.get("/api/filesystem/info",
                            params={"path": "/big.bin"}).status_code == 404
