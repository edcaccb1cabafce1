"""Decode raw source records into Stripe events; everything else becomes a dead letter.

`decode_record` is the pure core (`SourceRecord -> StripeEvent`, raising
`DecodeError`); `DecodeEvents` adapts it to Beam: metrics, output tags and the
event timestamp. Both the streaming job (Kinesis) and the backfill (the S3
archive, `transforms.sources.archive.ReadArchive`) go through `DecodeEvents`, so event
time is assigned in exactly one place: each event is timestamped with its
Stripe `created`.

Three shapes are accepted, read defensively because the payload follows the
API version pinned on each event destination:

- an EventBridge envelope (`detail-type` / `detail` / `source`) whose `detail`
  is a Stripe event; `account` comes from the partner source
  (`aws.partner/stripe.com/ed_...`), `arrival` from the envelope `time` unless
  the record carries its own arrival (Kinesis), which wins;
- a bare snapshot event (`"object": "event"`), as exported from Stripe's API;
- a thin v2 event (`"object": "v2.core.event"`): `thin=True`, ISO `created`
  converted to epoch seconds, empty `data_object` (thin events carry no
  snapshot).

Dead-letter reasons: `invalid_json` (not UTF-8 or not JSON), `not_an_event`
(JSON, but none of the three shapes), `invalid_event` (one of the shapes with a
field the pipeline reads missing or breaking its schema in `schemas.stripe`,
or a string that is not Unicode text; the error names the field, e.g.
`created: expected `int` >= 1262304000`), and `unexpected_error` (any other
exception, from the DoFn's catch-all).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue

from schemas import stripe as payload
from schemas.records import DeadLetter
from transforms.core import metrics
from transforms.domain.events import (
    UNEXPECTED_ERROR,
    SourceRecord,
    StripeEvent,
    make_dead_letter,
    unexpected_dead_letter,
)

#: Beam metrics namespace shared by every stage that reads Stripe events.
METRICS_NAMESPACE = metrics.NAMESPACE

#: Output tag of the decoded `StripeEvent`s (the main output of the decode DoFn).
EVENTS_TAG = "events"
#: Output tag of the `DeadLetter`s for records that could not be decoded.
DEAD_LETTERS_TAG = "dead_letters"

#: `DeadLetter.step` of records rejected here.
DECODE_STEP = "decode"

INVALID_JSON = "invalid_json"
NOT_AN_EVENT = "not_an_event"
INVALID_EVENT = "invalid_event"
#: Every reason `decode_record` can raise; one `dead_lettered_<reason>` counter each.
DECODE_REASONS = (INVALID_JSON, NOT_AN_EVENT, INVALID_EVENT)

_SNAPSHOT_OBJECT = "event"
_THIN_OBJECT = "v2.core.event"
_PARTNER_SOURCE = re.compile(r"^aws\.partner/stripe\.com/(ed_[A-Za-z0-9_]+)$")
# orjson reads an integer above 2**64 - 1 (20 digits or more) as a float; the
# standard library keeps it exact, so records with 20 digits in a row take the
# standard way. Found by mapping every digit to "0" (bytes.translate and `in`
# are C loops; a regex took 100 ns per byte here).
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 20


class DecodeError(Exception):
    """A record that is not a usable Stripe event.

    `reason` is one of `DECODE_REASONS`; `message` describes the problem
    without quoting the payload (it ends up in dead letters and logs);
    `event_id` is the Stripe event id when it could be read.
    """

    def __init__(self, reason: str, message: str, event_id: str | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.event_id = event_id


class DecodeResult(NamedTuple):
    """The outputs of `DecodeEvents` and `ReadArchive`.

    A NamedTuple rather than a dataclass because Beam only records the named
    outputs of a composite when they are in a tuple, list or dict.
    """

    events: beam.PCollection[StripeEvent]
    dead_letters: beam.PCollection[DeadLetter]


def decode_record(record: SourceRecord) -> StripeEvent:
    """Decode one raw record into a `StripeEvent`.

    Raises `DecodeError` (reason `invalid_json`, `not_an_event` or
    `invalid_event`) when the record is not a usable Stripe event.
    """
    document, checked_text = _parse(record.data, record.parsed)
    if not isinstance(document, dict):
        raise DecodeError(NOT_AN_EVENT, f"JSON {type(document).__name__}, not an object")
    if not checked_text:
        where = _lone_surrogate(document, "")
        if where is not None:
            detail = document.get("detail")
            event_id = _event_id(detail if isinstance(detail, dict) else document)
            raise DecodeError(
                INVALID_EVENT, f"{where}: a lone surrogate, not Unicode text", event_id=event_id
            )

    if "detail-type" in document or ("detail" in document and "source" in document):
        return _from_envelope(document, record)
    kind = document.get("object")
    if kind == _SNAPSHOT_OBJECT:
        return _from_snapshot(document, account=None, source=record.source, arrival=record.arrival)
    if kind == _THIN_OBJECT:
        return _from_thin(document, account=None, source=record.source, arrival=record.arrival)
    raise DecodeError(NOT_AN_EVENT, "neither an EventBridge envelope nor a Stripe event")


def _parse(data: bytes, parsed: Any = None) -> tuple[Any, bool]:
    """The JSON document in `data`, as `json.loads` of its UTF-8 text gives it,
    and whether its strings are known to be Unicode text.

    orjson first, several times faster; what it refuses (not UTF-8, not JSON,
    NaN, lone surrogates, ...) goes through the standard library, whose
    verdict and error message stand. Only orjson rejects lone surrogates
    (`"\\ud800"`), which no writer (Parquet, BigQuery, Postgres) can store.
    `parsed` is orjson's document of `data` when the reader already made it.
    """
    if _LONG_DIGITS not in data.translate(_DIGITS_TO_ZERO):
        if parsed is not None:
            return parsed, True
        try:
            return orjson.loads(data), True
        except orjson.JSONDecodeError:
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DecodeError(INVALID_JSON, f"not UTF-8 at byte {error.start}") from None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        # JSONDecodeError's message holds only a position, never the payload.
        raise DecodeError(INVALID_JSON, f"not JSON: {error}") from None
    # A lone surrogate can only come from a \\u escape (the text is UTF-8).
    return document, "\\ud" not in text.lower()


def _lone_surrogate(value: Any, path: str) -> str | None:
    """The path of the first key or string in `value` holding a lone surrogate."""
    if isinstance(value, str):
        return None if _is_text(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not _is_text(key):
                return path or "(top level)"
            found = _lone_surrogate(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _from_envelope(envelope: Mapping[str, Any], record: SourceRecord) -> StripeEvent:
    detail = envelope.get("detail")
    if not isinstance(detail, dict):
        raise DecodeError(INVALID_EVENT, "envelope without an object `detail`")
    source = envelope.get("source")
    match = _PARTNER_SOURCE.match(source) if isinstance(source, str) else None
    # Replays and custom buses keep Stripe's detail intact but may not carry a
    # partner source; the event is still good, only its account is unknown.
    account = match.group(1) if match else None
    arrival = record.arrival if record.arrival is not None else _parse_time(envelope.get("time"))
    kind = detail.get("object")
    if kind == _THIN_OBJECT:
        return _from_thin(detail, account=account, source=record.source, arrival=arrival)
    if kind == _SNAPSHOT_OBJECT:
        return _from_snapshot(detail, account=account, source=record.source, arrival=arrival)
    raise DecodeError(
        INVALID_EVENT, "envelope `detail` is not a Stripe event", event_id=_event_id(detail)
    )


def _from_snapshot(
    event: Mapping[str, Any], *, account: str | None, source: str, arrival: datetime | None
) -> StripeEvent:
    head = _head(event, payload.EventHead)
    data = event.get("data")
    data_object = data.get("object") if isinstance(data, dict) else None
    if not isinstance(data_object, dict):
        raise DecodeError(INVALID_EVENT, "data.object: not an object", event_id=head.id)
    previous = data.get("previous_attributes") if isinstance(data, dict) else None
    if previous is not None and not isinstance(previous, dict):
        raise DecodeError(
            INVALID_EVENT, "data.previous_attributes: not an object", event_id=head.id
        )
    return StripeEvent(
        id=head.id,
        type=head.type,
        created=head.created,
        livemode=head.livemode,
        api_version=head.api_version,
        account=account,
        data_object=data_object,
        previous_attributes=previous,
        source=source,
        arrival=arrival,
    )


def _from_thin(
    event: Mapping[str, Any], *, account: str | None, source: str, arrival: datetime | None
) -> StripeEvent:
    head = _head(event, payload.ThinEventHead)
    created_at = _parse_time(head.created)
    if created_at is None:
        raise DecodeError(INVALID_EVENT, "created: not an ISO timestamp", event_id=head.id)
    created = math.floor(created_at.timestamp())
    if not payload.EARLIEST <= created < payload.LATEST:
        raise DecodeError(INVALID_EVENT, "created: not within 2010-2100", event_id=head.id)
    return StripeEvent(
        id=head.id,
        type=head.type,
        created=created,
        livemode=head.livemode,
        api_version=head.api_version,
        account=account,
        data_object={},
        previous_attributes=None,
        source=source,
        arrival=arrival,
        thin=True,
    )


def _event_id(event: Mapping[str, Any]) -> str | None:
    value = event.get("id")
    return value if isinstance(value, str) and value.startswith("evt_") else None


def _head(event: Mapping[str, Any], schema: type[payload.S]) -> payload.S:
    """The event's own fields, checked against their schema (`schemas.stripe`)."""
    try:
        return payload.check(event, schema, "")
    except payload.PayloadError as error:
        raise DecodeError(INVALID_EVENT, str(error), event_id=_event_id(event)) from None


