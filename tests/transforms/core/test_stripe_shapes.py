"""Payloads in Stripe's documented shapes through both of the core's paths.

Each scenario is built from Stripe's OpenAPI example objects (`tests/stripe_shapes.py`)
for the API version it names, run through the backfill's path (`FoldPayments`) and
the streaming path (`DeduplicateEvents` + `JoinPayments` on a TestStream, in the
arrival order given), and each must give exactly the expected rows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from schemas.records import Contribution, PaymentAdjustment
from tests.builders import ACCOUNT_UK
from tests.stripe_shapes import (
    BASIL_2025,
    DEBIT_DETAILS,
    LATEST_CHARGE_2024,
    LEGACY_2022,
    Scenario,
    card_details,
)
from tests.transforms.core.test_core_paths import OUTPUTS, run_bounded
from transforms.core.process import CoreOutputs, ProcessStripeEvents
from transforms.domain.events import StripeEvent
from transforms.domain.mapping import contribution_id

T = 1_740_000_000  # 2025-02-19T21:20:00Z
DAYS = 86_400
ACCOUNT_US = "ed_61SFakeUsLiveDestinati0nE5"
CARD = "ch_3QdEclinedCard00000001"
DEBIT = "py_3QbAnkDebit00000000001"


def declined_then_debit(
    revision: str,
    method: str,
    *,
    debit_fails: bool,
    card_country: str,
    address_country: str,
    currency: str,
    account: str = ACCOUNT_UK,
    custom_fields: tuple[tuple[str, str], ...] = (),
) -> Scenario:
    """A card declined on the page, then a bank debit that fails or succeeds days later."""
    s = Scenario(
        revision,
        payment_intent="pi_3QdEclinedThenDebit0001",
        session="cs_live_a1DeclinedThenDebit0001",
        amount=2500,
        currency=currency,
        account=account,
    )
    methods = ("card", method)
    s.charge("charge.failed", CARD, card_details(card_country), "failed", T + 5)
    s.payment_intent_event("payment_intent.payment_failed", CARD, "requires_payment_method", T + 5)
    s.charge("charge.pending", DEBIT, DEBIT_DETAILS[method], "pending", T + 60)
    s.payment_intent_event("payment_intent.processing", DEBIT, "processing", T + 60)
    s.session_event(
        "checkout.session.completed",
        T + 61,
        payment_status="unpaid",
        country=address_country,
        methods=methods,
        custom_fields=custom_fields,
    )
    settled = T + 3 * DAYS
    if debit_fails:
        s.charge("charge.failed", DEBIT, DEBIT_DETAILS[method], "failed", settled)
        s.payment_intent_event(
            "payment_intent.payment_failed", DEBIT, "requires_payment_method", settled
        )
        outcome, paid = "checkout.session.async_payment_failed", "unpaid"
    else:
        s.charge("charge.succeeded", DEBIT, DEBIT_DETAILS[method], "succeeded", settled)
        s.payment_intent_event("payment_intent.succeeded", DEBIT, "succeeded", settled)
        outcome, paid = "checkout.session.async_payment_succeeded", "paid"
    s.session_event(
        outcome,
        settled + 1,
        payment_status=paid,
        country=address_country,
        methods=methods,
        custom_fields=custom_fields,
    )
    return s


def contribution(s: Scenario, **fields: Any) -> Contribution:
    exponent = 3 if s.currency == "kwd" else 0 if s.currency == "jpy" else 2
    values: dict[str, Any] = {
        "payment_id": DEBIT,
        "payment_intent_id": s.payment_intent,
        "checkout_session_id": s.session_id,
        "contribution_id": contribution_id(DEBIT),
        "amount": Decimal(s.amount).scaleb(-exponent),
        "amount_refunded": Decimal(0).scaleb(-exponent),
        "currency": s.currency.upper(),
        "identity_id": "200100300",
        "disputed": False,
        "livemode": True,
        "account": s.account,
        "created": datetime.fromtimestamp(T + 3 * DAYS + 1, tz=UTC),
        **fields,
    }
    return Contribution(**values)


def run_streaming(events: list[StripeEvent], expected: dict[str, list[Any]], **core: Any) -> None:
    """The streaming path on `events` in this arrival order; each output must be `expected`."""
    stream = EventStream().advance_watermark_to(min(e.created for e in events) - 1)
    for e in events:
        stream = stream.add_elements([TimestampedValue(e, e.created)])
    last = max(e.created for e in events)
    stream = stream.advance_watermark_to(last + 30 * DAYS).advance_watermark_to_infinity()

    def check(out: CoreOutputs) -> None:
        for name in OUTPUTS:
            assert_that(getattr(out, name), equal_to(expected[name]), label=f"Same{name}")

    with BeamTestPipeline(
        runner=BundleBasedDirectRunner(), options=PipelineOptions(streaming=True)
    ) as p:
        check(p | stream | ProcessStripeEvents(**core))


def both_paths(
    events: list[StripeEvent], expected: dict[str, list[Any]], **core: Any
) -> dict[str, list[Any]]:
    """Asserts both paths give `expected` for every output named in it (others: empty)."""
    wanted = {name: expected.get(name, []) for name in OUTPUTS}
    bounded = run_bounded(events, **core)
    assert {n: sorted(map(repr, v)) for n, v in bounded.items()} == {
        n: sorted(map(repr, v)) for n, v in wanted.items()
    }
    run_streaming(events, wanted, **core)
    return bounded


def debit_failure_first(events: list[StripeEvent]) -> list[StripeEvent]:
    """The async failure arrives before the debit's own charge and PaymentIntent events."""
    outcome = events[-1]
    return events[:-3] + [outcome] + events[-3:-1]


