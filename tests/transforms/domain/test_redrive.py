"""Which kind of letter a dead letter is, and which payment an event belongs to."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import charge_object, event, payment_intent_object, session_object
from transforms.domain.events import make_dead_letter
from transforms.domain.redrive import (
    Kind,
    charge_id_of_letter,
    charge_payment_intent,
    kind_of,
    payment_intent_of,
    payment_intent_of_letter,
    raw_is_record,
    sender_kind,
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


#: The DynamoDB writer's letter: the item as JSON, which names the charge but no PaymentIntent.
SUPPORTER_ITEM = (
    '{"identity_id": "1001", "payment_id": "ch_4", "subscription_name": "Stripe - ch_4"}'
)


@pytest.mark.parametrize(
    ("step", "source", "raw", "charge"),
    [
        pytest.param(
            "write_supporter_item", "dynamodb:t/Stripe - ch_4", SUPPORTER_ITEM, "ch_4", id="item"
        ),
        pytest.param(
            "write_supporter_item",
            "dynamodb:t/Stripe - py_4",
            '{"identity_id": "[redacted]"}',
            "py_4",
            id="redacted-bank-debit",
        ),
        pytest.param("write_supporter_item", "dynamodb:t/1001", "x", None, id="no-charge"),
        pytest.param("write_contributions_store", "c:t/ch_1", STORE_ROW, None, id="names-its-pi"),
        pytest.param(
            "send_thank_you_email",
            "sqs:https://sqs.eu-west-1.amazonaws.com/1/q.fifo/ch_1",
            "x",
            "ch_1",
            id="sender",
        ),
        pytest.param("send_acquisition_event", "events:bus/py_2", "x", "py_2", id="bus-sender"),
        pytest.param("send_thank_you_email", "sqs:q/ch_1/x", "x", None, id="sender-no-charge"),
    ],
)
def test_charge_id_of_a_writers_or_senders_letter_naming_no_payment_intent(
    step: str, source: str, raw: str, charge: str | None
) -> None:
    letter = make_dead_letter(step=step, reason="rejected", error="e", raw=raw, source=source)
    assert charge_id_of_letter(letter) == charge
    if charge is not None:
        assert kind_of(letter) is Kind.PAYMENT
        assert payment_intent_of_letter(letter) is None
    elif step.startswith("send_"):
        assert kind_of(letter) is Kind.NOT_REDRIVABLE


@pytest.mark.parametrize(
    ("reason", "kind", "message_kind"),
    [
        pytest.param("rejected", Kind.PAYMENT, "thank_you_email", id="rejected"),
        pytest.param("retries_exhausted", Kind.PAYMENT, "thank_you_email", id="exhausted"),
        pytest.param("ledger_error", Kind.PAYMENT, "thank_you_email", id="ledger-error"),
        pytest.param(
            "outcome_unknown", Kind.OUTCOME_UNKNOWN, "thank_you_email", id="may-have-gone"
        ),
    ],
)
def test_a_senders_letter_is_redriven_as_its_payment_only_when_nothing_was_sent(
    reason: str, kind: Kind, message_kind: str | None
) -> None:
    letter = make_dead_letter(
        step="send_thank_you_email", reason=reason, error="e", raw="{}", source="sqs:q/ch_1"
    )
    assert kind_of(letter) is kind
    assert sender_kind(letter) == message_kind
    assert charge_id_of_letter(letter) == "ch_1"


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        pytest.param("sqs:q/ch_1", Kind.OUTCOME_UNKNOWN, id="names-its-charge"),
        pytest.param("sqs:q/ch_1/x", Kind.NOT_REDRIVABLE, id="names-no-charge"),
    ],
)
def test_an_outcome_unknown_letter_is_its_own_kind_only_when_it_names_its_charge(
    source: str, kind: Kind
) -> None:
    letter = make_dead_letter(
        step="send_thank_you_email", reason="outcome_unknown", error="e", raw="{}", source=source
    )
    assert kind_of(letter) is kind


@pytest.mark.parametrize(
    ("event_type", "data_object", "expected"),
    [
        pytest.param(
            "charge.succeeded",
            charge_object(charge_id="ch_4", payment_intent="pi_7"),
            ("ch_4", "pi_7"),
            id="charge",
        ),
        pytest.param(
            "charge.dispute.created",
            {"id": "dp_1", "object": "dispute", "charge": "ch_4", "payment_intent": "pi_7"},
            ("ch_4", "pi_7"),
            id="dispute",
        ),
        pytest.param(
            "checkout.session.completed",
            session_object(payment_intent="pi_7"),
            None,
            id="session-names-no-charge",
        ),
        pytest.param(
            "charge.succeeded",
            {**charge_object(charge_id="ch_4"), "payment_intent": None},
            None,
            id="charge-without-intent",
        ),
    ],
)
def test_charge_payment_intent_of_event(
    event_type: str, data_object: dict[str, Any], expected: tuple[str, str] | None
) -> None:
    assert charge_payment_intent(event("evt_1", event_type, data_object)) == expected
