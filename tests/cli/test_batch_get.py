"""`get` of a folder of small files reads them many to a request (POST /api/filesystem/read),
not two requests per file; each lands byte for byte with its modification time, a file that
cannot be read fails alone, and a server that refuses the route gets one request per file."""
from __future__ import annotations

import os
import random
import re
import uuid

KiB = 1024
READ = r"^/api/filesystem/read$"
DATA = r"^/api/filesystem/data/"
INFO = r"^/api/filesystem/info/[0-9a-f]+$"


def test_the_clients_read_limits_match_the_server():
    from cloudstrype.tree import files
    from cloudstrype_client import transfer
    assert transfer.READ_BATCH_FILE_MAX == files.READ_BATCH_FILE_MAX
    assert transfer.BATCH_MAX_FILES == files.MAX_BATCH_FILES


def _folder(top, count: int) -> dict[str, bytes]:
    rng = random.Random(21)
    files = {f"d{n % 3}/f{n:03}.txt": rng.randbytes(rng.randint(0, 3 * KiB))
             for n in range(count)}
    files["big/alone.bin"] = rng.randbytes(300 * KiB)
    for name, data in files.items():
        path = top / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (1_700_000_000 + len(data), 1_700_000_000 + len(data)))
    return files


def _uploaded(cli, tmp_path, count: int) -> tuple[dict[str, bytes], str]:
    """A folder of `count` small files and one big one, put under a new remote folder."""
    files = _folder(tmp_path / "up", count)
    root = f"/reads-{uuid.uuid4().hex[:8]}"
    cli.ok("put", str(tmp_path / "up") + "/", root)
    return files, root


def _landed(back) -> dict[str, bytes]:
    return {str(p.relative_to(back)): p.read_bytes() for p in back.rglob("*") if p.is_file()}


def test_a_folder_of_small_files_comes_down_many_to_a_request(cli, cli_user, tmp_path, proxy):
    files, root = _uploaded(cli, tmp_path, 700)

    back = tmp_path / "back"
    cli.ok("get", "-j", "4", root + "/", str(back), env=proxy.env(cli_user.access_token))
    got = {str(p.relative_to(back)): p for p in back.rglob("*") if p.is_file()}
    assert got.keys() == files.keys()
    for name, path in got.items():
        assert path.read_bytes() == files[name], name
        assert path.stat().st_mtime == 1_700_000_000 + len(files[name]), name
    # 700 small files (any folders): two batch reads of at most 500; the big one alone (its
    # info, then its bytes); no small file's info.
    assert proxy.count("POST", READ) == 2
    assert proxy.count("GET", DATA) == 1
    assert proxy.count("GET", INFO) == 1


def test_a_file_that_cannot_be_written_fails_alone(cli, cli_user, tmp_path, proxy):
    files, root = _uploaded(cli, tmp_path, 40)
    back = tmp_path / "back"
    (back / "d1" / "f001.txt").mkdir(parents=True)      # a folder where a file must go
    done = cli.run("get", root + "/", str(back), env=proxy.env(cli_user.access_token))
    assert done.returncode != 0
    assert re.search(r"get: .*/d1/f001\.txt: ", done.stderr), done.stderr
    assert "get: 1 of 41 files failed." in done.stderr, done.stderr
    assert _landed(back) == {name: data for name, data in files.items()
                             if name != "d1/f001.txt"}
    assert not list(back.rglob("*cloudstrype-part"))
    assert proxy.count("POST", READ) == 1


def test_a_server_without_batch_reads_gets_a_request_per_file(cli, cli_user, tmp_path, proxy):
    files, root = _uploaded(cli, tmp_path, 30)
    proxy.fail("POST", READ, "status", status=403, times=None)
    back = tmp_path / "back"
    done = cli.run("get", root + "/", str(back), env=proxy.env(cli_user.access_token))
    assert done.returncode == 0, done.stderr
    assert _landed(back) == files
    assert proxy.count("GET", DATA) == len(files)
    assert proxy.count("POST", READ) == 1               # refused once, then file by file
