"""`transforms.core.state_coder`: the stored form of the streaming join's state."""

from __future__ import annotations

import dataclasses
import json
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from apache_beam.coders import PickleCoder

from tests.builders import ACCOUNT_UK, T0, charge_fact, intent_fact, session_fact
from transforms.core.process import JoinPaymentsFn
from transforms.core.state_coder import PaymentStateCoder, decode_state, encode_state
from transforms.domain.facts import ChargeFact, CustomerDetails, EventMeta, SessionFact
from transforms.domain.payment import PaymentState

PREVIOUS_LAYOUT = Path(__file__).parents[2] / "fixtures/state/payment_state_previous_layout.pickle"

#: What tests/fixtures/state/make_previous_layout.py wrote, in today's classes.
PREVIOUS_STATE = PaymentState(
    sessions=(
        SessionFact(
            meta=EventMeta("evt_s1", "checkout.session.completed", T0, True, ACCOUNT_UK),
            payment_intent_id="pi_1",
            session_id="cs_1",
            outcome="paid",
            amount_minor=500,
            currency="GBP",
            customer=CustomerDetails("reader1@example.com", "Ada Reader", "GB", "N1 9GU", "London"),
            metadata={"identityId": "1001", "referrerUrl": "https://example.com/a"},
            client_reference_id="ref_1",
            consent_promotions="opt_in",
            payment_method_types=("card", "link"),
        ),
    ),
    charges=(
        ChargeFact(
            meta=EventMeta("evt_c1", "charge.succeeded", T0 + 5, True, None),
            payment_intent_id="pi_1",
            charge_id="ch_1",
            succeeded=True,
            has_charge_object=True,
            card_country="US",
            payment_method="card",
        ),
    ),
    completed=True,
)


def test_reads_a_state_written_by_the_previous_layout() -> None:
    stored = PREVIOUS_LAYOUT.read_bytes()
    assert b"transforms.payment" in stored and b"transforms.facts" in stored
    assert PaymentStateCoder().decode(stored) == PREVIOUS_STATE


def test_the_join_stores_its_state_with_this_coder() -> None:
    assert isinstance(JoinPaymentsFn.STATE.coder, PaymentStateCoder)


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(PaymentState(), id="empty"),
        pytest.param(PREVIOUS_STATE, id="every-field-set"),
        pytest.param(
            dataclasses.replace(
                PREVIOUS_STATE,
                sessions=(
                    dataclasses.replace(
                        PREVIOUS_STATE.sessions[0],
                        custom_text_fields=(("given_name", "Zsófia"), ("note", "")),
                    ),
                ),
            ),
            id="custom-text-fields",
        ),
        pytest.param(
            PaymentState(
                sessions=(
                    session_fact(
                        "evt_s2",
                        account=None,
                        payment_status="unpaid",
                        metadata={},
                        email=None,
                        name=None,
                        country=None,
                        postal_code=None,
                        payment_method_types=(),
                    ),
                    session_fact(
                        "evt_s3",
                        event_type="checkout.session.async_payment_succeeded",
                        promotions="opt_in",
                        client_reference_id="ref_9",
                    ),
                ),
                charges=(
                    charge_fact(),
                    intent_fact(latest_charge=None),
                    charge_fact("evt_f", event_type="charge.failed"),
                ),
            ),
            id="nones-and-several-facts",
        ),
    ],
)
def test_round_trip(state: PaymentState) -> None:
    coder = PaymentStateCoder()
    encoded = coder.encode(state)
    assert encoded[0] == 1
    assert coder.decode(encoded) == state
    assert coder.encode(coder.decode(encoded)) == encoded


def test_version_1_names_every_field() -> None:
    encoded = encode_state(PREVIOUS_STATE)
    fields = json.loads(encoded[1:])
    assert fields == {
        "completed": True,
        "sessions": [
            {
                "meta": {
                    "event_id": "evt_s1",
                    "event_type": "checkout.session.completed",
                    "created": T0,
                    "livemode": True,
                    "account": ACCOUNT_UK,
                },
                "payment_intent_id": "pi_1",
                "session_id": "cs_1",
                "outcome": "paid",
                "amount_minor": 500,
                "currency": "GBP",
                "customer": {
                    "email": "reader1@example.com",
                    "name": "Ada Reader",
                    "country": "GB",
                    "postal_code": "N1 9GU",
                    "state": "London",
                },
                "metadata": {"identityId": "1001", "referrerUrl": "https://example.com/a"},
                "client_reference_id": "ref_1",
                "consent_promotions": "opt_in",
                "payment_method_types": ["card", "link"],
                "custom_text_fields": [],
            }
        ],
        "charges": [
            {
                "meta": {
                    "event_id": "evt_c1",
                    "event_type": "charge.succeeded",
                    "created": T0 + 5,
                    "livemode": True,
                    "account": None,
                },
                "payment_intent_id": "pi_1",
                "charge_id": "ch_1",
                "succeeded": True,
                "has_charge_object": True,
                "card_country": "US",
                "payment_method": "card",
                # Added by issue 9 (the store dates a payment by its charge); a state
                # written without it decodes with None (a missing field takes its default).
                "charge_created": None,
            }
        ],
    }


def _version_1(fields: dict[str, Any]) -> bytes:
    return b"\x01" + json.dumps(fields).encode()


def test_fields_of_a_newer_writer_are_ignored() -> None:
    fields = json.loads(encode_state(PREVIOUS_STATE)[1:])
    fields["attempts"] = 3
    fields["sessions"][0]["locale"] = "en-GB"
    fields["sessions"][0]["meta"]["request_id"] = "req_1"
    fields["sessions"][0]["customer"]["phone_present"] = False
    fields["charges"][0]["risk_level"] = "normal"
    assert decode_state(_version_1(fields)) == PREVIOUS_STATE


def test_a_missing_field_with_a_default_takes_it() -> None:
    fields = json.loads(encode_state(PREVIOUS_STATE)[1:])
    del fields["completed"]
    del fields["charges"]
    assert decode_state(_version_1(fields)) == PaymentState(sessions=PREVIOUS_STATE.sessions)


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        pytest.param(b"", "empty payment state", id="empty"),
        pytest.param(b"\x07{}", "unknown payment state version 7", id="unknown-version"),
        pytest.param(
            PickleCoder().encode(datetime(2026, 1, 1, tzinfo=UTC)),
            "unexpected class datetime.datetime",
            id="pickle-of-another-class",
        ),
        pytest.param(
            pickle.dumps(PREVIOUS_STATE.sessions[0].meta),
            "pickled payment state is a EventMeta, not a PaymentState",
            id="pickle-of-a-fact-part",
        ),
    ],
)
def test_rejects_what_is_not_a_payment_state(encoded: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_state(encoded)
