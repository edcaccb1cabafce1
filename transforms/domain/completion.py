"""The charge fact of a PaymentIntent read from Stripe, for a `charge_missing` payment.

When a payment's charge event never arrived, one retrieval of its
PaymentIntent (`GET /v1/payment_intents/{id}?expand[]=latest_charge`) can say
what the event would have said. `charge_fact_of(intent)` is pure: it reads the
retrieved object with the same boundary schema and the same function as a
`payment_intent.succeeded` or `payment_intent.payment_failed` event
(`transforms.domain.facts`), so the payment is completed exactly as if that
event had arrived. Older API versions embed the charges as `charges.data`;
newer ones give `latest_charge`, expanded or not: both are read.

A PaymentIntent with no outcome yet (still processing, or never confirmed),
or with an outcome but no charge, gives a `CompletionError` whose reason the
`charge_missing` letter carries; no personal data is ever in its message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from schemas.records import PaymentAdjustment
from transforms.domain import facts
from transforms.domain.fold import Outcome, Unsettled, fold_payment

#: The `event_type` of the fact a retrieval gives: no event of Stripe's has it.
RETRIEVED = "payment_intent.retrieved"
#: The event id of that fact: the PaymentIntent's id after this prefix.
RETRIEVED_ID_PREFIX = "retrieved:"

#: Why a retrieval did not complete the payment (the letter's error starts with it).
NOT_SETTLED = "payment_intent_not_settled"
NO_CHARGE = "payment_intent_without_charge"
INVALID = "invalid_payment_intent"
#: A failed attempt leaves the PaymentIntent waiting for a new payment method.
FAILED_STATUS = "requires_payment_method"


class CompletionError(ValueError):
    """A retrieved PaymentIntent that cannot complete the payment, and why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def charge_fact_of(intent: Mapping[str, Any], *, account: str | None = None) -> facts.ChargeFact:
    """The charge fact a retrieved PaymentIntent gives, as its outcome event would have.

    `succeeded` is the PaymentIntent's `status`; a `requires_payment_method`
    one with a `last_payment_error` is a failed attempt. The fact's time is
    the charge's `created` (else the PaymentIntent's), so it sorts with the
    facts of the events.
    """
    status = intent.get("status")
    if status == "succeeded":
        succeeded = True
    elif status == FAILED_STATUS and intent.get("last_payment_error"):
        succeeded = False
    else:
        raise CompletionError(NOT_SETTLED, f"status is {_word(status)}")
    created = intent.get("created")
    meta = facts.EventMeta(
        event_id=RETRIEVED_ID_PREFIX + str(intent.get("id")),
        event_type=RETRIEVED,
        created=created if isinstance(created, int) else 0,
        livemode=bool(intent.get("livemode")),
        account=account,
    )
    try:
        fact = facts.classify_payment_intent(meta, intent, succeeded=succeeded)
    except facts.ClassifyError as error:
        message = str(error).replace("data.object", "payment_intent")
        raise CompletionError(INVALID, message) from None
    if not isinstance(fact, facts.ChargeFact) or fact.charge_id is None:
        raise CompletionError(NO_CHARGE, f"status is {status} but no charge is named")
    if fact.charge_created is not None:
        # The event time of the fact is the charge's, as its outcome event's would be.
        fact = dataclasses.replace(
            fact, meta=dataclasses.replace(meta, created=fact.charge_created)
        )
    return fact


def _word(value: object) -> str:
    """A status as Stripe spells one, else a placeholder: never an arbitrary string."""
    if isinstance(value, str) and value.replace("_", "").isalpha() and len(value) <= 40:
        return value
    return "missing" if value is None else "not a status"


def completed_with(
    unsettled: Unsettled, charge: facts.ChargeFact, charge_wait: int
) -> Outcome | None:
    """The outcome of a `charge_missing` payment once the retrieved charge joins it.

    The payment's facts plus the charge, folded as the bounded fold folds them:
    the same outcome as if the charge event had been in the input.
    """
    state = unsettled.state
    outcome = fold_payment([*state.sessions, *state.charges, charge], charge_wait).outcome
    assert not isinstance(outcome, PaymentAdjustment), outcome
    return outcome
