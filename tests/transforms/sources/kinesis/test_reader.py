"""Tests of `transforms.sources.kinesis.reader`: the reading DoFn, driven as a runner would.

On the fake shard graph of `tests.fixtures.kinesis` (splits, merges and expiry
while the reader runs) and on scripted GetRecords answers.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import apache_beam as beam
import pytest
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.timestamp import Duration, Timestamp

from tests.fixtures.kinesis import BASE_ARRIVAL, FakeKinesis
from tests.transforms.sources.kinesis.support import (
    ARRIVAL,
    FAST_POLL,
    FRESH,
    HELD,
    HORIZON,
    NOW,
    Expired,
    ScriptedKinesis,
    Throttled,
    assert_lineage_order,
    drive,
    fn_api_pipeline,
    keys_of,
    read_in_one_pane,
    run_scripted,
    scripted_records,
    split_after_first_call,
)
from transforms.sources.kinesis import (
    AT_TIMESTAMP,
    LATEST,
    KinesisStream,
    ReadFromKinesis,
    ShardPosition,
    StartingPosition,
    StreamRestriction,
)
from transforms.sources.kinesis import client as kinesis_api
from transforms.sources.kinesis.reader import ReadStreamFn
from transforms.sources.kinesis.tracker import StreamTracker


def test_split_while_running_reads_parent_then_both_children_once(fast_calls: None) -> None:
    fake = FakeKinesis(batch=3)
    fake.add_shard("s0")
    fake.put("s0", 4)
    fake.add_shard("t")
    fake.put("t", 2)
    fake.close("t")
    fake.hooks.append(split_after_first_call("s0", ("s1", "s2")))
    records, restriction, _ = drive(fake)
    assert sorted(keys_of(records)) == sorted(fake.all_records())
    assert len(records) == 4 + 2 + 2 + 3 + 3
    assert keys_of(records) == fake.reads
    assert_lineage_order(fake.reads, fake)
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
    records, _, _ = drive(fake)
    assert sorted(keys_of(records)) == sorted(fake.all_records())
    assert len(records) == 2 + 8 + 4
    # p1 drains first; c waits for p2, which takes three more calls.
    assert [shard for shard, _ in fake.reads] == ["p1"] * 2 + ["p2"] * 8 + ["c"] * 4
    assert_lineage_order(keys_of(records), fake)


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
    records, _, _ = drive(fake)
    assert sorted(keys_of(records)) == sorted(fake.all_records())
    assert len(records) == 3 * 3 + 3 * 2 + 2
    assert_lineage_order(keys_of(records), fake)


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
    records, _, _ = drive(fake)
    assert sorted(keys_of(records)) == sorted(fake.all_records())
    assert {shard for shard, _ in keys_of(records)} == {"a", "b"}


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
    records, restriction, _ = drive(fake, checkpoint)
    assert keys_of(records) == [("a", "000001"), ("a", "000002")]
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
    records, _, _ = drive(fake, StreamRestriction(start=StartingPosition(kind=LATEST)))
    assert keys_of(records) == new
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
    records, _, _ = drive(fake)
    assert sorted(keys_of(records)) == sorted(fake.all_records())
    assert len(records) == 3 + 3 + 1 + 2 + 2
    assert_lineage_order(keys_of(records), fake)
    assert keys_of(records) == fake.reads


def test_max_records_is_a_total_across_shards(fast_calls: None) -> None:
    fake = FakeKinesis(batch=3)
    for shard_id in ("s0", "s1"):
        fake.add_shard(shard_id)
        fake.put(shard_id, 5)
    records, restriction, _ = drive(fake, max_records=4)
    assert keys_of(records) == [
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
    records, restriction, estimator = drive(fake, idle_timeout=timedelta(seconds=0.5))
    elapsed = time.monotonic() - started
    assert sorted(keys_of(records)) == sorted(fake.all_records())
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
    read_fn = ReadStreamFn(idle_timeout=None, max_records=None, poll_interval=FAST_POLL)
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


def test_closed_shard_read_to_its_end_leaves_the_restriction() -> None:
    outputs, tracker, estimator, _ = run_scripted(
        [
            {
                "Records": scripted_records("1", "2"),
                "NextShardIterator": "next",
                "MillisBehindLatest": 0,
            },
            {"Records": scripted_records("3"), "MillisBehindLatest": 0},
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
    outputs, tracker, _, _ = run_scripted(
        [{"Records": scripted_records("1"), "NextShardIterator": "next"}, Throttled]
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
    outputs, _, _, _ = run_scripted(
        [
            Throttled,  # s0
            {"Records": scripted_records("1"), **caught_up},  # s1
            {"Records": scripted_records("2"), **caught_up},  # s1 again while s0 backs off
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
    _, tracker, _, client = run_scripted(
        [
            {"Records": scripted_records("4"), "NextShardIterator": "next"},
            Expired,
            {"Records": scripted_records("5")},
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
    _, _, _, client = run_scripted(
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
    outputs, tracker, estimator, _ = run_scripted(
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
    client = ScriptedKinesis(
        [
            {"Records": scripted_records("1", "2"), **caught_up},
            Throttled,
            {"Records": scripted_records("3"), **caught_up},
            {"Records": [], **caught_up},
            {"Records": scripted_records("4"), "MillisBehindLatest": 0},
        ]
    )
    client.shards = [
        {
            "ShardId": "s0",
            "SequenceNumberRange": {"StartingSequenceNumber": "1", "EndingSequenceNumber": "4"},
        }
    ]
    monkeypatch.setattr(kinesis_api, "kinesis_client", lambda: client)
    # No bound: only the last shard draining ends this read, after two runner resumes.
    with fn_api_pipeline() as pipeline:
        records = read_in_one_pane(pipeline, ReadFromKinesis("s", poll_interval=FAST_POLL))
        assert_that(
            records | "KeepFields" >> beam.Map(lambda r: (r.source, r.partition_key)),
            equal_to([(f"kinesis:s/s0/{seq}", f"k{seq}") for seq in "1234"]),
        )
    assert [request.get("StartingSequenceNumber") for request in client.iterator_requests] == [
        None,
        "2",
        "3",
    ]
