"""Alarms: function errors and throttles per service, each scheduled job's failures (the scrub's
among them), and failed runs waiting in the jobs' failure queue. They notify one SNS topic
(output `AlarmTopicArn`; subscribe an address to it, or give `-c alarmEmail=...`)."""
from __future__ import annotations

from typing import Iterable, Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# CloudWatch lets one alarm's metric math read at most 10 metrics, so a service's functions are
# watched in groups of this many.
METRICS_PER_ALARM = 10
PERIOD = Duration.minutes(5)


def _groups(items: Sequence, size: int) -> list[Sequence]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class Monitoring(Construct):
    """The topic and the queue's alarm here; each service's alarms in the scope given (its nested
    stack, next to the functions they watch)."""

    def __init__(self, scope: Construct, construct_id: str, *, failure_queue: sqs.IQueue,
                 email: str | None = None) -> None:
        super().__init__(scope, construct_id)
        # CloudWatch alarms cannot publish to a topic under the AWS-managed SNS key (its key
        # policy does not admit CloudWatch); see infra/checks-suppressed.yaml.
        self.topic = sns.Topic(self, "Alarms", display_name="Cloudstrype alarms",
                               enforce_ssl=True)
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.alarms: list[cloudwatch.Alarm] = []
        self._alarm(self, "JobFailuresQueued",
                    failure_queue.metric_approximate_number_of_messages_visible(
                        period=PERIOD, statistic="Maximum"),
                    "failed scheduled runs are waiting in the failure queue")

    def watch_service(self, scope: Construct, service: str,
                      functions: Iterable[lambda_.Function]) -> None:
        """Errors and throttles of the service's functions, in groups of METRICS_PER_ALARM."""
        for number, group in enumerate(_groups(list(functions), METRICS_PER_ALARM), 1):
            for kind in ("Errors", "Throttles"):
                self._alarm(
                    scope, f"{service.capitalize()}{kind}{number}", self._sum(group, kind),
                    f"{service} service functions (group {number}): {kind.lower()} in 5 "
                    f"minutes")

    def watch_job(self, scope: Construct, name: str, function: lambda_.Function) -> None:
        # Any failed run (an exception or the 15-minute timeout) of a job: the scrub not
        # finishing means damaged chunks wait for repair.
        self._alarm(scope, f"{name}Failed", function.metric_errors(period=PERIOD, statistic="Sum"),
                    f"scheduled job {name} failed")

    @staticmethod
    def _sum(functions: Sequence[lambda_.Function], kind: str) -> cloudwatch.IMetric:
        metrics = {f"m{i}": function.metric(kind, period=PERIOD, statistic="Sum")
                   for i, function in enumerate(functions)}
        # A function not called in a period has no data point; count it as zero.
        return cloudwatch.MathExpression(
            expression="+".join(f"FILL({name},0)" for name in metrics),
            using_metrics=metrics, period=PERIOD, label=f"{kind} (sum)")

    def _alarm(self, scope: Construct, construct_id: str, metric: cloudwatch.IMetric,
               description: str) -> None:
        alarm = cloudwatch.Alarm(
            scope, construct_id, metric=metric, threshold=1, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"Cloudstrype: {description}")
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
