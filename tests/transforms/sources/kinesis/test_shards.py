"""Tests of `transforms.sources.kinesis.shards`: the shard graph and restriction arithmetic."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tests.fixtures.kinesis import BASE_ARRIVAL
from tests.test_layers import FORBIDDEN_IN_DOMAIN, ROOT, offending
from tests.transforms.sources.kinesis.support import (
    FRESH,
    HORIZON,
    MERGE,
    NOW,
    SPLIT,
    held_positions,
    shard_ids,
)
from transforms.sources.kinesis import (
    AT_TIMESTAMP,
    LATEST,
    TRIM_HORIZON,
    ShardInfo,
    ShardPosition,
    StartingPosition,
    StreamRestriction,
)
from transforms.sources.kinesis.shards import (
    after_adoption,
    after_drain,
    after_listing,
    after_record,
    children_of,
    readable_shards,
)


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
    assert sorted(shard_ids(readable_shards(shards, drained))) == sorted(expected)


def test_readable_shards_orders_parents_before_children() -> None:
    graph = [
        ShardInfo("x1", parent_id="x0"),
        ShardInfo("x0", ending_sequence_number="3"),
        ShardInfo("y"),
        ShardInfo("z", parent_id="gone"),
    ]
    assert shard_ids(readable_shards(graph, drained={"x0"})) == ["y", "z", "x1"]


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


def test_first_listing_adopts_the_readable_shards_at_the_initial_position() -> None:
    listing = [*SPLIT, ShardInfo("q", parent_id="expired")]
    restriction = after_listing(FRESH, listing, NOW)
    assert held_positions(restriction) == [("p", TRIM_HORIZON, None), ("q", TRIM_HORIZON, None)]
    assert restriction.listed
    assert restriction.quiet_since == NOW
    assert restriction.drained == frozenset()


def test_listing_adopts_children_once_all_parents_are_drained() -> None:
    restriction = after_listing(StreamRestriction(start=HORIZON), MERGE, NOW)
    assert held_positions(restriction) == [("p1", TRIM_HORIZON, None), ("p2", TRIM_HORIZON, None)]
    restriction = after_listing(after_drain(restriction, "p1"), MERGE, NOW + 1)
    assert held_positions(restriction) == [("p2", TRIM_HORIZON, None)]
    assert restriction.drained == {"p1"}
    restriction = after_listing(after_drain(restriction, "p2"), MERGE, NOW + 2)
    assert held_positions(restriction) == [("c", TRIM_HORIZON, None)]
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
    assert held_positions(restriction) == [("s0", TRIM_HORIZON, None), ("s1", TRIM_HORIZON, "42")]
    assert (restriction.records_read, restriction.quiet_since) == (1, NOW + 3)


def test_children_of_lists_split_and_merge_children_in_listing_order() -> None:
    listing = [*SPLIT, *MERGE]
    assert shard_ids(children_of(listing, "p")) == ["a", "b"]
    assert shard_ids(children_of(listing, "p2")) == ["c"]
    assert children_of(listing, "c") == []


def test_adoption_appends_children_from_their_start_and_forgets_unlisted_drained() -> None:
    held = StreamRestriction(
        start=StartingPosition(kind=LATEST),
        shards=(ShardPosition("q", after_sequence="7"),),
        drained=frozenset({"p", "gone"}),
        listed=True,
    )
    adopted = after_adoption(held, ["a", "b"], SPLIT)
    assert held_positions(adopted) == [
        ("q", TRIM_HORIZON, "7"),
        *[(c, TRIM_HORIZON, None) for c in "ab"],
    ]
    assert adopted.drained == {"p"}
    at = StartingPosition(AT_TIMESTAMP, BASE_ARRIVAL)
    assert after_adoption(replace(held, start=at), ["c"], MERGE).shards[-1] == ShardPosition(
        "c", at
    )


def test_the_shard_state_is_pure() -> None:
    path = ROOT / "transforms/sources/kinesis/shards.py"
    assert offending([path], FORBIDDEN_IN_DOMAIN) == {}
    assert offending([path], {"transforms"}) == {}
