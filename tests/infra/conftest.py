"""The Cloudstrype stack, synthesized once per test session, in process and offline.

Asset bundling is switched off with the standard context `aws:cdk:bundling-stacks = []` (the
dependency layer is then its unbundled source folder; no pip, no Docker, no network). Every other
context value comes from cdk.json, so the tests see the feature flags a real `cdk synth` uses.

The stack is a parent with one nested stack per service. Most tests read `resources`, all the
stacks' resources in one view where every value crossing stacks is followed to where it comes
from: a nested stack's parameter becomes the parent's value for it, a parent's
`Fn::GetAtt <nested stack>.Outputs.X` the nested output's value. A nested stack's own pseudo
parameters (its stack id) are renamed, so they are never mistaken for the parent's.
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


NESTED_STACK = "AWS::CloudFormation::Stack"
OWN_PSEUDO_PARAMETERS = ("AWS::StackId", "AWS::StackName")


@dataclass
class Synthesized:
    stack: object
    template: object          # aws_cdk.assertions.Template of the parent stack
    resources: dict           # logical id -> resource, every stack's, references followed
    outputs: dict             # the parent's outputs
    outdir: Path
    # template file name -> template JSON, as CloudFormation gets them: the parent's first, then
    # each nested stack's (the value is the raw template, references not followed)
    templates: dict
    # parent logical id of each nested stack resource -> its template file name
    nested: dict

    def of_type(self, resource_type: str) -> dict:
        return {name: r for name, r in self.resources.items() if r["Type"] == resource_type}


def _replace(value, replace):
    found = replace(value)
    if found is not None:
        return found
    if isinstance(value, dict):
        return {key: _replace(item, replace) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace(item, replace) for item in value]
    return value


def synthesize(stack, outdir: Path) -> Synthesized:
    """Synthesize the app of `stack` (a CloudstrypeStack) into `outdir` and read it back."""
    from aws_cdk.assertions import Template

    template = Template.from_stack(stack)
    body = template.to_json()
    parent_file = f"{stack.artifact_id}.template.json"
    templates = {parent_file: body}
    nested, outputs, merged = {}, {}, {}

    def add(logical: str, resource: dict) -> None:
        assert logical not in merged, f"{logical} is in two stacks"
        merged[logical] = resource

    for logical, resource in body["Resources"].items():
        if resource["Type"] != NESTED_STACK:
            continue
        name = resource["Metadata"]["aws:asset:path"]
        nested[logical] = name
        templates[name] = child = json.loads((outdir / name).read_text())
        parameters = resource["Properties"].get("Parameters", {})

        def from_parent(value, parameters=parameters, logical=logical):
            if isinstance(value, dict) and list(value) == ["Ref"]:
                if value["Ref"] in parameters:
                    return parameters[value["Ref"]]
                if value["Ref"] in OWN_PSEUDO_PARAMETERS:
                    return {"Ref": f"{value['Ref']} of the nested stack {logical}"}
            return None

        for child_logical, child_resource in child["Resources"].items():
            add(child_logical, _replace(child_resource, from_parent))
        outputs[logical] = {key: _replace(output["Value"], from_parent)
                            for key, output in child.get("Outputs", {}).items()}

    def from_nested(value):
        if isinstance(value, dict) and list(value) == ["Fn::GetAtt"]:
            target, attribute = value["Fn::GetAtt"]
            if target in outputs and attribute.startswith("Outputs."):
                return outputs[target][attribute.removeprefix("Outputs.")]
        return None

    for logical, resource in body["Resources"].items():
        add(logical, _replace(resource, from_nested))
    return Synthesized(stack, template, merged, body.get("Outputs", {}), outdir, templates,
                       nested)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Synthesized:
    import aws_cdk as cdk

    from infra.stack import stack_from_context

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(context=cdk_context(), outdir=str(outdir))
    return synthesize(stack_from_context(app), outdir)


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
