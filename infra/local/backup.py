"""`cloudstrype backup DEST`: a consistent copy of what a local stack cannot lose, while it runs.

What it copies: the metadata database (through SQLite's online backup, so writes in progress
are either wholly in the copy or not at all) and the secrets (the master key that wraps every
user key, the identity signing key, the staging secret) and the install id (the issuer of the
tokens given out: kept, they stay valid after a restore). Without the master key the shares on
the storages cannot be decrypted, so the two are copied together. The shares themselves are
on the storages, redundantly: they are not part of this backup. A backup is readable by its
owner alone, as the data directory is.

`cloudstrype restore BACKUP`: puts a backup back into a data directory no server is using. The
database's write-ahead log goes with the database it belongs to: one left by the server that
ran there (stopped by a crash, the usual reason to restore) would be applied to the restored
database on the next start, and corrupted it or kept what the restore was to undo. Nothing of
the directory is removed before its replacement is written whole, and a backup whose database
holds users' keys without the master key that opens them is refused (a server on it would
make a new one that opens nothing).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import sys
from pathlib import Path

from cloudstrype.metadata.engine import MetadataError

from infra.local.services import (
    INSTALL_ID_FILE,
    LOCK_FILE,
    MASTER_KEY_FILE,
    METADATA_FILE,
    SECRETS_DIR,
    foreign_folder,
    fsync_directory,
)


class Refused(Exception):
    """What the operator named cannot be done; said in one line, exit 2."""


def _nested(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _private(path: Path) -> None:
    """Owner-only modes under `path` (a backup holds password hashes and the master key)."""
    os.chmod(path, 0o700)
    for inner in path.rglob("*"):
        if not inner.is_symlink():
            os.chmod(inner, 0o700 if inner.is_dir() else 0o600)


def _said(command: str, run) -> int:
    try:
        return run()
    except Refused as exc:
        print(f"cloudstrype {command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"cloudstrype {command}: {exc.strerror or exc}{where}. Nothing was replaced; fix "
              f"that and run it again.", file=sys.stderr)
        return 1
    except (sqlite3.Error, MetadataError) as exc:
        print(f"cloudstrype {command}: the database could not be read ({exc}). Nothing was "
              f"replaced.", file=sys.stderr)
        return 1


def run_backup(data_dir: str, destination: str) -> int:
    return _said("backup", lambda: _backup(Path(data_dir).resolve(),
                                           Path(destination).resolve()))


def _backup(source: Path, target: Path) -> int:
    if not (source / METADATA_FILE).is_file():
        raise Refused(f"{source} holds no Cloudstrype metadata ({METADATA_FILE}); name the data "
                      f"directory with --data-dir.")
    if _nested(source, target):
        raise Refused(f"{target} is inside the data directory (or holds it); a backup must be "
                      f"somewhere the data directory's loss does not take with it.")
    if target.exists() and not target.is_dir():
        raise Refused(f"{target} is a file; name a new directory.")
    if target.exists() and any(target.iterdir()):
        raise Refused(f"{target} exists and is not empty; name a new directory.")
    from cloudstrype.metadata.sqlite import SqliteEngine
    made = not target.exists()
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        engine = SqliteEngine(str(source / METADATA_FILE))
        try:
            engine.backup(str(target / METADATA_FILE))
        finally:
            engine.close()
        if (source / SECRETS_DIR).is_dir():
            shutil.copytree(source / SECRETS_DIR, target / SECRETS_DIR)
        if (source / INSTALL_ID_FILE).is_file():
            shutil.copy2(source / INSTALL_ID_FILE, target / INSTALL_ID_FILE)
        _private(target)
    except BaseException:
        # Half a backup is not one: what this run wrote goes.
        if made:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for inner in target.iterdir():
                shutil.rmtree(inner, ignore_errors=True) if inner.is_dir() else \
                    inner.unlink(missing_ok=True)
        raise
    print(f"Backed up {source} to {target}.")
    return 0


def run_restore(backup: str, data_dir: str) -> int:
    return _said("restore", lambda: _restore(Path(backup).resolve(), Path(data_dir).resolve()))


def _restore(source: Path, target: Path) -> int:
    if not (source / METADATA_FILE).is_file():
        raise Refused(f"{source} is not a backup ({METADATA_FILE} is missing).")
    if _nested(source, target):
        raise Refused(f"{source} and {target} are the same folder or one holds the other; "
                      f"restore into the data directory, from a backup kept elsewhere.")
    if target.exists() and not target.is_dir():
        raise Refused(f"{target} is a file; name the data directory (or a new one).")
    if foreign_folder(target):
        raise Refused(f"{target} holds other files and no Cloudstrype data; name the data "
                      f"directory (or a new one).")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(target, 0o700)
    with (target / LOCK_FILE).open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused(f"a Cloudstrype server is using {target}; stop it first.") from None
        staged = target / (METADATA_FILE + ".restoring")
        staged_secrets = target / (SECRETS_DIR + ".restoring")
        try:
            shutil.copy2(source / METADATA_FILE, staged)
            os.chmod(staged, 0o600)
            with staged.open("rb") as f:
                os.fsync(f.fileno())
            _check_keys_open(staged, source)
            shutil.rmtree(staged_secrets, ignore_errors=True)
            if (source / SECRETS_DIR).is_dir():
                shutil.copytree(source / SECRETS_DIR, staged_secrets)
                _private(staged_secrets)
                for secret in staged_secrets.iterdir():
                    with secret.open("rb") as f:
                        os.fsync(f.fileno())
        except BaseException:
            staged.unlink(missing_ok=True)
            shutil.rmtree(staged_secrets, ignore_errors=True)
            raise
        # Both copies are whole: now the old ones go. The old database's log and index first:
        # never applied to the restored one.
        for leftover in (METADATA_FILE + "-wal", METADATA_FILE + "-shm", METADATA_FILE):
            (target / leftover).unlink(missing_ok=True)
        os.replace(staged, target / METADATA_FILE)
        if staged_secrets.is_dir():
            replaced = target / (SECRETS_DIR + ".replaced")
            shutil.rmtree(replaced, ignore_errors=True)
            if (target / SECRETS_DIR).exists():
                os.replace(target / SECRETS_DIR, replaced)
            os.replace(staged_secrets, target / SECRETS_DIR)
            shutil.rmtree(replaced, ignore_errors=True)
        if (source / INSTALL_ID_FILE).is_file():
            shutil.copy2(source / INSTALL_ID_FILE, target / INSTALL_ID_FILE)
            os.chmod(target / INSTALL_ID_FILE, 0o600)
        fsync_directory(target)
    print(f"Restored {target} from {source}. Files written after the backup are not in it, and "
          f"their shares stay on the storages unused (no record names them now, and "
          f"maintenance only visits the shares records name). Storages whose provider "
          f"replaces the refresh token at each use (Box, OneDrive) and that refreshed since "
          f"the backup must be connected again.")
    return 0


def _check_keys_open(database: Path, source: Path) -> None:
    """Refuse a database whose users' keys need a master key the backup does not have."""
    from cloudstrype.metadata.sqlite import SqliteEngine

    from infra.local.services import SecretsMissing, check_master_key
    engine = SqliteEngine(str(database))
    try:
        check_master_key(engine, source / SECRETS_DIR / MASTER_KEY_FILE)
    except SecretsMissing:
        raise Refused(f"{source} holds users' keys but not {SECRETS_DIR}/{MASTER_KEY_FILE}, the "
                      f"only key that opens them; restore from a backup that has it (cloudstrype "
                      f"backup copies both).") from None
    finally:
        engine.close()
