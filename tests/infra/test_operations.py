"""Operations: preflights that work with binary media types, stage-scoped names, throttling,
access logs, alarms and the scheduled jobs' failure destination."""
from __future__ import annotations

import json
import re

from cloudstrype import limits
from cloudstrype.api.service import PUBLIC
from cloudstrype.settings import Settings

from infra.constructs.api import CREDENTIAL_ROUTES
from infra.constructs.firewall import SIGN_IN_PATH_PATTERN, WINDOW_SECONDS, sign_in_limit
from infra.stack import stack_name
from tests.infra.conftest import STACK_ID, evaluate


def test_preflights_convert_to_text_so_binary_media_types_do_not_break_them(synthesized):
    (api,) = synthesized.of_type("AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["BinaryMediaTypes"] == ["*/*"]
    options = [m["Properties"] for m in synthesized.of_type("AWS::ApiGateway::Method").values()
               if m["Properties"]["HttpMethod"] == "OPTIONS"]
    assert len(options) > 10
    for method in options:
        integration = method["Integration"]
        assert integration["Type"] == "MOCK"
        # Without it API Gateway answers every preflight 500 "Unable to transform request".
        assert integration["ContentHandling"] == "CONVERT_TO_TEXT"
        headers = integration["IntegrationResponses"][0]["ResponseParameters"]
        assert "Authorization" in headers["method.response.header.Access-Control-Allow-Headers"]
        assert headers["method.response.header.Access-Control-Allow-Origin"] == "'*'"
        # Kept by the browser for a while: not a preflight before nearly every call.
        assert headers["method.response.header.Access-Control-Max-Age"] == \
            f"'{limits.CORS_MAX_AGE_SECONDS}'"


def _stage(synthesized) -> dict:
    (stage,) = synthesized.of_type("AWS::ApiGateway::Stage").values()
    return stage["Properties"]


def test_public_routes_are_throttled_tighter_than_the_stage(synthesized, routes):
    settings = {(s["HttpMethod"], s["ResourcePath"]): s
                for s in _stage(synthesized)["MethodSettings"]}
    stage_wide = settings[("*", "/*")]
    assert stage_wide["ThrottlingRateLimit"] > 0 and stage_wide["ThrottlingBurstLimit"] > 0
    public = [r for r in routes if r.auth == PUBLIC]
    assert {("POST", "/api/auth/login"), ("POST", "/api/auth/register"),
            ("POST", "/api/auth/refresh")} <= {(r.method, r.path) for r in public}
    for route in public:
        # MethodSettings name /api/auth/login as /~1api~1auth~1login.
        setting = settings[(route.method, "/" + route.path.replace("/", "~1"))]
        assert setting["ThrottlingRateLimit"] < stage_wide["ThrottlingRateLimit"], route
        if route.path in ("/api/auth/login", "/api/auth/register", "/api/auth/refresh"):
            assert setting["ThrottlingRateLimit"] <= 10 and setting["ThrottlingBurstLimit"] <= 20
    assert len(settings) == len(public) + 1      # routes with a token share the stage's limit


def test_both_stages_write_access_logs_to_log_groups(synthesized):
    groups = synthesized.of_type("AWS::Logs::LogGroup")
    rest = _stage(synthesized)["AccessLogSetting"]
    # arn:...:log-group:<the group's name>
    rest_group = rest["DestinationArn"]["Fn::Join"][1][-1]["Ref"]
    assert rest_group in groups
    assert "$context.requestId" in rest["Format"] and "$context.status" in rest["Format"]
    (ws_stage,) = synthesized.of_type("AWS::ApiGatewayV2::Stage").values()
    ws = ws_stage["Properties"]["AccessLogSettings"]
    assert ws["DestinationArn"]["Fn::GetAtt"][0] in groups
    assert json.loads(ws["Format"])["connectionId"] == "$context.connectionId"
    # API Gateway logs through its account role, which the stack sets before either stage.
    (account_id, account), = synthesized.of_type("AWS::ApiGateway::Account").items()
    assert account_id in ws_stage["DependsOn"]
    for group in (rest_group, ws["DestinationArn"]["Fn::GetAtt"][0]):
        assert groups[group]["Properties"]["RetentionInDays"] == 365


def test_alarms_cover_every_function_for_errors_and_throttles(synthesized):
    functions = {name for name, f in synthesized.of_type("AWS::Lambda::Function").items()
                 if f["Properties"]["Handler"].startswith("app.")}
    watched = {"Errors": set(), "Throttles": set()}
    alarms = synthesized.of_type("AWS::CloudWatch::Alarm").values()
    (topic,) = synthesized.of_type("AWS::SNS::Topic")
    for alarm in alarms:
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": topic}]
        for query in props.get("Metrics", []):
            stat = query.get("MetricStat")
            if stat and stat["Metric"]["Namespace"] == "AWS/Lambda":
                (dimension,) = stat["Metric"]["Dimensions"]
                watched[stat["Metric"]["MetricName"]].add(dimension["Value"]["Ref"])
        assert len([q for q in props.get("Metrics", []) if "MetricStat" in q]) <= 10
    assert watched["Errors"] == functions and watched["Throttles"] == functions


def test_scheduled_jobs_have_a_failure_destination_and_failure_alarms(synthesized,
                                                                      scheduled_handlers):
    (queue_id,) = synthesized.of_type("AWS::SQS::Queue")
    configs = synthesized.of_type("AWS::Lambda::EventInvokeConfig").values()
    jobs = {name for name, f in synthesized.of_type("AWS::Lambda::Function").items()
            if f["Properties"].get("Description", "").startswith("Scheduled ")}
    assert len(jobs) == len(scheduled_handlers) >= 2
    with_destination = set()
    for config in configs:
        props = config["Properties"]
        assert props["DestinationConfig"]["OnFailure"]["Destination"] == \
            {"Fn::GetAtt": [queue_id, "Arn"]}
        with_destination.add(props["FunctionName"]["Ref"])
    assert with_destination == jobs
    for rule in synthesized.of_type("AWS::Events::Rule").values():
        (target,) = rule["Properties"]["Targets"]
        assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    # One alarm per job on any failed run (the scrub's included), one on the queue's depth.
    job_alarms = [a["Properties"] for a in synthesized.of_type("AWS::CloudWatch::Alarm").values()
                  if a["Properties"].get("Dimensions", [{}])[0].get("Value", {}).get("Ref")
                  in jobs]
    assert {a["Dimensions"][0]["Value"]["Ref"] for a in job_alarms} == jobs
    assert any("scrub" in a["AlarmDescription"].lower() for a in job_alarms)
    queue_alarms = [a for a in synthesized.of_type("AWS::CloudWatch::Alarm").values()
                    if a["Properties"].get("Namespace") == "AWS/SQS"]
    assert len(queue_alarms) == 1


def test_names_are_scoped_to_the_stage_and_the_stack(synthesized):
    assert synthesized.stack.stack_name == stack_name("prod") == "Cloudstrype-prod"
    tables = [t["Properties"]["TableName"] for t in
              synthesized.of_type("AWS::DynamoDB::Table").values()]
    first = {evaluate(t) for t in tables}
    assert all(name.startswith("cloudstrype-prod-1a2b3c4d-") for name in first)
    # The same template, created again after a delete (a new stack id): no name is claimed twice,
    # though the retained tables of the first stack still exist.
    again = {evaluate(t, STACK_ID.replace("1a2b3c4d", "99887766")) for t in tables}
    assert not first & again
    # No other resource carries a fixed physical name (a function's log group is named after
    # its function, whose name CloudFormation generates).
    named = {"AWS::S3::Bucket": "BucketName", "AWS::SQS::Queue": "QueueName",
             "AWS::SNS::Topic": "TopicName", "AWS::Logs::LogGroup": "LogGroupName",
             "AWS::Lambda::Function": "FunctionName", "AWS::IAM::Role": "RoleName",
             "AWS::CloudWatch::Alarm": "AlarmName", "AWS::KMS::Alias": "AliasName"}
    for name, resource in synthesized.resources.items():
        prop = named.get(resource["Type"])
        assert prop is None or not isinstance(resource["Properties"].get(prop, {}), str), \
            (name, prop)
    (rest_api,) = synthesized.of_type("AWS::ApiGateway::RestApi").values()
    (ws_api,) = synthesized.of_type("AWS::ApiGatewayV2::Api").values()
    assert rest_api["Properties"]["Name"].endswith("-prod")
    assert ws_api["Properties"]["Name"].endswith("-prod")


def test_functions_run_a_current_python(synthesized):
    runtimes = {f["Properties"]["Runtime"]
                for f in synthesized.of_type("AWS::Lambda::Function").values()
                if f["Properties"]["Handler"].startswith("app.")}
    assert runtimes == {"python3.13"}


def test_sign_in_attempts_are_counted_per_address_by_a_web_acl_on_the_rest_stage(
        synthesized, routes):
    """API Gateway's route throttling is one budget for every caller; the web ACL counts
    sign-in attempts per address, with the local gateway's numbers (its settings' defaults)."""
    (acl_id, acl), = synthesized.of_type("AWS::WAFv2::WebACL").items()
    acl = acl["Properties"]
    assert acl["Scope"] == "REGIONAL" and acl["DefaultAction"] == {"Allow": {}}
    (association,) = [r["Properties"] for r in
                      synthesized.of_type("AWS::WAFv2::WebACLAssociation").values()]
    assert association["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    (stage_id,) = synthesized.of_type("AWS::ApiGateway::Stage")
    assert stage_id in json.dumps(association["ResourceArn"])

    rules = {rule["Name"]: rule for rule in acl["Rules"]}
    rated = rules["SignInPerAddress"]["Statement"]["RateBasedStatement"]
    settings = Settings()
    assert rated["AggregateKeyType"] == "IP" and rated["EvaluationWindowSec"] == WINDOW_SECONDS
    # 50 at once, then one a second: 350 in five minutes.
    assert rated["Limit"] == sign_in_limit(int(settings.sign_in_burst_per_address),
                                           float(settings.sign_in_refill_seconds)) == 350
    matched = rated["ScopeDownStatement"]["RegexMatchStatement"]
    assert matched["RegexString"] == SIGN_IN_PATH_PATTERN
    assert [t["Type"] for t in sorted(matched["TextTransformations"],
                                      key=lambda t: t["Priority"])] == ["URL_DECODE", "LOWERCASE"]
    # What WAF sees is the path with the stage in front; every credential route is counted,
    # with or without a trailing '/', and no other route.
    pattern = re.compile(SIGN_IN_PATH_PATTERN)
    credential = {path for method, path in CREDENTIAL_ROUTES}
    assert credential == {"/api/auth/register", "/api/auth/confirm", "/api/auth/login",
                          "/api/auth/refresh"}
    for route in routes:
        for seen in (f"/prod{route.path}", f"/prod{route.path}/"):
            assert bool(pattern.search(seen)) == (route.path in credential), seen

    refused = rules["SignInPerAddress"]["Action"]["Block"]["CustomResponse"]
    assert refused["ResponseCode"] == 429
    body = json.loads(acl["CustomResponseBodies"][refused["CustomResponseBodyKey"]]["Content"])
    assert body["error"]["code"] == "too_many_requests" and body["error"]["message"]
    headers = {h["Name"]: h["Value"] for h in refused["ResponseHeaders"]}
    assert int(headers["Retry-After"]) > 0
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Retry-After" in headers["Access-Control-Expose-Headers"]
    # Known exploit patterns are refused before anything else is counted.
    assert rules["KnownBadInputs"]["Priority"] < rules["SignInPerAddress"]["Priority"]
    assert rules["KnownBadInputs"]["Statement"]["ManagedRuleGroupStatement"]["Name"] == \
        "AWSManagedRulesKnownBadInputsRuleSet"
