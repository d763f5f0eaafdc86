"""A member's refresh of its login is asked again after an answer lost on the way or a busy
server (the local server gives the same new tokens again for a minute): one lost answer made
the member stop with "the server refused the token"."""
from __future__ import annotations

import pytest
import requests
from cloudstrype_client import member as member_module
from cloudstrype_client.member import Member


class _Answer:
    def __init__(self, status: int, body: dict | None = None):
        self.status_code, self._body = status, body or {}

    def json(self) -> dict:
        return self._body


class _Session:
    def __init__(self, answers: list):
        self.answers, self.posts = list(answers), 0

    def post(self, url, json, timeout):
        self.posts += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _member(monkeypatch, answers: list) -> tuple[Member, _Session]:
    monkeypatch.setattr(member_module.time, "sleep", lambda _s: None)
    session = _Session(answers)
    member = Member("http://127.0.0.1:1", store=None, name="m", token="old-access",
                    refresh_token="old-refresh", transfers=1, ping_interval=30)
    monkeypatch.setattr(member, "_http", lambda: session)
    return member, session


def test_a_lost_answer_and_a_busy_server_are_asked_again(monkeypatch):
    member, session = _member(monkeypatch, [
        requests.ConnectionError("connection reset"), _Answer(502),
        _Answer(200, {"access_token": "new-access", "refresh_token": "new-refresh"})])
    assert member._refresh() is True
    assert (member.token, member.refresh_token) == ("new-access", "new-refresh")
    assert session.posts == 3


@pytest.mark.parametrize("answers", [
    [requests.ConnectionError("down")] * member_module.REFRESH_TRIES,
    [_Answer(401, {"error": {"code": "invalid_refresh_token"}})],
])
def test_a_refresh_refused_or_never_answered_gives_up(monkeypatch, answers):
    member, session = _member(monkeypatch, answers)
    assert member._refresh() is False
    assert member.token == "old-access"
    assert session.posts == len(answers)
