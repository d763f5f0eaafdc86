"""Every Cloudstrype function: how many, what they run on, their settings and permissions."""
from __future__ import annotations

import dataclasses

import pytest
from cloudstrype.settings import Settings

from tests.infra.conftest import evaluate

OAUTH_SECRETS_ARN_ENV = "CLOUDSTRYPE_OAUTH_SECRETS_ARN"
SECRET_SETTINGS = {f.metadata["env"] for f in dataclasses.fields(Settings) if f.metadata["secret"]}


@pytest.fixture(scope="module")
def service_functions(synthesized) -> dict[str, dict]:
    """The functions running service code (handler app.<name>), by logical id."""
    return {name: f for name, f in synthesized.of_type("AWS::Lambda::Function").items()
            if f["Properties"]["Handler"].startswith("app.")}


def test_one_function_per_route_websocket_route_and_job_and_nothing_else(
        synthesized, service_functions, routes, websocket_routes, scheduled_handlers):
    functions = synthesized.of_type("AWS::Lambda::Function")
    handlers = [f["Properties"]["Handler"] for f in service_functions.values()]
    assert handlers.count("app.app") == len(routes)
    assert sorted(h for h in handlers if h != "app.app") == \
        sorted([handler for _, handler in websocket_routes.values()] + scheduled_handlers)
    # The one other function is CDK's BucketDeployment handler that copies web/ to S3.
    others = set(functions) - set(service_functions)
    assert len(others) == 1 and next(iter(others)).startswith("CustomCDKBucketDeployment")
    assert len(functions) == len(routes) + len(websocket_routes) + len(scheduled_handlers) + 1


def test_functions_are_x86_64_python_with_both_layers(synthesized, service_functions):
    layers = synthesized.of_type("AWS::Lambda::LayerVersion")
    ours = {name for name, layer in layers.items()
            if layer["Properties"].get("CompatibleRuntimes") == ["python3.13"]}
    assert len(ours) == 2
    for name, function in service_functions.items():
        props = function["Properties"]
        assert props["Architectures"] == ["x86_64"], name
        assert props["Runtime"] == "python3.13", name
        # API Gateway gives up after 29 s; scheduled jobs may run to Lambda's 15 minutes.
        assert props["Timeout"] == (900 if props["Description"].startswith("Scheduled ")
                                    else 29), name
        assert props["MemorySize"] >= 512, name
        assert {layer["Ref"] for layer in props["Layers"]} == ours, name
    for name in ours:
        assert layers[name]["Properties"]["CompatibleArchitectures"] == ["x86_64"]


def test_shared_layer_asset_has_the_python_prefix(synthesized):
    layers = synthesized.of_type("AWS::Lambda::LayerVersion")
    staged = [synthesized.outdir / layer["Metadata"]["aws:asset:path"]
              for layer in layers.values() if "aws:asset:path" in layer.get("Metadata", {})]
    shared = [path for path in staged if (path / "python" / "cloudstrype").is_dir()]
    assert len(shared) == 1
    assert (shared[0] / "python" / "cloudstrype" / "settings.py").is_file()
    # Bundling is off here, so this is the source folder; what bundling ships (no stale caches,
    # bytecode for the runtime) is tested in test_layers.py.


def test_every_setting_is_in_every_function_environment_except_secrets(service_functions):
    expected = set(Settings.env_names().values()) - SECRET_SETTINGS - {"AWS_REGION"}
    assert expected  # the Settings contract names variables at all
    for name, function in service_functions.items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert expected | {OAUTH_SECRETS_ARN_ENV} <= set(variables), name
        assert not SECRET_SETTINGS & set(variables), name
        assert "AWS_REGION" not in variables  # Lambda reserves it and sets it itself


def test_setting_values_point_at_the_stack_resources(synthesized, service_functions):
    variables = next(f for f in service_functions.values()
                     if "(filesystem service)" in f["Properties"]["Description"]
                     )["Properties"]["Environment"]["Variables"]
    (pool,) = synthesized.of_type("AWS::Cognito::UserPool")
    (client,) = synthesized.of_type("AWS::Cognito::UserPoolClient")
    (key,) = synthesized.of_type("AWS::KMS::Key")
    (secret,) = synthesized.of_type("AWS::SecretsManager::Secret")
    (ws_api,) = synthesized.of_type("AWS::ApiGatewayV2::Api")
    (rest_api,) = synthesized.of_type("AWS::ApiGateway::RestApi")
    staging = [name for name, b in synthesized.of_type("AWS::S3::Bucket").items()
               if "LifecycleConfiguration" in b["Properties"]]

    assert variables["CLOUDSTRYPE_USER_POOL_ID"] == {"Ref": pool}
    assert variables["CLOUDSTRYPE_USER_POOL_CLIENT_ID"] == {"Ref": client}
    assert variables["CLOUDSTRYPE_KMS_KEY_ID"] == {"Ref": key}
    assert variables["CLOUDSTRYPE_STAGING_BUCKET"] == {"Ref": staging[0]}
    # (the data-plane services' functions; see test_access for the others)
    assert variables[OAUTH_SECRETS_ARN_ENV] == {"Ref": secret}
    assert evaluate(variables["CLOUDSTRYPE_TABLE_PREFIX"]) == "cloudstrype-prod-1a2b3c4d-"
    assert variables["CLOUDSTRYPE_METADATA_ENGINE"] == "dynamodb"
    assert variables["CLOUDSTRYPE_LOCAL_STORAGE_ENABLED"] == "false"
    assert variables["CLOUDSTRYPE_AUTO_CONFIRM_USERS"] == "false"

    def joined(name):
        return variables[name]["Fn::Join"][1]

    issuer = joined("CLOUDSTRYPE_TOKEN_ISSUER")
    assert issuer[0] == "https://cognito-idp." and issuer[-1] == {"Ref": pool}
    jwks = joined("CLOUDSTRYPE_JWKS_URL")
    assert jwks[:-1] == issuer and jwks[-1] == "/.well-known/jwks.json"
    management = joined("CLOUDSTRYPE_WS_MANAGEMENT_URL")
    assert management[:2] == ["https://", {"Ref": ws_api}] and management[-1] == "/prod"
    public = joined("CLOUDSTRYPE_PUBLIC_URL")
    assert public[:2] == ["https://", {"Ref": rest_api}] and public[-1] == "/prod"
