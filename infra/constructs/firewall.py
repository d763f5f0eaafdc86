"""The REST API's web ACL (AWS WAF): sign-in attempts counted per client address.

API Gateway's route throttling is one budget for all callers: without this, one address
sending register or login requests as fast as it may would leave no sign-in for anyone else.
The local gateway counts sign-in attempts per address (a token bucket of
CLOUDSTRYPE_SIGN_IN_BURST_PER_ADDRESS, one more every CLOUDSTRYPE_SIGN_IN_REFILL_SECONDS);
deployed, a rate-based rule does it over WAF's five-minute window, with the same numbers: an
address past them is answered 429 (the service's error shape, see SIGN_IN_REFUSED) until its
rate falls back. WAF sees every attempt, not only the failed ones the local bucket counts, and
acts within a minute or so of the rate being passed (its counting is not instant).

AWS's known-bad-inputs rule group (request patterns of known exploits: Log4j lookups, Java
deserialization, localhost Host headers) runs first; the web ACL costs a monthly fee and a fee
per million requests (README, Deploying to AWS).
"""
from __future__ import annotations

import json

from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

# The window WAF counts a rate-based rule's requests over (its longest).
WINDOW_SECONDS = 300
# The routes whose attempts are counted per address: those that take a password or a code, or
# create an account (ending so under any stage or base path; decoded and lowercased first, so
# no spelling of the path slips past).
SIGN_IN_PATH_PATTERN = r"/api/auth/(register|confirm|login|refresh)/?$"
# What an address past the rule is answered: the service's error shape, with Retry-After.
SIGN_IN_REFUSED = {
    "error": {"code": "too_many_requests",
              "message": "Too many sign-in attempts from this address; try again in a few "
                         "minutes."}}
SIGN_IN_RETRY_AFTER_SECONDS = 60
# With the API's CORS headers, so the web UI can read the answer (API Gateway's own answers
# carry them too: api.CORS_HEADERS, GATEWAY_RESPONSE_HEADERS).
SIGN_IN_REFUSED_HEADERS = {"Retry-After": str(SIGN_IN_RETRY_AFTER_SECONDS),
                           "Access-Control-Allow-Origin": "*",
                           "Access-Control-Expose-Headers": "Retry-After"}


def sign_in_limit(burst: int, refill_seconds: float) -> int:
    """Sign-in attempts one address may make in WAF's window: the local gateway's bucket
    (`burst`, then one every `refill_seconds`) over the same time; WAF's minimum is 10."""
    return max(10, int(burst + WINDOW_SECONDS / max(refill_seconds, 0.001)))


class ApiFirewall(Construct):
    """A regional web ACL on the REST API's stage."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: apigateway.Stage,
                 metric_prefix: str, sign_in_per_window: int) -> None:
        super().__init__(scope, construct_id)
        self.sign_in_per_window = sign_in_per_window
        visibility = lambda metric: wafv2.CfnWebACL.VisibilityConfigProperty(  # noqa: E731
            cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True)
        sign_in_paths = wafv2.CfnWebACL.StatementProperty(
            regex_match_statement=wafv2.CfnWebACL.RegexMatchStatementProperty(
                field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}),
                regex_string=SIGN_IN_PATH_PATTERN,
                text_transformations=[
                    wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="URL_DECODE"),
                    wafv2.CfnWebACL.TextTransformationProperty(priority=1, type="LOWERCASE"),
                ]))
        self.web_acl = wafv2.CfnWebACL(
            self, "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility(f"{metric_prefix}-all"),
            custom_response_bodies={"SignInRefused": wafv2.CfnWebACL.CustomResponseBodyProperty(
                content_type="APPLICATION_JSON", content=json.dumps(SIGN_IN_REFUSED))},
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="KnownBadInputs", priority=0,
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL
                        .ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name="AWSManagedRulesKnownBadInputsRuleSet")),
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    visibility_config=visibility(f"{metric_prefix}-known-bad-inputs")),
                wafv2.CfnWebACL.RuleProperty(
                    name="SignInPerAddress", priority=1,
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            aggregate_key_type="IP", limit=sign_in_per_window,
                            evaluation_window_sec=WINDOW_SECONDS,
                            scope_down_statement=sign_in_paths)),
                    action=wafv2.CfnWebACL.RuleActionProperty(
                        block=wafv2.CfnWebACL.BlockActionProperty(
                            custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                                response_code=429, custom_response_body_key="SignInRefused",
                                response_headers=[
                                    wafv2.CfnWebACL.CustomHTTPHeaderProperty(name=name,
                                                                             value=value)
                                    for name, value in SIGN_IN_REFUSED_HEADERS.items()]))),
                    visibility_config=visibility(f"{metric_prefix}-sign-in-per-address")),
            ])
        association = wafv2.CfnWebACLAssociation(
            self, "OnStage", resource_arn=stage.stage_arn, web_acl_arn=self.web_acl.attr_arn)
        # The stage must exist before it can be associated.
        association.node.add_dependency(stage)
