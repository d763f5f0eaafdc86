"""`cloudstrype array`: this machine becomes an array member, a storage backend of the account.

    cloudstrype array --server https://cloudstrype.example.org --dir ~/cloudstrype-member \\
                      --size 20GB [--name NAME] [--token TOKEN]

The program keeps a WebSocket open to the server and answers its requests (docs/array-protocol.md):
`put` (download a share from a presigned URL, check its SHA-256, write it durably), `get` (upload a
share to a presigned URL), `delete`, `stat` and `verify` (hash a share without moving it). Share
bytes only ever go over HTTPS to the staging bucket; the WebSocket carries small JSON messages.

Shares live under DIR/shares/, never more than --size in all. The member id is kept in
DIR/member.json, so a restarted program is the same member with the same shares. Lost connections
are retried with exponential backoff; Ctrl-C or SIGTERM lets running transfers finish and stops.

Only `websockets` and `requests` are needed: nothing of the server side is imported.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

# The command line (`add_parser`, sizes) lives apart, so other commands never import this module.
from cloudstrype_client.array_command import DEFAULT_PING_SECONDS, parse_size  # noqa: F401

VERSION = "0.1.0"
PROTOCOL = 1
OPS = ("put", "get", "delete", "stat", "verify")
MAX_MESSAGE_BYTES = 128 * 1024
MAX_SHARE_BYTES = 16 * 1024 * 1024  # shares are at most a 4 MiB chunk; refuse anything absurd
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Space left free on the disk whatever --size says, so the machine keeps working.
DISK_RESERVE_BYTES = 256 * 1024 * 1024
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 60.0
HTTP_TIMEOUT = (10, 60)
SHUTDOWN_GRACE_SECONDS = 10.0
META_FILE = "member.json"
# Testing aid: seconds to hold each put after its download, before it is made durable.
PUT_DELAY_ENV = "CLOUDSTRYPE_MEMBER_PUT_DELAY"

class Fatal(Exception):
    """Stop the program with this message (exit code 2)."""


class RequestFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class NotHome(RequestFailed):
    """The member's folder is not its own now (ShareStore.check_home): an I/O error to the
    server, and a warning here."""


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# -- the folder ----------------------------------------------------------------------------------

class ShareStore:
    """Shares as files under DIR/shares/, written atomically (temp file, fsync, rename, fsync of
    the directory), with the space they take counted and capped at `size`."""

    def __init__(self, root: Path, size: int):
        self.root = root
        self.size = size
        self.shares_dir = root / "shares"
        self.tmp_dir = root / "tmp"
        self._lock = threading.Lock()
        self.used = 0
        self.count = 0
        self.reserved = 0
        self._lock_file = None
        self.member_id = ""

    def open(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise Fatal(f"Cannot use {self.root}: it is a file; --dir names a folder (made if "
                        f"it is not there).")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.shares_dir.mkdir(exist_ok=True)
            self.tmp_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise Fatal(f"Cannot use {self.root}: {exc.strerror}.") from None
        self._lock_file = (self.root / ".lock").open("a")
        if not _lock(self._lock_file):
            raise Fatal(f"Another member program is using {self.root}; give each member its "
                        f"own folder.")
        for leftover in self.tmp_dir.iterdir():      # transfers cut short by a crash
            with contextlib.suppress(OSError):
                leftover.unlink()
        meta_path = self.root / META_FILE
        meta = {}
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                raise Fatal(f"{meta_path} is damaged; it holds this member's id. Restore it "
                            f"or start with an empty folder.") from None
        if not isinstance(meta.get("member_id"), str) or not meta["member_id"]:
            meta = {"member_id": uuid.uuid4().hex, "created": time.time()}
            self._write_atomic(meta_path, json.dumps(meta, indent=2).encode())
        self.member_id = meta["member_id"]
        self._home = _identity(meta_path)
        self._recount()

    def _recount(self) -> None:
        used = count = 0
        for path in self.shares_dir.rglob("*"):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file():
                    used += path.stat().st_size
                    count += 1
        with self._lock:
            self.used, self.count = used, count

    def check_home(self) -> None:
        """The folder is still this member's: its member.json is the one found at start. A
        folder moved away (or a disk unmounted, an empty folder left in its place) must not
        answer "no such share" for every share, which has the server re-create them all
        elsewhere: it fails every request, in words, until the folder is back."""
        if _identity(self.root / META_FILE) != self._home:
            raise NotHome("io_error", f"{self.root} is not this member's folder now (its "
                                      f"{META_FILE} is gone or another); put the folder back: "
                                      f"this member's shares are in it")

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def path_for(self, key: str) -> Path:
        if not KEY_RE.fullmatch(key or ""):
            raise RequestFailed("bad_request", f"invalid share key {key!r}")
        return self.shares_dir / hashlib.sha256(key.encode()).hexdigest()[:2] / key

    def disk_free(self) -> int:
        return max(0, shutil.disk_usage(self.root).free - DISK_RESERVE_BYTES)

    def free(self) -> int:
        with self._lock:
            room = self.size - self.used - self.reserved
        return max(0, min(room, self.disk_free()))

    def report(self) -> dict:
        return {"capacity": self.size, "used": self.used, "free": self.free()}

    @contextlib.contextmanager
    def reservation(self, size: int):
        disk_free = self.disk_free()
        with self._lock:
            room = min(self.size - self.used - self.reserved, disk_free - self.reserved)
            if size > room:
                raise RequestFailed("full", f"no room for {size} bytes: {max(0, room)} free of "
                                            f"{self.size}")
            self.reserved += size
        try:
            yield
        finally:
            with self._lock:
                self.reserved -= size

    def commit(self, key: str, tmp: Path, size: int) -> None:
        final = self.path_for(key)
        final.parent.mkdir(exist_ok=True)
        with self._lock:
            old = final.stat().st_size if final.exists() else None
            os.replace(tmp, final)
            self.used += size - (old or 0)
            self.count += 0 if old is not None else 1
        _fsync_dir(final.parent)

    def delete(self, key: str) -> bool:
        path = self.path_for(key)
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                gone = True
            else:
                gone = False
        if gone:
            # Removed behind the program's back: what it counts as used may hold it still.
            self._recount()
            return False
        with self._lock:
            self.used -= size
            self.count -= 1
        _fsync_dir(path.parent)
        return True

    def read(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError:
            raise RequestFailed("not_found", f"no share {key}") from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes start..start+length-1 of a share (fewer at its end, none past it)."""
        try:
            with open(self.path_for(key), "rb") as share:
                size = os.fstat(share.fileno()).st_size
                share.seek(start)
                # At most what is there: a length far past the end reads no more.
                return share.read(max(0, min(length, size - start)))
        except FileNotFoundError:
            raise RequestFailed("not_found", f"no share {key}") from None

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file, None if it is not there."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _lock(handle) -> bool:
    """An exclusive lock on an open file, held until it is closed; False if another has it."""
    try:
        import fcntl
    except ImportError:                       # Windows
        import msvcrt
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _fsync_dir(directory: Path) -> None:
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


