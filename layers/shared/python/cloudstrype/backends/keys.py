"""The one rule for share keys, checked by every backend before a key reaches a path or a URL.

Keys are chosen by the pipeline, so a bad key is a programming error: it raises ValueError,
not a BackendError. Dropbox, OneDrive and Box compare names without regard to case, so keys
that differ only in case name the same object there; the pipeline should use lowercase keys.
"""
from __future__ import annotations

import re

KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,200}")


def check_key(key: str) -> str:
    """Return `key` if it is a valid share key, else raise ValueError saying why."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key) or key in (".", ".."):
        raise ValueError(
            f"invalid share key {key!r}: use 1 to 200 of the characters A-Z a-z 0-9 . _ - "
            "(and not '.' or '..')"
        )
    return key
