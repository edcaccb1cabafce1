"""Tests of `transforms.sources.kinesis`: the shard graph, the restriction, and reads.

moto's shard split is not faithful, so resharding is tested on the fake shard
graph of `tests.fixtures.kinesis` (splits, merges and expiry while the reader
runs); plain reads, positions and checkpoints run against a real moto server
(`moto_server` fixture), bounded with `idle_timeout` so the FnApiRunner ends.
The coordinated mode (one restriction per shard) keeps its coordination
table on the same moto server's DynamoDB and reads the fake shard graph: the
tests drive the split restrictions one after the other, in both drain orders
of a merge, and in two threads that drain a merge's parents at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
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

from tests.fixtures.kinesis import BASE_ARRIVAL, FakeKinesis
from tests.fixtures.moto_server import MotoServer
from transforms.domain.events import SourceRecord
from transforms.infrastructure import ConfigurationError
from transforms.sources import kinesis
from transforms.sources.kinesis import (
    AT_TIMESTAMP,
    LATEST,
    TRIM_HORIZON,
    KinesisRecord,
    KinesisStream,
    ReadFromKinesis,
    ReadKinesisRecords,
    ShardCoordinator,
    ShardInfo,
    ShardPosition,
    StartingPosition,
    StreamRestriction,
    StreamRestrictionProvider,
    StreamTracker,
    _ReadStreamFn,
    after_adoption,
    after_drain,
    after_listing,
    after_record,
    children_of,
    claimed_key,
    drained_key,
    list_shards,
    readable_shards,
)

RECORD_COUNT = 200
FAST_POLL = timedelta(seconds=0.2)
IDLE = timedelta(seconds=1)
NOW = 1_800_000_000.0


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


HORIZON = StartingPosition()
FRESH = StreamRestriction(start=HORIZON)


def _held(restriction: StreamRestriction) -> list[tuple[str, str, str | None]]:
    return [(p.shard_id, p.start.kind, p.after_sequence) for p in restriction.shards]


def test_first_listing_adopts_the_readable_shards_at_the_initial_position() -> None:
    listing = [*SPLIT, ShardInfo("q", parent_id="expired")]
    restriction = after_listing(FRESH, listing, NOW)
    assert _held(restriction) == [("p", TRIM_HORIZON, None), ("q", TRIM_HORIZON, None)]
    assert restriction.listed
    assert restriction.quiet_since == NOW
    assert restriction.drained == frozenset()


def test_listing_adopts_children_once_all_parents_are_drained() -> None:
    restriction = after_listing(StreamRestriction(start=HORIZON), MERGE, NOW)
    assert _held(restriction) == [("p1", TRIM_HORIZON, None), ("p2", TRIM_HORIZON, None)]
    restriction = after_listing(after_drain(restriction, "p1"), MERGE, NOW + 1)
    assert _held(restriction) == [("p2", TRIM_HORIZON, None)]
    assert restriction.drained == {"p1"}
    restriction = after_listing(after_drain(restriction, "p2"), MERGE, NOW + 2)
    assert _held(restriction) == [("c", TRIM_HORIZON, None)]
    assert restriction.quiet_since == NOW


def test_listing_never_adopts_a_held_or_drained_shard_twice() -> None:
    restriction = after_listing(FRESH, SPLIT, NOW)
    again = after_listing(restriction, SPLIT, NOW + 1)
    assert again == restriction
    children = after_listing(after_drain(again, "p"), SPLIT, NOW + 2)
    assert after_listing(children, SPLIT, NOW + 3) == children


def test_listing_forgets_drained_shards_past_retention() -> None:
    restriction = after_listing(after_drain(after_listing(FRESH, SPLIT, NOW), "p"), SPLIT, NOW)
    assert restriction.drained == {"p"}
    without_parent = [ShardInfo("a", parent_id="p"), ShardInfo("b", parent_id="p")]
    assert after_listing(restriction, without_parent, NOW).drained == frozenset()


def test_shards_listed_while_running_start_at_trim_horizon() -> None:
    start = StartingPosition(kind=LATEST)
    first = after_listing(StreamRestriction(start=start), [ShardInfo("s0")], NOW)
    assert first.shards == (
        ShardPosition("s0", StartingPosition(AT_TIMESTAMP, datetime.fromtimestamp(NOW, UTC))),
    )
    later = after_listing(first, [ShardInfo("s0"), ShardInfo("s1")], NOW + 5)
    assert later.shards[1] == ShardPosition("s1", HORIZON)


def test_latest_skips_closed_shards_of_the_first_listing() -> None:
    listing = [*SPLIT, *MERGE, ShardInfo("x", parent_id="gone")]
    restriction = after_listing(
        StreamRestriction(start=StartingPosition(kind=LATEST)), listing, NOW
    )
    at_start = StartingPosition(AT_TIMESTAMP, datetime.fromtimestamp(NOW, UTC))
    assert restriction.shards == tuple(ShardPosition(s, at_start) for s in ("x", "a", "b", "c"))
    assert restriction.drained == {"p", "p1", "p2"}


def test_at_timestamp_applies_to_shards_listed_later() -> None:
    start = StartingPosition(kind=AT_TIMESTAMP, timestamp=BASE_ARRIVAL)
    restriction = after_listing(StreamRestriction(start=start), [ShardInfo("s0")], NOW)
    later = after_listing(restriction, [ShardInfo("s0"), ShardInfo("s1")], NOW)
    assert [p.start for p in later.shards] == [start, start]


def test_a_record_moves_its_shard_and_the_bounds() -> None:
    restriction = after_listing(FRESH, [ShardInfo("s0"), ShardInfo("s1")], NOW)
    restriction = after_record(restriction, "s1", "42", NOW + 3)
    assert _held(restriction) == [("s0", TRIM_HORIZON, None), ("s1", TRIM_HORIZON, "42")]
    assert (restriction.records_read, restriction.quiet_since) == (1, NOW + 3)


HELD = StreamRestriction(start=HORIZON, shards=(ShardPosition("s0"),), listed=True, quiet_since=NOW)


def test_checkpoint_resumes_from_the_state_claimed() -> None:
    tracker = StreamTracker(HELD)
    one = after_record(HELD, "s0", "10", NOW)
    two = after_record(one, "s0", "11", NOW)
    assert tracker.try_claim(one)
    assert tracker.try_claim(two)
    split = tracker.try_split(0)
    assert split == (replace(two, finished=True), two)
    assert not tracker.try_claim(after_record(two, "s0", "12", NOW))
    tracker.check_done()
    assert tracker.current_restriction() == replace(two, finished=True)
    assert two.position("s0").after_sequence == "11"


def test_checkpoint_before_any_claim_keeps_the_start() -> None:
    split = StreamTracker(FRESH).try_split(0)
    assert split is not None
    assert split[1] == FRESH


def test_finished_claim_ends_the_restriction() -> None:
    tracker = StreamTracker(HELD)
    assert tracker.try_claim(replace(HELD, finished=True))
    tracker.check_done()
    assert tracker.is_bounded()
    assert not tracker.try_claim(HELD)
    assert tracker.try_split(0) is None


@pytest.mark.parametrize("fraction", [0.5, 0.25, 1.0], ids=str)
def test_restriction_is_not_divisible(fraction: float) -> None:
    assert StreamTracker(HELD).try_split(fraction) is None


def test_unfinished_restriction_is_not_done() -> None:
    tracker = StreamTracker(HELD)
    assert not tracker.is_bounded()
    with pytest.raises(ValueError, match="neither ended nor checkpointed"):
        tracker.check_done()


def test_finished_restriction_claims_nothing() -> None:
    tracker = StreamTracker(replace(HELD, finished=True))
    assert not tracker.try_claim(HELD)
    tracker.check_done()


def test_list_shards_follows_next_token() -> None:
    fake = FakeKinesis(page_size=2)
    for shard_id in ("s0", "s1", "s2", "s3", "s4"):
        fake.add_shard(shard_id)
    assert [shard.shard_id for shard in list_shards(fake, "s")] == ["s0", "s1", "s2", "s3", "s4"]


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


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake clients have no rate limit: do not wait 0.2 s between calls on a shard."""
    monkeypatch.setattr(kinesis, "MIN_CALL_INTERVAL", timedelta(seconds=0.005))


