"""Pacing of the requests to one connected storage: a token bucket for its writes, and a pause
for every request after the provider said "slow down" (Retry-After).

One Pacer per storage per process (`pacer_for`), shared by every thread and every backend object
opened for that storage, so all of them respect one budget. The bucket is a reservation
(GCRA, the "virtual scheduling" form of a token bucket): a caller is told how long to wait for
its turn and sleeps outside the lock, so threads queue fairly and none spins.

Rates are writes per second per storage (each storage is one provider account), from what each
provider documents:

- Dropbox publishes no number. Its performance guide (developers.dropbox.com/dbx-performance-guide)
  says writes to one account take a per-namespace lock, that concurrent writes answer 429
  `too_many_write_operations`, and that every rate-limited answer carries Retry-After.
  We write at 4/s, bursts of 4.
- Google Drive: per-minute per-user quota units; past them "403: User rate limit exceeded" or
  "429: Too many requests", to be met with exponential backoff
  (developers.google.com/drive/api/guides/limits). Sustained file writes of one user are
  accepted at about 3/s, so 3/s, bursts of 3.
- OneDrive (Microsoft Graph): limits vary by scenario and writes are throttled first; a 429
  carries Retry-After, which must be waited out (learn.microsoft.com/graph/throttling);
  SharePoint/OneDrive count an upload or delete as 2 resource units. About 10,000 requests per
  10 minutes per user and app is the figure Microsoft has given: 8 writes/s, bursts of 8.
- Box: 240 file uploads per minute per user (4/s) within 1,000 API calls per minute per user;
  429 with retry-after (developer.box.com/guides/api-calls/permissions-and-errors/rate-limits).
  4/s, bursts of 4.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    per_second: float   # sustained writes per second
    burst: int          # writes that may go at once after a quiet spell


PROVIDER_WRITE_RATES: dict[str, Rate] = {
    "dropbox": Rate(4.0, 4),
    "gdrive": Rate(3.0, 3),
    "onedrive": Rate(8.0, 8),
    "box": Rate(4.0, 4),
}


class WaitTooLong(Exception):
    """The turn (or the provider's Retry-After) is further away than the caller may wait."""

    def __init__(self, wait: float):
        super().__init__(f"the next request may go in {wait:.1f} s")
        self.wait = wait


class Pacer:
    """Thread-safe pacing for one storage. `turn` reserves the next slot and says how long to
    sleep before sending; `hold_off` records a provider's Retry-After so that no request (read
    or write) from this process goes to the storage before it has elapsed."""

    def __init__(self, rate: Rate | None, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._next_at = 0.0        # theoretical arrival time of the next write (GCRA)
        self._resume_at = 0.0      # no request before this (the provider's Retry-After)
        # Observations, for the operator's logs and the tests.
        self.writes = 0
        self.holds = 0
        self.waited = 0.0

    def turn(self, *, write: bool, budget: float, now: float | None = None) -> float:
        """Seconds to sleep before sending this request; the slot is reserved. Raises
        WaitTooLong (reserving nothing) if that is more than `budget`."""
        with self._lock:
            now = self._clock() if now is None else now
            wait = max(0.0, self._resume_at - now)
            if write and self.rate is not None:
                interval = 1.0 / self.rate.per_second
                tolerance = (self.rate.burst - 1) * interval
                start = max(self._next_at, now)
                wait = max(wait, start - tolerance - now)
                if wait > budget:
                    raise WaitTooLong(wait)
                # The write goes at now + wait; the next one is an interval later.
                self._next_at = max(start, now + wait) + interval
                self.writes += 1
            elif wait > budget:
                raise WaitTooLong(wait)
            self.waited += wait
            return wait

    def held_for(self, now: float | None = None) -> float:
        """Seconds until the provider's Retry-After has passed (0 if it has): a request that
        waited for its turn checks this again before it goes, in case a hold came meanwhile."""
        with self._lock:
            now = self._clock() if now is None else now
            return max(0.0, self._resume_at - now)

    def hold_off(self, seconds: float, now: float | None = None) -> None:
        """The provider asked us to wait `seconds` (Retry-After, or our backoff when it did not
        say). Writes after the pause are spaced at the rate again, not sent as a burst."""
        with self._lock:
            now = self._clock() if now is None else now
            self._resume_at = max(self._resume_at, now + seconds)
            if self.rate is not None:
                tolerance = (self.rate.burst - 1) / self.rate.per_second
                self._next_at = max(self._next_at, self._resume_at + tolerance)
            self.holds += 1


_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(provider: str, storage_id: str = "") -> Pacer:
    """The process-wide pacer of one storage; a private one when the storage has no id yet
    (while it is being connected and probed)."""
    rate = PROVIDER_WRITE_RATES.get(provider)
    if not storage_id:
        return Pacer(rate)
    key = f"{provider}:{storage_id}"
    with _pacers_lock:
        pacer = _pacers.get(key)
        if pacer is None:
            pacer = _pacers[key] = Pacer(rate)
        return pacer
