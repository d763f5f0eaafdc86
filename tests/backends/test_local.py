"""The local directory backend: round trips, key safety, atomic writes, capacity."""
from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
from cloudstrype.backends import local as local_module
from cloudstrype.backends.base import BackendAuthError, BackendError, BackendFull, ShareNotFound
from cloudstrype.backends.local import TEMP_PREFIX, LocalBackend


@pytest.fixture
def root(tmp_path):
    return tmp_path / "shares"


@pytest.fixture
def backend(root):
    return LocalBackend(root)


@pytest.mark.parametrize("size", [0, 1, 1024 * 1024 + 3], ids=["0B", "1B", "1MiB"])
def test_put_get_exists_delete_round_trip(backend, root, size):
    data = os.urandom(size)

    backend.put("share-1", data)

    assert backend.exists("share-1")
    assert backend.get("share-1") == data
    assert (root / "share-1").read_bytes() == data
    backend.delete("share-1")
    assert not backend.exists("share-1")
    with pytest.raises(ShareNotFound):
        backend.get("share-1")


def test_the_directory_is_created(root):
    LocalBackend(root / "deeper")
    assert (root / "deeper").is_dir()


def test_put_replaces_an_existing_share(backend):
    backend.put("k", b"old contents")
    backend.put("k", b"new")
    assert backend.get("k") == b"new"


def test_delete_of_a_missing_share_is_not_an_error(backend):
    backend.delete("never-written")
    assert not backend.exists("never-written")


def test_a_folder_made_where_a_share_was_is_no_share_and_is_left_alone(backend, root):
    # Deleting it answers "no such share" (done, as for a missing one), never an error the
    # scrub retries for ever, and what the folder holds is not touched.
    backend.put("k", b"share")
    (root / "k").unlink()
    (root / "k").mkdir()
    (root / "k" / "theirs.txt").write_text("not ours")
    with pytest.raises(ShareNotFound):
        backend.delete("k")
    assert (root / "k" / "theirs.txt").read_text() == "not ours"


@pytest.mark.parametrize("key", ["../outside", "..", ".", "a/b", "/etc/passwd", "a\\b", "",
                                 "x" * 201, "nul\x00", "é"])
def test_keys_that_could_leave_the_directory_are_refused(backend, tmp_path, key):
    for operation in (lambda: backend.put(key, b"x"), lambda: backend.get(key),
                      lambda: backend.exists(key), lambda: backend.delete(key)):
        with pytest.raises(ValueError, match="invalid share key"):
            operation()
    assert not (tmp_path / "outside").exists()


def test_a_failed_write_leaves_neither_a_partial_share_nor_a_temporary_file(
        backend, root, monkeypatch):
    backend.put("k", b"complete old share")

    def fail_fsync(fd):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(local_module.os, "fsync", fail_fsync)

    with pytest.raises(BackendError, match="Input/output error"):
        backend.put("k", b"new share that never lands")
    with pytest.raises(BackendError):
        backend.put("fresh", b"never visible")

    monkeypatch.undo()
    assert backend.get("k") == b"complete old share"
    assert not backend.exists("fresh")
    assert sorted(p.name for p in root.iterdir()) == ["k"]


def test_a_write_interrupted_before_the_rename_is_invisible(backend, root, monkeypatch):
    seen_during_write = []

    def replace_after_looking(src, dst):
        # At this moment the bytes are written and synced, but only under the temporary name.
        seen_during_write.append((backend.exists("k"), os.path.basename(src)))
        raise KeyboardInterrupt
    monkeypatch.setattr(local_module.os, "replace", replace_after_looking)

    with pytest.raises(KeyboardInterrupt):
        backend.put("k", b"data")

    assert seen_during_write[0][0] is False
    assert seen_during_write[0][1].startswith(TEMP_PREFIX)
    assert list(root.iterdir()) == []


def test_stale_temporary_files_are_removed_when_the_backend_opens(root):
    root.mkdir()
    stale, recent = root / f"{TEMP_PREFIX}dead", root / f"{TEMP_PREFIX}busy"
    stale.write_bytes(b"left by a crash")
    recent.write_bytes(b"another process is writing")
    old = time.time() - 2 * local_module.STALE_TEMP_SECONDS
    os.utime(stale, (old, old))
    # A link of that name is not a temporary file of ours: neither it nor what it names goes.
    elsewhere = root.parent / "not-a-share"
    elsewhere.write_bytes(b"someone's")
    os.utime(elsewhere, (old, old))
    (root / f"{TEMP_PREFIX}link").symlink_to(elsewhere)

    LocalBackend(root)

    assert not stale.exists()
    assert recent.exists()
    assert (root / f"{TEMP_PREFIX}link").is_symlink() and elsewhere.exists()


def test_usage_counts_the_bytes_in_the_directory(backend):
    backend.put("a", b"x" * 100)
    backend.put("b", b"y" * 50)

    usage = backend.usage()

    assert usage.used == 150
    # Without a configured capacity, what is left is the filesystem's free space.
    free_now = shutil.disk_usage(backend.root).free
    assert abs(usage.free - free_now) < 64 * 1024 * 1024


def test_a_filesystem_out_of_inodes_has_no_room(backend, monkeypatch):
    """Out of inodes, a storage showed its free bytes while every write failed "No space
    left on device" (disk sweep): no file can be written, so it has no room."""
    backend.put("a", b"x" * 100)
    real = os.statvfs(backend.root)
    fields = {name: getattr(real, name) for name in dir(real) if name.startswith("f_")}
    out_of_inodes = type("StatVfs", (), {**fields, "f_favail": 0, "f_ffree": 0})()
    monkeypatch.setattr(os, "statvfs", lambda _path: out_of_inodes)
    usage = backend.usage()
    assert usage.used == 100 and usage.free == 0