# -- rates and the status line -----------------------------------------------------------------

class Stats:
    def __init__(self):
        self.connected = False
        self.active = 0
        self.done = 0
        self.failed = 0
        self._events: collections.deque = collections.deque()
        self._lock = threading.Lock()

    def moved(self, direction: str, n: int) -> None:
        with self._lock:
            self._events.append((time.monotonic(), direction, n))

    def rates(self, window: float = 5.0) -> tuple[float, float]:
        cutoff = time.monotonic() - window
        with self._lock:
            while self._events and self._events[0][0] < cutoff:
                self._events.popleft()
            down = sum(n for _t, d, n in self._events if d == "in")
            up = sum(n for _t, d, n in self._events if d == "out")
        return down / window, up / window


# -- the member ----------------------------------------------------------------------------------

class Member:
    def __init__(self, server: str, store: ShareStore, name: str, token: str,
                 login: dict | None, transfers: int, ping_interval: float,
                 ws_url: str | None = None, quiet: bool = False):
        self.server = server.rstrip("/")
        self.store = store
        self.name = name
        self.token = token
        # The CLI's saved login the token is of (renewed with it, and saved back), or None.
        self.login = login
        self.transfers = transfers
        self.ping_interval = ping_interval
        self.ws_url = ws_url
        self.quiet = quiet
        self.stats = Stats()
        self.stopping: asyncio.Event | None = None
        self.removed = False
        self.replaced = False            # another program took this member over
        self.ws = None
        self.welcomed = False
        self._tasks: set[asyncio.Task] = set()
        self._local = threading.local()
        self._put_delay = float(os.environ.get(PUT_DELAY_ENV) or 0)
        self._home_lost = False          # the folder was found not to be this member's
        self._tty = sys.stderr.isatty()
        self._last_line = 0.0

    # -- output ---------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if self._tty:
            sys.stderr.write("\r\033[K")
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    def status_line(self) -> str:
        down, up = self.stats.rates()
        state = "connected" if self.stats.connected else "offline"
        return (f"[{state}] shares {self.store.count}  used {human(self.store.used)} / "
                f"{human(self.store.size)}  in {human(down)}/s  out {human(up)}/s  "
                f"transfers {self.stats.active}")

    async def _status_loop(self) -> None:
        while True:
            if self._tty and not self.quiet:
                sys.stderr.write("\r\033[K" + self.status_line())
                sys.stderr.flush()
                await asyncio.sleep(0.5)
            else:
                if not self.quiet and time.monotonic() - self._last_line >= 60:
                    self._last_line = time.monotonic()
                    print(self.status_line(), file=sys.stderr, flush=True)
                await asyncio.sleep(1)

    # -- HTTP (blocking; run in threads) -------------------------------------------------
    def _http(self):
        import requests
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _discover_ws_url(self) -> str | None:
        """Where to connect: --ws-url, else what the server says. The API answers GET
        /api/config (deployed, the WebSocket API is a host of its own), a web UI's address
        /config.json. None while the server cannot be reached, so the caller retries."""
        if self.ws_url:
            return self.ws_url
        answered = False
        for path in ("/api/config", "/config.json"):
            try:
                response = self._http().get(self.server + path, timeout=HTTP_TIMEOUT)
            except OSError:         # requests' errors are OSErrors
                continue
            if response.status_code == 429 or response.status_code >= 500:
                continue            # busy or failing: ask again later
            answered = True
            try:
                config = response.json() if response.status_code == 200 else None
            except ValueError:
                config = None
            url = config.get("websocketUrl") if isinstance(config, dict) else None
            if isinstance(url, str) and url.startswith(("ws://", "wss://")):
                return url
        if answered:
            raise Fatal(f"{self.server} does not say where its WebSocket is (neither "
                        "/api/config nor /config.json names it). Pass the Cloudstrype API URL "
                        "(the stack's ApiUrl output) or the web UI's address as --server.")
        return None

    def _refresh(self) -> bool:
        """New tokens for the CLI's saved login this member runs with, by the CLI's own refresh
        (api.Client.refresh): under the lock on the credentials file, taking the tokens a
        command refreshed meanwhile, saving the new ones, asked again after an answer lost on
        the way. The member and the CLI share one sign-in: a member that kept its new refresh
        token to itself left the CLI with a replaced one, and a replaced token used again ends
        the sign-in (review sweep)."""
        if self.login is None:
            return False
        from cloudstrype_client.api import Client
        from cloudstrype_client.errors import CliError
        client = Client(self.login["server"], credentials=dict(self.login))
        try:
            client.refresh(self.login.get("access_token"))
        except CliError:
            return False
        self.login = client.credentials
        self.token = self.login["access_token"]
        return True

    # -- requests from the server -------------------------------------------------------
    def _do_put(self, request: dict) -> dict:
        key, url = request.get("key"), request.get("url")
        size, expected = request.get("size"), request.get("sha256")
        self.store.path_for(key)              # a valid key, before anything is downloaded
        if not isinstance(size, int) or not 0 <= size <= MAX_SHARE_BYTES \
                or not isinstance(expected, str) or not SHA256_RE.fullmatch(expected) \
                or not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise RequestFailed("bad_request", "put needs key, size, sha256 and url")
        with self.store.reservation(size):
            tmp = self.store.tmp_dir / f"{uuid.uuid4().hex}.part"
            try:
                digest, received = hashlib.sha256(), 0
                try:
                    with self._http().get(url, stream=True, timeout=HTTP_TIMEOUT) as answer:
                        if answer.status_code != 200:
                            raise RequestFailed("download_failed",
                                                f"staging answered {answer.status_code}")
                        with open(tmp, "wb") as out:
                            for block in answer.iter_content(256 * 1024):
                                received += len(block)
                                if received > size:
                                    raise RequestFailed("hash_mismatch",
                                                        f"more than the announced {size} bytes")
                                digest.update(block)
                                out.write(block)
                                self.stats.moved("in", len(block))
                            out.flush()
                            os.fsync(out.fileno())
                except RequestFailed:
                    raise
                except OSError as exc:
                    raise RequestFailed("io_error", str(exc)) from None
                except Exception as exc:
                    raise RequestFailed("download_failed", str(exc)) from None
                if received != size or digest.hexdigest() != expected:
                    raise RequestFailed("hash_mismatch", "the downloaded share does not match "
                                                         "its size and SHA-256")
                if self._put_delay:
                    time.sleep(self._put_delay)
                self.store.commit(key, tmp, received)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        return {"size": received, "sha256": expected, **self.store.report()}

    def _do_get(self, request: dict) -> dict:
        url = request.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise RequestFailed("bad_request", "get needs key and url")
        start, length = request.get("start"), request.get("length")
        ranged = start is not None or length is not None
        if ranged and not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                              for n in (start, length)):
            raise RequestFailed("bad_request", "a ranged get needs whole numbers start and "
                                               "length, 0 or more")
        key = request.get("key")
        data = self.store.read_range(key, start, length) if ranged else self.store.read(key)
        try:
            answer = self._http().put(url, data=data, timeout=HTTP_TIMEOUT)
        except Exception as exc:
            raise RequestFailed("upload_failed", str(exc)) from None
        if answer.status_code not in (200, 201, 204):
            raise RequestFailed("upload_failed", f"staging answered {answer.status_code}")
        self.stats.moved("out", len(data))
        result = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return {**result, "start": start} if ranged else result

    def _do_delete(self, request: dict) -> dict:
        existed = self.store.delete(request.get("key"))
        return {"existed": existed, **self.store.report()}

    def _do_stat(self, request: dict) -> dict:
        path = self.store.path_for(request.get("key"))
        try:
            return {"exists": True, "size": path.stat().st_size}
        except FileNotFoundError:
            return {"exists": False}

    def _do_verify(self, request: dict) -> dict:
        expected = request.get("sha256")
        if not isinstance(expected, str) or not SHA256_RE.fullmatch(expected):
            raise RequestFailed("bad_request", "verify needs key and sha256")
        path = self.store.path_for(request.get("key"))
        digest, size = hashlib.sha256(), 0
        try:
            with open(path, "rb") as share:
                for block in iter(lambda: share.read(1024 * 1024), b""):
                    digest.update(block)
                    size += len(block)
        except FileNotFoundError:
            raise RequestFailed("not_found", f"no share {request.get('key')}") from None
        actual = digest.hexdigest()
        return {"match": actual == expected, "sha256": actual, "size": size}

    def answer(self, request: dict) -> dict:
        """Do one request (blocking) and build its result message."""
        op = request.get("type")
        result = {"type": "result", "request_id": request.get("request_id"), "op": op}
        try:
            handler = getattr(self, f"_do_{op}")
            self.store.check_home()
            result.update(handler(request), ok=True)
            self.stats.done += 1
            self._home_lost = False
        except RequestFailed as exc:
            result.update(ok=False, error={"code": exc.code, "message": str(exc)[:300]})
            if exc.code == "full":
                # The room as it is now (a disk filled from outside): the server places by it,
                # and would go on sending shares here until the next ping otherwise.
                result.update(used=self.store.used, free=self.store.free())
            self.stats.failed += 1
            if isinstance(exc, NotHome) and not self._home_lost:
                self._home_lost = True              # said once, until it is back
                self.say(f"warning: {exc}")
        except OSError as exc:
            result.update(ok=False, error={"code": "io_error", "message": str(exc)[:300]})
            self.stats.failed += 1
        except Exception as exc:                    # noqa: BLE001 - every request is answered
            result.update(ok=False, error={"code": "io_error",
                                           "message": f"{type(exc).__name__}: {exc}"[:300]})
            self.stats.failed += 1
        return result

    async def _serve_request(self, request: dict, slots: asyncio.Semaphore) -> None:
        async with slots:
            self.stats.active += 1
            try:
                result = await asyncio.to_thread(self.answer, request)
            finally:
                self.stats.active -= 1
        await self._send(result)

    async def _send(self, message: dict) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(message, separators=(",", ":")))
            return True
        except Exception:       # the connection dropped; the server gives up on the request
            return False

    # -- the connection -----------------------------------------------------------------
    def _hello(self) -> dict:
        return {"type": "hello", "id": uuid.uuid4().hex[:8], "protocol": PROTOCOL,
                "member_id": self.store.member_id, "name": self.name, "version": VERSION,
                **self.store.report()}

    async def _session(self, ws, slots: asyncio.Semaphore) -> None:
        await ws.send(json.dumps(self._hello()))
        # The server counts this member online as it takes the hello, so a request may come
        # before the welcome does: keep it, and serve it once welcomed.
        early: list[dict] = []
        deadline = time.monotonic() + 30
        while True:
            welcome = json.loads(await asyncio.wait_for(
                ws.recv(), timeout=max(0.1, deadline - time.monotonic())))
            if isinstance(welcome, dict) and welcome.get("type") in OPS and len(early) < 1000:
                early.append(welcome)
                continue
            break
        if not isinstance(welcome, dict):
            raise ConnectionError(f"no welcome from the server: {welcome!r}")
        if welcome.get("type") == "removed":
            # Removed from the account while this program was away: stop, as when told live.
            self.removed = True
            reason = welcome.get("reason") or "this member was removed from the account."
            self.say(f"{str(reason)[:300]} Stopping.")
            await ws.close()
            return
        if welcome.get("type") != "welcome":
            message = welcome.get("error") or welcome
            if welcome.get("code") in ("unsupported_protocol", "member_mismatch", "bad_message"):
                raise Fatal(f"The server refused this member: {message}")
            raise ConnectionError(f"no welcome from the server: {message}")
        self.ws = ws
        self.welcomed = True
        self.stats.connected = True
        self.say(f"connected to {self.server} as member {self.store.member_id} "
                 f"('{self.name}', storage {welcome.get('storage_id')}, "
                 f"status {welcome.get('status')})")
        pinger = asyncio.create_task(self._ping_loop(ws))
        for message in early:
            task = asyncio.create_task(self._serve_request(message, slots))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                kind = message.get("type") if isinstance(message, dict) else None
                if kind in OPS:
                    if self.stopping.is_set():
                        await self._send({"type": "result",
                                          "request_id": message.get("request_id"), "ok": False,
                                          "error": {"code": "shutting_down",
                                                    "message": "the member is stopping"}})
                        continue
                    task = asyncio.create_task(self._serve_request(message, slots))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif kind == "pong":
                    if message.get("registered") is False:
                        # The server lost track of this connection (e.g. a stale-connection
                        # error): register again.
                        await ws.send(json.dumps(self._hello()))
                elif kind in ("removed", "replaced"):
                    # Removed from the account, or another program connected as this member
                    # (its folder copied to another machine): stop, and do not reconnect (two
                    # programs would take the member from each other in turn).
                    self.removed = True
                    self.replaced = kind == "replaced"
                    default = ("this member was removed from the account." if kind == "removed"
                               else "another program connected as this member.")
                    self.say(f"{str(message.get('reason') or default)[:300]} Stopping.")
                    await ws.close()
                    return
                elif kind == "error":
                    self.say(f"server: {message.get('error')}")
                elif isinstance(message, dict) and message.get("request_id"):
                    # A request of a newer protocol revision: say so rather than stay silent.
                    await self._send({"type": "result", "request_id": message["request_id"],
                                      "ok": False, "error": {
                                          "code": "unsupported",
                                          "message": f"unknown request type {kind!r}"}})
        finally:
            pinger.cancel()
            self.ws = None
            self.stats.connected = False

    async def _ping_loop(self, ws) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            await ws.send(json.dumps({"type": "ping", "id": uuid.uuid4().hex[:8],
                                      **self.store.report()}))

    async def run(self) -> int:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        self.stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stopping.set)
            except (NotImplementedError, RuntimeError):     # Windows
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(self.stopping.set))
        slots = asyncio.Semaphore(self.transfers)
        status = asyncio.create_task(self._status_loop())
        base_url = url = None
        backoff, refreshed = BACKOFF_FIRST, False
        try:
            while not self.stopping.is_set() and not self.removed:
                self.welcomed = False
                try:
                    if url is None:
                        base_url = await asyncio.to_thread(self._discover_ws_url)
                        if base_url is None:
                            raise ConnectionError("no answer")
                        url = base_url + ("&" if "?" in base_url else "?") + urlencode(
                            {"member_id": self.store.member_id})
                    async with connect(url, additional_headers={
                            "Authorization": f"Bearer {self.token}"},
                            open_timeout=15, max_size=MAX_MESSAGE_BYTES, compression=None,
                            user_agent_header=f"cloudstrype-member/{VERSION}") as ws:
                        session = asyncio.create_task(self._session(ws, slots))
                        stop = asyncio.create_task(self.stopping.wait())
                        await asyncio.wait({session, stop}, return_when=asyncio.FIRST_COMPLETED)
                        if stop.done() and not session.done():
                            await self._drain()
                            await ws.close()
                        stop.cancel()
                        with contextlib.suppress(Exception, asyncio.CancelledError):
                            await session
                        if session.done() and not session.cancelled() and \
                                isinstance(session.exception(), Fatal):
                            raise session.exception()
                        if session.done() and not session.cancelled() and \
                                session.exception() is not None and not self.welcomed:
                            self.say(f"the session ended before the server's welcome "
                                     f"({session.exception()}); retrying")
                        refreshed = False
                except InvalidStatus as exc:
                    code = exc.response.status_code
                    if code in (401, 403):
                        if not refreshed and await asyncio.to_thread(self._refresh):
                            refreshed = True
                            continue
                        raise Fatal("The server refused the token (HTTP "
                                    f"{code}). Log in again, or pass a valid --token or "
                                    "CLOUDSTRYPE_TOKEN.") from None
                    self.say(f"the server refused the connection (HTTP {code}); retrying")
                except Fatal:
                    raise
                except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                    self.say(f"cannot reach {base_url or self.server}: "
                             f"{exc or type(exc).__name__}")
                except Exception as exc:   # ConnectionClosed and the like
                    self.say(f"connection lost: {exc or type(exc).__name__}")
                if self.stopping.is_set() or self.removed:
                    break
                if self.welcomed:
                    backoff = BACKOFF_FIRST
                    self.say("disconnected; reconnecting")
                delay = backoff * (0.5 + random.random() / 2)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            status.cancel()
            await self._drain()
            if self._tty and not self.quiet:
                sys.stderr.write("\r\033[K")
        self.say(f"stopped ({self.store.count} shares, {human(self.store.used)} kept in "
                 f"{self.store.root})")
        return 2 if self.replaced else 0

    async def _drain(self) -> None:
        """Let running transfers finish (bounded), so nothing half-done is left behind."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE_SECONDS)


# -- command line --------------------------------------------------------------------------------

def credentials_paths() -> list[Path]:
    paths = []
    if os.environ.get("XDG_CONFIG_HOME"):
        paths.append(Path(os.environ["XDG_CONFIG_HOME"]) / "cloudstrype" / "credentials.json")
    paths.append(Path.home() / ".config" / "cloudstrype" / "credentials.json")
    return paths


def saved_login() -> dict:
    """The CLI's saved login ({"server", "access_token", "refresh_token"}), if there is one."""
    for path in credentials_paths():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}


