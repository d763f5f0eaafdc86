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

from aws_cdk import Aws
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from cloudstrype.api.service import PUBLIC, RouteInfo
from constructs import Construct

from infra.constructs.auth import ACCESS_TOKEN_SCOPE
from infra.constructs.lambdas import ServiceFunctions

# Chunk data and file content travel as raw bytes in both directions.
BINARY_MEDIA_TYPES = ["*/*"]

# The web UI (on CloudFront) calls the API from another origin. Tokens travel in the
# Authorization header, never in cookies, so any origin may call.
CORS_ALLOWED_HEADERS = apigateway.Cors.DEFAULT_HEADERS + ["Range", "If-Match", "If-None-Match"]
CORS_HEADERS = {"Access-Control-Allow-Origin": "'*'"}


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
        "The request is larger than API Gateway accepts (10 MB); upload big files in parts."),
    apigateway.ResponseType.THROTTLED: ("429", "too_many_requests", None),
    apigateway.ResponseType.INTEGRATION_TIMEOUT: (
        "504", "timeout", "The request took longer than 29 seconds; try again or use a smaller "
                          "part."),
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
        self.api = apigateway.RestApi(
            self, "Api",
            rest_api_name="cloudstrype",
            description="Cloudstrype REST API (one function per route)",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            binary_media_types=BINARY_MEDIA_TYPES,
            deploy_options=apigateway.StageOptions(stage_name=stage_name),
            # The account-wide API Gateway logging role is not this stack's to own.
            cloud_watch_role=False,
            default_cors_preflight_options=apigateway.CorsOptions(
                allow_origins=apigateway.Cors.ALL_ORIGINS,
                allow_methods=apigateway.Cors.ALL_METHODS,
                allow_headers=CORS_ALLOWED_HEADERS,
            ),
        )
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
