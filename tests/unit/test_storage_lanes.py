"""Share I/O of one OAuth storage keeps at most STORAGE_IO_THREADS of the shared pool busy.

A throttled provider's requests sleep in their threads (pacing); 32 writes queued for one had
every thread of the pool asleep, and a write to a healthy storage of any user waited 3.7 s
behind a 4 s hold (providers sweep). A unit test: the storage's I/O is a function that sleeps
as a paced request does.
"""
from __future__ import annotations

import threading
import time

import pytest
from cloudstrype.pipeline import store
from cloudstrype.storages.store import Storage


def _record(kind: str, storage_id: str) -> Storage:
    return Storage(owner="u", storage_id=storage_id, kind=kind, name=storage_id)


def test_a_throttled_storage_leaves_threads_for_every_other_storage():
    release = threading.Event()
    running, peak, lock = [0], [0], threading.Lock()

    def held_write(_key: str) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(10)             # held off by the provider
        with lock:
            running[0] -= 1
        return "written"

    throttled = _record("onedrive", "throttled")
    held = [store._share_io(throttled, held_write, f"s{i}")
            for i in range(2 * store.SHARE_IO_THREADS)]
    try:
        time.sleep(0.2)
        for other in (_record("dropbox", "healthy-dropbox"), _record("s3", "healthy-bucket"),
                      _record("local", "healthy-folder")):
            started = time.monotonic()
            assert store._share_io(other, lambda: "fast").result(timeout=5) == "fast"
            assert time.monotonic() - started < 1
        assert peak[0] == store.STORAGE_IO_THREADS
    finally:
        release.set()
    # The queued ones all ran, in their turn, and their lane is given back.
    assert [f.result(timeout=10) for f in held] == ["written"] * len(held)
    assert peak[0] == store.STORAGE_IO_THREADS
    assert not store._lanes._running and not store._lanes._waiting


def test_a_lane_hands_back_errors_and_skips_what_was_cancelled_while_it_waited():
    gate = threading.Event()
    record = _record("box", "one-box")
    first = [store._share_io(record, gate.wait, 10) for _ in range(store.STORAGE_IO_THREADS)]
    ran = []
    cancelled = store._share_io(record, ran.append, "should not run")
    failing = store._share_io(record, lambda: 1 / 0)
    assert cancelled.cancel()
    gate.set()
    assert all(f.result(timeout=10) for f in first)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    assert ran == []


def test_a_request_that_waited_too_long_in_its_storages_queue_fails_as_that_storages(
        monkeypatch):
    """What a request waits in the queue comes before its own budget, and both must end
    inside the gateway's 29 s: past STORAGE_QUEUE_SECONDS it fails as the storage's (the
    write then goes to another storage), without being sent (review sweep)."""
    from cloudstrype.backends.base import BackendError
    monkeypatch.setattr(store, "STORAGE_QUEUE_SECONDS", 0.2)
    gate, sent = threading.Event(), []
    record = _record("gdrive", "slow-drive")
    first = [store._share_io(record, gate.wait, 10) for _ in range(store.STORAGE_IO_THREADS)]
    late = store._share_io(record, sent.append, "late")
    time.sleep(0.5)
    gate.set()
    with pytest.raises(BackendError, match="waited .* request slots"):
        late.result(timeout=10)
    assert all(f.result(timeout=10) for f in first) and sent == []
    assert not store._lanes._running and not store._lanes._waiting
