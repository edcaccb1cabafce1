"""The reading DoFn of the Kinesis source: polls the shards its restriction holds.

`ReadStreamFn.process` is one loop of short named steps: list the shards when
due (`_apply_listing`), wait for the first shard that may be called
(`_wait_for_a_shard`), poll each shard once (`_poll_round`: GetRecords,
claim and emit its records, move its watermark, hand on a drained shard),
then, after a round that returned nothing, decide whether to end, poll again
or checkpoint (`_when_idle`). Limits and the per-shard bookkeeping
(iterators, call spacing, throttling backoff, watermarks) are those of the
package docstring.

Stopping a local run: `request_stop()` (the streaming job's SIGINT/SIGTERM
handler) sets a process-wide flag that every reader in this process polls
between rounds and while it waits: the restriction then ends as a bound
ends it, claiming nothing more, so what was read flows on, windows and timers
fire as at the end of any bounded read, and the run finishes. It reaches
only readers in the launching process, which the local FnApiRunner's are
(its SDK harness is a thread of that process); on Dataflow, drain the job.
`records_read_in_process()` counts the records the readers of this process
emitted, for the local job's progress lines.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.runners.sdf_utils import RestrictionTrackerView
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp

from transforms.infrastructure import dynamodb_client
from transforms.sources.decode import METRICS_NAMESPACE
from transforms.sources.kinesis import client
from transforms.sources.kinesis.client import KinesisRecord, Poll
from transforms.sources.kinesis.coordination import (
    ShardCoordinator,
    adopted_children,
    coordinated_start,
)
from transforms.sources.kinesis.shards import (
    KinesisStream,
    ShardPosition,
    StreamRestriction,
    after_adoption,
    after_drain,
    after_listing,
    after_record,
)
from transforms.sources.kinesis.tracker import StreamRestrictionProvider

_LOG = logging.getLogger(__name__)

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

_STOP = threading.Event()


def request_stop() -> None:
    """Makes every reader of this process end its restriction at its next step."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def clear_stop() -> None:
    """Forgets a stop request (a job that starts again in the same process)."""
    _STOP.clear()


class _ProcessCount:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def add(self, count: int) -> None:
        with self._lock:
            self._value += count

    @property
    def value(self) -> int:
        with self._lock:
            return self._value


_READ_IN_PROCESS = _ProcessCount()


def records_read_in_process() -> int:
    """Records the readers of this process have emitted since it started."""
    return _READ_IN_PROCESS.value


_PROVIDER = StreamRestrictionProvider()
# Beam reads DoFn parameters from defaults; module-level so they are built once.
_RESTRICTION_PARAM = beam.DoFn.RestrictionParam(_PROVIDER)
_WATERMARK_PARAM = beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider())


def _to_timestamp(moment: datetime) -> Timestamp:
    return Timestamp.from_utc_datetime(moment.astimezone(UTC))


class _Next(enum.Enum):
    """What the loop does after a polling round that returned no record."""

    STOP = "stop"
    POLL_AGAIN = "poll_again"
    READ_ON = "read_on"


@dataclass
class _Call:
    """What one process() call keeps between its polling rounds.

    Per shard, in time.monotonic() seconds: when it may be called again and
    until when it is throttled; whether its last poll was caught up (or
    throttled); its watermark. None of it survives a checkpoint: a resumed
    call re-creates iterators from the positions and polls every shard again.
    """

    stream: str
    state: StreamRestriction
    tracker: RestrictionTrackerView
    estimator: ManualWatermarkEstimator
    started: float
    next_listing: float
    iterators: dict[str, str] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)
    throttled_until: dict[str, float] = field(default_factory=dict)
    caught_up: dict[str, bool] = field(default_factory=dict)
    marks: dict[str, Timestamp] = field(default_factory=dict)

    def claim(self, restriction: StreamRestriction) -> bool:
        """Claims the next state; False when the restriction ended or was checkpointed."""
        if not self.tracker.try_claim(restriction):
            return False
        self.state = restriction
        return True

    def finish(self) -> None:
        self.tracker.try_claim(replace(self.state, finished=True))

    def forget(self, shard_id: str) -> None:
        for per_shard in (self.not_before, self.throttled_until, self.caught_up, self.marks):
            per_shard.pop(shard_id, None)

    def watermark(self) -> Timestamp | None:
        """The minimum of the held shards' watermarks, None until each has one."""
        shards = self.state.shards
        if not shards or any(p.shard_id not in self.marks for p in shards):
            return None
        return min(self.marks[position.shard_id] for position in shards)

    def raise_mark(self, shard_id: str, to: Timestamp) -> None:
        self.marks[shard_id] = max(self.marks.get(shard_id, MIN_TIMESTAMP), to)


