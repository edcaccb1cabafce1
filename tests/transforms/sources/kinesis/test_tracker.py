"""Tests of `transforms.sources.kinesis.tracker`: the restriction tracker and provider."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.fixtures.kinesis import FakeKinesis
from tests.transforms.sources.kinesis.support import (
    FRESH,
    HELD,
    NOW,
    held_positions,
    new_coordinator,
    split_restrictions,
)
from transforms.sources.kinesis import (
    TRIM_HORIZON,
)
from transforms.sources.kinesis.shards import (
    after_record,
)
from transforms.sources.kinesis.tracker import StreamTracker


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


def test_initial_split_yields_one_restriction_per_readable_shard(
    monkeypatch: pytest.MonkeyPatch, coordination_table: str
) -> None:
    fake = FakeKinesis(page_size=2)
    for shard_id in ("p", "m1", "m2", "q"):
        fake.add_shard(shard_id)
    fake.split("p", ("a", "b"))
    fake.merge("m1", "m2", "mc")
    fake.add_shard("r", parents=("past-retention",))
    restrictions = split_restrictions(fake, monkeypatch, coordination_table)
    assert [held_positions(r) for r in restrictions] == [
        [(shard_id, TRIM_HORIZON, None)] for shard_id in ("p", "m1", "m2", "q", "r")
    ]
    assert all(r.listed and not r.finished for r in restrictions)
    # Without a table the one restriction is left whole: it lists the shards itself.
    assert split_restrictions(fake, monkeypatch, None) == [FRESH]


def test_initial_split_with_nothing_readable_is_one_finished_restriction(
    monkeypatch: pytest.MonkeyPatch, coordination_table: str
) -> None:
    fake = FakeKinesis()
    fake.add_shard("p")
    fake.close("p")
    new_coordinator(coordination_table).mark_drained("s", "p")
    [restriction] = split_restrictions(fake, monkeypatch, coordination_table)
    assert restriction.finished
    assert restriction.shards == ()
