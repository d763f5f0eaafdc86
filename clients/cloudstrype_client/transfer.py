"""Moving bytes: `put` (uploads), `get` (downloads) and `cat`.

Uploads: small files (at most BATCH_FILE_MAX, the server's pack threshold) bound for the same
remote directory go many to a request (POST /api/filesystem/batch, each with its modification
time), filled up to the server's file-count and size limits, several batches in flight at once;
the server packs them, and its 207 answer fails a file alone (reported by name and counted). A
lone small file in a directory, and any other file of at most 4 MiB, goes in one request (POST
/api/filesystem/data); a bigger one
through an upload session whose 4 MiB parts are sent by a thread pool (``--jobs``), any order,
each retried on transient failures. Several files move at once (another pool of the same size).
The session id is remembered in the config folder under (server, user, local file, size, mtime,
destination), so running the same `put` again after an interruption sends only the parts the
server does not have yet.

Downloads: files up to READ_BATCH_FILE_MAX (the server's pack threshold) many to a request
(POST /api/filesystem/read, which answers each file's size, sha256 and version with its bytes;
what one answer cannot carry is asked for again), each checked, written to a temporary file and
renamed to NAME. A bigger file: its metadata first (size, sha256, version), then its bytes — one
request up to 4 MiB, else 4 MiB ranges of that version into the temporary file, which is checked
against the size and sha256 and only then renamed to NAME. The temporary file is new, made beside
NAME with O_EXCL (never an existing file, never through a symlink) under a short hidden name of its
own (``.XXXXXXXX.cloudstrype-part``, see _new_part), and removed if the file fails. A window of
ranges is asked for at once on several connections, so the server prepares them in parallel;
their bodies are read in order, 1 MiB at a time, and each piece is hashed and written while it
is still in the CPU's cache (see _read_ranges). Checking costs no second read of the file. A
range whose connection breaks mid-body is asked for again from the byte where it broke.

Unchanged files are not sent again, as with `rclone copy`: a file whose remote copy has the same
size and the same modification time (the server keeps the one the CLI sends, to the microsecond;
they are compared within MODIFY_WINDOW) is skipped; with ``--checksum`` the same size and the
same sha256 instead. What is remote comes from one paged listing per destination directory of a
folder, fetched on threads while the folder is read (a stat per file named on the command
line); ``--checksum`` compares the listing's sha256 (asked for per file only from a server
whose listings do not carry it).
``--dry-run`` lists what would be sent and sends nothing. The counts end the output: "N sent,
M skipped (unchanged), K failed".

Stopping: on Ctrl-C, or once a file finds the server unreachable (after the client's own retries
with backoff), a transfer stops as a whole (see _run_all): no new file, part, range or batch is
asked for, an upload session whose parts were cut short is not committed (running the same `put`
again resumes it), the files under way get STOP_GRACE to end, and one message gives the counts.

Naming follows rsync: a directory SRC is copied *as* DEST/basename(SRC), a SRC ending in '/' has
its *contents* copied into DEST; a single file SRC goes into DEST when DEST is a directory (or ends
in '/', or several SRCs are given), else becomes DEST.
"""
from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import queue
import re
import secrets
import stat as stat_module
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, as_completed, wait
from datetime import datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from cloudstrype_client import local_transfer, remote
from cloudstrype_client.api import READ_TIMEOUT, Body, BodyBroken, Client, answer_lost
from cloudstrype_client.config import UploadState
from cloudstrype_client.display import shown
from cloudstrype_client.errors import (
    BAD_LOCAL_NAME,
    CONFLICT,
    FAILED,
    INTERRUPTED,
    NOT_FOUND,
    OK,
    UNREACHABLE,
    USAGE,
    Cancelled,
    CliError,
    Stopped,
    UsageError,
    exit_code_for_status,
)
from cloudstrype_client.progress import Progress

MiB = 1024 * 1024
# Copies of the server's limits (layers/shared/python/cloudstrype/limits.py; the CLI never
# imports server code), checked against it by tests/foundation/test_gateway.py. Files up to
# ONE_SHOT_MAX go in one request (under ONE_SHOT_MAX_BYTES, with room for the form around them);
# RANGE_SIZE is the server's largest range per response (RANGE_MAX_BYTES).
ONE_SHOT_MAX = 4 * MiB
RANGE_SIZE = 4 * MiB
# What writing into a local file fails with: said with the file's name (Downloader.download).
_LOCAL_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS,
                                 errno.EIO})
HASH_BLOCK = 1 * MiB                    # (measured a little faster than 4 MiB)
# A download's bytes are read from the socket, hashed and written in pieces this big: small
# enough to stay in the CPU's cache from one step to the next (2 MiB of L2 per core on the
# benchmark's machine), big enough that the calls per piece cost little.
READ_PIECE = 1 * MiB
# Batches, copies of the server's too (checked by tests/cli/test_batch_put.py): files up to
# BATCH_FILE_MAX (pipeline.packs.PACK_THRESHOLD) are batched, at most BATCH_MAX_FILES
# (tree.files.MAX_BATCH_FILES) and BATCH_MAX_BYTES of body as sent (ONE_SHOT_MAX_BYTES) each.
BATCH_FILE_MAX = 256 * 1024
# Files up to this are read many to a request (POST /api/filesystem/read), a copy of the
# server's tree.files.READ_BATCH_FILE_MAX (checked by tests/cli/test_batch_get.py).
READ_BATCH_FILE_MAX = 256 * 1024
BATCH_MAX_FILES = 500
BATCH_MAX_BYTES = 4 * MiB
# What the form adds per file part besides its bytes and name (boundary, part headers), and once
# per batch (the path field, the mtimes part's headers), counted generously.
BATCH_PART_OVERHEAD = 256
BATCH_FORM_OVERHEAD = 4096
# Modification times within this are the same: the server keeps microseconds, and a float of
# today's Unix seconds holds about a tenth of one.
MODIFY_WINDOW = 0.001
# How long a stopping transfer waits for what is under way on its threads (a part, a range, a
# batch, each one request) before it leaves without them.
STOP_GRACE = 1.0
# A download's temporary file: '.' + mkstemp's 8 random characters + this, beside its target.
PART_PREFIX, PART_SUFFIX = ".", ".cloudstrype-part"
# The server's code for a file refused because it would pass the user's quota.
QUOTA_EXCEEDED = "quota_exceeded"
NOT_UTF8 = "the name is not valid UTF-8, so it cannot be a remote name; rename it."