class ReadStreamFn(beam.DoFn):
    """`KinesisStream` -> `KinesisRecord`s of the shards its restriction holds.

    Unbounded per element; see the package docstring for the rules.
    """

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
        self._client = client.kinesis_client()
        if self._coordination_table is not None:
            self._coordinator = ShardCoordinator(self._coordination_table, dynamodb_client())
            self._coordinator.check()

    def teardown(self) -> None:
        if self._coordinator is not None:
            self._coordinator.client.close()
            self._coordinator = None

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
        now = time.monotonic()
        call = _Call(element.stream, state, tracker, watermark_estimator, now, next_listing=now)
        while True:
            if _STOP.is_set():
                call.finish()
                return
            # With a coordination table a restriction lists the shards only
            # when it starts unsplit and when it drains a shard (in the round).
            listing_due = time.monotonic() >= call.next_listing
            lists_itself = self._coordinator is None or not call.state.listed
            if listing_due and lists_itself and not self._apply_listing(call):
                return
            self._wait_for_a_shard(call)
            round_records, drained_any, stop = yield from self._poll_round(call)
            if stop:
                return
            if drained_any:
                # Its children may be readable now: list before reading on.
                call.next_listing = time.monotonic()
                continue
            if round_records == 0:
                next_step = self._when_idle(call)
                if next_step is _Next.STOP:
                    return
                if next_step is _Next.POLL_AGAIN:
                    continue
            if (
                not self._bounded
                and time.monotonic() - call.started >= MAX_READ_PER_CALL.total_seconds()
            ):
                tracker.defer_remainder()
                return

    def _apply_listing(self, call: _Call) -> bool:
        """Lists the shards and claims the restriction with them; False to stop."""
        held = {position.shard_id for position in call.state.shards}
        listing = client.list_shards(self._client, call.stream)
        if self._coordinator is not None:
            state = coordinated_start(
                call.state, call.stream, listing, self._coordinator, time.time()
            )
        else:
            state = after_listing(call.state, listing, time.time())
        if not state.shards:
            # Every listed shard is drained: no record can ever come.
            call.tracker.try_claim(replace(state, finished=True))
            return False
        if not call.claim(state):
            return False
        adopted = [p.shard_id for p in state.shards if p.shard_id not in held]
        if adopted:
            _LOG.info("Stream %s: reading shards %s", call.stream, ", ".join(adopted))
        call.next_listing = time.monotonic() + DISCOVERY_INTERVAL.total_seconds()
        return True

    def _wait_for_a_shard(self, call: _Call) -> None:
        """Sleeps until the first held shard may be called again (5 calls/s per shard)."""
        earliest = min(call.not_before.get(p.shard_id, 0.0) for p in call.state.shards)
        if earliest > time.monotonic():
            time.sleep(earliest - time.monotonic())

    def _poll_round(self, call: _Call) -> Generator[TimestampedValue, None, tuple[int, bool, bool]]:
        """Polls each held shard that may be called, once.

        Yields the records read; returns (records read, whether a shard
        drained without a coordination table, whether the call must stop).
        """
        round_records = 0
        drained_any = False
        for position in call.state.shards:
            shard_id = position.shard_id
            if call.not_before.get(shard_id, 0.0) > time.monotonic():
                continue
            poll = self._poll_shard(call, position)
            emitted = yield from self._emit_records(call, shard_id, poll)
            if emitted is None:
                return round_records, drained_any, True
            round_records += emitted
            self._advance_watermark(call, shard_id, poll)
            if poll.drained:
                if not self._hand_on_drained(call, shard_id):
                    return round_records, drained_any, True
                drained_any = self._coordinator is None
        return round_records, drained_any, False

    def _poll_shard(self, call: _Call, position: ShardPosition) -> Poll:
        """One GetRecords on the shard, counted, with its next call and backoff set."""
        shard_id = position.shard_id
        poll = client.get_records(self._client, call.stream, position, call.iterators)
        if poll.throttled:
            self._throttled.inc()
        if poll.iterator_expired:
            self._expired_iterators.inc()
        if poll.shard_expired:
            self._shards_expired.inc()
            _LOG.warning(
                "Stream %s: shard %s is past retention; unread records expired",
                call.stream,
                shard_id,
            )
        called_at = time.monotonic()
        call.not_before[shard_id] = called_at + MIN_CALL_INTERVAL.total_seconds()
        if poll.throttled:
            call.throttled_until[shard_id] = called_at + THROTTLE_BACKOFF.total_seconds()
            call.not_before[shard_id] = call.throttled_until[shard_id]
        call.caught_up[shard_id] = poll.caught_up or poll.throttled
        return poll

    def _emit_records(
        self, call: _Call, shard_id: str, poll: Poll
    ) -> Generator[TimestampedValue, None, int | None]:
        """Claims and yields each record of `poll`; returns how many, None to stop."""
        for record in poll.records:
            claimed = after_record(call.state, shard_id, record["SequenceNumber"], time.time())
            if not call.claim(claimed):
                return None
            arrival = record["ApproximateArrivalTimestamp"].astimezone(UTC)
            self._records_read.inc()
            _READ_IN_PROCESS.add(1)
            yield TimestampedValue(
                KinesisRecord(
                    data=record["Data"],
                    stream=call.stream,
                    shard_id=shard_id,
                    sequence_number=record["SequenceNumber"],
                    partition_key=record["PartitionKey"],
                    arrival=arrival,
                ),
                _to_timestamp(arrival),
            )
            call.raise_mark(shard_id, _to_timestamp(arrival))
            if self._max_records is not None and call.state.records_read >= self._max_records:
                call.finish()
                return None
        return len(poll.records)

    def _advance_watermark(self, call: _Call, shard_id: str, poll: Poll) -> None:
        """A caught-up shard's mark follows now; the restriction's never goes back."""
        if poll.caught_up:
            call.raise_mark(shard_id, _to_timestamp(datetime.now(UTC) - IDLE_WATERMARK_LAG))
        watermark = call.watermark()
        if watermark is None:
            return
        current = call.estimator.current_watermark()
        if current is None or watermark > current:
            call.estimator.set_watermark(watermark)

    def _hand_on_drained(self, call: _Call, shard_id: str) -> bool:
        """The drained shard leaves the restriction (adopting children with a table).

        False when the call must stop: the claim failed or the restriction ended.
        """
        drained = after_drain(call.state, shard_id)
        children: list[str] = []
        if self._coordinator is not None:
            listing = client.list_shards(self._client, call.stream)
            children = adopted_children(self._coordinator, call.stream, shard_id, listing)
            drained = after_adoption(drained, children, listing)
            if not drained.shards:
                # A closed shard ends its restriction unless it adopts a child.
                drained = replace(drained, finished=True)
        if not call.claim(drained):
            return False
        call.forget(shard_id)
        self._shards_drained.inc()
        self._children_adopted.inc(len(children))
        _LOG.info("Stream %s: shard %s is closed and drained", call.stream, shard_id)
        if children:
            _LOG.info("Stream %s: reading shards %s", call.stream, ", ".join(children))
        return not call.state.finished

    def _when_idle(self, call: _Call) -> _Next:
        """After a round with no record: end on the idle bound, wait, or checkpoint."""
        state = call.state
        quiet_since = state.quiet_since if state.quiet_since is not None else time.time()
        if (
            self._idle_timeout is not None
            and time.time() - quiet_since >= self._idle_timeout.total_seconds()
        ):
            call.finish()
            return _Next.STOP
        if not all(call.caught_up.get(p.shard_id, False) for p in state.shards):
            return _Next.READ_ON
        backoff = max(call.throttled_until.values(), default=0.0) - time.monotonic()
        wait = max(self._poll_interval.total_seconds(), backoff)
        if self._bounded:
            # A bounded read (a test or demo) waits here rather than
            # checkpointing: the local FnApiRunner does not hold the
            # watermark for a delayed residual, so downstream event-time
            # timers would fire to the end of time before the records
            # still to come are read.
            _STOP.wait(wait)
            return _Next.POLL_AGAIN
        call.tracker.defer_remainder(Duration.of(wait))
        return _Next.STOP
