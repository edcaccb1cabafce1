"""Which kind of letter a dead letter is, and which payment an event belongs to."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import charge_object, event, payment_intent_object, session_object
from transforms.domain.events import make_dead_letter
from transforms.domain.redrive import (
    Kind,
    kind_of,
    payment_intent_of,
    payment_intent_of_letter,
    raw_is_record,
)

#: A writer's letter keeps the record it could not write, which names its PaymentIntent.
STORE_ROW = "ContributionStoreRecord(payment_intent_id='pi_9', charge_id='ch_1', amount=5.0)"


@pytest.mark.parametrize(
    ("step", "source", "raw", "kind", "raw_is_the_record"),
    [
        pytest.param("decode", "/a/f.gz@10", "x", Kind.RECORD, True, id="decode"),
        pytest.param("read", "s3://b/f.gz@0", "x", Kind.RECORD, True, id="read"),
        pytest.param("classify", "kinesis:s/shard/1", "x", Kind.RECORD, False, id="classify"),
        pytest.param("join_payment", "payment_intent:pi_9", "x", Kind.PAYMENT, False, id="payment"),
        pytest.param(
            "write_contributions_store",
            "contributions_store:contributions/ch_1",
            STORE_ROW,
            Kind.PAYMENT,
            False,
            id="writer",
        ),
        pytest.param(
            "write_bigquery",
            "bigquery:contributions",
            '{"payment_intent_id": "pi_9", "email": "[redacted]"}',
            Kind.PAYMENT,
            False,
            id="writer-redacted",
        ),
        pytest.param(
            "write_supporter_item",
            "dynamodb:t/1001",
            "SupporterItem(identity_id='1001')",
            Kind.NOT_REDRIVABLE,
            False,
            id="writer-without-payment",
        ),
        pytest.param(
            "send_thank_you_email",
            "https://q/ch_1",
            STORE_ROW,
            Kind.NOT_REDRIVABLE,
            False,
            id="sender",
        ),
    ],
)
def test_kind_of_letter(
    step: str, source: str, raw: str, kind: Kind, raw_is_the_record: bool
) -> None:
    letter = make_dead_letter(step=step, reason="r", error="e", raw=raw, source=source)
    assert kind_of(letter) is kind
    assert raw_is_record(letter) is raw_is_the_record
    assert payment_intent_of_letter(letter) == ("pi_9" if kind is Kind.PAYMENT else None)


@pytest.mark.parametrize(
    ("event_type", "data_object", "expected"),
    [
        pytest.param(
            "checkout.session.completed",
            session_object(payment_intent="pi_7"),
            "pi_7",
            id="session",
        ),
        pytest.param("charge.succeeded", charge_object(payment_intent="pi_7"), "pi_7", id="charge"),
        pytest.param(
            "payment_intent.succeeded",
            payment_intent_object(payment_intent_id="pi_7"),
            "pi_7",
            id="intent",
        ),
        pytest.param(
            "charge.refunded",
            {**charge_object(), "payment_intent": {"id": "pi_7", "object": "payment_intent"}},
            "pi_7",
            id="expanded",
        ),
        pytest.param(
            "checkout.session.completed",
            session_object(payment_intent=None, mode="setup"),
            None,
            id="setup-session",
        ),
        pytest.param("customer.created", {"id": "cus_1", "object": "customer"}, None, id="other"),
    ],
)
def test_payment_intent_of_event(
    event_type: str, data_object: dict[str, Any], expected: str | None
) -> None:
    assert payment_intent_of(event("evt_1", event_type, data_object)) == expected