def hash_file(path: str | Path) -> str:
    """The sha256 of a local file, read into one buffer again and again (no new bytes object a
    block; the hash is computed where the bytes landed)."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buffer = bytearray(min(HASH_BLOCK, max(1, os.fstat(f.fileno()).st_size)))
        view = memoryview(buffer)
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def _raise_first(futures) -> None:
    """Wait for `futures`; on the first failure cancel the rest and raise it (Cancelled for
    one cancelled: its pool was shut down, the command is stopping)."""
    done, pending = wait(futures, return_when=FIRST_EXCEPTION)
    for future in done:
        if future.cancelled():
            for other in pending:
                other.cancel()
            raise Cancelled()
        if future.exception() is not None:
            for other in pending:
                other.cancel()
            wait(pending)
            raise future.exception()


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, CliError):
        return exc.message
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}"


class _Repeats:
    """The failure lines of a transfer, each said as it happens, except that a reason shared by
    many files (a read-only share, a full quota) is said for the first few and then counted:
    one line at the end says how many more failed so, instead of a thousand alike."""
    SHOWN = 3

    def __init__(self, progress: Progress, command: str):
        self.progress, self.command = progress, command
        self.counts: dict[str, int] = {}

    def say(self, label: str, error: BaseException) -> None:
        reason = _failure_text(label, error)
        count = self.counts[reason] = self.counts.get(reason, 0) + 1
        if count <= self.SHOWN:
            self.progress.message(f"{self.command}: {label}: {reason}", always=True)

    def summarize(self) -> None:
        for reason, count in self.counts.items():
            if count > self.SHOWN:
                self.progress.message(f"{self.command}: {count - self.SHOWN} more files failed "
                                      f"the same way: {reason}", always=True)


def _failure_text(label: str, exc: BaseException) -> str:
    """What went wrong with LABEL, without LABEL when the message starts with it."""
    text = _describe_failure(exc)
    return text[len(label) + 2:] if text.startswith(label + ": ") else text


def _bad_name() -> CliError:
    return CliError(NOT_UTF8, FAILED, code=BAD_LOCAL_NAME)


def _exit_code(failures: list[tuple[str, BaseException]]) -> int:
    if not failures:
        return OK
    codes = {_file_exit_code(exc) for _, exc in failures}
    return codes.pop() if len(codes) == 1 else FAILED


def _file_exit_code(exc: BaseException) -> int:
    """A file the server refused as bad input (a name, a depth, a size) failed as an operation
    (1): the command line was right, so it is not a usage error (2)."""
    if not isinstance(exc, CliError):
        return FAILED
    return FAILED if exc.exit_code == USAGE and exc.status is not None else exc.exit_code


# -- put ------------------------------------------------------------------------------------------

class Upload(NamedTuple):
    local: str                     # the local file, as a path on the command line spells it
    size: int
    mtime_ns: int
    directory: str                 # remote directory
    name: str
    in_folder: bool = False        # found in a folder SRC (compared through its listing)

    @property
    def remote(self) -> str:
        return remote.join(self.directory, self.name)


def _leaves(directories: set[str]) -> list[str]:
    """The directories no other one is below: creating them creates the rest."""
    ordered = sorted(d for d in directories if d != "/")
    leaves = []
    for i, d in enumerate(ordered):
        following = ordered[i + 1] if i + 1 < len(ordered) else ""
        if not following.startswith(d + "/"):
            leaves.append(d)
    return leaves


class RemoteListings:
    """The remote directories a `put` writes into, each listed (every page) on a thread of its
    own as soon as it is named, so the listings travel while the local folder is still being
    read. A directory is {name: entry}, or None when there is nothing (or a file) at its path;
    one whose parent was named first is not asked for unless the parent's listing shows it as a
    directory (nothing can be below a directory that does not exist)."""

    def __init__(self, client: Client, jobs: int):
        self.client = client
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="list")
        self._futures: dict[str, Future] = {}

    def want(self, directory: str) -> None:
        if directory in self._futures:
            return
        parent, name = remote.split(directory) if directory != "/" else ("", "")
        # Submitted before its children (a walk goes top-down) and the pool takes work in
        # order, so a child waiting for its parent's listing always waits for a running one.
        self._futures[directory] = self._pool.submit(self._list, directory,
                                                     self._futures.get(parent), name)

    def _list(self, directory: str, parent: Future | None, name: str) -> dict | None:
        if parent is not None:
            siblings = parent.result()
            entry = siblings.get(name) if siblings is not None else None
            if entry is None or entry.get("type") != remote.DIRECTORY:
                return None
        try:
            return {e["name"]: e for e in remote.list_dir(self.client, directory)}
        except CliError as exc:
            if exc.exit_code in (NOT_FOUND, USAGE) or exc.code == "not_a_directory":
                return None             # missing, or a file there: the upload will say
            raise

    def lookup(self, path: str) -> Future:
        """The node at `path` (remote.stat), looked up on the pool."""
        return self._pool.submit(remote.stat, self.client, path)

    def existing(self) -> dict[str, dict[str, dict]]:
        """{directory: {name: entry}} of the named directories that exist remotely."""
        return {d: listing for d, future in self._futures.items()
                if (listing := future.result()) is not None}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _scan(root: str, top: str, uploads: list[Upload], directories: set[str],
          listings: RemoteListings | None) -> list[tuple[str, bool]]:
    """Add the regular files below the local folder `root`, bound for the remote directory
    `top`, to `uploads` in os.walk's order (top-down, names sorted); the warnings, (text, is it
    a failure), about what was passed over: a folder that cannot be read (unreadable, a path
    too long) is a failure, as an unreadable file is; a link to a folder is not followed (it
    could loop, or lead out of the tree), and says so. One scandir and one stat a file, and no
    Path objects: a folder of many small files is read in a few milliseconds a thousand
    files."""
    warnings: list[tuple[str, bool]] = []
    directories.add(top)
    # Local paths read as pathlib would print them: no './' before a relative one.
    prefix = "" if root == os.curdir else root
    pending = [(prefix, top)]
    while pending:
        local_dir, here = pending.pop()
        try:
            with os.scandir(local_dir or os.curdir) as found:
                entries = sorted(found, key=lambda e: e.name)
        except OSError as exc:
            warnings.append((f"put: cannot send the folder {local_dir or os.curdir}: "
                             f"{exc.strerror or exc}", True))
            continue
        directories.add(here)
        if listings is not None:
            listings.want(here)
        below = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            local = os.path.join(local_dir, entry.name)
            if not remote.is_text(entry.name):
                warnings.append((f"put: cannot send {local}: {NOT_UTF8}", True))
                continue
            if is_dir:
                if entry.is_symlink():
                    warnings.append((f"put: skipping {local}: a link to a folder (not "
                                     f"followed; name the folder itself to send it)", False))
                else:
                    below.append((local, remote.join(here, entry.name)))
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                if entry.is_symlink():      # a link to nothing: nothing to send, no failure
                    warnings.append((f"put: skipping {local}: a link to nothing (its target "
                                     f"does not exist)", False))
                    continue
                warnings.append((f"put: cannot send {local}: it was removed while the "
                                 f"folder was read", True))
                continue
            except OSError as exc:
                warnings.append((f"put: cannot send {local}: {_describe_failure(exc)}", True))
                continue
            if not stat_module.S_ISREG(st.st_mode):
                warnings.append((f"put: skipping {local}: not a regular file", False))
                continue
            if _STALE_PART_NAME.fullmatch(entry.name):
                # A download's temporary file (_new_part): never a file of the folder's own.
                warnings.append((f"put: skipping {local}: a temporary file of a `cloudstrype "
                                 f"get` (removed when it finishes, or an hour after it "
                                 f"stopped)", False))
                continue
            uploads.append(Upload(local, st.st_size, st.st_mtime_ns, here, entry.name,
                                  in_folder=True))
        pending.extend(reversed(below))
    return warnings


def _folder_top(source: str, dest_path: str) -> str:
    """The remote directory a folder SRC fills: DEST itself for 'SRC/', else DEST/name."""
    # The name as given (a link named `current` fills DEST/current, not DEST/<its target's
    # name>); '.' and '..' are made plain first.
    name = Path(os.path.abspath(source)).name
    contents = source.endswith(("/", os.sep)) or not name
    return dest_path if contents else remote.join(dest_path, name)


def _unusable_source(source: str, exc: OSError) -> CliError:
    """A SRC that cannot be read, in words: missing (or below a file) is not found (4), a
    path that cannot name a file (a link loop, a name too long) is usage (2), the rest (no
    permission) failed (1)."""
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return CliError(f"No such local file or directory: {source}", NOT_FOUND)
    if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG):
        return UsageError(f"{source}: {exc.strerror}.")
    return CliError(f"{source}: {exc.strerror or exc}.", FAILED)


def plan_put(client: Client, sources: list[str], dest: str, warn,
             listings: RemoteListings | None = None) -> tuple[list[Upload], set[str]]:
    """(the files to consider, the remote directories they go into). With `listings`, DEST is
    looked up and each folder's remote directories listed while the local folders are read."""
    dest_path = remote.normalize(dest)
    lookup = listings.lookup(dest_path) if listings is not None else None
    if listings is not None:
        for source in sources:
            top = _folder_top(source, dest_path) if os.path.isdir(source) else None
            if top is not None and remote.is_text(top):   # (one that is not is said below)
                listings.want(top)
    known: list[dict | None] = []

    def dest_node() -> dict | None:
        if not known:
            known.append(lookup.result() if lookup is not None else
                         remote.stat(client, dest_path))
        return known[0]

    def dest_is_dir() -> bool:
        node = dest_node()
        return node is not None and node.get("type") == remote.DIRECTORY

    uploads: list[Upload] = []
    directories: set[str] = set()
    for source in sources:
        path = Path(source)
        try:
            info = path.stat()
        except OSError as exc:
            dest_node()                    # the server's objection, if any, comes first
            raise _unusable_source(source, exc) from None
        if stat_module.S_ISDIR(info.st_mode):
            top = _folder_top(source, dest_path)
            if not remote.is_text(top):
                warn(f"put: cannot send {source}: {NOT_UTF8}")
                continue
            # Read before DEST is known (it is being looked up meanwhile); what reading it
            # found to say waits until DEST is known to take a folder.
            found: list[Upload] = []
            warnings = _scan(str(path), top, found, directories, listings)
            if dest_node() is not None and not dest_is_dir():
                raise CliError(f"{dest_path} is a file; a directory cannot be copied onto it.",
                               CONFLICT)
            for text, failure in warnings:
                warn(text, failure=failure)
            uploads.extend(found)
        elif stat_module.S_ISREG(info.st_mode):
            if dest_is_dir() or dest.endswith("/") or len(sources) > 1:
                directory, name = dest_path, path.name
            else:
                directory, name = remote.split(dest_path)
            if not remote.is_text(name):
                warn(f"put: cannot send {source}: {NOT_UTF8}")
                continue
            uploads.append(Upload(str(path), info.st_size, info.st_mtime_ns, directory, name))
        else:
            dest_node()
            raise UsageError(f"{source} is not a regular file or a directory.")
    return uploads, directories


def _modified_seconds(entry: dict) -> float | None:
    return _timestamp(entry.get("modified"))


def _unchanged(item: Upload, entry: dict | None, checksum: bool) -> bool | None:
    """True/False when the entry decides; None when --checksum needs the remote sha256."""
    if entry is None or entry.get("type") != remote.FILE or \
            int(entry.get("size") or 0) != item.size:
        return False
    if checksum:
        if not entry.get("sha256"):
            return None
        return entry["sha256"] == hash_file(item.local)
    modified = _modified_seconds(entry)
    return modified is not None and abs(modified - item.mtime_ns / 1e9) <= MODIFY_WINDOW


def select_changed(client: Client, uploads: list[Upload], directories: set[str], *,
                   checksum: bool, jobs: int, listings: RemoteListings | None = None
                   ) -> tuple[list[Upload], int, set[str]]:
    """(the uploads to send, how many are unchanged, the directories that exist remotely).
    `listings` are those plan_put started (made here when not given)."""
    own = listings is None
    if own:
        listings = RemoteListings(client, jobs)
    try:
        for directory in sorted(directories, key=lambda d: (d != "/", d.count("/"), d)):
            listings.want(directory)       # parents first; those already named are kept
        found = listings.existing()
    finally:
        if own:
            listings.close()

    def entry_of(item: Upload) -> dict | None:
        if item.in_folder:
            return found.get(item.directory, {}).get(item.name)
        return remote.stat(client, item.remote)

    def decide(item: Upload) -> bool:
        entry = entry_of(item)
        verdict = _unchanged(item, entry, checksum)
        if verdict is None:             # a listing's entry has no sha256: ask for the file's
            verdict = _unchanged(item, remote.stat(client, item.remote), checksum)
        return bool(verdict)

    if checksum or any(not u.in_folder for u in uploads):
        pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="compare")
        try:
            same = list(pool.map(decide, uploads))
        finally:                        # (on Ctrl-C: without waiting for the hashing)
            pool.shutdown(wait=False, cancel_futures=True)
    else:                               # listings decide alone: no need for threads
        same = [decide(u) for u in uploads]
    changed = [u for u, unchanged in zip(uploads, same, strict=True) if not unchanged]
    return changed, len(uploads) - len(changed), set(found)


