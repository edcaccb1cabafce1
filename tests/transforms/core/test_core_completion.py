"""The core's completion step on the unbounded path, with TestStream (DirectRunner).

With `complete_charges` the streaming join sends the payments its timers leave
`charge_missing` (the charge deadline, or the expiry before it) to the step
instead of a letter. The step here is the real `CompleteFromStripe` against a
local stand-in for Stripe's PaymentIntents API. A charge event arriving after
the completion is counted and never emits the payment twice; a failed
retrieval writes the letter the bounded path writes.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
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

from tests import builders as b
from tests.fixtures.stripe_payment_intents import (
    API_KEY,
    StripePaymentIntentsApi,
    stripe_payment_intents_api,
)
from tests.stripe_shapes import BASIL_2025, fixture
from tests.transforms.core.test_core import (
    DAY,
    HOUR,
    T0_DT,
    bacs_contribution,
    bacs_pending,
    bacs_settled,
    paid_contribution,
    session_completed,
    stamped,
)
from transforms.core import metrics
from transforms.core.process import CoreOutputs, ProcessStripeEvents
from transforms.domain.events import StripeEvent, make_dead_letter
from transforms.domain.facts import classify
from transforms.domain.fold import fold_payment
from transforms.domain.mapping import build_records
from transforms.domain.payment import Payment
from transforms.services.complete_from_stripe import CompleteFromStripe

__all__ = ["stripe_payment_intents_api"]

WAIT = timedelta(hours=1)
TIMEOUT = timedelta(days=21)
#: When ch_1, the charge of pi_1 (served by the stand-in, and in its late event), was created.
CHARGE_CREATED = b.T0 - 1
#: Every counter the scenarios assert, so that one counted where it should not is seen.
COUNTERS = (
    metrics.PROCESSED,
    metrics.PAYMENTS_PREFIX + "paid",
    metrics.PAYMENTS_PREFIX + "dead_lettered_charge_missing",
    metrics.FACTS_AFTER_COMPLETION,
    metrics.CHARGES_COMPLETED_FROM_STRIPE,
    metrics.CHARGE_RETRIEVALS_FAILED,
    metrics.CHARGES_WITHOUT_SESSION,
)


def charge_1(created: int = CHARGE_CREATED, **charge: Any) -> dict[str, Any]:
    """The charge ch_1 of pi_1, as Stripe serves it and as its event carries it."""
    return {**b.charge_object(**charge), "created": created}


def charge_event(created: int = CHARGE_CREATED, **charge: Any) -> StripeEvent:
    return b.event("evt_c1", "charge.succeeded", charge_1(created, **charge), created=created)


def serve_pi_1(api: StripePaymentIntentsApi, created: int = CHARGE_CREATED, **charge: Any) -> None:
    """pi_1 succeeded with ch_1 (basil shape), the charge expandable."""
    api.charges["ch_1"] = charge_1(created, **charge)
    api.intents["pi_1"] = fixture(
        BASIL_2025, "payment_intent", id="pi_1", status="succeeded", latest_charge="ch_1"
    )


def completer(api_url: str, key: str = API_KEY) -> CompleteFromStripe:
    return CompleteFromStripe(key, api_url, WAIT)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Every `metrics.inc` of the test's runs, by name (the runners run in this process).

    Not the DirectRunner's metric results: its worker threads cache each step's
    scoped state with the metrics container of the step's first bundle, so the
    updates of a later bundle of that step go to a container already committed
    and the results undercount (a TestStream step that counts one element per
    watermark advance reports 1 for 2).
    """
    calls: Counter[str] = Counter()
    lock = threading.Lock()
    inc = metrics.inc

    def recording(name: str, value: int = 1) -> None:
        with lock:
            calls[name] += value
        inc(name, value)

    monkeypatch.setattr(metrics, "inc", recording)
    yield calls


def run_stream(stream: EventStream, check: Any, **core_args: Any) -> None:
    pipeline = BeamTestPipeline(
        runner=BundleBasedDirectRunner(), options=PipelineOptions(streaming=True)
    )
    check(
        pipeline
        | stream
        | ProcessStripeEvents(charge_wait=WAIT, settlement_timeout=TIMEOUT, **core_args)
    )
    pipeline.run().wait_until_finish()


