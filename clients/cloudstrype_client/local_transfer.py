"""Downloads from a server on this machine, without HTTP's copies of every byte.

`cloudstrype serve` opens a Unix socket for this (its infra/local/transfer.py describes it).
The CLI hands over the file it is writing and first asks for the file's direct-read plan
(GET /data/{id}?direct=1, answered through this socket alone): for each chunk, the files of
the shares to decode it from and its key. It reads those files and decodes each chunk with
the server's own codec (cloudstrype.pipeline.codec, installed with the CLI), so each byte is
read, decrypted and written once, by one process. A chunk it cannot read so (a share missing,
damaged or on a storage that is not a folder here) it asks for as a range, which the server
writes into the file itself, reading, repairing and reporting as its reads do. Either way the
CLI hashes the whole for its end-to-end SHA-256, as it hashes what arrives over HTTP.

Any server but one on this machine gets HTTP; CLOUDSTRYPE_LOCAL_TRANSFER=off does too, and
=ranges keeps the socket but not the direct reads.
"""
from __future__ import annotations

import functools
import json
import os
import queue
import socket
import stat
import struct
import threading
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

# The server's infra/local/transfer.py declares these; tests/cli checks the copies.
WELL_KNOWN_PATH = "/.well-known/cloudstrype-transfer"
MAX_LINE_BYTES = 64 * 1024
SWITCH = "CLOUDSTRYPE_LOCAL_TRANSFER"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# An answer line read at most: a range's answer is a few hundred bytes, a direct-read plan at
# most ~40 KiB (the server's files.LOCAL_PLAN_MAX_BYTES, escaped in the line), with room.
ANSWER_MAX_BYTES = 1024 * 1024
# A chunk's bytes at most (the server's codec: MAX_CHUNK_SIZE): a buffer of this size serves
# every chunk of a direct read.
CHUNK_BUFFER_BYTES = 4 * 1024 * 1024


class Unavailable(Exception):
    """The socket cannot carry this download (gone, closed, refused): HTTP then."""


def enabled() -> bool:
    return os.environ.get(SWITCH, "on").lower() not in ("off", "0", "false", "no")


def direct_reads() -> bool:
    """Whether this CLI reads shares itself when the server says where they are: the switch
    allows it and the server's codec is installed beside the CLI."""
    return enabled() and os.environ.get(SWITCH, "on").lower() != "ranges" and \
        _codec() is not None


@functools.cache
def _codec():
    try:
        from cloudstrype.pipeline import codec
    except ImportError:         # the CLI installed without the server: ranges only
        return None
    return codec


def locate(client) -> str | None:
    """The transfer socket of the client's server, if it is on this machine and has one."""
    if not enabled() or not hasattr(socket, "send_fds") or \
            urlsplit(client.server).hostname not in LOOPBACK:
        return None
    try:
        response = client.session.get(client.server + WELL_KNOWN_PATH, timeout=(2, 5))
        found = response.json().get("socket") if response.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) and os.path.exists(found) else None


