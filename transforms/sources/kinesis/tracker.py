"""The restriction tracker and provider of the Kinesis read (Beam's SDF API).

`StreamTracker` claims each next `StreamRestriction` and splits only to
checkpoint; `StreamRestrictionProvider` gives one restriction per stream, or
one per shard readable at start when the stream has a coordination table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.transforms.core import RestrictionProvider

from transforms.infrastructure import dynamodb_client
from transforms.sources.kinesis import client
from transforms.sources.kinesis.coordination import ShardCoordinator, coordinated_start
from transforms.sources.kinesis.shards import KinesisStream, StreamRestriction


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
        listing = client.list_shards(client.kinesis_client(), element.stream)
        state = coordinated_start(restriction, element.stream, listing, coordinator, time.time())
        if not state.shards:
            yield replace(state, finished=True)
            return
        for position in state.shards:
            yield replace(state, shards=(position,))
