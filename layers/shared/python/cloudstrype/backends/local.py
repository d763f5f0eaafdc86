"""A directory on the server as a backend: the `local` storage type of the local stack."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .base import (
    Backend,
    BackendAuthError,
    BackendError,
    BackendFull,
    ShareNotFound,
    ShareUnreadable,
    Usage,
    check_range,
)
from .keys import check_key

# Marks a directory as one storage's (written by the storages service when it claims it); not a
# share, so not counted in `used`.
MARKER = ".cloudstrype-storage"
# "~" is not a key character, so a temporary file can never be mistaken for a share.
TEMP_PREFIX = "~tmp-"
# Reads of at least this many bytes are a file streaming through, not left in the page cache.
STREAMING_READ = 1024 * 1024
# A temporary file this old was left by a process that died mid-write.
STALE_TEMP_SECONDS = 3600


class LocalBackend(Backend):
    """Each share is one file directly under `root_dir`, named by its key.

    Writes are atomic: the bytes go to a temporary file in the same directory, are fsynced,
    and are renamed over the key, so a reader sees the old share or the new one, never a part.
    """

    kind = "local"

    def __init__(self, root_dir: str | os.PathLike, capacity_bytes: int | None = None,
                 storage_id: str | None = None):
        """`storage_id`: the storage whose folder this is (the storages service claimed it with
        a MARKER naming it). Every operation then first checks that the marker is there and
        names it, and the folder is never created: a disk that is not mounted leaves an empty
        mount point, a folder moved away leaves nothing, another storage's folder swapped in
        names another storage — its shares are then unreachable (BackendError), never "not
        found", so nothing is taken for lost and rebuilt elsewhere while they wait on a disk
        that comes back. Without it (tests, tools) the folder is made if missing."""
        if capacity_bytes is not None and capacity_bytes < 0:
            raise ValueError("capacity_bytes must be a positive number of bytes or None")
        self.root = Path(root_dir)
        self.capacity_bytes = capacity_bytes
        self.storage_id = storage_id
        self._marker_seen: tuple[int, int] | None = None    # (device, inode) found naming it
        if storage_id is None:
            with _os_errors(f"create the directory {self.root}"):
                self.root.mkdir(parents=True, exist_ok=True)
        else:
            try:
                self._check_home()
            except BackendError:
                return          # each operation says so; opening it is not one
        self._remove_stale_temp_files()

    def _check_home(self) -> None:
        """Raise BackendError unless the folder is still this storage's (see __init__)."""
        if self.storage_id is None:
            return
        marker = self.root / MARKER
        try:
            found = os.stat(marker, follow_symlinks=False)
            if self._marker_seen == (found.st_dev, found.st_ino):
                return
            named = json.loads(marker.read_text()).get("storage_id")
        except PermissionError as exc:
            # Said as it is: "its marker is missing" sent the owner looking for a disk not
            # mounted when the folder's permissions had been taken away.
            raise BackendError(
                f"{self.root} cannot be read by the server ({exc.strerror}): give the server's "
                f"user access to the folder again. Its shares are waited for, not taken for "
                f"lost.") from None
        except (OSError, ValueError, AttributeError):
            named, found = None, None
        if found is None or named != self.storage_id:
            state = "is missing" if found is None else "names another storage"
            raise BackendError(
                f"{self.root} is not this storage's folder now: its {MARKER} file {state} (a "
                f"disk that is not mounted, a folder moved, emptied or swapped). Put the folder "
                f"back: its shares are waited for, not taken for lost. To rebuild them on your "
                f"other storages instead, drain this one.")
        self._marker_seen = (found.st_dev, found.st_ino)

    def put(self, key: str, data: bytes) -> None:
        self._check_home()
        path = self._path(key)
        with _os_errors(f"write {key}"):
            if self.capacity_bytes is not None:
                used_after = self._used_bytes() - _size_or_zero(path) + len(data)
                if used_after > self.capacity_bytes:
                    raise BackendFull(
                        f"{self.root}: writing {len(data)} bytes would use {used_after} of the "
                        f"{self.capacity_bytes} bytes configured for this storage"
                    )
            fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.root)
            try:
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                    _drop_cached(fd)
                finally:
                    os.close(fd)
                os.replace(temp_name, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp_name)
                raise
            _directory_sync(self.root).sync()

    def get(self, key: str) -> bytes:
        self._check_home()
        path = self._path(key)
        with _os_errors(f"read {key}"):
            with self._open_share(path, key) as share:
                return _read_through(share, 0, None)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        self._check_home()
        path = self._path(key)
        with _os_errors(f"read {key}"):
            with self._open_share(path, key) as share:
                return _read_through(share, start, length)

    def local_file(self, key: str) -> str | None:
        try:
            self._check_home()      # a folder no longer this storage's: the server reads
        except BackendError:        # (and reports) it, not a reader on its own
            return None
        return str(self._path(key))

    def delete(self, key: str) -> None:
        self._check_home()
        path = self._path(key)
        with _os_errors(f"delete {key}"), contextlib.suppress(FileNotFoundError):
            try:
                path.unlink()
            except IsADirectoryError:
                # A folder made where the share was is not the share: the share is gone, and
                # the folder (not ours) stays.
                raise ShareNotFound(f"{self.root}: {key} is a folder, not a share") from None

    def exists(self, key: str) -> bool:
        self._check_home()
        path = self._path(key)
        with _os_errors(f"look up {key}"):
            try:        # as _open_share reads it: a regular file, not a link
                return stat.S_ISREG(os.lstat(path).st_mode)
            except FileNotFoundError:
                return False

    def usage(self) -> Usage:
        """`used` is the bytes of the files in the directory; `capacity` is the configured one,
        else those bytes plus the filesystem's free space (so `Usage.free` is what can still be
        written, even when other data shares the filesystem)."""
        self._check_home()
        with _os_errors("measure the directory"):
            used = self._used_bytes()
            if self.capacity_bytes is not None:
                return Usage(used=used, capacity=self.capacity_bytes)
            found = os.statvfs(self.root)
            free = found.f_bavail * found.f_frsize
            if found.f_files and not found.f_favail:
                # Out of inodes: no share can be written, whatever bytes are free (it showed
                # 300 MiB free while every write failed "No space left on device").
                free = 0
            return Usage(used=used, capacity=used + free)

    def _open_share(self, path: Path, key: str):
        """The share's file, opened to read: a regular file in the folder, never a link out of
        it nor a FIFO or device put in its place (a read of a FIFO waited for a writer for
        ever, holding a server thread). Anything else is no share: it is repaired."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise ShareNotFound(f"{self.root}: no share {key}") from None
        except PermissionError as exc:
            # One file's permissions: that share is lost to the server (and rebuilt), not its
            # whole storage down (the folder itself was checked just before).
            raise ShareUnreadable(f"{self.root}: {key} cannot be read by the server "
                                  f"({exc.strerror})") from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise ShareNotFound(f"{self.root}: {key} is a symbolic link, not a share") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ShareNotFound(f"{self.root}: {key} is not a regular file, not a share")
        return os.fdopen(fd, "rb")

    def _path(self, key: str) -> Path:
        # check_key admits no "/" and no "." or "..", so the path cannot leave the root.
        return self.root / check_key(key)

    def _used_bytes(self) -> int:
        total = 0
        with os.scandir(self.root) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):  # deleted while we looked
                    if entry.is_file(follow_symlinks=False) and entry.name != MARKER:
                        total += entry.stat(follow_symlinks=False).st_size
        return total

    def _remove_stale_temp_files(self) -> None:
        remove_temp_files(self.root, older_than=STALE_TEMP_SECONDS)


def remove_temp_files(root: Path, older_than: float | None = None) -> None:
    """Remove the temporary files of share writes in the storage folder `root` (regular files
    named TEMP_PREFIX…, never through a link): those not written for `older_than` seconds
    (writes a stopped server left), or all (None: the folder is no storage's any more)."""
    cutoff = None if older_than is None else time.time() - older_than
    for temp_path in root.glob(TEMP_PREFIX + "*"):
        with contextlib.suppress(OSError):
            found = temp_path.lstat()
            if stat.S_ISREG(found.st_mode) and (cutoff is None or found.st_mtime < cutoff):
                temp_path.unlink()


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _drop_cached(fd: int, start: int = 0, length: int = 0) -> None:
    """Let the kernel drop a share's pages (`length` 0: to the end) from its cache once they
    are on disk. A share is written once and read seldom, a whole one when a file streams
    through: kept cached, every byte that passes holds a page of memory until the kernel must
    evict it, and the next write or read takes new pages instead of the ones just freed
    (rclone's local backend does the same)."""
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)


