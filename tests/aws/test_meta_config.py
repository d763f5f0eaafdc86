"""GET /api/config as the deployed meta function answers it: where members connect."""
from __future__ import annotations

import functions
from tests.aws.conftest import WEB_URL, WEBSOCKET_URL
from tests.aws.events import invoke, rest_event


def test_config_names_the_websocket_stage_and_the_web_ui(deployed, monkeypatch):
    # The meta function may not read the OAuth secret: the route must not try (here the ARN
    # names no secret at all, so a read would fail the request).
    monkeypatch.setenv("CLOUDSTRYPE_OAUTH_SECRETS_ARN",
                       "arn:aws:secretsmanager:us-east-1:123456789012:secret:absent-AbCdEf")
    answer = invoke(functions.load_app("meta"), rest_event("GET", "/api/config"))
    assert answer.status == 200, answer.body
    assert answer.json() == {"websocketUrl": WEBSOCKET_URL, "webUrl": WEB_URL}


def test_config_needs_no_token(deployed):
    answer = invoke(functions.load_app("meta"), rest_event(
        "GET", "/api/config", headers={"Authorization": "Bearer not-a-token"}))
    assert answer.status == 200
    assert answer.json()["websocketUrl"].startswith("wss://")
