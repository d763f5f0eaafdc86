"""`cloudstrype get` of a large file checks the sha256 as the ranges arrive (no second read of the
file): right bytes are kept whatever the number of parallel ranges, and a file whose bytes do not
match its recorded sha256 is refused with nothing written. Both ways a large file comes: written
by the server on this machine into the file (local_transfer.py), and over HTTP."""
from __future__ import annotations

import hashlib
import os
import uuid

import pytest

MiB = 1024 * 1024
# The CLI's environment for each way.
TRANSPORTS = {"local-socket": {}, "http": {"CLOUDSTRYPE_LOCAL_TRANSFER": "off"}}


def _upload_with_declared_sha256(user, directory: str, name: str, data: bytes,
                                 sha256: str) -> None:
    """An upload session through the API; the server records the client's declared sha256
    (it never holds every byte at once to check it)."""
    session = user.api.post("/api/filesystem/uploads", json={
        "path": directory, "name": name, "size": len(data), "sha256": sha256})
    assert session.status_code == 201, session.text
    upload_id, part_size = session.json()["upload_id"], session.json()["part_size"]
    for n, first in enumerate(range(0, len(data), part_size)):
        part = user.api.put(f"/api/filesystem/uploads/{upload_id}/parts/{n}",
                            data=data[first:first + part_size],
                            headers={"Content-Type": "application/octet-stream"})
        assert part.status_code == 200, part.text
    committed = user.api.post(f"/api/filesystem/uploads/{upload_id}/commit")
    assert committed.status_code == 201, committed.text


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_large_get_with_fewer_jobs_than_ranges_is_byte_identical(cli, cli_user, tmp_path,
                                                                  transport):
    # 5 ranges through one job: the window (2) refills as the oldest range is hashed.
    data = os.urandom(18 * MiB + 5)
    directory = f"/dl-{uuid.uuid4().hex[:8]}"
    _upload_with_declared_sha256(cli_user, directory, "big.bin", data,
                                 hashlib.sha256(data).hexdigest())

    cli.ok("get", "-q", "-j", "1", f"{directory}/big.bin", str(tmp_path / "got.bin"),
           env=TRANSPORTS[transport])

    assert (tmp_path / "got.bin").read_bytes() == data


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_large_file_whose_bytes_do_not_match_its_sha256_is_refused(cli, cli_user, tmp_path,
                                                                     transport):
    data = os.urandom(9 * MiB)
    directory = f"/dl-{uuid.uuid4().hex[:8]}"
    _upload_with_declared_sha256(cli_user, directory, "liar.bin", data,
                                 hashlib.sha256(b"other bytes").hexdigest())

    done = cli.run("get", "-q", f"{directory}/liar.bin", str(tmp_path / "liar.bin"),
                   env=TRANSPORTS[transport])

    assert done.returncode == 1, done.stderr
    assert "do not match the file's sha256" in done.stderr
    assert list(tmp_path.iterdir()) == []     # neither the file nor a temporary one
