"""Scheduled jobs (the scrub that repairs lost shares, and the like): chalice `@app.schedule`
handlers of the services, each its own function started by an EventBridge rule, both in the
job's service's nested stack.

A run that fails lands in one SQS queue (`failures`): EventBridge puts there what it could not
deliver, Lambda the events of runs that still failed after their retries. The queue's depth and
each job's errors have alarms (infra/constructs/monitoring.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.lambdas import ServiceFunctions

# A job is not bound by API Gateway's 29 s; Lambda's own limit is 15 minutes.
JOB_TIMEOUT = Duration.minutes(15)
# Retries of a failed run (Lambda's asynchronous invocation, and EventBridge's delivery).
JOB_RETRIES = 2
# Long enough for someone to look after an alarm over a holiday.
FAILURE_RETENTION = Duration.days(14)


@dataclass(frozen=True)
class ScheduledJob:
    service: str
    name: str           # chalice's name for the handler
    handler: str        # Lambda handler string, e.g. app.scrub
    expression: str     # rate(...) or cron(...)
    description: str = ""


def _construct_name(job: ScheduledJob) -> str:
    words = re.split(r"[^0-9A-Za-z]+", f"{job.service} {job.name}")
    return "".join(word[:1].upper() + word[1:] for word in words if word)


class ScheduledJobs(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, jobs: Iterable[ScheduledJob],
                 functions: ServiceFunctions,
                 service_scope: Callable[[str], Construct]) -> None:
        super().__init__(scope, construct_id)
        self.job_functions: dict[tuple[str, str], lambda_.Function] = {}
        self.jobs: dict[tuple[str, str], ScheduledJob] = {}
        self.failures = sqs.Queue(
            self, "Failures", retention_period=FAILURE_RETENTION,
            encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            removal_policy=RemovalPolicy.DESTROY)
        for job in jobs:
            name = _construct_name(job)
            scope = service_scope(job.service)
            function = functions.function(
                scope, f"{name}Function", service=job.service, handler=job.handler,
                description=f"Scheduled {job.name}: {job.expression} ({job.service} service)",
                timeout=JOB_TIMEOUT)
            function.configure_async_invoke(
                retry_attempts=JOB_RETRIES, on_failure=destinations.SqsDestination(self.failures))
            events.Rule(scope, f"{name}Schedule",
                        description=job.description or f"Runs {job.service}.{job.name}",
                        schedule=events.Schedule.expression(job.expression),
                        targets=[targets.LambdaFunction(function, retry_attempts=JOB_RETRIES,
                                                        dead_letter_queue=self.failures)])
            self.job_functions[(job.service, job.name)] = function
            self.jobs[(job.service, job.name)] = job
