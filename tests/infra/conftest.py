"""The Cloudstrype stack, synthesized once per test session, in process and offline.

Asset bundling is switched off with the standard context `aws:cdk:bundling-stacks = []` (the
dependency layer is then its unbundled source folder; no pip, no Docker, no network). Every other
context value comes from cdk.json, so the tests see the feature flags a real `cdk synth` uses.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def cdk_context(**extra) -> dict:
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    context.update({"aws:cdk:bundling-stacks": [], "aws:cdk:enable-asset-metadata": True})
    context.update(extra)
    return context


@dataclass
class Synthesized:
    stack: object
    template: object          # aws_cdk.assertions.Template
    resources: dict           # logical id -> resource, from the template JSON
    outputs: dict
    outdir: Path

    def of_type(self, resource_type: str) -> dict:
        return {name: r for name, r in self.resources.items() if r["Type"] == resource_type}


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Synthesized:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.stack import stack_from_context

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(context=cdk_context(), outdir=str(outdir))
    stack = stack_from_context(app)
    template = Template.from_stack(stack)
    body = template.to_json()
    return Synthesized(stack, template, body["Resources"], body.get("Outputs", {}), outdir)


@pytest.fixture(scope="session")
def routes():
    """Every REST route, read from the services' apps (not from the stack code under test)."""
    import functions
    return [route for name in functions.available_services()
            for route in functions.load_app(name).routes_table()]


@pytest.fixture(scope="session")
def websocket_routes():
    """route key -> (service, handler string), read from the apps."""
    import functions
    found = {}
    for name in functions.available_services():
        for key, config in getattr(functions.load_app(name), "websocket_handlers", {}).items():
            found[key] = (name, config.handler_string)
    return found


@pytest.fixture(scope="session")
def scheduled_handlers():
    """Handler strings of the services' chalice `@app.schedule` jobs, read from the apps."""
    from chalice.app import ScheduledEventConfig

    import functions
    return [source.handler_string for name in functions.available_services()
            for source in getattr(functions.load_app(name), "event_sources", [])
            if isinstance(source, ScheduledEventConfig)]


STACK_ID = ("arn:aws:cloudformation:us-east-1:123456789012:stack/Cloudstrype-prod/"
            "1a2b3c4d-5e6f-7a8b-9c0d-112233445566")


def evaluate(value, stack_id: str = STACK_ID):
    """What CloudFormation makes of a value built from Fn::Join / Select / Split and the stack
    id (the table names); anything else is returned as it is."""
    if isinstance(value, dict) and len(value) == 1:
        (name, args), = value.items()
        if name == "Ref" and args == "AWS::StackId":
            return stack_id
        if name == "Fn::Join":
            return args[0].join(evaluate(part, stack_id) for part in args[1])
        if name == "Fn::Split":
            return evaluate(args[1], stack_id).split(args[0])
        if name == "Fn::Select":
            return evaluate(args[1], stack_id)[args[0]]
    return value
