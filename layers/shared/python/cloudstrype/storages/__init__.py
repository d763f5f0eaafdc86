"""A user's storages: the records (store), the rules (service, placement), their names (names)
and the OAuth connect flow. The service's names are importable from here, as they were from
`backends.storages`:

    from cloudstrype import storages
    storages.list_storages(owner); storages.backend_for(record); storages.DRAINING

The service is imported on the first such use, not with the package: importing
`cloudstrype.storages.store` or `.names` alone (the array function's WebSocket handlers do) must
not bring the backends and the vault with it (bench/cold_start.py).
"""
from __future__ import annotations

import importlib

from cloudstrype.storages.store import (  # noqa: F401
    ACTIVE,
    DRAINING,
    MEMBER_KIND,
    MEMBER_PREFIX,
    NEEDS_RECONNECT,
    OFFLINE,
    Storage,
    StorageRecord,
    StorageStore,
    member_offline_op,
    member_online_op,
    member_storage_id,
)

_FROM_SERVICE = frozenset({
    "DOWN_SECONDS", "USAGE_MAX_AGE_SECONDS", "add_storage", "all_storages", "backend_for",
    "clear_old_error", "count_shares", "count_shares_async", "delete_storage",
    "draining_storages", "get_storage", "is_oauth", "list_storages", "mark_down",
    "record_check", "refresh_usage", "remeasure_full", "save_oauth_storage", "start_draining",
    "still_draining",
    "stop_draining",
})


def __getattr__(name: str):
    # Looked up anew each time (not bound here), so a test that replaces a service function
    # replaces it for callers through the package too.
    if name in _FROM_SERVICE:
        return getattr(importlib.import_module("cloudstrype.storages.service"), name)
    raise AttributeError(f"module 'cloudstrype.storages' has no attribute {name!r}")
