"""`cloudstrype backup DEST`: a consistent copy of what a local stack cannot lose, while it runs.

What it copies: the metadata database (through SQLite's online backup, so writes in progress
are either wholly in the copy or not at all) and the secrets (the master key that wraps every
user key, the identity signing key, the staging secret) and the install id (the issuer of the
tokens given out: kept, they stay valid after a restore). Without the master key the shares on
the storages cannot be decrypted, so the two are copied together. The shares themselves are
on the storages, redundantly: they are not part of this backup.

`cloudstrype restore BACKUP`: puts a backup back into a data directory no server is using. The
database's write-ahead log goes with the database it belongs to: one left by the server that
ran there (stopped by a crash, the usual reason to restore) would be applied to the restored
database on the next start, and corrupted it or kept what the restore was to undo.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import sys
from pathlib import Path

from infra.local.services import INSTALL_ID_FILE, METADATA_FILE, SECRETS_DIR


def run_backup(data_dir: str, destination: str) -> int:
    source = Path(data_dir).resolve()
    target = Path(destination).resolve()
    if not (source / METADATA_FILE).is_file():
        print(f"cloudstrype backup: {source} holds no Cloudstrype metadata ({METADATA_FILE}); "
              f"name the data directory with --data-dir.", file=sys.stderr)
        return 2
    if target.exists() and any(target.iterdir()):
        print(f"cloudstrype backup: {target} exists and is not empty; name a new directory.",
              file=sys.stderr)
        return 2
    from cloudstrype.metadata.sqlite import SqliteEngine
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(target, 0o700)
    engine = SqliteEngine(str(source / METADATA_FILE))
    try:
        engine.backup(str(target / METADATA_FILE))
    finally:
        engine.close()
    if (source / SECRETS_DIR).is_dir():
        shutil.copytree(source / SECRETS_DIR, target / SECRETS_DIR)
    if (source / INSTALL_ID_FILE).is_file():
        shutil.copy2(source / INSTALL_ID_FILE, target / INSTALL_ID_FILE)
    print(f"Backed up {source} to {target}.")
    return 0


def run_restore(backup: str, data_dir: str) -> int:
    source = Path(backup).resolve()
    target = Path(data_dir).resolve()
    if not (source / METADATA_FILE).is_file():
        print(f"cloudstrype restore: {source} is not a backup ({METADATA_FILE} is missing).",
              file=sys.stderr)
        return 2
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"cloudstrype restore: a Cloudstrype server is using {target}; stop it first.",
                  file=sys.stderr)
            return 2
        staged = target / (METADATA_FILE + ".restoring")
        shutil.copy2(source / METADATA_FILE, staged)
        with staged.open("rb") as f:
            os.fsync(f.fileno())
        # The old database's log and index go first: never applied to the restored one.
        for leftover in (METADATA_FILE + "-wal", METADATA_FILE + "-shm", METADATA_FILE):
            (target / leftover).unlink(missing_ok=True)
        os.replace(staged, target / METADATA_FILE)
        if (source / SECRETS_DIR).is_dir():
            shutil.rmtree(target / SECRETS_DIR, ignore_errors=True)
            shutil.copytree(source / SECRETS_DIR, target / SECRETS_DIR)
        if (source / INSTALL_ID_FILE).is_file():
            shutil.copy2(source / INSTALL_ID_FILE, target / INSTALL_ID_FILE)
        directory = os.open(target, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    print(f"Restored {target} from {source}. Files written after the backup are not in it; "
          f"their shares on the storages are removed by the scrub once it finds them unused.")
    return 0
