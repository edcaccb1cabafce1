"""ProcessStripeEvents end to end in memory: batch with TestPipeline, streaming with TestStream.

Batch runs on the FnApiRunner; streaming scenarios run on the bundle-based
DirectRunner, the local runner that executes TestStream with watermarks,
state and timers. Every output is asserted element by element.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from schemas.records import Contribution, DeadLetter, PaymentAdjustment
from tests import builders as b
from transforms.core.process import CoreOutputs, ProcessStripeEvents
from transforms.domain.events import StripeEvent
from transforms.domain.identity import needs_identity, with_identity
from transforms.domain.payment import Payment

HOUR = 3600
DAY = 24 * HOUR
T0_DT = datetime(2024, 12, 5, 23, 0, tzinfo=UTC)


def paid_contribution(**overrides: Any) -> Contribution:
    """The contribution of the default builders' payment: 5.00 GBP, card from the US."""
    values: dict[str, Any] = {
        "payment_id": "ch_1",
        "payment_intent_id": "pi_1",
        "checkout_session_id": "cs_1",
        "contribution_id": "e0cd70fa-7672-550c-8efd-f030dbd04d31",
        "status": "Paid",
        "amount": Decimal("5.00"),
        "amount_refunded": Decimal("0.00"),
        "currency": "GBP",
        "country_code": "US",
        "country_source": "card",
        "payment_method": "card",
        "identity_id": "1001",
        "disputed": False,
        "livemode": True,
        "account": b.ACCOUNT_UK,
        "created": T0_DT,
    }
    values.update(overrides)
    return Contribution(**values)


def session_completed(event_id: str = "evt_s1", **kwargs: Any) -> StripeEvent:
    created = kwargs.pop("created", b.T0)
    account = kwargs.pop("account", b.ACCOUNT_UK)
    return b.event(
        event_id,
        "checkout.session.completed",
        b.session_object(**kwargs),
        created=created,
        account=account,
    )


def charge_succeeded(event_id: str = "evt_c1", **kwargs: Any) -> StripeEvent:
    created = kwargs.pop("created", b.T0 - 1)
    return b.event(event_id, "charge.succeeded", b.charge_object(**kwargs), created=created)


def bacs_pending() -> StripeEvent:
    """A Bacs debit's session at T0: completed, unpaid until the debit settles."""
    return session_completed(
        payment_status="unpaid", payment_method_types=("bacs_debit",), created=b.T0
    )


def bacs_settled(created: int) -> StripeEvent:
    """The async success of `bacs_pending`'s session, at `created`."""
    return b.event(
        "evt_s2",
        "checkout.session.async_payment_succeeded",
        b.session_object(payment_method_types=("bacs_debit",)),
        created=created,
    )


def bacs_contribution(created: datetime) -> Contribution:
    """The contribution of `bacs_pending` settled at `created` (its country from the address)."""
    return paid_contribution(
        country_code="GB", country_source="address", payment_method="bacs_debit", created=created
    )


def refund(event_id: str, *, total: int, before: int, created: int) -> StripeEvent:
    return b.event(
        event_id,
        "charge.refunded",
        b.charge_object(amount_refunded=total),
        created=created,
        previous_attributes={"amount_refunded": before},
    )


def run_batch(events: list[StripeEvent], check: Any, **core_args: Any) -> None:
    with BeamTestPipeline(runner=FnApiRunner()) as p:
        outputs = (
            p
            | beam.Create(events)
            | beam.Map(lambda e: TimestampedValue(e, e.created))
            | ProcessStripeEvents(**core_args)
        )
        check(outputs)


def run_stream(stream: EventStream, check: Any, **core_args: Any) -> None:
    options = PipelineOptions(streaming=True)
    with BeamTestPipeline(runner=BundleBasedDirectRunner(), options=options) as p:
        check(p | stream | ProcessStripeEvents(**core_args))


def stamped(*events: StripeEvent) -> list[TimestampedValue]:
    return [TimestampedValue(e, e.created) for e in events]


