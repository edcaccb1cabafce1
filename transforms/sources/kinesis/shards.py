"""The shard graph and the restriction arithmetic of the Kinesis source. Pure.

No Beam and no AWS call: `ShardInfo` is one node of the graph ListShards
describes, `readable_shards` the rule "a child is read only after all its
parents are drained", and `StreamRestriction` what is left to read of one
stream, moved to its next state by `after_listing`, `after_record`,
`after_drain` and `after_adoption`. The reader claims each of those states
through `transforms.sources.kinesis.tracker.StreamTracker`; see the package
docstring for the design.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

TRIM_HORIZON = "TRIM_HORIZON"
LATEST = "LATEST"
AT_TIMESTAMP = "AT_TIMESTAMP"
INITIAL_POSITIONS = (TRIM_HORIZON, LATEST, AT_TIMESTAMP)


@dataclass(frozen=True)
class ShardInfo:
    """One node of the shard graph, as ListShards describes it.

    A shard is closed (it will receive no more records) when ListShards gives
    it an ending sequence number.
    """

    shard_id: str
    parent_id: str | None = None
    adjacent_parent_id: str | None = None
    ending_sequence_number: str | None = None

    @property
    def closed(self) -> bool:
        return self.ending_sequence_number is not None

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent_id, self.adjacent_parent_id) if p is not None)

    @classmethod
    def from_api(cls, shard: Mapping[str, Any]) -> ShardInfo:
        """From one element of ListShards' `Shards`."""
        sequence_range = shard.get("SequenceNumberRange") or {}
        return cls(
            shard_id=shard["ShardId"],
            parent_id=shard.get("ParentShardId"),
            adjacent_parent_id=shard.get("AdjacentParentShardId"),
            ending_sequence_number=sequence_range.get("EndingSequenceNumber"),
        )


def readable_shards(shards: Iterable[ShardInfo], drained: Collection[str]) -> list[ShardInfo]:
    """The shards that may be read now, parents before children.

    A shard may be read when it is not drained yet and each of its parents is
    either drained or absent from `shards` (a parent past the retention period
    is no longer listed and has nothing left to read). So after a split both
    children wait for the parent, and after a merge the child waits for both
    parents. The result keeps the order of `shards`, which ListShards returns
    parents first; shards are ordered by dependency depth so that this holds
    for any input order.
    """
    by_id = {shard.shard_id: shard for shard in shards}
    readable = [
        shard
        for shard in by_id.values()
        if shard.shard_id not in drained
        and all(parent in drained or parent not in by_id for parent in shard.parents)
    ]
    return sorted(readable, key=lambda shard: _depth(shard, by_id))


def _depth(shard: ShardInfo, by_id: Mapping[str, ShardInfo]) -> int:
    seen: set[str] = set()
    depth = 0
    frontier = [shard]
    while frontier:
        next_frontier = []
        for node in frontier:
            for parent in node.parents:
                if parent in by_id and parent not in seen:
                    seen.add(parent)
                    next_frontier.append(by_id[parent])
        if next_frontier:
            depth += 1
        frontier = next_frontier
    return depth


@dataclass(frozen=True)
class StartingPosition:
    """Where a shard is read from when it has no position yet."""

    kind: str = TRIM_HORIZON
    timestamp: datetime | None = None


@dataclass(frozen=True)
class KinesisStream:
    """The element the reading DoFn splits: one stream, by name or ARN."""

    stream: str
    start: StartingPosition = StartingPosition()
    coordination_table: str | None = None


@dataclass(frozen=True)
class ShardPosition:
    """How far one shard has been read: after `after_sequence`, else from `start`."""

    shard_id: str
    start: StartingPosition = StartingPosition()
    after_sequence: str | None = None


