"""The Kinesis read composites: `ReadKinesisRecords` and `ReadFromKinesis`.

Both start from the pipeline's beginning with `beam.Impulse()` and read with
`transforms.sources.kinesis.reader.ReadStreamFn`; see the package docstring
for positions, resharding, watermarks and the test bounds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import apache_beam as beam

from transforms.domain.events import SourceRecord
from transforms.sources.kinesis.client import KinesisRecord
from transforms.sources.kinesis.reader import MIN_CALL_INTERVAL, ReadStreamFn
from transforms.sources.kinesis.shards import (
    AT_TIMESTAMP,
    INITIAL_POSITIONS,
    TRIM_HORIZON,
    KinesisStream,
    StartingPosition,
)


class ReadKinesisRecords(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[KinesisRecord]]):
    """`PBegin` -> unbounded `PCollection[KinesisRecord]`, at least once.

    See the module docstring for positions, resharding, watermarks and the
    test bounds `idle_timeout` and `max_records` (per restriction: the whole
    stream without a coordination table, each shard's lineage with one).
    `poll_interval` is how long an idle stream waits before it is polled again.
    `coordination_table` names a DynamoDB table (key `shardKey` HASH) through
    which one restriction per shard reads in parallel; None reads every shard
    in one restriction, on one thread. Raises ValueError on an impossible
    combination of arguments.
    """

    def __init__(
        self,
        stream: str,
        initial_position: str = TRIM_HORIZON,
        initial_timestamp: datetime | None = None,
        idle_timeout: timedelta | None = None,
        max_records: int | None = None,
        poll_interval: timedelta = timedelta(seconds=1),
        coordination_table: str | None = None,
    ) -> None:
        super().__init__()
        if initial_position not in INITIAL_POSITIONS:
            raise ValueError(
                f"initial_position must be one of {', '.join(INITIAL_POSITIONS)}, "
                f"not {initial_position!r}"
            )
        if (initial_position == AT_TIMESTAMP) != (initial_timestamp is not None):
            raise ValueError("initial_timestamp is required with AT_TIMESTAMP and only with it")
        if initial_timestamp is not None and initial_timestamp.tzinfo is None:
            raise ValueError("initial_timestamp must be timezone-aware")
        if max_records is not None and max_records < 1:
            raise ValueError("max_records must be at least 1")
        if idle_timeout is not None and idle_timeout <= timedelta(0):
            raise ValueError("idle_timeout must be positive")
        if poll_interval < MIN_CALL_INTERVAL:
            raise ValueError(f"poll_interval must be at least {MIN_CALL_INTERVAL}")
        if coordination_table is not None and not coordination_table:
            raise ValueError("coordination_table must be a table name or None")
        self._element = KinesisStream(
            stream=stream,
            start=StartingPosition(kind=initial_position, timestamp=initial_timestamp),
            coordination_table=coordination_table,
        )
        self._idle_timeout = idle_timeout
        self._max_records = max_records
        self._poll_interval = poll_interval

    def expand(self, begin: beam.pvalue.PBegin) -> beam.PCollection[KinesisRecord]:
        element = self._element
        return (
            begin
            | "Start" >> beam.Impulse()
            | "ToStream" >> beam.Map(lambda _: element)
            | "ReadShards"
            >> beam.ParDo(
                ReadStreamFn(
                    self._idle_timeout,
                    self._max_records,
                    self._poll_interval,
                    element.coordination_table,
                )
            )
        )


class ReadFromKinesis(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[SourceRecord]]):
    """`PBegin` -> unbounded `PCollection[SourceRecord]`, at least once.

    `ReadKinesisRecords` followed by `KinesisRecord.to_source_record`, which
    keeps the partition key. Arguments as for `ReadKinesisRecords`.
    """

    def __init__(self, stream: str, **kwargs: Any) -> None:
        super().__init__()
        self._read = ReadKinesisRecords(stream, **kwargs)

    def expand(self, begin: beam.pvalue.PBegin) -> beam.PCollection[SourceRecord]:
        return (
            begin
            | "ReadKinesisRecords" >> self._read
            | "ToSourceRecords" >> beam.Map(KinesisRecord.to_source_record)
        )