def run_batch(events: list[StripeEvent], check: Any, **core_args: Any) -> None:
    pipeline = beam.Pipeline(runner=FnApiRunner())
    outputs = (
        pipeline
        | beam.Create(events)
        | beam.Map(lambda e: TimestampedValue(e, e.created))
        | ProcessStripeEvents(charge_wait=WAIT, settlement_timeout=TIMEOUT, **core_args)
    )
    check(outputs)
    pipeline.run().wait_until_finish()


def of_interest(calls: Counter[str]) -> dict[str, int]:
    """The COUNTERS among `calls`, 0 where not counted."""
    return {name: calls[name] for name in COUNTERS}


def counts(**nonzero: int) -> dict[str, int]:
    """COUNTERS, all 0 but `nonzero`."""
    return {name: nonzero.get(name, 0) for name in COUNTERS}


def expect_records(out: CoreOutputs, payment: Payment | None) -> None:
    """Every output is exactly the records of `payment` (none when None)."""
    records = build_records(payment) if payment is not None else None

    def one(value: object) -> list[object]:
        return [] if value is None else [value]

    expected = {
        "Contributions": (out.contributions, one(records and records.contribution)),
        "Acquisitions": (out.acquisitions, one(records and records.acquisition)),
        "AcquisitionEvents": (out.acquisition_events, one(records and records.acquisition_event)),
        "Store": (out.contributions_store, one(records and records.contribution_store)),
        "Supporter": (out.supporter_product_data, one(records and records.supporter)),
        "Emails": (out.thank_you_emails, one(records and records.thank_you_email)),
        "OptIns": (out.soft_opt_ins, one(records and records.soft_opt_in)),
        "Adjustments": (out.payment_adjustments, []),
    }
    for label, (pcoll, values) in expected.items():
        assert_that(pcoll, equal_to(values), label=label)


def late_charge_stream(session: StripeEvent, late_charge: StripeEvent) -> EventStream:
    """`session` at T0, then `late_charge` once the watermark is past its charge deadline."""
    return (
        EventStream()
        .advance_watermark_to(b.T0 - 10)
        .add_elements(stamped(session))
        .advance_watermark_to(b.T0 + 2 * HOUR)
        .add_elements(stamped(late_charge))
        .advance_watermark_to_infinity()
    )


def complete_payment(*events: StripeEvent) -> Payment:
    """The payment the bounded fold makes of `events`: as if every one had come in time."""
    facts = [classify(event) for event in events]
    outcome = fold_payment(facts, int(WAIT.total_seconds())).outcome  # type: ignore[arg-type]
    assert isinstance(outcome, Payment)
    return outcome


def test_a_charge_event_after_the_completion_is_counted_and_emits_nothing_more(
    stripe_payment_intents_api: StripePaymentIntentsApi, counted: Counter[str]
) -> None:
    api = stripe_payment_intents_api
    serve_pi_1(api)
    session = session_completed()
    late_charge = charge_event()
    # Past the charge deadline (T0 + 1 h): the timer fires, pi_1 is retrieved.
    stream = late_charge_stream(session, late_charge)

    def check(out: CoreOutputs) -> None:
        assert_that(out.contributions, equal_to([paid_contribution()]), label="Contribution")
        expect_records(out, complete_payment(session, late_charge))
        assert_that(out.dead_letters, equal_to([]), label="Letters")

    run_stream(stream, check, complete_charges=completer(api.url))

    assert of_interest(counted) == counts(
        **{
            metrics.PROCESSED: 2,
            metrics.PAYMENTS_PREFIX + "paid": 1,
            metrics.CHARGES_COMPLETED_FROM_STRIPE: 1,
            metrics.FACTS_AFTER_COMPLETION: 1,
        }
    )
    # One retrieval, made when the deadline passed: the late charge changed nothing.
    assert api.requests == [("/v1/payment_intents/pi_1", {"expand[0]": ["latest_charge"]})]


