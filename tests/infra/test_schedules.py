"""Scheduled jobs: a chalice `@app.schedule` handler becomes a function and an EventBridge rule.

No service schedules anything yet, so this builds the stack from a catalog holding a stand-in
chunk app with a scrub job (a second, separate synthesis).
"""
from __future__ import annotations

import pytest
from chalice.app import Rate
from cloudstrype.api.service import PUBLIC, ServiceApp


def _stand_in_chunk_app() -> ServiceApp:
    app = ServiceApp("chunk", "/api/chunk")

    @app.endpoint("/status", auth=PUBLIC)
    def status(call):
        return {}

    @app.schedule(Rate(6, unit=Rate.HOURS), description="Re-create lost shares")
    def scrub(event):
        return None

    @app.schedule("cron(0 3 * * ? *)")
    def compact(event):
        return None

    return app


@pytest.fixture(scope="module")
def job_stack(tmp_path_factory):
    import aws_cdk as cdk

    from infra.stack import CloudstrypeStack, ServiceCatalog
    from tests.infra.conftest import cdk_context, synthesize

    catalog = ServiceCatalog.from_apps({"chunk": _stand_in_chunk_app()})
    outdir = tmp_path_factory.mktemp("jobs.out")
    app = cdk.App(context=cdk_context(), outdir=str(outdir))
    return synthesize(CloudstrypeStack(app, catalog=catalog), outdir).resources


def test_catalog_reads_schedules_from_the_app():
    from infra.stack import ServiceCatalog

    catalog = ServiceCatalog.from_apps({"chunk": _stand_in_chunk_app()})
    jobs = {job.name: job for job in catalog.scheduled_jobs}
    assert jobs["scrub"].handler == "app.scrub"
    assert jobs["scrub"].expression == "rate(6 hours)"
    assert jobs["scrub"].description == "Re-create lost shares"
    assert jobs["compact"].expression == "cron(0 3 * * ? *)"
    assert [(r.method, r.path) for r in catalog.routes] == [("GET", "/api/chunk/status")]


def test_each_job_runs_its_handler_on_its_schedule(job_stack):
    functions = {name: r["Properties"] for name, r in job_stack.items()
                 if r["Type"] == "AWS::Lambda::Function"}
    rules = [r["Properties"] for r in job_stack.values() if r["Type"] == "AWS::Events::Rule"]
    by_expression = {}
    for rule in rules:
        (target,) = rule["Targets"]
        by_expression[rule["ScheduleExpression"]] = functions[target["Arn"]["Fn::GetAtt"][0]]
    assert set(by_expression) == {"rate(6 hours)", "cron(0 3 * * ? *)"}
    scrub = by_expression["rate(6 hours)"]
    assert scrub["Handler"] == "app.scrub"
    assert by_expression["cron(0 3 * * ? *)"]["Handler"] == "app.compact"
    assert scrub["Timeout"] == 900
    assert scrub["Architectures"] == ["x86_64"] and len(scrub["Layers"]) == 2
    assert "CLOUDSTRYPE_KMS_KEY_ID" in scrub["Environment"]["Variables"]
    permissions = [r["Properties"] for r in job_stack.values()
                   if r["Type"] == "AWS::Lambda::Permission"
                   and r["Properties"]["Principal"] == "events.amazonaws.com"]
    assert len(permissions) == 2
