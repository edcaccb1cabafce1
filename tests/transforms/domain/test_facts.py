"""`classify`: one Stripe event to exactly one typed fact, or a ClassifyError."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from schemas.records import PaymentAdjustment
from tests.builders import (
    ACCOUNT_UK,
    LEGACY_API,
    T0,
    charge_object,
    dispute_object,
    event,
    payment_intent_object,
    session_object,
)
from tests.stripe_shapes import BASIL_2025, fixture
from transforms.domain.facts import (
    ASYNC_FAILED,
    ASYNC_SUCCEEDED,
    PAID,
    PENDING,
    ChargeFact,
    ClassifyError,
    CustomerDetails,
    EventMeta,
    SessionFact,
    Skip,
    classify,
)

T0_DATETIME = datetime(2024, 12, 5, 23, 0, tzinfo=UTC)
READER = CustomerDetails(
    email="reader1@example.com", name="Ada Reader", country="GB", postal_code="N1 9GU", state=None
)


def meta(
    event_id: str, event_type: str, *, livemode: bool = True, account: str | None = ACCOUNT_UK
) -> EventMeta:
    return EventMeta(
        event_id=event_id, event_type=event_type, created=T0, livemode=livemode, account=account
    )


def test_t0_is_the_documented_instant() -> None:
    assert datetime.fromtimestamp(T0, tz=UTC) == T0_DATETIME


def test_paid_session_keeps_everything_later_steps_need() -> None:
    obj = session_object(
        currency="gbp",
        country="gb",
        state="London",
        promotions="opt_in",
        client_reference_id="crid-7",
        metadata={"identityId": "1001", "campaignCode": "a, b"},
    )
    obj["metadata"]["dropped"] = None

    fact = classify(event("evt_s1", "checkout.session.completed", obj))

    assert fact == SessionFact(
        meta=meta("evt_s1", "checkout.session.completed"),
        payment_intent_id="pi_1",
        session_id="cs_1",
        outcome=PAID,
        amount_minor=500,
        currency="GBP",
        customer=CustomerDetails(
            email="reader1@example.com",
            name="Ada Reader",
            country="GB",
            postal_code="N1 9GU",
            state="London",
        ),
        metadata={"identityId": "1001", "campaignCode": "a, b"},
        client_reference_id="crid-7",
        consent_promotions="opt_in",
        payment_method_types=("card",),
    )


@pytest.mark.parametrize(
    ("event_type", "payment_status", "outcome"),
    [
        ("checkout.session.completed", "paid", PAID),
        ("checkout.session.completed", "unpaid", PENDING),
        ("checkout.session.async_payment_succeeded", "paid", ASYNC_SUCCEEDED),
        ("checkout.session.async_payment_failed", "unpaid", ASYNC_FAILED),
    ],
    ids=["completed-paid", "completed-unpaid-pending", "async-succeeded", "async-failed"],
)
def test_session_outcome(event_type: str, payment_status: str, outcome: str) -> None:
    obj = session_object(
        payment_status=payment_status, payment_method_types=("bacs_debit",), metadata={}
    )

    fact = classify(event("evt_s", event_type, obj))

    assert fact == SessionFact(
        meta=meta("evt_s", event_type),
        payment_intent_id="pi_1",
        session_id="cs_1",
        outcome=outcome,
        amount_minor=500,
        currency="GBP",
        customer=READER,
        metadata={},
        client_reference_id=None,
        consent_promotions=None,
        payment_method_types=("bacs_debit",),
    )


def test_session_with_bare_details_and_expanded_payment_intent() -> None:
    obj = session_object(currency="jpy", amount_total=500)
    obj["payment_intent"] = {"id": "pi_9", "object": "payment_intent"}
    obj["customer_details"] = None
    obj["metadata"] = None
    obj["payment_method_types"] = None

    fact = classify(event("evt_s", "checkout.session.completed", obj, account=None))

    assert fact == SessionFact(
        meta=meta("evt_s", "checkout.session.completed", account=None),
        payment_intent_id="pi_9",
        session_id="cs_1",
        outcome=PAID,
        amount_minor=500,
        currency="JPY",
        customer=CustomerDetails(None, None, None, None, None),
        metadata={},
        client_reference_id=None,
        consent_promotions=None,
        payment_method_types=(),
    )


@pytest.mark.parametrize(
    ("event_type", "mode", "reason"),
    [
        ("checkout.session.completed", "subscription", "session_mode_subscription"),
        ("checkout.session.completed", "setup", "session_mode_setup"),
        ("checkout.session.async_payment_succeeded", "subscription", "session_mode_subscription"),
        ("checkout.session.completed", "", "session_mode_unknown"),
    ],
    ids=["subscription", "setup", "async-subscription", "no-mode"],
)
def test_sessions_not_in_payment_mode_are_skipped(event_type: str, mode: str, reason: str) -> None:
    obj = session_object(mode=mode)

    assert classify(event("evt_m", event_type, obj)) == Skip(meta("evt_m", event_type), reason)


def test_session_needing_no_payment_is_skipped() -> None:
    obj = session_object(payment_status="no_payment_required", amount_total=0)

    assert classify(event("evt_n", "checkout.session.completed", obj)) == Skip(
        meta("evt_n", "checkout.session.completed"), "no_payment_required"
    )


def test_thin_event_is_skipped_not_crashed() -> None:
    thin = replace(event("evt_t", "v1.billing.meter.error_report_triggered", {}), thin=True)

    assert classify(thin) == Skip(
        meta("evt_t", "v1.billing.meter.error_report_triggered"), "thin_event"
    )


def test_thin_event_of_a_handled_type_is_skipped() -> None:
    thin = replace(event("evt_t", "checkout.session.completed", {}), thin=True)

    assert classify(thin) == Skip(meta("evt_t", "checkout.session.completed"), "thin_event")


def test_stripe_mode_skips_the_other_modes_events() -> None:
    test_event = event("evt_x", "charge.succeeded", charge_object(), livemode=False)
    live_event = event("evt_x", "charge.succeeded", charge_object(), livemode=True)
    expected_test = ChargeFact(
        meta=meta("evt_x", "charge.succeeded", livemode=False),
        payment_intent_id="pi_1",
        charge_id="ch_1",
        succeeded=True,
        has_charge_object=True,
        card_country="US",
        payment_method="card",
        charge_created=charge_object().get("created"),
    )
    expected_live = replace(expected_test, meta=meta("evt_x", "charge.succeeded"))

    assert classify(test_event) == expected_test
    assert classify(test_event, stripe_mode="all") == expected_test
    assert classify(test_event, stripe_mode="test") == expected_test
    assert classify(test_event, stripe_mode="live") == Skip(
        meta("evt_x", "charge.succeeded", livemode=False), "other_stripe_mode"
    )
    assert classify(live_event, stripe_mode="live") == expected_live
    assert classify(live_event, stripe_mode="test") == Skip(
        meta("evt_x", "charge.succeeded"), "other_stripe_mode"
    )
    with pytest.raises(ValueError, match="stripe_mode must be one of"):
        classify(live_event, stripe_mode="prod")


@pytest.mark.parametrize(
    ("event_type", "obj", "expected"),
    [
        (
            "charge.succeeded",
            charge_object(card_country="fr"),
            ChargeFact(
                meta=meta("evt_c", "charge.succeeded"),
                payment_intent_id="pi_1",
                charge_id="ch_1",
                succeeded=True,
                has_charge_object=True,
                card_country="FR",
                payment_method="card",
            ),
        ),
        (
            "charge.succeeded",
            charge_object(method="bacs_debit"),
            ChargeFact(
                meta=meta("evt_c", "charge.succeeded"),
                payment_intent_id="pi_1",
                charge_id="ch_1",
                succeeded=True,
                has_charge_object=True,
                card_country=None,
                payment_method="bacs_debit",
            ),
        ),
        (
            "charge.succeeded",
            charge_object(card_country=None),
            ChargeFact(
                meta=meta("evt_c", "charge.succeeded"),
                payment_intent_id="pi_1",
                charge_id="ch_1",
                succeeded=True,
                has_charge_object=True,
                card_country=None,
                payment_method="card",
            ),
        ),
        (
            "charge.failed",
            charge_object(charge_id="ch_bad", status="failed"),
            ChargeFact(
                meta=meta("evt_c", "charge.failed"),
                payment_intent_id="pi_1",
                charge_id="ch_bad",
                succeeded=False,
                has_charge_object=True,
                card_country="US",
                payment_method="card",
            ),
        ),
        (
            "charge.succeeded",
            {**charge_object(), "payment_intent": {"id": "pi_2", "object": "payment_intent"}},
            ChargeFact(
                meta=meta("evt_c", "charge.succeeded"),
                payment_intent_id="pi_2",
                charge_id="ch_1",
                succeeded=True,
                has_charge_object=True,
                card_country="US",
                payment_method="card",
            ),
        ),
    ],
    ids=[
        "card-country-upper-cased",
        "bacs-debit-no-card",
        "card-without-country",
        "charge-failed",
        "expanded-payment-intent",
    ],
)
def test_charge_events(event_type: str, obj: dict[str, Any], expected: ChargeFact) -> None:
    assert classify(event("evt_c", event_type, obj)) == expected


@pytest.mark.parametrize(
    "event_type", ["charge.succeeded", "charge.failed"], ids=["succeeded", "failed"]
)
def test_charge_without_payment_intent_is_skipped(event_type: str) -> None:
    obj = charge_object(payment_intent=None)

    assert classify(event("evt_c", event_type, obj)) == Skip(
        meta("evt_c", event_type), "charge_without_payment_intent"
    )


@pytest.mark.parametrize(
    ("event_type", "obj", "api_version", "expected"),
    [
        (
            "payment_intent.succeeded",
            payment_intent_object(latest_charge="ch_1"),
            "2024-06-20",
            ChargeFact(
                meta=meta("evt_p", "payment_intent.succeeded"),
                payment_intent_id="pi_1",
                charge_id="ch_1",
                succeeded=True,
                has_charge_object=False,
                card_country=None,
                payment_method=None,
            ),
        ),
        (
            "payment_intent.succeeded",
            payment_intent_object(latest_charge=charge_object(card_country="de")),
            "2024-06-20",
            ChargeFact(
                meta=meta("evt_p", "payment_intent.succeeded"),
                payment_intent_id="pi_1",
                charge_id="ch_1",
                succeeded=True,
                has_charge_object=True,
                card_country="DE",
                payment_method="card",
            ),
        ),
        (
            "payment_intent.succeeded",
            payment_intent_object(legacy_charges=[charge_object(card_country="IE")]),
            LEGACY_API,
            ChargeFact(
                meta=meta("evt_p", "payment_intent.succeeded"),
                payment_intent_id="pi_1",
                charge_id="ch_1",
                succeeded=True,
                has_charge_object=True,
                card_country="IE",
                payment_method="card",
            ),
        ),
        (
            "payment_intent.succeeded",
            payment_intent_object(legacy_charges=[charge_object(card_country="NZ")]),
            "2020-08-27",
            ChargeFact(
                meta=meta("evt_p", "payment_intent.succeeded"),
                payment_intent_id="pi_1",
                charge_id="ch_1",
                succeeded=True,
                has_charge_object=True,
                card_country="NZ",
                payment_method="card",
            ),
        ),
        (
            "payment_intent.succeeded",
            payment_intent_object(legacy_charges=[]),
            LEGACY_API,
            ChargeFact(
                meta=meta("evt_p", "payment_intent.succeeded"),
                payment_intent_id="pi_1",
                charge_id=None,
                succeeded=True,
                has_charge_object=False,
                card_country=None,
                payment_method=None,
            ),
        ),
        (
            "payment_intent.succeeded",
            payment_intent_object(latest_charge=None),
            "2024-06-20",
            ChargeFact(
                meta=meta("evt_p", "payment_intent.succeeded"),
                payment_intent_id="pi_1",
                charge_id=None,
                succeeded=True,
                has_charge_object=False,
                card_country=None,
                payment_method=None,
            ),
        ),
        (
            "payment_intent.payment_failed",
            payment_intent_object(latest_charge="ch_latest", last_payment_error_charge="ch_bad"),
            "2024-06-20",
            ChargeFact(
                meta=meta("evt_p", "payment_intent.payment_failed"),
                payment_intent_id="pi_1",
                charge_id="ch_bad",
                succeeded=False,
                has_charge_object=False,
                card_country=None,
                payment_method=None,
            ),
        ),
        (
            "payment_intent.payment_failed",
            payment_intent_object(latest_charge="ch_latest"),
            "2024-06-20",
            ChargeFact(
                meta=meta("evt_p", "payment_intent.payment_failed"),
                payment_intent_id="pi_1",
                charge_id="ch_latest",
                succeeded=False,
                has_charge_object=False,
                card_country=None,
                payment_method=None,
            ),
        ),
        (
            "payment_intent.payment_failed",
            payment_intent_object(
                legacy_charges=[
                    charge_object(charge_id="ch_bad", method="bacs_debit", status="failed")
                ]
            ),
            LEGACY_API,
            ChargeFact(
                meta=meta("evt_p", "payment_intent.payment_failed"),
                payment_intent_id="pi_1",
                charge_id="ch_bad",
                succeeded=False,
                has_charge_object=True,
                card_country=None,
                payment_method="bacs_debit",
            ),
        ),
    ],
    ids=[
        "modern-latest-charge-id",
        "modern-expanded-latest-charge",
        "legacy-charges-list-2022-08-01",
        "legacy-charges-list-2020-08-27",
        "legacy-empty-charges-list",
        "modern-no-charge-yet",
        "failed-last-payment-error-charge",
        "failed-latest-charge-only",
        "failed-legacy-charges-list",
    ],
)
def test_payment_intent_events(
    event_type: str, obj: dict[str, Any], api_version: str, expected: ChargeFact
) -> None:
    assert classify(event("evt_p", event_type, obj, api_version=api_version)) == expected


def refund(
    *,
    amount: Decimal,
    total: Decimal,
    currency: str,
    charge_id: str = "ch_1",
    event_id: str = "evt_r",
    fully_refunded: bool = False,
) -> PaymentAdjustment:
    return PaymentAdjustment(
        adjustment_id=event_id,
        payment_id=charge_id,
        kind="refund",
        event_type="charge.refunded",
        amount=amount,
        amount_refunded_total=total,
        fully_refunded=fully_refunded,
        currency=currency,
        dispute_id=None,
        dispute_status=None,
        livemode=True,
        account=ACCOUNT_UK,
        created=T0_DATETIME,
    )


@pytest.mark.parametrize(
    ("obj", "previous", "expected"),
    [
        (
            charge_object(amount=500, amount_refunded=300),
            {"amount_refunded": 100, "refunded": False},
            refund(amount=Decimal("2.00"), total=Decimal("3.00"), currency="GBP"),
        ),
        (
            charge_object(amount=500, amount_refunded=200),
            None,
            refund(amount=Decimal("2.00"), total=Decimal("2.00"), currency="GBP"),
        ),
        (
            charge_object(amount=500, amount_refunded=500),
            {"amount_refunded": 0, "refunded": False},
            refund(
                amount=Decimal("5.00"), total=Decimal("5.00"), currency="GBP", fully_refunded=True
            ),
        ),
        (
            charge_object(amount=1000, amount_refunded=1000, currency="jpy"),
            {"amount_refunded": 400},
            refund(
                amount=Decimal("600"), total=Decimal("1000"), currency="JPY", fully_refunded=True
            ),
        ),
        (
            charge_object(amount=1000, amount_refunded=300, currency="jpy"),
            None,
            refund(amount=Decimal("300"), total=Decimal("300"), currency="JPY"),
        ),
        (
            charge_object(amount=5230, amount_refunded=5230, currency="kwd"),
            {"amount_refunded": 1230},
            refund(
                amount=Decimal("4.000"), total=Decimal("5.230"), currency="KWD", fully_refunded=True
            ),
        ),
        (
            charge_object(amount=5230, amount_refunded=1230, currency="kwd"),
            {"refunded": False},
            refund(amount=Decimal("1.230"), total=Decimal("1.230"), currency="KWD"),
        ),
    ],
    ids=[
        "gbp-partial-with-previous-attributes",
        "gbp-partial-first-refund-without-previous",
        "gbp-full-refund",
        "jpy-rest-refunded",
        "jpy-partial-without-previous",
        "kwd-rest-refunded",
        "kwd-previous-without-amount",
    ],
)
def test_charge_refunded(
    obj: dict[str, Any], previous: dict[str, Any] | None, expected: PaymentAdjustment
) -> None:
    fact = classify(event("evt_r", "charge.refunded", obj, previous_attributes=previous))

    assert fact == expected
    assert isinstance(fact, PaymentAdjustment)
    # Decimal equality ignores scale; the record keeps the currency's.
    assert (str(fact.amount), str(fact.amount_refunded_total)) == (
        str(expected.amount),
        str(expected.amount_refunded_total),
    )


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("charge.dispute.created", "needs_response"),
        ("charge.dispute.updated", "under_review"),
        ("charge.dispute.closed", "lost"),
        ("charge.dispute.funds_withdrawn", "needs_response"),
        ("charge.dispute.funds_reinstated", "won"),
    ],
    ids=["created", "updated", "closed", "funds-withdrawn", "funds-reinstated"],
)
def test_dispute_events(event_type: str, status: str) -> None:
    obj = dispute_object(amount=5230, currency="kwd", status=status)

    assert classify(event("evt_d", event_type, obj)) == PaymentAdjustment(
        adjustment_id="evt_d",
        payment_id="ch_1",
        kind="dispute",
        event_type=event_type,
        amount=Decimal("5.230"),
        amount_refunded_total=None,
        fully_refunded=None,
        currency="KWD",
        dispute_id="dp_1",
        dispute_status=status,
        livemode=True,
        account=ACCOUNT_UK,
        created=T0_DATETIME,
    )


def test_dispute_with_expanded_charge() -> None:
    obj = {**dispute_object(), "charge": {"id": "ch_7", "object": "charge"}}

    assert classify(event("evt_d", "charge.dispute.created", obj)) == PaymentAdjustment(
        adjustment_id="evt_d",
        payment_id="ch_7",
        kind="dispute",
        event_type="charge.dispute.created",
        amount=Decimal("5.00"),
        amount_refunded_total=None,
        fully_refunded=None,
        currency="GBP",
        dispute_id="dp_1",
        dispute_status="needs_response",
        livemode=True,
        account=ACCOUNT_UK,
        created=T0_DATETIME,
    )


#: 2024-07-29T00:00:00Z: the example's own `created` is a placeholder from 2009,
#: outside the years a Stripe time may have (`schemas.stripe`).
REFUND_CREATED = 1_722_211_200


def refund_fixture(**changes: Any) -> dict[str, Any]:
    """Stripe's OpenAPI example refund (API 2025-03-25), with `changes`."""
    return fixture(BASIL_2025, "refund", **{"created": REFUND_CREATED, **changes})


