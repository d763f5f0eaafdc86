"""The local stack's scheduled jobs (infra/local/server.py: what EventBridge does in AWS):
a job that meets the metadata store's own refusal (its disk full) says it in one line and runs
again at the next interval; anything else unforeseen keeps its traceback. A unit test: the
jobs are stand-in functions."""
from __future__ import annotations

import asyncio
import logging
import threading
import types

from cloudstrype.metadata.engine import StoreFull

from infra.local.server import LocalStack


def test_a_job_refused_by_a_full_metadata_disk_is_one_line_and_runs_again(monkeypatch, caplog):
    runs = []

    def scrub(event, context):
        runs.append(event["detail-type"])
        raise StoreFull("The server's disk is full; nothing was written.")

    monkeypatch.setenv("CLOUDSTRYPE_SCHEDULE_INTERVAL", "0.01")
    stack = types.SimpleNamespace(scheduled={"scrub": scrub})
    gateway = types.SimpleNamespace(executor=None)

    async def a_while() -> None:
        try:
            await asyncio.wait_for(LocalStack._run_schedules(stack, gateway), 0.3)
        except asyncio.TimeoutError:
            pass

    # On a thread of its own: a test before this one on the same worker may have left an
    # event loop running on the main thread, where asyncio.run() refuses to start another.
    with caplog.at_level(logging.WARNING, logger="cloudstrype.local"):
        runner = threading.Thread(target=asyncio.run, args=(a_while(),))
        runner.start()
        runner.join(10)
    assert len(runs) >= 2
    said = [r for r in caplog.records if "scheduled job scrub" in r.getMessage()]
    assert said and all(r.exc_info is None and "disk is full" in r.getMessage() for r in said)