def _same_file_state(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether nothing was written to the file between the two stats: its size, mtime and
    ctime are as they were (ctime moves on any write, even one whose mtime is then put back)."""
    return (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == \
        (after.st_size, after.st_mtime_ns, after.st_ctime_ns)


def _stable_mtime(before: os.stat_result, after: os.stat_result) -> float | None:
    """The modification time to keep with the upload: None (the server's time then) if the file
    changed while it was read, so that the next `put` sends it again."""
    if not _same_file_state(before, after):
        return None
    return after.st_mtime_ns / 1e9


CHANGED_WHILE_SENT = "changed_while_sent"


def _changed_while_sent(item: Upload) -> CliError:
    """A file written to while it was read for its upload: not stored, and worth sending again
    (not a permanent refusal)."""
    return CliError(f"{item.local} changed while it was being sent, so it was not stored; "
                    f"running the command again sends it as it is then.",
                    code=CHANGED_WHILE_SENT)


class Uploader:
    def __init__(self, client: Client, progress: Progress, state: UploadState,
                 part_pool: ThreadPoolExecutor):
        self.client = client
        self.progress = progress
        self.state = state
        self.parts = part_pool
        # Batches are read and encoded one at a time (then sent in parallel): built all at
        # once, the first ones were ready only when all were, and the server waited idle.
        self._building = threading.Lock()

    def upload(self, item: Upload) -> dict:
        if item.size <= ONE_SHOT_MAX:
            return self._one_shot(item)
        return self._session(item)

    def _one_shot(self, item: Upload) -> dict:
        with open(item.local, "rb") as f:
            before = os.fstat(f.fileno())
            data = f.read()
            mtime = _stable_mtime(before, os.fstat(f.fileno()))
        digest = hashlib.sha256(data).hexdigest()
        fields = {"path": item.directory, "name": item.name}
        if mtime is not None:
            fields["mtime"] = f"{mtime:.6f}"
        found: dict[str, dict] = {}

        def landed() -> bool:
            found.update(self._landed(item.directory, {item.name: (len(data), digest, mtime)}))
            return bool(found)

        node = self._sent_once(lambda: self.client.request(
            "POST", "/api/filesystem/data", retry=True, resend_lost=False, ok=(201,),
            what=item.remote,
            data=fields,
            files={"file": (item.name, data, "application/octet-stream")}).json(), landed)
        node = found[item.name] if node is None else node
        if node.get("size") != len(data) or (node.get("sha256") and node["sha256"] != digest):
            raise CliError(f"{item.remote}: the server stored {node.get('size')} bytes with "
                           f"sha256 {node.get('sha256')}; expected {len(data)} bytes, {digest}.")
        self.progress.advance(len(data))
        self.progress.file_done()
        return node

    def _open_session(self, item: Upload, key: str) -> tuple[dict, str]:
        entry = self.state.get(key)
        session = None
        if entry:
            try:
                session = self.client.get_json(f"/api/filesystem/uploads/{entry['upload_id']}")
            except CliError as exc:
                if exc.exit_code != NOT_FOUND:          # 404 unknown, 410 expired: start anew
                    raise
            if session is not None and (session.get("committed") or
                                        session.get("size") != item.size):
                session = None
            if session is None:
                self.state.forget(key)
        sha256 = entry.get("sha256") if (entry and session) else None
        if session is not None:
            # A folder of the file's name made since: the commit would refuse it after every
            # part had gone up again, so it is refused before, and the session freed.
            there = remote.stat(self.client, item.remote)
            if there is not None and there.get("type") == remote.DIRECTORY:
                self._abandon(f"/api/filesystem/uploads/{session['upload_id']}", key)
                raise CliError(f"{item.remote}: '{item.name}' is a directory now; choose "
                               f"another name.", CONFLICT, status=409, code="is_a_directory")
            changed = self._changed_parts(item, session)
            session["missing"] = sorted({*map(int, session["missing"]), *changed})
            got = len(session.get("received") or []) - len(changed)
            again = f" ({len(changed)} changed since, sent again)" if changed else ""
            self.progress.message(f"Resuming upload of {item.remote}: {got} of "
                                  f"{session['parts']} parts already uploaded{again}.")
            return session, sha256
        # Sessions an earlier run opened for this file as it was then (another size or
        # modification time) cannot be resumed: freed now, not left a week against the quota
        # and the open-uploads limit.
        for stale_key, stale in self.state.superseded(key):
            if isinstance(stale.get("upload_id"), str):
                self._abandon(f"/api/filesystem/uploads/{quote(stale['upload_id'], safe='')}",
                              stale_key)
        # The session's id is chosen here and remembered before it is asked for, so the
        # request can be sent again after its answer was lost (the server answers the session
        # it opened then), and a later run finds a session whose every answer was lost.
        upload_id = os.urandom(12).hex()
        self._remember(key, upload_id, item)
        body = {"path": item.directory, "name": item.name, "size": item.size,
                "upload_id": upload_id}
        try:
            # The hash is computed while the parts go up and declared at the commit.
            session = self.client.post_json("/api/filesystem/uploads", body, ok=(200, 201),
                                            retry=True, what=item.remote)
        except CliError as exc:
            if not answer_lost(exc):
                self.state.forget(key)              # refused: there is nothing to resume
            if exc.code != "unknown_field" or "'upload_id'" not in exc.message:
                raise
            # A server from before clients chose the id: opened as then, sent once.
            del body["upload_id"]
            session = self.client.post_json("/api/filesystem/uploads", body, ok=(201,),
                                            what=item.remote)
            try:
                self._remember(key, session["upload_id"], item)
            except CliError:
                self._abandon(f"/api/filesystem/uploads/{session['upload_id']}", key)
                raise
        return session, None

    def _remember(self, key: str, upload_id: str, item: Upload) -> None:
        try:
            self.state.put(key, {"upload_id": upload_id, "remote": item.remote})
        except OSError as exc:
            # The file that could not be written is named (not the file being sent).
            raise CliError(f"{item.remote}: the upload could not be recorded in "
                           f"{self.state.path} for a later run to resume "
                           f"({exc.strerror or exc}); nothing was sent. Free space there, or "
                           f"set XDG_CONFIG_HOME to a folder with room.") from None

    def _changed_parts(self, item: Upload, session: dict) -> list[int]:
        """The parts the server has that the local file no longer holds (changed since, even
        with its size and modification time as they were: `cp -p`, `rsync -t`, `tar x`).
        Each is read and hashed here; a server that does not say what its parts hold has all
        of them sent again."""
        part_size, hashes = int(session["part_size"]), session.get("part_sha256")
        received = [int(n) for n in session.get("received") or []]
        if not isinstance(hashes, dict):
            return received
        changed = []
        with open(item.local, "rb", buffering=0) as local:
            for n in received:
                data = os.pread(local.fileno(), part_size, n * part_size)
                if hashlib.sha256(data).hexdigest() != hashes.get(str(n)):
                    changed.append(n)
        return changed

    def _session(self, item: Upload) -> dict:
        key = UploadState.key(self.client.server, self.client.username, Path(item.local).resolve(),
                              item.size, item.mtime_ns, item.directory, item.name,
                              self.client.share)
        # The declared sha256 comes from a read of its own, the parts from others (and a
        # resume's parts from an earlier run, checked against the file in _open_session): only
        # a file nothing wrote to from before the first of these reads to after the last one is
        # committed, else the hash would not describe the bytes sent.
        fd = os.open(item.local, os.O_RDONLY)
        before = os.fstat(fd)
        try:
            if before.st_size != item.size:
                raise _changed_while_sent(item)
            session, sha256 = self._open_session(item, key)
        except BaseException:
            os.close(fd)
            raise
        upload_id, part_size = session["upload_id"], int(session["part_size"])
        base = f"/api/filesystem/uploads/{upload_id}"
        bar = self.progress.file_bar(item.remote, item.size)

        def part_length(n: int) -> int:
            return min(part_size, item.size - n * part_size)

        missing = [int(n) for n in session["missing"]]
        self.progress.skip(item.size - sum(part_length(n) for n in missing), bar)
        hasher = ThreadPoolExecutor(max_workers=1)
        hashing = hasher.submit(hash_file, item.local) if sha256 is None else None
        try:
            def send(n: int) -> None:
                if self.client.stop.is_set():
                    raise Cancelled()
                length = part_length(n)
                body = os.pread(fd, length, n * part_size)
                if len(body) != length:             # (shorter now)
                    raise _changed_while_sent(item)
                self.client.request("PUT", f"{base}/parts/{n}", data=body, ok=(200,),
                                    headers={"Content-Type": "application/octet-stream"},
                                    what=f"{item.remote} part {n}")
                self.progress.advance(length, bar)

            for _ in range(3):
                try:
                    _raise_first([self.parts.submit(send, n) for n in missing])
                except CliError as exc:
                    # Changed while sent, or refused as it is (the share revoked or made
                    # read-only, the session gone): its parts are not kept for a resume.
                    if exc.code == CHANGED_WHILE_SENT or exc.permanent:
                        self._abandon(base, key)
                    raise
                if self.client.stop.is_set():
                    raise Cancelled()           # parts were cut short: no commit
                if hashing is not None:
                    sha256 = hashing.result()
                if not (_same_file_state(before, os.fstat(fd)) and
                        _same_file_state(before, os.stat(item.local))):
                    # (the session goes too: a run again sends the file as it is then, which
                    # a resume of parts read from another content would not)
                    self._abandon(base, key)
                    raise _changed_while_sent(item)
                # A file changed after it was listed but not while it was read is stored
                # without its mtime, so that the next `put` compares it again.
                body = {"sha256": sha256}
                if before.st_mtime_ns == item.mtime_ns:
                    body["mtime"] = before.st_mtime_ns / 1e9
                try:
                    node = self.client.request("POST", f"{base}/commit", retry=True, ok=(201,),
                                               what=item.remote, json=body).json()
                    break
                except CliError as exc:
                    if exc.code == "upload_committed":     # a retried commit that had worked
                        node = remote.lookup(self.client, item.remote)
                        break
                    if exc.code != "parts_missing":
                        if exc.permanent:
                            # Refused as it is (a folder of its name is there): running again
                            # does not help, so its parts are not kept for a resume.
                            self._abandon(base, key)
                        raise
                    missing = [int(n) for n in self.client.get_json(base)["missing"]]
            else:
                raise CliError(f"{item.remote}: the server kept missing parts; run the command "
                               f"again to resume.", CONFLICT)
        finally:
            os.close(fd)
            hasher.shutdown(wait=True, cancel_futures=True)
        self.state.forget(key)
        if node.get("size") != item.size or (node.get("sha256") not in (None, sha256)):
            raise CliError(f"{item.remote}: the server reports {node.get('size')} bytes, sha256 "
                           f"{node.get('sha256')}; expected {item.size} bytes, {sha256}.")
        self.progress.file_done(bar)
        return node

    def _abandon(self, base: str, key: str) -> None:
        """Forget an upload session that will not be committed, and ask the server to free its
        parts (at once rather than when it expires; a failure to ask leaves that to expiry)."""
        self.state.forget(key)
        try:
            self.client.request("DELETE", base, ok=(204, 404, 409, 410), retry=True)
        except CliError:
            pass

    def send_batch(self, items: list[Upload]) -> list[tuple[Upload, BaseException]]:
        """Upload `items` (small files of one directory) in one request; the files that failed,
        each with its own error (a file unreadable here is left out of the request)."""
        failures: list[tuple[Upload, BaseException]] = []
        grown: list[Upload] = []
        with self._building:
            parts, mtimes, sent, digests = [], {}, [], {}
            for item in items:
                if not remote.is_text(item.name):        # (plan_put leaves such names out)
                    failures.append((item, _bad_name()))
                    continue
                try:
                    with open(item.local, "rb") as f:
                        before = os.fstat(f.fileno())
                        data = f.read()
                        mtime = _stable_mtime(before, os.fstat(f.fileno()))
                except OSError as exc:
                    failures.append((item, exc))
                    continue
                if len(data) > item.size:
                    # Grown since the folder was read: it may no longer fit the batch (one
                    # such file made the whole batch too large), so it goes alone, as it is now.
                    grown.append(item._replace(size=len(data), mtime_ns=before.st_mtime_ns))
                    continue
                parts.append((item.name, data))
                if mtime is not None:
                    mtimes[item.name] = round(mtime, 6)
                digests[item.name] = (len(data), hashlib.sha256(data).hexdigest())
                sent.append(item)
            if not sent:
                return failures + self._each_alone(grown)
            directory = sent[0].directory
        results = self._post_batch(directory, parts, mtimes, digests)
        for item in sent:
            result = results.get(item.name)
            if result is None:
                failures.append((item, CliError(f"{item.remote}: the server's answer to the "
                                                f"batch does not mention this file.")))
                continue
            if result.get("status") != 201:
                error = result.get("error") or {}
                status = int(result.get("status") or 500)
                failures.append((item, CliError(
                    f"{item.remote}: {error.get('message') or f'HTTP {status}'}",
                    exit_code_for_status(status, error.get("code")), status=status,
                    code=error.get("code"))))
                continue
            node = result.get("file") or {}
            size, digest = digests[item.name]
            if node.get("size") != size or (node.get("sha256") and node["sha256"] != digest):
                failures.append((item, CliError(
                    f"{item.remote}: the server stored {node.get('size')} bytes with sha256 "
                    f"{node.get('sha256')}; expected {size} bytes, {digest}.")))
                continue
            self.progress.advance(size)
            self.progress.file_done()
        return failures + self._each_alone(grown)

    def _post_batch(self, directory: str, parts: list[tuple[str, bytes]],
                    mtimes: dict[str, float], digests: dict[str, tuple[int, str]]
                    ) -> dict[str, dict]:
        """POST /batch of `parts` (name, bytes); each file's result by name. An upload is not
        idempotent (each stores a version): when an attempt's answer is lost (the connection
        broke after the request went, a gateway's 502 or 504), the files already there as
        they were being sent are taken as stored, and only the others are sent again (a
        retry of the whole batch stored every file of it a second time, as a new version)."""
        results: dict[str, dict] = {}
        pending = list(parts)

        def post() -> dict:
            mine = {name: mtimes[name] for name, _ in pending if name in mtimes}
            body, content_type = multipart_form(
                [("path", directory), ("mtimes", json.dumps(mine))], pending)
            return self.client.request(
                "POST", "/api/filesystem/batch", retry=True, resend_lost=False, ok=(207,),
                what=f"{directory} (a batch of {len(pending)} files)", data=body,
                headers={"Content-Type": content_type}).json()

        def landed() -> bool:
            found = self._landed(directory, {name: (*digests[name], mtimes.get(name))
                                             for name, _ in pending})
            results.update({name: {"name": name, "status": 201, "file": node}
                            for name, node in found.items()})
            pending[:] = [(name, data) for name, data in pending if name not in found]
            return not pending

        answer = self._sent_once(post, landed)
        if answer is not None:
            results.update({r.get("name"): r for r in answer.get("results") or []})
        return results

    def _sent_once(self, post, landed) -> dict | None:
        """post() (a non-idempotent upload, sent with resend_lost=False: Client.request still
        waits out what ran nothing, 429 and 503) until it is answered; after an attempt whose
        answer was lost, landed() first says whether what it sends is stored already (and
        trims what the next post() sends to what is not): None when all of it was."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return post()
            except CliError as exc:
                if attempt > self.client.retries or not answer_lost(exc):
                    raise
            if landed():
                return None
            self.client.backoff(attempt)

    def _landed(self, directory: str, expected: dict[str, tuple[int, str, float | None]]
                ) -> dict[str, dict]:
        """Of the files `expected` (name: size, sha256, mtime sent or None) in `directory`,
        those the server holds now as they were being sent (by the rule a later `put` skips
        them by, and their sha256): an upload whose answer was lost stored them."""
        try:
            if len(expected) == 1:
                (name,) = expected
                found = remote.stat(self.client, remote.join(directory, name))
                entries = [found] if found is not None else []
            else:
                entries = remote.list_dir(self.client, directory)
        except CliError:
            return {}               # not there, or the server still unreachable: send again
        landed = {}
        for entry in entries:
            name = entry.get("name")
            if name not in expected or entry.get("type") != remote.FILE:
                continue
            size, digest, mtime = expected[name]
            modified = _modified_seconds(entry)
            if entry.get("size") == size and entry.get("sha256") == digest and (
                    mtime is None or (modified is not None and
                                      abs(modified - mtime) <= MODIFY_WINDOW)):
                landed[name] = entry
        return landed

    def _each_alone(self, items: list[Upload]) -> list[tuple[Upload, BaseException]]:
        """Upload each of `items` alone; the ones that failed, each with its error."""
        failures: list[tuple[Upload, BaseException]] = []
        for item in items:
            try:
                self.upload(item)
            except (CliError, OSError) as exc:
                failures.append((item, exc))
        return failures


def multipart_form(fields: list[tuple[str, str]], files: list[tuple[str, bytes]]
                   ) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart/form-data form: the fields, then each (name, bytes)
    as a `file` part. A file's name goes as `filename*=UTF-8''<percent-encoded>` (exact for
    any name; the server prefers it) after an ASCII `filename` for other readers. (requests
    wrote names as browsers do, '"' as %22, which cannot be told from a name holding "%22",
    and spent more time encoding the form than reading the files.)"""
    boundary = secrets.token_hex(16)
    marker = b"--" + boundary.encode()
    while any(marker in data for _, data in files):
        boundary = secrets.token_hex(16)
        marker = b"--" + boundary.encode()
    pieces = []
    for name, value in fields:
        pieces += [marker, b'\r\nContent-Disposition: form-data; name="', name.encode(),
                   b'"\r\n\r\n', value.encode("utf-8"), b"\r\n"]
    for filename, data in files:
        pieces += [marker, b'\r\nContent-Disposition: form-data; name="file"; filename="',
                   _ascii_filename(filename), b"\"; filename*=UTF-8''",
                   quote(filename, safe="").encode(),
                   b"\r\nContent-Type: application/octet-stream\r\n\r\n", data, b"\r\n"]
    pieces += [marker, b"--\r\n"]
    return b"".join(pieces), f"multipart/form-data; boundary={boundary}"


def _ascii_filename(name: str) -> bytes:
    """`name` for a quoted `filename`: what is not printable ASCII, and quotes and
    backslashes, as '_'."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name).encode()


def _batch_cost(item: Upload) -> int:
    """What `item` adds to a batch's body as sent: its bytes, its part, its mtimes entry (the
    name is in the part's header twice: percent-encoded, three bytes a byte, and as ASCII)."""
    name = item.name.encode("utf-8", "surrogateescape")
    return item.size + 4 * len(name) + BATCH_PART_OVERHEAD + len(json.dumps(item.name)) + 24


def plan_batches(uploads: list[Upload]) -> tuple[list[list[Upload]], list[Upload]]:
    """(batches: the small files of each remote directory, filled up to the limits; the files
    to send alone: the big ones, and a small one alone in its directory)."""
    alone: list[Upload] = []
    by_directory: dict[str, list[Upload]] = {}
    for item in uploads:
        if item.size <= BATCH_FILE_MAX:
            by_directory.setdefault(item.directory, []).append(item)
        else:
            alone.append(item)
    batches: list[list[Upload]] = []
    for directory, small in by_directory.items():
        if len(small) == 1:
            alone.extend(small)
            continue
        room = BATCH_MAX_BYTES - BATCH_FORM_OVERHEAD - 3 * len(directory.encode())
        batch: list[Upload] = []
        used = 0
        for item in small:
            cost = _batch_cost(item)
            if batch and (len(batch) >= BATCH_MAX_FILES or used + cost > room):
                batches.append(batch)
                batch, used = [], 0
            batch.append(item)
            used += cost
        batches.append(batch)
    return batches, alone


class _Halted(Exception):
    """A transfer stopped as a whole: `cause` is the error that stopped it (the server
    unreachable), None for Ctrl-C; `failures` those reported until then."""

    def __init__(self, cause: CliError | None, failures: list[tuple[str, BaseException]]):
        super().__init__("stopped")
        self.cause = cause
        self.failures = failures


def _run_all(command: str, jobs: int, batches: list[list], alone: list, one, many, label,
             progress: Progress, client: Client) -> list[tuple[str, BaseException]]:
    """Run `one` on every lone item (biggest first: they take longest) and `many` on every
    batch (it answers the batch's failed items, each with its error), `jobs` at once; a failed
    item is reported and listed, the others go on. Anything but a CLI or OS error is a bug and
    stops the command.

    Ctrl-C, or an item that finds the server unreachable (after the client's retries), stops
    it all instead: client.stop is set (no request is sent or retried from then on), the items
    not started are dropped, those under way get STOP_GRACE to end (a download removes its
    temporary file, a session is not committed), and _Halted is raised. What a stopped item
    raises (Cancelled) is no failure of its own."""
    failures: list[tuple[str, BaseException]] = []
    said = _Repeats(progress, command)
    cause: CliError | None = None
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="file")
    futures: dict[Future, tuple[list, bool]] = {}
    finished = False
    try:
        for item in sorted(alone, key=lambda item: -item.size):
            futures[pool.submit(one, item)] = ([item], False)
        for batch in batches:
            futures[pool.submit(many, batch)] = (batch, True)
        for future in as_completed(futures):
            exc = future.exception()
            if exc is not None and not isinstance(exc, (CliError, OSError)):
                raise exc
            items, grouped = futures[future]
            if exc is not None:             # the whole batch: each of its items failed so
                failed = [(item, exc) for item in items]
            else:
                failed = future.result() if grouped else []
            for item, error in failed:
                if isinstance(error, Cancelled):
                    continue
                if isinstance(error, CliError) and error.exit_code == UNREACHABLE:
                    cause = cause or error
                    continue
                failures.append((label(item), error))
                said.say(label(item), error)
            if cause is not None:
                break
        else:
            finished = True
    except KeyboardInterrupt:
        cause = None
    finally:
        said.summarize()
        if finished:
            pool.shutdown(wait=True)
        else:
            client.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            wait(futures, timeout=STOP_GRACE)
    if not finished:
        raise _Halted(cause, failures)
    return failures


