"""Tests of the decoding step: the pure `decode_record` and the `DecodeEvents` composite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.pvalue import TaggedOutput
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.timestamp import Timestamp

from tests.builders import eventbridge_envelope, stripe_event_document
from transforms.domain.events import SourceRecord, StripeEvent, make_dead_letter
from transforms.sources import decode
from transforms.sources.decode import (
    INVALID_EVENT,
    INVALID_JSON,
    NOT_AN_EVENT,
    DecodeError,
    DecodeEvents,
    decode_record,
)

CREATED = 1_733_440_007  # 2024-12-05T23:06:47Z
ENVELOPE_TIME = "2024-12-05T23:06:48Z"
ENVELOPE_ARRIVAL = datetime(2024, 12, 5, 23, 6, 48, tzinfo=UTC)
KINESIS_ARRIVAL = datetime(2024, 12, 5, 23, 6, 50, 123000, tzinfo=UTC)
ACCOUNT = "ed_test_61RkUK"
CHARGE = {"id": "ch_1", "object": "charge", "amount": 500, "currency": "gbp"}


def snapshot(event_id: str = "evt_1", **overrides: Any) -> dict[str, Any]:
    document = stripe_event_document(
        event_id, "charge.succeeded", dict(CHARGE), created=CREATED, livemode=False
    )
    document.update(overrides)
    return document


def thin(event_id: str = "evt_thin_1", **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": event_id,
        "object": "v2.core.event",
        "type": "v1.billing.meter.error_report_triggered",
        "livemode": True,
        "created": "2024-12-05T23:06:47.519Z",
        "related_object": {
            "id": "mtr_1",
            "type": "billing.meter",
            "url": "/v1/billing/meters/mtr_1",
        },
    }
    event.update(overrides)
    return event


def envelope(detail: Any, **overrides: Any) -> dict[str, Any]:
    return eventbridge_envelope(
        detail,
        envelope_id="0f5a3a0e-1d6c-4f2a-9a8b-3c1e2d4f5a6b",
        account=ACCOUNT,
        time=ENVELOPE_TIME,
        detail_type="charge.succeeded",
        resources=[f"arn:aws:events:eu-west-1::event-source/aws.partner/stripe.com/{ACCOUNT}"],
        **overrides,
    )


def record(document: Any, arrival: datetime | None = None) -> SourceRecord:
    return SourceRecord(data=json.dumps(document).encode(), source="test@0", arrival=arrival)


def charge_event(
    *, event_id: str = "evt_1", account: str | None, arrival: datetime | None
) -> StripeEvent:
    return StripeEvent(
        id=event_id,
        type="charge.succeeded",
        created=CREATED,
        livemode=False,
        api_version="2024-06-20",
        account=account,
        data_object=CHARGE,
        previous_attributes=None,
        source="test@0",
        arrival=arrival,
    )


THIN_EVENT = StripeEvent(
    id="evt_thin_1",
    type="v1.billing.meter.error_report_triggered",
    created=CREATED,
    livemode=True,
    api_version=None,
    account=None,
    data_object={},
    previous_attributes=None,
    source="test@0",
    arrival=None,
    thin=True,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            record(envelope(snapshot())),
            charge_event(account=ACCOUNT, arrival=ENVELOPE_ARRIVAL),
            id="envelope",
        ),
        pytest.param(
            record(envelope(snapshot(), **{"replay-name": "backfill-2024-12"})),
            charge_event(account=ACCOUNT, arrival=ENVELOPE_ARRIVAL),
            id="envelope-replayed",
        ),
        pytest.param(
            record(envelope(snapshot()), arrival=KINESIS_ARRIVAL),
            charge_event(account=ACCOUNT, arrival=KINESIS_ARRIVAL),
            id="kinesis-arrival-overrides-envelope-time",
        ),
        pytest.param(
            record(envelope(snapshot(), source="aws.events.replay")),
            charge_event(account=None, arrival=ENVELOPE_ARRIVAL),
            id="envelope-not-from-partner-source",
        ),
        pytest.param(
            record(snapshot()),
            charge_event(account=None, arrival=None),
            id="bare-event",
        ),
        pytest.param(
            record(
                snapshot(
                    type="charge.refunded",
                    data={"object": dict(CHARGE), "previous_attributes": {"amount_refunded": 0}},
                )
            ),
            StripeEvent(
                id="evt_1",
                type="charge.refunded",
                created=CREATED,
                livemode=False,
                api_version="2024-06-20",
                account=None,
                data_object=CHARGE,
                previous_attributes={"amount_refunded": 0},
                source="test@0",
                arrival=None,
            ),
            id="bare-event-with-previous-attributes",
        ),
        pytest.param(record(thin()), THIN_EVENT, id="thin-event"),
        pytest.param(
            record(envelope(thin())),
            StripeEvent(**{**THIN_EVENT.__dict__, "account": ACCOUNT, "arrival": ENVELOPE_ARRIVAL}),
            id="thin-event-in-envelope",
        ),
    ],
)
def test_decode_record_decodes_every_event_shape(
    given: SourceRecord, expected: StripeEvent
) -> None:
    assert decode_record(given) == expected


@pytest.mark.parametrize(
    ("data", "reason", "message", "event_id"),
    [
        pytest.param(b"\xff{}", INVALID_JSON, "not UTF-8 at byte 0", None, id="not-utf8"),
        pytest.param(
            b'{"id": "evt_1"',
            INVALID_JSON,
            "not JSON: Expecting ',' delimiter: line 1 column 15 (char 14)",
            None,
            id="truncated-json",
        ),
        pytest.param(b"[1, 2]", NOT_AN_EVENT, "JSON list, not an object", None, id="json-array"),
        pytest.param(
            json.dumps({"id": "ch_1", "object": "charge"}).encode(),
            NOT_AN_EVENT,
            "neither an EventBridge envelope nor a Stripe event",
            None,
            id="other-stripe-object",
        ),
        pytest.param(
            json.dumps(envelope("not an object")).encode(),
            INVALID_EVENT,
            "envelope without an object `detail`",
            None,
            id="envelope-detail-not-object",
        ),
        pytest.param(
            json.dumps(envelope({"id": "evt_1", "object": "charge"})).encode(),
            INVALID_EVENT,
            "envelope `detail` is not a Stripe event",
            "evt_1",
            id="envelope-detail-not-event",
        ),
        pytest.param(
            json.dumps({k: v for k, v in snapshot().items() if k != "id"}).encode(),
            INVALID_EVENT,
            "id: missing",
            None,
            id="no-id",
        ),
        pytest.param(
            json.dumps(snapshot(event_id="ch_1")).encode(),
            INVALID_EVENT,
            "id: expected `str` matching regex '^evt_[A-Za-z0-9_]+$'",
            None,
            id="id-not-evt",
        ),
        pytest.param(
            json.dumps(snapshot(type=None)).encode(),
            INVALID_EVENT,
            "type: expected `str`, got `null`",
            "evt_1",
            id="no-type",
        ),
        pytest.param(
            json.dumps(snapshot(created="1733440007")).encode(),
            INVALID_EVENT,
            "created: expected `int`, got `str`",
            "evt_1",
            id="created-not-int",
        ),
        pytest.param(
            json.dumps(snapshot(created=True)).encode(),
            INVALID_EVENT,
            "created: expected `int`, got `bool`",
            "evt_1",
            id="created-bool",
        ),
        pytest.param(
            json.dumps(snapshot(data={"object": "ch_1"})).encode(),
            INVALID_EVENT,
            "data.object: not an object",
            "evt_1",
            id="data-object-not-object",
        ),
        pytest.param(
            json.dumps(envelope(snapshot(data=None))).encode(),
            INVALID_EVENT,
            "data.object: not an object",
            "evt_1",
            id="envelope-without-data",
        ),
        pytest.param(
            json.dumps(thin(created="yesterday")).encode(),
            INVALID_EVENT,
            "created: not an ISO timestamp",
            "evt_thin_1",
            id="thin-created-not-iso",
        ),
    ],
)
def test_decode_record_rejects_with_reason(
    data: bytes, reason: str, message: str, event_id: str | None
) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_record(SourceRecord(data=data, source="test@0"))
    assert (raised.value.reason, raised.value.message, raised.value.event_id) == (
        reason,
        message,
        event_id,
    )


class _IdAndTimestamp(beam.DoFn):
    def process(
        self,
        event: StripeEvent,
        # Beam's parameter markers are not Timestamps; mypy cannot know Beam swaps them.
        timestamp: Timestamp = beam.DoFn.TimestampParam,  # type: ignore[assignment]
    ) -> Iterator[tuple[str, Timestamp]]:
        yield event.id, timestamp


def test_decode_events_splits_events_and_dead_letters_and_stamps_created() -> None:
    good = record(envelope(snapshot("evt_1")), arrival=KINESIS_ARRIVAL)
    later = SourceRecord(
        data=json.dumps(snapshot("evt_2", created=CREATED + 60)).encode(), source="test@1"
    )
    not_json = SourceRecord(data=b"\xff\xfe not json", source="test@2", arrival=KINESIS_ARRIVAL)
    not_event = SourceRecord(data=b'{"hello": "world"}', source="test@3")

    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        result = (
            pipeline
            | "CreateRecords" >> beam.Create([good, later, not_json, not_event])
            | "Decode" >> DecodeEvents()
        )
        assert_that(
            result.events,
            equal_to(
                [
                    charge_event(account=ACCOUNT, arrival=KINESIS_ARRIVAL),
                    StripeEvent(
                        id="evt_2",
                        type="charge.succeeded",
                        created=CREATED + 60,
                        livemode=False,
                        api_version="2024-06-20",
                        account=None,
                        data_object=CHARGE,
                        previous_attributes=None,
                        source="test@1",
                        arrival=None,
                    ),
                ]
            ),
            label="CheckEvents",
        )
        assert_that(
            result.events | "IdAndTimestamp" >> beam.ParDo(_IdAndTimestamp()),
            equal_to([("evt_1", Timestamp(CREATED)), ("evt_2", Timestamp(CREATED + 60))]),
            label="CheckEventTimestamps",
        )
        assert_that(
            result.dead_letters,
            equal_to(
                [
                    make_dead_letter(
                        step="decode",
                        reason=INVALID_JSON,
                        error="not UTF-8 at byte 0",
                        raw="\ufffd\ufffd not json",
                        source="test@2",
                        time=KINESIS_ARRIVAL,
                    ),
                    make_dead_letter(
                        step="decode",
                        reason=NOT_AN_EVENT,
                        error="neither an EventBridge envelope nor a Stripe event",
                        raw='{"hello": "world"}',
                        source="test@3",
                    ),
                ]
            ),
            label="CheckDeadLetters",
        )


def test_an_unexpected_failure_is_a_dead_letter_not_a_stopped_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing(record: SourceRecord) -> StripeEvent:
        raise KeyError("reader@example.com")

    monkeypatch.setattr(decode, "decode_record", failing)
    data = json.dumps(snapshot("evt_1")).encode()

    (output,) = decode._DecodeRecordFn().process(SourceRecord(data=data, source="f.gz@120"))

    assert isinstance(output, TaggedOutput)
    assert output.tag == decode.DEAD_LETTERS_TAG
    letter = output.value
    line = failing.__code__.co_firstlineno + 1
    assert (letter.step, letter.reason, letter.error, letter.raw, letter.source) == (
        "decode",
        "unexpected_error",
        f"KeyError at tests/transforms/sources/test_decode.py:{line} in failing: '[redacted]'",
        data.decode(),
        "f.gz@120",
    )
