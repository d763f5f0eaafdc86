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

The command's other GETs (a file's details, listings) go through the socket too, on
connections of their own that carry no file (Client._local_get), and the socket is found
among this OS user's without HTTP (discover): a command that makes no other request never
loads an HTTP client (`requests` took ~70 ms of a 256 MiB `get`'s ~400 ms on the benchmark's
machine). Anything else (POSTs, a token's refresh, a body streamed in ranges) goes over HTTP.

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
import tempfile
import threading
from urllib.parse import urlsplit

# The server's infra/local/transfer.py declares these; tests/cli checks the copies.
WELL_KNOWN_PATH = "/.well-known/cloudstrype-transfer"
MAX_LINE_BYTES = 64 * 1024
SWITCH = "CLOUDSTRYPE_LOCAL_TRANSFER"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# The server's refusal of an answer to send back that is not text (infra/local/transfer.py).
NOT_TEXT = "answer_not_text"
# An answer line read at most: a range's answer is a few hundred bytes, a direct-read plan at
# most ~40 KiB (the server's files.LOCAL_PLAN_MAX_BYTES, escaped in the line); a listing's page
# as big as API Gateway's largest answer (~6 MB), its quotes escaped again in the line: a
# longer one goes over HTTP.
ANSWER_MAX_BYTES = 16 * 1024 * 1024
# A chunk's bytes at most (the server's codec: MAX_CHUNK_SIZE): a buffer of this size serves
# every chunk of a direct read.
CHUNK_BUFFER_BYTES = 4 * 1024 * 1024


class Unavailable(Exception):
    """The socket cannot carry this download (gone, closed, refused): HTTP then."""


class NoAnswer(Unavailable):
    """The server did not answer in time (a stalled or overloaded server, not a broken
    socket): the connection is out of step and closed; HTTP would wait as long."""


class AnswerTooLong(Unavailable):
    """An answer longer than ANSWER_MAX_BYTES: that request goes over HTTP."""


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


def _server_port(server: str) -> int | None:
    """The port of `server` if it is an address on this machine (loopback), else None."""
    try:
        parts = urlsplit(server)
        if parts.hostname not in LOOPBACK:
            return None
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None


def usable(server: str) -> bool:
    """Whether a socket may carry this CLI's requests to `server` at all."""
    return enabled() and hasattr(socket, "send_fds") and _server_port(server) is not None


def discover(server: str) -> str | None:
    """The transfer socket of `server`, found among this OS user's sockets (the server's
    infra/local/transfer.py socket_path folder) by asking each which address its server
    listens on: no HTTP request, so a command needs no HTTP client. None if none is it."""
    port = _server_port(server)
    if not usable(server):
        return None
    folder = os.path.join(tempfile.gettempdir(), f"cloudstrype-{os.getuid()}")
    try:
        folder_stat = os.lstat(folder)
        if not stat.S_ISDIR(folder_stat.st_mode) or folder_stat.st_uid != os.getuid() or \
                folder_stat.st_mode & 0o077:
            return None             # not this user's alone: nothing in it is trusted
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return None
    asked = (urlsplit(server).hostname or "").lower()
    found = []
    for entry in entries:
        try:
            if not stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                continue
            channel = Channel(entry.path, None, 2.0)
        except (OSError, Unavailable):
            continue
        try:
            answer, _ = channel.get(WELL_KNOWN_PATH, {}, {}, None)
            told = answer.json() if answer.status_code == 200 else {}
            address = str(told.get("server") or "")
            host, _, told_port = address.rpartition(":")
            if told_port.isdigit() and int(told_port) == port and \
                    _same_host(asked, host.strip("[]").lower()) and \
                    told.get("socket") == entry.path:
                found.append(entry.path)
        except (Unavailable, OSError, ValueError, AttributeError):
            pass
        finally:
            channel.close()
    # Two servers at that port (one on 127.0.0.1, one on ::1, asked as "localhost"): which one
    # the address reaches is not known here, so neither socket is used.
    return found[0] if len(found) == 1 else None


def _same_host(asked: str, listening: str) -> bool:
    """Whether a server listening on `listening` is the one at `asked` (both loopback, or a
    wildcard): the port alone picked a server on ::1 for 127.0.0.1 (review sweep)."""
    if listening in ("", "::"):
        return True                 # every address of the machine
    if listening == "0.0.0.0":
        return asked in ("127.0.0.1", "localhost")
    if asked == listening:
        return True
    return "localhost" in (asked, listening) and {asked, listening} <= LOOPBACK


def locate(client) -> str | None:
    """The transfer socket of the client's server, if it is on this machine and has one:
    found among this user's sockets (Client.found_socket: discover, once per command), else
    asked of the server over HTTP."""
    if not usable(client.server):
        return None
    found = client.found_socket()
    if found is not None:
        return found
    try:
        response = client.session.get(client.server + WELL_KNOWN_PATH, timeout=(2, 5))
        found = response.json().get("socket") if response.status_code == 200 else None
    except (OSError, ValueError, AttributeError):     # (requests' errors are OSErrors)
        return None
    return found if isinstance(found, str) and os.path.exists(found) else None


class Headers(dict):
    """An answer's headers, looked up whatever the case of the name (as HTTP's are)."""

    def __init__(self, given: dict | None = None):
        super().__init__((str(k).lower(), str(v)) for k, v in (given or {}).items())

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name) -> bool:
        return super().__contains__(str(name).lower())

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)


class Answer:
    """A GET's answer from the socket, with what the CLI reads of an HTTP response."""

    def __init__(self, status: int, headers: dict, body: str):
        self.status_code = status
        self.headers = Headers(headers)
        self.text = body
        self.content = body.encode()

    def json(self):
        return json.loads(self.text)

    def close(self) -> None:
        pass


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
    """One connection to the socket; the file goes with its first request (`fd` None: a
    connection for answers sent back only, "into" null)."""

    def __init__(self, path: str, fd: int | None, timeout: float):
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
            Answer, int]:
        """(the answer, without its body if it was written; the bytes written into the file
        at `into`; `into` None: with its body, nothing written)."""
        line = json.dumps({"path": path, "query": query, "headers": headers,
                           "into": into}).encode() + b"\n"
        try:
            if self.sent_file or self.fd is None:
                self.sock.sendall(line)
            else:
                socket.send_fds(self.sock, [line], [self.fd])
                self.sent_file = True
            answer = self.reader.readline(ANSWER_MAX_BYTES)
        except TimeoutError:
            raise NoAnswer(f"the server did not answer within {self.sock.gettimeout():g} s "
                           f"on its transfer socket") from None
        except OSError as exc:
            raise Unavailable(f"the transfer socket failed: {exc}") from None
        if not answer.endswith(b"\n"):
            if len(answer) >= ANSWER_MAX_BYTES:
                raise AnswerTooLong(f"the server's answer was longer than {ANSWER_MAX_BYTES} "
                                    f"bytes")
            raise Unavailable("the server closed the transfer socket")
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
            return Answer(int(parsed["status"]), dict(parsed.get("headers") or {}),
                          str(parsed.get("body") or "")), int(parsed.get("written") or 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Unavailable("the transfer socket answered something else than JSON") \
                from None

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
