"""The REST API: one Lambda function per (path, method) of every service's route table.

Each function runs its service's whole chalice app (`app.app`); chalice picks the view from the
resource path and method API Gateway puts into the proxy event, so a function only ever serves
its own route while the code stays one app per service.

Routes whose access is not `public` sit behind a Cognito authorizer (the functions verify the
token again themselves). Errors API Gateway answers on its own (unknown route, failed
authorization, too large, throttled, timeouts) use the service's JSON error shape.
"""
from __future__ import annotations

import json
import re
from typing import Iterable

import jsii
from aws_cdk import Aspects, Aws, IAspect, RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from cloudstrype import limits
from cloudstrype.api.service import PUBLIC, RouteInfo
from constructs import Construct, IConstruct

from infra.constructs.auth import ACCESS_TOKEN_SCOPE
from infra.constructs.lambdas import ServiceFunctions

# Chunk data and file content travel as raw bytes in both directions, under whatever content
# type the user's file has, so every type is binary: a narrower list would pass an upload typed
# image/png through API Gateway's text conversion and corrupt it. The price: a mock integration
# (the CORS preflights) must say CONVERT_TO_TEXT, or API Gateway answers 500 "Unable to transform
# request" (see PreflightsAsText).
BINARY_MEDIA_TYPES = ["*/*"]

# The web UI (on CloudFront) calls the API from another origin. Tokens travel in the
# Authorization header, never in cookies, so any origin may call.
CORS_ALLOWED_HEADERS = list(limits.CORS_ALLOW_HEADERS)
CORS_ALLOWED_METHODS = list(limits.CORS_ALLOW_METHODS)
CORS_HEADERS = {"Access-Control-Allow-Origin": "'*'"}

# Throttling (requests per second, burst). The whole stage, and tighter on the routes anyone may
# call without a token that cost a password hash or a Cognito call (guessing, sign-up floods).
STAGE_THROTTLE = (200, 400)
CREDENTIAL_ROUTE_THROTTLE = (10, 20)
CREDENTIAL_ROUTES = {("POST", "/api/auth/register"), ("POST", "/api/auth/confirm"),
                     ("POST", "/api/auth/login"), ("POST", "/api/auth/refresh")}
# Other public routes (health, config, OpenAPI, the OAuth callback).
PUBLIC_ROUTE_THROTTLE = (50, 100)

# One JSON line per request in the access log (no request bodies, no Authorization header).
ACCESS_LOG_FORMAT = apigateway.AccessLogFormat.json_with_standard_fields(
    caller=False, http_method=True, ip=True, protocol=True, request_time=True,
    resource_path=True, response_length=True, status=True, user=True)
# Log groups hold request metadata only; a year is what reviews of incidents need.
LOG_RETENTION = logs.RetentionDays.ONE_YEAR


@jsii.implements(IAspect)
class PreflightsAsText:
    """CONVERT_TO_TEXT on every mock integration (the OPTIONS methods CDK makes for CORS).

    With `*/*` binary, API Gateway treats the preflight as binary and cannot apply the mock's
    request template to it: 500 "Unable to transform request". CDK's CORS options cannot set
    the content handling, so it is set on the generated methods.
    """

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, apigateway.CfnMethod) and node.http_method == "OPTIONS":
            node.add_property_override("Integration.ContentHandling", "CONVERT_TO_TEXT")


def method_setting_path(path: str) -> str:
    """A resource path as a stage's MethodSettings name it: /api/auth/login is
    /~1api~1auth~1login (every `/` of the path is `~1`, after a leading `/`)."""
    return "/" + ("/" + path.strip("/")).replace("/", "~1")


def _error_template(code: str, message: str | None) -> dict[str, str]:
    # `$context.error.messageString` is API Gateway's message already quoted as a JSON string.
    body = json.dumps({"error": {"code": code, "message": "__MESSAGE__"}})
    body = body.replace('"__MESSAGE__"', "$context.error.messageString" if message is None
                        else json.dumps(message))
    return {"application/json": body}


# response type -> (status code or None to keep API Gateway's, error code, message or None to
# use API Gateway's own message).
GATEWAY_RESPONSES = {
    apigateway.ResponseType.MISSING_AUTHENTICATION_TOKEN: (
        "404", "not_found",
        "No route matches this method and path; GET /api/openapi.json lists the routes."),
    apigateway.ResponseType.UNAUTHORIZED: (
        "401", "unauthorized",
        "This route needs a valid access token: send 'Authorization: Bearer <access token>' "
        "(POST /api/auth/login gives one)."),
    apigateway.ResponseType.EXPIRED_TOKEN: (
        "401", "token_expired", "The token has expired; refresh it or log in again."),
    apigateway.ResponseType.ACCESS_DENIED: ("403", "forbidden", None),
    apigateway.ResponseType.REQUEST_TOO_LARGE: (
        "413", "payload_too_large",
        f"The request is larger than API Gateway accepts "
        f"({limits.REST_REQUEST_MAX_BYTES // limits.MiB} MiB); upload big files in parts."),
    apigateway.ResponseType.THROTTLED: ("429", "too_many_requests", None),
    apigateway.ResponseType.INTEGRATION_TIMEOUT: (
        "504", "timeout", f"The request took longer than {limits.INTEGRATION_TIMEOUT_SECONDS} "
                          f"seconds; try again or use a smaller part."),
    apigateway.ResponseType.DEFAULT_4_XX: (None, "bad_request", None),
    apigateway.ResponseType.DEFAULT_5_XX: (None, "internal_error", None),
}


