"""Settings the CDK can only give once other resources exist: where members connect (the
WebSocket stage, answered by GET /api/config) and where OAuth connect returns (CloudFront)."""
from __future__ import annotations


def _service_variables(synthesized) -> list[dict]:
    return [f["Properties"]["Environment"]["Variables"]
            for f in synthesized.of_type("AWS::Lambda::Function").values()
            if f["Properties"]["Handler"].startswith("app.")]


def test_every_function_knows_the_websocket_stage_and_the_web_ui(synthesized):
    (ws_api,) = synthesized.of_type("AWS::ApiGatewayV2::Api")
    (distribution,) = synthesized.of_type("AWS::CloudFront::Distribution")
    every = _service_variables(synthesized)
    assert every
    for variables in every:
        websocket = variables["CLOUDSTRYPE_WEBSOCKET_URL"]["Fn::Join"][1]
        assert websocket[:2] == ["wss://", {"Ref": ws_api}] and websocket[-1] == "/prod"
        web = variables["CLOUDSTRYPE_WEB_URL"]["Fn::Join"][1]
        assert web == ["https://", {"Fn::GetAtt": [distribution, "DomainName"]}]