@pytest.mark.parametrize(
    "event_type",
    ["refund.created", "refund.updated", "charge.refund.updated"],
    ids=lambda value: str(value),
)
def test_a_succeeded_refund_object_is_an_adjustment_keyed_by_the_refund(event_type: str) -> None:
    fact = classify(event("evt_re", event_type, refund_fixture()))

    assert fact == PaymentAdjustment(
        adjustment_id="re_1Pgc72B7WZ01zgkWqPvrRrPE",
        payment_id="ch_1PgafuB7WZ01zgkWXYmPNZs8",
        kind="refund",
        event_type=event_type,
        amount=Decimal("1.00"),
        amount_refunded_total=None,
        fully_refunded=None,
        currency="USD",
        dispute_id=None,
        dispute_status=None,
        livemode=True,
        account=ACCOUNT_UK,
        created=datetime(2024, 7, 29, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("event_type", "status", "reason"),
    [
        ("refund.created", "pending", "refund_pending"),
        ("refund.failed", "failed", "refund_failed"),
        ("refund.updated", "canceled", "refund_canceled"),
        ("refund.updated", "requires_action", "refund_requires_action"),
    ],
    ids=["pending", "failed", "canceled", "requires-action"],
)
def test_a_refund_that_moved_no_money_is_skipped(event_type: str, status: str, reason: str) -> None:
    fact = classify(event("evt_re", event_type, refund_fixture(status=status)))

    assert fact == Skip(meta("evt_re", event_type), reason)


@pytest.mark.parametrize(
    "changes",
    [{"charge": None}, {"amount": "1.00"}, {"currency": None}, {"id": None}],
    ids=["no-charge", "amount-not-minor-units", "no-currency", "no-id"],
)
def test_an_unreadable_refund_object_is_a_classify_error(changes: dict[str, Any]) -> None:
    with pytest.raises(ClassifyError) as error:
        classify(event("evt_re", "refund.created", refund_fixture(**changes)))

    assert error.value.reason == "invalid_refund"


@pytest.mark.parametrize(
    "event_type",
    [
        "checkout.session.expired",
        "customer.created",
        "invoice.paid",
        "payment_intent.created",
        "charge.pending",
    ],
    ids=lambda value: str(value),
)
def test_unrelated_types_are_skipped(event_type: str) -> None:
    assert classify(event("evt_u", event_type, {"id": "x_1"})) == Skip(
        meta("evt_u", event_type), "not_a_payment_event"
    )


def _without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


@pytest.mark.parametrize(
    ("event_type", "obj", "reason", "message"),
    [
        (
            "checkout.session.completed",
            session_object(payment_intent=None),
            "invalid_session",
            "data.object.payment_intent: missing",
        ),
        (
            "checkout.session.completed",
            _without(session_object(), "id"),
            "invalid_session",
            "data.object.id: missing",
        ),
        (
            "checkout.session.completed",
            _without(session_object(), "currency"),
            "invalid_session",
            "data.object.currency: missing",
        ),
        (
            "checkout.session.completed",
            {**session_object(), "amount_total": "500"},
            "invalid_session",
            "data.object.amount_total: expected `int | null`, got `str`",
        ),
        (
            "checkout.session.completed",
            {**session_object(), "amount_total": 5.0},
            "invalid_session",
            "data.object.amount_total: expected `int | null`, got `float`",
        ),
        (
            "checkout.session.completed",
            {**session_object(), "amount_total": True},
            "invalid_session",
            "data.object.amount_total: expected `int | null`, got `bool`",
        ),
        (
            "checkout.session.completed",
            session_object(currency="gb"),
            "invalid_session",
            "data.object.currency: invalid enum value 'gb'",
        ),
        (
            "charge.succeeded",
            _without(charge_object(), "id"),
            "invalid_charge",
            "data.object.id: missing",
        ),
        (
            "payment_intent.succeeded",
            _without(payment_intent_object(), "id"),
            "invalid_payment_intent",
            "data.object.id: missing",
        ),
        (
            "charge.refunded",
            _without(charge_object(amount_refunded=500), "amount_refunded"),
            "invalid_refund",
            "data.object.amount_refunded: missing",
        ),
        (
            "charge.refunded",
            _without(charge_object(amount_refunded=500), "currency"),
            "invalid_refund",
            "data.object.currency: missing",
        ),
        (
            "charge.refunded",
            charge_object(amount_refunded=500, currency="pounds"),
            "invalid_refund",
            "data.object.currency: invalid enum value 'pounds'",
        ),
        (
            "charge.dispute.created",
            _without(dispute_object(), "charge"),
            "invalid_dispute",
            "data.object.charge: missing",
        ),
        (
            "charge.dispute.closed",
            {**dispute_object(), "amount": None},
            "invalid_dispute",
            "data.object.amount: missing",
        ),
        (
            "charge.dispute.created",
            dispute_object(currency="1bp"),
            "invalid_dispute",
            "data.object.currency: invalid enum value '1bp'",
        ),
    ],
    ids=[
        "session-without-payment-intent",
        "session-without-id",
        "session-missing-currency",
        "session-amount-is-string",
        "session-amount-is-float",
        "session-amount-is-bool",
        "session-bad-currency-code",
        "charge-without-id",
        "payment-intent-without-id",
        "refund-without-amount-refunded",
        "refund-without-currency",
        "refund-bad-currency-code",
        "dispute-without-charge",
        "dispute-without-amount",
        "dispute-bad-currency-code",
    ],
)
def test_classify_errors(event_type: str, obj: dict[str, Any], reason: str, message: str) -> None:
    with pytest.raises(ClassifyError) as caught:
        classify(event("evt_e", event_type, obj))

    assert (caught.value.reason, str(caught.value)) == (reason, message)


@pytest.mark.parametrize(
    ("event_type", "succeeded", "expected_charge"),
    [
        ("payment_intent.succeeded", True, "ch_new"),
        ("payment_intent.payment_failed", False, "ch_old"),
    ],
    ids=["succeeded-picks-the-succeeded-attempt", "failed-picks-the-failed-attempt"],
)
def test_legacy_charges_list_picks_the_attempt_matching_the_event(
    event_type: str, succeeded: bool, expected_charge: str
) -> None:
    # Stripe lists newest first: a retry that succeeded after a failed attempt.
    charges = [
        charge_object(charge_id="ch_new", card_country="FR", status="succeeded"),
        charge_object(charge_id="ch_old", card_country="DE", status="failed"),
    ]
    intent = payment_intent_object(legacy_charges=charges)
    fact = classify(event("evt_pi", event_type, intent, api_version=LEGACY_API))
    assert isinstance(fact, ChargeFact)
    assert (fact.charge_id, fact.succeeded, fact.card_country) == (
        expected_charge,
        succeeded,
        "FR" if succeeded else "DE",
    )