def _read_through(share, start: int, length: int | None) -> bytes:
    """`length` bytes (None: to the end) from `start`. A read of a streaming size leaves the
    cache as it found it; a small one (a packed file) stays cached for its neighbours."""
    share.seek(start)
    data = share.read() if length is None else share.read(length)
    if len(data) >= STREAMING_READ:
        _drop_cached(share.fileno(), start, len(data))
    return data


def _fsync_directory(directory: Path) -> None:
    # Makes a rename in it durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DirectorySync:
    """The fsync of one directory, shared by the writers renaming into it at the same time.

    A sync that starts after a writer's rename makes that rename durable, so writers that
    arrive while one runs wait for it to end and then share a single next one, instead of
    each forcing its own journal commit."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._changed = threading.Condition()
        self._requested = 0         # tickets handed out, one per rename to make durable
        self._synced = 0            # every ticket up to this one is durable
        self._running = False

    def sync(self) -> None:
        """Return once a directory fsync that started after this call has finished."""
        with self._changed:
            self._requested += 1
            ticket = self._requested
            while self._synced < ticket:
                if self._running:
                    self._changed.wait()
                    continue
                self._running, covers, done = True, self._requested, False
                self._changed.release()
                try:
                    _fsync_directory(self.directory)
                    done = True
                finally:
                    self._changed.acquire()
                    self._running = False
                    if done:
                        self._synced = max(self._synced, covers)
                    self._changed.notify_all()


_syncs: dict[str, DirectorySync] = {}
_syncs_lock = threading.Lock()


def _directory_sync(directory: Path) -> DirectorySync:
    """One DirectorySync per directory, whichever backend object writes into it."""
    key = os.path.abspath(directory)
    with _syncs_lock:
        found = _syncs.get(key)
        if found is None:
            found = _syncs[key] = DirectorySync(directory)
        return found


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@contextlib.contextmanager
def _os_errors(action: str) -> Iterator[None]:
    """Turn OSError into the backend errors (callers catch FileNotFoundError first where a
    missing file means a missing share)."""
    try:
        yield
    except OSError as exc:
        message = f"could not {action}: {exc.strerror or exc}"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BackendFull(message) from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise BackendAuthError(message) from exc
        raise BackendError(message) from exc
