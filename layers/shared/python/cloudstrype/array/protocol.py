"""The members' WebSocket protocol: JSON text messages only, each far below 128 KB.

Written down for people in docs/array-protocol.md; the member program (clients/) keeps its own
copy of these names because it must not import server code.
"""
from __future__ import annotations

import re

from cloudstrype.limits import MAX_BYTE_COUNT

# Versions this server speaks. A member says which it speaks in `hello`.
PROTOCOL_VERSIONS = (1,)
CURRENT_PROTOCOL = 1

# Requests the server sends; each carries a request_id and is answered by one `result`.
OPS = ("put", "get", "delete", "stat", "verify")

# How often a member pings (well inside API Gateway's 10 minute idle limit), and how long without
# a word from a member before it is shown offline even if no $disconnect arrived.
PING_INTERVAL_SECONDS = 240
SILENT_OFFLINE_SECONDS = 11 * 60

# No message comes near the 128 KB limit; this bounds what a member may send us.
MAX_MESSAGE_BYTES = 16 * 1024

MEMBER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_MAX = 100

# Error codes a member may put in a failed result.
RESULT_ERRORS = ("not_found", "full", "hash_mismatch", "download_failed", "upload_failed",
                 "bad_request", "io_error", "unsupported", "shutting_down")


class ProtocolError(ValueError):
    """A message that breaks the protocol; the text goes back to the member."""

    def __init__(self, message: str, code: str = "bad_message"):
        super().__init__(message)
        self.code = code


def valid_member_id(value) -> bool:
    return isinstance(value, str) and bool(MEMBER_ID_RE.fullmatch(value))


def clean_name(value, fallback: str) -> str:
    name = value.strip() if isinstance(value, str) else ""
    name = "".join(c for c in name if ord(c) >= 32)[:NAME_MAX]
    return name or fallback


# The most members (machines) one user may have: each is a storage of theirs, listed and
# placed on; hello creating one more is refused.
MAX_MEMBERS_PER_USER = 64
# The most bytes a member may report (1 EiB): a number any store and display keeps exactly
# (10**30 was stored as 1000000000000000019884624838656 and shown as 10**15 PB).
MAX_REPORTED_BYTES = MAX_BYTE_COUNT


def non_negative_int(message: dict, field: str, required: bool = True) -> int | None:
    value = message.get(field)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or \
            value > MAX_REPORTED_BYTES:
        raise ProtocolError(f"'{field}' must be a whole number of bytes from 0 to "
                            f"{MAX_REPORTED_BYTES} (1 EiB).")
    return value
