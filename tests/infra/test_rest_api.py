"""The REST API: one function and one method per route of every service's route table."""
from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
from cloudstrype.api.service import PUBLIC

REPO = Path(__file__).resolve().parents[2]
ACCESS_TOKEN_SCOPE = "aws.cognito.signin.user.admin"


def _resource_paths(synthesized) -> dict[str, str]:
    """AWS::ApiGateway::Resource logical id -> full path, by following ParentId up to the root."""
    resources = synthesized.of_type("AWS::ApiGateway::Resource")
    paths: dict[str, str] = {}

    def path_of(name: str) -> str:
        if name not in paths:
            props = resources[name]["Properties"]
            parent = props["ParentId"]
            prefix = "" if "Fn::GetAtt" in parent else path_of(parent["Ref"])
            paths[name] = f"{prefix}/{props['PathPart']}"
        return paths[name]

    for name in resources:
        path_of(name)
    return paths


def _method_path(method: dict, paths: dict[str, str]) -> str:
    resource_id = method["Properties"]["ResourceId"]
    return "/" if "Fn::GetAtt" in resource_id else paths[resource_id["Ref"]]


def _integration_function(method: dict) -> str:
    uri_parts = method["Properties"]["Integration"]["Uri"]["Fn::Join"][1]
    return next(part["Fn::GetAtt"][0] for part in uri_parts
                if isinstance(part, dict) and "Fn::GetAtt" in part)


@pytest.fixture(scope="module")
def route_methods(synthesized) -> dict[tuple[str, str], dict]:
    paths = _resource_paths(synthesized)
    return {(m["Properties"]["HttpMethod"], _method_path(m, paths)): m
            for m in synthesized.of_type("AWS::ApiGateway::Method").values()
            if m["Properties"]["HttpMethod"] != "OPTIONS"}


def test_the_services_declare_routes(routes):
    # Guards the tests below against passing over an empty route table.
    assert len(routes) >= 2
    assert {r.auth for r in routes} > {PUBLIC}


def test_one_method_per_route_at_the_route_path(routes, route_methods, synthesized):
    assert set(route_methods) == {(r.method, r.path) for r in routes}
    non_options = [m for m in synthesized.of_type("AWS::ApiGateway::Method").values()
                   if m["Properties"]["HttpMethod"] != "OPTIONS"]
    assert len(non_options) == len(routes)


def test_cors_preflight_on_every_resource_and_the_root(routes, synthesized):
    prefixes = set()
    for route in routes:
        parts = route.path.strip("/").split("/")
        prefixes.update("/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1))
    assert set(_resource_paths(synthesized).values()) == prefixes
    options = [m for m in synthesized.of_type("AWS::ApiGateway::Method").values()
               if m["Properties"]["HttpMethod"] == "OPTIONS"]
    assert len(options) == len(prefixes) + 1
    for method in options:
        assert method["Properties"]["AuthorizationType"] == "NONE"
        assert method["Properties"]["Integration"]["Type"] == "MOCK"


def test_each_route_has_its_own_function_running_its_service_app(routes, route_methods,
                                                                  synthesized):
    functions = synthesized.of_type("AWS::Lambda::Function")
    by_route = {key: _integration_function(m) for key, m in route_methods.items()}
    assert len(set(by_route.values())) == len(routes)
    for route in routes:
        method = route_methods[(route.method, route.path)]
        assert method["Properties"]["Integration"]["Type"] == "AWS_PROXY"
        function = functions[by_route[(route.method, route.path)]]
        assert function["Properties"]["Handler"] == "app.app"
        # The code asset is the service's folder: the staged copy holds that app.py.
        staged = synthesized.outdir / function["Metadata"]["aws:asset:path"]
        source = REPO / "functions" / route.service
        assert filecmp.cmp(staged / "app.py", source / "app.py", shallow=False), route
        assert not list(staged.rglob("__pycache__"))


def test_protected_routes_use_the_cognito_authorizer_with_access_tokens(routes, route_methods,
                                                                        synthesized):
    (authorizer_id, authorizer), = synthesized.of_type("AWS::ApiGateway::Authorizer").items()
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"
    (pool_id,) = synthesized.of_type("AWS::Cognito::UserPool")
    assert authorizer["Properties"]["ProviderARNs"] == [{"Fn::GetAtt": [pool_id, "Arn"]}]
    for route in routes:
        props = route_methods[(route.method, route.path)]["Properties"]
        if route.auth == PUBLIC:
            assert props["AuthorizationType"] == "NONE", route
            assert "AuthorizerId" not in props
        else:
            assert props["AuthorizationType"] == "COGNITO_USER_POOLS", route
            assert props["AuthorizerId"] == {"Ref": authorizer_id}
            assert props["AuthorizationScopes"] == [ACCESS_TOKEN_SCOPE]


def test_one_invoke_permission_per_route_and_websocket_route(routes, websocket_routes,
                                                              synthesized):
    permissions = [p for p in synthesized.of_type("AWS::Lambda::Permission").values()
                   if p["Properties"]["Principal"] == "apigateway.amazonaws.com"]
    assert len(permissions) == len(routes) + len(websocket_routes)


def test_rest_api_takes_any_body_as_binary(synthesized):
    (api,) = synthesized.of_type("AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["BinaryMediaTypes"] == ["*/*"]
    (stage,) = synthesized.of_type("AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["StageName"] == "prod"


@pytest.mark.parametrize("response_type,status,code", [
    ("MISSING_AUTHENTICATION_TOKEN", "404", "not_found"),
    ("UNAUTHORIZED", "401", "unauthorized"),
    ("EXPIRED_TOKEN", "401", "token_expired"),
    ("ACCESS_DENIED", "403", "forbidden"),
    ("REQUEST_TOO_LARGE", "413", "payload_too_large"),
    ("THROTTLED", "429", "too_many_requests"),
    ("DEFAULT_4XX", None, "bad_request"),
    ("DEFAULT_5XX", None, "internal_error"),
])
def test_gateway_errors_use_the_json_error_shape(synthesized, response_type, status, code):
    (response,) = [r["Properties"] for r in
                   synthesized.of_type("AWS::ApiGateway::GatewayResponse").values()
                   if r["Properties"]["ResponseType"] == response_type]
    assert response.get("StatusCode") == status
    template = response["ResponseTemplates"]["application/json"]
    # What API Gateway substitutes: its own message, already quoted as a JSON string.
    body = json.loads(template.replace("$context.error.messageString", '"API Gateway says no"'))
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert response["ResponseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"] \
        == "'*'"
    if code == "too_many_requests":
        # Nothing ran: the CLI sends it again (api.BUSY), after Retry-After.
        assert response["ResponseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"
