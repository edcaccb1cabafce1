"""Tests of `transforms.sinks.sqs` against a real moto server.

Each test sends through `SendMessages` on the FnApiRunner, asserts its exact
outputs in the pipeline, then drains the queue with ReceiveMessage/DeleteMessage
and compares the exact bodies received.

moto, like SQS, drops a FIFO message whose deduplication id it saw in the
last five minutes, but forgets ids once their messages are deleted; the
tests drain only after all runs whose duplicates FIFO should absorb, and use
a fresh queue (no deduplication memory, as after five minutes) to show what
the ledger alone prevents.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apache_beam as beam
import boto3
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import DeadLetter, SoftOptIn, ThankYouEmail
from tests.fixtures.aws_faults import InjectFaults
from tests.fixtures.moto_server import MotoServer
from transforms.infrastructure import Backoff, ConfigurationError
from transforms.sinks.ledger import SENT, confirm_sent, ledger_item, left_claim, release_claim
from transforms.sinks.sqs import (
    FIFO,
    OUTCOME_UNKNOWN,
    REJECTED,
    RETRIES_EXHAUSTED,
    SENDING,
    SOFT_OPT_IN,
    STANDARD,
    THANK_YOU_EMAIL,
    SendMessages,
    check_ledger_table,
    check_message_queue,
    deduplication_id,
    message_key,
)

FAST = Backoff(max_attempts=10, initial_delay=0.001, max_delay=0.01)
CREATED = datetime(2025, 3, 5, 12, 0, tzinfo=UTC)
DRAIN_DEADLINE_SECONDS = 10.0


def _email(n: int) -> ThankYouEmail:
    address = f"reader{n}@example.com"
    body = {
        "To": {
            "Address": address,
            "SubscriberKey": address,
            "ContactAttributes": {"SubscriberAttributes": {"EmailAddress": address}},
        },
        "DataExtensionName": "contribution-thank-you",
        "IdentityUserId": f"id-{n}",
    }
    return ThankYouEmail(
        payment_id=f"ch_{n:05d}",
        message=json.dumps(body, separators=(",", ":")),
        livemode=False,
        account="ed_test_1",
        created=CREATED,
    )


def _opt_in(n: int) -> SoftOptIn:
    body = {
        "subscriptionId": str(uuid.UUID(int=n)),
        "identityId": f"id-{n}",
        "eventType": "Acquisition",
        "productName": "CONTRIBUTION",
        "printProduct": None,
        "previousProductName": None,
        "userConsentsOverrides": {"similarGuardianProducts": None},
    }
    return SoftOptIn(
        payment_id=f"ch_{n:05d}",
        message=json.dumps(body, separators=(",", ":")),
        livemode=False,
        account="ed_test_1",
        created=CREATED,
    )


EMAILS = [_email(n) for n in range(25)]


@pytest.fixture
def sqs(moto_server: MotoServer) -> Iterator[Any]:
    client = boto3.session.Session().client("sqs")
    yield client
    client.close()


@pytest.fixture
def dynamodb(moto_server: MotoServer) -> Iterator[Any]:
    client = boto3.session.Session().client("dynamodb")
    yield client
    client.close()


def _new_queue(sqs: Any, *, fifo: bool = True) -> str:
    name = f"messages-{uuid.uuid4().hex[:10]}"
    if not fifo:
        return str(sqs.create_queue(QueueName=name)["QueueUrl"])
    return str(
        sqs.create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    )


@pytest.fixture
def queue(sqs: Any) -> Iterator[str]:
    url = _new_queue(sqs)
    yield url
    sqs.delete_queue(QueueUrl=url)


def _new_table(dynamodb: Any, key: str = "messageKey") -> str:
    name = f"ledger-{uuid.uuid4().hex[:10]}"
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


@pytest.fixture
def ledger(dynamodb: Any) -> Iterator[str]:
    name = _new_table(dynamodb)
    yield name
    dynamodb.delete_table(TableName=name)


def _drain(sqs: Any, queue_url: str) -> list[str]:
    """Every body in the queue, deleting as it reads, until a receive comes back empty."""
    bodies: list[str] = []
    deadline = time.monotonic() + DRAIN_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            attributes = sqs.get_queue_attributes(
                QueueUrl=queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            assert attributes == {
                "ApproximateNumberOfMessages": "0",
                "ApproximateNumberOfMessagesNotVisible": "0",
            }
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    pytest.fail(f"queue not drained within {DRAIN_DEADLINE_SECONDS}s")


def _dead_summary(dead: DeadLetter) -> tuple[str, str, str, str]:
    return dead.step, dead.reason, dead.source, dead.raw


def _send(
    queue_url: str,
    ledger_table: str | None,
    records: list[Any],
    *,
    kind: str = THANK_YOU_EMAIL,
    sent: list[str],
    already_sent: list[str] | None = None,
    dead: list[tuple[str, ...]] | None = None,
) -> None:
    """Runs the sender and asserts its exact outputs in the pipeline."""
    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        result = (
            pipeline
            | "CreateMessages" >> beam.Create(records)
            | "SendMessages" >> SendMessages(queue_url, kind, ledger_table, backoff=FAST)
        )
        assert_that(result.sent, equal_to(sent), label="CheckSent")
        assert_that(result.already_sent, equal_to(already_sent or []), label="CheckAlreadySent")
        assert_that(
            result.dead_letters | "SummariseDead" >> beam.Map(_dead_summary),
            equal_to(dead or []),
            label="CheckDeadLetters",
        )


def _ids(records: list[Any]) -> list[str]:
    return [record.payment_id for record in records]


def _bodies(records: list[Any]) -> list[str]:
    return sorted(record.message for record in records)


@pytest.mark.parametrize(
    ("kind", "records"),
    [
        pytest.param(THANK_YOU_EMAIL, EMAILS, id="thank-you-emails"),
        pytest.param(SOFT_OPT_IN, [_opt_in(n) for n in range(12)], id="soft-opt-ins"),
    ],
)
def test_sends_exact_bodies_once(
    sqs: Any, dynamodb: Any, queue: str, ledger: str, kind: str, records: list[Any]
) -> None:
    _send(queue, ledger, records, kind=kind, sent=_ids(records))

    first = sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=1, MessageSystemAttributeNames=["All"]
    )["Messages"][0]
    payment_id = first["Attributes"]["MessageGroupId"]
    assert first["Attributes"]["MessageDeduplicationId"] == deduplication_id(kind, payment_id)
    sqs.change_message_visibility(
        QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    assert sorted(_drain(sqs, queue)) == _bodies(records)
    marked = dynamodb.get_item(
        TableName=ledger, Key={"messageKey": {"S": message_key(kind, payment_id)}}
    )["Item"]
    assert marked["state"] == {"S": "sent"}
    assert marked["paymentId"] == {"S": payment_id}
    assert set(marked) == {
        "messageKey",
        "kind",
        "paymentId",
        "state",
        "claimedAt",
        "claimToken",
        "sentAt",
    }


def test_ledger_alone_stops_a_replay_days_later(sqs: Any, queue: str, ledger: str) -> None:
    _send(queue, ledger, EMAILS, sent=_ids(EMAILS))
    assert sorted(_drain(sqs, queue)) == _bodies(EMAILS)

    # A fresh queue remembers no deduplication id, as SQS after five minutes.
    later = _new_queue(sqs)
    _send(later, ledger, EMAILS, sent=[], already_sent=_ids(EMAILS))
    assert _drain(sqs, later) == []

    # Without the ledger the same replay does reach that queue: only the ledger stopped it.
    _send(later, None, EMAILS, sent=_ids(EMAILS))
    assert sorted(_drain(sqs, later)) == _bodies(EMAILS)
    sqs.delete_queue(QueueUrl=later)


def test_crash_between_send_and_mark_resends_into_the_dedup_window(
    sqs: Any, dynamodb: Any, queue: str, ledger: str
) -> None:
    crashed = EMAILS[0]
    # The crashed attempt claimed, sent, and never marked.
    dynamodb.put_item(
        TableName=ledger,
        Item={
            "messageKey": {"S": message_key(THANK_YOU_EMAIL, crashed.payment_id)},
            "kind": {"S": THANK_YOU_EMAIL},
            "paymentId": {"S": crashed.payment_id},
            "state": {"S": SENDING},
            "claimedAt": {"N": repr(time.time() - 30)},
        },
    )
    sqs.send_message(
        QueueUrl=queue,
        MessageBody=crashed.message,
        MessageGroupId=crashed.payment_id,
        MessageDeduplicationId=deduplication_id(THANK_YOU_EMAIL, crashed.payment_id),
    )

    _send(queue, ledger, EMAILS[:3], sent=_ids(EMAILS[:3]))
    assert sorted(_drain(sqs, queue)) == _bodies(EMAILS[:3])
    marked = dynamodb.get_item(
        TableName=ledger,
        Key={"messageKey": {"S": message_key(THANK_YOU_EMAIL, crashed.payment_id)}},
        ConsistentRead=True,
    )["Item"]
    assert marked["state"] == {"S": "sent"}


def test_stale_claim_is_dead_lettered_not_resent(
    sqs: Any, dynamodb: Any, queue: str, ledger: str
) -> None:
    stale = EMAILS[1]
    claim = {
        "messageKey": {"S": message_key(THANK_YOU_EMAIL, stale.payment_id)},
        "kind": {"S": THANK_YOU_EMAIL},
        "paymentId": {"S": stale.payment_id},
        "state": {"S": SENDING},
        "claimedAt": {"N": repr(time.time() - timedelta(days=3).total_seconds())},
    }
    dynamodb.put_item(TableName=ledger, Item=claim)

    queue_name = queue.rsplit("/", 1)[-1]
    _send(
        queue,
        ledger,
        EMAILS[:2],
        sent=[EMAILS[0].payment_id],
        dead=[
            (
                f"send_{THANK_YOU_EMAIL}",
                OUTCOME_UNKNOWN,
                f"sqs:{queue_name}/{stale.payment_id}",
                stale.message,
            )
        ],
    )
    assert _drain(sqs, queue) == [EMAILS[0].message]
    key = {"messageKey": claim["messageKey"]}
    assert dynamodb.get_item(TableName=ledger, Key=key, ConsistentRead=True)["Item"] == claim


FAULTY = {
    "sqs": {"SendMessageBatch"},
    "dynamodb": {"PutItem", "GetItem", "UpdateItem"},
}


def test_repeats_under_twenty_percent_faults_send_each_message_once(
    sqs: Any, queue: str, ledger: str, aws_faults: InjectFaults
) -> None:
    # Repeats within a run (redeliveries) and a second run (a bundle retry or a
    # restart within minutes), while a fifth of the calls fail.
    repeated = EMAILS + EMAILS[:5]
    with aws_faults(rate=0.2, seed=7, operations=FAULTY) as faults:
        _send(queue, ledger, repeated, sent=_ids(EMAILS), already_sent=_ids(EMAILS[:5]))
        _send(queue, ledger, repeated, sent=[], already_sent=_ids(repeated))

    for operation in ("SendMessageBatch", "PutItem", "GetItem", "UpdateItem"):
        assert faults.refused.get(operation, 0) + faults.lost.get(operation, 0) > 0, operation
    assert faults.lost.get("PutItem", 0) > 0
    assert sorted(_drain(sqs, queue)) == _bodies(EMAILS)


def test_lost_send_responses_are_absorbed_by_deduplication(
    sqs: Any, queue: str, ledger: str, aws_faults: InjectFaults
) -> None:
    # SQS took the batch but the answer was lost: the retry repeats the whole batch.
    lose_half = {"rate": 0.5, "lost_share": 1.0, "seed": 3}
    with aws_faults(**lose_half, operations={"sqs": {"SendMessageBatch"}}) as faults:
        _send(queue, ledger, EMAILS, sent=_ids(EMAILS))

    assert faults.lost.get("SendMessageBatch", 0) > 0
    assert sorted(_drain(sqs, queue)) == _bodies(EMAILS)


def test_failed_batch_entries_are_retried_until_sent(
    sqs: Any, queue: str, ledger: str, aws_faults: InjectFaults
) -> None:
    fail_some = {"rate": 0.5, "lost_share": 0.0, "seed": 2, "failed_entries": False}
    with aws_faults(**fail_some, operations={"sqs": {"SendMessageBatch"}}) as faults:
        _send(queue, ledger, EMAILS, sent=_ids(EMAILS))

    assert faults.refused.get("SendMessageBatch", 0) > 0
    assert sorted(_drain(sqs, queue)) == _bodies(EMAILS)


def test_entries_refused_as_the_senders_fault_are_not_retried(
    sqs: Any, queue: str, ledger: str, aws_faults: InjectFaults
) -> None:
    refuse_all = {"rate": 1.0, "lost_share": 0.0, "seed": 1, "failed_entries": True}
    queue_name = queue.rsplit("/", 1)[-1]
    with aws_faults(**refuse_all, operations={"sqs": {"SendMessageBatch"}}) as faults:
        _send(
            queue,
            ledger,
            EMAILS[:2],
            sent=[],
            dead=[
                (f"send_{THANK_YOU_EMAIL}", REJECTED, f"sqs:{queue_name}/{m.payment_id}", m.message)
                for m in EMAILS[:2]
            ],
        )
    assert faults.calls == {"SendMessageBatch": 1}
    assert _drain(sqs, queue) == []


def test_a_refused_sends_letter_names_the_claim_it_left_which_only_it_releases(
    sqs: Any,
    queue: str,
    ledger: str,
    dynamodb: Any,
    aws_faults: InjectFaults,
    tmp_path: Path,
) -> None:
    refuse_all = {"rate": 1.0, "lost_share": 0.0, "seed": 1, "failed_entries": True}
    prefix = str(tmp_path / "claims")
    faults = aws_faults(**refuse_all, operations={"sqs": {"SendMessageBatch"}})
    with faults, test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            (
                pipeline
                | beam.Create(EMAILS[:2])
                | SendMessages(queue, THANK_YOU_EMAIL, ledger, backoff=FAST)
            ).dead_letters
            | beam.Map(lambda dead: f"{dead.source.rsplit('/', 1)[1]}\t{left_claim(dead.error)!r}")
            | beam.io.WriteToText(prefix)
        )
    lines = [line for path in tmp_path.glob("claims*") for line in path.read_text().splitlines()]
    left = {payment: float(at) for payment, at in (line.split("\t") for line in lines)}
    items = {
        item["paymentId"]["S"]: (item["state"]["S"], float(item["claimedAt"]["N"]))
        for item in dynamodb.scan(TableName=ledger, ConsistentRead=True)["Items"]
    }
    assert items == {payment: (SENDING, at) for payment, at in left.items()}
    assert sorted(left) == sorted(_ids(EMAILS[:2]))

    first, second = sorted(left)
    assert not release_claim(dynamodb, ledger, THANK_YOU_EMAIL, first, left[first] + 1)
    assert release_claim(dynamodb, ledger, THANK_YOU_EMAIL, first, left[first])
    assert not release_claim(dynamodb, ledger, THANK_YOU_EMAIL, first, left[first])
    remaining = dynamodb.scan(TableName=ledger, ConsistentRead=True)["Items"]
    assert [item["paymentId"]["S"] for item in remaining] == [second]
    assert _drain(sqs, queue) == []


def _claims_left(queue: str, ledger: str, records: list[Any], tmp_path: Path) -> dict[str, float]:
    """Sends `records`; {payment id: the claimedAt its dead letter's error names}."""
    prefix = str(tmp_path / "claims")
    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            (
                pipeline
                | beam.Create(records)
                | SendMessages(queue, THANK_YOU_EMAIL, ledger, backoff=FAST)
            ).dead_letters
            | beam.Map(
                lambda dead: (
                    f"{dead.source.rsplit('/', 1)[1]}\t{dead.reason}\t{left_claim(dead.error)!r}"
                )
            )
            | beam.io.WriteToText(prefix)
        )
    lines = [line for path in tmp_path.glob("claims*") for line in path.read_text().splitlines()]
    rows = [line.split("\t") for line in lines]
    assert {reason for _, reason, _ in rows} == {OUTCOME_UNKNOWN}
    return {payment: float(at) for payment, _, at in rows}


