from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from tests.builders import T0, charge_fact, charge_object, session_fact
from tests.fixtures.stripe_payment_intents import (
    API_KEY,
    StripePaymentIntentsApi,
    stripe_payment_intents_api,
)
from tests.stripe_shapes import BASIL_2025, fixture
from transforms.core import metrics
from transforms.core.process import DEAD_LETTERS
from transforms.domain.fold import fold_payment
from transforms.services.complete_from_stripe import CompleteFromStripeFn

__all__ = ["stripe_payment_intents_api"]

WAIT = timedelta(hours=1)


def letter_summary(letter: Any) -> tuple[str, str, str]:
    return (letter.reason, json.loads(letter.raw)["payment_intent"], letter.error.split("; ")[-1])


def run(
    api: StripePaymentIntentsApi,
    outcomes: list[Any],
    payments: list[Any],
    letters: list[tuple[str, str, str]],
) -> Any:
    pipeline = beam.Pipeline(runner=FnApiRunner())
    outputs = (
        pipeline
        | beam.Create(outcomes)
        | beam.ParDo(CompleteFromStripeFn(API_KEY, api.url, WAIT)).with_outputs(
            DEAD_LETTERS, main="payments"
        )
    )
    assert_that(outputs.payments, equal_to(payments), label="Payments")
    summaries = outputs[DEAD_LETTERS] | beam.Map(letter_summary)
    assert_that(summaries, equal_to(letters), label="Letters")
    result = pipeline.run()
    result.wait_until_finish()
    return result


def counted(result: Any, name: str) -> int:
    query = result.metrics().query(beam.metrics.MetricsFilter().with_name(name))
    return sum(c.committed for c in query["counters"])


def test_a_charge_missing_payment_is_completed_and_one_stripe_cannot_name_stays_a_letter(
    stripe_payment_intents_api: StripePaymentIntentsApi,
) -> None:
    api = stripe_payment_intents_api
    charge = {**charge_object(), "created": T0 + 5}
    api.charges["ch_1"] = charge
    api.intents["pi_1"] = fixture(
        BASIL_2025, "payment_intent", id="pi_1", status="succeeded", latest_charge="ch_1"
    )
    wait = int(WAIT.total_seconds())
    found = fold_payment([session_fact()], wait).outcome
    gone = fold_payment(
        [session_fact("evt_s2", session_id="cs_2", payment_intent="pi_gone")], wait
    ).outcome
    expected = fold_payment([session_fact(), charge_fact(obj=charge)], wait).outcome

    letter = (
        "charge_missing",
        "pi_gone",
        "Stripe retrieval: not_found: Stripe has no PaymentIntent pi_gone",
    )

    result = run(api, [found, gone], [expected], [letter])

    assert counted(result, metrics.CHARGES_COMPLETED_FROM_STRIPE) == 1
    assert counted(result, metrics.CHARGE_RETRIEVALS_FAILED) == 1
    assert sorted(path for path, _ in api.requests) == [
        "/v1/payment_intents/pi_1",
        "/v1/payment_intents/pi_gone",
    ]