def _stopped(command: str, halted: _Halted, done: int, total: int, verb: str,
             again: str) -> Stopped:
    """The one message of a transfer that stopped, with its counts."""
    failed = len(halted.failures)
    counts = (f"{done} of {total} files {verb}, " + (f"{failed} failed, " if failed else "") +
              f"{total - done - failed} not {verb}")
    if halted.cause is None:
        return Stopped(f"interrupted: {counts}; {again}.", INTERRUPTED)
    return Stopped(f"{halted.cause.message} Stopped: {counts}; once the server answers, "
                   f"{again}.", halted.cause.exit_code)


class PutResult(NamedTuple):
    sent: int
    skipped: int                   # unchanged
    failed: int
    to_send: list[Upload]          # what was (or, in a dry run, would be) sent
    dry_run: bool
    not_sent: int = 0              # left when the command stopped (Ctrl-C, server unreachable)

    def summary(self) -> str:
        if self.dry_run:
            return (f"{len(self.to_send)} to send (dry run, nothing sent), {self.skipped} "
                    f"skipped (unchanged), {self.failed} failed")
        return (f"{self.sent} sent, {self.skipped} skipped (unchanged), {self.failed} failed" +
                (f", {self.not_sent} not sent (stopped)" if self.not_sent else ""))

    def as_json(self) -> dict:
        answer = {"sent": self.sent, "skipped": self.skipped, "failed": self.failed,
                  "dry_run": self.dry_run}
        if self.not_sent:
            answer["not_sent"] = self.not_sent
        if self.dry_run:
            answer["to_send"] = [{"local": str(u.local), "remote": u.remote, "size": u.size}
                                 for u in self.to_send]
        return answer


