"""The errors a caller can see. Each maps to one HTTP status and a stable code.

The body of every error response is `{"error": {"code": "...", "message": "..."}}`.
Library code raises these; the service layer turns them into responses.
"""
from __future__ import annotations


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}
        self.headers = headers or {}

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Gone(ApiError):
    status, code = 410, "gone"


class PreconditionFailed(ApiError):
    status, code = 412, "precondition_failed"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class RangeNotSatisfiable(ApiError):
    status, code = 416, "range_not_satisfiable"


class Unprocessable(ApiError):
    status, code = 422, "unprocessable"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


class InsufficientStorage(ApiError):
    status, code = 507, "insufficient_storage"


class GatewayTimeout(ApiError):
    status, code = 504, "timeout"


def shown(value, limit: int = 80) -> str:
    """A caller's id as an error message names it: whole up to `limit` characters, else its
    start and its length (a message never echoes kilobytes a caller sent)."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def error_body(status: int, code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def plural(count: int, noun: str) -> str:
    """'1 share', '2 shares': a count as a message says it."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
