"""Complete `charge_missing` payments from Stripe: one PaymentIntent retrieval each.

    unsettled | beam.ParDo(CompleteFromStripeFn(api_key, api_base, charge_wait))
        -> payments (main) and DEAD_LETTERS, as the fold's outputs
    ProcessStripeEvents(complete_charges=CompleteFromStripe(api_key, api_base, charge_wait))

A payment the core left `charge_missing` (the backfill's fold, or the
streaming join when its charge deadline or expiry timer fires) gets its
PaymentIntent retrieved once (`transforms.services.stripe_charges`); the
charge it names joins the payment's facts and the payment is folded again
(`completion.completed_with`), so it flows on exactly as if the charge event
had arrived. When the retrieval
fails or gives no charge, the payment is the `charge_missing` letter it would
have been, its error saying why. Any other outcome passes through untouched.
It is a read, so a retried bundle only reads again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import apache_beam as beam

from transforms.core import metrics
from transforms.core.process import DEAD_LETTERS, outputs_of
from transforms.domain.completion import completed_with
from transforms.domain.fold import CHARGE_MISSING, Outcome, Unsettled
from transforms.domain.payment import Payment
from transforms.services.stripe_charges import ChargeRetriever, RetrievalError


class CompleteFromStripeFn(beam.DoFn):
    """Outcome -> the fold's outputs, a `charge_missing` one completed from Stripe if it can be."""

    def __init__(self, api_key: str, api_base: str, charge_wait: timedelta) -> None:
        self._api_key = api_key
        self._api_base = api_base
        self._charge_wait = int(charge_wait.total_seconds())
        self._retriever: ChargeRetriever | None = None

    def setup(self) -> None:
        self._retriever = ChargeRetriever(self._api_key, self._api_base)

    def process(self, outcome: Outcome | None) -> Iterator[object]:
        if not isinstance(outcome, Unsettled) or outcome.reason != CHARGE_MISSING:
            yield from outputs_of(outcome)
            return
        assert self._retriever is not None
        session = outcome.state.sessions[0]
        try:
            charge = self._retriever.charge_fact(session.payment_intent_id, session.meta.account)
        except RetrievalError as error:
            metrics.inc(metrics.CHARGE_RETRIEVALS_FAILED)
            failed = f"{outcome.error}; Stripe retrieval: {error.reason}: {error}"
            yield from outputs_of(replace(outcome, error=failed))
            return
        completed = completed_with(outcome, charge, self._charge_wait)
        if isinstance(completed, Payment):
            metrics.inc(metrics.CHARGES_COMPLETED_FROM_STRIPE)
        yield from outputs_of(completed)


class CompleteFromStripe(beam.PTransform):
    """The core's `complete_charges` step: outcomes -> outputs `payments` and DEAD_LETTERS."""

    def __init__(self, api_key: str, api_base: str, charge_wait: timedelta) -> None:
        super().__init__()
        self._fn = CompleteFromStripeFn(api_key, api_base, charge_wait)

    def expand(self, outcomes: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return outcomes | "RetrieveCharges" >> beam.ParDo(self._fn).with_outputs(
            DEAD_LETTERS, main="payments"
        )
