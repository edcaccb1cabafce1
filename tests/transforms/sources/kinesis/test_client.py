"""Tests of `transforms.sources.kinesis.client`: the API calls and `KinesisRecord`."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.fixtures.kinesis import FakeKinesis
from transforms.domain.events import SourceRecord
from transforms.sources.kinesis import (
    KinesisRecord,
    list_shards,
)


def test_list_shards_follows_next_token() -> None:
    fake = FakeKinesis(page_size=2)
    for shard_id in ("s0", "s1", "s2", "s3", "s4"):
        fake.add_shard(shard_id)
    assert [shard.shard_id for shard in list_shards(fake, "s")] == ["s0", "s1", "s2", "s3", "s4"]


def test_source_record_of_kinesis_record() -> None:
    arrival = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    record = KinesisRecord(b"{}", "s", "shardId-000000000001", "49", "key", arrival)
    assert record.to_source_record() == SourceRecord(
        data=b"{}",
        source="kinesis:s/shardId-000000000001/49",
        arrival=arrival,
        partition_key="key",
    )
