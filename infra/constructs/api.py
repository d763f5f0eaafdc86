"""The REST API: one Lambda function per (path, method) of every service's route table.

The API itself (stage, access logs, gateway responses, authorizer, throttling) and the path
resources two or more services share (`/api`) live in the parent stack; each service's functions,
path resources and methods live in that service's nested stack (`ServiceRoutes`), attached to
the API by its id, so adding routes to one service grows only that service's stack. The
deployment depends on every service's routes and changes its logical id with them, so each
deploy publishes the current methods.

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
from collections import defaultdict
from typing import Callable, Iterable

import jsii
from aws_cdk import Aspects, Aws, Duration, IAspect, RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
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
CORS_OPTIONS = apigateway.CorsOptions(allow_origins=apigateway.Cors.ALL_ORIGINS,
                                      allow_methods=CORS_ALLOWED_METHODS,
                                      allow_headers=CORS_ALLOWED_HEADERS,
                                      max_age=Duration.seconds(limits.CORS_MAX_AGE_SECONDS))

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


# Headers some gateway responses carry besides CORS's: a throttled request (nothing ran) says
# when to try again, as the local gateway's in-flight 429 does, readable by the web UI too.
GATEWAY_RESPONSE_HEADERS = {
    apigateway.ResponseType.THROTTLED.response_type: {
        "Retry-After": "'1'", "Access-Control-Expose-Headers": "'Retry-After'"},
}


def path_for_arn(path: str) -> str:
    """A resource path as execute-api ARNs name it: path parameters are `*`."""
    return re.sub(r"\{[^}]*\}", "*", path)


def path_prefixes(path: str) -> list[str]:
    """/api/a/b -> [/api, /api/a, /api/a/b]."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def shared_paths(routes: Iterable[RouteInfo]) -> set[str]:
    """Path resources on the way to routes of two or more services: the parent stack makes
    them, since API Gateway refuses a second resource with the same path."""
    services: dict[str, set[str]] = defaultdict(set)
    for route in routes:
        for prefix in path_prefixes(route.path):
            services[prefix].add(route.service)
    return {path for path, users in services.items() if len(users) > 1}


def _words_id(text: str) -> str:
    words = re.split(r"[^0-9A-Za-z]+", text)
    return "".join(word[:1].upper() + word[1:].lower() for word in words if word)


