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
required field missing or malformed).
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

from schemas.records import DeadLetter
from transforms.core import metrics
from transforms.domain.events import SourceRecord, StripeEvent, make_dead_letter

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
    document = _parse(record.data)
    if not isinstance(document, dict):
        raise DecodeError(NOT_AN_EVENT, f"JSON {type(document).__name__}, not an object")

    if "detail-type" in document or ("detail" in document and "source" in document):
        return _from_envelope(document, record)
    kind = document.get("object")
    if kind == _SNAPSHOT_OBJECT:
        return _from_snapshot(document, account=None, source=record.source, arrival=record.arrival)
    if kind == _THIN_OBJECT:
        return _from_thin(document, account=None, source=record.source, arrival=record.arrival)
    raise DecodeError(NOT_AN_EVENT, "neither an EventBridge envelope nor a Stripe event")


def _parse(data: bytes) -> Any:
    """The JSON document in `data`, as `json.loads` of its UTF-8 text gives it.

    orjson first, several times faster; what it refuses (not UTF-8, not JSON,
    NaN, lone surrogates, ...) goes through the standard library, whose
    verdict and error message stand.
    """
    if _LONG_DIGITS not in data.translate(_DIGITS_TO_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DecodeError(INVALID_JSON, f"not UTF-8 at byte {error.start}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        # JSONDecodeError's message holds only a position, never the payload.
        raise DecodeError(INVALID_JSON, f"not JSON: {error}") from None


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
    event_id = _require_event_id(event)
    event_type = _require_type(event, event_id)
    created = event.get("created")
    # bool is an int subclass; `true` is never a timestamp.
    if not isinstance(created, int) or isinstance(created, bool):
        raise DecodeError(INVALID_EVENT, "`created` is not an integer", event_id=event_id)
    data = event.get("data")
    data_object = data.get("object") if isinstance(data, dict) else None
    if not isinstance(data_object, dict):
        raise DecodeError(INVALID_EVENT, "`data.object` is not an object", event_id=event_id)
    previous = data.get("previous_attributes") if isinstance(data, dict) else None
    return StripeEvent(
        id=event_id,
        type=event_type,
        created=created,
        livemode=event.get("livemode") is True,
        api_version=_optional_str(event.get("api_version")),
        account=account,
        data_object=data_object,
        previous_attributes=previous if isinstance(previous, dict) else None,
        source=source,
        arrival=arrival,
    )


def _from_thin(
    event: Mapping[str, Any], *, account: str | None, source: str, arrival: datetime | None
) -> StripeEvent:
    event_id = _require_event_id(event)
    event_type = _require_type(event, event_id)
    created_at = _parse_time(event.get("created"))
    if created_at is None:
        raise DecodeError(INVALID_EVENT, "`created` is not an ISO timestamp", event_id=event_id)
    return StripeEvent(
        id=event_id,
        type=event_type,
        created=math.floor(created_at.timestamp()),
        livemode=event.get("livemode") is True,
        api_version=_optional_str(event.get("api_version")),
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


def _require_event_id(event: Mapping[str, Any]) -> str:
    event_id = _event_id(event)
    if event_id is None:
        raise DecodeError(INVALID_EVENT, "`id` missing or not an evt_ id")
    return event_id


def _require_type(event: Mapping[str, Any], event_id: str) -> str:
    value = event.get("type")
    if not isinstance(value, str) or not value:
        raise DecodeError(INVALID_EVENT, "`type` missing", event_id=event_id)
    return value


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


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
            for reason in DECODE_REASONS
        }

    def process(self, record: SourceRecord) -> Iterator[TimestampedValue | TaggedOutput]:
        self._records_read.inc()
        try:
            event = decode_record(record)
        except DecodeError as error:
            self._dead_lettered[error.reason].inc()
            yield TaggedOutput(
                DEAD_LETTERS_TAG,
                make_dead_letter(
                    step=DECODE_STEP,
                    reason=error.reason,
                    error=error.message,
                    raw=record.data.decode("utf-8", errors="replace"),
                    source=record.source,
                    event_id=error.event_id,
                    time=record.arrival,
                ),
            )
            return
        yield TimestampedValue(event, event.created)


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
