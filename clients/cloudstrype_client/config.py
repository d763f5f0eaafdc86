"""Where the desktop commands keep their state: the config folder, the saved credentials and the
resumable-upload state.

The folder is ``$XDG_CONFIG_HOME/cloudstrype`` (``~/.config/cloudstrype`` without it), mode 0700.
Files in it are written atomically (a temporary file in the same folder, fsynced, then renamed
over the old one) with mode 0600, so a crash never leaves half a credentials file and no other
local user can read a token.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

try:                                    # POSIX; on other systems the state is not locked
    import fcntl
except ImportError:                     # pragma: no cover
    fcntl = None

DEFAULT_SERVER = "http://127.0.0.1:8080"
CREDENTIALS_FILE = "credentials.json"
UPLOADS_FILE = "uploads.json"
# The server forgets an unfinished upload session after 7 days; so does the state file.
UPLOAD_STATE_TTL = 7 * 24 * 3600


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "cloudstrype"


def ensure_config_dir() -> Path:
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)
    return folder


def write_private(path: Path, data: dict) -> None:
    """Write JSON to `path` atomically, readable by the owner only."""
    folder = ensure_config_dir() if path.parent == config_dir() else path.parent
    # Imported here: only a command that saves something needs it, and it is slow to import.
    import tempfile
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- credentials ---------------------------------------------------------------------------------

def credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock (flock) on the file `path` + '.lock' while the block runs: the other
    processes sharing this config folder wait for it."""
    ensure_config_dir()
    with open(path.with_name(path.name + ".lock"), "a") as lock_file:
        if fcntl is not None:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def load_credentials() -> dict | None:
    """The saved login, or None when there is none or it is not one this program wrote (a
    hand-edited or damaged file reads as not logged in, never as a crash)."""
    data = read_json(credentials_path())
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str) or \
            not data["access_token"] or not isinstance(data.get("server"), str) or \
            not data["server"]:
        return None
    try:
        float(data.get("expires_at") or 0)
    except (TypeError, ValueError):
        return None
    if not isinstance(data.get("refresh_token") or "", str):
        return None
    return data


def save_credentials(credentials: dict) -> None:
    keys = ("server", "username", "access_token", "id_token", "refresh_token", "expires_at")
    write_private(credentials_path(), {k: credentials.get(k) for k in keys})


def delete_credentials() -> bool:
    """Forget the saved login's tokens; whether the file was there. Its server's address stays
    in it alone (remembered_server), so that after a logout the hint to log in again, and a
    login without --server, name the server the user was on, not the default one."""
    server = remembered_server()
    existed = credentials_path().exists()
    if server is not None:
        write_private(credentials_path(), {"server": server})
    else:
        credentials_path().unlink(missing_ok=True)
    return existed


def remembered_server() -> str | None:
    """The server of the saved login, or of the last one after a logout."""
    data = read_json(credentials_path())
    server = data.get("server") if isinstance(data, dict) else None
    return server if isinstance(server, str) and server else None


def tokens_to_credentials(server: str, username: str, tokens: dict,
                          refresh_token: str | None = None) -> dict:
    return {"server": server, "username": username,
            "access_token": tokens["access_token"], "id_token": tokens.get("id_token"),
            "refresh_token": tokens.get("refresh_token") or refresh_token,
            "expires_at": int(time.time()) + int(tokens.get("expires_in") or 3600)}


# -- resumable uploads ---------------------------------------------------------------------------

class UploadState:
    """Upload sessions in progress, by (server, user, local file, size, mtime, destination), so a
    re-run of the same `put` continues them. Safe across threads and processes."""

    def __init__(self, path: Path | None = None):
        self.path = path or config_dir() / UPLOADS_FILE
        self._lock = threading.Lock()

    @staticmethod
    def key(server: str, username: str | None, local: Path, size: int, mtime_ns: int,
            directory: str, name: str, share: str | None = None) -> str:
        # A session opened inside a share is found through that share only (the server
        # answers 404 elsewhere): the share is part of the key, when there is one.
        fields = [server, username or "", str(local), size, mtime_ns, directory, name]
        return json.dumps(fields + [share] if share else fields)

    @contextlib.contextmanager
    def _locked(self):
        with self._lock, locked(self.path):
            yield

    def _read(self) -> dict:
        data = read_json(self.path) or {}
        now = time.time()
        return {k: v for k, v in data.items()
                if isinstance(v, dict) and now - v.get("saved", 0) < UPLOAD_STATE_TTL}

    def get(self, key: str) -> dict | None:
        with self._locked():
            return self._read().get(key)

    def put(self, key: str, entry: dict) -> None:
        with self._locked():
            data = self._read()
            data[key] = {**entry, "saved": int(time.time())}
            write_private(self.path, data)

    def superseded(self, key: str) -> list[tuple[str, dict]]:
        """The entries of the same upload as `key` (server, user, local file, destination,
        share) made when the file had another size or modification time: their sessions can
        never be resumed, since the file they were sending is not there any more."""
        try:
            wanted = json.loads(key)
        except ValueError:
            return []
        same = wanted[:3] + wanted[5:]
        with self._locked():
            found = []
            for other, entry in self._read().items():
                try:
                    fields = json.loads(other)
                except ValueError:
                    continue
                if other != key and isinstance(fields, list) and len(fields) == len(wanted) \
                        and fields[:3] + fields[5:] == same:
                    found.append((other, entry))
            return found

    def forget(self, key: str) -> None:
        with self._locked():
            data = self._read()
            if data.pop(key, None) is not None:
                write_private(self.path, data)