def put(client: Client, sources: list[str], dest: str, *, jobs: int = 4,
        quiet: bool = False, bars: bool | None = None, checksum: bool = False,
        dry_run: bool = False, report=None) -> int:
    """Upload what changed; `report(PutResult)` is called at the end (the command prints it)."""
    jobs = max(1, jobs)
    unreadable: list[str] = []

    def warn(text: str, failure: bool = True) -> None:
        if failure:
            unreadable.append(text)
        print(shown(text), file=sys.stderr, flush=True)

    listings = RemoteListings(client, jobs)
    try:
        planned, directories = plan_put(client, sources, dest, warn, listings)
        _refuse_one_destination_twice(planned)
        uploads, skipped, existing = select_changed(client, planned, directories,
                                                    checksum=checksum, jobs=jobs,
                                                    listings=listings)
    finally:
        listings.close()
    if dry_run:
        result = PutResult(0, skipped, len(unreadable), uploads, True)
        if report:
            report(result)
        return FAILED if unreadable else OK
    # A directory a file goes into is made by that file's upload (with its parents); the
    # others (empty ones) here, before any file.
    fed = {item.directory for item in uploads}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mkdir") as pool:
        for future in [pool.submit(client.request, "POST", "/api/filesystem/dirs",
                                   json={"path": d}, retry=True, what=d)
                       for d in _leaves(directories - existing) if d not in fed]:
            future.result()
    progress = Progress("put", sum(u.size for u in uploads), len(uploads), quiet=quiet,
                        bars=bars)
    client.on_wait = lambda text: progress.message(f"put: {text}")
    uploader = Uploader(client, progress, UploadState(), ThreadPoolExecutor(
        max_workers=jobs, thread_name_prefix="part"))
    batches, alone = plan_batches(uploads)
    halted = None
    try:
        failures = _run_all("put", jobs, batches, alone, uploader.upload, uploader.send_batch,
                            lambda item: str(item.local), progress, client)
    except _Halted as stop:
        halted, failures = stop, stop.failures
    finally:
        uploader.parts.shutdown(wait=False, cancel_futures=True)
        progress.close(summary=bool(uploads))
    if halted is not None:
        sent = progress.files_done
        if report:
            report(PutResult(sent, skipped, len(failures) + len(unreadable), uploads, False,
                             len(uploads) - sent - len(failures)))
        raise _stopped("put", halted, sent, len(uploads), "sent",
                       "running the same command again sends the rest (a big file resumes "
                       "where it stopped)")
    _advise_put(failures, len(uploads))
    if report:
        report(PutResult(len(uploads) - len(failures), skipped, len(failures) + len(unreadable),
                         uploads, False))
    return _exit_code(failures) if failures else (FAILED if unreadable else OK)


def _refuse_one_destination_twice(planned: list[Upload]) -> None:
    """Two local files bound for one remote path (`put a/sub b/sub /D/` when both hold
    sub/x): whichever went last would win, a different one each run. Refused before anything
    is sent, naming both."""
    first: dict[str, Upload] = {}
    for item in planned:
        other = first.setdefault(item.remote, item)
        if other is not item:
            raise CliError(f"{other.local} and {item.local} would both be {item.remote}; send "
                           f"them in separate commands to different places, or rename one.",
                           USAGE)


# A share's refusals of a write: its owner's to change, not a name's or a retry's.
_SHARE_REFUSALS = frozenset({"read_only_share", "share_not_found"})


def _advise_put(failures: list[tuple[str, BaseException]], total: int) -> None:
    """What to do about the files that failed: run the command again for those that may go
    through then, free space first for those over the quota, something else for those refused
    as they are (a name taken, refused)."""
    over_quota = sum(1 for _, exc in failures
                     if isinstance(exc, CliError) and exc.code == QUOTA_EXCEEDED)
    by_share = sum(1 for _, exc in failures
                   if isinstance(exc, CliError) and exc.code in _SHARE_REFUSALS)
    unreadable = sum(1 for _, exc in failures if isinstance(exc, PermissionError))
    refused = sum(1 for _, exc in failures if isinstance(exc, CliError) and exc.permanent
                  and exc.code != QUOTA_EXCEEDED and exc.code not in _SHARE_REFUSALS)
    again = len(failures) - refused - over_quota - by_share - unreadable
    if again:
        print(f"put: {again} of {total} files failed; run the same command again to retry "
              f"(big files resume where they stopped).", file=sys.stderr)
    if unreadable:
        print(f"put: {unreadable} of {total} files could not be read here (permission denied): "
              f"give yourself read access to them, then run the same command again.",
              file=sys.stderr)
    if by_share:
        print(f"put: {by_share} of {total} files were refused by the share (read-only for you, "
              f"or no longer granted): ask its owner; running the same command again does "
              f"not help until then.", file=sys.stderr)
    if over_quota:
        print(f"put: {over_quota} of {total} files did not fit in your quota: free space "
              f"(delete files, their earlier versions go with them, and empty the trash with "
              f"'cloudstrype trash empty'; 'cloudstrype usage' shows what takes it), then run "
              f"the same command again to send the rest.", file=sys.stderr)
    if refused:
        print(f"put: {refused} of {total} files were refused, and would be again as they are "
              f"(see why above): rename them, move what is in their way, or put them "
              f"elsewhere; running the same command again does not help.", file=sys.stderr)


# -- get ------------------------------------------------------------------------------------------

class Download(NamedTuple):
    node: dict
    target: Path
    remote: str

    @property
    def size(self) -> int:
        return int(self.node.get("size") or 0)


def _safe_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and os.sep not in name \
        and "\x00" not in name


