"""Importing a data directory written by Cloudstrype before the metadata engines (moto's state
pickled into `aws-state.pickle`) into the SQLite store, once, keeping the old file."""
from __future__ import annotations

from pathlib import Path

LEGACY_STATE = "aws-state.pickle"
IMPORTED_MARK = "aws-state.imported"


def import_if_needed(data_dir: Path) -> None:
    legacy = data_dir / LEGACY_STATE
    if not legacy.exists() or (data_dir / IMPORTED_MARK).exists():
        return
    from infra.local.server import StartupError
    raise StartupError(f"{legacy} was written by an older Cloudstrype and is not imported yet.")
