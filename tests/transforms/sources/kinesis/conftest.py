"""Fixtures of the Kinesis source tests: a moto stream, a coordination table, fast calls."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import boto3
import pytest

from tests.fixtures.moto_server import MotoServer
from tests.transforms.sources.kinesis.support import (
    RECORD_COUNT,
)
from transforms.sources.kinesis import reader as kinesis_reader


@pytest.fixture
def stream(moto_server: MotoServer) -> Iterator[tuple[str, list[tuple[bytes, str, str, str]]]]:
    """A 2-shard moto stream holding RECORD_COUNT distinct records.

    Yields the stream name and, for each record, (data, shard id, sequence
    number, partition key) as PutRecords reported them.
    """
    client = boto3.session.Session().client("kinesis")
    name = f"test-{uuid.uuid4().hex[:12]}"
    client.create_stream(StreamName=name, ShardCount=2)
    client.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    expected: list[tuple[bytes, str, str, str]] = []
    for batch_start in range(0, RECORD_COUNT, 100):
        batch = [
            (f'{{"n": {n}}}'.encode(), f"key-{n}") for n in range(batch_start, batch_start + 100)
        ]
        response = client.put_records(
            StreamName=name, Records=[{"Data": data, "PartitionKey": key} for data, key in batch]
        )
        assert response["FailedRecordCount"] == 0
        for (data, key), result in zip(batch, response["Records"], strict=True):
            expected.append((data, result["ShardId"], result["SequenceNumber"], key))
    assert len({shard for _, shard, _, _ in expected}) == 2
    yield name, expected
    client.delete_stream(StreamName=name)


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake clients have no rate limit: do not wait 0.2 s between calls on a shard."""
    monkeypatch.setattr(kinesis_reader, "MIN_CALL_INTERVAL", timedelta(seconds=0.005))


@pytest.fixture
def coordination_table(moto_server: MotoServer) -> Iterator[str]:
    """An empty coordination table (key shardKey HASH) on the moto server."""
    client = boto3.session.Session().client("dynamodb")
    name = f"kinesis-coordination-{uuid.uuid4().hex[:10]}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "shardKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "shardKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield name
    client.delete_table(TableName=name)
    client.close()
