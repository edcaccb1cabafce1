"""Tests of `transforms.sinks.dynamodb` against a real moto server.

Each test writes through `WriteSupporterItems` on the FnApiRunner and reads
the table back with a clean client (Scan, GetItem), asserting exact items.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import boto3
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import DeadLetter, SupporterProductData
from schemas.rows import to_bigquery_json_row
from tests.builders import supporter_item
from tests.fixtures.aws_faults import InjectFaults
from tests.fixtures.moto_server import MotoServer
from transforms.infrastructure import Backoff, ConfigurationError, is_retryable
from transforms.sinks.common import INVALID_ROW
from transforms.sinks.dynamodb import (
    REJECTED,
    RETRIES_EXHAUSTED,
    WRITE_SUPPORTER_STEP,
    WriteSupporterItems,
    check_supporter_table,
)

FAST = Backoff(max_attempts=10, initial_delay=0.001, max_delay=0.01)


def _item(n: int, *, amount: str = "5.00") -> SupporterProductData:
    return supporter_item(f"id-{n % 7}", f"ch_{n:05d}", amount)


def _expected_item(item: SupporterProductData) -> dict[str, Any]:
    return {
        "identityId": {"S": item.identity_id},
        "subscriptionName": {"S": item.subscription_name},
        "productRatePlanId": {"S": "single_contribution"},
        "productRatePlanName": {"S": "Single Contribution"},
        "contractEffectiveDate": {"S": "2025-03-05"},
        "termEndDate": {"S": "2033-03-12"},
        "expiryDate": {"N": "1994371200"},
        "contributionAmount": {"N": format(item.contribution_amount, "f")},
        "contributionCurrency": {"S": "GBP"},
    }


ITEMS = [_item(n) for n in range(60)]


@pytest.fixture
def client(moto_server: MotoServer) -> Iterator[Any]:
    client = boto3.session.Session().client("dynamodb")
    yield client
    client.close()


def _create_table(client: Any, key: list[tuple[str, str]]) -> str:
    name = f"supporters-{uuid.uuid4().hex[:10]}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": a, "KeyType": k} for a, k in key],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a, _ in key],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


@pytest.fixture
def table(client: Any) -> Iterator[str]:
    name = _create_table(client, [("identityId", "HASH"), ("subscriptionName", "RANGE")])
    yield name
    client.delete_table(TableName=name)


def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return item["identityId"]["S"], item["subscriptionName"]["S"]


def _dead_summary(dead: DeadLetter) -> tuple[str, str, str, str]:
    return dead.step, dead.reason, dead.source, dead.raw


def _expected_dead(table: str, reason: str, item: SupporterProductData) -> tuple[str, ...]:
    raw = json.dumps(to_bigquery_json_row(item), sort_keys=True)
    return WRITE_SUPPORTER_STEP, reason, f"dynamodb:{table}/{item.subscription_name}", raw


def _write(
    table: str,
    items: list[SupporterProductData],
    *,
    written: list[str],
    dead: list[tuple[str, ...]] | None = None,
    batch_size: int = 25,
) -> None:
    """Runs the writer and asserts its exact outputs in the pipeline."""
    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        result = (
            pipeline
            | "CreateItems" >> beam.Create(items)
            | "WriteSupporterItems"
            >> WriteSupporterItems(table, batch_size=batch_size, backoff=FAST)
        )
        assert_that(result.written, equal_to(written), label="CheckWritten")
        assert_that(
            result.dead_letters | "SummariseDead" >> beam.Map(_dead_summary),
            equal_to(dead or []),
            label="CheckDeadLetters",
        )


def test_writes_exact_items_and_a_repeat_changes_nothing(client: Any, table: str) -> None:
    _write(table, ITEMS, written=[item.subscription_name for item in ITEMS], batch_size=7)

    stored = sorted(_scan(client, table), key=_key)
    assert stored == sorted((_expected_item(item) for item in ITEMS), key=_key)
    key = {"identityId": {"S": "id-3"}, "subscriptionName": {"S": "Stripe - ch_00010"}}
    one = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
    assert one == _expected_item(ITEMS[10])

    # Another system's attribute on an item must survive a rewrite.
    client.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET note = :n",
        ExpressionAttributeValues={":n": {"S": "kept"}},
    )
    # A replay: the same items again, some repeated within the run too.
    replay = ITEMS + ITEMS[:5]
    _write(table, replay, written=[item.subscription_name for item in replay])

    stored = sorted(_scan(client, table), key=_key)
    expected = [_expected_item(item) for item in ITEMS]
    expected[10] = {**expected[10], "note": {"S": "kept"}}
    assert stored == sorted(expected, key=_key)


def test_twenty_percent_faults_end_complete(
    client: Any, table: str, aws_faults: InjectFaults
) -> None:
    with aws_faults(rate=0.2, seed=20, operations={"dynamodb": {"UpdateItem"}}) as faults:
        items = ITEMS + ITEMS[:10]
        _write(table, items, written=[item.subscription_name for item in items], batch_size=9)

    assert faults.refused.get("UpdateItem", 0) > 0
    assert faults.lost.get("UpdateItem", 0) > 0
    stored = sorted(_scan(client, table), key=_key)
    assert stored == sorted((_expected_item(item) for item in ITEMS), key=_key)


def test_always_throttled_items_become_dead_letters(
    client: Any, table: str, aws_faults: InjectFaults
) -> None:
    refuse_all = {"rate": 1.0, "lost_share": 0.0, "seed": 1}
    with aws_faults(**refuse_all, operations={"dynamodb": {"UpdateItem"}}) as faults:
        _write(
            table,
            ITEMS[:3],
            written=[],
            dead=[_expected_dead(table, RETRIES_EXHAUSTED, item) for item in ITEMS[:3]],
        )

    assert faults.calls == {"UpdateItem": 3 * FAST.max_attempts}
    assert _scan(client, table) == []


def test_invalid_items_become_dead_letters(client: Any, table: str) -> None:
    too_precise = _item(1, amount="1.0000000001")
    _write(
        table,
        [_item(0), too_precise],
        written=["Stripe - ch_00000"],
        dead=[_expected_dead(table, INVALID_ROW, too_precise)],
    )
    assert [_key(item) for item in _scan(client, table)] == [("id-0", "Stripe - ch_00000")]


def test_rejected_items_are_not_retried(client: Any, table: str, aws_faults: InjectFaults) -> None:
    reject_all = {"rate": 1.0, "lost_share": 0.0, "seed": 1}
    validation = "com.amazonaws.dynamodb.v20120810#ValidationException"
    with aws_faults(
        **reject_all, refused_error=validation, operations={"dynamodb": {"UpdateItem"}}
    ) as faults:
        _write(
            table,
            ITEMS[:2],
            written=[],
            dead=[_expected_dead(table, REJECTED, item) for item in ITEMS[:2]],
        )
    assert faults.calls == {"UpdateItem": 2}


def test_missing_table_stops_at_setup(moto_server: MotoServer) -> None:
    with pytest.raises(ConfigurationError, match="'absent' does not exist"):
        check_supporter_table("absent")
    with pytest.raises(Exception, match="'absent' does not exist"):
        _write("absent", ITEMS[:1], written=[])


def test_wrong_key_schema_stops_at_setup(client: Any) -> None:
    name = _create_table(client, [("identityId", "HASH")])
    try:
        with pytest.raises(ConfigurationError) as raised:
            check_supporter_table(name)
        assert str(raised.value) == (
            f"the DynamoDB table {name!r} has key (identityId HASH); the job needs "
            "(identityId HASH, subscriptionName RANGE): give a table with that key"
        )
    finally:
        client.delete_table(TableName=name)


def test_backoff_delays_are_jittered_and_capped() -> None:
    backoff = Backoff(max_attempts=5, initial_delay=0.1, max_delay=0.3)
    rng = random.Random(0)
    delays = [backoff.delay(attempt, rng) for attempt in (1, 2, 3, 4) for _ in range(200)]
    assert all(0 <= d <= 0.3 for d in delays)
    assert max(delays[:200]) <= 0.1 < max(delays[200:400])
    assert len(set(delays)) == len(delays)


def test_only_transient_errors_are_retryable() -> None:
    from botocore.exceptions import ClientError, ConnectionClosedError

    def client_error(code: str, status: int) -> ClientError:
        return ClientError(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
        )

    assert is_retryable(client_error("ProvisionedThroughputExceededException", 400))
    assert is_retryable(client_error("Whatever", 503))
    assert is_retryable(ConnectionClosedError(endpoint_url="x"))
    assert not is_retryable(client_error("ValidationException", 400))
    assert not is_retryable(client_error("ConditionalCheckFailedException", 400))