class DirectReader:
    """Reads chunks from their shares' files as a direct-read plan names them, decoded as the
    server decodes them (cloudstrype.pipeline.codec: the GCM tag authenticates every byte).
    Its buffers are reused: each thread's for the shares it reads, and the chunks' own, given
    back with done() once their bytes are hashed (new memory, not the reading or decrypting,
    was most of a download's kernel time on the benchmark's VM)."""

    def __init__(self):
        self._threads = threading.local()
        self._free: queue.SimpleQueue = queue.SimpleQueue()

    def read(self, read, size: int) -> memoryview | None:
        """The chunk's `size` bytes, in a buffer of this reader's (give it back with done());
        None if they cannot be read so (a share gone, replaced, of another size or failing its
        tag, an entry this codec does not know): the server is asked for them instead, and
        its read finds and reports what is wrong."""
        codec = _codec()
        if codec is None or not isinstance(read, dict):
            return None
        out = self._chunk_buffer(size)
        try:
            meta = codec.ChunkMeta.from_dict(read["meta"])
            if meta.share_size > CHUNK_BUFFER_BYTES + 64:   # no share of a chunk is bigger
                raise ValueError("not a chunk's share")
            shares = {}
            for slot, share in enumerate(read["shares"]):
                data = self._share_file(str(share["file"]), meta.share_size, slot)
                if data is None:
                    raise ValueError("not a share")
                shares[int(share["index"])] = data
            key = bytes.fromhex(read["key"]) if read.get("key") else None
            if codec.decode_into(str(read["chunk"]), shares, meta, key, out) == size:
                return memoryview(out)[:size]
        except (codec.CodecError, OSError, ValueError, KeyError, TypeError):
            pass
        self._free.put(out)
        return None

    def done(self, view: memoryview) -> None:
        """Take back the buffer of a chunk read()."""
        buffer = view.obj
        view.release()
        self._free.put(buffer)

    def _chunk_buffer(self, size: int) -> bytearray:
        try:
            buffer = self._free.get_nowait()
        except queue.Empty:
            buffer = None
        return buffer if buffer is not None and len(buffer) >= size else \
            bytearray(max(size, CHUNK_BUFFER_BYTES))

    def _share_file(self, path: str, size: int, slot: int) -> memoryview | None:
        """A share's file read as the local storage reads it (a regular file, not a link; at
        most one byte more than recorded, so a grown one fails its size check), into this
        thread's buffer `slot`; its pages are let go, as that storage lets go of a share read
        whole."""
        buffers = getattr(self._threads, "buffers", None)
        if buffers is None:
            buffers = self._threads.buffers = []
        while len(buffers) <= slot:
            buffers.append(bytearray(0))
        if len(buffers[slot]) < size + 1:
            buffers[slot] = bytearray(size + 1)
        view = memoryview(buffers[slot])[:size + 1]
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            if hasattr(os, "posix_fadvise"):
                # The whole share asked of the disk at once, not a readahead window at a time.
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            got = 0
            while got < len(view):
                count = os.readv(fd, [view[got:]])
                if not count:
                    break
                got += count
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            return view[:got]
        finally:
            os.close(fd)


def _peer_uid(connection: socket.socket) -> int:
    """The OS user of the process at the other end of a Unix socket (OSError where the
    system cannot tell: such a socket is not used)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        raise OSError("this system does not tell a socket's peer")
    credentials = connection.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


class Channel:
    """One connection to the socket; the file goes with its first request."""

    def __init__(self, path: str, fd: int, timeout: float):
        self.fd = fd
        self.sent_file = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
            owner = _peer_uid(self.sock)
        except OSError as exc:
            self.sock.close()
            raise Unavailable(f"cannot connect to {path}: {exc}") from None
        if owner != os.getuid():
            # The file and the token go only to a server of this OS user (the server checks
            # the CLI the same way).
            self.sock.close()
            raise Unavailable(f"{path} is another user's socket")
        self.reader = self.sock.makefile("rb")

    def get(self, path: str, query: dict, headers: dict, into: int | None) -> tuple[
            requests.Response, int]:
        """(the answer as a requests.Response without its body if it was written, the bytes
        written into the file at `into`; `into` None: with its body, nothing written)."""
        line = json.dumps({"path": path, "query": query, "headers": headers,
                           "into": into}).encode() + b"\n"
        try:
            if self.sent_file:
                self.sock.sendall(line)
            else:
                socket.send_fds(self.sock, [line], [self.fd])
                self.sent_file = True
            answer = self.reader.readline(ANSWER_MAX_BYTES)
        except OSError as exc:
            raise Unavailable(f"the transfer socket failed: {exc}") from None
        if not answer.endswith(b"\n"):
            raise Unavailable(f"the server's answer was longer than {ANSWER_MAX_BYTES} bytes"
                              if len(answer) >= ANSWER_MAX_BYTES else
                              "the server closed the transfer socket")
        try:
            parsed = json.loads(answer)
            failed = parsed.get("write_error")
        except (ValueError, AttributeError):
            raise Unavailable("the transfer socket answered something else than JSON") \
                from None
        if isinstance(failed, dict):
            # The server could not write into this file (full, too big): as if the CLI's own
            # write had failed, which HTTP would meet too.
            number = int(failed.get("errno") or 0)
            message = str(failed.get("message") or "the write into the file failed")
            raise OSError(number, message) if number else OSError(message)
        try:
            response = requests.Response()
            response.status_code = int(parsed["status"])
            response.headers = CaseInsensitiveDict(parsed.get("headers") or {})
            response._content = str(parsed.get("body") or "").encode()
            response.encoding = "utf-8"
            return response, int(parsed.get("written") or 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Unavailable("the transfer socket answered something else than JSON") \
                from None

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
