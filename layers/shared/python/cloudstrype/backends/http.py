"""One careful way to call a cloud provider's HTTP API, shared by the Dropbox, Google Drive,
OneDrive and Box backends and by the OAuth account lookup.

Every request has a timeout. A 401 refreshes the access token once and retries. 5xx answers
and network errors retry with exponential backoff (with jitter) up to a bounded number of
attempts. A rate-limit answer (429, or what the provider uses instead) waits for Retry-After
(or backs off with jitter when there is none) and does not use up the attempts: it only slows
the request down. With a pacer (pacing.py) writes also keep to the provider's rate and a
Retry-After holds back every request to that storage, from every thread. All of it stays within
a total time budget per request; a wait past it fails at once with BackendError, and the
pipeline uses another backend.

Nothing secret reaches the log: only the method, host and path of a URL (download URLs carry
credentials in their query strings), never headers or bodies.
"""
from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

import requests
from oauthlib.oauth2 import InsecureTransportError

from .base import BackendAuthError, BackendError, BackendFull
from .outbound import guard_session
from .pacing import Pacer, WaitTooLong

log = logging.getLogger(__name__)

ResponseCheck = Callable[[requests.Response], bool]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one backend call tries. Tests pass tiny delays and a recording `sleep`."""

    attempts: int = 4                # tries per request, the first one included
    backoff: float = 0.5             # seconds before the first retry; doubles each time
    max_backoff: float = 4.0
    # Seconds one call may spend in all, waits included: inside API Gateway's 29 s.
    deadline: float = 20.0
    timeout: tuple[float, float] = (5.0, 20.0)   # (connect, read) per HTTP request
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    # The pacer's "now"; a test whose `sleep` only records passes a clock that its sleeps move.
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    def backoff_delay(self, retry_number: int) -> float:
        """Exponential backoff with jitter, so many clients do not retry in step."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry_number - 1))
        return random.uniform(ceiling / 2, ceiling)


DEFAULT_POLICY = RetryPolicy()


def is_429(response: requests.Response) -> bool:
    return response.status_code == 429


def is_507(response: requests.Response) -> bool:
    return response.status_code == 507


# The longest pause a provider's Retry-After is taken for. A storage's pacer holds every
# request of the process back for it: "inf" or a date in a year held the storage off until a
# restart. Longer answers wait this long, then ask again.
MAX_RETRY_AFTER_SECONDS = 3600.0


