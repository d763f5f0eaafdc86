"""The platform's limits, defined once.

They are AWS's (API Gateway REST and WebSocket, Lambda) and what follows from them for this API.
The CDK stack, the local gateway (which enforces them as AWS would) and the library import them
from here; the CLI and the web UI keep documented copies (they never import server code), and a
test checks those copies against this module.
"""
from __future__ import annotations

KiB = 1024
MiB = 1024 * 1024

# API Gateway REST: the largest request it accepts (answered 413 above).
REST_REQUEST_MAX_BYTES = 10 * MiB
# API Gateway REST: the request line and the header values together, at most (its quota page).
REST_HEADERS_MAX_BYTES = 10240
# Lambda synchronous invocation: the largest event (request) and result (response) payload, as
# sent, i.e. after the body is base64-encoded (the API's binary media type is */*).
LAMBDA_PAYLOAD_MAX_BYTES = 6 * MiB
# What the proxy event holds besides the body (headers, query, request context), kept free.
EVENT_ENVELOPE_BYTES = 128 * KiB
# The largest raw body one request can carry to a function: base64 makes 3 bytes 4, so about
# 4.4 MiB. Files above this go in parts (an upload session).
ONE_SHOT_MAX_BYTES = (LAMBDA_PAYLOAD_MAX_BYTES - EVENT_ENVELOPE_BYTES) // 4 * 3
# A chunk, an upload part and a ranged read are at most this (DESIGN.md "Hard limits"); it fits
# one function payload each way.
CHUNK_BYTES = 4 * MiB
RANGE_MAX_BYTES = 4 * MiB
# The most bytes any byte count may be (a storage's capacity, what a member reports): 1 EiB, a
# figure every store and display keeps exactly.
MAX_BYTE_COUNT = 2 ** 60
# API Gateway's integration timeout; a function behind it is stopped at the same time.
INTEGRATION_TIMEOUT_SECONDS = 29
# API Gateway WebSocket: message and frame sizes, and the idle time after which it closes.
WS_MESSAGE_MAX_BYTES = 128 * KiB
WS_FRAME_MAX_BYTES = 32 * KiB
WS_IDLE_TIMEOUT_SECONDS = 10 * 60

# What the CDK's preflight (OPTIONS mock integration on every resource) answers, so the local
# gateway can answer the same.
CORS_ALLOW_HEADERS = ("Content-Type", "X-Amz-Date", "Authorization", "X-Api-Key",
                      "X-Amz-Security-Token", "X-Amz-User-Agent", "Range", "If-Match",
                      "If-None-Match", "If-Range", "X-Link-Password")
CORS_ALLOW_METHODS = ("OPTIONS", "GET", "PUT", "POST", "DELETE", "PATCH", "HEAD")
# How long a browser may keep a preflight's answer (Chromium keeps at most 2 h): without it
# nearly every call of the web UI to the API was preceded by an OPTIONS of its own.
CORS_MAX_AGE_SECONDS = 3600


def as_dict() -> dict[str, int]:
    """The limits clients need, by name."""
    return {"rest_request_max_bytes": REST_REQUEST_MAX_BYTES,
            "one_shot_max_bytes": ONE_SHOT_MAX_BYTES, "chunk_bytes": CHUNK_BYTES,
            "range_max_bytes": RANGE_MAX_BYTES,
            "integration_timeout_seconds": INTEGRATION_TIMEOUT_SECONDS,
            "ws_message_max_bytes": WS_MESSAGE_MAX_BYTES,
            "ws_frame_max_bytes": WS_FRAME_MAX_BYTES,
            "ws_idle_timeout_seconds": WS_IDLE_TIMEOUT_SECONDS}
