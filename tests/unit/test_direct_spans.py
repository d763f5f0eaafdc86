"""How the CLI walks a large download from a server on this machine (transfer.Downloader.
_spans_here): the chunks of the server's direct-read plans, a plan at a time as the ranges
reach it, and plain ranges (asked of the server) from wherever there is no usable plan: a
server without plans, a plan that does not follow on, or a share's client."""
from __future__ import annotations

import json
import sys

import pytest
import requests
from cloudstrype_client import local_transfer, transfer
from cloudstrype_client.errors import CliError

MiB = 1024 * 1024
R = transfer.RANGE_SIZE


class _Client:
    share = None


def _downloader(share=None) -> transfer.Downloader:
    downloader = transfer.Downloader.__new__(transfer.Downloader)
    downloader.client = _Client()
    downloader.client.share = share
    return downloader


def _answer(plan: dict) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = json.dumps(plan).encode()
    return response


def _plan(size: int, offsets: list[int], version: str = "v1") -> requests.Response:
    return _answer({"version": version, "size": size, "sha256": "x", "chunks": [
        {"offset": o, "size": min(R, size - o), "read": {"chunk": f"c{o // R}"}}
        for o in offsets]})


@pytest.fixture(autouse=True)
def direct(monkeypatch):
    monkeypatch.setattr(local_transfer, "direct_reads", lambda: True)


def test_plans_are_asked_for_as_the_ranges_reach_them():
    size, asked = 5 * R + 7, []

    def plan_from(offset: int):
        asked.append(offset)
        firsts = [o for o in range(offset, size, R)][:2]     # two chunks a plan
        return transfer._direct_spans(_plan(size, firsts), offset, size, "v1")

    spans = list(_downloader()._spans_here(size, plan_from))

    assert asked == [0, 2 * R, 4 * R]
    assert [(first, last) for first, last, _ in spans] == [
        (o, min(size, o + R) - 1) for o in range(0, size, R)]
    assert all(read == {"chunk": f"c{first // R}"} for first, _, read in spans)


def test_without_a_plan_the_rest_goes_by_ranges():
    size = 3 * R

    def plan_from(offset: int):
        if offset:
            raise CliError("400 not_chunked")
        return transfer._direct_spans(_plan(size, [0]), 0, size, "v1")

    spans = list(_downloader()._spans_here(size, plan_from))

    assert [(first, read is not None) for first, _, read in spans] == [
        (0, True), (R, False), (2 * R, False)]


@pytest.mark.parametrize("plan, why", [
    (_plan(2 * R, [0, R], version="v2"), "another version"),
    (_plan(3 * R, [0, R]), "another size"),
    (_plan(2 * R, [R]), "not from the offset asked"),
    (_plan(2 * R, [0, 0]), "overlapping"),
    (_answer({"version": "v1", "size": 2 * R, "chunks": [
        {"offset": 0, "size": R + 1, "read": None}]}), "a chunk over a range's size"),
    (_answer({"version": "v1", "size": 2 * R, "chunks": []}), "no chunks"),
    (_answer({"size": 2 * R}), "no chunks at all"),
])
def test_a_plan_that_does_not_fit_is_not_used(plan, why):
    assert transfer._direct_spans(plan, 0, 2 * R, "v1") is None, why


def test_a_share_s_client_does_not_ask_for_plans():
    def plan_from(offset: int):
        raise AssertionError("a plan was asked for")

    spans = list(_downloader(share="s1")._spans_here(2 * R, plan_from))
    assert [read for _, _, read in spans] == [None, None]


def test_a_cli_installed_without_the_server_s_codec_reads_by_ranges(monkeypatch):
    """The CLI imports the server's codec only for direct reads, and only if it is installed
    beside it (it is wherever `cloudstrype serve` runs); a desktop install without it asks the
    server for every range."""
    monkeypatch.undo()                      # the real direct_reads, not the fixture's
    monkeypatch.setitem(sys.modules, "cloudstrype.pipeline.codec", None)   # import fails
    package = sys.modules.get("cloudstrype.pipeline")
    if package is not None:                 # imported by an earlier test: forget it there too
        monkeypatch.delattr(package, "codec", raising=False)
    local_transfer._codec.cache_clear()
    try:
        assert local_transfer.direct_reads() is False
        assert local_transfer.DirectReader().read({"meta": {}, "shares": []}, 10) is None
    finally:
        local_transfer._codec.cache_clear()


def test_with_the_codec_installed_direct_reads_follow_the_switch(monkeypatch):
    monkeypatch.undo()
    local_transfer._codec.cache_clear()
    monkeypatch.setenv(local_transfer.SWITCH, "on")
    assert local_transfer.direct_reads() is True
    monkeypatch.setenv(local_transfer.SWITCH, "ranges")
    assert local_transfer.direct_reads() is False
    monkeypatch.setenv(local_transfer.SWITCH, "off")
    assert local_transfer.direct_reads() is False
