"""Read a Kinesis data stream as `SourceRecord`s: a pure-Python splittable DoFn.

`ReadFromKinesis(stream)` is applied to a pipeline's beginning and returns an
**unbounded** `PCollection[SourceRecord]`: `data` is the record's bytes,
`source` is `kinesis:<stream>/<shard id>/<sequence number>`, `partition_key`
the record's partition key, `arrival` its ApproximateArrivalTimestamp (UTC);
each element is timestamped with that arrival time. `ReadKinesisRecords` is
the same read returning `KinesisRecord`s, which keep the shard id and sequence
number as fields.

Delivery is **at least once**, like Kinesis itself: a record is never skipped,
but a bundle that fails after reading is retried and reads its records again,
and producers' retries put duplicates with new sequence numbers. Deduplicate
downstream on a natural key (the Stripe event id).

Design: restrictions of shard positions, two modes
--------------------------------------------------
The element is the stream (`KinesisStream`); a restriction
(`StreamRestriction`) holds one `ShardPosition` per shard it reads, the
shards it saw drained, and the counters of the test bounds. Each shard is
held by exactly one restriction at a time; the reader polls the shards of
its restriction in turn.

Without a coordination table (`coordination_table=None`, the default) the
stream has ONE restriction holding every shard: correct, but read by one
thread, one GetRecords call at a time. The reader lists the shards itself
(ListShards, paginated) when it starts or resumes, right after a shard
drains, and every `DISCOVERY_INTERVAL`, and the rule "a child is read only
after all its parents are drained" is a local check, for splits, merges,
chains and restarts alike. This is ample for the Stripe events stream (a few
records per second, a few shards).

With a coordination table (a DynamoDB table with key `shardKey` HASH, like
the KCL's lease table; see `ShardCoordinator`) there is ONE RESTRICTION PER
SHARD at start, read in parallel: `StreamRestrictionProvider.split` lists the
shards and yields one restriction per shard readable at start. Separate
restrictions cannot tell each other anything through the graph (a Beam graph
has no cycles, so a reader's "drained" signal cannot reach a step upstream of
the readers), so they tell each other through the table. A restriction reads
its shard(s); when one drains, it leaves the restriction (the tracker records
it drained), the reader records `drained(<stream>/<shard>)` in the table
(conditional put) and lists the shards to adopt that shard's children:
- a split child (one parent) is adopted by its parent's restriction;
- a merge child (two parents) by whichever parent's reader drains last: after
  writing its own mark, the reader reads the other parent's mark (strongly
  consistent; a parent no longer listed counts as drained); if both are
  drained it claims the child with a conditional put of
  `claimed(<stream>/<child>)` (`attribute_not_exists`, or already claimed by
  this same parent, so a retried bundle adopts it again). Of two readers
  draining at once at least one sees both marks and exactly one wins the
  claim; the first to drain, seeing no mark, adopts nothing.
An adopted child is appended to the restriction's positions, so after
adoptions one restriction may hold several shards. A restriction left with
no shard after a drain ends: a closed shard ends its restriction. At start,
shards that are closed and marked drained in the table (a restart after a
reshard) count as drained, so their children are readable at start and they
are not read again: like the KCL's SHARD_END checkpoint, a drained mark is
final for every later run on the same table. One table serves any number of
streams (the keys name the stream), but only one job may read a stream with
a given table at a time.

Resharding: a shard becomes readable when each of its parents is drained or
no longer listed (past retention: it has nothing left to read), see
`readable_shards`. A shard is drained when GetRecords returns no
`NextShardIterator`: it is closed and read to its end. It then leaves the
restriction and its id joins `drained` (and is forgotten once ListShards no
longer lists it), and the shards are listed again at once, so the children
of a split (both) or of a merge (once its second parent is drained) start
right away. A shard in a listing made while running is read from
`TRIM_HORIZON`, so no record of a new shard is missed. A child is never read
twice: a shard is adopted only when it is neither held nor drained. (With a
coordination table, the adoption rules above replace the periodic listing.)

Starting positions: the shards of the first listing start at
`initial_position`. `TRIM_HORIZON` reads the whole retained history in
lineage order; `AT_TIMESTAMP` (with `initial_timestamp`) applies to every
shard, even ones created later; `LATEST` skips the closed shards of the first
listing (they hold only older records) and reads the open ones from the time
of that listing: it is recorded as `AT_TIMESTAMP` at that wall-clock time, so
a checkpoint taken before a shard's first record neither skips nor re-reads.

Positions and checkpoints: a shard's position is the sequence number of its
last record claimed, never a shard iterator (iterators expire after five
minutes). Every change of the restriction is claimed through
`StreamTracker.try_claim(next_restriction)`, so a checkpoint
(`try_split(0)`, by the reader through `defer_remainder()` when the stream is
idle or throttled or after `MAX_READ_PER_CALL`, or by the runner) always
captures a consistent state. The residual resumes each shard
`AFTER_SEQUENCE_NUMBER` of its last claimed record (or at its start when it
has none), so a restart from the checkpoint neither re-reads nor skips.

Watermark: each shard has its own, the latest ApproximateArrivalTimestamp read
from it; a shard that is caught up (an empty GetRecords with
MillisBehindLatest == 0) advances its own to now minus `IDLE_WATERMARK_LAG`.
The restriction's watermark is the minimum over the shards held, set once
each of them has been polled since the (re)start, and never goes back.

Limits respected: at most `GET_RECORDS_LIMIT` (10,000) records per GetRecords
and at least `MIN_CALL_INTERVAL` (0.2 s, i.e. 5 calls/s) between calls on a
shard; ProvisionedThroughputExceededException backs that shard off for
`THROTTLE_BACKOFF` while the others are read (when all are idle or backing
off the reader checkpoints and resumes after the backoff);
ExpiredIteratorException re-creates the shard's iterator after its last
claimed sequence number. A shard held by a checkpoint but past retention when
the job resumes (ResourceNotFoundException) counts as drained, with a warning
and `kinesis_shards_expired`: its unread records expired with it.

Credentials, region and endpoint come only from the standard AWS chain
(boto3's default session: environment, config files, instance roles;
`AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_KINESIS` for local servers). Clients are
created in `DoFn.setup()`, which also checks that the coordination table, if
any, exists with key `shardKey` HASH (`ConfigurationError` otherwise; the
job never creates it). Table calls are retried per
`transforms.sinks.dynamodb.DEFAULT_BACKOFF`.

Bounds for tests and demos, off by default; either makes the output bounded.
Both apply PER RESTRICTION: without a coordination table that is the whole
stream; with one, each restriction (one shard at start, plus the children it
adopts) ends on its own bound, so `max_records` then bounds each restriction
(the total is at most `max_records` times the number of restrictions), and a
restriction ended by a bound adopts no further children.
- `idle_timeout`: a restriction ends once none of its shards has returned a
  record for that long, measured in wall-clock time from the last record it
  claimed (or from its start) and kept in the restriction across checkpoints;
  it is checked after each polling round that returned no record, so it ends
  within `idle_timeout` plus one round (at most `poll_interval` plus one
  GetRecords per shard it holds).
- `max_records`: a restriction ends right after its `max_records`-th record,
  across the shards it held (the count is kept in the restriction).
- With either bound set, a restriction polls an idle stream in place
  (sleeping `poll_interval`) instead of checkpointing: the local FnApiRunner
  does not hold the watermark for a delayed residual, and downstream
  event-time timers would otherwise fire to the end of time before the
  records still to come are read. Unbounded reads checkpoint as usual.
Without them a restriction ends only when no shard is left that it can ever
read (without a table: every listed shard drained; with one: its shards
drained and no child adopted), which a real stream's last restriction never
reaches.

Run the tests with `.venv/bin/pytest tests/transforms/sources/test_kinesis.py`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
import boto3
import botocore.exceptions
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.runners.sdf_utils import RestrictionTrackerView
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp

from transforms.domain.events import SourceRecord
from transforms.infrastructure import (
    DEFAULT_BACKOFF,
    call_with_retries,
    check_table_key,
    dynamodb_client,
    error_code,
)
from transforms.sources.decode import METRICS_NAMESPACE

_LOG = logging.getLogger(__name__)

TRIM_HORIZON = "TRIM_HORIZON"
LATEST = "LATEST"
AT_TIMESTAMP = "AT_TIMESTAMP"
INITIAL_POSITIONS = (TRIM_HORIZON, LATEST, AT_TIMESTAMP)

#: GetRecords returns at most this many records per call.
GET_RECORDS_LIMIT = 10_000
#: GetRecords allows 5 calls per second per shard.
MIN_CALL_INTERVAL = timedelta(seconds=0.2)
#: How long a throttled shard waits before it is read again.
THROTTLE_BACKOFF = timedelta(seconds=1)
#: How far behind now the watermark of a caught-up, idle shard stays, to
#: allow for the skew of ApproximateArrivalTimestamp.
IDLE_WATERMARK_LAG = timedelta(seconds=5)
#: Longest a single process() call reads before checkpointing, so the runner
#: gets regular checkpoints on a busy stream.
MAX_READ_PER_CALL = timedelta(seconds=10)
#: How often a busy reader lists the shards to find new ones (it also lists
#: them whenever it starts or resumes and right after a shard drains).
DISCOVERY_INTERVAL = timedelta(seconds=10)
#: The coordination table's key: one item per fact, named by `drained_key`
#: or `claimed_key`.
COORDINATION_KEY_SCHEMA = (("shardKey", "HASH"),)


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
    retried per `transforms.sinks.dynamodb.DEFAULT_BACKOFF`.
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


class StreamTracker(RestrictionTracker):
    """Claims each next state of a `StreamRestriction`; splits only to checkpoint.

    `try_claim(next_restriction)` moves to the next state (a record read, a
    shard drained, a listing applied); a `finished` one ends the restriction.
    It fails once the restriction ended or was checkpointed, and the reader
    must then stop. `try_split(0)` is the checkpoint: the primary is the state
    claimed so far, finished; the residual is the same state, to resume.
    Other fractions are refused (the shards' order of reading is the point).
    """

    def __init__(self, restriction: StreamRestriction) -> None:
        self._restriction = restriction
        self._ended = restriction.finished

    def current_restriction(self) -> StreamRestriction:
        return self._restriction

    def try_claim(self, position: StreamRestriction) -> bool:
        if self._ended:
            return False
        self._restriction = position
        self._ended = position.finished
        return True

    def try_split(
        self, fraction_of_remainder: float
    ) -> tuple[StreamRestriction, StreamRestriction] | None:
        if self._ended or fraction_of_remainder != 0:
            return None
        primary = replace(self._restriction, finished=True)
        residual = self._restriction
        self._restriction = primary
        self._ended = True
        return primary, residual

    def check_done(self) -> None:
        if not self._ended:
            raise ValueError(
                f"stream read holding shards {[p.shard_id for p in self._restriction.shards]} "
                "neither ended nor checkpointed"
            )

    def current_progress(self) -> RestrictionProgress:
        # A stream has no known end: report work as done or remaining, not a fraction.
        return RestrictionProgress(
            completed=1 if self._ended else 0, remaining=0 if self._ended else 1
        )

    def is_bounded(self) -> bool:
        return self._ended


class StreamRestrictionProvider(RestrictionProvider):
    """One restriction per stream, split per shard when the stream has a coordination table.

    Without a table the initial restriction is not split: it lists and reads
    every shard itself. With a table, `split` lists the shards (and reads the
    table's drained marks) and yields one restriction per shard readable at
    start, or one finished restriction when none is.
    """

    def initial_restriction(self, element: KinesisStream) -> StreamRestriction:
        return StreamRestriction(start=element.start)

    def create_tracker(self, restriction: StreamRestriction) -> StreamTracker:
        return StreamTracker(restriction)

    def restriction_size(self, element: KinesisStream, restriction: StreamRestriction) -> int:
        return 0 if restriction.finished else 1

    def split(
        self, element: KinesisStream, restriction: StreamRestriction
    ) -> Iterator[StreamRestriction]:
        if element.coordination_table is None or restriction.listed or restriction.finished:
            yield restriction
            return
        coordinator = ShardCoordinator(element.coordination_table, dynamodb_client())
        coordinator.check()
        listing = list_shards(_kinesis_client(), element.stream)
        state = coordinated_start(restriction, element.stream, listing, coordinator, time.time())
        if not state.shards:
            yield replace(state, finished=True)
            return
        for position in state.shards:
            yield replace(state, shards=(position,))


@dataclass(frozen=True)
class KinesisRecord:
    """One Kinesis record with everything GetRecords tells about it."""

    data: bytes
    stream: str
    shard_id: str
    sequence_number: str
    partition_key: str
    arrival: datetime

    @property
    def source(self) -> str:
        return f"kinesis:{self.stream}/{self.shard_id}/{self.sequence_number}"

    def to_source_record(self) -> SourceRecord:
        return SourceRecord(
            data=self.data,
            source=self.source,
            arrival=self.arrival,
            partition_key=self.partition_key,
        )


def _stream_argument(stream: str) -> dict[str, str]:
    return {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}


def _kinesis_client() -> Any:
    # The default session reads credentials, region and endpoint from the
    # standard AWS configuration; nothing is passed explicitly on purpose.
    return boto3.session.Session().client("kinesis")


def list_shards(client: Any, stream: str) -> list[ShardInfo]:
    """Every shard ListShards returns for `stream`, following `NextToken`."""
    shards: list[ShardInfo] = []
    request: dict[str, Any] = _stream_argument(stream)
    while True:
        response = client.list_shards(**request)
        shards.extend(ShardInfo.from_api(shard) for shard in response["Shards"])
        token = response.get("NextToken")
        if not token:
            return shards
        # With a token, ListShards refuses the stream name.
        request = {"NextToken": token}


_PROVIDER = StreamRestrictionProvider()
# Beam reads DoFn parameters from defaults; module-level so they are built once.
_RESTRICTION_PARAM = beam.DoFn.RestrictionParam(_PROVIDER)
_WATERMARK_PARAM = beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider())


def _to_timestamp(moment: datetime) -> Timestamp:
    return Timestamp.from_utc_datetime(moment.astimezone(UTC))


def _advance(estimator: ManualWatermarkEstimator, to: Timestamp) -> None:
    current = estimator.current_watermark()
    if current is None or to > current:
        estimator.set_watermark(to)


@dataclass
class _Poll:
    """What one GetRecords call on one shard told."""

    records: list[Mapping[str, Any]]
    drained: bool = False
    caught_up: bool = False
    throttled: bool = False


def _restriction_watermark(
    restriction: StreamRestriction, marks: Mapping[str, Timestamp]
) -> Timestamp | None:
    """The minimum of the held shards' watermarks, None until each has one."""
    if not restriction.shards or any(p.shard_id not in marks for p in restriction.shards):
        return None
    return min(marks[position.shard_id] for position in restriction.shards)


class _ReadStreamFn(beam.DoFn):
    """Reads the shards its restriction holds; see the module docstring."""

    def __init__(
        self,
        idle_timeout: timedelta | None,
        max_records: int | None,
        poll_interval: timedelta,
        coordination_table: str | None = None,
    ) -> None:
        self._idle_timeout = idle_timeout
        self._max_records = max_records
        self._bounded = idle_timeout is not None or max_records is not None
        self._poll_interval = poll_interval
        self._coordination_table = coordination_table
        self._client: Any = None
        self._coordinator: ShardCoordinator | None = None
        self._records_read = Metrics.counter(METRICS_NAMESPACE, "kinesis_records_read")
        self._throttled = Metrics.counter(METRICS_NAMESPACE, "kinesis_throttled")
        self._expired_iterators = Metrics.counter(METRICS_NAMESPACE, "kinesis_expired_iterators")
        self._shards_drained = Metrics.counter(METRICS_NAMESPACE, "kinesis_shards_drained")
        self._shards_expired = Metrics.counter(METRICS_NAMESPACE, "kinesis_shards_expired")
        self._children_adopted = Metrics.counter(METRICS_NAMESPACE, "kinesis_children_adopted")

    def setup(self) -> None:
        self._client = _kinesis_client()
        if self._coordination_table is not None:
            self._coordinator = ShardCoordinator(self._coordination_table, dynamodb_client())
            self._coordinator.check()

    def teardown(self) -> None:
        if self._coordinator is not None:
            self._coordinator.client.close()
            self._coordinator = None

    def _adopted_children(
        self, stream: str, shard_id: str, listing: Sequence[ShardInfo]
    ) -> list[str]:
        """The children of the just drained `shard_id` that this reader must read next.

        A split child is its parent's. A merge child goes to whichever parent's
        reader drains last: mark this parent drained, then read the other's
        mark (a parent no longer listed has nothing left: drained); if both are
        drained, the conditional claim decides, so when both readers see both
        marks only one adopts the child. Whichever reader writes its mark
        second sees the first one's, so the child is never left unadopted.
        """
        coordinator = self._coordinator
        assert coordinator is not None
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

    def _shard_iterator(self, stream: str, position: ShardPosition) -> str:
        request: dict[str, Any] = {**_stream_argument(stream), "ShardId": position.shard_id}
        if position.after_sequence is not None:
            request.update(
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=position.after_sequence,
            )
        elif position.start.kind == AT_TIMESTAMP:
            request.update(ShardIteratorType=AT_TIMESTAMP, Timestamp=position.start.timestamp)
        else:
            request.update(ShardIteratorType=position.start.kind)
        return str(self._client.get_shard_iterator(**request)["ShardIterator"])

    def _poll(self, stream: str, position: ShardPosition, iterators: dict[str, str]) -> _Poll:
        """One GetRecords on one shard; keeps `iterators` pointing after what it returned."""
        shard_id = position.shard_id
        # GetRecords on a stream given by ARN must name it again; moto needs it too.
        stream_argument = {"StreamARN": stream} if stream.startswith("arn:") else {}
        try:
            iterator = iterators.get(shard_id) or self._shard_iterator(stream, position)
            iterators[shard_id] = iterator
            response = self._client.get_records(
                ShardIterator=iterator, Limit=GET_RECORDS_LIMIT, **stream_argument
            )
        except self._client.exceptions.ProvisionedThroughputExceededException:
            self._throttled.inc()
            return _Poll(records=[], throttled=True)
        except self._client.exceptions.ExpiredIteratorException:
            # Re-created at the next poll, after the last record claimed.
            self._expired_iterators.inc()
            iterators.pop(shard_id, None)
            return _Poll(records=[])
        except self._client.exceptions.ResourceNotFoundException:
            # Only a shard past retention (a restart from an old checkpoint) is
            # gone while its stream exists; its records are gone with it. A
            # deleted stream fails the listing that follows instead.
            self._shards_expired.inc()
            _LOG.warning(
                "Stream %s: shard %s is past retention; unread records expired", stream, shard_id
            )
            iterators.pop(shard_id, None)
            return _Poll(records=[], drained=True)
        records = list(response.get("Records", []))
        next_iterator = response.get("NextShardIterator")
        if next_iterator is None:
            iterators.pop(shard_id, None)
            return _Poll(records=records, drained=True)
        iterators[shard_id] = next_iterator
        caught_up = not records and response.get("MillisBehindLatest", 0) == 0
        return _Poll(records=records, caught_up=caught_up)

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        element: KinesisStream,
        tracker: RestrictionTrackerView = _RESTRICTION_PARAM,  # type: ignore[assignment]
        watermark_estimator: ManualWatermarkEstimator = _WATERMARK_PARAM,  # type: ignore[assignment]
    ) -> Iterator[TimestampedValue]:
        state: StreamRestriction = tracker.current_restriction()
        if state.finished:
            return
        stream = element.stream
        iterators: dict[str, str] = {}
        # Per shard, in time.monotonic() seconds: when it may be called again.
        not_before: dict[str, float] = {}
        throttled_until: dict[str, float] = {}
        caught_up: dict[str, bool] = {}
        marks: dict[str, Timestamp] = {}
        started = time.monotonic()
        next_listing = started
        coordinator = self._coordinator
        coordinated = coordinator is not None
        while True:
            # With a coordination table a restriction lists the shards only
            # when it starts unsplit and when it drains a shard (below).
            if time.monotonic() >= next_listing and not (coordinated and state.listed):
                held = {position.shard_id for position in state.shards}
                listing = list_shards(self._client, stream)
                if coordinator is not None:
                    state = coordinated_start(state, stream, listing, coordinator, time.time())
                else:
                    state = after_listing(state, listing, time.time())
                if not state.shards:
                    # Every listed shard is drained: no record can ever come.
                    tracker.try_claim(replace(state, finished=True))
                    return
                if not tracker.try_claim(state):
                    return
                adopted = [p.shard_id for p in state.shards if p.shard_id not in held]
                if adopted:
                    _LOG.info("Stream %s: reading shards %s", stream, ", ".join(adopted))
                next_listing = time.monotonic() + DISCOVERY_INTERVAL.total_seconds()
            earliest = min(not_before.get(p.shard_id, 0.0) for p in state.shards)
            if earliest > time.monotonic():
                time.sleep(earliest - time.monotonic())
            round_records = 0
            drained_any = False
            for position in state.shards:
                shard_id = position.shard_id
                if not_before.get(shard_id, 0.0) > time.monotonic():
                    continue
                poll = self._poll(stream, position, iterators)
                called_at = time.monotonic()
                not_before[shard_id] = called_at + MIN_CALL_INTERVAL.total_seconds()
                if poll.throttled:
                    throttled_until[shard_id] = called_at + THROTTLE_BACKOFF.total_seconds()
                    not_before[shard_id] = throttled_until[shard_id]
                caught_up[shard_id] = poll.caught_up or poll.throttled
                for record in poll.records:
                    claimed = after_record(state, shard_id, record["SequenceNumber"], time.time())
                    if not tracker.try_claim(claimed):
                        return
                    state = claimed
                    arrival = record["ApproximateArrivalTimestamp"].astimezone(UTC)
                    self._records_read.inc()
                    yield TimestampedValue(
                        KinesisRecord(
                            data=record["Data"],
                            stream=stream,
                            shard_id=shard_id,
                            sequence_number=record["SequenceNumber"],
                            partition_key=record["PartitionKey"],
                            arrival=arrival,
                        ),
                        _to_timestamp(arrival),
                    )
                    marks[shard_id] = max(
                        marks.get(shard_id, MIN_TIMESTAMP), _to_timestamp(arrival)
                    )
                    if self._max_records is not None and state.records_read >= self._max_records:
                        tracker.try_claim(replace(state, finished=True))
                        return
                round_records += len(poll.records)
                if poll.caught_up:
                    idle_mark = _to_timestamp(datetime.now(UTC) - IDLE_WATERMARK_LAG)
                    marks[shard_id] = max(marks.get(shard_id, MIN_TIMESTAMP), idle_mark)
                watermark = _restriction_watermark(state, marks)
                if watermark is not None:
                    _advance(watermark_estimator, watermark)
                if poll.drained:
                    drained = after_drain(state, shard_id)
                    children: list[str] = []
                    if coordinated:
                        listing = list_shards(self._client, stream)
                        children = self._adopted_children(stream, shard_id, listing)
                        drained = after_adoption(drained, children, listing)
                        if not drained.shards:
                            # A closed shard ends its restriction unless it adopts a child.
                            drained = replace(drained, finished=True)
                    if not tracker.try_claim(drained):
                        return
                    state = drained
                    for per_shard in (not_before, throttled_until, caught_up, marks):
                        per_shard.pop(shard_id, None)
                    self._shards_drained.inc()
                    self._children_adopted.inc(len(children))
                    _LOG.info("Stream %s: shard %s is closed and drained", stream, shard_id)
                    if children:
                        _LOG.info("Stream %s: reading shards %s", stream, ", ".join(children))
                    if state.finished:
                        return
                    drained_any = not coordinated
            if drained_any:
                # Its children may be readable now: list before reading on.
                next_listing = time.monotonic()
                continue
            if round_records == 0:
                quiet_since = state.quiet_since if state.quiet_since is not None else time.time()
                if (
                    self._idle_timeout is not None
                    and time.time() - quiet_since >= self._idle_timeout.total_seconds()
                ):
                    tracker.try_claim(replace(state, finished=True))
                    return
                if all(caught_up.get(p.shard_id, False) for p in state.shards):
                    backoff = max(throttled_until.values(), default=0.0) - time.monotonic()
                    wait = max(self._poll_interval.total_seconds(), backoff)
                    if self._bounded:
                        # A bounded read (a test or demo) waits here rather than
                        # checkpointing: the local FnApiRunner does not hold the
                        # watermark for a delayed residual, so downstream event-time
                        # timers would fire to the end of time before the records
                        # still to come are read.
                        time.sleep(wait)
                        continue
                    tracker.defer_remainder(Duration.of(wait))
                    return
            if (
                not self._bounded
                and time.monotonic() - started >= MAX_READ_PER_CALL.total_seconds()
            ):
                tracker.defer_remainder()
                return


class ReadKinesisRecords(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[KinesisRecord]]):
    """`PBegin` -> unbounded `PCollection[KinesisRecord]`, at least once.

    See the module docstring for positions, resharding, watermarks and the
    test bounds `idle_timeout` and `max_records` (per restriction: the whole
    stream without a coordination table, each shard's lineage with one).
    `poll_interval` is how long an idle stream waits before it is polled again.
    `coordination_table` names a DynamoDB table (key `shardKey` HASH) through
    which one restriction per shard reads in parallel; None reads every shard
    in one restriction, on one thread. Raises ValueError on an impossible
    combination of arguments.
    """

    def __init__(
        self,
        stream: str,
        initial_position: str = TRIM_HORIZON,
        initial_timestamp: datetime | None = None,
        idle_timeout: timedelta | None = None,
        max_records: int | None = None,
        poll_interval: timedelta = timedelta(seconds=1),
        coordination_table: str | None = None,
    ) -> None:
        super().__init__()
        if initial_position not in INITIAL_POSITIONS:
            raise ValueError(
                f"initial_position must be one of {', '.join(INITIAL_POSITIONS)}, "
                f"not {initial_position!r}"
            )
        if (initial_position == AT_TIMESTAMP) != (initial_timestamp is not None):
            raise ValueError("initial_timestamp is required with AT_TIMESTAMP and only with it")
        if initial_timestamp is not None and initial_timestamp.tzinfo is None:
            raise ValueError("initial_timestamp must be timezone-aware")
        if max_records is not None and max_records < 1:
            raise ValueError("max_records must be at least 1")
        if idle_timeout is not None and idle_timeout <= timedelta(0):
            raise ValueError("idle_timeout must be positive")
        if poll_interval < MIN_CALL_INTERVAL:
            raise ValueError(f"poll_interval must be at least {MIN_CALL_INTERVAL}")
        if coordination_table is not None and not coordination_table:
            raise ValueError("coordination_table must be a table name or None")
        self._element = KinesisStream(
            stream=stream,
            start=StartingPosition(kind=initial_position, timestamp=initial_timestamp),
            coordination_table=coordination_table,
        )
        self._idle_timeout = idle_timeout
        self._max_records = max_records
        self._poll_interval = poll_interval

    def expand(self, begin: beam.pvalue.PBegin) -> beam.PCollection[KinesisRecord]:
        element = self._element
        return (
            begin
            | "Start" >> beam.Impulse()
            | "ToStream" >> beam.Map(lambda _: element)
            | "ReadShards"
            >> beam.ParDo(
                _ReadStreamFn(
                    self._idle_timeout,
                    self._max_records,
                    self._poll_interval,
                    element.coordination_table,
                )
            )
        )


class ReadFromKinesis(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[SourceRecord]]):
    """`PBegin` -> unbounded `PCollection[SourceRecord]`, at least once.

    `ReadKinesisRecords` followed by `KinesisRecord.to_source_record`, which
    keeps the partition key. Arguments as for `ReadKinesisRecords`.
    """

    def __init__(self, stream: str, **kwargs: Any) -> None:
        super().__init__()
        self._read = ReadKinesisRecords(stream, **kwargs)

    def expand(self, begin: beam.pvalue.PBegin) -> beam.PCollection[SourceRecord]:
        return (
            begin
            | "ReadKinesisRecords" >> self._read
            | "ToSourceRecords" >> beam.Map(KinesisRecord.to_source_record)
        )
