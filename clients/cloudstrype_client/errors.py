"""Exit codes of the desktop commands, and the error that carries one.

Scripts may rely on these numbers:

    0  OK                 everything asked for was done
    1  FAILED             an operation failed (server error, network trouble mid-transfer,
                          a verification mismatch, some files of a batch not transferred) or
                          was refused (403: a read-only share, a group you are not in; a big
                          file into a share; a local name that cannot be a remote one)
    2  USAGE              the command line is wrong (bad option, bad path or name, the server
                          refused the input as invalid, 'rm' of a directory without -r)
    3  AUTH               not logged in, wrong username or password, token refused (401)
    4  NOT_FOUND          a path, id or storage does not exist
    5  CONFLICT           something is in the way: the name exists, a storage still holds
                          shares, an upload is incomplete
    6  UNREACHABLE        the server could not be reached at all
    130                   interrupted (Ctrl-C)
"""
from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
AUTH = 3
NOT_FOUND = 4
CONFLICT = 5
UNREACHABLE = 6
INTERRUPTED = 130

_BY_STATUS = {400: USAGE, 401: AUTH, 403: FAILED, 404: NOT_FOUND, 405: USAGE, 409: CONFLICT,
              410: NOT_FOUND, 412: CONFLICT, 413: USAGE, 415: USAGE, 416: USAGE}
# The code of a local file's name refused before anything is sent (not valid UTF-8).
BAD_LOCAL_NAME = "bad_local_name"
# Refusals whose status says "bad input" though the command line was right.
_BY_CODE = {"not_in_a_share": FAILED}


def exit_code_for_status(status: int, code: str | None = None) -> int:
    return _BY_CODE.get(code or "", _BY_STATUS.get(status, FAILED))


# The server's 4xx codes for a state that passes: the same request may go through later.
PASSING_CODES = frozenset({"upload_aborted"})


class CliError(Exception):
    """A failure to report to the user: one line on stderr and an exit code."""

    def __init__(self, message: str, exit_code: int = FAILED, *, status: int | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status          # the HTTP status, when it came from the server
        self.code = code              # the server's error code, when there was one

    def __str__(self) -> str:
        return self.message

    @property
    def permanent(self) -> bool:
        """Whether the same request would be refused again as it is: the server's 4xx (but a
        request timeout, a rate limit or a lost login), or a local refusal made so."""
        if self.exit_code in (UNREACHABLE, INTERRUPTED):
            return False
        if self.status is None:
            return self.exit_code in (USAGE, NOT_FOUND) or self.code == BAD_LOCAL_NAME
        # 422: the storages cannot take it now (one down, too few for the scheme); that passes.
        return 400 <= self.status < 500 and self.status not in (401, 408, 422, 429) and \
            self.code not in PASSING_CODES


class Cancelled(CliError):
    """What a transfer's worker raises once its command is stopping (interrupted, or the server
    unreachable): the file is not sent, and no failure of its own."""

    def __init__(self, message: str = "stopped"):
        super().__init__(message, INTERRUPTED)


class Stopped(CliError):
    """A transfer stopped as a whole; its message has the counts. Requests may still be under
    way on other threads: the command leaves without waiting for them."""


class UsageError(CliError):
    def __init__(self, message: str):
        super().__init__(message, USAGE)


class NotFoundError(CliError):
    def __init__(self, message: str):
        super().__init__(message, NOT_FOUND, status=404)


class AuthError(CliError):
    def __init__(self, message: str):
        super().__init__(message, AUTH)
