"""Schemathesis hooks for the fuzz run (tests/security/test_fuzz.py), loaded through
SCHEMATHESIS_HOOKS.

`positive_data_accepted` is schemathesis's positive-data check with one difference: a 4xx whose
error code says the request met the *state* of the account (no storage answers the probe, the
user has too few storages, a cursor or part number only the server hands out, a quota) is not a
schema-valid request "rejected for schema reasons". Everything else the built-in check fails on
still fails here, and every such code is listed with its reason.
"""
from __future__ import annotations

import ast
import json
import re
import threading

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

# CPython 3.11 keeps the depth of its AST conversion in one counter for all threads (fixed in
# 3.12, gh-106905): two of the fuzzer's worker threads parsing at once (hypothesis reads a
# lambda's source to describe a filter) crash it with "AST constructor recursion depth
# mismatch". Parsing one at a time removes the race; nothing here parses often.
_parsing = threading.Lock()
_parse = ast.parse


def _parse_one_at_a_time(*args, **kwargs):
    with _parsing:
        return _parse(*args, **kwargs)


ast.parse = _parse_one_at_a_time

# error code -> why a schema cannot rule it out.
STATE_CODES = {
    # POST /api/cloud/storages probes the storage for real (write, read, delete); whether a
    # bucket or a directory works is not a property of the request's shape.
    "probe_failed": "the storage did not pass its check",
    "endpoint_not_allowed": "the endpoint resolves to an address the operator has not allowed",
    "kind_disabled": "the operator turned this kind of storage off",
    "path_not_allowed": "the folder is outside the operator's storage roots",
    # The user's storages, members and quota.
    "not_enough_storages": "the user has fewer usable storages than the durability needs",
    "quota_exceeded": "the user's quota is full",
    "file_too_large": "larger than this deployment's file limit",
    "provider_not_configured": "the operator has not set up this OAuth provider",
    # The OAuth callback: values only the provider and the server hand out, and the
    # provider's own answer.
    "invalid_state": "a state is valid only as the server issued it, for its provider",
    "expired_state": "the state has expired",
    "reused_state": "the state was used already",
    "access_denied": "the provider reports that the user refused",
    "code_rejected": "the provider refused the authorization code",
    # Sent by mail (Cognito) or logged (local) to the user who registered.
    "invalid_code": "the confirmation code is wrong or has expired",
    # A range is checked against the file's size (and first <= last, which no pattern says).
    "range_not_satisfiable": "the range lies outside the file",
    # Values only the server hands out: a page cursor, a session's part numbers and sizes.
    "invalid_cursor": "a cursor is valid only as a next_cursor the API gave out",
    "invalid_part": "part numbers run to the session's part count",
    "invalid_part_size": "a part's size follows from the session's size",
    # The target exists but is of the other type, or is an ancestor of the destination.
    "not_a_file": "the id is a directory's (only ids seen in earlier answers reach this)",
    "invalid_target": "a directory cannot move into itself",
    "upload_expired": "the session has expired",
    # A batch's mtimes name its files: a schema cannot tie an object's keys to the filenames
    # of the form's file parts.
    "mtimes_name_unknown": "an mtimes entry names no file of the batch",
    # If-Match holds an ETag only the server hands out (the one of the file as it is now).
    "file_changed": "an If-Match names another version's ETag than the file's now",
    # A link the run made and then revoked, or one whose expiry has passed.
    "link_revoked": "the link's owner revoked it",
    "link_expired": "the link's expiry has passed",
}


# The Range header's documented pattern: schemathesis's coverage phase sends header values
# outside their schema's pattern (e.g. `Range: 0`) and still counts them as positive data.
RANGE_PATTERN = re.compile(r"^bytes=[0-9]{1,12}-[0-9]{0,12}$")


@schemathesis.check
def positive_data_accepted(ctx, response, case):
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if _error_code(response) in STATE_CODES:
            return None
        range_header = (case.headers or {}).get("Range")
        if _error_code(response) == "invalid_range" and range_header is not None and \
                not RANGE_PATTERN.match(range_header):
            return None     # not schema-valid after all: the header breaks its pattern
        raise


def _error_code(response) -> str | None:
    try:
        return json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