def payment_ids(pcoll: beam.PCollection, label: str) -> beam.PCollection:
    return pcoll | label >> beam.Map(lambda r: r.payment_id)


class TestBatch:
    def test_one_card_payment_fills_every_output(self) -> None:
        def check(out: CoreOutputs) -> None:
            assert_that(out.contributions, equal_to([paid_contribution()]), label="Contributions")
            assert_that(
                out.acquisitions
                | beam.Map(lambda a: (a.payment_id, a.amount, a.country_code, a.platform)),
                equal_to([("ch_1", Decimal("5.00"), "US", "SUPPORT")]),
                label="Acquisitions",
            )
            assert_that(
                out.contributions_store
                | beam.Map(lambda s: (s.payment_id, s.payment_status, s.email, s.postal_code)),
                equal_to([("ch_1", "Paid", "reader1@example.com", "N1 9GU")]),
                label="Store",
            )
            assert_that(
                out.supporter_product_data
                | beam.Map(lambda s: (s.identity_id, s.subscription_name, s.expiry_date)),
                equal_to([("1001", "Stripe - ch_1", 1986508800)]),
                label="Supporter",
            )
            assert_that(
                out.thank_you_emails | beam.Map(lambda m: json.loads(m.message)["IdentityUserId"]),
                equal_to(["1001"]),
                label="Emails",
            )
            assert_that(
                out.soft_opt_ins | beam.Map(lambda m: json.loads(m.message)["subscriptionId"]),
                equal_to(["e0cd70fa-7672-550c-8efd-f030dbd04d31"]),
                label="OptIns",
            )
            assert_that(out.payment_adjustments, equal_to([]), label="Adjustments")
            assert_that(out.dead_letters, equal_to([]), label="DeadLetters")

        run_batch([session_completed(), charge_succeeded()], check)

    def test_redeliveries_replays_and_bare_copies_count_once(self) -> None:
        # The bare export (no account) must lose to the enveloped copy.
        events = [
            session_completed(account=None),
            session_completed(),
            session_completed(),
            charge_succeeded(),
            charge_succeeded(),
        ]

        def check(out: CoreOutputs) -> None:
            assert_that(out.contributions, equal_to([paid_contribution()]))
            assert_that(payment_ids(out.thank_you_emails, "Ids"), equal_to(["ch_1"]), label="Mail")

        run_batch(events, check)

    def test_other_modes_types_and_thin_events_produce_nothing(self) -> None:
        thin = replace(session_completed("evt_thin"), thin=True, data_object={})
        events = [
            session_completed("evt_sub", mode="subscription"),
            b.event("evt_cust", "customer.created", {"id": "cus_1", "object": "customer"}),
            # A pending refund has moved no money yet: its refund.updated will.
            b.event(
                "evt_ref",
                "refund.created",
                {
                    "id": "re_1",
                    "object": "refund",
                    "charge": "ch_1",
                    "amount": 500,
                    "currency": "gbp",
                    "status": "pending",
                },
            ),
            thin,
        ]

        def check(out: CoreOutputs) -> None:
            for name, pcoll in out.by_record_type().items():
                assert_that(pcoll, equal_to([]), label=f"Empty{name.__name__}")

        run_batch(events, check)

    def test_invalid_session_is_a_dead_letter_and_the_rest_goes_on(self) -> None:
        broken = session_completed("evt_bad", session_id="cs_9", payment_intent=None)

        def check(out: CoreOutputs) -> None:
            assert_that(out.contributions, equal_to([paid_contribution()]), label="Contrib")
            assert_that(
                out.dead_letters | beam.Map(lambda d: (d.step, d.reason, d.event_id, d.source)),
                equal_to([("classify", "invalid_session", "evt_bad", "test@0")]),
                label="Dead",
            )

        run_batch([broken, session_completed(), charge_succeeded()], check)

    def test_refunds_and_disputes_are_adjustments_in_any_order(self) -> None:
        events = [
            refund("evt_r2", total=500, before=200, created=b.T0 + 2 * DAY),
            refund("evt_r1", total=200, before=0, created=b.T0 + DAY),
            b.event("evt_d1", "charge.dispute.created", b.dispute_object(), created=b.T0 + 3 * DAY),
            session_completed(),
            charge_succeeded(),
        ]

        def adjustment(event_id: str, **values: Any) -> PaymentAdjustment:
            base: dict[str, Any] = {
                "adjustment_id": event_id,
                "payment_id": "ch_1",
                "currency": "GBP",
                "dispute_id": None,
                "dispute_status": None,
                "livemode": True,
                "account": b.ACCOUNT_UK,
            }
            base.update(values)
            return PaymentAdjustment(**base)

        expected = [
            adjustment(
                "evt_r1",
                kind="refund",
                event_type="charge.refunded",
                amount=Decimal("2.00"),
                amount_refunded_total=Decimal("2.00"),
                fully_refunded=False,
                created=T0_DT + timedelta(days=1),
            ),
            adjustment(
                "evt_r2",
                kind="refund",
                event_type="charge.refunded",
                amount=Decimal("3.00"),
                amount_refunded_total=Decimal("5.00"),
                fully_refunded=True,
                created=T0_DT + timedelta(days=2),
            ),
            adjustment(
                "evt_d1",
                kind="dispute",
                event_type="charge.dispute.created",
                amount=Decimal("5.00"),
                amount_refunded_total=None,
                fully_refunded=None,
                dispute_id="dp_1",
                dispute_status="needs_response",
                created=T0_DT + timedelta(days=3),
            ),
        ]

        def check(out: CoreOutputs) -> None:
            assert_that(out.payment_adjustments, equal_to(expected), label="Adjustments")
            assert_that(out.contributions, equal_to([paid_contribution()]), label="Contrib")

        run_batch(events, check)

    def test_test_mode_is_processed_unless_the_stage_is_live(self) -> None:
        events = [
            session_completed(account="ed_test_61Rk"),
            replace(charge_succeeded(), livemode=False),
        ]
        events[0] = replace(events[0], livemode=False)

        def included(out: CoreOutputs) -> None:
            assert_that(
                out.contributions,
                equal_to([paid_contribution(livemode=False, account="ed_test_61Rk")]),
            )

        def excluded(out: CoreOutputs) -> None:
            assert_that(out.contributions, equal_to([]))

        run_batch(events, included)
        run_batch(events, excluded, stripe_mode="live")


