"""A payment's facts folded to one outcome: the join, the best copy, the deadlines.

Pure functions over `transforms.domain.payment`, shared by both paths of the
core and by the benchmark's baseline:

- the streaming join (`join_fact`, then `settle_late` when the charge
  deadline passes and `close_payment` when the state is dropped), which
  `transforms.core.process.JoinPaymentsFn` drives with state and timers;
- the bounded fold (`join_key` to group every copy of every fact in one
  shuffle, then `fold_payment` / `fold_event` per group), which
  `transforms.core.process.FoldPaymentsFn` applies with the whole input at
  hand, as the streaming join would decide once event time passed every
  deadline.

Copies of one Stripe event (redeliveries, EventBridge replays, exported
copies) count once: `best_copy` keeps the one that names its account.

Every function returns plain values; the DoFns turn them into metrics and
tagged outputs. An outcome is a `Payment` (emit it), an `Unsettled` payment
(dead-letter it, see `unsettled_dead_letter`), `ChargesOnly` (charges whose
checkout session never came: counted, nothing emitted), or None (nothing
to do yet, or already done).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace

from schemas.records import DeadLetter, PaymentAdjustment
from transforms.domain.events import make_dead_letter
from transforms.domain.facts import ChargeFact, Fact, SessionFact, Skip
from transforms.domain.payment import Payment, PaymentState, Verdict, decide, settlement

#: Join-key prefixes of the bounded path: payment facts group by PaymentIntent,
#: everything else by event id.
PAYMENT_KEY = "payment_intent:"
EVENT_KEY = "event:"

CHARGE_MISSING = "charge_missing"
PAYMENT_NOT_SETTLED = "payment_not_settled"


@dataclass(frozen=True)
class Unsettled:
    """A payment that cannot be completed, to dead-letter with `reason` and `error`."""

    state: PaymentState
    reason: str
    error: str


@dataclass(frozen=True)
class ChargesOnly:
    """A dropped state that holds charges but no checkout session: not one of ours."""

    state: PaymentState


Outcome = Payment | Unsettled | ChargesOnly


@dataclass(frozen=True)
class Joined:
    """One fact added to a payment's state, in the streaming join.

    `state` is what to store; `payment` what to emit now, if the fact
    completed it; `charge_deadline` (epoch seconds) when to settle it late,
    if it waits for its charge; `after_completion` tells that the fact came
    for a payment already emitted.
    """

    state: PaymentState
    payment: Payment | None = None
    charge_deadline: int | None = None
    after_completion: bool = False


@dataclass(frozen=True)
class Folded:
    """A group of the bounded fold: its outcome and how many copies it held.

    `events` counts distinct event ids (each processed once), `duplicates`
    the copies beyond one per event id. `skip_reason` is set for a group of
    skipped events (counted once, by that reason).
    """

    outcome: Outcome | PaymentAdjustment | None
    events: int
    duplicates: int
    skip_reason: str | None = None


def best_copy(copies: list[Fact]) -> Fact:
    """The copy of one Stripe event to keep: one that names its account wins.

    Copies of an event differ only in what delivered them (a bare API export
    has no EventBridge source, hence no account); the rest of the ranking is
    a stable tie-break so that re-runs pick the same copy.
    """
    if len(copies) == 1:
        return copies[0]

    def rank(fact: Fact) -> tuple[bool, str]:
        account = fact.account if isinstance(fact, PaymentAdjustment) else fact.meta.account
        return account is None, repr(fact)

    return min(copies, key=rank)


def join_key(event_id: str, fact: Fact) -> tuple[str, Fact | str]:
    """(join key, fact or skip reason), for the bounded path's one shuffle.

    Payment facts group by PaymentIntent, everything else by event id; a
    skip travels as its reason alone, since only its copies are counted.
    """
    if isinstance(fact, SessionFact | ChargeFact):
        return PAYMENT_KEY + fact.payment_intent_id, fact
    if isinstance(fact, Skip):
        return EVENT_KEY + event_id, fact.reason
    return EVENT_KEY + event_id, fact


def completed(state: PaymentState) -> PaymentState:
    """The state once its payment is emitted (or dead-lettered): later facts change nothing."""
    return replace(state, completed=True)


def join_fact(state: PaymentState, fact: SessionFact | ChargeFact, charge_wait: int) -> Joined:
    """`fact` added to `state` before the charge deadline (`charge_wait` in seconds)."""
    added = state.add(fact)
    decision = decide(added, charge_wait=charge_wait, deadline_passed=False)
    if decision.verdict is Verdict.COMPLETE:
        return Joined(completed(added), payment=decision.payment, after_completion=state.completed)
    return Joined(
        added,
        charge_deadline=decision.charge_deadline
        if decision.verdict is Verdict.WAIT_FOR_CHARGE
        else None,
        after_completion=state.completed,
    )


def settle_late(state: PaymentState, charge_wait: int) -> tuple[PaymentState, Outcome | None]:
    """Completes a payment whose charge deadline passed, with what is known.

    Returns the state to keep and a `Payment`, an `Unsettled` one (no charge
    id by the deadline) or None (not settled yet, or already completed).
    """
    decision = decide(state, charge_wait=charge_wait, deadline_passed=True)
    if decision.verdict is Verdict.COMPLETE:
        assert decision.payment is not None
        return completed(state), decision.payment
    if decision.verdict is Verdict.CHARGE_MISSING:
        return completed(state), Unsettled(state, CHARGE_MISSING, "no charge id by the deadline")
    return state, None


def close_payment(state: PaymentState, charge_wait: int) -> Outcome | None:
    """What a payment's state yields when it is dropped (input ended or timed out)."""
    settled, outcome = settle_late(state, charge_wait)
    if settled.completed:
        return outcome
    if state.sessions:
        return Unsettled(state, PAYMENT_NOT_SETTLED, "no settlement before timeout")
    return ChargesOnly(state)