def route_construct_id(route: RouteInfo) -> str:
    return _words_id(f"{route.service} {route.view_name} {route.method}")


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
            default_cors_preflight_options=CORS_OPTIONS,
        )
        Aspects.of(self.api).add(PreflightsAsText())
        for response_type, (status, code, message) in GATEWAY_RESPONSES.items():
            self.api.add_gateway_response(
                f"{response_type.response_type.title().replace('_', '')}Response",
                type=response_type, status_code=status,
                response_headers={**CORS_HEADERS, **GATEWAY_RESPONSE_HEADERS.get(
                    response_type.response_type, {})},
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

    def cognito_authorizer(self) -> apigateway.CognitoUserPoolsAuthorizer:
        # Made on first use: API Gateway refuses an authorizer no method uses.
        if self._authorizer is None:
            self._authorizer = apigateway.CognitoUserPoolsAuthorizer(
                self, "CognitoAuthorizer", cognito_user_pools=[self._user_pool],
                authorizer_name="cloudstrype-users")
        return self._authorizer

    def add_routes(self, routes: Iterable[RouteInfo], functions: ServiceFunctions, *,
                   service_scope: Callable[[str], Construct]) -> None:
        """Each service's routes into `service_scope(service)` (its nested stack)."""
        routes = list(routes)
        claimed: set[tuple[str, str]] = set()
        for route in routes:
            if (route.method, route.path) in claimed:
                raise ValueError(f"Two routes claim {route.method} {route.path}")
            claimed.add((route.method, route.path))
        shared = {path: self.api.root.resource_for_path(path)
                  for path in sorted(shared_paths(routes))}
        by_service: dict[str, list[RouteInfo]] = defaultdict(list)
        for route in routes:
            by_service[route.service].append(route)
        deployment = self.api.latest_deployment
        assert deployment is not None
        for service, service_routes in sorted(by_service.items()):
            part = ServiceRoutes(service_scope(service), f"{service.capitalize()}Routes",
                                 rest_api=self, shared=shared, routes=service_routes,
                                 functions=functions)
            self.route_functions.update(part.route_functions)
            # Methods in a nested stack do not reach the deployment by themselves: it waits for
            # the stack and takes a new logical id when the stack's methods change.
            deployment.node.add_dependency(part)
            deployment.add_to_logical_id({"service": service, "methods": part.fingerprint})
        for route in routes:
            if route.auth == PUBLIC:
                key = (route.method, route.path)
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


class ServiceRoutes(Construct):
    """One service's routes, made inside its nested stack: a function, a method and an invoke
    permission per route, and the path resources (with their CORS preflights) no other service
    uses. The parent's API and shared resources are attached by id."""

    def __init__(self, scope: Construct, construct_id: str, *, rest_api: ServiceRestApi,
                 shared: dict[str, apigateway.IResource], routes: Iterable[RouteInfo],
                 functions: ServiceFunctions) -> None:
        super().__init__(scope, construct_id)
        self.api = apigateway.RestApi.from_rest_api_attributes(
            self, "Api", rest_api_id=rest_api.api.rest_api_id,
            root_resource_id=rest_api.api.rest_api_root_resource_id)
        self._shared = shared
        self._resources: dict[str, apigateway.IResource] = {"/": self.api.root}
        self.route_functions: dict[tuple[str, str], lambda_.Function] = {}
        # What the parent's deployment must change with (plain data, no tokens).
        self.fingerprint: list[list[str]] = []
        Aspects.of(self).add(PreflightsAsText())
        for route in routes:
            self._add(route, rest_api, functions)

    def _resource(self, path: str) -> apigateway.IResource:
        if path not in self._resources:
            if path in self._shared:
                self._resources[path] = apigateway.Resource.from_resource_attributes(
                    self, "Shared" + _words_id(path), rest_api=self.api,
                    resource_id=self._shared[path].resource_id, path=path)
            else:
                parent, _, part = path.rpartition("/")
                # Imported parents carry no CORS defaults, so every resource names them.
                self._resources[path] = self._resource(parent or "/").add_resource(
                    part, default_cors_preflight_options=CORS_OPTIONS)
        return self._resources[path]

    def _add(self, route: RouteInfo, rest_api: ServiceRestApi,
             functions: ServiceFunctions) -> None:
        function = functions.function(
            self, route_construct_id(route), service=route.service, handler="app.app",
            description=f"{route.method} {route.path} ({route.service} service)")
        if route.auth == PUBLIC:
            auth = dict(authorization_type=apigateway.AuthorizationType.NONE)
        else:
            auth = dict(authorization_type=apigateway.AuthorizationType.COGNITO,
                        authorizer=rest_api.cognito_authorizer(),
                        authorization_scopes=[ACCESS_TOKEN_SCOPE])
        # A proxy integration with its own permission: LambdaIntegration takes the stage from
        # the API object, which an API attached by id lacks (it would allow any stage); the
        # stage is named here, since the stage resource is made after this stack.
        integration = apigateway.Integration(
            type=apigateway.IntegrationType.AWS_PROXY, integration_http_method="POST",
            uri=f"arn:{Aws.PARTITION}:apigateway:{Aws.REGION}:lambda:path/2015-03-31/"
                f"functions/{function.function_arn}/invocations")
        method = self._resource(route.path).add_method(route.method, integration, **auth)
        # One permission per route (no test-invoke permission): the template stays small.
        function.add_permission(
            "ApiPermission", scope=method,
            principal=iam.ServicePrincipal("apigateway.amazonaws.com"),
            source_arn=self.api.arn_for_execute_api(
                route.method, path_for_arn(route.path), rest_api.stage_name))
        self.route_functions[(route.method, route.path)] = function
        self.fingerprint.append([route.method, route.path, route.auth, function.node.path])