def _drive(
    client: Any,
    restriction: StreamRestriction = FRESH,
    idle_timeout: timedelta | None = None,
    max_records: int | None = None,
    stream: str = "s",
    coordinator: ShardCoordinator | None = None,
) -> tuple[list[KinesisRecord], StreamRestriction, ManualWatermarkEstimator]:
    """Runs the reading DoFn as a runner would: resumes each deferral until it ends.

    Returns the records in the order emitted, the final restriction and the
    watermark estimator (which, like the runner's, survives resumes). With a
    `coordinator`, the DoFn reads in coordinated mode through it.
    """
    read_fn = _ReadStreamFn(
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
        restriction, delay = deferred
        time.sleep(max(0.0, min(delay.micros / 1e6, 0.3)))
    raise AssertionError("the read did not end")


def _keys(records: list[KinesisRecord]) -> list[tuple[str, str]]:
    return [(record.shard_id, record.sequence_number) for record in records]


def _assert_lineage_order(order: list[tuple[str, str]], fake: FakeKinesis) -> None:
    """Each child's first record comes after the last record of each of its parents."""
    shards = [shard_id for shard_id, _ in order]
    for shard in fake.shards.values():
        for parent in shard.parents:
            if parent in shards and shard.shard_id in shards:
                last_of_parent = len(shards) - 1 - shards[::-1].index(parent)
                assert last_of_parent < shards.index(shard.shard_id), (parent, shard.shard_id)


def _split_after_first_call(
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


def test_split_while_running_reads_parent_then_both_children_once(fast_calls: None) -> None:
    fake = FakeKinesis(batch=3)
    fake.add_shard("s0")
    fake.put("s0", 4)
    fake.add_shard("t")
    fake.put("t", 2)
    fake.close("t")
    fake.hooks.append(_split_after_first_call("s0", ("s1", "s2")))
    records, restriction, _ = _drive(fake)
    assert sorted(_keys(records)) == sorted(fake.all_records())
    assert len(records) == 4 + 2 + 2 + 3 + 3
    assert _keys(records) == fake.reads
    _assert_lineage_order(fake.reads, fake)
    assert restriction.finished
    assert restriction.shards == ()
    assert [record.partition_key for record in records[:1]] == ["key-1"]


def test_merge_while_running_reads_the_child_after_both_parents(fast_calls: None) -> None:
    fake = FakeKinesis(batch=3)
    fake.add_shard("p1")
    fake.add_shard("p2")
    fake.put("p1", 2)
    fake.put("p2", 8)

    def merge(fake: FakeKinesis, shard_id: str, calls: int) -> None:
        if shard_id == "p1" and calls == 1:
            fake.merge("p1", "p2", "c")
            fake.put("c", 4)
            fake.close("c")

    fake.hooks.append(merge)
    records, _, _ = _drive(fake)
    assert sorted(_keys(records)) == sorted(fake.all_records())
    assert len(records) == 2 + 8 + 4
    # p1 drains first; c waits for p2, which takes three more calls.
    assert [shard for shard, _ in fake.reads] == ["p1"] * 2 + ["p2"] * 8 + ["c"] * 4
    _assert_lineage_order(_keys(records), fake)


def test_start_after_reshard_reads_parents_first(fast_calls: None) -> None:
    fake = FakeKinesis(batch=2, page_size=2)
    for shard_id in ("p", "m1", "m2"):
        fake.add_shard(shard_id)
        fake.put(shard_id, 3)
    fake.split("p", ("a", "b"))
    fake.merge("m1", "m2", "mc")
    fake.add_shard("g", parents=("a",))
    for shard_id in ("a", "b", "mc"):
        fake.put(shard_id, 2)
    fake.close("a")
    fake.put("g", 2)
    for shard_id in ("b", "mc", "g"):
        fake.close(shard_id)
    records, _, _ = _drive(fake)
    assert sorted(_keys(records)) == sorted(fake.all_records())
    assert len(records) == 3 * 3 + 3 * 2 + 2
    _assert_lineage_order(_keys(records), fake)


def test_parent_past_retention_counts_as_drained(fast_calls: None) -> None:
    fake = FakeKinesis()
    fake.add_shard("old")
    fake.put("old", 2)
    fake.split("old", ("a", "b"))
    fake.put("a", 2)
    fake.put("b", 1)
    fake.expire("old")
    for shard_id in ("a", "b"):
        fake.close(shard_id)
    records, _, _ = _drive(fake)
    assert sorted(_keys(records)) == sorted(fake.all_records())
    assert {shard for shard, _ in _keys(records)} == {"a", "b"}


def test_held_shard_past_retention_on_resume_counts_as_drained(fast_calls: None) -> None:
    fake = FakeKinesis()
    fake.add_shard("a", parents=("old",))
    fake.put("a", 2)
    fake.close("a")
    checkpoint = StreamRestriction(
        start=HORIZON,
        shards=(ShardPosition("old", after_sequence="000000"),),
        listed=True,
        quiet_since=NOW,
    )
    records, restriction, _ = _drive(fake, checkpoint)
    assert _keys(records) == [("a", "000001"), ("a", "000002")]
    assert restriction.finished


def test_latest_reads_only_records_arriving_after_the_start(fast_calls: None) -> None:
    fake = FakeKinesis()
    fake.add_shard("p")
    fake.put("p", 3)
    fake.split("p", ("a", "b"))
    fake.put("a", 2)
    fake.put("b", 1)
    new: list[tuple[str, str]] = []

    def put_new(fake: FakeKinesis, shard_id: str, calls: int) -> None:
        if shard_id == "a" and calls == 1:
            arrival = datetime.now(UTC) + timedelta(seconds=1)
            new.extend(("a", seq) for seq in fake.put("a", 2, arrival=arrival))
            fake.close("a")
            fake.close("b")

    fake.hooks.append(put_new)
    records, _, _ = _drive(fake, StreamRestriction(start=StartingPosition(kind=LATEST)))
    assert _keys(records) == new
    assert len(new) == 2
    assert "p" not in fake.calls


def test_chain_of_splits_while_running(fast_calls: None) -> None:
    fake = FakeKinesis(batch=2)
    fake.add_shard("g0")
    fake.put("g0", 3)

    def split_again(fake: FakeKinesis, shard_id: str, calls: int) -> None:
        if shard_id == "g0" and calls == 1:
            fake.split("g0", ("g1", "x1"))
            fake.put("g1", 3)
            fake.put("x1", 1)
            fake.close("x1")
        if shard_id == "g1" and calls == 1:
            fake.split("g1", ("g2", "x2"))
            for child in ("g2", "x2"):
                fake.put(child, 2)
                fake.close(child)

    fake.hooks.append(split_again)
    records, _, _ = _drive(fake)
    assert sorted(_keys(records)) == sorted(fake.all_records())
    assert len(records) == 3 + 3 + 1 + 2 + 2
    _assert_lineage_order(_keys(records), fake)
    assert _keys(records) == fake.reads


def test_max_records_is_a_total_across_shards(fast_calls: None) -> None:
    fake = FakeKinesis(batch=3)
    for shard_id in ("s0", "s1"):
        fake.add_shard(shard_id)
        fake.put(shard_id, 5)
    records, restriction, _ = _drive(fake, max_records=4)
    assert _keys(records) == [
        ("s0", "000001"),
        ("s0", "000002"),
        ("s0", "000003"),
        ("s1", "000006"),
    ]
    assert restriction.finished
    assert restriction.records_read == 4


def test_idle_timeout_ends_when_no_shard_has_new_records(fast_calls: None) -> None:
    fake = FakeKinesis(batch=10)
    for shard_id in ("s0", "s1"):
        fake.add_shard(shard_id)
        fake.put(shard_id, 2)
    started = time.monotonic()
    records, restriction, estimator = _drive(fake, idle_timeout=timedelta(seconds=0.5))
    elapsed = time.monotonic() - started
    assert sorted(_keys(records)) == sorted(fake.all_records())
    assert restriction.finished
    assert 0.5 <= elapsed < 5.0
    # Both shards caught up: the watermark follows now, not the old arrivals.
    watermark = estimator.current_watermark()
    assert watermark is not None
    assert watermark.to_utc_datetime(has_tz=True) > datetime.now(UTC) - timedelta(seconds=10)


def test_watermark_is_the_minimum_over_shards(fast_calls: None) -> None:
    fake = FakeKinesis(batch=1)
    for shard_id, count in (("s0", 3), ("s1", 1)):
        fake.add_shard(shard_id)
        fake.put(shard_id, count)
        fake.close(shard_id)
    estimator = ManualWatermarkEstimator(None)
    seen: list[timedelta | None] = []

    def watch(fake: FakeKinesis, shard_id: str, calls: int) -> None:
        mark = estimator.current_watermark()
        seen.append(None if mark is None else mark.to_utc_datetime(has_tz=True) - BASE_ARRIVAL)

    fake.hooks.append(watch)
    read_fn = _ReadStreamFn(idle_timeout=None, max_records=None, poll_interval=FAST_POLL)
    read_fn._client = fake
    tracker = ThreadsafeRestrictionTracker(StreamTracker(FRESH))
    outputs = read_fn.process(
        KinesisStream("s"), tracker=RestrictionTrackerView(tracker), watermark_estimator=estimator
    )
    assert len(list(outputs)) == 4
    # None until both shards are read; s1's record (+4 s) does not carry it
    # past s0's (+1 s); once s1 drains, s0 alone moves it.
    assert seen == [None, None, timedelta(seconds=1), timedelta(seconds=2)]
    assert estimator.current_watermark() == Timestamp.from_utc_datetime(
        BASE_ARRIVAL + timedelta(seconds=3)
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
    fake.hooks.append(_split_after_first_call("s0", ("s1", "s2"), more=3, per_child=4))
    monkeypatch.setattr(kinesis, "_kinesis_client", lambda: fake)
    with _pipeline() as pipeline:
        records = _read(pipeline, ReadFromKinesis("s", poll_interval=FAST_POLL))
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
    _assert_lineage_order(fake.reads, fake)


def test_max_records_is_a_total_over_the_stream(
    stream: tuple[str, list[tuple[bytes, str, str, str]]],
) -> None:
    name, expected = stream
    first_shard = min(shard for _, shard, _, _ in expected)
    with _pipeline() as pipeline:
        records = _read(
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
    read_fn = _ReadStreamFn(
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
    rest, final, resumed_estimator = _drive(
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


def test_source_record_of_kinesis_record() -> None:
    arrival = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    record = KinesisRecord(b"{}", "s", "shardId-000000000001", "49", "key", arrival)
    assert record.to_source_record() == SourceRecord(
        data=b"{}",
        source="kinesis:s/shardId-000000000001/49",
        arrival=arrival,
        partition_key="key",
    )


class _Throttled(Exception):
    """Stands in for ProvisionedThroughputExceededException."""


class _Expired(Exception):
    """Stands in for ExpiredIteratorException."""


class _NotFound(Exception):
    """Stands in for ResourceNotFoundException."""


class _ScriptedKinesis:
    """A scripted Kinesis client: each GetRecords answer is the next of `answers`.

    An answer is a response dict or an exception class to raise. Iterator
    requests are recorded so tests can check where reading resumed.
    """

    class exceptions:  # noqa: N801 - mirrors boto3's client.exceptions
        ProvisionedThroughputExceededException = _Throttled
        ExpiredIteratorException = _Expired
        ResourceNotFoundException = _NotFound

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


def _run_scripted(
    answers: list[dict[str, Any] | type[Exception]],
    restriction: StreamRestriction = HELD,
) -> tuple[list[Any], ThreadsafeRestrictionTracker, ManualWatermarkEstimator, _ScriptedKinesis]:
    """One process() call on a restriction holding shard s0 of a stream listing no shard."""
    client = _ScriptedKinesis(answers)
    read_fn = _ReadStreamFn(idle_timeout=None, max_records=None, poll_interval=FAST_POLL)
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


def test_closed_shard_read_to_its_end_leaves_the_restriction() -> None:
    outputs, tracker, estimator, _ = _run_scripted(
        [
            {"Records": _records("1", "2"), "NextShardIterator": "next", "MillisBehindLatest": 0},
            {"Records": _records("3"), "MillisBehindLatest": 0},
        ]
    )
    assert [output.value.sequence_number for output in outputs] == ["1", "2", "3"]
    assert outputs[0].value.partition_key == "k1"
    # The last shard drained and the stream lists no other: the read ends.
    final = tracker.current_restriction()
    assert (final.shards, final.records_read, final.finished) == ((), 3, True)
    tracker.check_done()
    assert estimator.current_watermark() == Timestamp.from_utc_datetime(
        ARRIVAL + timedelta(seconds=3)
    )


def test_throttling_backs_off_then_resumes() -> None:
    outputs, tracker, _, _ = _run_scripted(
        [{"Records": _records("1"), "NextShardIterator": "next"}, _Throttled]
    )
    assert [output.value.sequence_number for output in outputs] == ["1"]
    deferred = tracker.deferred_status()
    assert deferred is not None
    residual, delay = deferred
    assert residual.shards == (ShardPosition("s0", HORIZON, after_sequence="1"),)
    assert Duration.of(0.5) < delay <= Duration.of(1)
    tracker.check_done()


def test_throttled_shard_does_not_stop_the_others(fast_calls: None) -> None:
    held = replace(HELD, shards=(ShardPosition("s0"), ShardPosition("s1")))
    caught_up = {"NextShardIterator": "next", "MillisBehindLatest": 0}
    outputs, _, _, _ = _run_scripted(
        [
            _Throttled,  # s0
            {"Records": _records("1"), **caught_up},  # s1
            {"Records": _records("2"), **caught_up},  # s1 again while s0 backs off
            {"Records": [], **caught_up},  # s1
            {"Records": [], **caught_up},  # s1: both idle or backing off, checkpoint
        ],
        restriction=held,
    )
    assert [(o.value.shard_id, o.value.sequence_number) for o in outputs] == [
        ("s1", "1"),
        ("s1", "2"),
    ]


def test_expired_iterator_is_recreated_after_the_last_record() -> None:
    _, tracker, _, client = _run_scripted(
        [
            {"Records": _records("4"), "NextShardIterator": "next"},
            _Expired,
            {"Records": _records("5")},
        ],
        restriction=replace(HELD, shards=(ShardPosition("s0", after_sequence="3"),)),
    )
    assert [request.get("StartingSequenceNumber") for request in client.iterator_requests] == [
        "3",
        "4",
    ]
    assert {request["ShardIteratorType"] for request in client.iterator_requests} == {
        "AFTER_SEQUENCE_NUMBER"
    }
    assert tracker.current_restriction().records_read == 2


def test_at_timestamp_starts_the_iterator_at_that_time() -> None:
    start = StartingPosition(kind=AT_TIMESTAMP, timestamp=ARRIVAL)
    _, _, _, client = _run_scripted(
        [{"Records": []}], restriction=replace(HELD, shards=(ShardPosition("s0", start),))
    )
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
    outputs, tracker, estimator, _ = _run_scripted(
        [{"Records": [], "NextShardIterator": "next", "MillisBehindLatest": 0}]
    )
    assert outputs == []
    deferred = tracker.deferred_status()
    assert deferred is not None
    assert deferred[0] == HELD
    assert deferred[1] <= Duration.of(0.2)
    watermark = estimator.current_watermark()
    assert watermark is not None
    assert watermark.to_utc_datetime(has_tz=True) >= before - timedelta(seconds=6)


def test_runner_resumes_throttled_and_idle_shard_until_it_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caught_up = {"NextShardIterator": "next", "MillisBehindLatest": 0}
    client = _ScriptedKinesis(
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
    # No bound: only the last shard draining ends this read, after two runner resumes.
    with _pipeline() as pipeline:
        records = _read(pipeline, ReadFromKinesis("s", poll_interval=FAST_POLL))
        assert_that(
            records | "KeepFields" >> beam.Map(lambda r: (r.source, r.partition_key)),
            equal_to([(f"kinesis:s/s0/{seq}", f"k{seq}") for seq in "1234"]),
        )
    assert [request.get("StartingSequenceNumber") for request in client.iterator_requests] == [
        None,
        "2",
        "3",
    ]


def test_children_of_lists_split_and_merge_children_in_listing_order() -> None:
    listing = [*SPLIT, *MERGE]
    assert _ids(children_of(listing, "p")) == ["a", "b"]
    assert _ids(children_of(listing, "p2")) == ["c"]
    assert children_of(listing, "c") == []


def test_adoption_appends_children_from_their_start_and_forgets_unlisted_drained() -> None:
    held = StreamRestriction(
        start=StartingPosition(kind=LATEST),
        shards=(ShardPosition("q", after_sequence="7"),),
        drained=frozenset({"p", "gone"}),
        listed=True,
    )
    adopted = after_adoption(held, ["a", "b"], SPLIT)
    assert _held(adopted) == [("q", TRIM_HORIZON, "7"), *[(c, TRIM_HORIZON, None) for c in "ab"]]
    assert adopted.drained == {"p"}
    at = StartingPosition(AT_TIMESTAMP, BASE_ARRIVAL)
    assert after_adoption(replace(held, start=at), ["c"], MERGE).shards[-1] == ShardPosition(
        "c", at
    )


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


def _coordinator(table: str) -> ShardCoordinator:
    return ShardCoordinator(table, boto3.session.Session().client("dynamodb"))


def _table_keys(table: str) -> dict[str, str | None]:
    """Every item of the coordination table: its key and who claimed it, if anyone."""
    items = boto3.session.Session().client("dynamodb").scan(TableName=table)["Items"]
    return {
        item["shardKey"]["S"]: item["claimedBy"]["S"] if "claimedBy" in item else None
        for item in items
    }


def test_claim_goes_to_the_first_claimer_and_again_to_it_only(coordination_table: str) -> None:
    coordinator = _coordinator(coordination_table)
    coordinator.check()
    assert not coordinator.is_drained("s", "p1")
    coordinator.mark_drained("s", "p1")
    coordinator.mark_drained("s", "p1")
    assert coordinator.is_drained("s", "p1")
    assert coordinator.claim("s", "c", by="p1")
    assert not coordinator.claim("s", "c", by="p2")
    assert coordinator.claim("s", "c", by="p1")
    assert _table_keys(coordination_table) == {
        drained_key("s", "p1"): None,
        claimed_key("s", "c"): "p1",
    }


def test_setup_rejects_a_missing_or_mis_keyed_coordination_table(moto_server: MotoServer) -> None:
    missing = _ReadStreamFn(None, None, FAST_POLL, coordination_table="no-such-table")
    with pytest.raises(ConfigurationError, match="'no-such-table' does not exist"):
        missing.setup()
    client = boto3.session.Session().client("dynamodb")
    name = f"wrong-key-{uuid.uuid4().hex[:10]}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigurationError, match=r"expected \(shardKey HASH\)"):
        _ReadStreamFn(None, None, FAST_POLL, coordination_table=name).setup()


def _split_restrictions(
    fake: FakeKinesis,
    monkeypatch: pytest.MonkeyPatch,
    table: str | None,
    start: StartingPosition = HORIZON,
) -> list[StreamRestriction]:
    monkeypatch.setattr(kinesis, "_kinesis_client", lambda: fake)
    element = KinesisStream("s", start, table)
    provider = StreamRestrictionProvider()
    return list(provider.split(element, provider.initial_restriction(element)))


def test_initial_split_yields_one_restriction_per_readable_shard(
    monkeypatch: pytest.MonkeyPatch, coordination_table: str
) -> None:
    fake = FakeKinesis(page_size=2)
    for shard_id in ("p", "m1", "m2", "q"):
        fake.add_shard(shard_id)
    fake.split("p", ("a", "b"))
    fake.merge("m1", "m2", "mc")
    fake.add_shard("r", parents=("past-retention",))
    restrictions = _split_restrictions(fake, monkeypatch, coordination_table)
    assert [_held(r) for r in restrictions] == [
        [(shard_id, TRIM_HORIZON, None)] for shard_id in ("p", "m1", "m2", "q", "r")
    ]
    assert all(r.listed and not r.finished for r in restrictions)
    # Without a table the one restriction is left whole: it lists the shards itself.
    assert _split_restrictions(fake, monkeypatch, None) == [FRESH]


def test_initial_split_with_nothing_readable_is_one_finished_restriction(
    monkeypatch: pytest.MonkeyPatch, coordination_table: str
) -> None:
    fake = FakeKinesis()
    fake.add_shard("p")
    fake.close("p")
    _coordinator(coordination_table).mark_drained("s", "p")
    [restriction] = _split_restrictions(fake, monkeypatch, coordination_table)
    assert restriction.finished
    assert restriction.shards == ()


def _drive_split(
    fake: FakeKinesis, monkeypatch: pytest.MonkeyPatch, table: str
) -> list[list[KinesisRecord]]:
    """Splits the initial restriction and drives each part in turn, as one thread would."""
    return [
        _drive(fake, restriction, coordinator=_coordinator(table))[0]
        for restriction in _split_restrictions(fake, monkeypatch, table)
    ]


def test_split_while_running_children_are_adopted_by_the_parents_restriction(
    fast_calls: None, monkeypatch: pytest.MonkeyPatch, coordination_table: str
) -> None:
    fake = FakeKinesis(batch=3)
    fake.add_shard("s0")
    fake.put("s0", 4)
    fake.add_shard("t")
    fake.put("t", 2)
    fake.close("t")
    fake.hooks.append(_split_after_first_call("s0", ("s1", "s2")))
    per_restriction = _drive_split(fake, monkeypatch, coordination_table)
    assert [sorted({r.shard_id for r in records}) for records in per_restriction] == [
        ["s0", "s1", "s2"],
        ["t"],
    ]
    records = [record for records in per_restriction for record in records]
    assert sorted(_keys(records)) == sorted(fake.all_records())
    assert len(records) == len(fake.all_records()) == 4 + 2 + 2 + 3 + 3
    assert _keys(records) == fake.reads
    _assert_lineage_order(fake.reads, fake)
    assert set(_table_keys(coordination_table)) == {
        drained_key("s", shard_id) for shard_id in ("s0", "s1", "s2", "t")
    }


def _merge_on_first_call(lock: threading.Lock | None = None) -> Any:
    """A hook: after the first GetRecords on p1 or p2, put 1 more on each, merge them into c."""

    def hook(fake: FakeKinesis, shard_id: str, calls: int) -> None:
        if shard_id in ("p1", "p2") and calls == 1:
            with lock or threading.Lock():
                if "c" not in fake.shards:
                    fake.put("p1", 1)
                    fake.put("p2", 1)
                    fake.merge("p1", "p2", "c")
                    fake.put("c", 4)
                    fake.close("c")

    return hook


def _merge_stream() -> FakeKinesis:
    fake = FakeKinesis(batch=10)
    fake.add_shard("p1")
    fake.add_shard("p2")
    fake.put("p1", 2)
    fake.put("p2", 3)
    return fake


@pytest.mark.parametrize("last", ["p1", "p2"], ids=lambda last: f"{last}-drains-last")
def test_merge_child_is_adopted_once_by_the_parent_drained_last(
    last: str, fast_calls: None, monkeypatch: pytest.MonkeyPatch, coordination_table: str
) -> None:
    fake = _merge_stream()
    fake.hooks.append(_merge_on_first_call())
    restrictions = _split_restrictions(fake, monkeypatch, coordination_table)
    assert [_held(r) for r in restrictions] == [[(s, TRIM_HORIZON, None)] for s in ("p1", "p2")]
    if last == "p1":
        restrictions.reverse()
    per_restriction = [
        _drive(fake, r, coordinator=_coordinator(coordination_table))[0] for r in restrictions
    ]
    first = "p2" if last == "p1" else "p1"
    assert [sorted({r.shard_id for r in records}) for records in per_restriction] == [
        [first],
        sorted([last, "c"]),
    ]
    records = [record for records in per_restriction for record in records]
    assert sorted(_keys(records)) == sorted(fake.all_records())
    assert len(records) == 2 + 3 + 2 + 4
    assert [shard for shard, _ in fake.reads][-4:] == ["c"] * 4
    _assert_lineage_order(fake.reads, fake)
    assert _table_keys(coordination_table)[claimed_key("s", "c")] == last


@pytest.mark.parametrize("attempt", range(5))
def test_merge_child_is_adopted_once_when_both_parents_drain_at_once(
    attempt: int, fast_calls: None, monkeypatch: pytest.MonkeyPatch, coordination_table: str
) -> None:
    fake = _merge_stream()
    restrictions = _split_restrictions(fake, monkeypatch, coordination_table)
    # Merged after the split, before either reader's first call, which then
    # returns all of its parent and finds it closed: both drain on that call.
    fake.merge("p1", "p2", "c")
    fake.put("c", 4)
    fake.close("c")
    both_drained = threading.Barrier(2, timeout=10)

    def drain_together(fake: FakeKinesis, shard_id: str, calls: int) -> None:
        if shard_id in ("p1", "p2"):
            both_drained.wait()

    fake.hooks.append(drain_together)
    results: dict[str, list[KinesisRecord]] = {}

    def read(restriction: StreamRestriction) -> None:
        coordinator = _coordinator(coordination_table)
        results[restriction.shards[0].shard_id] = _drive(
            fake, restriction, coordinator=coordinator
        )[0]

    threads = [threading.Thread(target=read, args=(r,)) for r in restrictions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["p1", "p2"]
    adopters = [
        parent for parent, records in results.items() if "c" in {r.shard_id for r in records}
    ]
    assert len(adopters) == 1
    assert _table_keys(coordination_table)[claimed_key("s", "c")] == adopters[0]
    records = [record for records in results.values() for record in records]
    assert sorted(_keys(records)) == sorted(fake.all_records())
    assert len(records) == 2 + 3 + 4
    _assert_lineage_order(fake.reads, fake)


def test_restart_after_reshard_skips_shards_the_table_marks_drained(
    fast_calls: None, monkeypatch: pytest.MonkeyPatch, coordination_table: str
) -> None:
    fake = FakeKinesis(batch=10)
    for shard_id in ("p", "m1", "m2", "n1", "n2"):
        fake.add_shard(shard_id)
        fake.put(shard_id, 2)
    fake.split("p", ("a", "b"))
    fake.merge("m1", "m2", "mc")
    fake.merge("n1", "n2", "nc")
    for shard_id in ("a", "b", "mc", "nc"):
        fake.put(shard_id, 1)
        fake.close(shard_id)
    # A previous run drained p, both of n, and m1 but not m2 (it stopped first).
    previous = _coordinator(coordination_table)
    for shard_id in ("p", "m1", "n1", "n2"):
        previous.mark_drained("s", shard_id)
    restrictions = _split_restrictions(fake, monkeypatch, coordination_table)
    assert [_held(r) for r in restrictions] == [
        [(shard_id, TRIM_HORIZON, None)] for shard_id in ("m2", "a", "b", "nc")
    ]
    per_restriction = [
        _drive(fake, r, coordinator=_coordinator(coordination_table))[0] for r in restrictions
    ]
    assert [[r.shard_id for r in records] for records in per_restriction] == [
        ["m2", "m2", "mc"],
        ["a"],
        ["b"],
        ["nc"],
    ]
    assert not {"p", "m1", "n1", "n2"} & set(fake.calls)
    assert _table_keys(coordination_table)[claimed_key("s", "mc")] == "m2"


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
    monkeypatch.setattr(kinesis, "_kinesis_client", lambda: fake)
    with _pipeline() as pipeline:
        records = _read(
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
    _assert_lineage_order(fake.reads, fake)
    table = _table_keys(coordination_table)
    assert table.pop(claimed_key("s", "c")) in ("p1", "p2")
    assert table == {drained_key("s", s): None for s in ("s0", "s1", "s2", "p1", "p2", "c")}
