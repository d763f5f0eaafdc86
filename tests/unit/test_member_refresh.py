"""A member running with the CLI's saved login renews it as the CLI does (api.Client.refresh):
under the credentials file's lock, taking tokens a command refreshed meanwhile, saving the new
ones, asking again after an answer lost on the way or a busy server. The member and the CLI
share one sign-in: a member that kept its new refresh token to itself left the CLI with a
replaced one, which the server now takes for a stolen copy (review sweep); one lost answer
made the member stop."""
from __future__ import annotations

import json
import time

import pytest
import requests
from cloudstrype_client import api, config
from cloudstrype_client.member import Member

SERVER = "http://127.0.0.1:1"


class _Answer:
    def __init__(self, status: int, body: dict | None = None):
        self.status_code, self._body, self.headers = status, body or {}, {}
        self.text = json.dumps(self._body)

    def json(self) -> dict:
        return self._body


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    monkeypatch.setattr(api.Client, "backoff", lambda self, attempt, retry_after=None: None)
    login = {"server": SERVER, "username": "ann", "access_token": "old-access",
             "id_token": "old-id", "refresh_token": "old-refresh", "expires_at": 0}
    config.save_credentials(login)
    return login


def _answers(monkeypatch, answers: list) -> list:
    sent = []

    def send(self, method, path, *, auth, json=None, **kwargs):
        sent.append(json["refresh_token"])
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(api.Client, "_send", send)
    return sent


def _member(login: dict) -> Member:
    return Member(SERVER, None, "m", login["access_token"], dict(login), transfers=1,
                  ping_interval=30)


def test_the_new_tokens_are_saved_for_the_cli_after_a_lost_answer_and_a_busy_server(
        home, monkeypatch):
    sent = _answers(monkeypatch, [
        requests.ConnectionError("connection reset"), _Answer(502),
        _Answer(200, {"access_token": "new-access", "refresh_token": "new-refresh",
                      "id_token": "new-id", "expires_in": 3600})])
    member = _member(home)
    assert member._refresh() is True
    assert member.token == "new-access"
    assert sent == ["old-refresh"] * 3
    saved = config.load_credentials()
    assert (saved["access_token"], saved["refresh_token"]) == ("new-access", "new-refresh")


def test_tokens_a_command_refreshed_meanwhile_are_taken_without_asking(home, monkeypatch):
    sent = _answers(monkeypatch, [])
    member = _member(home)
    config.save_credentials({**home, "access_token": "cli-access",
                             "refresh_token": "cli-refresh",
                             "expires_at": int(time.time()) + 3600})
    assert member._refresh() is True
    assert member.token == "cli-access" and sent == []


def test_a_refused_refresh_gives_up(home, monkeypatch):
    _answers(monkeypatch, [_Answer(401, {"error": {"code": "refresh_token_reused",
                                                   "message": "ended"}})])
    member = _member(home)
    assert member._refresh() is False
    assert member.token == "old-access"


def test_a_member_with_a_token_of_its_own_does_not_refresh(home, monkeypatch):
    sent = _answers(monkeypatch, [])
    member = Member(SERVER, None, "m", "given-token", None, transfers=1, ping_interval=30)
    assert member._refresh() is False and sent == []
