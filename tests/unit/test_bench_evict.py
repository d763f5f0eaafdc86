"""The e2e benchmark's second download is read from disk by both sides: `_evict` drops every
stored file under the folders it is given from the page cache, and nothing else."""
import os

import pytest

from bench import e2e

pytestmark = pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"),
                                reason="needs Linux's RWF_NOWAIT to see the page cache")


def _cached(path) -> bool:
    """Whether the file's first page is in the page cache: a read that must not wait for the
    disk (RWF_NOWAIT) fails otherwise."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.preadv(fd, [bytearray(4096)], 0, os.RWF_NOWAIT) > 0
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_evict_drops_the_stored_files_of_the_folders_given(tmp_path):
    stored, other = tmp_path / "store" / "a" / "b", tmp_path / "elsewhere"
    stored.mkdir(parents=True)
    other.mkdir()
    for folder in (stored, other):
        (folder / "share").write_bytes(os.urandom(256 * 1024))
    assert _cached(stored / "share") and _cached(other / "share")
    e2e._evict([tmp_path / "store", tmp_path / "missing"])
    assert not _cached(stored / "share")
    assert _cached(other / "share")
    assert (stored / "share").stat().st_size == 256 * 1024