class TestStreaming:
    def test_charge_before_session(self) -> None:
        stream = (
            EventStream()
            .advance_watermark_to(b.T0 - 10)
            .add_elements(stamped(charge_succeeded()))
            .advance_watermark_to(b.T0 - 1)
            .add_elements(stamped(session_completed()))
            .advance_watermark_to_infinity()
        )

        def check(out: CoreOutputs) -> None:
            assert_that(out.contributions, equal_to([paid_contribution()]), label="Contrib")
            assert_that(out.dead_letters, equal_to([]), label="Dead")

        run_stream(stream, check)

    def test_duplicates_across_bundles_count_once(self) -> None:
        stream = (
            EventStream()
            .advance_watermark_to(b.T0 - 10)
            .add_elements(stamped(session_completed(), charge_succeeded()))
            .advance_watermark_to(b.T0 + 60)
            .add_elements(stamped(session_completed(), charge_succeeded()))
            .advance_watermark_to(b.T0 + 2 * HOUR)
            .add_elements(stamped(session_completed()))
            .advance_watermark_to_infinity()
        )

        def check(out: CoreOutputs) -> None:
            assert_that(out.contributions, equal_to([paid_contribution()]), label="Contrib")
            assert_that(payment_ids(out.soft_opt_ins, "Ids"), equal_to(["ch_1"]), label="OptIn")

        run_stream(stream, check)

    def test_refund_before_payment(self) -> None:
        stream = (
            EventStream()
            .advance_watermark_to(b.T0 - 10)
            .add_elements(stamped(refund("evt_r1", total=500, before=0, created=b.T0 + 30)))
            .add_elements(stamped(session_completed(), charge_succeeded()))
            .advance_watermark_to_infinity()
        )

        def check(out: CoreOutputs) -> None:
            assert_that(
                out.payment_adjustments
                | beam.Map(lambda a: (a.adjustment_id, a.payment_id, a.amount_refunded_total)),
                equal_to([("evt_r1", "ch_1", Decimal("5.00"))]),
                label="Adjustments",
            )
            assert_that(out.contributions, equal_to([paid_contribution()]), label="Contrib")

        run_stream(stream, check)

    def test_async_success_two_days_later(self) -> None:
        pending = bacs_pending()
        settled = bacs_settled(b.T0 + 2 * DAY)
        debit = charge_succeeded(created=b.T0 + 2 * DAY - 5, method="bacs_debit")
        stream = (
            EventStream()
            .advance_watermark_to(b.T0 - 10)
            .add_elements(stamped(pending))
            .advance_watermark_to(b.T0 + DAY)  # well past the one-hour charge wait
            .add_elements(stamped(debit, settled))
            .advance_watermark_to_infinity()
        )
        expected = bacs_contribution(T0_DT + timedelta(days=2))

        def check(out: CoreOutputs) -> None:
            assert_that(out.contributions, equal_to([expected]), label="Contrib")
            assert_that(out.dead_letters, equal_to([]), label="Dead")

        run_stream(stream, check)

    def test_async_failure_yields_only_a_failed_contribution(self) -> None:
        pending = session_completed(payment_status="unpaid", payment_method_types=("sepa_debit",))
        failed_charge = b.event(
            "evt_c9",
            "charge.failed",
            b.charge_object(method="sepa_debit", status="failed"),
            created=b.T0 + 3 * DAY,
        )
        failed = b.event(
            "evt_s9",
            "checkout.session.async_payment_failed",
            b.session_object(payment_status="unpaid", payment_method_types=("sepa_debit",)),
            created=b.T0 + 3 * DAY + 1,
        )
        stream = (
            EventStream()
            .advance_watermark_to(b.T0 - 10)
            .add_elements(stamped(pending))
            .advance_watermark_to(b.T0 + 2 * DAY)
            .add_elements(stamped(failed, failed_charge))
            .advance_watermark_to_infinity()
        )
        expected = paid_contribution(
            status="Failed",
            country_code="GB",
            country_source="address",
            payment_method="sepa_debit",
            created=T0_DT + timedelta(days=3, seconds=1),
        )

        def check(out: CoreOutputs) -> None:
            assert_that(out.contributions, equal_to([expected]), label="Contrib")
            assert_that(out.acquisitions, equal_to([]), label="Acq")
            assert_that(out.thank_you_emails, equal_to([]), label="Mail")
            assert_that(out.supporter_product_data, equal_to([]), label="Supporter")

        run_stream(stream, check)

    def test_charge_never_arrives(self) -> None:
        # pi_2 only ever gets a payment_intent.succeeded with a latest_charge id;
        # pi_3 gets nothing at all.
        intent_only = b.event(
            "evt_p2",
            "payment_intent.succeeded",
            b.payment_intent_object(payment_intent_id="pi_2", latest_charge="ch_2"),
            created=b.T0 - 1,
        )
        stream = (
            EventStream()
            .advance_watermark_to(b.T0 - 10)
            .add_elements(
                stamped(
                    intent_only,
                    session_completed("evt_s2", session_id="cs_2", payment_intent="pi_2"),
                    session_completed("evt_s3", session_id="cs_3", payment_intent="pi_3"),
                )
            )
            .advance_watermark_to(b.T0 + 2 * HOUR)
            # Too late: the payment completed when the charge wait ran out.
            .add_elements(
                stamped(charge_succeeded("evt_c2", charge_id="ch_2", payment_intent="pi_2"))
            )
            .advance_watermark_to_infinity()
        )
        expected = paid_contribution(
            payment_id="ch_2",
            payment_intent_id="pi_2",
            checkout_session_id="cs_2",
            contribution_id="49912d88-f6d9-52f1-915f-672a6f791eec",
            country_code="GB",
            country_source="address",
        )
        expected_dead = DeadLetter(
            dead_letter_id="cc652b308aa7259a7694e58a3725d2b4",
            step="join_payment",
            reason="charge_missing",
            error="no charge id by the deadline",
            raw=(
                '{"amount_minor": 500, "checkout_session": "cs_3", "currency": "GBP",'
                ' "events": ["evt_s3"], "payment_intent": "pi_3"}'
            ),
            source="payment_intent:pi_3",
            event_id="evt_s3",
            time=None,
        )

        def check(out: CoreOutputs) -> None:
            assert_that(out.contributions, equal_to([expected]), label="Contrib")
            assert_that(out.dead_letters, equal_to([expected_dead]), label="Dead")

        run_stream(stream, check)

    def test_session_that_never_settles_is_dead_lettered_after_the_timeout(self) -> None:
        pending = session_completed(payment_status="unpaid", payment_method_types=("bacs_debit",))
        stream = (
            EventStream()
            .advance_watermark_to(b.T0 - 10)
            .add_elements(stamped(pending))
            .advance_watermark_to(b.T0 + 30 * DAY)
            .add_elements(stamped(charge_succeeded("evt_late", created=b.T0 + 30 * DAY)))
            .advance_watermark_to_infinity()
        )

        def check(out: CoreOutputs) -> None:
            assert_that(out.contributions, equal_to([]), label="Contrib")
            assert_that(
                out.dead_letters | beam.Map(lambda d: (d.reason, d.source)),
                equal_to([("payment_not_settled", "payment_intent:pi_1")]),
                label="Dead",
            )

        run_stream(stream, check, settlement_timeout=timedelta(days=21))


