"""A download whose local write fails names the local file (the disk that is full), not only
the remote one: "get: /s1/big.bin: No space left on device" sent the user looking at the
server (disk sweep). A unit test: the download's own work is a stand-in that fails as a full
disk does."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest
from cloudstrype_client import transfer


def test_a_full_local_disk_is_said_with_the_file_being_written(monkeypatch, tmp_path):
    downloader = transfer.Downloader.__new__(transfer.Downloader)

    def full(_item):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(downloader, "_download_once", full)
    item = transfer.Download(node={"id": "x", "size": 1}, target=tmp_path / "big.bin",
                             remote="/s1/big.bin")
    with pytest.raises(OSError) as raised:
        downloader.download(item)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(Path(tmp_path / "big.bin"))
    assert transfer._describe_failure(raised.value) == \
        f"No space left on device: {tmp_path / 'big.bin'}"
