"""The stack split: CloudFormation takes at most 500 resources per stack, and every REST route
costs about six (function, log group, permission, method, path resource, CORS preflight). So
each service's routes, functions, role and alarms live in the service's nested stack, every
stack stays under MARGIN, and routes added to one service grow that service's stack only."""
from __future__ import annotations

import dataclasses

import pytest
from cloudstrype.api.service import USER, RouteInfo

from tests.infra.conftest import NESTED_STACK

# Of CloudFormation's 500 per stack: room for a service to grow before its stack needs splitting.
# The filesystem service's stack holds 236 resources now; with GROWTH more routes on new paths
# (~8 resources each: path resources and their preflights, function, log group, permission,
# method, alarm) it reaches ~402. At 450 it is split (its sharing and trash routes into a stack
# of their own) rather than the margin moved again.
MARGIN = 450
# Routes the `grown` synthesis adds to one service.
GROWTH = 20
GROWN_SERVICE = "filesystem"


def _counts(synthesized) -> dict[str, int]:
    return {name: len(body["Resources"]) for name, body in synthesized.templates.items()}


def _service_of(function: dict) -> str | None:
    description = function["Properties"].get("Description", "")
    return description.rsplit("(", 1)[1].split()[0] if description.endswith(" service)") \
        else None


def _of_type(body: dict, resource_type: str) -> dict:
    return {name: r for name, r in body["Resources"].items() if r["Type"] == resource_type}


def _parent(synthesized) -> dict:
    return next(iter(synthesized.templates.values()))


def _nested_by_service(synthesized) -> dict[str, dict]:
    """service -> its nested stack's template, found by the services its functions run."""
    found = {}
    for name in synthesized.nested.values():
        body = synthesized.templates[name]
        services = {_service_of(f) for f in _of_type(body, "AWS::Lambda::Function").values()}
        assert len(services) == 1 and None not in services, (name, services)
        found[services.pop()] = body
    return found


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """The stack again, with GROWTH more routes on one service."""
    import aws_cdk as cdk

    from infra.stack import CloudstrypeStack, ServiceCatalog
    from tests.infra.conftest import cdk_context, synthesize

    catalog = ServiceCatalog.load()
    catalog = dataclasses.replace(catalog, routes=catalog.routes + [
        RouteInfo(GROWN_SERVICE, f"/api/{GROWN_SERVICE}/grown/item{i}/{{id}}", "GET", USER,
                  f"grown_{i}") for i in range(GROWTH)])
    outdir = tmp_path_factory.mktemp("grown.out")
    app = cdk.App(context=cdk_context(), outdir=str(outdir))
    return synthesize(CloudstrypeStack(app, "Cloudstrype-prod", catalog=catalog), outdir)


def test_every_stack_stays_well_under_the_cloudformation_limit(synthesized):
    counts = _counts(synthesized)
    assert len(counts) == 1 + len(synthesized.nested) and len(synthesized.nested) >= 6
    over = {name: count for name, count in counts.items() if count >= MARGIN}
    assert not over, f"split these stacks further (limit 500, margin {MARGIN}): {over}"


def test_each_service_has_one_nested_stack_with_its_functions_role_methods_and_alarms(
        synthesized, routes, websocket_routes, scheduled_handlers):
    by_service = _nested_by_service(synthesized)
    assert set(by_service) == {r.service for r in routes} | \
        {service for service, _ in websocket_routes.values()}
    for service, body in by_service.items():
        functions = _of_type(body, "AWS::Lambda::Function")
        own_routes = [r for r in routes if r.service == service]
        assert len([f for f in functions.values()
                    if f["Properties"]["Handler"] == "app.app"]) == len(own_routes), service
        assert len(_of_type(body, "AWS::IAM::Role")) == 1, service
        methods = [m for m in _of_type(body, "AWS::ApiGateway::Method").values()
                   if m["Properties"]["HttpMethod"] != "OPTIONS"]
        assert len(methods) == len(own_routes), service
        watched = {dimension["Value"]["Ref"]
                   for alarm in _of_type(body, "AWS::CloudWatch::Alarm").values()
                   for query in alarm["Properties"].get("Metrics", [])
                   if "MetricStat" in query
                   for dimension in query["MetricStat"]["Metric"]["Dimensions"]}
        assert watched == set(functions), service
    # What stays in the parent does not grow with the routes: no service function, role or
    # route method; the preflights of the shared path resources and the queue's alarm.
    parent = _parent(synthesized)
    assert not [f for f in _of_type(parent, "AWS::Lambda::Function").values()
                if _service_of(f)]
    assert not [m for m in _of_type(parent, "AWS::ApiGateway::Method").values()
                if m["Properties"]["HttpMethod"] != "OPTIONS"]
    assert len(_of_type(parent, "AWS::CloudWatch::Alarm")) == 1
    assert len(_of_type(parent, NESTED_STACK)) == len(by_service)


def test_the_deployment_waits_for_every_service_stack(synthesized):
    (deployment,) = _of_type(_parent(synthesized), "AWS::ApiGateway::Deployment").values()
    # Its methods live in the nested stacks; a deployment made before them would publish none.
    assert set(synthesized.nested) <= set(deployment["DependsOn"])


def test_routes_added_to_one_service_grow_only_that_services_stack(synthesized, grown):
    before, after = _counts(synthesized), _counts(grown)
    assert set(before) == set(after)
    grown_file = next(name for name, body in grown.templates.items()
                      if body is _nested_by_service(grown)[GROWN_SERVICE])
    # At least a function, log group, permission and method per route.
    assert after[grown_file] >= before[grown_file] + 4 * GROWTH
    assert {name: count for name, count in after.items() if name != grown_file} == \
        {name: count for name, count in before.items() if name != grown_file}
    assert max(after.values()) < MARGIN


def test_the_deployment_is_replaced_when_a_service_adds_routes(synthesized, grown):
    # CloudFormation only makes a new deployment (publishing the new methods) for a new
    # logical id; the methods sit in nested stacks, so the parent must change it itself.
    (before,) = _of_type(_parent(synthesized), "AWS::ApiGateway::Deployment")
    (after,) = _of_type(_parent(grown), "AWS::ApiGateway::Deployment")
    assert before != after
