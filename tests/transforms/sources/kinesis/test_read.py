"""Tests of `transforms.sources.kinesis.read`: the composites on the FnApiRunner.

Plain reads run against a real moto server, bounded with `idle_timeout` so
the FnApiRunner ends; resharding reads the fake shard graph of
`tests.fixtures.kinesis` (moto's shard split is not faithful).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
import boto3
import pytest
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.testing.util import assert_that, equal_to

from tests.fixtures.kinesis import FakeKinesis
from tests.transforms.sources.kinesis.support import (
    FAST_POLL,
    HORIZON,
    IDLE,
    RECORD_COUNT,
    assert_lineage_order,
    drive,
    fn_api_pipeline,
    read_in_one_pane,
    split_after_first_call,
    table_keys,
)
from transforms.sources.kinesis import (
    KinesisStream,
    ReadFromKinesis,
    ReadKinesisRecords,
    StreamRestriction,
    claimed_key,
    drained_key,
)
from transforms.sources.kinesis import client as kinesis_api
from transforms.sources.kinesis.reader import ReadStreamFn
from transforms.sources.kinesis.tracker import StreamTracker


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"initial_position": "EARLIEST"}, id="unknown-position"),
        pytest.param({"initial_position": "AT_TIMESTAMP"}, id="at-timestamp-without-time"),
        pytest.param(
            {"initial_timestamp": datetime(2026, 1, 1, tzinfo=UTC)}, id="time-without-at-timestamp"
        ),
        pytest.param(
            {"initial_position": "AT_TIMESTAMP", "initial_timestamp": datetime(2026, 1, 1)},
            id="naive-time",
        ),
        pytest.param({"max_records": 0}, id="zero-max-records"),
        pytest.param({"idle_timeout": timedelta(0)}, id="zero-idle-timeout"),
        pytest.param({"poll_interval": timedelta(seconds=0.01)}, id="poll-too-fast"),
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ReadKinesisRecords("stream", **kwargs)


def test_reads_every_record_once_with_its_position(
    stream: tuple[str, list[tuple[bytes, str, str, str]]],
) -> None:
    name, expected = stream
    with fn_api_pipeline() as pipeline:
        records = read_in_one_pane(
            pipeline, ReadKinesisRecords(name, idle_timeout=IDLE, poll_interval=FAST_POLL)
        )
        assert_that(
            records
            | "KeepFields"
            >> beam.Map(lambda r: (r.data, r.shard_id, r.sequence_number, r.partition_key)),
            equal_to(expected),
            label="CheckRecords",
        )
        assert_that(
            records
            | "CheckSource"
            >> beam.Map(
                lambda r: (
                    r.source == f"kinesis:{name}/{r.shard_id}/{r.sequence_number}"
                    and r.arrival.tzinfo == UTC
                )
            )
            | "Distinct" >> beam.Distinct(),
            equal_to([True]),
            label="CheckSourceAndArrival",
        )


def test_read_from_kinesis_by_arn_emits_source_records(
    stream: tuple[str, list[tuple[bytes, str, str, str]]],
) -> None:
    name, expected = stream
    arn = (
        boto3.session.Session()
        .client("kinesis")
        .describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    )
    with fn_api_pipeline() as pipeline:
        records = read_in_one_pane(
            pipeline, ReadFromKinesis(arn, idle_timeout=IDLE, poll_interval=FAST_POLL)
        )
        assert_that(
            records | "KeepFields" >> beam.Map(lambda r: (r.data, r.source, r.arrival is not None)),
            equal_to(
                [(data, f"kinesis:{arn}/{shard}/{seq}", True) for data, shard, seq, _ in expected]
            ),
        )


def test_pipeline_reads_a_shard_split_mid_read_exactly_once(
    monkeypatch: pytest.MonkeyPatch, fast_calls: None
) -> None:
    fake = FakeKinesis(batch=2)
    fake.add_shard("s0")
    fake.put("s0", 5)
    fake.add_shard("t")
    fake.put("t", 3)
    fake.close("t")
    fake.hooks.append(split_after_first_call("s0", ("s1", "s2"), more=3, per_child=4))
    monkeypatch.setattr(kinesis_api, "kinesis_client", lambda: fake)
    with fn_api_pipeline() as pipeline:
        records = read_in_one_pane(pipeline, ReadFromKinesis("s", poll_interval=FAST_POLL))
        assert_that(
            records | "KeepFields" >> beam.Map(lambda r: (r.data, r.partition_key)),
            equal_to(
                [
                    (f"{shard}-{n:06d}".encode(), f"key-{n}")
                    for shard, numbers in (
                        ("s0", range(1, 6)),
                        ("t", range(6, 9)),
                        ("s0", range(9, 12)),
                        ("s1", range(12, 16)),
                        ("s2", range(16, 20)),
                    )
                    for n in numbers
                ]
            ),
        )
    assert sorted(fake.reads) == sorted(fake.all_records())
    assert len(fake.reads) == 5 + 3 + 3 + 4 + 4
    assert_lineage_order(fake.reads, fake)


def test_max_records_is_a_total_over_the_stream(
    stream: tuple[str, list[tuple[bytes, str, str, str]]],
) -> None:
    name, expected = stream
    first_shard = min(shard for _, shard, _, _ in expected)
    with fn_api_pipeline() as pipeline:
        records = read_in_one_pane(
            pipeline,
            ReadFromKinesis(name, max_records=5, idle_timeout=IDLE, poll_interval=FAST_POLL),
        )
        # The shards are read in ListShards order, each call returning all of a shard's records.
        assert_that(
            records | "KeepFields" >> beam.Map(lambda r: (r.data, r.partition_key)),
            equal_to([(data, key) for data, shard, _, key in expected if shard == first_shard][:5]),
        )


def test_checkpoint_resume_neither_rereads_nor_skips(
    stream: tuple[str, list[tuple[bytes, str, str, str]]],
) -> None:
    name, expected = stream
    first_shard = min(shard for _, shard, _, _ in expected)
    in_first_shard = [(data, seq) for data, shard, seq, _ in expected if shard == first_shard]
    read_fn = ReadStreamFn(
        idle_timeout=timedelta(seconds=0.5), max_records=None, poll_interval=FAST_POLL
    )
    read_fn.setup()
    tracker = ThreadsafeRestrictionTracker(StreamTracker(StreamRestriction(start=HORIZON)))
    estimator = ManualWatermarkEstimator(None)
    outputs = read_fn.process(
        KinesisStream(name), tracker=RestrictionTrackerView(tracker), watermark_estimator=estimator
    )
    first = [next(outputs).value for _ in range(7)]
    # What the runner does to checkpoint: split at the current position.
    split = tracker.try_split(0)
    assert split is not None
    _, residual = split
    first.extend(output.value for output in outputs)
    assert residual.position(first_shard).after_sequence == first[-1].sequence_number
    assert residual.records_read == 7

    # A new bundle resumes the residual, with the same client.
    rest, final, resumed_estimator = drive(
        read_fn._client, residual, idle_timeout=timedelta(seconds=0.5), stream=name
    )
    assert final.finished
    assert [(r.data, r.sequence_number) for r in first] == in_first_shard[:7]
    assert sorted((r.data, r.shard_id, r.sequence_number) for r in first + rest) == sorted(
        (data, shard, seq) for data, shard, seq, _ in expected
    )
    assert len(first + rest) == RECORD_COUNT
    # The other shard was not polled before the checkpoint: it held the watermark.
    assert estimator.current_watermark() is None
    assert resumed_estimator.current_watermark() is not None


def _split_and_merge_stream() -> FakeKinesis:
    """s0, p1 and p2 with records; the first GetRecords splits s0 and merges p1 and p2.

    Both reshards happen at that one call, whichever shard it reads, so the
    sequence numbers do not depend on the order the runner reads in.
    """
    fake = FakeKinesis(batch=2)
    for shard_id, count in (("s0", 3), ("p1", 2), ("p2", 3)):
        fake.add_shard(shard_id)
        fake.put(shard_id, count)

    def reshard(fake: FakeKinesis, shard_id: str, calls: int) -> None:
        if sum(fake.calls.values()) == 1:
            _reshard_split_and_merge(fake)

    fake.hooks.append(reshard)
    return fake


def _reshard_split_and_merge(fake: FakeKinesis) -> None:
    fake.put("s0", 2)
    fake.split("s0", ("s1", "s2"))
    fake.put("p1", 1)
    fake.put("p2", 1)
    fake.merge("p1", "p2", "c")
    for shard_id, count in (("s1", 3), ("s2", 3), ("c", 4)):
        fake.put(shard_id, count)
        fake.close(shard_id)


def test_pipeline_with_coordination_table_reads_a_split_and_a_merge_exactly_once(
    monkeypatch: pytest.MonkeyPatch, fast_calls: None, coordination_table: str
) -> None:
    fake = _split_and_merge_stream()
    twin = _split_and_merge_stream()
    _reshard_split_and_merge(twin)
    monkeypatch.setattr(kinesis_api, "kinesis_client", lambda: fake)
    with fn_api_pipeline() as pipeline:
        records = read_in_one_pane(
            pipeline,
            ReadKinesisRecords("s", poll_interval=FAST_POLL, coordination_table=coordination_table),
        )
        assert_that(
            records | "KeepFields" >> beam.Map(lambda r: (r.data, r.shard_id, r.sequence_number)),
            equal_to(
                [(f"{shard}-{seq}".encode(), shard, seq) for shard, seq in twin.all_records()]
            ),
        )
    assert sorted(fake.reads) == sorted(twin.all_records())
    assert len(fake.reads) == 3 + 2 + 3 + 2 + 3 + 3 + 1 + 1 + 4
    assert_lineage_order(fake.reads, fake)
    table = table_keys(coordination_table)
    assert table.pop(claimed_key("s", "c")) in ("p1", "p2")
    assert table == {drained_key("s", s): None for s in ("s0", "s1", "s2", "p1", "p2", "c")}
