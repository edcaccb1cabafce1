"""Tests of `transforms.sinks.eventbridge` against a real moto server.

The bus has a rule whose target is an SQS queue, so the test reads exactly
what a subscriber of the acquisitions bus receives. Every event is also
checked against the acquisitions publisher's rules
(`tests/transforms/sinks/publisher_schema.py`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import apache_beam as beam
import boto3
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import AcquisitionEvent
from tests.builders import event, session_object
from tests.fixtures.aws_faults import InjectFaults
from tests.fixtures.moto_server import MotoServer
from tests.transforms.sinks.publisher_schema import publisher_errors
from transforms.domain.facts import SessionFact, classify
from transforms.domain.mapping import build_records
from transforms.domain.payment import Payment
from transforms.infrastructure import Backoff, ConfigurationError
from transforms.sinks.eventbridge import (
    DEFAULT_SOURCE,
    DETAIL_TYPE,
    MAX_BATCH_BYTES,
    PublishAcquisitions,
    check_event_bus,
    entry_size,
)
from transforms.sinks.ledger import OUTCOME_UNKNOWN

FAST = Backoff(max_attempts=10, initial_delay=0.001, max_delay=0.01)


def _event(n: int) -> AcquisitionEvent:
    metadata = {"identityId": str(1000 + n), "campaignCode": "c1,c2", "platform": "iosnativeapp"}
    fact = classify(
        event(f"evt_{n}", "checkout.session.completed", session_object(metadata=metadata))
    )
    assert isinstance(fact, SessionFact)
    payment = Payment(
        session=fact,
        status="Paid",
        settled_at=fact.meta.created,
        charge_id=f"ch_{n:05d}",
        card_country="GB",
        payment_method="card",
        account="ed_1",
    )
    records = build_records(payment)
    assert records.acquisition_event is not None
    return records.acquisition_event


EVENTS = [_event(n) for n in range(23)]


@pytest.fixture
def clients(moto_server: MotoServer) -> Iterator[dict[str, Any]]:
    session = boto3.session.Session()
    made = {name: session.client(name) for name in ("events", "sqs", "dynamodb")}
    yield made
    for client in made.values():
        client.close()


@pytest.fixture
def bus(clients: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(bus name, URL of the queue its rule delivers to)."""
    name = f"acquisitions-bus-{uuid.uuid4().hex[:8]}"
    events, sqs = clients["events"], clients["sqs"]
    events.create_event_bus(Name=name)
    queue = sqs.create_queue(QueueName=f"subscriber-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="to-subscriber",
        EventBusName=name,
        EventPattern=json.dumps({"source": [DEFAULT_SOURCE], "detail-type": [DETAIL_TYPE]}),
    )
    events.put_targets(
        Rule="to-subscriber", EventBusName=name, Targets=[{"Id": "queue", "Arn": arn}]
    )
    yield name, queue
    sqs.delete_queue(QueueUrl=queue)


@pytest.fixture
def ledger(clients: dict[str, Any]) -> Iterator[str]:
    name = f"ledger-{uuid.uuid4().hex[:10]}"
    clients["dynamodb"].create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "messageKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "messageKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield name
    clients["dynamodb"].delete_table(TableName=name)


def _received(sqs: Any, queue: str) -> list[dict[str, Any]]:
    envelopes: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return envelopes
        for message in messages:
            envelopes.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def _publish(bus: str, ledger: str, events: list[AcquisitionEvent]) -> Any:
    pipeline = test_pipeline.TestPipeline(runner=FnApiRunner())
    result = pipeline | beam.Create(events) | PublishAcquisitions(bus, ledger, backoff=FAST)
    return pipeline, result


def test_subscriber_gets_one_exact_event_per_payment_across_reruns(
    clients: dict[str, Any], bus: tuple[str, str], ledger: str
) -> None:
    name, queue = bus
    for run, (sent, already) in enumerate(
        [([e.payment_id for e in EVENTS], []), ([], [e.payment_id for e in EVENTS])]
    ):
        pipeline, result = _publish(name, ledger, EVENTS + EVENTS[:3])
        assert_that(result.sent, equal_to(sent), label=f"Sent{run}")
        repeats = [e.payment_id for e in EVENTS[:3]]
        assert_that(result.already_sent, equal_to(already + repeats), label=f"Already{run}")
        assert_that(result.dead_letters, equal_to([]), label=f"Dead{run}")
        pipeline.run().wait_until_finish()

    envelopes = _received(clients["sqs"], queue)
    assert sorted(json.dumps(e["detail"], sort_keys=True) for e in envelopes) == sorted(
        json.dumps(json.loads(e.message), sort_keys=True) for e in EVENTS
    )
    assert {(e["source"], e["detail-type"]) for e in envelopes} == {(DEFAULT_SOURCE, DETAIL_TYPE)}
    for envelope in envelopes:
        assert publisher_errors(envelope) == []
    first = json.loads(EVENTS[0].message)
    assert (first["campaignCode"], first["platform"], first["amount"]) == (
        "c1,c2",
        "iosnativeapp",
        5.0,
    )
    assert '"amount":5.00,' in EVENTS[0].message


def test_under_twenty_percent_faults_nothing_is_published_twice(
    clients: dict[str, Any], bus: tuple[str, str], ledger: str, aws_faults: InjectFaults
) -> None:
    name, queue = bus
    operations = {"events": {"PutEvents"}, "dynamodb": {"PutItem", "GetItem", "UpdateItem"}}
    with aws_faults(rate=0.2, seed=5, operations=operations) as faults:
        pipeline, result = _publish(name, ledger, EVENTS)
        assert_that(
            result.dead_letters | beam.Map(lambda d: d.reason) | beam.Distinct(),
            equal_to([OUTCOME_UNKNOWN]),
            label="OnlyUnknownOutcomes",
        )
        pipeline.run().wait_until_finish()
    details = [json.dumps(e["detail"], sort_keys=True) for e in _received(clients["sqs"], queue)]
    assert faults.lost.get("PutEvents", 0) > 0
    # A lost answer means the event went out; it is never sent again.
    assert len(details) == len(set(details))
    assert set(details) == {json.dumps(json.loads(e.message), sort_keys=True) for e in EVENTS}


def test_batches_hold_at_most_ten_entries_and_256_kb() -> None:
    from transforms.sinks.eventbridge import _EventBridgeTransport
    from transforms.sinks.ledger import Entry

    big = replace(EVENTS[0], message=json.dumps({"pad": "x" * 100_000}))
    transport = _EventBridgeTransport("bus", DEFAULT_SOURCE)
    entries = [Entry(e, None, None) for e in EVENTS[:12]]  # type: ignore[arg-type]
    assert [len(b) for b in transport.batches(entries)] == [10, 2]
    heavy = [Entry(big, None, None) for _ in range(5)]  # type: ignore[arg-type]
    sizes = [len(b) for b in transport.batches(heavy)]
    assert sizes == [2, 2, 1]
    assert 2 * entry_size("bus", DEFAULT_SOURCE, big.message) <= MAX_BATCH_BYTES


def test_missing_bus_is_refused(moto_server: MotoServer) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        check_event_bus("absent-bus")
