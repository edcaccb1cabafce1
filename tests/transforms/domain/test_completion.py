from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.builders import ACCOUNT_UK, T0, charge_object, event, session_fact
from tests.builders import charge_fact as builders_charge_fact
from tests.stripe_shapes import BASIL_2025, LEGACY_2022, fixture
from transforms.domain.completion import (
    INVALID,
    NO_CHARGE,
    NOT_SETTLED,
    RETRIEVED,
    CompletionError,
    charge_fact_of,
    completed_with,
)
from transforms.domain.facts import CHARGE_FAILED, CHARGE_SUCCEEDED, ChargeFact, EventMeta, classify
from transforms.domain.fold import CHARGE_MISSING, Unsettled, fold_payment
from transforms.domain.payment import Payment

CHARGED_AT = T0 + 5


def retrieved(status: str = "succeeded", **changes: Any) -> dict[str, Any]:
    """A PaymentIntent as `GET /v1/payment_intents/pi_1?expand[]=latest_charge` answers."""
    charge = {**charge_object(status=status if status == "succeeded" else "failed")}
    charge["created"] = CHARGED_AT
    intent = fixture(
        BASIL_2025,
        "payment_intent",
        id="pi_1",
        status=status,
        created=T0,
        livemode=True,
        latest_charge=charge,
    )
    if status == "requires_payment_method":
        intent["last_payment_error"] = {"charge": "ch_1", "code": "card_declined", "type": "x"}
    return {**intent, **changes}


def without_meta(fact: ChargeFact) -> ChargeFact:
    return dataclasses.replace(fact, meta=EventMeta("", "", 0, True, None))


@pytest.mark.parametrize(
    ("status", "event_type"),
    [("succeeded", CHARGE_SUCCEEDED), ("requires_payment_method", CHARGE_FAILED)],
    ids=["succeeded", "failed"],
)
def test_the_fact_equals_the_one_the_charge_event_gives(status: str, event_type: str) -> None:
    intent = retrieved(status)
    from_event = classify(event("evt_1", event_type, intent["latest_charge"]))
    assert isinstance(from_event, ChargeFact)

    fact = charge_fact_of(intent, account="acct_uk")

    assert without_meta(fact) == without_meta(from_event)
    assert fact.meta == EventMeta("retrieved:pi_1", RETRIEVED, CHARGED_AT, True, "acct_uk")


def test_an_unexpanded_latest_charge_names_the_charge_without_its_details() -> None:
    fact = charge_fact_of(retrieved(latest_charge="ch_1"))

    assert (fact.charge_id, fact.has_charge_object, fact.card_country) == ("ch_1", False, None)
    assert fact.meta.created == T0


def test_an_older_api_versions_embedded_charges_are_read() -> None:
    charge = {**charge_object(card_country="FR"), "created": CHARGED_AT}
    intent = fixture(LEGACY_2022, "payment_intent", id="pi_1", status="succeeded", created=T0)
    intent.pop("latest_charge", None)
    intent["charges"] = {"object": "list", "data": [charge]}

    fact = charge_fact_of(intent)

    assert (fact.charge_id, fact.card_country, fact.meta.created) == ("ch_1", "FR", CHARGED_AT)


@pytest.mark.parametrize(
    ("changes", "reason", "message"),
    [
        ({"status": "processing"}, NOT_SETTLED, "status is processing"),
        (
            {"status": "requires_payment_method", "last_payment_error": None},
            NOT_SETTLED,
            "status is requires_payment_method",
        ),
        ({"status": None}, NOT_SETTLED, "status is missing"),
        ({"status": "x@example.com"}, NOT_SETTLED, "status is not a status"),
        ({"latest_charge": None}, NO_CHARGE, "no charge is named"),
        ({"latest_charge": {"id": 7}}, INVALID, "payment_intent.latest_charge"),
    ],
    ids=["processing", "no-error", "no-status", "odd-status", "no-charge", "bad-charge"],
)
def test_a_payment_intent_without_a_charge_outcome_says_why(
    changes: dict[str, Any], reason: str, message: str
) -> None:
    with pytest.raises(CompletionError) as raised:
        charge_fact_of(retrieved(**changes))

    assert raised.value.reason == reason
    assert str(raised.value).startswith(f"{reason}: ")
    assert message in str(raised.value)
    assert "@" not in str(raised.value)


WAIT = 3600


def test_a_charge_missing_payment_completed_with_the_retrieval_is_the_one_with_its_event() -> None:
    session = session_fact()
    missing = fold_payment([session], WAIT).outcome
    assert isinstance(missing, Unsettled) and missing.reason == CHARGE_MISSING
    charge = {**charge_object(), "created": CHARGED_AT}
    with_event = fold_payment([session, builders_charge_fact(obj=charge)], WAIT).outcome
    assert isinstance(with_event, Payment)

    completed = completed_with(missing, charge_fact_of(retrieved(latest_charge=charge)), WAIT)

    assert completed == with_event
    assert isinstance(completed, Payment) and completed.account == ACCOUNT_UK
