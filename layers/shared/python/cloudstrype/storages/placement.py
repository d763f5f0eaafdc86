"""Where shares go: weighted by free space, online storages only, never two shares of a chunk
on one storage."""
from __future__ import annotations

import random
import time

from cloudstrype import errors
from cloudstrype.storages.store import ACTIVE, DRAINING, OFFLINE, Storage

# Free-space weight for storages that state no capacity.
UNKNOWN_FREE_WEIGHT = 1 << 40


def weight(storage: Storage) -> float:
    free = storage.free
    return float(UNKNOWN_FREE_WEIGHT if free is None else free) + 1.0


def _not_usable(storage: Storage, share_size: int, now: float) -> str:
    """Why placement passes a storage over, in a few words."""
    if storage.status != ACTIVE:
        return storage.status.replace("_", " ")     # draining, offline, needs reconnect
    if storage.down(now):
        return f"down for {int(storage.down_until - now) + 1} s after an error"
    return f"full ({storage.free} bytes free)"


def can_take(storage: Storage, share_size: int, now: float | None = None) -> bool:
    """Whether placement may put a share of `share_size` bytes on the storage now."""
    return storage.usable(now) and (storage.free is None or storage.free >= share_size)


def choose_storages(candidates: list[Storage], count: int, share_size: int,
                    among: str = "your {n} storages") -> list[Storage]:
    """`count` distinct storages, weighted by free space, skipping the down and the full.
    `among` says in a refusal which storages were the candidates ({n}: how many)."""
    now = time.time()
    usable = [s for s in candidates if can_take(s, share_size, now)]
    if len(usable) < count:
        why = "; ".join(f"{s.name}: {_not_usable(s, share_size, now)}"
                        for s in candidates if s not in usable)
        # Storages out of reach for a while (down after an error, a member not connected):
        # if they would make up the count, this passes when they are back - worth a retry.
        waiting = [s for s in candidates if s not in usable and _back_soon(s, now)]
        if len(usable) + len(waiting) >= count:
            retry = retry_after_seconds(waiting, now)
            raise errors.ServiceUnavailable(
                f"This needs {count} storages, but {len(usable)} of "
                f"{among.format(n=len(candidates))} are usable now ({why}). Nothing was "
                f"stored; try again when they are back (retry in {retry} s), or choose a "
                f"durability with fewer shares.", code="storages_unavailable",
                details={"needed": count, "usable": len(usable), "waiting": len(waiting)},
                headers={"Retry-After": str(retry)})
        raise errors.Unprocessable(
            f"This needs {count} storages with room for a {share_size}-byte share each, but "
            f"{len(usable)} of {among.format(n=len(candidates))} are usable now"
            f"{f' ({why})' if why else ''}. Add storages or choose a durability with fewer "
            f"shares.", code="not_enough_storages",
            # "full": passed over only for room; a smaller write may fit them.
            details={"needed": count, "usable": len(usable),
                     "full": sum(1 for s in candidates
                                 if s.usable(now) and s.free is not None and
                                 s.free < share_size)})
    chosen, pool = [], list(usable)
    for _ in range(count):
        # Weighted sampling without replacement (Efraimidis–Spirakis would be overkill here).
        total = sum(weight(s) for s in pool)
        pick = random.uniform(0, total)
        position = 0
        for position, storage in enumerate(pool):  # noqa: B007 (used after the loop)
            pick -= weight(storage)
            if pick <= 0:
                break
        chosen.append(pool.pop(position))
    return chosen


def default_durability(candidates: list[Storage]) -> str:
    """Two copies when the user keeps two storages for data (any not draining), else one.
    Counted whether or not each is reachable this moment: a storage down for a minute after
    an error, a member not connected or one to reconnect must not make new files single
    copies for good; such a write waits for it (choose_storages: 503 storages_unavailable)."""
    kept = sum(1 for s in candidates if s.status != DRAINING)
    return "raid1(2)" if kept >= 2 else "raid1(1)"


# How long a write refused for storages out of reach asks its client to wait, at most.
DOWN_RETRY_SECONDS = 60


def retry_after_seconds(away: list[Storage], now: float) -> int:
    """The Retry-After for work that waits on storages out of reach: the soonest any of them
    marked down comes back, at most DOWN_RETRY_SECONDS (a member not connected says nothing
    of when it returns)."""
    return max(1, min([DOWN_RETRY_SECONDS] + [int(s.down_until - now) + 1
                                              for s in away if s.down(now)]))


def _back_soon(storage: Storage, now: float) -> bool:
    """Out of reach for now only: down for a while after an error, or a member not
    connected (not draining, full, or waiting for its user to reconnect it)."""
    return storage.status == OFFLINE or (storage.status == ACTIVE and storage.down(now))
