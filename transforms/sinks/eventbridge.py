"""Publish acquisitions on the acquisitions event bus, exactly once per paid payment.

`PublishAcquisitions(bus, ledger_table, source=...)` takes a `PCollection`
of `AcquisitionEvent` (the exact `Detail` JSON in `message`), bounded or
unbounded, and returns `SendResult` (`transforms.sinks.ledger`): `sent` and
`already_sent` payment ids, and a `DeadLetter` (step
`send_acquisition_event`, `raw` the Detail) for every event not published.

Each event is one `PutEvents` entry: `EventBusName` the bus (name or ARN),
`Source` (default `payment-api.1`, what today's rules match), `DetailType`
`AcquisitionsEvent`, `Detail` the AcquisitionDataRow JSON; `Time` is left to
EventBridge (the call's time, as today). Entries go in batches of at most
10 and 256 KB (AWS counts Source, DetailType, Detail and the bus name in
UTF-8; 14 bytes more are reserved for a Time); an entry the service reports
failed was not put, so it is retried with backoff, as are throttled or
refused calls.

EventBridge has no deduplication: delivery is exactly once through the
ledger (`kind#payment_id` with kind `acquisition_event`), and an event
whose earlier attempt may have gone out (a lost answer, a crash between
put and mark) becomes an `outcome_unknown` dead letter, never a second
event. `check_event_bus` (pre-launch and in `DoFn.setup()`) raises
`ConfigurationError` when the bus does not exist: the job never creates it.

A refund or a dispute publishes nothing: today's payment API does not
either.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import boto3
import botocore.exceptions

from schemas.records import AcquisitionEvent
from transforms.infrastructure import (
    CLIENT_CONFIG,
    DEFAULT_BACKOFF,
    RETRYING_CLIENT_CONFIG,
    Backoff,
    ConfigurationError,
    error_code,
    naming_flag,
)
from transforms.sinks.contract import SEND_ALL, Flag, MessageWindow, Sink, SinkConfig
from transforms.sinks.ledger import (
    SENT_MESSAGES_TABLE,
    BatchOutcome,
    Entry,
    SendExactlyOnceFn,
    SendResult,
    check_ledger,
    check_ledger_given,
    send_exactly_once,
)

ACQUISITION_EVENT = "acquisition_event"
DEFAULT_SOURCE = "payment-api.1"
DETAIL_TYPE = "AcquisitionsEvent"
#: PutEvents takes at most 10 entries and 256 KB per call.
MAX_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024
#: What AWS adds to an entry's size for its Time.
_TIME_BYTES = 14


def check_event_bus(bus: str, client: Any | None = None) -> None:
    """Raise `ConfigurationError` unless the event bus (name or ARN) exists."""
    client = client or boto3.session.Session().client("events", config=RETRYING_CLIENT_CONFIG)
    try:
        client.describe_event_bus(Name=bus)
    except botocore.exceptions.ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            raise ConfigurationError(
                f"the EventBridge bus {bus!r} does not exist; the job does not create it: "
                "check the name, region and endpoint, or create the bus"
            ) from None
        raise


def entry_size(bus: str, source: str, detail: str) -> int:
    """An entry's size as PutEvents counts it."""
    return sum(len(part.encode()) for part in (bus, source, DETAIL_TYPE, detail)) + _TIME_BYTES