def test_a_payment_the_expiry_leaves_charge_missing_is_completed_too(
    stripe_payment_intents_api: StripePaymentIntentsApi, counted: Counter[str]
) -> None:
    # A Bacs debit settling ten minutes before the session's state expires: the
    # expiry (T0 + 21 days) fires before the charge deadline (settled + 1 h).
    settled_at = b.T0 + 21 * DAY - 600
    api = stripe_payment_intents_api
    serve_pi_1(api, settled_at - 5, method="bacs_debit")
    pending, settled = bacs_pending(), bacs_settled(settled_at)
    late_charge = charge_event(settled_at - 5, method="bacs_debit")
    stream = (
        EventStream()
        .advance_watermark_to(b.T0 - 10)
        .add_elements(stamped(pending))
        .advance_watermark_to(settled_at - 1)
        .add_elements(stamped(settled))
        # Past the expiry, not yet past the charge deadline.
        .advance_watermark_to(b.T0 + 21 * DAY + 1)
        .add_elements(stamped(late_charge))
        .advance_watermark_to_infinity()
    )
    expected = bacs_contribution(T0_DT + timedelta(days=21, seconds=-600))

    def check(out: CoreOutputs) -> None:
        assert_that(out.contributions, equal_to([expected]), label="Contribution")
        expect_records(out, complete_payment(pending, settled, late_charge))
        assert_that(out.dead_letters, equal_to([]), label="Letters")

    run_stream(stream, check, complete_charges=completer(api.url))

    # The expired state was dropped: the late charge starts one of its own, which
    # ends as a charge without a session, as it would without the completion.
    assert of_interest(counted) == counts(
        **{
            metrics.PROCESSED: 3,
            metrics.PAYMENTS_PREFIX + "paid": 1,
            metrics.CHARGES_COMPLETED_FROM_STRIPE: 1,
            metrics.CHARGES_WITHOUT_SESSION: 1,
        }
    )
    assert [path for path, _ in api.requests] == ["/v1/payment_intents/pi_1"]


def _unused_port() -> int:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return int(unused.getsockname()[1])


@pytest.mark.parametrize(
    ("failure", "why"),
    [
        ("not_found", "not_found: Stripe has no PaymentIntent pi_1"),
        ("key_refused", "key_refused: Stripe refused the key in STRIPE_API_KEY for PaymentIntents"),
        ("unreachable", "unreachable: Stripe could not be reached after 2 retries (network error)"),
    ],
    ids=["not-found", "key-refused", "unreachable"],
)
def test_a_failed_retrieval_writes_the_letter_the_bounded_path_writes(
    stripe_payment_intents_api: StripePaymentIntentsApi,
    counted: Counter[str],
    failure: str,
    why: str,
) -> None:
    api = stripe_payment_intents_api
    url, key = api.url, API_KEY
    if failure == "key_refused":
        serve_pi_1(api)
        key = "rk_test_refusedrefused"
    elif failure == "unreachable":
        url = f"http://127.0.0.1:{_unused_port()}"
    session = session_completed()
    late_charge = charge_event()
    stream = late_charge_stream(session, late_charge)
    expected = make_dead_letter(
        step="join_payment",
        reason="charge_missing",
        error=f"no charge id by the deadline; Stripe retrieval: {why}",
        raw=(
            '{"amount_minor": 500, "checkout_session": "cs_1", "currency": "GBP",'
            ' "events": ["evt_s1"], "payment_intent": "pi_1"}'
        ),
        source="payment_intent:pi_1",
        event_id="evt_s1",
    )

    def check(out: CoreOutputs) -> None:
        expect_records(out, None)
        assert_that(out.dead_letters, equal_to([expected]), label="Letters")

    run_stream(stream, check, complete_charges=completer(url, key))
    streamed = of_interest(counted)
    counted.clear()
    run_batch([session], check, complete_charges=completer(url, key))

    assert streamed == counts(
        **{
            metrics.PROCESSED: 2,
            metrics.PAYMENTS_PREFIX + "dead_lettered_charge_missing": 1,
            metrics.CHARGE_RETRIEVALS_FAILED: 1,
            metrics.FACTS_AFTER_COMPLETION: 1,
        }
    )
    assert of_interest(counted) == counts(
        **{
            metrics.PROCESSED: 1,
            metrics.PAYMENTS_PREFIX + "dead_lettered_charge_missing": 1,
            metrics.CHARGE_RETRIEVALS_FAILED: 1,
        }
    )
