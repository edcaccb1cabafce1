"""Tests of `transforms.sources.kinesis.coordination`, on moto's DynamoDB.

The split restrictions read the fake shard graph and are driven one after the
other, in both drain orders of a merge, and in two threads that drain a
merge's parents at once.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import boto3
import pytest

from tests.fixtures.kinesis import FakeKinesis
from tests.fixtures.moto_server import MotoServer
from tests.transforms.sources.kinesis.support import (
    FAST_POLL,
    assert_lineage_order,
    drive,
    drive_split,
    held_positions,
    keys_of,
    new_coordinator,
    split_after_first_call,
    split_restrictions,
    table_keys,
)
from transforms.infrastructure import ConfigurationError
from transforms.sources.kinesis import (
    TRIM_HORIZON,
    KinesisRecord,
    StreamRestriction,
    claimed_key,
    drained_key,
)
from transforms.sources.kinesis.reader import ReadStreamFn


def test_claim_goes_to_the_first_claimer_and_again_to_it_only(coordination_table: str) -> None:
    coordinator = new_coordinator(coordination_table)
    coordinator.check()
    assert not coordinator.is_drained("s", "p1")
    coordinator.mark_drained("s", "p1")
    coordinator.mark_drained("s", "p1")
    assert coordinator.is_drained("s", "p1")
    assert coordinator.claim("s", "c", by="p1")
    assert not coordinator.claim("s", "c", by="p2")
    assert coordinator.claim("s", "c", by="p1")
    assert table_keys(coordination_table) == {
        drained_key("s", "p1"): None,
        claimed_key("s", "c"): "p1",
    }


def test_setup_rejects_a_missing_or_mis_keyed_coordination_table(moto_server: MotoServer) -> None:
    missing = ReadStreamFn(None, None, FAST_POLL, coordination_table="no-such-table")
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
    with pytest.raises(ConfigurationError) as raised:
        ReadStreamFn(None, None, FAST_POLL, coordination_table=name).setup()
    assert str(raised.value) == (
        f"the DynamoDB table {name!r} has key (leaseKey HASH); the job needs (shardKey HASH): "
        "give a table with that key"
    )


def test_split_while_running_children_are_adopted_by_the_parents_restriction(
    fast_calls: None, monkeypatch: pytest.MonkeyPatch, coordination_table: str
) -> None:
    fake = FakeKinesis(batch=3)
    fake.add_shard("s0")
    fake.put("s0", 4)
    fake.add_shard("t")
    fake.put("t", 2)
    fake.close("t")
    fake.hooks.append(split_after_first_call("s0", ("s1", "s2")))
    per_restriction = drive_split(fake, monkeypatch, coordination_table)
    assert [sorted({r.shard_id for r in records}) for records in per_restriction] == [
        ["s0", "s1", "s2"],
        ["t"],
    ]
    records = [record for records in per_restriction for record in records]
    assert sorted(keys_of(records)) == sorted(fake.all_records())
    assert len(records) == len(fake.all_records()) == 4 + 2 + 2 + 3 + 3
    assert keys_of(records) == fake.reads
    assert_lineage_order(fake.reads, fake)
    assert set(table_keys(coordination_table)) == {
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
    restrictions = split_restrictions(fake, monkeypatch, coordination_table)
    assert [held_positions(r) for r in restrictions] == [
        [(s, TRIM_HORIZON, None)] for s in ("p1", "p2")
    ]
    if last == "p1":
        restrictions.reverse()
    per_restriction = [
        drive(fake, r, coordinator=new_coordinator(coordination_table))[0] for r in restrictions
    ]
    first = "p2" if last == "p1" else "p1"
    assert [sorted({r.shard_id for r in records}) for records in per_restriction] == [
        [first],
        sorted([last, "c"]),
    ]
    records = [record for records in per_restriction for record in records]
    assert sorted(keys_of(records)) == sorted(fake.all_records())
    assert len(records) == 2 + 3 + 2 + 4
    assert [shard for shard, _ in fake.reads][-4:] == ["c"] * 4
    assert_lineage_order(fake.reads, fake)
    assert table_keys(coordination_table)[claimed_key("s", "c")] == last


@pytest.mark.parametrize("attempt", range(5))
def test_merge_child_is_adopted_once_when_both_parents_drain_at_once(
    attempt: int, fast_calls: None, monkeypatch: pytest.MonkeyPatch, coordination_table: str
) -> None:
    fake = _merge_stream()
    restrictions = split_restrictions(fake, monkeypatch, coordination_table)
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
        coordinator = new_coordinator(coordination_table)
        results[restriction.shards[0].shard_id] = drive(fake, restriction, coordinator=coordinator)[
            0
        ]

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
    assert table_keys(coordination_table)[claimed_key("s", "c")] == adopters[0]
    records = [record for records in results.values() for record in records]
    assert sorted(keys_of(records)) == sorted(fake.all_records())
    assert len(records) == 2 + 3 + 4
    assert_lineage_order(fake.reads, fake)


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
    previous = new_coordinator(coordination_table)
    for shard_id in ("p", "m1", "n1", "n2"):
        previous.mark_drained("s", shard_id)
    restrictions = split_restrictions(fake, monkeypatch, coordination_table)
    assert [held_positions(r) for r in restrictions] == [
        [(shard_id, TRIM_HORIZON, None)] for shard_id in ("m2", "a", "b", "nc")
    ]
    per_restriction = [
        drive(fake, r, coordinator=new_coordinator(coordination_table))[0] for r in restrictions
    ]
    assert [[r.shard_id for r in records] for records in per_restriction] == [
        ["m2", "m2", "mc"],
        ["a"],
        ["b"],
        ["nc"],
    ]
    assert not {"p", "m1", "n1", "n2"} & set(fake.calls)
    assert table_keys(coordination_table)[claimed_key("s", "mc")] == "m2"
