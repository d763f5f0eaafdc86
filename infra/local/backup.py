"""`cloudstrype backup DEST`: a consistent copy of what a local stack cannot lose, while it runs.

What it copies: the metadata database (through SQLite's online backup, so writes in progress
are either wholly in the copy or not at all) and the secrets (the master key that wraps every
user key, the identity signing key, the staging secret) and the install id (the issuer of the
tokens given out: kept, they stay valid after a restore). Without the master key the shares on
the storages cannot be decrypted, so the two are copied together. The shares themselves are
on the storages, redundantly: they are not part of this backup. Restore: stop the server and
copy the backup's files back into the data directory.
"""
from __future__ import annotations

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
