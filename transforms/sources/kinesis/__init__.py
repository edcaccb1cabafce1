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
`transforms.infrastructure.DEFAULT_BACKOFF`.

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

Modules, each with its own tests under `tests/transforms/sources/kinesis/`:
- `shards`: the shard graph, positions and restriction arithmetic (pure);
- `client`: the Kinesis API calls (ListShards, GetShardIterator, GetRecords)
  and `KinesisRecord`;
- `coordination`: the optional DynamoDB coordination table;
- `tracker`: the restriction tracker and provider (Beam's SDF API);
- `reader`: the reading DoFn (the GetRecords loop, call spacing, throttling,
  watermarks, checkpoints);
- `read`: the composites `ReadKinesisRecords` and `ReadFromKinesis`.

Run the tests with `.venv/bin/pytest tests/transforms/sources/kinesis/`.
"""

from __future__ import annotations

from transforms.sources.kinesis.client import KinesisRecord, check_stream, list_shards
from transforms.sources.kinesis.coordination import (
    COORDINATION_KEY_SCHEMA,
    ShardCoordinator,
    claimed_key,
    drained_key,
)
from transforms.sources.kinesis.read import ReadFromKinesis, ReadKinesisRecords
from transforms.sources.kinesis.shards import (
    AT_TIMESTAMP,
    INITIAL_POSITIONS,
    LATEST,
    TRIM_HORIZON,
    KinesisStream,
    ShardInfo,
    ShardPosition,
    StartingPosition,
    StreamRestriction,
)

__all__ = [
    "AT_TIMESTAMP",
    "COORDINATION_KEY_SCHEMA",
    "INITIAL_POSITIONS",
    "LATEST",
    "TRIM_HORIZON",
    "KinesisRecord",
    "KinesisStream",
    "ReadFromKinesis",
    "ReadKinesisRecords",
    "ShardCoordinator",
    "ShardInfo",
    "ShardPosition",
    "StartingPosition",
    "StreamRestriction",
    "check_stream",
    "claimed_key",
    "drained_key",
    "list_shards",
]
