"""How every Cloudstrype Lambda function is made: runtime, architecture, layers, settings, role.

A service's functions (one per REST route, plus its WebSocket handlers and scheduled jobs) share
the service's code asset (`functions/<service>/`) and one IAM role, so a grant is made once per
service and the template does not grow a role and a policy per route. The role lives in the
service's nested stack, next to its functions.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cloudstrype import limits
from cloudstrype.settings import Settings
from constructs import Construct

from infra.constructs.layers import ARCHITECTURE, ASSET_EXCLUDES, PYTHON_RUNTIME, FunctionLayers

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"

# API Gateway stops waiting after 29 s; a function running longer only burns money.
API_TIMEOUT = Duration.seconds(limits.INTEGRATION_TIMEOUT_SECONDS)
# Services that move chunk bytes (encryption, erasure coding) get more memory, hence more CPU.
DEFAULT_MEMORY_MB = 512
MEMORY_MB = {"chunk": 1024, "cloud": 1024, "array": 1024, "filesystem": 1024}

# Lambda sets AWS_REGION itself and refuses it as a user variable.
RESERVED_BY_LAMBDA = {"AWS_REGION"}


def settings_environment(settings: Settings, *, extra: Mapping[str, str] | None = None,
                         overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every setting's environment variable, except secret ones and those Lambda reserves.

    `overrides` (deployment choices such as OAuth client ids or CLOUDSTRYPE_DEBUG) may name any
    non-secret setting; naming a secret or an unknown variable is refused.
    """
    secret = {f.metadata["env"] for f in dataclasses.fields(Settings) if f.metadata["secret"]}
    known = set(Settings.env_names().values())
    environment = {name: value for name, value in settings.to_env().items()
                   if name not in secret and name not in RESERVED_BY_LAMBDA}
    for name, value in (overrides or {}).items():
        if name in secret:
            raise ValueError(f"{name} is a secret: put it in the OAuth secret, not in settings.")
        if name not in known or name in RESERVED_BY_LAMBDA:
            raise ValueError(f"{name} is not a setting the stack can set; settable: "
                             f"{sorted(known - secret - RESERVED_BY_LAMBDA)}")
        environment[name] = str(value)
    environment.update(extra or {})
    return environment


def service_code(service: str) -> lambda_.Code:
    return lambda_.Code.from_asset(str(FUNCTIONS_DIR / service), exclude=ASSET_EXCLUDES)


class ServiceFunctions:
    """Factory of service functions; owns one role per service and applies its grants once.

    `grant(service, role)` is called when a service's role is created: the stack decides there
    what each service may touch. The role is made in `service_scope(service)` (the service's
    nested stack); every function of a service must be made in that same stack.
    """

    def __init__(self, *, layers: FunctionLayers, environment: Mapping[str, str],
                 grant: Callable[[str, iam.IRole], None],
                 service_scope: Callable[[str], Construct],
                 service_environment: Callable[[str], Mapping[str, str]] | None = None) -> None:
        self.layers = layers
        self._service_scope = service_scope
        self.environment = dict(environment)
        self._grant = grant
        # Per service, over `environment` (e.g. no secret ARN where the role may not read it).
        self._service_environment = service_environment or (lambda service: {})
        self._roles: dict[str, iam.Role] = {}
        self._code: dict[str, lambda_.Code] = {}
        self.functions: list[lambda_.Function] = []
        self.by_service: dict[str, list[lambda_.Function]] = {}

    def role(self, service: str) -> iam.Role:
        if service not in self._roles:
            role = iam.Role(
                self._service_scope(service), f"{service.capitalize()}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"Cloudstrype {service} service functions",
                managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AWSLambdaBasicExecutionRole")],
            )
            self._roles[service] = role
            self._grant(service, role)
        return self._roles[service]

    def add_settings(self, **values: str) -> None:
        """Settings (by Settings field name) only known once other resources exist, such as the
        web UI's URL: set on every function made so far and every one made after."""
        names = Settings.env_names()
        for field_name, value in values.items():
            self.environment[names[field_name]] = value
            for function in self.functions:
                function.add_environment(names[field_name], value)

    @property
    def roles(self) -> dict[str, iam.Role]:
        return dict(self._roles)

    def function(self, scope: Construct, construct_id: str, *, service: str, handler: str,
                 description: str, timeout: Duration = API_TIMEOUT) -> lambda_.Function:
        role = self.role(service)
        if Stack.of(scope).node.path != Stack.of(role).node.path:
            # One code asset and one role per service, both in the service's stack.
            raise ValueError(f"{construct_id}: a {service} function belongs in the {service} "
                             f"service's stack ({Stack.of(role).node.path})")
        if service not in self._code:
            self._code[service] = service_code(service)
        function = lambda_.Function(
            scope, construct_id,
            runtime=PYTHON_RUNTIME,
            architecture=ARCHITECTURE,
            code=self._code[service],
            handler=handler,
            layers=self.layers.all,
            memory_size=MEMORY_MB.get(service, DEFAULT_MEMORY_MB),
            timeout=timeout,
            environment={**self.environment, **self._service_environment(service)},
            role=role,
            description=description,
        )
        self.functions.append(function)
        self.by_service.setdefault(service, []).append(function)
        return function
