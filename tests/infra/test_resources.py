"""The stack's resources besides the REST API: users, data, WebSocket API, web hosting."""
from __future__ import annotations

import json
import re

from aws_cdk.assertions import Match
from cloudstrype.api.security_headers import WEB_UI_HEADERS, web_ui_policy
from cloudstrype.auth import pool
from cloudstrype.metadata import schema

from tests.infra.conftest import evaluate


# -- users ----------------------------------------------------------------------------------------
def test_user_pool_follows_the_declared_password_policy(synthesized):
    (user_pool,) = synthesized.of_type("AWS::Cognito::UserPool").values()
    props = user_pool["Properties"]
    assert props["UserPoolName"] == pool.POOL_NAME
    policy = props["Policies"]["PasswordPolicy"]
    for name, value in pool.PASSWORD_POLICY.items():
        assert policy[name] == value, name
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is False  # self sign-up
    assert props["UsernameConfiguration"] == {"CaseSensitive": False}
    assert user_pool["DeletionPolicy"] == "Retain"


def test_app_client_has_no_secret_and_the_declared_flows_and_validity(synthesized):
    (client,) = synthesized.of_type("AWS::Cognito::UserPoolClient").values()
    props = client["Properties"]
    assert props["ClientName"] == pool.CLIENT_NAME
    assert props["GenerateSecret"] is False
    assert set(props["ExplicitAuthFlows"]) == set(pool.CLIENT_AUTH_FLOWS)
    assert props["AccessTokenValidity"] == pool.ACCESS_TOKEN_MINUTES
    assert props["IdTokenValidity"] == pool.ID_TOKEN_MINUTES
    assert props["RefreshTokenValidity"] == pool.REFRESH_TOKEN_DAYS * 24 * 60
    assert props["TokenValidityUnits"] == {"AccessToken": "minutes", "IdToken": "minutes",
                                           "RefreshToken": "minutes"}


def test_admins_group(synthesized):
    synthesized.template.has_resource_properties("AWS::Cognito::UserPoolGroup", {
        "GroupName": pool.ADMIN_GROUP,
        "UserPoolId": {"Ref": Match.any_value()},
    })
    assert len(synthesized.of_type("AWS::Cognito::UserPoolGroup")) == 1


# -- data -----------------------------------------------------------------------------------------
def test_one_table_per_declared_table_on_demand_with_recovery(synthesized):
    declared = [t for t in schema.all_tables() if not t.local_only]
    prefix = "cloudstrype-prod-1a2b3c4d-"      # stage, then the stack id's first group
    tables = {evaluate(t["Properties"]["TableName"]): t for t in
              synthesized.of_type("AWS::DynamoDB::Table").values()}
    assert declared and set(tables) == {prefix + t.name for t in declared}
    for table in declared:
        resource = tables[prefix + table.name]
        props = resource["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["KeySchema"] == [{"AttributeName": table.hash_key, "KeyType": "HASH"}] + (
            [{"AttributeName": table.range_key, "KeyType": "RANGE"}] if table.range_key else [])
        assert {i["IndexName"] for i in props.get("GlobalSecondaryIndexes", [])} == \
            {i.name for i in table.indexes}
        if table.expires:
            assert props["TimeToLiveSpecification"] == {"AttributeName": table.expires,
                                                        "Enabled": True}
        else:
            assert "TimeToLiveSpecification" not in props
        assert resource["DeletionPolicy"] == "Retain"


def test_no_table_of_the_local_identity_service(synthesized):
    # In AWS, Cognito holds users, groups and sessions.
    local = [t for t in schema.all_tables() if t.local_only]
    names = {evaluate(t["Properties"]["TableName"]) for t in
             synthesized.of_type("AWS::DynamoDB::Table").values()}
    assert local and not any(name.endswith(t.name) for t in local for name in names)


