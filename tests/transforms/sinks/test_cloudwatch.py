"""Tests of `transforms.sinks.cloudwatch` against a real moto server (CloudWatch, DynamoDB)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
import boto3
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import Contribution, DeadLetter
from tests.builders import contribution_record
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.sinks import LEDGER_KEY, create_table
from transforms.domain.events import make_dead_letter
from transforms.infrastructure import Backoff
from transforms.sinks.cloudwatch import PAYMENT_SUCCESS, POST_PAYMENT_ERROR, CountPaymentMetrics

FAST = Backoff(max_attempts=5, initial_delay=0.001, max_delay=0.01)
CONTRIBUTIONS = [
    contribution_record("ch_1"),
    contribution_record("ch_2"),
    contribution_record("ch_3", status="Failed"),
]
DEAD_LETTERS = [
    make_dead_letter(step="send_thank_you_email", reason="rejected", error="e", raw="{}", source=s)
    for s in ("sqs:q/ch_1", "sqs:q/ch_2", "sqs:q/ch_4")
]


@pytest.fixture
def cloudwatch(moto_server: MotoServer) -> Iterator[Any]:
    client = boto3.session.Session().client("cloudwatch")
    yield client
    client.close()


def _count(cloudwatch: Any, namespace: str, metric: str) -> float:
    now = datetime.now(UTC)
    answer = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[{"Name": "payment-provider", "Value": "Stripe"}],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=3600,
        Statistics=["Sum"],
    )
    return float(sum(point["Sum"] for point in answer["Datapoints"]))


def _run(namespace: str, ledger: str) -> None:
    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        inputs = {
            Contribution: pipeline | "Contributions" >> beam.Create(CONTRIBUTIONS),
            DeadLetter: pipeline | "DeadLetters" >> beam.Create(DEAD_LETTERS),
        }
        result = inputs | CountPaymentMetrics(namespace, ledger, backoff=FAST)
        assert_that(result.dead_letters, equal_to([]))


def test_one_success_per_paid_payment_and_one_error_per_dead_letter_across_reruns(
    cloudwatch: Any,
) -> None:
    namespace, ledger = f"support-payment-api-{uuid.uuid4().hex[:6]}", create_table(LEDGER_KEY)
    _run(namespace, ledger)
    _run(namespace, ledger)

    assert _count(cloudwatch, namespace, PAYMENT_SUCCESS) == 2.0
    assert _count(cloudwatch, namespace, POST_PAYMENT_ERROR) == 3.0
    listed = cloudwatch.list_metrics(Namespace=namespace)["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == sorted([POST_PAYMENT_ERROR, PAYMENT_SUCCESS])
    assert {tuple(d.items()) for m in listed for d in m["Dimensions"]} == {
        (("Name", "payment-provider"), ("Value", "Stripe"))
    }
