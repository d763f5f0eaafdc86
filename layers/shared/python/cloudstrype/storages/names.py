"""A user's storages have distinct names: what makes two names the same, and the next free one.

Apart from the storage rules (service.py) because the array function's WebSocket handlers name
a member's storage when it says hello and need nothing else of them: service.py brings the
backends and the vault, a third of that function's cold start (bench/cold_start.py).
"""
from __future__ import annotations

import unicodedata

from cloudstrype.storages.store import StorageStore

NAME_MAX = 100


def name_key(name: str) -> str:
    """What makes two names the same to a reader: Unicode compatibility forms (NFKC: "Á" built
    of two characters, full-width letters, a no-break space), invisible format characters (a
    zero-width space) and case. Look-alike letters of other scripts are not caught."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return " ".join("".join(c for c in folded if unicodedata.category(c) != "Cf").split())


def taken_names(store: StorageStore, owner: str, ignore: str | None = None) -> dict[str, str]:
    """The owner's storages' names (but `ignore`'s) by name_key."""
    return {name_key(record.name): record.name for record in store.list(owner)
            if record.storage_id != ignore}


def unused_name(store: StorageStore, owner: str, name: str, ignore: str | None = None) -> str:
    """`name`, or 'name 2', 'name 3'... if another storage than `ignore` has it: a connected
    account (or a member) is never refused for its name once the provider granted it (or its
    machine connected)."""
    taken, candidate, number = taken_names(store, owner, ignore), name, 1
    while name_key(candidate) in taken:
        number += 1
        suffix = f" {number}"
        candidate = name[:NAME_MAX - len(suffix)] + suffix
    return candidate
