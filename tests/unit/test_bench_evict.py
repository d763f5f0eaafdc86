"""The e2e benchmark's second download is read from disk by both sides: `_evict` asks the kernel
to drop every stored file under the folders it is given from the page cache, after writing back,
and touches nothing else.

Whether the kernel then drops the pages depends on the filesystem (tmpfs and some overlay
filesystems keep them), so the test watches what `_evict` asks for, not the page cache."""
import os

from bench import e2e


def test_evict_writes_back_then_drops_only_the_stored_files_of_the_folders_given(tmp_path,
                                                                                monkeypatch):
    stored, other = tmp_path / "store" / "a" / "b", tmp_path / "elsewhere"
    stored.mkdir(parents=True)
    other.mkdir()
    for folder in (stored, other):
        (folder / "share").write_bytes(os.urandom(64 * 1024))
    (tmp_path / "store" / "top").write_bytes(b"x")
    calls: list[tuple] = []
    open_paths: dict[int, str] = {}
    real_open = os.open

    def recording_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        open_paths[fd] = str(path)
        return fd

    monkeypatch.setattr(os, "sync", lambda: calls.append(("sync",)))
    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "posix_fadvise",
                        lambda fd, offset, length, advice:
                        calls.append(("fadvise", open_paths[fd], offset, length, advice)))
    e2e._evict([tmp_path / "store", tmp_path / "missing"])
    assert calls[0] == ("sync",)
    advised = sorted(call[1:] for call in calls[1:])
    assert advised == sorted([(str(stored / "share"), 0, 0, os.POSIX_FADV_DONTNEED),
                              (str(tmp_path / "store" / "top"), 0, 0, os.POSIX_FADV_DONTNEED)])
    assert (stored / "share").stat().st_size == 64 * 1024