def _parse_time(value: object) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime; naive times are taken as UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class _DecodeRecordFn(beam.DoFn):
    """Adapts `decode_record`: timestamps events, tags and counts dead letters."""

    def __init__(self) -> None:
        self._records_read = Metrics.counter(METRICS_NAMESPACE, "records_read")
        self._dead_lettered = {
            reason: Metrics.counter(METRICS_NAMESPACE, f"dead_lettered_{reason}")
            for reason in (*DECODE_REASONS, UNEXPECTED_ERROR)
        }

    def process(self, record: SourceRecord) -> Iterator[TimestampedValue | TaggedOutput]:
        decoded = self.decoded(record)
        if isinstance(decoded, DeadLetter):
            yield TaggedOutput(DEAD_LETTERS_TAG, decoded)
        else:
            yield TimestampedValue(decoded, decoded.created)

    def decoded(self, record: SourceRecord) -> StripeEvent | DeadLetter:
        """The record's event, or its dead letter; counted. No event time: for a
        caller in one step with the reader that needs none (`ReadArchive`'s
        bounded path)."""
        self._records_read.inc()
        raw = record.data
        try:
            return decode_record(record)
        except DecodeError as error:
            self._dead_lettered[error.reason].inc()
            return make_dead_letter(
                step=DECODE_STEP,
                reason=error.reason,
                error=error.message,
                raw=raw.decode("utf-8", errors="replace"),
                source=record.source,
                event_id=error.event_id,
                time=record.arrival,
            )
        except Exception as error:
            # The catch-all: no record may stop a run (or stall a stream).
            self._dead_lettered[UNEXPECTED_ERROR].inc()
            return unexpected_dead_letter(
                step=DECODE_STEP,
                error=error,
                raw=raw.decode("utf-8", errors="replace"),
                source=record.source,
                time=record.arrival,
            )


class DecodeEvents(beam.PTransform[beam.PCollection[SourceRecord], DecodeResult]):
    """`PCollection[SourceRecord]` -> `DecodeResult(events, dead_letters)`.

    Bounded or unbounded, like its input. Every input record yields exactly one
    element on exactly one output:

    - `events` (tag `EVENTS_TAG`): `StripeEvent`s, each timestamped with its
      Stripe `created` (epoch seconds). This is the only place the pipeline
      assigns event time.
    - `dead_letters` (tag `DEAD_LETTERS_TAG`): `DeadLetter`s with step
      `decode`, the `DecodeError` reason, the record text (undecodable bytes
      replaced), the record's source and its arrival time.

    Counters (namespace `stripe_events`): `records_read` (every input record),
    `dead_lettered_<reason>` for each reason in `DECODE_REASONS`.
    """

    def expand(self, records: beam.PCollection[SourceRecord]) -> DecodeResult:
        outputs = records | "DecodeRecords" >> beam.ParDo(_DecodeRecordFn()).with_outputs(
            DEAD_LETTERS_TAG, main=EVENTS_TAG
        )
        return DecodeResult(events=outputs[EVENTS_TAG], dead_letters=outputs[DEAD_LETTERS_TAG])
