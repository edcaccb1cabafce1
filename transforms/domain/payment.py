"""Joining a payment's facts, whatever order they arrive in.

Everything known about one PaymentIntent is a `PaymentState`; `decide`
says, from the state alone, whether the payment is complete, must wait,
or cannot be completed. It is pure, so the stateful DoFn in `transforms.core.process`
only stores the state and sets timers, and the rules are tested without Beam.

The rules, all in event time so that a backfill and the streaming job agree:

- a payment settles when its session completes with `payment_status=paid`,
  or when `checkout.session.async_payment_succeeded` / `_failed` arrives;
- a settled payment waits for the charge object (the card country only comes
  with it) until `settled + charge_wait`; charge facts created after that
  deadline are ignored;
- once the deadline passed, it completes with what is known: the charge id
  from any PaymentIntent event and the country from the address. With no
  charge id at all it is `charge_missing`;
- a failed payment is the latest failed attempt: on one Checkout page a card
  can be declined before the reader pays by a bank debit that fails days
  later, and only the debit settles the session. Attempts that failed before
  the session completed were declined on the page (Stripe completes the
  session only once a payment method is accepted), so they are left out; of
  the rest, the latest names the charge (the PaymentIntent's `latest_charge`
  at the async failure).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from transforms.domain.facts import (
    ASYNC_FAILED,
    ASYNC_SUCCEEDED,
    PAID,
    PENDING,
    ChargeFact,
    SessionFact,
)

PAID_STATUS = "Paid"
FAILED_STATUS = "Failed"


@dataclass(frozen=True)
class Payment:
    """A settled one-off payment, joined from its session and charge facts.

    `identity_id` is the identity the Identity API gave a payer whose session
    named none (`transforms.domain.identity`); None until then, or for a guest.
    """

    session: SessionFact
    status: str
    settled_at: int
    charge_id: str
    card_country: str | None
    payment_method: str | None
    account: str | None
    identity_id: str | None = None
    #: The charge object's `created` (epoch seconds), when the charge object was seen.
    charge_created: int | None = None


@dataclass(frozen=True)
class PaymentState:
    """What is known about one PaymentIntent so far."""

    sessions: tuple[SessionFact, ...] = ()
    charges: tuple[ChargeFact, ...] = ()
    completed: bool = False

    def add(self, fact: SessionFact | ChargeFact) -> PaymentState:
        if isinstance(fact, SessionFact):
            return replace(self, sessions=self.sessions + (fact,))
        return replace(self, charges=self.charges + (fact,))

    @property
    def first_created(self) -> int:
        created = [s.meta.created for s in self.sessions] + [c.meta.created for c in self.charges]
        return min(created)


class Verdict(Enum):
    COMPLETE = "complete"
    WAIT_FOR_CHARGE = "wait_for_charge"
    WAIT_FOR_SETTLEMENT = "wait_for_settlement"
    CHARGE_MISSING = "charge_missing"
    ALREADY_COMPLETED = "already_completed"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    payment: Payment | None = None
    charge_deadline: int | None = None


def settlement(state: PaymentState) -> SessionFact | None:
    """The session fact that settled the payment, if any has.

    An async outcome wins over the completion that preceded it; among equals
    the earliest event wins so that redelivered copies change nothing.
    """
    async_outcomes = [s for s in state.sessions if s.outcome in (ASYNC_SUCCEEDED, ASYNC_FAILED)]
    if async_outcomes:
        return min(async_outcomes, key=lambda s: (s.meta.created, s.meta.event_id))
    paid = [s for s in state.sessions if s.outcome == PAID]
    return min(paid, key=lambda s: (s.meta.created, s.meta.event_id)) if paid else None


def decide(state: PaymentState, *, charge_wait: int, deadline_passed: bool) -> Decision:
    """Whether the payment in `state` is complete; see the module docstring.

    `charge_wait` is in seconds; `deadline_passed` is True once event time
    reached the charge deadline (the DoFn's timer fired).
    """
    if state.completed:
        return Decision(Verdict.ALREADY_COMPLETED)
    settled = settlement(state)
    if settled is None:
        return Decision(Verdict.WAIT_FOR_SETTLEMENT)
    succeeded = settled.outcome != ASYNC_FAILED
    deadline = settled.meta.created + charge_wait
    relevant = sorted(
        (c for c in state.charges if c.succeeded == succeeded and c.meta.created <= deadline),
        key=lambda c: (c.meta.created, c.meta.event_id),
    )
    if not succeeded:
        relevant = _latest_attempt(state, relevant)
    with_object = [c for c in relevant if c.has_charge_object and c.charge_id]
    if with_object:
        return Decision(Verdict.COMPLETE, _payment(state, settled, with_object[0]))
    if not deadline_passed:
        return Decision(Verdict.WAIT_FOR_CHARGE, charge_deadline=deadline)
    with_id = [c for c in relevant if c.charge_id]
    if with_id:
        return Decision(Verdict.COMPLETE, _payment(state, settled, with_id[0]))
    return Decision(Verdict.CHARGE_MISSING, charge_deadline=deadline)


def _latest_attempt(state: PaymentState, failed: list[ChargeFact]) -> list[ChargeFact]:
    """The facts, in `failed` (sorted by time), of the attempt that failed the payment.

    See the module docstring: attempts that failed before the session completed
    (when the completion is known) or on a card are left out, and the latest
    remaining charge id is the attempt. Redelivered copies name the same charge, so the
    choice does not depend on arrival order.
    """
    completions = [s.meta.created for s in state.sessions if s.outcome == PENDING]
    if completions:
        completed = min(completions)
        failed = [c for c in failed if c.meta.created >= completed]
    # Cards are confirmed on the page, never asynchronously: a failed card charge
    # is a decline even when the completion has not arrived yet.
    failed = [c for c in failed if c.payment_method != "card"]
    named = [c for c in failed if c.charge_id]
    if not named:
        return failed
    attempt = named[-1].charge_id
    return [c for c in failed if c.charge_id == attempt]


def _payment(state: PaymentState, settled: SessionFact, charge: ChargeFact) -> Payment:
    assert charge.charge_id is not None
    accounts = [settled.meta.account, charge.meta.account]
    accounts += [s.meta.account for s in state.sessions] + [c.meta.account for c in state.charges]
    return Payment(
        session=settled,
        status=PAID_STATUS if settled.outcome != ASYNC_FAILED else FAILED_STATUS,
        settled_at=settled.meta.created,
        charge_id=charge.charge_id,
        card_country=charge.card_country,
        payment_method=charge.payment_method
        or (settled.payment_method_types[0] if len(settled.payment_method_types) == 1 else None),
        account=next((a for a in accounts if a), None),
        charge_created=charge.charge_created,
    )