def plan_get(client: Client, sources: list[str], dest: str, jobs: int
             ) -> tuple[list[Download], list[tuple[Path, Path]]]:
    """(the files to fetch, the local folders to make: (DEST, a folder at or below it))."""
    dest_path = Path(dest)
    into = dest_path.is_dir() or dest.endswith(("/", os.sep)) or len(sources) > 1
    if into and (dest_path.exists() or dest_path.is_symlink()) and not dest_path.is_dir():
        raise CliError(f"{dest} is {'a file' if dest_path.exists() else 'a broken link'}, not a "
                       f"folder, so nothing can be written into it; give a folder (or, for one "
                       f"file, the file's new name without a '/' at the end).", CONFLICT)
    downloads: list[Download] = []
    directories: list[tuple[Path, Path]] = []
    for source in sources:
        path = remote.normalize(source)
        node = remote.lookup(client, path)
        if node.get("type") == remote.DIRECTORY:
            if dest_path.exists() and not dest_path.is_dir():
                raise CliError(f"{dest} is a file; a directory cannot be copied onto it.",
                               CONFLICT)
            contents = source.endswith("/") or not node.get("name")
            top = dest_path if contents else dest_path / node["name"]
            directories.append((dest_path, top))
            for relative, entry in remote.walk(client, path, jobs):
                parts = relative.split("/")
                if not all(_safe_name(p) for p in parts):
                    raise CliError(f"{remote.join(path, relative)}: the name cannot be used "
                                   f"on this system.", USAGE)
                local = top.joinpath(*parts)
                if entry.get("type") == remote.DIRECTORY:
                    directories.append((dest_path, local))
                else:
                    downloads.append(Download(entry, local, remote.join(path, relative)))
        else:
            target = dest_path / node["name"] if into else dest_path
            downloads.append(Download(node, target, path))
    _refuse_one_target_twice(downloads)
    return downloads, directories


def _refuse_one_target_twice(downloads: list[Download]) -> None:
    """Two remote files bound for one local path (`get /a/ /b/ D/` when both hold sub/x):
    whichever landed last would win. Refused before anything is fetched, naming both (as
    `put` refuses the mirror case)."""
    first: dict[Path, Download] = {}
    for item in downloads:
        other = first.setdefault(item.target, item)
        if other is not item:
            raise CliError(f"{other.remote} and {item.remote} would both be {item.target}; get "
                           f"them in separate commands to different places.", USAGE)


def _make_folders(directories: list[tuple[Path, Path]]) -> dict[Path, CliError]:
    """Make the local folders of a `get` (each folder's failure its own: the others are
    made); {the path at fault: why} for those that could not be."""
    refused: dict[Path, CliError] = {}
    for base, folder in directories:
        if folder in refused or any(parent in refused for parent in folder.parents):
            continue
        try:
            _make_folder(base, folder)
        except _FolderRefused as exc:
            refused.setdefault(exc.path, exc.error)
    return refused


class _FolderRefused(Exception):
    def __init__(self, path: Path, error: CliError):
        super().__init__(error.message)
        self.path, self.error = path, error


def _make_folder(base: Path, folder: Path) -> None:
    """Make `folder` below the destination `base` one level at a time, never through a
    symbolic link below `base` (one there could lead the files anywhere: rsync and tar refuse
    them too); `base` itself, as given, may be one."""
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _FolderRefused(base, _folder_error(base, exc)) from None
    current = base
    for part in folder.relative_to(base).parts:
        current = current / part
        try:
            os.mkdir(current)
            continue
        except FileExistsError:
            pass
        except OSError as exc:
            raise _FolderRefused(current, _folder_error(current, exc)) from None
        try:
            mode = os.lstat(current).st_mode
        except OSError as exc:
            raise _FolderRefused(current, _folder_error(current, exc)) from None
        if stat_module.S_ISLNK(mode):
            raise _FolderRefused(current, CliError(
                f"{current} is a symbolic link; nothing is written through one inside the "
                f"destination (it could lead outside it): remove it, or get into another "
                f"folder.", CONFLICT))
        if not stat_module.S_ISDIR(mode):
            raise _FolderRefused(current, CliError(
                f"{current} is a file, so the folder cannot be made there; move it away, or "
                f"get into another folder.", CONFLICT))


def _folder_error(path: Path, exc: OSError) -> CliError:
    if isinstance(exc, FileExistsError):
        return CliError(f"{path} is a file, so the folder cannot be made there; move it away, "
                        f"or get into another folder.", CONFLICT)
    return CliError(f"{path}: the folder cannot be made ({exc.strerror or exc}).", FAILED)


class Downloader:
    def __init__(self, client: Client, progress: Progress, part_pool: ThreadPoolExecutor,
                 jobs: int = 4):
        self.client = client
        self.progress = progress
        self.parts = part_pool
        # Ranges of one file asked for ahead of the one being read: the server prepares them
        # meanwhile, on as many threads.
        self.window = max(2, 2 * jobs)
        # The files of batch reads are written one batch at a time: eight threads writing
        # small files at once spent more in handing the GIL around (a wake-up per system call)
        # than in writing.
        self._writing = threading.Lock()
        # The mode a new file gets (mkstemp makes its files 0600), read here, on the main
        # thread: reading the umask means setting it.
        mask = os.umask(0o022)
        os.umask(mask)
        self.mode = 0o666 & ~mask

    def download(self, item: Download) -> None:
        """Fetch one file into its target, from the start again if it is replaced meanwhile
        (a shared file: its reader cannot pin a version)."""
        for attempt in range(1, CHANGED_TRIES + 1):
            try:
                return self._download_once(item)
            except CliError as exc:
                if exc.code != "file_changed" or attempt == CHANGED_TRIES:
                    raise
                self.progress.message(f"{item.remote} was replaced while it was read; "
                                      f"reading the new version from the start.")
            except OSError as exc:
                # (Only a local write's errors: the network's are OSErrors too, handled above
                # this, and must reach their handlers as they are.)
                if exc.filename is not None or exc.errno not in _LOCAL_WRITE_ERRORS:
                    raise
                # A write into the local file: said with the file it was writing ("No space
                # left on device" alone named only the remote file: disk sweep).
                raise OSError(exc.errno, exc.strerror, str(item.target)) from exc

    def _download_once(self, item: Download) -> None:
        _check_target(item.target)
        info = remote.file_info(self.client, item.node["id"])
        size, expected = int(info.get("size") or 0), info.get("sha256")
        params, pin = _content_pin(info)
        url = f"/api/filesystem/data/{item.node['id']}"
        item.target.parent.mkdir(parents=True, exist_ok=True)
        fd, part = _new_part(item.target, self.mode)
        bar = None
        try:
            bar = self.progress.file_bar(item.remote, size)
            if size <= RANGE_SIZE:
                data, _ = self.client.get_bytes(url, params=params, headers=pin,
                                                what=item.remote)
                if len(data) != size:
                    raise CliError(f"{item.remote}: received {len(data)} bytes, expected "
                                   f"{size}.")
                _write_all(fd, data)
                digest = hashlib.sha256(data).hexdigest()
                self.progress.advance(size, bar)
            else:
                digest = self._ranges(url, params, pin, size, fd, item, bar)
            actual = os.fstat(fd).st_size
            if actual != size:
                raise CliError(f"{item.remote}: wrote {actual} bytes, expected {size}.")
            if expected and digest != expected:
                raise CliError(f"{item.remote}: the downloaded bytes do not match the file's "
                               f"sha256 ({digest} != {expected}); nothing was written.")
            _keep_part(fd, part, item.target)
        except BaseException:
            _discard(fd, part)
            if bar is not None:
                bar.close()
            raise
        _set_modified(item.target, info.get("modified"))
        self.progress.file_done(bar)

    def read_batch(self, items: list[Download]) -> list[tuple[Download, BaseException]]:
        """Download `items` (small files) through POST /api/filesystem/read, asking again for
        what one answer could not carry; the files that failed, each with its own error. A
        batch refused as a whole (a server without that route) goes one request per file."""
        failures: list[tuple[Download, BaseException]] = []
        pending = {item.node["id"]: item for item in items}
        while pending:
            try:
                response = self.client.request(
                    "POST", "/api/filesystem/read", json={"ids": list(pending)}, retry=True,
                    ok=(200,), what=f"{len(pending)} files")
            except CliError as exc:
                # Refused as a whole (a server without the route: 403 from API Gateway, 404
                # here): file by file, each then failing, if it does, in its own words.
                if exc.status is None or not 400 <= exc.status < 500 or exc.status == 401:
                    raise
                return failures + self._one_by_one(list(pending.values()))
            answer, contents = _read_form(response.content,
                                          response.headers.get("Content-Type", ""))
            results = answer.get("results") or []
            with self._writing:
                for result in results:
                    item = pending.pop(result.get("id"), None)
                    if item is None:
                        continue
                    try:
                        self._write_read(item, result, contents.get(item.node["id"]))
                    except (CliError, OSError) as exc:
                        failures.append((item, exc))
            # What is left must be what the server left to ask again, and it must have
            # answered something (else asking again would go on for ever).
            again = set(answer.get("remaining") or []) if results else set()
            for file_id in [i for i in pending if i not in again]:
                item = pending.pop(file_id)
                failures.append((item, CliError(f"{item.remote}: the server's answer to the "
                                                f"batch does not mention this file.")))
        return failures

    def _one_by_one(self, items: list[Download]) -> list[tuple[Download, BaseException]]:
        failures = []
        for item in items:
            try:
                self.download(item)
            except (CliError, OSError) as exc:
                failures.append((item, exc))
        return failures

    def _write_read(self, item: Download, result: dict, data: bytes | None) -> None:
        """One file of a batch read: checked against the size and sha256 the server gives for
        the version it read, written to a temporary file (_new_part), then renamed."""
        status = int(result.get("status") or 500)
        if status != 200:
            error = result.get("error") or {}
            raise CliError(f"{item.remote}: {error.get('message') or f'HTTP {status}'}",
                           exit_code_for_status(status, error.get("code")), status=status,
                           code=error.get("code"))
        file = result.get("file") or {}
        if data is None or len(data) != file.get("size") or (
                file.get("sha256") and hashlib.sha256(data).hexdigest() != file["sha256"]):
            raise CliError(f"{item.remote}: the bytes received do not match the size and "
                           f"sha256 the server gives; nothing was written.")
        _check_target(item.target)
        item.target.parent.mkdir(parents=True, exist_ok=True)
        fd, part = _new_part(item.target, self.mode)
        try:
            _write_all(fd, data)
            _keep_part(fd, part, item.target)
        except BaseException:
            _discard(fd, part)
            raise
        _set_modified(item.target, file.get("modified"))
        self.progress.advance(len(data))
        self.progress.file_done()

    def _ranges(self, url: str, params: dict, pin: dict, size: int, fd: int, item: Download,
                bar) -> str:
        """Write the file into the open file `fd`; the sha256 of the whole. A server on this
        machine writes it there itself (local_transfer.py); any other, or one whose socket
        fails, sends it over HTTP."""
        here = self.client.transfer_socket()
        if here is not None:
            written = [0]
            try:
                return self._ranges_here(here, url, params, pin, size, fd, item, bar,
                                         written)
            except local_transfer.Unavailable as exc:
                self.progress.advance(-written[0], bar)
                self.progress.message(f"{item.remote}: the server's local socket failed "
                                      f"({exc}); downloading over HTTP.")
        digest = hashlib.sha256()
        os.ftruncate(fd, size)

        def write(offset: int, piece: memoryview) -> None:
            digest.update(piece)
            _write_at(fd, piece, offset)
            self.progress.advance(len(piece), bar)
            done = offset + len(piece)
            if done % RANGE_SIZE == 0 or done == size:
                _let_pages_go(fd, done, (done - 1) % RANGE_SIZE + 1)

        _read_ranges(self.client, url, params, pin, size, item.remote, self.parts, self.window,
                     write)
        return digest.hexdigest()


    def _ranges_here(self, socket_path: str, url: str, params: dict, pin: dict, size: int,
                     fd: int, item: Download, bar, written: list[int]) -> str:
        """_ranges through the server's local socket: `window` ranges asked for ahead, each
        read by this process from the shares' files where the server's direct-read plan says
        they are (local_transfer.DirectReader), else written into `fd` by the server through a
        connection of its own; hashed in order, from memory or (written by the server) in
        place. `written` counts the bytes advanced on the progress bar, for a fall-back to
        take back."""
        os.ftruncate(fd, size)
        idle: queue.SimpleQueue = queue.SimpleQueue()
        channels: list[local_transfer.Channel] = []
        lock = threading.Lock()

        def borrowed(work):
            try:
                channel = idle.get_nowait()
            except queue.Empty:
                channel = local_transfer.Channel(socket_path, fd, READ_TIMEOUT)
                with lock:
                    channels.append(channel)
            try:
                return work(channel)
            finally:
                idle.put(channel)

        reader = local_transfer.DirectReader()

        def fetch(first: int, last: int, read) -> memoryview | None:
            if read is not None:
                data = reader.read(read, last - first + 1)
                if data is not None:
                    try:
                        _write_at(fd, data, first)
                    except BaseException:
                        reader.done(data)
                        raise
                    return data
            answer, count = borrowed(lambda channel: self.client.get_into_file(
                channel, url, params=params, headers={"Range": f"bytes={first}-{last}", **pin},
                into=first, ok=(206,), what=item.remote))
            range_given = answer.headers.get("Content-Range", f"bytes {first}-{last}/{size}")
            if count != last - first + 1 or range_given != f"bytes {first}-{last}/{size}":
                raise CliError(f"{item.remote}: the server wrote the wrong range "
                               f"({range_given}, {count} bytes) for bytes {first}-{last}.")
            return None

        def plan_from(offset: int) -> list[tuple[int, int, dict | None]] | None:
            answer, _ = borrowed(lambda channel: self.client.get_into_file(
                channel, url, params={**params, "direct": "1"},
                headers={"Range": f"bytes={offset}-{size - 1}"}, into=None, ok=(200,),
                what=item.remote))
            return _direct_spans(answer, offset, size, params.get("version"))

        digest = hashlib.sha256()
        spans = self._spans_here(size, plan_from)
        pending: deque = deque()

        def ask_next() -> None:
            span = next(spans, None)
            if span is not None:
                pending.append((span, self.parts.submit(fetch, *span)))

        try:
            for _ in range(self.window):
                ask_next()
            while pending:
                (first, last, _), done = pending.popleft()
                data = done.result()
                length = last - first + 1
                if data is None:
                    _hash_in_place(digest, fd, first, length)
                    _let_pages_go(fd, last + 1, length)
                else:
                    # Written from memory and hashed there: its pages are left to the kernel.
                    # Written back during the download (_let_pages_go), they took the disk
                    # from the shares' reads: a 256 MiB get from cold shares took 0.73 s
                    # against 0.64 s, and 0.86 s against 0.73 s (medians of 10 and 12, README).
                    digest.update(data)
                    reader.done(data)
                self.progress.advance(length, bar)
                written[0] += length
                ask_next()
        finally:
            for _, done in pending:
                done.cancel()
            for _, done in pending:
                try:
                    done.result()
                except BaseException:       # noqa: BLE001 - failing already, or cancelled
                    pass
            for channel in channels:
                channel.close()
        return digest.hexdigest()

    def _spans_here(self, size: int, plan_from):
        """(first, last, direct-read entry or None) for each range of the file, in order: the
        chunks of the server's direct-read plans while it gives them (a plan at a time, as the
        ranges reach it), else RANGE_SIZE ranges asked of the server."""
        offset = 0
        direct = not self.client.share and local_transfer.direct_reads()
        while offset < size:
            planned = None
            if direct:
                try:
                    planned = plan_from(offset)
                except CliError:        # a server without direct reads, or a file without
                    planned = None      # chunks of its own: by ranges
            if not planned:
                for first in range(offset, size, RANGE_SIZE):
                    yield first, min(size, first + RANGE_SIZE) - 1, None
                return
            for span in planned:
                yield span
            offset = planned[-1][1] + 1