def test_an_outcome_unknown_letter_names_the_stale_claim_which_only_it_confirms_sent(
    sqs: Any, queue: str, ledger: str, dynamodb: Any, tmp_path: Path
) -> None:
    stale, claimed_at = EMAILS[1], time.time() - timedelta(days=3).total_seconds()
    key = {"messageKey": {"S": message_key(THANK_YOU_EMAIL, stale.payment_id)}}
    claim = {**key, "paymentId": {"S": stale.payment_id}, "state": {"S": SENDING}}
    dynamodb.put_item(TableName=ledger, Item={**claim, "claimedAt": {"N": repr(claimed_at)}})

    assert _claims_left(queue, ledger, [stale], tmp_path) == {stale.payment_id: claimed_at}

    payment = stale.payment_id
    assert ledger_item(dynamodb, ledger, THANK_YOU_EMAIL, payment) == (SENDING, claimed_at)
    assert not confirm_sent(dynamodb, ledger, THANK_YOU_EMAIL, payment, claimed_at + 1, "r1")
    assert ledger_item(dynamodb, ledger, THANK_YOU_EMAIL, payment) == (SENDING, claimed_at)
    assert confirm_sent(dynamodb, ledger, THANK_YOU_EMAIL, payment, claimed_at, "r1")
    marked = dynamodb.get_item(TableName=ledger, Key=key, ConsistentRead=True)["Item"]
    assert (marked["state"], marked["claimedAt"], marked["confirmedBy"]) == (
        {"S": SENT},
        {"N": repr(claimed_at)},
        {"S": "r1"},
    )
    # Confirmed again (a run that died after marking): still that claim, nothing rewritten.
    assert confirm_sent(dynamodb, ledger, THANK_YOU_EMAIL, payment, claimed_at, "r2")
    assert dynamodb.get_item(TableName=ledger, Key=key, ConsistentRead=True)["Item"] == marked
    # Marked sent, it is no claim to release any more; and nothing was ever sent.
    assert not release_claim(dynamodb, ledger, THANK_YOU_EMAIL, payment, claimed_at)
    assert ledger_item(dynamodb, ledger, THANK_YOU_EMAIL, "ch_none") is None
    assert not confirm_sent(dynamodb, ledger, THANK_YOU_EMAIL, "ch_none", claimed_at, "r1")
    assert ledger_item(dynamodb, ledger, THANK_YOU_EMAIL, "ch_none") is None
    assert _drain(sqs, queue) == []