def test_a_configured_capacity_is_reported_and_enforced(root):
    backend = LocalBackend(root, capacity_bytes=1000)
    backend.put("a", b"x" * 600)
    backend.put("a", b"x" * 900)   # replacing counts the new size, not both

    with pytest.raises(BackendFull, match="1000"):
        backend.put("b", b"y" * 200)

    usage = backend.usage()
    assert (usage.used, usage.capacity, usage.free) == (900, 1000, 100)
    assert not backend.exists("b")


@pytest.mark.parametrize("errno_value, strerror, error_type", [
    (28, "No space left on device", BackendFull),
    (122, "Disk quota exceeded", BackendFull),
    (13, "Permission denied", BackendAuthError),
    (30, "Read-only file system", BackendError),
])
def test_os_errors_map_to_backend_errors(backend, monkeypatch, errno_value, strerror, error_type):
    def failing_mkstemp(*args, **kwargs):
        raise OSError(errno_value, strerror)
    monkeypatch.setattr(local_module.tempfile, "mkstemp", failing_mkstemp)

    with pytest.raises(error_type, match=strerror) as raised:
        backend.put("k", b"data")
    assert type(raised.value) is error_type


@pytest.mark.parametrize("kind", ["fifo", "directory", "link out", "link inside"])
def test_only_a_regular_file_in_the_folder_is_read_as_a_share(backend, root, tmp_path, kind):
    """A FIFO put in a share's place held the reading thread for ever (waiting for a writer);
    a link was followed out of the folder. Each is no share (the scrub repairs it), at once,
    and a repair's write replaces it."""
    backend.put("other", b"another share")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not the storage's")
    place = root / "k"
    {"fifo": lambda: os.mkfifo(place), "directory": place.mkdir,
     "link out": lambda: place.symlink_to(outside),
     "link inside": lambda: place.symlink_to(root / "other")}[kind]()
    started = time.monotonic()
    for read in (lambda: backend.get("k"), lambda: backend.get_range("k", 0, 4)):
        with pytest.raises(ShareNotFound, match="not a share"):
            read()
    assert time.monotonic() - started < 5
    assert not backend.exists("k")
    if kind != "directory":
        backend.put("k", b"repaired")
        assert backend.get("k") == b"repaired" and outside.read_bytes() == b"not the storage's"


def test_a_negative_capacity_is_refused(root):
    with pytest.raises(ValueError):
        LocalBackend(root, capacity_bytes=-1)


def test_concurrent_writes_share_directory_syncs_and_each_waits_for_one_after_its_rename(
        backend, monkeypatch):
    events: list[tuple] = []
    lock = threading.Lock()

    def log(*event):
        with lock:
            events.append(event)

    real_replace, real_sync = os.replace, local_module._fsync_directory

    def replace(src, dst):
        real_replace(src, dst)
        log("renamed", os.path.basename(dst))

    def slow_sync(directory):
        log("sync-start")
        time.sleep(0.02)          # a slow disk: writers arriving meanwhile queue up
        real_sync(directory)
        log("sync-end")
    monkeypatch.setattr(local_module.os, "replace", replace)
    monkeypatch.setattr(local_module, "_fsync_directory", slow_sync)

    start = threading.Barrier(8)

    def write(n):
        start.wait()
        backend.put(f"k{n}", b"share %d" % n)
        log("returned", f"k{n}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for n in range(8):
        assert backend.get(f"k{n}") == b"share %d" % n
        renamed = events.index(("renamed", f"k{n}"))
        returned = events.index(("returned", f"k{n}"))
        # A sync that started after the rename ended before the put returned.
        starts = [i for i, e in enumerate(events) if e == ("sync-start",) and i > renamed]
        assert starts, f"k{n} returned without a directory sync after its rename"
        end = next(i for i, e in enumerate(events) if e == ("sync-end",) and i > starts[0])
        assert end < returned
    syncs = events.count(("sync-start",))
    assert 1 <= syncs < 8
    # Never two syncs of the directory at once.
    running = 0
    for event in events:
        running += {("sync-start",): 1, ("sync-end",): -1}.get(event, 0)
        assert running <= 1


def test_shares_written_or_streamed_through_leave_the_page_cache_but_small_reads_stay(
        backend, monkeypatch):
    # The kernel is told it may drop a share's pages once they are fsynced, and after a read of
    # a streaming size; a packed file's small ranged read keeps its pages for its neighbours.
    advice: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def record(fd, offset, length, what):
        advice.append((offset, length, what))
        real(fd, offset, length, what)

    monkeypatch.setattr(os, "posix_fadvise", record)
    big = os.urandom(local_module.STREAMING_READ + 5)
    backend.put("big", big)
    assert advice == [(0, 0, os.POSIX_FADV_DONTNEED)]

    advice.clear()
    assert backend.get("big") == big
    assert backend.get_range("big", 3, local_module.STREAMING_READ) == big[3:3 + len(big) - 5]
    assert advice == [(0, len(big), os.POSIX_FADV_DONTNEED),
                      (3, local_module.STREAMING_READ, os.POSIX_FADV_DONTNEED)]

    advice.clear()
    backend.put("small", b"x" * 4096)
    advice.clear()
    assert backend.get("small") == b"x" * 4096
    assert backend.get_range("big", 10, 4096) == big[10:4106]
    assert advice == []
