"""The members' WebSocket API: $connect / $default / $disconnect, each its own function.

The handlers come from the services' chalice apps (`app.websocket_handlers`); each handler's
function lives in its service's nested stack, the routes and integrations here. Functions reach
connections through the API Gateway management API at `management_url`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigatewayv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.api import LOG_RETENTION
from infra.constructs.lambdas import ServiceFunctions

# One JSON line per connect, message and disconnect (never the message body).
ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "connectionId": "$context.connectionId",
    "routeKey": "$context.routeKey", "eventType": "$context.eventType",
    "status": "$context.status", "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime", "error": "$context.error.message",
    "integrationError": "$context.integrationErrorMessage"})


@dataclass(frozen=True)
class WebSocketHandler:
    service: str
    route_key: str      # $connect, $default, $disconnect (or a custom route key)
    handler: str        # Lambda handler string, e.g. app.connect


def _route_name(route_key: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", route_key) if part)


class MemberWebSocketApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stage_name: str) -> None:
        super().__init__(scope, construct_id)
        self.api = apigatewayv2.WebSocketApi(
            self, "Api", api_name=f"cloudstrype-members-{stage_name}",
            description="Cloudstrype array members: JSON control messages only")
        self.stage = apigatewayv2.WebSocketStage(
            self, "Stage", web_socket_api=self.api, stage_name=stage_name, auto_deploy=True)
        # The L2 stage has no access-log option; the underlying stage has.
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=LOG_RETENTION,
                                         removal_policy=RemovalPolicy.DESTROY)
        cfn_stage = self.stage.node.default_child
        assert isinstance(cfn_stage, apigatewayv2.CfnStage)
        cfn_stage.access_log_settings = apigatewayv2.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.access_logs.log_group_arn, format=ACCESS_LOG_FORMAT)
        self.handler_functions: dict[str, lambda_.Function] = {}

    @property
    def url(self) -> str:
        """wss:// URL members connect to."""
        return self.stage.url

    @property
    def management_url(self) -> str:
        """https:// endpoint of the management API (post to / drop a connection)."""
        return self.stage.callback_url

    def grant_manage_connections(self, grantee: iam.IGrantable) -> iam.Grant:
        return self.api.grant_manage_connections(grantee)

    def add_handlers(self, handlers: Iterable[WebSocketHandler], functions: ServiceFunctions, *,
                     service_scope: Callable[[str], Construct]) -> None:
        for handler in handlers:
            if handler.route_key in self.handler_functions:
                raise ValueError(f"Two services handle the WebSocket route {handler.route_key}")
            name = _route_name(handler.route_key)
            function = functions.function(
                service_scope(handler.service), f"WebSocket{name}Handler",
                service=handler.service, handler=handler.handler,
                description=f"WebSocket {handler.route_key} ({handler.service} service)")
            self.api.add_route(handler.route_key, integration=integrations.
                               WebSocketLambdaIntegration(f"{name}Integration", function))
            self.handler_functions[handler.route_key] = function
