"""Tests of `transforms.sinks.store_queue` against a real moto server (SQS and DynamoDB).

What the store's writer reads from its queue: one `newContributionData` per
paid payment, one `refundedPaymentId` per fully refunded charge and only
once its payment's message is out, whatever order and whichever run they
come in; every message with the `keyId` attribute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import boto3
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import ContributionStoreRecord, PaymentAdjustment
from tests.builders import (
    dispute_adjustment,
    refund_adjustment,
    refund_object_adjustment,
    store_record,
)
from tests.fixtures.aws_faults import InjectFaults
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.sinks import LEDGER_KEY, create_queue, create_table
from transforms.core.metrics import NAMESPACE
from transforms.domain.store_messages import new_contribution_message, refunded_payment_message
from transforms.infrastructure import Backoff
from transforms.sinks.ledger import OUTCOME_UNKNOWN
from transforms.sinks.store_queue import SendToContributionsStore

FAST = Backoff(max_attempts=10, initial_delay=0.001, max_delay=0.01)
KEY_ID = "key-2025"


@pytest.fixture
def sqs(moto_server: MotoServer) -> Iterator[Any]:
    client = boto3.session.Session().client("sqs")
    yield client
    client.close()


def _received(sqs: Any, queue: str) -> list[tuple[str, str]]:
    """(keyId attribute, body) of every message, deleting as it reads, sorted."""
    received: list[tuple[str, str]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return sorted(received)
        for message in messages:
            attribute = message["MessageAttributes"]["keyId"]
            assert attribute["DataType"] == "String"
            received.append((attribute["StringValue"], message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def _run(
    queue: str,
    ledger: str,
    records: list[ContributionStoreRecord],
    adjustments: list[PaymentAdjustment],
    *,
    dead_reasons: list[str] | None = None,
) -> None:
    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        inputs = {
            ContributionStoreRecord: pipeline | "Records" >> beam.Create(records),
            PaymentAdjustment: pipeline | "Adjustments" >> beam.Create(adjustments),
        }
        result = inputs | SendToContributionsStore(queue, KEY_ID, ledger, backoff=FAST)
        if dead_reasons is None:
            assert_that(result.dead_letters, equal_to([]))
        else:
            allowed = set(dead_reasons)

            def only_allowed(reasons: list[str]) -> None:
                assert set(reasons) <= allowed, reasons

            assert_that(result.dead_letters | beam.Map(lambda d: d.reason), only_allowed)


def _new(payment_id: str) -> tuple[str, str]:
    return KEY_ID, new_contribution_message(store_record(payment_id))


def _refund(payment_id: str) -> tuple[str, str]:
    return KEY_ID, refunded_payment_message(payment_id)


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_refunds_follow_their_payment_once_in_any_order_and_run(sqs: Any, fifo: bool) -> None:
    queue, ledger = create_queue(fifo=fifo), create_table(LEDGER_KEY)
    records = [store_record("ch_1"), store_record("ch_2"), store_record("ch_3")]
    adjustments = [
        refund_adjustment("ch_1", "10.00", "evt_r1"),  # full, in the payment's own run
        refund_adjustment("ch_2", "4.00", "evt_r2", fully_refunded=False),
        dispute_adjustment("ch_3"),
        refund_adjustment("ch_4", "10.00", "evt_r4"),  # before its payment
    ]

    _run(queue, ledger, records, adjustments)
    assert _received(sqs, queue) == sorted(
        [_new("ch_1"), _new("ch_2"), _new("ch_3"), _refund("ch_1")]
    )

    # The same again, with ch_2 now fully refunded and ch_4's payment arriving.
    later = [*adjustments, refund_adjustment("ch_2", "10.00", "evt_r2b")]
    _run(queue, ledger, [*records, store_record("ch_4")], later)
    assert _received(sqs, queue) == sorted([_new("ch_4"), _refund("ch_2"), _refund("ch_4")])

    _run(queue, ledger, [*records, store_record("ch_4")], later)
    assert _received(sqs, queue) == []


def test_refund_objects_decide_nothing_and_are_counted(sqs: Any) -> None:
    queue, ledger = create_queue(fifo=False), create_table(LEDGER_KEY)
    pipeline = beam.Pipeline(runner=FnApiRunner())
    inputs = {
        ContributionStoreRecord: pipeline | "Records" >> beam.Create([store_record("ch_1")]),
        PaymentAdjustment: pipeline
        | "Adjustments"
        >> beam.Create([refund_object_adjustment("ch_1", "10.00"), dispute_adjustment("ch_1")]),
    }
    result = inputs | SendToContributionsStore(queue, KEY_ID, ledger, backoff=FAST)
    assert_that(result.dead_letters, equal_to([]))
    run = pipeline.run()
    run.wait_until_finish()

    # Only charge.refunded says a charge is whole refunded: no refund message.
    assert _received(sqs, queue) == [_new("ch_1")]
    counters = run.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    assert {c.key.metric.name: c.committed for c in counters if "refund" in c.key.metric.name} == {
        "contribution_refund_undecided_refund_object": 1
    }


def test_under_twenty_percent_faults_no_message_is_sent_twice(
    sqs: Any, aws_faults: InjectFaults
) -> None:
    queue, ledger = create_queue(fifo=False), create_table(LEDGER_KEY)
    records = [store_record(f"ch_{n}") for n in range(30)]
    refunds = [refund_adjustment(f"ch_{n}", "10.00", f"evt_r{n}") for n in range(0, 30, 3)]
    operations = {
        "sqs": {"SendMessageBatch"},
        "dynamodb": {"PutItem", "GetItem", "UpdateItem"},
    }
    with aws_faults(rate=0.2, seed=8, operations=operations) as faults:
        _run(queue, ledger, records, refunds, dead_reasons=[OUTCOME_UNKNOWN])
    received = _received(sqs, queue)

    assert faults.lost.get("SendMessageBatch", 0) > 0
    assert len(received) == len(set(received))
    # A lost answer means the message went out: everything arrived once.
    expected = [_new(r.payment_id) for r in records] + [_refund(a.payment_id) for a in refunds]
    assert set(received) <= set(expected)
    assert {body for _, body in received if "newContributionData" in body} == {
        body for _, body in expected if "newContributionData" in body
    }


def test_a_refund_message_never_precedes_its_payment(sqs: Any) -> None:
    queue, ledger = create_queue(fifo=False), create_table(LEDGER_KEY)
    _run(queue, ledger, [], [refund_adjustment("ch_9", "10.00")])
    assert _received(sqs, queue) == []