def retry_after_seconds(response: requests.Response) -> float | None:
    """The Retry-After header in seconds (it may be a number or an HTTP date), at most
    MAX_RETRY_AFTER_SECONDS; None when absent or not a number or date."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if not math.isfinite(seconds):
        return None     # "nan", "inf": no number of seconds
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, seconds))


def loggable_url(url: str) -> str:
    """scheme://host/path without the query string, which may hold a credential."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def error_detail(response: requests.Response) -> str:
    """A short, human-readable reason from a provider's error body, whatever its shape."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:200]
    if not isinstance(body, dict):
        return str(body)[:200]
    error = body.get("error")
    if "error_summary" in body:     # Dropbox (whose "error" is a tagged union)
        text = body["error_summary"]
    # Google: {"error": {"message"}}, Graph: {"error": {"code", "message"}}
    elif isinstance(error, dict):
        text = error.get("message") or error.get("code") or ""
    elif "error_description" in body:   # OAuth token endpoints
        text = f"{error}: {body['error_description']}"
    else:                           # Box: {"code", "message"}
        text = body.get("message") or body.get("code") or error or ""
    return str(text)[:200]


def range_headers(start: int, length: int) -> dict[str, str]:
    """Headers asking for bytes start..start+length-1 (length > 0) of a download, unencoded:
    a range of a gzip-encoded body would be a range of the compressed bytes."""
    return {"Range": f"bytes={start}-{start + length - 1}", "Accept-Encoding": "identity"}


def _content_range_start(value: str) -> int | None:
    """The first byte of "bytes a-b/total", or None if the header is absent or malformed."""
    unit, _, spec = value.strip().partition(" ")
    first, dash, _ = spec.partition("-")
    if unit.lower() != "bytes" or not dash or not first.strip().isdigit():
        return None
    return int(first)


class ProviderClient:
    """Sends requests to one provider through an (OAuth) session, with the rules above.

    `send` returns the response for the caller to interpret (2xx, and 4xx other than 401 and
    the provider's rate-limit answers); it raises BackendFull when `is_full` says so,
    BackendAuthError for a 401 that a token refresh did not cure, and BackendError when the
    retries run out. `error_for` turns any other unexpected response into the right error.

    The session may be a `cloudstrype.backends.oauth.ProviderSession` (which can refresh its
    token) or any requests.Session.
    """

    def __init__(
        self,
        session: requests.Session,
        label: str,
        *,
        policy: RetryPolicy | None = None,
        is_rate_limited: ResponseCheck = is_429,
        is_full: ResponseCheck = is_507,
        pacer: Pacer | None = None,
    ):
        # Providers answer with URLs to follow (uploads, downloads, redirects): those go
        # through the same address check as a user-given endpoint.
        self.session = guard_session(session)
        self.label = label
        self.policy = policy or DEFAULT_POLICY
        self.is_rate_limited = is_rate_limited
        self.is_full = is_full
        self.pacer = pacer

    def send(self, method: str, url: str, *, write: bool = False,
             **kwargs) -> requests.Response:
        """`write`: the request creates, changes or deletes something (paced at the
        provider's write rate)."""
        policy = self.policy
        kwargs.setdefault("timeout", policy.timeout)
        where = f"{self.label} {method} {loggable_url(url)}"
        started = time.monotonic()
        slept = 0.0
        refreshed = False
        attempt = failures = 0
        while True:
            attempt += 1
            if self.pacer is not None:
                slept += self._wait_for_turn(where, write, started, slept)
            token_sent = getattr(self.session, "access_token", None)
            rate_limited = False
            try:
                response = self.session.request(method, url, **kwargs)
            except InsecureTransportError:
                raise BackendError(
                    f"{where}: refusing to send an OAuth token over plain HTTP "
                    "(set OAUTHLIB_INSECURE_TRANSPORT=1 only for local test servers)"
                ) from None
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                problem = type(exc).__name__
                delay = policy.backoff_delay(attempt)
            except requests.RequestException as exc:
                raise BackendError(f"{where}: {type(exc).__name__}") from exc
            else:
                if self.is_full(response):
                    raise BackendFull(f"{where}: out of space: {error_detail(response)}")
                if response.status_code == 401:
                    if refreshed or not hasattr(self.session, "refresh_access_token"):
                        raise BackendAuthError(
                            f"{where}: the provider rejected the access token "
                            f"({error_detail(response)}); reconnect the storage"
                        )
                    # The token may have been revoked or expired early: refresh once, retry.
                    self.session.refresh_access_token(stale=token_sent)
                    refreshed = True
                    continue
                problem = self._passing_problem(response)
                if problem is None:
                    return response
                rate_limited = self.is_rate_limited(response)
                delay = retry_after_seconds(response)
                if delay is None:
                    delay = policy.backoff_delay(attempt)
                elif rate_limited:
                    # At least the backoff of this try: "Retry-After: 0" (or a date gone
                    # by) again and again had reads sent back to back (~300 a second).
                    delay = max(delay, policy.backoff_delay(attempt))
            spent = max(time.monotonic() - started, slept)
            if rate_limited and self.pacer is not None:
                # Every thread holds back, not only this one.
                self.pacer.hold_off(delay, now=policy.clock())
            if not rate_limited:
                failures += 1
                if failures >= policy.attempts:
                    raise BackendError(f"{where}: {problem}; gave up after {failures} attempts")
            if spent + delay > policy.deadline:
                raise BackendError(
                    f"{where}: {problem}; the next try would be in {delay:.1f} s, past the "
                    f"{policy.deadline:.0f} s budget"
                )
            log.warning("%s: %s; retrying in %.2f s (attempt %d)", where, problem, delay, attempt)
            policy.sleep(delay)
            slept += delay

    def _wait_for_turn(self, where: str, write: bool, started: float, slept: float) -> float:
        """Sleep until the pacer lets this request go; the seconds slept."""
        spent = max(time.monotonic() - started, slept)
        if spent >= self.policy.deadline:
            # Spent already (a slow answer, a token refresh that took long): said as such,
            # not as a rate limit, which there may be none of.
            raise BackendError(f"{where}: this request's {self.policy.deadline:.0f} s budget "
                               f"is spent ({spent:.0f} s so far); try again")
        try:
            wait = self.pacer.turn(write=write, budget=self.policy.deadline - spent,
                                   now=self.policy.clock())
        except WaitTooLong as exc:
            raise BackendError(
                f"{where}: rate limited; the next request may go in {exc.wait:.1f} s, past the "
                f"{self.policy.deadline:.0f} s budget"
            ) from None
        slept = 0.0
        while wait > 0:
            if slept + wait > self.policy.deadline - spent:
                raise BackendError(
                    f"{where}: rate limited; the next request may go in {wait:.1f} s, past "
                    f"the {self.policy.deadline:.0f} s budget"
                )
            self.policy.sleep(wait)
            slept += wait
            # Another thread may have been told to back off while this one slept.
            wait = self.pacer.held_for(now=self.policy.clock())
        return slept

    def _passing_problem(self, response: requests.Response) -> str | None:
        """What is wrong, if the answer is one to wait out and retry; else None."""
        if self.is_rate_limited(response):
            return "rate limited"
        if response.status_code >= 500:
            return f"HTTP {response.status_code} ({error_detail(response)})"
        return None

    def error_for(self, response: requests.Response, action: str) -> BackendError:
        """The error to raise for a response the caller did not expect."""
        message = (f"{self.label}: could not {action}: HTTP {response.status_code} "
                   f"({error_detail(response)})")
        if response.status_code in (401, 403):
            return BackendAuthError(message)
        return BackendError(message)

    def ranged_body(self, response: requests.Response, start: int, length: int,
                    action: str) -> bytes | None:
        """The bytes asked for with `range_headers` from the answer: a 206's body, the slice
        of a 200 (a server may ignore Range and send it all), b"" for a 416 (the range starts
        past the end); None for any other answer, for the caller to interpret."""
        if response.status_code == 206:
            served = _content_range_start(response.headers.get("Content-Range", ""))
            if served is not None and served != start:
                raise BackendError(f"{self.label}: could not {action}: asked for bytes from "
                                   f"{start}, the answer has bytes from {served}")
            return response.content[:length]
        if response.status_code == 200:
            return response.content[start:start + length]
        if response.status_code == 416:
            return b""
        return None

    def json(self, response: requests.Response, action: str) -> dict:
        """The JSON body of a successful response, or BackendError if it is not JSON."""
        try:
            body = response.json()
        except ValueError:
            raise BackendError(f"{self.label}: could not {action}: the answer was not "
                               f"JSON") from None
        if not isinstance(body, dict):
            raise BackendError(f"{self.label}: could not {action}: unexpected answer")
        return body
