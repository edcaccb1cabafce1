"""Shared helpers of the Kinesis source tests: restrictions, fakes, a runner-like driver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
import boto3
import pytest
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.testing import test_pipeline
from apache_beam.transforms import trigger, window

from tests.fixtures.kinesis import FakeKinesis
from transforms.sources.kinesis import (
    KinesisRecord,
    KinesisStream,
    ShardCoordinator,
    ShardInfo,
    ShardPosition,
    StartingPosition,
    StreamRestriction,
)
from transforms.sources.kinesis import client as kinesis_api
from transforms.sources.kinesis.reader import ReadStreamFn
from transforms.sources.kinesis.tracker import StreamRestrictionProvider, StreamTracker

RECORD_COUNT = 200
FAST_POLL = timedelta(seconds=0.2)
IDLE = timedelta(seconds=1)
NOW = 1_800_000_000.0


def shard_ids(shards: list[ShardInfo]) -> list[str]:
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


HORIZON = StartingPosition()
FRESH = StreamRestriction(start=HORIZON)


def held_positions(restriction: StreamRestriction) -> list[tuple[str, str, str | None]]:
    return [(p.shard_id, p.start.kind, p.after_sequence) for p in restriction.shards]


HELD = StreamRestriction(start=HORIZON, shards=(ShardPosition("s0"),), listed=True, quiet_since=NOW)


def fn_api_pipeline() -> test_pipeline.TestPipeline:
    return test_pipeline.TestPipeline(runner=FnApiRunner())


def read_in_one_pane(pipeline: beam.Pipeline, read: beam.PTransform) -> beam.PCollection:
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


def drive(
    client: Any,
    restriction: StreamRestriction = FRESH,
    idle_timeout: timedelta | None = None,
    max_records: int | None = None,
    stream: str = "s",
    coordinator: ShardCoordinator | None = None,
) -> tuple[list[KinesisRecord], StreamRestriction, ManualWatermarkEstimator]:
    """Runs the reading DoFn as a runner would: resumes each deferral until it ends.

    A deferral is resumed at once, not after its delay: waiting is the
    runner's job, and the reader carries nothing from one call to the next
    but its restriction. Returns the records in the order emitted, the final
    restriction and the watermark estimator (which, like the runner's,
    survives resumes). With a `coordinator`, the DoFn reads in coordinated
    mode through it.
    """
    read_fn = ReadStreamFn(
        idle_timeout=idle_timeout,
        max_records=max_records,
        poll_interval=FAST_POLL,
        coordination_table=None if coordinator is None else coordinator.table,
    )
    read_fn._client = client
    read_fn._coordinator = coordinator
    estimator = ManualWatermarkEstimator(None)
    records: list[KinesisRecord] = []
    for _ in range(50):
        tracker = ThreadsafeRestrictionTracker(StreamTracker(restriction))
        outputs = read_fn.process(
            KinesisStream(stream, restriction.start, read_fn._coordination_table),
            tracker=RestrictionTrackerView(tracker),
            watermark_estimator=estimator,
        )
        records.extend(output.value for output in outputs)
        deferred = tracker.deferred_status()
        if deferred is None:
            tracker.check_done()
            return records, tracker.current_restriction(), estimator
        restriction, _ = deferred
    raise AssertionError("the read did not end")


def keys_of(records: list[KinesisRecord]) -> list[tuple[str, str]]:
    return [(record.shard_id, record.sequence_number) for record in records]


def assert_lineage_order(order: list[tuple[str, str]], fake: FakeKinesis) -> None:
    """Each child's first record comes after the last record of each of its parents."""
    shards = [shard_id for shard_id, _ in order]
    for shard in fake.shards.values():
        for parent in shard.parents:
            if parent in shards and shard.shard_id in shards:
                last_of_parent = len(shards) - 1 - shards[::-1].index(parent)
                assert last_of_parent < shards.index(shard.shard_id), (parent, shard.shard_id)


def split_after_first_call(
    parent: str, children: tuple[str, str], more: int = 2, per_child: int = 3
) -> Any:
    """A hook: after the first GetRecords on `parent`, put `more` records and split it."""

    def hook(fake: FakeKinesis, shard_id: str, calls: int) -> None:
        if shard_id == parent and calls == 1:
            fake.put(parent, more)
            fake.split(parent, children)
            for child in children:
                fake.put(child, per_child)
                fake.close(child)

    return hook


class Throttled(Exception):
    """Stands in for ProvisionedThroughputExceededException."""


class Expired(Exception):
    """Stands in for ExpiredIteratorException."""


class NotFound(Exception):
    """Stands in for ResourceNotFoundException."""


class ScriptedKinesis:
    """A scripted Kinesis client: each GetRecords answer is the next of `answers`.

    An answer is a response dict or an exception class to raise. Iterator
    requests are recorded so tests can check where reading resumed.
    """

    class exceptions:  # noqa: N801 - mirrors boto3's client.exceptions
        ProvisionedThroughputExceededException = Throttled
        ExpiredIteratorException = Expired
        ResourceNotFoundException = NotFound

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


def scripted_records(*sequence_numbers: str) -> list[dict[str, Any]]:
    return [
        {
            "SequenceNumber": seq,
            "Data": f"d{seq}".encode(),
            "PartitionKey": f"k{seq}",
            "ApproximateArrivalTimestamp": ARRIVAL + timedelta(seconds=int(seq)),
        }
        for seq in sequence_numbers
    ]


def run_scripted(
    answers: list[dict[str, Any] | type[Exception]],
    restriction: StreamRestriction = HELD,
) -> tuple[list[Any], ThreadsafeRestrictionTracker, ManualWatermarkEstimator, ScriptedKinesis]:
    """One process() call on a restriction holding shard s0 of a stream listing no shard."""
    client = ScriptedKinesis(answers)
    read_fn = ReadStreamFn(idle_timeout=None, max_records=None, poll_interval=FAST_POLL)
    read_fn._client = client
    tracker = ThreadsafeRestrictionTracker(StreamTracker(restriction))
    estimator = ManualWatermarkEstimator(None)
    outputs = list(
        read_fn.process(
            KinesisStream("s", restriction.start),
            tracker=RestrictionTrackerView(tracker),
            watermark_estimator=estimator,
        )
    )
    return outputs, tracker, estimator, client


def new_coordinator(table: str) -> ShardCoordinator:
    return ShardCoordinator(table, boto3.session.Session().client("dynamodb"))


def table_keys(table: str) -> dict[str, str | None]:
    """Every item of the coordination table: its key and who claimed it, if anyone."""
    items = boto3.session.Session().client("dynamodb").scan(TableName=table)["Items"]
    return {
        item["shardKey"]["S"]: item["claimedBy"]["S"] if "claimedBy" in item else None
        for item in items
    }


def split_restrictions(
    fake: FakeKinesis,
    monkeypatch: pytest.MonkeyPatch,
    table: str | None,
    start: StartingPosition = HORIZON,
) -> list[StreamRestriction]:
    monkeypatch.setattr(kinesis_api, "kinesis_client", lambda: fake)
    element = KinesisStream("s", start, table)
    provider = StreamRestrictionProvider()
    return list(provider.split(element, provider.initial_restriction(element)))


def drive_split(
    fake: FakeKinesis, monkeypatch: pytest.MonkeyPatch, table: str
) -> list[list[KinesisRecord]]:
    """Splits the initial restriction and drives each part in turn, as one thread would."""
    return [
        drive(fake, restriction, coordinator=new_coordinator(table))[0]
        for restriction in split_restrictions(fake, monkeypatch, table)
    ]