def test_kms_key_rotates(synthesized):
    (key,) = synthesized.of_type("AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True


def _staging_bucket(synthesized) -> dict:
    (bucket,) = [b for b in synthesized.of_type("AWS::S3::Bucket").values()
                 if "LifecycleConfiguration" in b["Properties"]]
    return bucket["Properties"]


def test_staging_bucket_expires_objects_after_a_day_and_is_private(synthesized):
    props = _staging_bucket(synthesized)
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == 1
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True,
        "IgnorePublicAcls": True, "RestrictPublicBuckets": True}


def test_staging_bucket_cors_allows_presigned_put_and_get(synthesized):
    (rule,) = _staging_bucket(synthesized)["CorsConfiguration"]["CorsRules"]
    assert {"PUT", "GET"} <= set(rule["AllowedMethods"])
    assert rule["AllowedOrigins"] == ["*"]
    assert "ETag" in rule["ExposedHeaders"]


def test_oauth_secret_lives_in_secrets_manager(synthesized):
    (secret,) = synthesized.of_type("AWS::SecretsManager::Secret").values()
    assert secret["DeletionPolicy"] == "Retain"
    assert "SecretString" not in secret["Properties"]  # generated, never in the template


# -- WebSocket API --------------------------------------------------------------------------------
def test_websocket_api_routes_each_handler_to_its_own_function(synthesized, websocket_routes):
    assert {"$connect", "$default", "$disconnect"} <= set(websocket_routes)
    (api_id, api), = synthesized.of_type("AWS::ApiGatewayV2::Api").items()
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    functions = synthesized.of_type("AWS::Lambda::Function")
    integrations = synthesized.of_type("AWS::ApiGatewayV2::Integration")
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in
              synthesized.of_type("AWS::ApiGatewayV2::Route").values()}
    assert set(routes) == set(websocket_routes)
    handled_by = set()
    for key, (_service, handler) in websocket_routes.items():
        target = routes[key]["Target"]["Fn::Join"][1][1]["Ref"]
        uri = integrations[target]["Properties"]["IntegrationUri"]
        function_id = next(part["Fn::GetAtt"][0] for part in uri["Fn::Join"][1]
                           if isinstance(part, dict) and "Fn::GetAtt" in part)
        assert functions[function_id]["Properties"]["Handler"] == handler
        handled_by.add(function_id)
    assert len(handled_by) == len(websocket_routes)


def test_websocket_stage_deploys_automatically(synthesized):
    (stage,) = synthesized.of_type("AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["AutoDeploy"] is True
    assert stage["Properties"]["StageName"] == "prod"


# -- web ------------------------------------------------------------------------------------------
def test_web_bucket_behind_cloudfront_with_origin_access_control(synthesized):
    (distribution,) = synthesized.of_type("AWS::CloudFront::Distribution").values()
    config = distribution["Properties"]["DistributionConfig"]
    assert config["DefaultRootObject"] == "index.html"
    (oac,) = synthesized.of_type("AWS::CloudFront::OriginAccessControl")
    (origin,) = config["Origins"]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac, "Id"]}
    web_bucket = origin["DomainName"]["Fn::GetAtt"][0]
    assert synthesized.resources[web_bucket]["Properties"]["PublicAccessBlockConfiguration"][
        "RestrictPublicBuckets"] is True
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"


