"""The Cloudstrype stack: everything a deployment in one AWS account and region needs.

Nothing about the services is declared here: routes, WebSocket handlers and scheduled jobs
(chalice `@app.schedule`) are read from the services' chalice apps (`functions`), tables from
their declarations (`cloudstrype.metadata.schema`), the user pool from `cloudstrype.auth.pool`,
the function settings from `cloudstrype.settings.Settings`.

One CloudFormation stack holds at most 500 resources, and every route costs about six. So the
parent stack holds what all services share (users, data, keys, layers, both APIs with their
stages, the web UI, the alarm topic and the jobs' failure queue), and each service gets a nested
stack (`ServiceStack`) with its role, its functions and their log groups, its REST resources and
methods, its scheduled jobs and its alarms: adding routes to a service grows that service's
stack only (tests/infra/test_stack_sizes.py keeps every stack under a margin).

Context values (`cdk deploy -c name=value`, or cdk.json):
  stage           API Gateway stage name of both APIs (default `prod`); the stack is named
                  `Cloudstrype-<stage>`, so stages share an account
  alarmEmail      subscribe this address to the alarms topic
  oauthSecretArn  use this Secrets Manager secret for the OAuth client secrets instead of
                  creating one
  settings        JSON object of further non-secret settings for every function, by environment
                  name, e.g. {"CLOUDSTRYPE_DROPBOX_CLIENT_ID": "...", "CLOUDSTRYPE_DEBUG": "true"}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from aws_cdk import Aws, CfnOutput, Fn, NestedStack, Stack
from aws_cdk import aws_iam as iam
from chalice.app import ScheduledEventConfig
from cloudstrype.api.service import RouteInfo
from cloudstrype.backends.providers import PROVIDERS
from cloudstrype.metadata import schema
from cloudstrype.settings import Settings
from constructs import Construct

import functions as services
from infra import access
from infra.constructs.api import ServiceRestApi
from infra.constructs.auth import UserDirectory
from infra.constructs.data import DataStore
from infra.constructs.firewall import ApiFirewall, sign_in_limit
from infra.constructs.lambdas import ServiceFunctions, settings_environment
from infra.constructs.layers import FunctionLayers
from infra.constructs.monitoring import Monitoring
from infra.constructs.oauth import OAUTH_SECRETS_ARN_ENV, OAuthAppSecrets
from infra.constructs.schedules import ScheduledJob, ScheduledJobs
from infra.constructs.web import WebSite
from infra.constructs.websocket import MemberWebSocketApi, WebSocketHandler

STACK_NAME = "Cloudstrype"
DEFAULT_STAGE = "prod"


def stack_name(stage: str) -> str:
    """One stack per stage, so stages share an account: `Cloudstrype-prod`, `Cloudstrype-dev`."""
    return f"{STACK_NAME}-{stage}"


def table_prefix(stack: Stack, stage: str) -> str:
    """`cloudstrype-<stage>-<8 hex of the stack id>-`: tables are kept when the stack is deleted
    (user data), so a stack created again must not claim their names; the stack id is new with
    every creation. It is `stack`'s id wherever the value is used: the nested stacks receive it
    as a parameter (`Aws.STACK_ID` would be their own id there)."""
    stack_uuid = Fn.select(2, Fn.split("/", stack.stack_id))
    return Fn.join("", [f"cloudstrype-{stage}-", Fn.select(0, Fn.split("-", stack_uuid)), "-"])


@dataclass
class ServiceCatalog:
    """What the services ask the stack for, read from their chalice apps."""
    routes: list[RouteInfo] = field(default_factory=list)
    websocket_handlers: list[WebSocketHandler] = field(default_factory=list)
    scheduled_jobs: list[ScheduledJob] = field(default_factory=list)

    @classmethod
    def from_apps(cls, apps: Mapping[str, Any]) -> "ServiceCatalog":
        catalog = cls()
        for name, app in apps.items():
            catalog.routes += app.routes_table()
            for route_key, config in getattr(app, "websocket_handlers", {}).items():
                catalog.websocket_handlers.append(
                    WebSocketHandler(name, route_key, config.handler_string))
            for source in getattr(app, "event_sources", []):
                if isinstance(source, ScheduledEventConfig):
                    expression = source.schedule_expression
                    catalog.scheduled_jobs.append(ScheduledJob(
                        name, source.name, source.handler_string,
                        expression if isinstance(expression, str) else expression.to_string(),
                        source.description))
        return catalog

    @classmethod
    def load(cls) -> "ServiceCatalog":
        """From every service present under functions/."""
        return cls.from_apps({name: services.load_app(name)
                              for name in services.available_services()})


class ServiceStack(NestedStack):
    """Everything of one service that grows with its routes (see the module docstring)."""

    def __init__(self, scope: Construct, service: str) -> None:
        super().__init__(scope, f"{service.capitalize()}Service",
                         description=f"Cloudstrype {service} service: its functions, routes "
                                     f"and alarms")
        self.service = service


class CloudstrypeStack(Stack):
    def __init__(self, scope: Construct, construct_id: str = STACK_NAME, *,
                 stage_name: str = DEFAULT_STAGE, oauth_secret_arn: str | None = None,
                 settings_overrides: Mapping[str, str] | None = None,
                 catalog: ServiceCatalog | None = None, alarm_email: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(scope, construct_id,
                         description="Cloudstrype: encrypted, redundant storage over the "
                                     "storage you already have", **kwargs)
        if catalog is None:
            catalog = ServiceCatalog.load()
        # The same prefix the functions are given below, so they find the tables made here.
        tables_prefix = table_prefix(self, stage_name)
        self.users = UserDirectory(self, "Users")
        self.data = DataStore(self, "Data", tables=schema.all_tables(), table_prefix=tables_prefix)
        self.oauth_apps = OAuthAppSecrets(self, "OAuthApps", existing_secret_arn=oauth_secret_arn)
        self.layers = FunctionLayers(self, "Layers")
        self.websocket = MemberWebSocketApi(self, "MemberWebSocket", stage_name=stage_name)
        self.rest_api = ServiceRestApi(self, "RestApi", stage_name=stage_name,
                                       user_pool=self.users.user_pool)

        settings = Settings(
            metadata_engine="dynamodb",
            table_prefix=tables_prefix,
            user_pool_id=self.users.user_pool.user_pool_id,
            user_pool_client_id=self.users.client.user_pool_client_id,
            jwks_url=self.users.jwks_url,
            token_issuer=self.users.issuer,
            auto_confirm_users="false",
            kms_key_id=self.data.key.key_id,
            staging_bucket=self.data.staging_bucket.bucket_name,
            ws_management_url=self.websocket.management_url,
            public_url=self.rest_api.url,
            local_storage_enabled="false",
        )
        self.services: dict[str, ServiceStack] = {}
        self.functions = ServiceFunctions(
            layers=self.layers,
            environment=settings_environment(
                settings, extra={OAUTH_SECRETS_ARN_ENV: self.oauth_apps.arn},
                overrides=settings_overrides),
            grant=self._grant_service, service_scope=self.service_stack,
            service_environment=self._service_environment)
        self.rest_api.add_routes(catalog.routes, self.functions,
                                 service_scope=self.service_stack)
        # Sign-in attempts per client address, as the local gateway counts them (same settings).
        sign_in = {**settings.to_env(), **(settings_overrides or {})}
        self.firewall = ApiFirewall(
            self, "Firewall", stage=self.rest_api.api.deployment_stage,
            metric_prefix=f"cloudstrype-{stage_name}",
            sign_in_per_window=sign_in_limit(
                int(sign_in["CLOUDSTRYPE_SIGN_IN_BURST_PER_ADDRESS"]),
                float(sign_in["CLOUDSTRYPE_SIGN_IN_REFILL_SECONDS"])))
        self.websocket.add_handlers(catalog.websocket_handlers, self.functions,
                                    service_scope=self.service_stack)
        self.scheduled_jobs = ScheduledJobs(self, "ScheduledJobs", jobs=catalog.scheduled_jobs,
                                            functions=self.functions,
                                            service_scope=self.service_stack)
        # The WebSocket stage logs through API Gateway's account role, which the REST API sets.
        self.websocket.stage.node.add_dependency(self.rest_api.api.node.find_child("Account"))
        self.monitoring = Monitoring(self, "Monitoring",
                                     failure_queue=self.scheduled_jobs.failures,
                                     email=alarm_email)
        for service, functions in sorted(self.functions.by_service.items()):
            self.monitoring.watch_service(self.service_stack(service), service, functions)
        for (service, name), function in sorted(self.scheduled_jobs.job_functions.items()):
            self.monitoring.watch_job(self.service_stack(service),
                                      f"{service.capitalize()}{name.capitalize()}", function)

        self.web = WebSite(self, "Web", config={
            "apiBaseUrl": self.rest_api.url,
            "websocketUrl": self.websocket.url,
            "region": Aws.REGION,
            "userPoolId": self.users.user_pool.user_pool_id,
            "userPoolClientId": self.users.client.user_pool_client_id,
        # A CSP source with a path matches that path alone unless it ends in '/': the API's
        # ends in one (every call is below it: .../prod/api/...); the WebSocket is called at
        # its own URL exactly.
        }, connect_sources=(self.rest_api.url + "/", self.websocket.url))
        # Members ask GET /api/config where the WebSocket is; OAuth connect returns to the UI.
        self.functions.add_settings(websocket_url=self.websocket.url, web_url=self.web.url)

        for name, value, description in [
            ("ApiUrl", self.rest_api.url, "REST API base URL (append /api/...)"),
            ("WebSocketUrl", self.websocket.url, "Array members connect here"),
            ("WebUrl", self.web.url, "Web UI"),
            ("UserPoolId", self.users.user_pool.user_pool_id, "Cognito user pool"),
            ("UserPoolClientId", self.users.client.user_pool_client_id, "Public app client"),
            ("OAuthSecretArn", self.oauth_apps.arn, "Put the OAuth client secrets here (JSON)"),
            # The redirect URI each provider's OAuth app must list (oauth_connect.redirect_uri
            # with the deployment's public_url, the API's URL).
            ("OAuthRedirectUris", self.rest_api.url + "/api/cloud/oauth/<provider>/callback",
             "Register with each provider's OAuth app, <provider> one of "
             + ", ".join(sorted(PROVIDERS))),
            ("StagingBucketName", self.data.staging_bucket.bucket_name, "Share staging"),
            ("TablePrefix", tables_prefix, "Prefix of this stack's DynamoDB table names"),
            ("AlarmTopicArn", self.monitoring.topic.topic_arn, "Subscribe to the alarms here"),
            ("JobFailureQueueUrl", self.scheduled_jobs.failures.queue_url,
             "Failed scheduled runs"),
        ]:
            CfnOutput(self, name, value=value, description=description)

    def service_stack(self, service: str) -> ServiceStack:
        """The service's nested stack, made when the service first needs it."""
        if service not in self.services:
            access.of(service)      # a service without declared access gets no stack at all
            self.services[service] = ServiceStack(self, service)
        return self.services[service]

    def _grant_service(self, service: str, role: iam.IRole) -> None:
        """Exactly what infra/access.py declares for the service."""
        declared = access.of(service)
        self.data.tables.grant(role, declared.tables)
        self.data.grant_key(role, declared.kms)
        self.data.grant_staging(role, declared.staging)
        if declared.oauth_secrets:
            self.oauth_apps.grant_read(role)
        if declared.manage_connections:
            self.websocket.grant_manage_connections(role)
        if declared.cognito:
            self.users.grant_admin(role, declared.cognito)

    @staticmethod
    def _service_environment(service: str) -> dict[str, str]:
        # A function that may not read the OAuth secret must not try to at start-up.
        return {} if access.of(service).oauth_secrets else {OAUTH_SECRETS_ARN_ENV: ""}


def stack_from_context(scope: Construct, **kwargs: Any) -> CloudstrypeStack:
    """The stack as `cdk` builds it: options from the context values documented above."""
    node = scope.node
    overrides = node.try_get_context("settings") or {}
    if isinstance(overrides, str):  # `-c settings='{...}'` arrives as a string
        overrides = json.loads(overrides)
    stage = node.try_get_context("stage") or DEFAULT_STAGE
    return CloudstrypeStack(
        scope, stack_name(stage),
        stage_name=stage,
        oauth_secret_arn=node.try_get_context("oauthSecretArn") or None,
        settings_overrides=overrides,
        alarm_email=node.try_get_context("alarmEmail") or None,
        **kwargs)