def run(args) -> int:
    login = saved_login()
    token = args.token or os.environ.get("CLOUDSTRYPE_TOKEN") or login.get("access_token")
    server = args.server or login.get("server")
    if not server:
        print("cloudstrype array: give --server URL (or log in with the CLI first).",
              file=sys.stderr)
        return 2
    if not token:
        print("cloudstrype array: no token. Pass --token, set CLOUDSTRYPE_TOKEN, or log in with "
              "the CLI first.", file=sys.stderr)
        return 2
    # The saved refresh token renews an expired access token, but only for the login it goes
    # with, and on its server.
    renewable = bool(login.get("refresh_token")) and token == login.get("access_token") and \
        str(server).rstrip("/") == str(login.get("server") or "").rstrip("/")
    if not 1 <= args.transfers <= 64:
        print("cloudstrype array: --transfers must be 1-64.", file=sys.stderr)
        return 2
    store = ShareStore(args.dir.expanduser().resolve(), args.size)
    try:
        store.open()
        name = (args.name or f"{socket.gethostname()}:{store.root.name}").strip()[:100]
        member = Member(server, store, name, token, login if renewable else None,
                        args.transfers,
                        max(1.0, args.ping_interval), args.ws_url, args.quiet)
        return asyncio.run(member.run())
    except Fatal as exc:
        print(f"cloudstrype array: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