class _EventBridgeTransport:
    def __init__(self, bus: str, source: str) -> None:
        self._bus = bus
        self._source = source
        self.target = "events:" + bus.rsplit("/", 1)[-1]
        self.deduplicates = False
        self._client: Any = None

    def setup(self) -> None:
        self._client = boto3.session.Session().client("events", config=CLIENT_CONFIG)
        check_event_bus(self._bus, self._client)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    def batches(self, entries: Sequence[Entry]) -> Iterator[list[Entry]]:
        batch: list[Entry] = []
        size = 0
        for entry in entries:
            this = entry_size(self._bus, self._source, entry.record.message)
            if batch and (len(batch) == MAX_ENTRIES or size + this > MAX_BATCH_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(entry)
            size += this
        if batch:
            yield batch

    def send(self, kind: str, batch: Sequence[Entry]) -> BatchOutcome:
        response = self._client.put_events(
            Entries=[
                {
                    "EventBusName": self._bus,
                    "Source": self._source,
                    "DetailType": DETAIL_TYPE,
                    "Detail": entry.record.message,
                }
                for entry in batch
            ]
        )
        outcome = BatchOutcome()
        # The answer lists one result per entry, in order.
        for position, result in enumerate(response.get("Entries", [])):
            if result.get("EventId"):
                outcome.sent.append(position)
            else:
                code = result.get("ErrorCode") or "Failed"
                outcome.retry[position] = f"{code}: {result.get('ErrorMessage', '')}"
        for position in range(len(response.get("Entries", [])), len(batch)):
            outcome.retry[position] = "NoResult: the answer listed no result for this entry"
        return outcome


class PublishAcquisitions(beam.PTransform[beam.PCollection[AcquisitionEvent], SendResult]):
    """`PCollection[AcquisitionEvent]` -> `SendResult`; see the module docstring.

    `window`: which events are published (by their `created`); the others are
    counted (`transforms.sinks.ledger`). The default publishes all.
    """

    def __init__(
        self,
        bus: str,
        ledger_table: str | None,
        *,
        source: str = DEFAULT_SOURCE,
        backoff: Backoff = DEFAULT_BACKOFF,
        window: MessageWindow = SEND_ALL,
    ) -> None:
        super().__init__()
        if not bus:
            raise ValueError("bus is required")
        if not source:
            raise ValueError("source must not be empty")
        if ledger_table == "":
            raise ValueError("ledger_table must be a table name or None")
        self._bus = bus
        self._source = source
        self._ledger_table = ledger_table
        self._backoff = backoff
        self._window = window

    def expand(self, events: beam.PCollection[AcquisitionEvent]) -> SendResult:
        fn = SendExactlyOnceFn(
            _EventBridgeTransport(self._bus, self._source),
            ACQUISITION_EVENT,
            self._ledger_table,
            self._backoff,
            window=self._window,
        )
        return send_exactly_once(events, "PutEvents", fn)


ACQUISITIONS_BUS = Flag(
    "acquisitions_bus",
    "EventBridge bus name or ARN (today's acquisitions bus of the stage) to publish one "
    "AcquisitionsEvent per paid payment to, exactly once through --sent_messages_table. "
    "Default: the warehouse's acquisition_events table.",
)
ACQUISITIONS_SOURCE = Flag(
    "acquisitions_source",
    "The bus events' Source, which today's rules match. Default: %(default)s.",
    default=DEFAULT_SOURCE,
)


def _check(config: SinkConfig) -> None:
    with naming_flag(ACQUISITIONS_BUS.option):
        check_event_bus(str(config[ACQUISITIONS_BUS.name]))
    check_ledger(config)


def _write(config: SinkConfig, pcolls: Mapping[type, beam.PCollection]) -> beam.PCollection:
    published = pcolls[AcquisitionEvent] | "PublishAcquisitions" >> PublishAcquisitions(
        str(config[ACQUISITIONS_BUS.name]),
        config[SENT_MESSAGES_TABLE.name],
        source=str(config[ACQUISITIONS_SOURCE.name] or DEFAULT_SOURCE),
        window=config.messages,
    )
    return published.dead_letters


#: The acquisitions event bus: `--acquisitions_bus`.
SINK = Sink(
    name="acquisitions bus",
    flags=(ACQUISITIONS_BUS, ACQUISITIONS_SOURCE, SENT_MESSAGES_TABLE),
    write=_write,
    takes=(AcquisitionEvent,),
    check_flags=check_ledger_given,
    check=_check,
    sends=(ACQUISITION_EVENT,),
)
