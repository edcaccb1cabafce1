"""What the sinks share: the warehouse flag, writing per bundle, and rejected records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from schemas.generate import table_of
from schemas.records import DeadLetter
from schemas.rows import RowValidationError, validate
from transforms.domain.events import make_dead_letter
from transforms.sinks.contract import Flag

#: `--warehouse` selects the warehouse: `bigquery:PROJECT.DATASET`, else a DuckDB file.
BIGQUERY_PREFIX = "bigquery:"
DEFAULT_WAREHOUSE = "out/warehouse.duckdb"
WAREHOUSE = Flag(
    "warehouse",
    "Where the analytics tables and dead letters go: a DuckDB file (created with "
    "its folder if missing; it also receives every output without a sink of its own) "
    "or bigquery:PROJECT.DATASET (dataset, tables and views created when missing; "
    "file loads through --temp_location for the backfill, streaming inserts for the "
    "streaming job; every other output then needs its own sink, since BigQuery gets "
    "no personal data). Rows are upserted or de-duplicated by natural key, so re-runs "
    "are harmless. Default: %(default)s.",
    default=DEFAULT_WAREHOUSE,
)

#: The reason of every dead letter for a record that fails `schemas.rows.validate`.
INVALID_ROW = "invalid_row"


def rejected_record(
    record: object,
    *,
    step: str,
    reason: str,
    error: str,
    source: str,
    event_id: str | None = None,
    raw: str | None = None,
) -> DeadLetter:
    """The dead letter of a record a writer could not write.

    Its raw text is `raw`, by default the record's dataclass repr, which is
    deterministic, so a replay upserts the same letter.
    """
    return make_dead_letter(
        step=step,
        reason=reason,
        error=error,
        raw=repr(record) if raw is None else raw,
        source=source,
        event_id=event_id,
    )


def invalid_row(
    record: Any,
    *,
    step: str,
    source: str,
    event_id: str | None = None,
    raw: str | None = None,
    strict: bool = False,
) -> DeadLetter | None:
    """None when the record passes `schemas.rows.validate`, else its dead letter.

    The letter's reason is `INVALID_ROW` and its error `<table>.<column>:
    <rule>`; `step`, `source`, `event_id` and `raw` as for `rejected_record`.
    `strict` raises `RowValidationError` instead: for the dead letters
    themselves, which have nowhere further to go.
    """
    try:
        validate(record)
    except RowValidationError as error:
        if strict:
            raise
        record_type: type = type(record)
        return rejected_record(
            record,
            step=step,
            reason=INVALID_ROW,
            error=f"{table_of(record_type).name}.{error}",
            source=source,
            event_id=event_id,
            raw=raw,
        )
    return None


@dataclass(frozen=True)
class RecordCheck:
    """What a writer checks of each record of one collection before writing it.

    Calling it raises TypeError for a record of another type than
    `record_type` (a wiring bug, not bad data; the message names `writer`)
    and returns `invalid_row`'s dead letter, or None for a valid record.
    """

    record_type: type
    writer: str
    step: str
    source: str
    strict: bool = False

    def __call__(self, record: Any) -> DeadLetter | None:
        if type(record) is not self.record_type:
            raise TypeError(
                f"{self.writer}: a {type(record).__name__} in the "
                f"{self.record_type.__name__} collection"
            )
        return invalid_row(record, step=self.step, source=self.source, strict=self.strict)


T = TypeVar("T")


@dataclass
class Buffered(Generic[T]):
    """An element held until its bundle's batch is written, with its timestamp and window."""

    element: T
    timestamp: Timestamp
    window: BoundedWindow

    def output(self, tag: str, value: object) -> TaggedOutput:
        """A tagged output in the element's timestamp and window.

        A batch is also written from `finish_bundle`, where Beam knows no
        input element, so each output carries its input's explicitly.
        """
        return TaggedOutput(tag, WindowedValue(value, self.timestamp, (self.window,)))


class WriteInBatches(beam.DoFn):
    """A DoFn that buffers its bundle's elements and writes them `batch_size` at a time.

    A subclass implements `write_batch(batch)`, which yields the batch's
    outputs (`Buffered.output`); the batch is at most `batch_size` elements,
    the last one of a bundle fewer. `entry_type` is what each element is
    held in: a subclass of `Buffered` may carry more per element.
    """

    entry_type: ClassVar[type[Buffered[Any]]] = Buffered

    def __init__(self, batch_size: int) -> None:
        self._batch_size = batch_size
        self._buffer: list[Any] = []

    def start_bundle(self) -> None:
        self._buffer = []

    def process(
        self,
        element: Any,
        timestamp: Timestamp = beam.DoFn.TimestampParam,  # type: ignore[assignment]
        window: BoundedWindow = beam.DoFn.WindowParam,  # type: ignore[assignment]
    ) -> Iterator[TaggedOutput]:
        self._buffer.append(self.entry_type(element, timestamp, window))
        if len(self._buffer) >= self._batch_size:
            yield from self._write_buffer()

    def finish_bundle(self) -> Iterator[TaggedOutput]:
        yield from self._write_buffer()

    def _write_buffer(self) -> Iterator[TaggedOutput]:
        batch, self._buffer = self._buffer, []
        if batch:
            yield from self.write_batch(batch)

    def write_batch(self, batch: list[Any]) -> Iterator[TaggedOutput]:
        raise NotImplementedError