def test_a_lost_answers_outcome_unknown_letter_names_its_own_claim(
    sqs: Any, ledger: str, dynamodb: Any, aws_faults: InjectFaults, tmp_path: Path
) -> None:
    # A standard queue cannot take a repeat: the first lost answer is the letter.
    standard = _new_queue(sqs, fifo=False)
    lose_all = {"rate": 1.0, "lost_share": 1.0, "seed": 5}
    try:
        with aws_faults(**lose_all, operations={"sqs": {"SendMessageBatch"}}) as faults:
            left = _claims_left(standard, ledger, EMAILS[:2], tmp_path)
        assert faults.calls == {"SendMessageBatch": 1}
        items = {
            item["paymentId"]["S"]: (item["state"]["S"], float(item["claimedAt"]["N"]))
            for item in dynamodb.scan(TableName=ledger, ConsistentRead=True)["Items"]
        }
        assert items == {payment: (SENDING, at) for payment, at in left.items()}
        assert sorted(left) == sorted(_ids(EMAILS[:2]))
        assert sorted(_drain(sqs, standard)) == _bodies(EMAILS[:2])  # they did arrive
    finally:
        sqs.delete_queue(QueueUrl=standard)


def test_unsendable_messages_become_dead_letters(
    sqs: Any, queue: str, ledger: str, aws_faults: InjectFaults
) -> None:
    refuse_all = {"rate": 1.0, "lost_share": 0.0, "seed": 1}
    with aws_faults(**refuse_all, operations={"sqs": {"SendMessageBatch"}}) as faults:
        queue_name = queue.rsplit("/", 1)[-1]
        _send(
            queue,
            ledger,
            EMAILS[:3],
            sent=[],
            dead=[
                (
                    f"send_{THANK_YOU_EMAIL}",
                    RETRIES_EXHAUSTED,
                    f"sqs:{queue_name}/{m.payment_id}",
                    m.message,
                )
                for m in EMAILS[:3]
            ],
        )
    assert faults.calls == {"SendMessageBatch": FAST.max_attempts}
    assert _drain(sqs, queue) == []