def _direct_spans(answer, offset: int, size: int, version: str | None
                  ) -> list[tuple[int, int, dict | None]] | None:
    """The spans of a direct-read plan (GET /data?direct=1): its chunks, which must follow on
    from `offset` without gaps, each at most a range's size (a chunk read through the server
    is one range), of the version being read; None for a plan that is not so."""
    try:
        plan = answer.json()
        if plan.get("size") != size or (version and plan.get("version") != version):
            return None
        spans, at = [], offset
        for chunk in plan["chunks"]:
            length = chunk["size"]
            # (Each at an offset the file can be mapped at, for _hash_in_place.)
            if chunk["offset"] != at or at % mmap.ALLOCATIONGRANULARITY or \
                    not isinstance(length, int) or not 0 < length <= RANGE_SIZE or \
                    at + length > size:
                return None
            spans.append((at, at + length - 1, chunk.get("read")))
            at += length
        return spans or None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_at(fd: int, data, offset: int) -> None:
    """All of `data` into the file at `offset` (pwrite may write less than asked)."""
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)


def _hash_in_place(digest, fd: int, first: int, length: int) -> None:
    """Hash bytes of the file where they are, in the page cache the server just wrote them to:
    mapped, not copied out (on the benchmark's machine that took 0.19 s for 256 MiB against
    0.28-0.43 s read into a buffer and hashed). `first` is a multiple of RANGE_SIZE, hence of
    the page size."""
    with mmap.mmap(fd, length, prot=mmap.PROT_READ, offset=first) as mapped:
        if hasattr(mapped, "madvise"):
            mapped.madvise(mmap.MADV_WILLNEED)   # map the pages at once, not fault by fault
        digest.update(mapped)


def plan_reads(downloads: list[Download]) -> tuple[list[list[Download]], list[Download]]:
    """(batches of small files, read many to a request; the files to fetch one by one: the
    big ones, and a lone small one). A batch is filled up to the server's file count and about
    what one answer carries: the server answers what fits and names the rest to ask again."""
    small = [d for d in downloads if d.size <= READ_BATCH_FILE_MAX]
    alone = [d for d in downloads if d.size > READ_BATCH_FILE_MAX]
    if len(small) == 1:
        return [], alone + small
    batches: list[list[Download]] = []
    batch: list[Download] = []
    used = 0
    for item in small:
        cost = item.size + BATCH_PART_OVERHEAD
        if batch and (len(batch) >= BATCH_MAX_FILES or used + cost > BATCH_MAX_BYTES):
            batches.append(batch)
            batch, used = [], 0
        batch.append(item)
        used += cost
    if batch:
        batches.append(batch)
    return batches, alone


def _read_form(body: bytes, content_type: str) -> tuple[dict, dict[str, bytes]]:
    """A batch read's answer: its `results` part (JSON) and every other part's bytes by the
    part's name (the file's id)."""
    boundary = content_type.partition("boundary=")[2].strip('"')
    if not content_type.startswith("multipart/form-data") or not boundary:
        raise CliError(f"The server's answer to a batch read is not a form ({content_type}).")
    marker = b"\r\n--" + boundary.encode()
    pieces = (b"\r\n" + body).split(marker)
    answer, contents = None, {}
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        head, found, data = piece.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head) if found else None
        if name is None:
            raise CliError("The server's answer to a batch read has a part without a name.")
        if name.group(1) == b"results":
            answer = json.loads(data)
        else:
            contents[name.group(1).decode()] = data
    if not isinstance(answer, dict):
        raise CliError("The server's answer to a batch read has no results.")
    return answer, contents


def _content_pin(info: dict) -> tuple[dict, dict]:
    """(query, headers) that hold every read of a file's content to the version `info`
    describes: the version by id where the caller may name it (its own files), and its ETag
    in If-Match always (a share's recipient may not name versions): the server answers 412
    file_changed rather than a range of a newer version to join to this one's."""
    params = {"version": info["version"]} if info.get("version") else {}
    return params, ({"If-Match": info["etag"]} if info.get("etag") else {})