@pytest.mark.parametrize(
    ("charge_wait", "timeout"),
    [(timedelta(days=2), timedelta(days=1)), (timedelta(hours=1), timedelta(hours=1))],
    ids=["wait-longer-than-timeout", "wait-equal-to-timeout"],
)
def test_rejects_a_charge_wait_not_shorter_than_the_settlement_timeout(
    charge_wait: timedelta, timeout: timedelta
) -> None:
    with pytest.raises(ValueError, match="charge_wait must be shorter than settlement_timeout"):
        ProcessStripeEvents(charge_wait=charge_wait, settlement_timeout=timeout)


def give_identity(payment: Payment) -> Payment:
    """A pure stand-in for the Identity API step: every paying guest is 2001."""
    return with_identity(payment, "2001") if needs_identity(payment) else payment


@pytest.mark.parametrize("path", ["bounded", "unbounded"])
def test_an_injected_identity_step_runs_before_the_records_are_built(path: str) -> None:
    guest = session_completed(metadata={})
    events = [charge_succeeded(), guest]

    def check(out: CoreOutputs) -> None:
        assert_that(
            out.contributions, equal_to([paid_contribution(identity_id="2001")]), label="Contrib"
        )
        assert_that(
            out.supporter_product_data | beam.Map(lambda s: s.identity_id),
            equal_to(["2001"]),
            label="Supporter",
        )
        assert_that(
            out.thank_you_emails | beam.Map(lambda m: json.loads(m.message)["IdentityUserId"]),
            equal_to(["2001"]),
            label="Emails",
        )

    step = beam.Map(give_identity)
    if path == "bounded":
        run_batch(events, check, resolve_identities=step)
    else:
        stream = EventStream().add_elements(stamped(*events)).advance_watermark_to_infinity()
        run_stream(stream, check, resolve_identities=step)
