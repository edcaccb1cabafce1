"""The boundary: every malformed field issue 16 names is a dead letter naming it.

Each case is one field of an otherwise good EventBridge record, run through
the pure boundary (`decode_record`, then `classify`): it must end at the
step and with the reason given, and the error must name the field. None may
raise anything else, and none may become a fact (a row).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from schemas import stripe as payload
from tests.builders import (
    ACCOUNT_UK,
    T0,
    charge_object,
    dispute_object,
    eventbridge_envelope,
    payment_intent_object,
    session_object,
    stripe_event_document,
)
from transforms.domain.events import SourceRecord
from transforms.domain.facts import ClassifyError, classify
from transforms.sources.decode import DecodeError, decode_record

SESSION = ("checkout.session.completed", session_object(metadata={"identityId": "1001"}))
CHARGE = ("charge.succeeded", charge_object())
INTENT = (
    "payment_intent.succeeded",
    payment_intent_object(latest_charge=None, legacy_charges=[charge_object()]),
)
REFUNDED = ("charge.refunded", charge_object(amount_refunded=200))
REFUND = (
    "refund.created",
    {
        "id": "re_1",
        "object": "refund",
        "charge": "ch_1",
        "amount": 200,
        "currency": "gbp",
        "status": "succeeded",
    },
)
DISPUTE = ("charge.dispute.created", dispute_object())

REGEX = "expected `str` matching regex"
OBJECT = "expected `object | null`, got"
TOO_LATE = "expected `int` <= 4102444799"
TOO_EARLY = "expected `int` >= 1262304000"
TOO_MUCH = "expected `int` <= 99999999"
NEGATIVE = "expected `int` >= 0"
CURRENCY = "data.object.currency: invalid enum value"


def record(base: tuple[str, dict[str, Any]], path: str = "", value: Any = None) -> bytes:
    """The EventBridge record of `base` with the field at `path` (in the event) set to `value`."""
    event_type, obj = base
    document = stripe_event_document("evt_1", event_type, copy.deepcopy(obj), created=T0)
    if path:
        *parents, last = path.split(".")
        target = document
        for name in parents:
            target = target[name]
        target[last] = value
    envelope = eventbridge_envelope(
        document, envelope_id="e-1", account=ACCOUNT_UK, time="2024-12-05T23:00:01Z"
    )
    return json.dumps(envelope).encode()


def verdict(data: bytes) -> tuple[str, str, str]:
    """(step, reason, error) of a rejected record, or ("ok", fact type, "")."""
    try:
        event = decode_record(SourceRecord(data=data, source="test@0"))
    except DecodeError as error:
        return "decode", error.reason, error.message
    try:
        fact = classify(event)
    except ClassifyError as error:
        return "classify", error.reason, str(error)
    return "ok", type(fact).__name__, ""


def session(path: str, value: Any, error: str) -> Any:
    return (record(SESSION, f"data.object.{path}", value), "classify", "invalid_session", error)


def decode(base: tuple[str, dict[str, Any]], path: str, value: Any, error: str) -> Any:
    return (record(base, path, value), "decode", "invalid_event", error)


def _pi_with_charges(charges: Any) -> bytes:
    return record(INTENT, "data.object.charges", charges)


CASES = {
    "metadata-list": session("metadata", ["a"], f"data.object.metadata: {OBJECT} `array`"),
    "metadata-string": session("metadata", "a", f"data.object.metadata: {OBJECT} `str`"),
    "metadata-number": session("metadata", 7, f"data.object.metadata: {OBJECT} `int`"),
    "customer-details-string": session(
        "customer_details", "a", f"data.object.customer_details: {OBJECT} `str`"
    ),
    "customer-details-list": session(
        "customer_details", [], f"data.object.customer_details: {OBJECT} `array`"
    ),
    "customer-details-number": session(
        "customer_details", 1, f"data.object.customer_details: {OBJECT} `int`"
    ),
    "address-string": session(
        "customer_details.address", "a", f"data.object.customer_details.address: {OBJECT} `str`"
    ),
    "address-list": session(
        "customer_details.address", [], f"data.object.customer_details.address: {OBJECT} `array`"
    ),
    "address-number": session(
        "customer_details.address", 1, f"data.object.customer_details.address: {OBJECT} `int`"
    ),
    "consent-string": session("consent", "opt_in", f"data.object.consent: {OBJECT} `str`"),
    "payment-method-types-string": session(
        "payment_method_types",
        "card",
        "data.object.payment_method_types: expected `array | null`, got `str`",
    ),
    "charge-payment-method-details-string": (
        record(CHARGE, "data.object.payment_method_details", "card"),
        "classify",
        "invalid_charge",
        f"data.object.payment_method_details: {OBJECT} `str`",
    ),
    "charge-payment-method-details-list": (
        record(CHARGE, "data.object.payment_method_details", []),
        "classify",
        "invalid_charge",
        f"data.object.payment_method_details: {OBJECT} `array`",
    ),
    "charge-card-string": (
        record(CHARGE, "data.object.payment_method_details.card", "visa"),
        "classify",
        "invalid_charge",
        f"data.object.payment_method_details.card: {OBJECT} `str`",
    ),
    "charge-card-list": (
        record(CHARGE, "data.object.payment_method_details.card", []),
        "classify",
        "invalid_charge",
        f"data.object.payment_method_details.card: {OBJECT} `array`",
    ),
    "payment-intent-charges-list": (
        _pi_with_charges([charge_object()]),
        "classify",
        "invalid_payment_intent",
        f"data.object.charges: {OBJECT} `array`",
    ),
    "payment-intent-charges-data-object": (
        _pi_with_charges({"object": "list", "data": charge_object()}),
        "classify",
        "invalid_payment_intent",
        "data.object.charges.data: expected `array`, got `object`",
    ),
    "last-payment-error-string": (
        record(
            ("payment_intent.payment_failed", payment_intent_object()),
            "data.object.last_payment_error",
            "card_declined",
        ),
        "classify",
        "invalid_payment_intent",
        f"data.object.last_payment_error: {OBJECT} `str`",
    ),
    "created-10e12": decode(SESSION, "created", 10**12, f"created: {TOO_LATE}"),
    "created-10e20": decode(SESSION, "created", 10**20, f"created: {TOO_LATE}"),
    "created-year-10000": decode(SESSION, "created", 253402300800, f"created: {TOO_LATE}"),
    "currency-sharp-s": session("currency", "ßab", f"{CURRENCY} 'ßab'"),
    "currency-umlauts": session("currency", "äöü", f"{CURRENCY} 'äöü'"),
    "currency-xyz": session("currency", "xyz", f"{CURRENCY} 'xyz'"),
    "lone-surrogate-name": decode(
        SESSION,
        "data.object.customer_details.name",
        "\ud800Ada",
        "detail.data.object.customer_details.name: a lone surrogate, not Unicode text",
    ),
    "lone-surrogate-email": decode(
        SESSION,
        "data.object.customer_details.email",
        "ada\udfff@example.com",
        "detail.data.object.customer_details.email: a lone surrogate, not Unicode text",
    ),
    "lone-surrogate-identity-id": decode(
        SESSION,
        "data.object.metadata",
        {"identityId": "10\ud800"},
        "detail.data.object.metadata.identityId: a lone surrogate, not Unicode text",
    ),
    "negative-amount": session("amount_total", -500, f"data.object.amount_total: {NEGATIVE}"),
    "negative-refund": (
        record(REFUNDED, "data.object.amount_refunded", -100),
        "classify",
        "invalid_refund",
        f"data.object.amount_refunded: {NEGATIVE}",
    ),
    "negative-refund-object": (
        record(REFUND, "data.object.amount", -100),
        "classify",
        "invalid_refund",
        f"data.object.amount: {NEGATIVE}",
    ),
    "negative-dispute": (
        record(DISPUTE, "data.object.amount", -500),
        "classify",
        "invalid_dispute",
        f"data.object.amount: {NEGATIVE}",
    ),
    "amount-10e30": session("amount_total", 10**30, f"data.object.amount_total: {TOO_MUCH}"),
    "amount-2e63": session("amount_total", 2**63, f"data.object.amount_total: {TOO_MUCH}"),
    "livemode-string": decode(SESSION, "livemode", "true", "livemode: expected `bool`, got `str`"),
    "livemode-number": decode(SESSION, "livemode", 1, "livemode: expected `bool`, got `int`"),
    "identity-id-true": session(
        "metadata",
        {"identityId": True},
        "data.object.metadata.identityId: expected `str | null`, got `bool`",
    ),
    "identity-id-object": session(
        "metadata",
        {"identityId": {"id": "1001"}},
        "data.object.metadata.identityId: expected `str | null`, got `object`",
    ),
    "identity-id-list": session(
        "metadata",
        {"identityId": ["1001"]},
        "data.object.metadata.identityId: expected `str | null`, got `array`",
    ),
    "identity-id-nan": session(
        "metadata",
        {"identityId": float("nan")},
        "data.object.metadata.identityId: expected `str | null`, got `float`",
    ),
    "client-reference-id-true": session(
        "client_reference_id",
        True,
        "data.object.client_reference_id: expected `str | null`, got `bool`",
    ),
    "campaign-code-list": session(
        "metadata",
        {"identityId": "1001", "campaignCode": ["a", "b"]},
        "data.object.metadata.campaignCode: expected `str | null`, got `array`",
    ),
    "empty-session-id": session("id", "", f"data.object.id: {REGEX} '^cs_[A-Za-z0-9_]+$'"),
    "refund-above-charge": (
        record(REFUNDED, "data.object.amount_refunded", 600),
        "classify",
        "invalid_refund",
        "data.object.amount_refunded: exceeds the charge's amount",
    ),
    "refund-total-going-down": (
        record(REFUNDED, "data.previous_attributes", {"amount_refunded": 300}),
        "classify",
        "invalid_refund",
        "data.previous_attributes.amount_refunded: exceeds data.object.amount_refunded",
    ),
    "session-created-0": decode(SESSION, "created", 0, f"created: {TOO_EARLY}"),
    "session-created-minus-1": decode(SESSION, "created", -1, f"created: {TOO_EARLY}"),
    "charge-event-far-in-the-future": decode(CHARGE, "created", 10**10, f"created: {TOO_LATE}"),
    "charge-created-far-in-the-future": (
        record(CHARGE, "data.object.created", 10**10),
        "classify",
        "invalid_charge",
        f"data.object.created: {TOO_LATE}",
    ),
}


@pytest.mark.parametrize(("data", "step", "reason", "error"), CASES.values(), ids=CASES.keys())
def test_every_trigger_is_a_dead_letter_naming_its_field(
    data: bytes, step: str, reason: str, error: str
) -> None:
    assert verdict(data) == (step, reason, error)


@pytest.mark.parametrize(
    ("base", "fact"),
    [
        (SESSION, "SessionFact"),
        (CHARGE, "ChargeFact"),
        (INTENT, "ChargeFact"),
        (REFUNDED, "PaymentAdjustment"),
        (REFUND, "PaymentAdjustment"),
        (DISPUTE, "PaymentAdjustment"),
    ],
    ids=["session", "charge", "legacy-payment-intent", "charge-refunded", "refund", "dispute"],
)
def test_the_good_records_the_cases_start_from_pass(
    base: tuple[str, dict[str, Any]], fact: str
) -> None:
    assert verdict(record(base)) == ("ok", fact, "")


@pytest.mark.parametrize(
    ("currency", "amount"),
    [("gbp", 0), ("jpy", payload.MAX_AMOUNT), ("bhd", 1), ("hrk", 500)],
    ids=["zero", "the-maximum", "three-decimals", "a-retired-currency"],
)
def test_amounts_and_currencies_within_the_rules_pass(currency: str, amount: int) -> None:
    data = record((SESSION[0], {**SESSION[1], "currency": currency, "amount_total": amount}))
    assert verdict(data) == ("ok", "SessionFact", "")


def test_every_currency_is_three_lower_case_letters() -> None:
    assert all(len(c) == 3 and c.isascii() and c.islower() for c in payload.CURRENCIES)
    assert {"gbp", "usd", "eur", "aud", "jpy", "bhd", "isk"} <= payload.CURRENCIES
    assert not {"xyz", "xxx", "eek", "gb", "pounds"} & payload.CURRENCIES