def test_standard_queue_is_accepted_and_named_by_the_check(sqs: Any, queue: str) -> None:
    standard = _new_queue(sqs, fifo=False)
    try:
        assert check_message_queue(standard) == STANDARD
        assert check_message_queue(queue) == FIFO
    finally:
        sqs.delete_queue(QueueUrl=standard)


def test_standard_queue_under_faults_never_delivers_twice(
    sqs: Any, ledger: str, aws_faults: InjectFaults
) -> None:
    # A standard queue takes a repeat as a new message: a send whose answer was
    # lost cannot be retried, so it becomes outcome_unknown (it did reach SQS);
    # every other message is sent exactly once, repeats and reruns included.
    standard = _new_queue(sqs, fifo=False)
    repeated = EMAILS + EMAILS[:5]
    try:
        with (
            aws_faults(rate=0.2, seed=11, operations=FAULTY) as faults,
            test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline,
        ):
            result = (
                pipeline
                | beam.Create(repeated)
                | SendMessages(standard, THANK_YOU_EMAIL, ledger, backoff=FAST)
            )
            assert_that(
                result.dead_letters | beam.Map(lambda d: d.reason) | beam.Distinct(),
                equal_to([OUTCOME_UNKNOWN]),
                label="OnlyUnknownOutcomes",
            )
        received = _drain(sqs, standard)
        assert faults.lost.get("SendMessageBatch", 0) > 0
        # Nothing twice, and nothing that is not ours.
        assert len(received) == len(set(received))
        assert set(received) == set(_bodies(EMAILS))
    finally:
        sqs.delete_queue(QueueUrl=standard)


def test_missing_queue_is_refused_at_setup(moto_server: MotoServer, ledger: str) -> None:
    missing = f"{moto_server.endpoint_url}/123456789012/absent.fifo"
    with pytest.raises(ConfigurationError, match="absent.fifo does not exist"):
        check_message_queue(missing)


def test_missing_or_mis_keyed_ledger_is_refused_at_setup(dynamodb: Any, queue: str) -> None:
    with pytest.raises(ConfigurationError, match="'absent' does not exist"):
        check_ledger_table("absent")
    wrong = _new_table(dynamodb, key="paymentId")
    try:
        with pytest.raises(ConfigurationError, match=r"has key \(paymentId HASH\)"):
            check_ledger_table(wrong)
    finally:
        dynamodb.delete_table(TableName=wrong)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"kind": "Thank You"}, id="bad-kind"),
        pytest.param({"ledger_table": ""}, id="empty-ledger"),
        pytest.param({"stale_after": timedelta(minutes=5)}, id="stale-after-window"),
        pytest.param({"stale_after": timedelta(0)}, id="stale-after-zero"),
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"queue_url": "http://q/1/x.fifo", "kind": THANK_YOU_EMAIL}
    with pytest.raises(ValueError):
        SendMessages(**{**arguments, **kwargs})
