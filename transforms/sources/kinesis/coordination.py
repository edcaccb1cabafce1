"""The optional coordination table: how per-shard restrictions hand on a reshard.

A DynamoDB table with key `shardKey` HASH, like the KCL's lease table,
holding `drained(<stream>/<shard>)` and `claimed(<stream>/<child>)` items
(see `ShardCoordinator`). `coordinated_start` applies the first listing with
the table's drained marks; `adopted_children` decides which children of a
just drained shard its reader adopts. The package docstring tells why the
restrictions talk through a table and not through the graph.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import botocore.exceptions

from transforms.infrastructure import (
    DEFAULT_BACKOFF,
    call_with_retries,
    check_table_key,
    error_code,
)
from transforms.sources.kinesis.shards import (
    ShardInfo,
    StreamRestriction,
    after_listing,
    children_of,
)

#: The coordination table's key: one item per fact, named by `drained_key`
#: or `claimed_key`.
COORDINATION_KEY_SCHEMA = (("shardKey", "HASH"),)


def drained_key(stream: str, shard_id: str) -> str:
    """The coordination table's key telling that `shard_id` was read to its end."""
    return f"drained({stream}/{shard_id})"


def claimed_key(stream: str, shard_id: str) -> str:
    """The coordination table's key telling which reader adopted the merge child `shard_id`."""
    return f"claimed({stream}/{shard_id})"


class ShardCoordinator:
    """The coordination table (key `shardKey` HASH), like the KCL's lease table.

    It holds two kinds of items, each written once and never changed:
    `drained(<stream>/<shard>)` once a reader has read the shard to its end,
    and `claimed(<stream>/<child>)` with `claimedBy` (the parent whose reader
    adopted the merge child). Reads are strongly consistent; every call is
    retried per `transforms.infrastructure.DEFAULT_BACKOFF`.
    """

    def __init__(self, table: str, client: Any) -> None:
        self.table = table
        self.client = client
        self._rng = random.Random()

    def check(self) -> None:
        """Raise `ConfigurationError` unless the table exists with key `shardKey` HASH."""
        check_table_key(self.table, COORDINATION_KEY_SCHEMA, self.client)

    def _conditional_put(self, item: dict[str, Any], **condition: Any) -> bool:
        try:
            call_with_retries(
                lambda: self.client.put_item(TableName=self.table, Item=item, **condition),
                DEFAULT_BACKOFF,
                self._rng,
            )
        except botocore.exceptions.ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def mark_drained(self, stream: str, shard_id: str) -> None:
        """Record that `shard_id` is read to its end; recording it again changes nothing."""
        self._conditional_put(
            {"shardKey": {"S": drained_key(stream, shard_id)}},
            ConditionExpression="attribute_not_exists(shardKey)",
        )

    def is_drained(self, stream: str, shard_id: str) -> bool:
        response = call_with_retries(
            lambda: self.client.get_item(
                TableName=self.table,
                Key={"shardKey": {"S": drained_key(stream, shard_id)}},
                ConsistentRead=True,
            ),
            DEFAULT_BACKOFF,
            self._rng,
        )
        return "Item" in response

    def claim(self, stream: str, child: str, by: str) -> bool:
        """True if the reader that drained `by` owns `child`: it claimed it now or before.

        Only the first claim wins; the same claimer winning again makes a
        retried bundle (which drains `by` again) adopt the child again rather
        than lose it.
        """
        return self._conditional_put(
            {"shardKey": {"S": claimed_key(stream, child)}, "claimedBy": {"S": by}},
            ConditionExpression="attribute_not_exists(shardKey) OR claimedBy = :by",
            ExpressionAttributeValues={":by": {"S": by}},
        )


def coordinated_start(
    restriction: StreamRestriction,
    stream: str,
    listing: Sequence[ShardInfo],
    coordinator: ShardCoordinator,
    now: float,
) -> StreamRestriction:
    """The first listing applied, with the shards the table marks drained counted as drained.

    So on a restart after a reshard the drained parents are not read again
    and their children are readable at start; only closed shards are looked up.
    """
    marked = frozenset(
        shard.shard_id
        for shard in listing
        if shard.closed and coordinator.is_drained(stream, shard.shard_id)
    )
    return after_listing(replace(restriction, drained=restriction.drained | marked), listing, now)


def adopted_children(
    coordinator: ShardCoordinator, stream: str, shard_id: str, listing: Sequence[ShardInfo]
) -> list[str]:
    """The children of the just drained `shard_id` that its reader must read next.

    A split child is its parent's. A merge child goes to whichever parent's
    reader drains last: mark this parent drained, then read the other's
    mark (a parent no longer listed has nothing left: drained); if both are
    drained, the conditional claim decides, so when both readers see both
    marks only one adopts the child. Whichever reader writes its mark
    second sees the first one's, so the child is never left unadopted.
    """
    coordinator.mark_drained(stream, shard_id)
    listed = {shard.shard_id for shard in listing}
    adopted = []
    for child in children_of(listing, shard_id):
        others = [parent for parent in child.parents if parent != shard_id]
        if all(
            other not in listed or coordinator.is_drained(stream, other) for other in others
        ) and (not others or coordinator.claim(stream, child.shard_id, by=shard_id)):
            adopted.append(child.shard_id)
    return adopted