@pytest.mark.parametrize(
    ("revision", "method", "card_country", "address_country", "currency", "account", "arrival"),
    [
        (BASIL_2025, "bacs_debit", "US", "GB", "gbp", ACCOUNT_UK, "in-order"),
        (LEGACY_2022, "bacs_debit", "US", "GB", "gbp", ACCOUNT_UK, "outcome-first"),
        (BASIL_2025, "us_bank_account", "MX", "US", "usd", ACCOUNT_US, "outcome-first"),
        (LEGACY_2022, "us_bank_account", "MX", "US", "usd", ACCOUNT_US, "in-order"),
    ],
    ids=["bacs-basil", "bacs-2022-outcome-first", "ach-after-mx-card-basil", "ach-2022"],
)
def test_a_failed_debit_after_a_declined_card_is_the_debits_failure(
    revision: str,
    method: str,
    card_country: str,
    address_country: str,
    currency: str,
    account: str,
    arrival: str,
) -> None:
    s = declined_then_debit(
        revision,
        method,
        debit_fails=True,
        card_country=card_country,
        address_country=address_country,
        currency=currency,
        account=account,
    )
    events = s.events if arrival == "in-order" else debit_failure_first(s.events)

    both_paths(
        events,
        {
            "contributions": [
                contribution(
                    s,
                    status="Failed",
                    country_code=address_country,
                    country_source="address",
                    payment_method=method,
                )
            ]
        },
    )


def test_a_debit_that_succeeds_after_a_declined_card_pays_with_the_debit() -> None:
    s = declined_then_debit(
        BASIL_2025,
        "sepa_debit",
        debit_fails=False,
        card_country="US",
        address_country="DE",
        currency="eur",
        custom_fields=(("given_name", "Zsófia"),),
    )
    paid = contribution(
        s, status="Paid", country_code="DE", country_source="address", payment_method="sepa_debit"
    )

    out = run_bounded(s.events, first_name_field="given_name")

    assert out["contributions"] == [paid]
    assert [a.payment_id for a in out["acquisitions"]] == [DEBIT]
    assert [r.payment_id for r in out["contributions_store"]] == [DEBIT]
    assert [r.subscription_name for r in out["supporter_product_data"]] == [f"Stripe - {DEBIT}"]
    assert [r.payment_id for r in out["soft_opt_ins"]] == [DEBIT]
    assert out["dead_letters"] == []
    [email] = out["thank_you_emails"]
    assert json.loads(email.message)["To"]["ContactAttributes"]["SubscriberAttributes"] == {
        "EmailAddress": "reader@example.com",
        "edition": "international",
        "payment method": "direct debit",
        "currency": "EUR",
        "amount": "25.00",
        "first_name": "Zsófia",
        "date_of_payment": "22 February 2025",
    }
    both_paths(s.events, out, first_name_field="given_name")


def test_first_name_is_null_without_a_configured_custom_field() -> None:
    s = Scenario(
        BASIL_2025,
        payment_intent="pi_3QfIrstName000000000001",
        session="cs_live_a1FirstName0000001",
        amount=1000,
        currency="gbp",
    )
    s.charge("charge.succeeded", "ch_3QfIrstName00000000001", card_details("JP"), "succeeded", T)
    s.session_event(
        "checkout.session.completed",
        T + 1,
        payment_status="paid",
        country="JP",
        methods=("card",),
        name="佐藤 陽翔",
        custom_fields=(("given_name", "陽翔"),),
    )

    out = run_bounded(s.events)

    [email] = out["thank_you_emails"]
    attributes = json.loads(email.message)["To"]["ContactAttributes"]["SubscriberAttributes"]
    assert (attributes["first_name"], attributes["payment method"]) == (
        None,
        "credit / debit card",
    )
    both_paths(s.events, out)


def refund_object(s: Scenario, refund_id: str, amount: str, event_type: str) -> PaymentAdjustment:
    return PaymentAdjustment(
        adjustment_id=refund_id,
        payment_id="ch_3QrEfundedCard000000001",
        kind="refund",
        event_type=event_type,
        amount=Decimal(amount),
        amount_refunded_total=None,
        fully_refunded=None,
        currency="GBP",
        dispute_id=None,
        dispute_status=None,
        livemode=True,
        account=ACCOUNT_UK,
        created=datetime.fromtimestamp(T + DAYS, tz=UTC),
    )


def test_refunds_seen_only_as_refund_objects_become_adjustments() -> None:
    s = Scenario(
        LATEST_CHARGE_2024,
        payment_intent="pi_3QrEfunded0000000000001",
        session="cs_live_a1Refunded00000001",
        amount=1000,
        currency="gbp",
    )
    charge = "ch_3QrEfundedCard000000001"
    s.charge("charge.succeeded", charge, card_details("GB"), "succeeded", T)
    s.payment_intent_event("payment_intent.succeeded", charge, "succeeded", T)
    s.session_event(
        "checkout.session.completed", T + 1, payment_status="paid", country="GB", methods=("card",)
    )
    s.refund("refund.created", "re_3QpArt00000000000000001", charge, 400, T + DAYS)
    s.refund("refund.updated", "re_3QpArt00000000000000001", charge, 400, T + DAYS)
    s.refund("refund.created", "re_3QrEst00000000000000002", charge, 600, T + DAYS)

    out = run_bounded(s.events)

    expected = [
        refund_object(s, "re_3QpArt00000000000000001", "4.00", "refund.created"),
        refund_object(s, "re_3QpArt00000000000000001", "4.00", "refund.updated"),
        refund_object(s, "re_3QrEst00000000000000002", "6.00", "refund.created"),
    ]
    assert sorted(map(repr, out["payment_adjustments"])) == sorted(map(repr, expected))
    assert [c.payment_id for c in out["contributions"]] == [charge]
    both_paths(s.events, out)