def _read_ranges(client: Client, url: str, params: dict, pin: dict, size: int, what: str,
                 pool: ThreadPoolExecutor, window: int, consume) -> None:
    """Give every byte of a file to consume(offset, piece), in order, in READ_PIECE pieces (a
    view of one buffer, used again once consume returns).

    `window` ranges are asked for ahead on the pool's threads, each on its own connection: the
    server reads and decrypts them in parallel, and each waits on its connection once
    answered. The bodies are then read in order on this thread. Reading them as they arrived
    instead would leave each range's bytes to be hashed long after they were received, out of
    the cache: on the benchmark's machine a sha256 of bytes in memory ran at 1.2 GB/s, of the
    same bytes just received at 1.9 GB/s."""
    piece = memoryview(bytearray(min(READ_PIECE, size)))
    starts = iter(range(0, size, RANGE_SIZE))
    pending: deque[tuple[int, Future]] = deque()

    def span(first: int) -> tuple[int, int]:
        return first, min(size, first - first % RANGE_SIZE + RANGE_SIZE) - 1

    def open_range(first: int) -> Body:
        first, last = span(first)
        body = client.open_body(url, params=params, ok=(206,), what=what,
                                headers={"Range": f"bytes={first}-{last}", **pin})
        if body.length != last - first + 1 or body.headers.get(
                "Content-Range", f"bytes {first}-{last}/{size}") != f"bytes {first}-{last}/{size}":
            body.close()
            raise CliError(f"{what}: the server sent the wrong range "
                           f"({body.headers.get('Content-Range')}, {body.length} bytes) for "
                           f"bytes {first}-{last}.")
        return body

    def ask_next() -> None:
        first = next(starts, None)
        if first is not None:
            pending.append((first, pool.submit(open_range, first)))

    for _ in range(window):
        ask_next()
    try:
        while pending:
            first, opened = pending.popleft()
            offset, last = span(first)
            body, broken = opened.result(), 0
            try:
                while offset <= last:
                    if client.stop.is_set():
                        raise Cancelled()
                    count = min(len(piece), last + 1 - offset)
                    try:
                        body.readinto(piece[:count])
                    except BodyBroken as exc:
                        body.close()
                        broken += 1
                        if broken > client.retries:
                            raise CliError(
                                f"{what}: the connection broke {broken} times while the bytes "
                                f"were arriving ({exc}); run the command again.",
                                FAILED) from None
                        client.backoff(broken)
                        body = open_range(offset)       # the rest of this range, again
                        continue
                    consume(offset, piece[:count])
                    offset += count
            finally:
                body.close()
            ask_next()
    finally:
        for _, opened in pending:
            opened.cancel()
        for _, opened in pending:       # answered ones hold a connection each
            try:
                opened.result().close()
            except BaseException:       # noqa: BLE001 - failing already, or cancelled
                pass


# How many times a download starts again when its file is replaced while it is read.
CHANGED_TRIES = 3

# Pages of a download written this long ago are written back by now (see _let_pages_go).
_WRITTEN_BACK_LAG = 8 * RANGE_SIZE


def _let_pages_go(fd: int, done: int, last: int) -> None:
    """After `done` bytes of a download are written and hashed: start writing back the `last`
    ones, and let the kernel drop the pages of those written well before (written back by now;
    dirty pages are not dropped). A file passing through then reuses a few MiB of pages instead
    of taking new ones: on this VM, pages never used before cost more kernel time than the
    rest of the download's writing (README, Benchmarks: what this and the in-place reads
    gained, measured)."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        os.posix_fadvise(fd, done - last, last, os.POSIX_FADV_DONTNEED)
        if done - last >= _WRITTEN_BACK_LAG:
            # The range that many bytes before this one's start: a whole one.
            os.posix_fadvise(fd, done - last - _WRITTEN_BACK_LAG, RANGE_SIZE,
                             os.POSIX_FADV_DONTNEED)
    except OSError:
        pass                # advice only


# The temporary files of the downloads under way, removed by discard_parts when a command
# stops without waiting for them.
_parts_lock = threading.Lock()
_live_parts: set[Path] = set()


_SPECIAL_FILES = ((stat_module.S_ISFIFO, "a FIFO"), (stat_module.S_ISCHR, "a device"),
                  (stat_module.S_ISBLK, "a device"), (stat_module.S_ISSOCK, "a socket"))


def _check_target(target: Path) -> None:
    """A directory where a file must go: refused in words (a rename over it would fail); a
    FIFO, device or socket too: the rename would replace it with a file (/dev/null, for root)."""
    try:
        mode = target.lstat().st_mode
    except OSError:
        return                  # nothing there (or nothing this user can see): written anew
    if stat_module.S_ISDIR(mode):
        raise CliError(f"{target} is a directory, so the file cannot be written there; move "
                       f"it away, or give a destination inside it.", CONFLICT)
    for kind, named in _SPECIAL_FILES:
        if kind(mode):
            raise CliError(f"{target} is {named}, not a file: get writes a file whole and "
                           f"then puts it in its place, which would replace it. Give a "
                           f"file's path, or write into it with `cloudstrype cat`.", CONFLICT)


# A temporary file not written for this long belongs to a download that was killed (one being
# written is touched by every piece); the next download into its directory removes it.
STALE_PART_SECONDS = 3600
_STALE_PART_NAME = re.compile(r"\.[A-Za-z0-9_]{8}" + re.escape(PART_SUFFIX))
_cleared_directories: set[Path] = set()


def _clear_stale_parts(directory: Path) -> None:
    """Remove the temporary files killed downloads left in `directory`, once per run."""
    with _parts_lock:
        if directory in _cleared_directories:
            return
        _cleared_directories.add(directory)
    cutoff = time.time() - STALE_PART_SECONDS
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        try:
            if _STALE_PART_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False) \
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
        except OSError:
            pass                    # gone already, or not ours to remove: left as it is


def _new_part(target: Path, mode: int) -> tuple[int, Path]:
    """(open fd, path) of a new temporary file for `target`, beside it. mkstemp makes it with
    O_EXCL (and O_NOFOLLOW): never a file that was there, never through a symlink, and
    '.XXXXXXXX.cloudstrype-part' is short enough whatever the target's name (up to 255
    bytes)."""
    _clear_stale_parts(target.parent)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=PART_PREFIX, suffix=PART_SUFFIX)
    part = Path(name)
    with _parts_lock:
        _live_parts.add(part)
    try:
        os.fchmod(fd, mode)
    except OSError:
        pass                            # (as mkstemp made it: 0600)
    return fd, part


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _keep_part(fd: int, part: Path, target: Path) -> None:
    """The temporary file, closed and renamed to `target` (replacing what is there)."""
    os.close(fd)
    try:
        os.replace(part, target)
    except BaseException:
        _discard(None, part)
        raise
    with _parts_lock:
        _live_parts.discard(part)


def _discard(fd: int | None, part: Path) -> None:
    """A download's temporary file, closed (fd None: it is) and gone."""
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        part.unlink()
    except OSError:
        pass
    with _parts_lock:
        _live_parts.discard(part)


def discard_parts() -> None:
    """Remove the temporary files of downloads still under way (the command is leaving)."""
    with _parts_lock:
        parts = list(_live_parts)
        _live_parts.clear()
    for part in parts:
        try:
            part.unlink()
        except OSError:
            pass


def _set_modified(path: Path, text: str | None) -> None:
    """Give a downloaded file the remote modification time (ISO text), if there is one."""
    modified = _timestamp(text)
    if modified is not None:
        try:
            os.utime(path, (modified, modified))
        except OSError:
            pass


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def get(client: Client, sources: list[str], dest: str, *, jobs: int = 4, quiet: bool = False,
        bars: bool | None = None) -> int:
    jobs = max(1, jobs)
    planned, directories = plan_get(client, sources, dest, jobs)
    # A folder that cannot be made fails its files (said once, for the folder); the rest go.
    refused = _make_folders(directories)
    downloads, unmade = [], []
    for item in planned:
        at_fault = next((p for p in item.target.parents if p in refused), None)
        if at_fault is None:
            downloads.append(item)
        else:
            unmade.append((item.remote, refused[at_fault]))
    for error in refused.values():
        count = sum(1 for _, e in unmade if e is error)
        print(shown(f"get: {error.message} ({count} file{'' if count == 1 else 's'} not "
                    f"written)"), file=sys.stderr, flush=True)
    progress = Progress("get", sum(d.size for d in downloads),
                        len(downloads), quiet=quiet, bars=bars)
    client.on_wait = lambda text: progress.message(f"get: {text}")
    downloader = Downloader(client, progress, ThreadPoolExecutor(
        max_workers=jobs, thread_name_prefix="range"), jobs)
    batches, alone = plan_reads(downloads)
    halted = None
    try:
        failures = _run_all("get", jobs, batches, alone, downloader.download,
                            downloader.read_batch, lambda d: d.remote, progress, client)
    except _Halted as stop:
        halted, failures = stop, stop.failures
    finally:
        downloader.parts.shutdown(wait=False, cancel_futures=True)
        progress.close(summary=True)
    failures = unmade + failures
    if halted is not None:
        discard_parts()
        halted.failures = failures
        raise _stopped("get", halted, progress.files_done, len(planned), "received",
                       "running the same command again fetches the files again")
    if failures:
        print(f"get: {len(failures)} of {len(planned)} files failed.", file=sys.stderr)
    return _exit_code(failures)


# -- cat ------------------------------------------------------------------------------------------

def cat(client: Client, path: str, out=None, *, jobs: int = 4) -> int:
    out = out or sys.stdout.buffer
    node = remote.lookup(client, path)
    if node.get("type") == remote.DIRECTORY:
        raise CliError(f"{remote.normalize(path)} is a directory.", USAGE)
    info = remote.file_info(client, node["id"])
    size, expected = int(info.get("size") or 0), info.get("sha256")
    params, pin = _content_pin(info)
    url = f"/api/filesystem/data/{node['id']}"
    digest = hashlib.sha256()
    if size <= RANGE_SIZE:
        data, _ = client.get_bytes(url, params=params, headers=pin, what=path)
        digest.update(data)
        out.write(data)
    else:
        def write(offset: int, piece: memoryview) -> None:
            digest.update(piece)
            out.write(piece)

        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="range") as pool:
            _read_ranges(client, url, params, pin, size, path, pool, max(2, jobs), write)
    out.flush()
    if expected and digest.hexdigest() != expected:
        raise CliError(f"{path}: the bytes received do not match the file's sha256.", FAILED)
    return OK
