"""The WebSocket routes' work: `$connect`, `$default` (every message) and `$disconnect`.

Each is a separate Lambda invocation in AWS. `$connect` proves who the user is; the other two
learn it from the connection record written then.
"""
from __future__ import annotations

import logging

from cloudstrype import errors
from cloudstrype.api.body import parse_json
from cloudstrype.array import connections, members, protocol
from cloudstrype.auth.tokens import authenticate
from cloudstrype.identity import get_identity

log = logging.getLogger("cloudstrype.array")


def _credentials(event: dict) -> str | None:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if headers.get("authorization"):
        return headers["authorization"]
    token = (event.get("queryStringParameters") or {}).get("token")
    # Clients that cannot set headers (browsers) pass the token as a query parameter.
    return f"Bearer {token}" if token else None


def on_connect(event: dict, connection_id: str) -> dict:
    try:
        principal = authenticate(_credentials(event))
    except errors.ApiError as exc:
        return {"statusCode": exc.status, "body": exc.message}
    member_id = (event.get("queryStringParameters") or {}).get("member_id")
    if member_id is not None and not protocol.valid_member_id(member_id):
        return {"statusCode": 400,
                "body": "member_id must be 8-64 letters, digits, '-' or '_'."}
    members.open_connection(connection_id, principal.user_id, principal.username, member_id,
                            _session_of(principal.claims))
    return {"statusCode": 200}


def _session_of(claims: dict) -> str | None:
    session = claims.get("origin_jti")
    return session if isinstance(session, str) and session else None


def _signed_out(conn) -> bool:
    """Whether the sign-in that opened the connection has ended since (logout, a password
    change, the account deleted): a token is checked once, at `$connect`, and a member's
    connection outlives it (locally with no bound at all)."""
    identity = get_identity()
    if identity.is_revoked({"sub": conn.owner, "origin_jti": conn.session}):
        return True
    return not identity.user_exists(conn.owner)


SIGNED_OUT = "signed_out"


class _SignedOut(protocol.ProtocolError):
    """The connection's sign-in has ended: said, then the connection closed."""

    def __init__(self, message: str):
        super().__init__(message, code=SIGNED_OUT)


def on_message(connection_id: str, body: str | None) -> None:
    reply = handle(connection_id, body)
    if reply is not None:
        connections.send(connection_id, reply)
    if reply is not None and reply.get("code") == SIGNED_OUT:
        members.close_connection(connection_id)
        connections.close(connection_id)


def handle(connection_id: str, body: str | None) -> dict | None:
    """One message in, at most one reply out."""
    message_id = None
    try:
        if body is None or len(body) > protocol.MAX_MESSAGE_BYTES:
            raise protocol.ProtocolError(f"Messages must be JSON objects under "
                                         f"{protocol.MAX_MESSAGE_BYTES // 1024} KB.")
        try:
            # The REST bodies' parser: its depth bound, and text that is Unicode.
            message = parse_json(body.encode("utf-8", "surrogatepass"), bounded_numbers=False)
        except errors.ApiError as exc:
            raise protocol.ProtocolError(f"Messages must be JSON objects with a 'type': "
                                         f"{exc.message}") from None
        message_id = message.get("id")
        kind = message.get("type")
        conn = members.connection(connection_id)
        if conn is None:
            raise protocol.ProtocolError("This connection is not known; reconnect.",
                                         code="unknown_connection")
        if _signed_out(conn):
            raise _SignedOut("The sign-in this connection was opened with has ended (logged "
                             "out, password changed, account deleted, or its 30 days from "
                             "the login over); log in again and reconnect.")
        if kind == "ping":
            return members.ping(conn, message)
        if kind == "hello":
            return members.hello(conn, message)
        if kind == "result":
            members.record_result(conn, message)
            return None
        raise protocol.ProtocolError(f"Unknown message type {kind!r}; expected hello, ping or "
                                     f"result.", code="unknown_type")
    except protocol.ProtocolError as exc:
        return {"type": "error", "id": message_id, "code": exc.code, "error": str(exc)}
    except Exception:
        log.exception("WebSocket message from %s failed", connection_id)
        return {"type": "error", "id": message_id, "code": "internal_error",
                "error": "The server could not handle this message; try again."}


def on_disconnect(connection_id: str) -> None:
    members.close_connection(connection_id)