def test_the_web_ui_is_sent_with_the_same_security_headers_as_locally(synthesized):
    """CloudFront's response headers policy says what cloudstrype.api.security_headers says
    (the local gateway sends those): the policy with the API and WebSocket as connect sources,
    nosniff, no framing, no referrer; HSTS besides."""
    (distribution,) = synthesized.of_type("AWS::CloudFront::Distribution").values()
    policy_ref = distribution["Properties"]["DistributionConfig"]["DefaultCacheBehavior"][
        "ResponseHeadersPolicyId"]
    policy = synthesized.resources[policy_ref["Ref"]]["Properties"]["ResponseHeadersPolicyConfig"]
    headers = policy["SecurityHeadersConfig"]
    csp = headers["ContentSecurityPolicy"]["ContentSecurityPolicy"]
    text = json.dumps(csp)
    for directive in web_ui_policy().split("; "):
        if not directive.startswith("connect-src"):
            assert directive in text, directive
    assert "execute-api" in text and "wss://" in text and "connect-src 'self' " in text
    # The API's source ends in '/', so it matches every call below the stage (.../prod/api/...):
    # without it a CSP path source matches that one path, and the deployed page could call
    # nothing. The WebSocket is called at its URL exactly.
    (rest_api,) = synthesized.of_type("AWS::ApiGateway::RestApi")
    parts = csp["Fn::Join"][1]
    api = parts.index({"Ref": rest_api})
    assert parts[api - 1].endswith("connect-src 'self' https://"), parts[api - 1]
    assert parts[api + 5].startswith("/prod/ wss://"), parts[api:api + 6]
    assert parts[-1] == "/prod"
    assert headers["ContentTypeOptions"]["Override"] is True
    shown = {"X-Content-Type-Options": "nosniff",
             "X-Frame-Options": headers["FrameOptions"]["FrameOption"],
             "Referrer-Policy": headers["ReferrerPolicy"]["ReferrerPolicy"]}
    assert shown == WEB_UI_HEADERS
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31_536_000


def test_web_content_and_config_json_are_deployed(synthesized):
    (deployment,) = synthesized.of_type("Custom::CDKBucketDeployment").values()
    props = deployment["Properties"]
    assert len(props["SourceObjectKeys"]) == 2  # web/ and config.json
    (distribution,) = synthesized.of_type("AWS::CloudFront::Distribution").values()
    web_bucket = distribution["Properties"]["DistributionConfig"]["Origins"][0]["DomainName"][
        "Fn::GetAtt"][0]
    assert props["DestinationBucketName"] == {"Ref": web_bucket}
    assert props["DistributionPaths"] == ["/*"]

    # config.json is staged with markers the deployment replaces by deploy-time values.
    (config_file,) = list(synthesized.outdir.glob("asset.*/config.json"))
    markers = next(m for m in props["SourceMarkers"] if m)
    config = json.loads(re.sub(r"<<marker:0xbaba:(\d+)>>", r'"<<marker:0xbaba:\1>>"',
                               config_file.read_text()))
    values = {key: markers[marker]["Fn::Join"][1] for key, marker in config.items()}
    (rest_api,) = synthesized.of_type("AWS::ApiGateway::RestApi")
    (ws_api,) = synthesized.of_type("AWS::ApiGatewayV2::Api")
    (client,) = synthesized.of_type("AWS::Cognito::UserPoolClient")
    # The page appends /api/... to apiBaseUrl: the stage URL without a trailing slash.
    assert values["apiBaseUrl"][:2] == ['"https://', {"Ref": rest_api}]
    assert values["apiBaseUrl"][-1] == '/prod"'
    assert values["websocketUrl"][:2] == ['"wss://', {"Ref": ws_api}]
    assert values["userPoolClientId"] == ['"', {"Ref": client}, '"']

    (web_asset,) = [p for p in synthesized.outdir.glob("asset.*") if (p / "index.html").exists()]
    assert (web_asset / "app.js").is_file()


# -- the stack as a whole -------------------------------------------------------------------------
def test_outputs_name_the_endpoints(synthesized):
    assert {"ApiUrl", "WebSocketUrl", "WebUrl", "UserPoolId", "UserPoolClientId",
            "OAuthSecretArn", "OAuthRedirectUris"} <= set(synthesized.outputs)
    # What the providers' OAuth apps must list: the API's URL and the callback route.
    redirect = json.dumps(synthesized.outputs["OAuthRedirectUris"])
    assert "/prod/api/cloud/oauth/<provider>/callback" in redirect, redirect