def fold_payment(facts: Iterable[SessionFact | ChargeFact], charge_wait: int) -> Folded:
    """Every copy of every fact of one PaymentIntent, decided past every deadline.

    Copies are reduced to one per event id (`best_copy`), then the payment is
    decided as the streaming join would once event time passed every deadline.
    """
    copies: dict[str, list[Fact]] = {}
    count = 0
    for fact in facts:
        copies.setdefault(fact.meta.event_id, []).append(fact)
        count += 1
    sessions: list[SessionFact] = []
    charges: list[ChargeFact] = []
    for event_id in sorted(copies):
        kept = best_copy(copies[event_id])
        if isinstance(kept, SessionFact):
            sessions.append(kept)
        elif isinstance(kept, ChargeFact):
            charges.append(kept)
    state = PaymentState(sessions=tuple(sessions), charges=tuple(charges))
    decision = decide(state, charge_wait=charge_wait, deadline_passed=False)
    outcome: Outcome | None = decision.payment
    if decision.verdict is not Verdict.COMPLETE:
        outcome = close_payment(state, charge_wait)
    return Folded(outcome, events=len(copies), duplicates=count - len(copies))


def fold_event(values: list[Fact | str]) -> Folded:
    """Every copy of one event that is not a payment fact: an adjustment or a skip.

    `values` are what `join_key` gave: facts, or skip reasons for skipped events.
    """
    duplicates = len(values) - 1
    first = values[0]
    if isinstance(first, str):
        return Folded(None, events=0, duplicates=duplicates, skip_reason=first)
    kept = best_copy([v for v in values if not isinstance(v, str)])
    assert isinstance(kept, PaymentAdjustment), kept
    return Folded(kept, events=1, duplicates=duplicates)


def unsettled_dead_letter(unsettled: Unsettled) -> DeadLetter:
    """The dead letter of a payment that cannot be completed, without personal data."""
    state = unsettled.state
    session = settlement(state) or min(state.sessions, key=lambda s: s.meta.event_id)
    # A summary without personal data; the events themselves are in the archive.
    raw = json.dumps(
        {
            "payment_intent": session.payment_intent_id,
            "checkout_session": session.session_id,
            "amount_minor": session.amount_minor,
            "currency": session.currency,
            "events": sorted(
                [s.meta.event_id for s in state.sessions] + [c.meta.event_id for c in state.charges]
            ),
        },
        sort_keys=True,
    )
    return make_dead_letter(
        step="join_payment",
        reason=unsettled.reason,
        error=unsettled.error,
        raw=raw,
        source=f"payment_intent:{session.payment_intent_id}",
        event_id=session.meta.event_id,
        time=None,
    )
