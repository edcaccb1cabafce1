"""Tests of `transforms.kinesis`: the shard graph, the tracker, and reads from moto.

moto's shard split is not faithful, so resharding is tested on fake shard
graphs; reads run against a real moto server (`moto_server` fixture) and are
bounded with `idle_timeout` so the FnApiRunner finishes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
import boto3
import pytest
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration, Timestamp

from tests.fixtures.moto_server import MotoServer
from transforms import kinesis
from transforms.events import SourceRecord
from transforms.kinesis import (
    END_OF_SHARD,
    KinesisRecord,
    KinesisShard,
    ReadFromKinesis,
    ReadKinesisRecords,
    ShardInfo,
    ShardRestriction,
    ShardTracker,
    StartingPosition,
    _ListShardsFn,
    _ReadShardFn,
    readable_shards,
)

RECORD_COUNT = 200
FAST_POLL = timedelta(seconds=0.2)
IDLE = timedelta(seconds=1)


def _ids(shards: list[ShardInfo]) -> list[str]:
    return [shard.shard_id for shard in shards]


SPLIT = [
    ShardInfo("p", ending_sequence_number="90"),
    ShardInfo("a", parent_id="p"),
    ShardInfo("b", parent_id="p"),
]
MERGE = [
    ShardInfo("p1", ending_sequence_number="50"),
    ShardInfo("p2", ending_sequence_number="60"),
    ShardInfo("c", parent_id="p1", adjacent_parent_id="p2"),
]


@pytest.mark.parametrize(
    ("shards", "drained", "expected"),
    [
        pytest.param([ShardInfo("s0"), ShardInfo("s1")], set(), ["s0", "s1"], id="no-resharding"),
        pytest.param(SPLIT, set(), ["p"], id="split-parent-first"),
        pytest.param(SPLIT, {"p"}, ["a", "b"], id="split-children-after-parent"),
        pytest.param(MERGE, set(), ["p1", "p2"], id="merge-parents-first"),
        pytest.param(MERGE, {"p1"}, ["p2"], id="merge-waits-for-both-parents"),
        pytest.param(MERGE, {"p1", "p2"}, ["c"], id="merge-child-after-both"),
        pytest.param(
            [ShardInfo("a", parent_id="gone"), ShardInfo("b", parent_id="a")],
            set(),
            ["a"],
            id="parent-past-retention-counts-as-drained",
        ),
        pytest.param(
            [
                ShardInfo("c", parent_id="b"),
                ShardInfo("b", parent_id="a", ending_sequence_number="9"),
                ShardInfo("a", ending_sequence_number="5"),
            ],
            set(),
            ["a"],
            id="grandchild-waits-for-chain",
        ),
        pytest.param(
            [ShardInfo("x1", parent_id="x0"), ShardInfo("x0"), ShardInfo("y")],
            {"x0"},
            ["y", "x1"],
            id="any-order-in-parents-first-out",
        ),
    ],
)
def test_readable_shards(shards: list[ShardInfo], drained: set[str], expected: list[str]) -> None:
    assert sorted(_ids(readable_shards(shards, drained))) == sorted(expected)


def test_readable_shards_orders_parents_before_children() -> None:
    graph = [
        ShardInfo("x1", parent_id="x0"),
        ShardInfo("x0", ending_sequence_number="3"),
        ShardInfo("y"),
        ShardInfo("z", parent_id="gone"),
    ]
    assert _ids(readable_shards(graph, drained={"x0"})) == ["y", "z", "x1"]


def test_shard_info_from_list_shards() -> None:
    shard = ShardInfo.from_api(
        {
            "ShardId": "shardId-000000000002",
            "ParentShardId": "shardId-000000000000",
            "AdjacentParentShardId": "shardId-000000000001",
            "SequenceNumberRange": {"StartingSequenceNumber": "1", "EndingSequenceNumber": "9"},
        }
    )
    assert shard == ShardInfo(
        "shardId-000000000002", "shardId-000000000000", "shardId-000000000001", "9"
    )
    assert shard.closed
    assert shard.parents == ("shardId-000000000000", "shardId-000000000001")
    assert not ShardInfo.from_api({"ShardId": "s", "SequenceNumberRange": {}}).closed


RESTRICTION = ShardRestriction(shard_id="s0", start=StartingPosition())


def test_checkpoint_resumes_after_last_claimed() -> None:
    tracker = ShardTracker(RESTRICTION)
    assert tracker.try_claim("10")
    assert tracker.try_claim("11")
    split = tracker.try_split(0)
    assert split is not None
    primary, residual = split
    assert primary == ShardRestriction("s0", StartingPosition(), after_sequence=None, finished=True)
    assert residual == ShardRestriction("s0", StartingPosition(), after_sequence="11")
    assert not tracker.try_claim("12")
    tracker.check_done()
    assert tracker.current_restriction() == primary

    resumed = ShardTracker(residual)
    assert resumed.last_claimed == "11"
    assert resumed.try_claim("12")
    assert resumed.try_split(0) == (
        ShardRestriction("s0", StartingPosition(), after_sequence="11", finished=True),
        ShardRestriction("s0", StartingPosition(), after_sequence="12"),
    )


def test_checkpoint_before_any_claim_keeps_the_start() -> None:
    split = ShardTracker(RESTRICTION).try_split(0)
    assert split is not None
    assert split[1] == RESTRICTION


def test_end_of_shard_ends_the_restriction() -> None:
    tracker = ShardTracker(RESTRICTION)
    assert tracker.try_claim("7")
    assert tracker.try_claim(END_OF_SHARD)
    tracker.check_done()
    assert tracker.is_bounded()
    assert tracker.current_restriction() == ShardRestriction(
        "s0", StartingPosition(), after_sequence="7", finished=True
    )
    assert not tracker.try_claim("8")
    assert tracker.try_split(0) is None


@pytest.mark.parametrize("fraction", [0.5, 0.25, 1.0], ids=str)
def test_shard_is_not_divisible(fraction: float) -> None:
    tracker = ShardTracker(RESTRICTION)
    assert tracker.try_claim("1")
    assert tracker.try_split(fraction) is None


def test_unfinished_restriction_is_not_done() -> None:
    tracker = ShardTracker(RESTRICTION)
    assert tracker.try_claim("1")
    assert not tracker.is_bounded()
    with pytest.raises(ValueError, match="neither ended nor checkpointed"):
        tracker.check_done()


def test_finished_restriction_claims_nothing() -> None:
    tracker = ShardTracker(ShardRestriction("s0", StartingPosition(), "5", finished=True))
    assert not tracker.try_claim("6")
    tracker.check_done()


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
        pytest.param({"poll_interval": timedelta(seconds=0.01)}, id="poll-too-fast"),
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ReadKinesisRecords("stream", **kwargs)


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


def _pipeline() -> test_pipeline.TestPipeline:
    return test_pipeline.TestPipeline(runner=FnApiRunner())


def _read(pipeline: beam.Pipeline, read: beam.PTransform) -> beam.PCollection:
    """The read, in a global window that fires once, when the bounded test read ends.

    The source is unbounded, so `assert_that` needs a non-default trigger.
    """
    return (
        pipeline
        | "ReadKinesis" >> read
        | "FireAtEnd"
        >> beam.WindowInto(
            window.GlobalWindows(),
            trigger=trigger.AfterWatermark(),
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
        )
    )


def test_reads_every_record_once_with_its_position(
    stream: tuple[str, list[tuple[bytes, str, str, str]]],
) -> None:
    name, expected = stream
    with _pipeline() as pipeline:
        records = _read(
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
    with _pipeline() as pipeline:
        records = _read(pipeline, ReadFromKinesis(arn, idle_timeout=IDLE, poll_interval=FAST_POLL))
        assert_that(
            records | "KeepFields" >> beam.Map(lambda r: (r.data, r.source, r.arrival is not None)),
            equal_to(
                [(data, f"kinesis:{arn}/{shard}/{seq}", True) for data, shard, seq, _ in expected]
            ),
        )


def test_max_records_bounds_each_shard(
    stream: tuple[str, list[tuple[bytes, str, str, str]]],
) -> None:
    name, expected = stream
    first_per_shard: dict[str, list[bytes]] = {}
    for data, shard, _, _ in expected:
        first_per_shard.setdefault(shard, []).append(data)
    with _pipeline() as pipeline:
        records = _read(
            pipeline,
            ReadFromKinesis(name, max_records=5, idle_timeout=IDLE, poll_interval=FAST_POLL),
        )
        assert_that(
            records | "KeepData" >> beam.Map(lambda r: r.data),
            equal_to([data for datas in first_per_shard.values() for data in datas[:5]]),
        )


def _values(outputs: Iterator[Any]) -> list[KinesisRecord]:
    return [output.value for output in outputs]


def test_checkpoint_resume_neither_rereads_nor_skips(
    stream: tuple[str, list[tuple[bytes, str, str, str]]],
) -> None:
    name, expected = stream
    shard_id = expected[0][1]
    in_shard = [(data, seq) for data, shard, seq, _ in expected if shard == shard_id]
    read_fn = _ReadShardFn(
        idle_timeout=timedelta(seconds=0.5), max_records=None, poll_interval=FAST_POLL
    )
    read_fn.setup()
    shard = KinesisShard(stream=name, shard_id=shard_id)
    tracker = ThreadsafeRestrictionTracker(
        ShardTracker(ShardRestriction(shard_id=shard_id, start=StartingPosition()))
    )
    estimator = ManualWatermarkEstimator(None)
    outputs = read_fn.process(
        shard, tracker=RestrictionTrackerView(tracker), watermark_estimator=estimator
    )
    first = [next(outputs).value for _ in range(7)]
    # What the runner does to checkpoint: split at the current position.
    split = tracker.try_split(0)
    assert split is not None
    _, residual = split
    first.extend(_values(outputs))
    assert residual.after_sequence == first[-1].sequence_number

    resumed = ThreadsafeRestrictionTracker(ShardTracker(residual))
    rest = _values(
        read_fn.process(
            shard,
            tracker=RestrictionTrackerView(resumed),
            watermark_estimator=ManualWatermarkEstimator(None),
        )
    )
    resumed.check_done()
    assert [(r.data, r.sequence_number) for r in first] == in_shard[:7]
    assert [(r.data, r.sequence_number) for r in first + rest] == in_shard
    assert estimator.current_watermark() is not None


def test_source_record_of_kinesis_record() -> None:
    arrival = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    record = KinesisRecord(b"{}", "s", "shardId-000000000001", "49", "key", arrival)
    assert record.to_source_record() == SourceRecord(
        data=b"{}", source="kinesis:s/shardId-000000000001/49", arrival=arrival
    )


class _Throttled(Exception):
    pass


class _Expired(Exception):
    pass


class _FakeKinesis:
    """A scripted Kinesis client: each GetRecords answer is the next of `answers`.

    An answer is a response dict or an exception class to raise. Iterator
    requests are recorded so tests can check where reading resumed.
    """

    class exceptions:  # noqa: N801 - mirrors boto3's client.exceptions
        ProvisionedThroughputExceededException = _Throttled
        ExpiredIteratorException = _Expired

    def __init__(self, answers: list[dict[str, Any] | type[Exception]]) -> None:
        self._answers = list(answers)
        self.iterator_requests: list[dict[str, Any]] = []
        self.shards: list[dict[str, Any]] = []

    def list_shards(self, **request: Any) -> dict[str, Any]:
        return {"Shards": self.shards}

    def get_shard_iterator(self, **request: Any) -> dict[str, str]:
        self.iterator_requests.append(request)
        return {"ShardIterator": f"it-{len(self.iterator_requests)}"}

    def get_records(self, **request: Any) -> dict[str, Any]:
        assert request["Limit"] <= 10_000
        answer = self._answers.pop(0)
        if isinstance(answer, type):
            raise answer()
        return answer


ARRIVAL = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _records(*sequence_numbers: str) -> list[dict[str, Any]]:
    return [
        {
            "SequenceNumber": seq,
            "Data": f"d{seq}".encode(),
            "PartitionKey": f"k{seq}",
            "ApproximateArrivalTimestamp": ARRIVAL + timedelta(seconds=int(seq)),
        }
        for seq in sequence_numbers
    ]


def _run_fake(
    answers: list[dict[str, Any] | type[Exception]],
    restriction: ShardRestriction = RESTRICTION,
    idle_timeout: timedelta | None = None,
) -> tuple[list[Any], ThreadsafeRestrictionTracker, ManualWatermarkEstimator, _FakeKinesis]:
    client = _FakeKinesis(answers)
    read_fn = _ReadShardFn(idle_timeout=idle_timeout, max_records=None, poll_interval=FAST_POLL)
    read_fn._client = client
    tracker = ThreadsafeRestrictionTracker(ShardTracker(restriction))
    estimator = ManualWatermarkEstimator(None)
    outputs = list(
        read_fn.process(
            KinesisShard("s", restriction.shard_id),
            tracker=RestrictionTrackerView(tracker),
            watermark_estimator=estimator,
        )
    )
    return outputs, tracker, estimator, client


def test_closed_shard_read_to_its_end_ends_the_restriction() -> None:
    outputs, tracker, estimator, _ = _run_fake(
        [
            {"Records": _records("1", "2"), "NextShardIterator": "next", "MillisBehindLatest": 0},
            {"Records": _records("3"), "MillisBehindLatest": 0},
        ]
    )
    assert [output.value.sequence_number for output in outputs] == ["1", "2", "3"]
    assert outputs[0].value.partition_key == "k1"
    assert tracker.current_restriction() == ShardRestriction(
        "s0", StartingPosition(), after_sequence="3", finished=True
    )
    tracker.check_done()
    assert estimator.current_watermark() == Timestamp.from_utc_datetime(
        ARRIVAL + timedelta(seconds=3)
    )


def test_throttling_checkpoints_and_resumes_later() -> None:
    outputs, tracker, _, _ = _run_fake(
        [{"Records": _records("1"), "NextShardIterator": "next"}, _Throttled]
    )
    assert [output.value.sequence_number for output in outputs] == ["1"]
    deferred = tracker.deferred_status()
    assert deferred is not None
    residual, delay = deferred
    assert residual == ShardRestriction("s0", StartingPosition(), after_sequence="1")
    assert Duration.of(0) < delay <= Duration.of(1)
    tracker.check_done()


def test_expired_iterator_is_recreated_after_the_last_record() -> None:
    _, tracker, _, client = _run_fake(
        [
            {"Records": _records("4"), "NextShardIterator": "next"},
            _Expired,
            {"Records": _records("5")},
        ],
        restriction=ShardRestriction("s0", StartingPosition(), after_sequence="3"),
    )
    assert [request.get("StartingSequenceNumber") for request in client.iterator_requests] == [
        "3",
        "4",
    ]
    assert {request["ShardIteratorType"] for request in client.iterator_requests} == {
        "AFTER_SEQUENCE_NUMBER"
    }
    assert tracker.current_restriction().after_sequence == "5"


def test_at_timestamp_starts_the_iterator_at_that_time() -> None:
    start = StartingPosition(kind="AT_TIMESTAMP", timestamp=ARRIVAL)
    _, _, _, client = _run_fake([{"Records": []}], restriction=ShardRestriction("s0", start))
    assert client.iterator_requests == [
        {
            "StreamName": "s",
            "ShardId": "s0",
            "ShardIteratorType": "AT_TIMESTAMP",
            "Timestamp": ARRIVAL,
        }
    ]


def test_idle_caught_up_shard_advances_its_watermark_and_polls_again() -> None:
    before = datetime.now(UTC)
    outputs, tracker, estimator, _ = _run_fake(
        [{"Records": [], "NextShardIterator": "next", "MillisBehindLatest": 0}]
    )
    assert outputs == []
    deferred = tracker.deferred_status()
    assert deferred is not None
    assert deferred[0] == RESTRICTION
    assert deferred[1] <= Duration.of(0.2)
    watermark = estimator.current_watermark()
    assert watermark is not None
    assert watermark.to_utc_datetime(has_tz=True) >= before - timedelta(seconds=6)


def test_idle_timeout_ends_a_quiet_shard() -> None:
    quiet = {"Records": [], "NextShardIterator": "next", "MillisBehindLatest": 0}
    outputs, tracker, _, _ = _run_fake([quiet] * 20, idle_timeout=timedelta(seconds=0.3))
    assert outputs == []
    tracker.check_done()


def test_runner_resumes_throttled_and_idle_shard_until_it_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caught_up = {"NextShardIterator": "next", "MillisBehindLatest": 0}
    client = _FakeKinesis(
        [
            {"Records": _records("1", "2"), **caught_up},
            _Throttled,
            {"Records": _records("3"), **caught_up},
            {"Records": [], **caught_up},
            {"Records": _records("4"), "MillisBehindLatest": 0},
        ]
    )
    client.shards = [
        {
            "ShardId": "s0",
            "SequenceNumberRange": {"StartingSequenceNumber": "1", "EndingSequenceNumber": "4"},
        }
    ]
    monkeypatch.setattr(kinesis, "_kinesis_client", lambda: client)
    # No idle_timeout: only the shard closing ends this read, after two runner resumes.
    with _pipeline() as pipeline:
        records = _read(pipeline, ReadFromKinesis("s", poll_interval=FAST_POLL))
        assert_that(
            records | "KeepSources" >> beam.Map(lambda r: r.source),
            equal_to([f"kinesis:s/s0/{seq}" for seq in "1234"]),
        )
    assert [request.get("StartingSequenceNumber") for request in client.iterator_requests] == [
        None,
        "2",
        "3",
    ]


def test_list_shards_emits_readable_shards_and_warns_about_waiting_children(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _FakeKinesis([])
    client.shards = [
        {"ShardId": "p", "SequenceNumberRange": {"EndingSequenceNumber": "9"}},
        {"ShardId": "a", "ParentShardId": "p"},
        {"ShardId": "b", "ParentShardId": "p"},
        {"ShardId": "q", "ParentShardId": "expired"},
    ]
    list_fn = _ListShardsFn("s", StartingPosition(kind="LATEST"))
    list_fn._client = client
    with caplog.at_level(logging.WARNING, logger=kinesis.__name__):
        shards = list(list_fn.process(b""))
    latest = StartingPosition(kind="LATEST")
    assert shards == [KinesisShard("s", "p", latest), KinesisShard("s", "q", latest)]
    assert [record.getMessage() for record in caplog.records] == [
        "Stream s: shards a, b wait for undrained parents and are not read"
    ]