@dataclass(frozen=True)
class StreamRestriction:
    """What is left to read of one stream.

    `shards` are the shards being read, each with its position, parents before
    children; `drained` the listed shards read to their end (or skipped by
    `LATEST`). `listed` tells whether the first listing happened (`start`
    applies to its shards). `records_read` and `quiet_since` (wall-clock epoch
    seconds of the last record claimed, or of the first listing) serve the
    test bounds. `finished` marks a restriction with nothing left to read: the
    stream ended, a test bound was reached, or the primary half of a
    checkpoint.
    """

    start: StartingPosition
    shards: tuple[ShardPosition, ...] = ()
    drained: frozenset[str] = frozenset()
    listed: bool = False
    records_read: int = 0
    quiet_since: float | None = None
    finished: bool = False

    def position(self, shard_id: str) -> ShardPosition:
        for position in self.shards:
            if position.shard_id == shard_id:
                return position
        raise KeyError(shard_id)


def after_listing(
    restriction: StreamRestriction, listing: Sequence[ShardInfo], now: float
) -> StreamRestriction:
    """The restriction once a ListShards result (`listing`) taken at `now` is applied.

    Adopts the readable shards (`readable_shards`) not already held, at the
    initial position on the first listing and at `TRIM_HORIZON` afterwards
    (`AT_TIMESTAMP` always), and forgets drained shards no longer listed (an
    absent parent counts as drained anyway). On the first listing with
    `LATEST`, closed shards are marked drained and open ones start at `now`.
    Shards held stay held even if not listed: they are read to their end.
    """
    listed_ids = {shard.shard_id for shard in listing}
    held = {position.shard_id for position in restriction.shards}
    drained = {shard_id for shard_id in restriction.drained if shard_id in listed_ids}
    start = restriction.start
    if not restriction.listed and start.kind == LATEST:
        drained |= {
            shard.shard_id for shard in listing if shard.closed and shard.shard_id not in held
        }
        start = StartingPosition(kind=AT_TIMESTAMP, timestamp=datetime.fromtimestamp(now, UTC))
    elif restriction.listed and start.kind != AT_TIMESTAMP:
        start = StartingPosition(kind=TRIM_HORIZON)
    adopted = tuple(
        ShardPosition(shard_id=shard.shard_id, start=start)
        for shard in readable_shards(listing, drained)
        if shard.shard_id not in held
    )
    return replace(
        restriction,
        shards=restriction.shards + adopted,
        drained=frozenset(drained),
        listed=True,
        quiet_since=now if restriction.quiet_since is None else restriction.quiet_since,
    )


def after_record(
    restriction: StreamRestriction, shard_id: str, sequence_number: str, now: float
) -> StreamRestriction:
    """The restriction once the record `sequence_number` of `shard_id` is read at `now`."""
    return replace(
        restriction,
        shards=tuple(
            replace(position, after_sequence=sequence_number)
            if position.shard_id == shard_id
            else position
            for position in restriction.shards
        ),
        records_read=restriction.records_read + 1,
        quiet_since=now,
    )


def after_drain(restriction: StreamRestriction, shard_id: str) -> StreamRestriction:
    """The restriction once `shard_id` is read to its end: it leaves `shards` for `drained`."""
    return replace(
        restriction,
        shards=tuple(position for position in restriction.shards if position.shard_id != shard_id),
        drained=restriction.drained | {shard_id},
    )


def children_of(listing: Iterable[ShardInfo], shard_id: str) -> list[ShardInfo]:
    """The shards of `listing` with `shard_id` as a parent, in listing order."""
    return [shard for shard in listing if shard_id in shard.parents]


def child_start(restriction: StreamRestriction) -> StartingPosition:
    """Where a shard adopted while running starts: `AT_TIMESTAMP` stays, else `TRIM_HORIZON`."""
    if restriction.start.kind == AT_TIMESTAMP:
        return restriction.start
    return StartingPosition(kind=TRIM_HORIZON)


def after_adoption(
    restriction: StreamRestriction, children: Sequence[str], listing: Sequence[ShardInfo]
) -> StreamRestriction:
    """The restriction once it adopts `children` (read from their start) after a drain.

    Drained shards no longer listed are forgotten, as in `after_listing`.
    """
    listed_ids = {shard.shard_id for shard in listing}
    start = child_start(restriction)
    return replace(
        restriction,
        shards=restriction.shards
        + tuple(ShardPosition(shard_id=child, start=start) for child in children),
        drained=frozenset(s for s in restriction.drained if s in listed_ids),
    )