def route_construct_id(route: RouteInfo) -> str:
    words = re.split(r"[^0-9A-Za-z]+", f"{route.service} {route.view_name} {route.method}")
    return "".join(word[:1].upper() + word[1:].lower() for word in words if word)


class ServiceRestApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stage_name: str,
                 user_pool: cognito.IUserPool) -> None:
        super().__init__(scope, construct_id)
        self.stage_name = stage_name
        self._user_pool = user_pool
        self._authorizer: apigateway.CognitoUserPoolsAuthorizer | None = None
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=LOG_RETENTION,
                                         removal_policy=RemovalPolicy.DESTROY)
        self.api = apigateway.RestApi(
            self, "Api",
            rest_api_name=f"cloudstrype-{stage_name}",
            description="Cloudstrype REST API (one function per route)",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            binary_media_types=BINARY_MEDIA_TYPES,
            deploy_options=apigateway.StageOptions(
                stage_name=stage_name,
                access_log_destination=apigateway.LogGroupLogDestination(self.access_logs),
                access_log_format=ACCESS_LOG_FORMAT,
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=STAGE_THROTTLE[0],
                throttling_burst_limit=STAGE_THROTTLE[1]),
            # Access logging needs API Gateway's account-wide CloudWatch role. The stack sets it
            # (kept on delete: other APIs of the account may rely on it).
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            default_cors_preflight_options=apigateway.CorsOptions(
                allow_origins=apigateway.Cors.ALL_ORIGINS,
                allow_methods=CORS_ALLOWED_METHODS,
                allow_headers=CORS_ALLOWED_HEADERS,
            ),
        )
        Aspects.of(self.api).add(PreflightsAsText())
        for response_type, (status, code, message) in GATEWAY_RESPONSES.items():
            self.api.add_gateway_response(
                f"{response_type.response_type.title().replace('_', '')}Response",
                type=response_type, status_code=status, response_headers=CORS_HEADERS,
                templates=_error_template(code, message))
        self.route_functions: dict[tuple[str, str], lambda_.Function] = {}

    @property
    def url(self) -> str:
        """Base URL of the deployed stage, no trailing slash (`<url>/api/health`).

        Built from the API id and the stage *name*, not from the stage resource: functions carry
        this URL, and the stage depends on the functions through the deployment.
        """
        return (f"https://{self.api.rest_api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}/"
                f"{self.stage_name}")

    def _cognito_authorizer(self) -> apigateway.CognitoUserPoolsAuthorizer:
        # Made on first use: API Gateway refuses an authorizer no method uses.
        if self._authorizer is None:
            self._authorizer = apigateway.CognitoUserPoolsAuthorizer(
                self, "CognitoAuthorizer", cognito_user_pools=[self._user_pool],
                authorizer_name="cloudstrype-users")
        return self._authorizer

    def add_routes(self, routes: Iterable[RouteInfo], functions: ServiceFunctions) -> None:
        for route in routes:
            key = (route.method, route.path)
            if key in self.route_functions:
                raise ValueError(f"Two routes claim {route.method} {route.path}")
            function = functions.function(
                self, route_construct_id(route), service=route.service, handler="app.app",
                description=f"{route.method} {route.path} ({route.service} service)")
            if route.auth == PUBLIC:
                auth = dict(authorization_type=apigateway.AuthorizationType.NONE)
            else:
                auth = dict(authorization_type=apigateway.AuthorizationType.COGNITO,
                            authorizer=self._cognito_authorizer(),
                            authorization_scopes=[ACCESS_TOKEN_SCOPE])
            # One permission per route (no test-invoke permission): the template stays small.
            integration = apigateway.LambdaIntegration(function, allow_test_invoke=False)
            self.api.root.resource_for_path(route.path).add_method(
                route.method, integration, **auth)
            self.route_functions[key] = function
            if route.auth == PUBLIC:
                self._throttle(route, CREDENTIAL_ROUTE_THROTTLE if key in CREDENTIAL_ROUTES
                               else PUBLIC_ROUTE_THROTTLE)

    def _throttle(self, route: RouteInfo, limit: tuple[int, int]) -> None:
        stage = self.api.deployment_stage.node.default_child
        assert isinstance(stage, apigateway.CfnStage)
        settings = list(stage.method_settings or [])
        settings.append(apigateway.CfnStage.MethodSettingProperty(
            http_method=route.method, resource_path=method_setting_path(route.path),
            throttling_rate_limit=limit[0], throttling_burst_limit=limit[1],
            metrics_enabled=True))
        stage.method_settings = settings
