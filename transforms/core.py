"""The core: Stripe events in, contribution records out. No IO.

`ProcessStripeEvents` is the only place with event logic. The backfill and
the streaming job both apply it to a PCollection of `StripeEvent`s (event
time = the event's `created`) and write its outputs; only their read step
and their writers differ.

Steps, with the delivery guarantee each gives:

1. ClassifyEvents: each event becomes one fact (`transforms.facts`); an
   unreadable payload of a type we handle becomes a dead letter.
2. DeduplicateEvents: one copy per Stripe event id (`evt_...`), so
   redeliveries, EventBridge replays and exported copies count once. On a
   bounded input all copies are grouped and the best one kept (a copy with an
   EventBridge envelope beats a bare export, since only it names the
   account); on an unbounded input the first copy wins and the id is
   remembered for `dedupe_horizon` of event time.
3. RouteFacts: skips are counted, refunds and disputes are final
   adjustments (no per-payment state: they can come months later, or before
   the payment), session and charge facts are keyed by PaymentIntent id.
4. JoinPayments: per-PaymentIntent state and event-time timers
   (`transforms.payment` holds the rules): charge wait, then a settlement
   timeout after which the state is dropped.
5. BuildRecords: one settled payment -> at most one record of each kind.

Outputs (all in `CoreOutputs`): contributions, acquisitions,
payment_adjustments, contributions_store, supporter_product_data,
thank_you_emails, soft_opt_ins, dead_letters. Every element is emitted once
per pipeline run; across runs, replays or restarts the writers make it
exactly once by upserting on each record's natural key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder, PickleCoder
from apache_beam.pvalue import PCollection, TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.typehints import KV
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.records import (
    Acquisition,
    Contribution,
    ContributionStoreRecord,
    DeadLetter,
    PaymentAdjustment,
    SoftOptIn,
    SupporterProductData,
    ThankYouEmail,
)
from transforms import metrics
from transforms.events import StripeEvent, make_dead_letter
from transforms.facts import ChargeFact, ClassifyError, Fact, SessionFact, Skip, classify
from transforms.mapping import build_records
from transforms.payment import Payment, PaymentState, Verdict, decide, settlement

DEAD_LETTERS = "dead_letters"
ADJUSTMENTS = "payment_adjustments"
PAYMENT_FACTS = "payment_facts"
ACQUISITIONS = "acquisitions"
CONTRIBUTIONS_STORE = "contributions_store"
SUPPORTER_ITEMS = "supporter_product_data"
THANK_YOU_EMAILS = "thank_you_emails"
SOFT_OPT_INS = "soft_opt_ins"

DEFAULT_CHARGE_WAIT = timedelta(hours=1)
# SEPA debits can take 14 business days to settle.
DEFAULT_SETTLEMENT_TIMEOUT = timedelta(days=21)
# Stripe retries a delivery for up to three days.
DEFAULT_DEDUPE_HORIZON = timedelta(days=4)


@dataclass(frozen=True)
class CoreOutputs:
    """The core's outputs, one PCollection per record type."""

    contributions: PCollection
    acquisitions: PCollection
    payment_adjustments: PCollection
    contributions_store: PCollection
    supporter_product_data: PCollection
    thank_you_emails: PCollection
    soft_opt_ins: PCollection
    dead_letters: PCollection

    def by_record_type(self) -> dict[type, PCollection]:
        """{record type: PCollection}, the shape the writers take."""
        return {
            Contribution: self.contributions,
            Acquisition: self.acquisitions,
            PaymentAdjustment: self.payment_adjustments,
            ContributionStoreRecord: self.contributions_store,
            SupporterProductData: self.supporter_product_data,
            ThankYouEmail: self.thank_you_emails,
            SoftOptIn: self.soft_opt_ins,
            DeadLetter: self.dead_letters,
        }


class ClassifyEventsFn(beam.DoFn):
    """StripeEvent -> (event id, Fact); DEAD_LETTERS: DeadLetter."""

    def __init__(self, include_test_mode: bool) -> None:
        self._include_test_mode = include_test_mode

    def process(self, event: StripeEvent) -> Iterator[object]:
        metrics.inc(metrics.EVENT_TYPE_PREFIX + event.type)
        try:
            fact = classify(event, include_test_mode=self._include_test_mode)
        except ClassifyError as error:
            metrics.inc(metrics.DEAD_LETTERED_PREFIX + error.reason)
            yield TaggedOutput(
                DEAD_LETTERS,
                make_dead_letter(
                    step="classify",
                    reason=error.reason,
                    error=str(error),
                    raw=json.dumps(
                        {"id": event.id, "type": event.type, "data": {"object": event.data_object}},
                        sort_keys=True,
                    ),
                    source=event.source,
                    event_id=event.id,
                    time=event.arrival,
                ),
            )
            return
        yield event.id, fact


def _copy_rank(fact: Fact) -> tuple[bool, str]:
    # A copy that names its account wins; the rest is only a stable tie-break.
    account = fact.account if isinstance(fact, PaymentAdjustment) else fact.meta.account
    return account is None, repr(fact)


class KeepBestCopyFn(beam.DoFn):
    """(event id, [Fact, ...]) -> the one copy to keep (bounded inputs)."""

    def process(self, element: tuple[str, Iterable[Fact]]) -> Iterator[Fact]:
        _, copies = element
        copies = list(copies)
        if len(copies) > 1:
            metrics.inc(metrics.SKIPPED_PREFIX + "duplicate", len(copies) - 1)
        yield min(copies, key=_copy_rank)


class KeepFirstCopyFn(beam.DoFn):
    """(event id, Fact) -> Fact the first time an id is seen (unbounded inputs)."""

    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, horizon: timedelta) -> None:
        self._horizon = Duration.of(horizon.total_seconds())

    def process(
        self,
        element: tuple[str, Fact],
        timestamp: Any = beam.DoFn.TimestampParam,
        seen: Any = beam.DoFn.StateParam(SEEN),
        forget: Any = beam.DoFn.TimerParam(FORGET),
    ) -> Iterator[Fact]:
        if seen.read():
            metrics.inc(metrics.SKIPPED_PREFIX + "duplicate")
            return
        seen.write(True)
        forget.set(timestamp + self._horizon)
        yield element[1]

    @on_timer(FORGET)
    def forget_event(self, seen: Any = beam.DoFn.StateParam(SEEN)) -> None:
        seen.clear()


class DeduplicateEvents(beam.PTransform):
    """PCollection[(event id, Fact)] -> PCollection[Fact], one per event id."""

    def __init__(self, horizon: timedelta) -> None:
        super().__init__()
        self._horizon = horizon

    def expand(self, keyed: PCollection) -> PCollection:
        if keyed.is_bounded:
            return (
                keyed
                | "GroupCopies" >> beam.GroupByKey()
                | "KeepBestCopy" >> beam.ParDo(KeepBestCopyFn())
            )
        return keyed | "KeepFirstCopy" >> beam.ParDo(
            KeepFirstCopyFn(self._horizon)
        ).with_input_types(KV[str, Any])


class RouteFactsFn(beam.DoFn):
    """Fact -> (PaymentIntent id, fact); ADJUSTMENTS: PaymentAdjustment; skips counted."""

    def process(self, fact: Fact) -> Iterator[object]:
        if isinstance(fact, Skip):
            metrics.inc(metrics.SKIPPED_PREFIX + fact.reason)
            return
        metrics.inc(metrics.PROCESSED)
        if isinstance(fact, PaymentAdjustment):
            yield TaggedOutput(ADJUSTMENTS, fact)
            return
        yield fact.payment_intent_id, fact


class JoinPaymentsFn(beam.DoFn):
    """(PaymentIntent id, SessionFact | ChargeFact) -> Payment; DEAD_LETTERS: DeadLetter.

    Holds one PaymentState per PaymentIntent. Emits each payment once, as
    soon as `transforms.payment.decide` says it is complete; the charge timer
    completes it with what is known, and the settlement timer drops the state
    (dead-lettering a session that never settled).
    """

    STATE = ReadModifyWriteStateSpec("payment", PickleCoder())
    CHARGE_DEADLINE = TimerSpec("charge_deadline", TimeDomain.WATERMARK)
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, charge_wait: timedelta, settlement_timeout: timedelta) -> None:
        self._charge_wait = int(charge_wait.total_seconds())
        self._timeout = int(settlement_timeout.total_seconds())

    def process(
        self,
        element: tuple[str, SessionFact | ChargeFact],
        stored: Any = beam.DoFn.StateParam(STATE),
        charge_deadline: Any = beam.DoFn.TimerParam(CHARGE_DEADLINE),
        expiry: Any = beam.DoFn.TimerParam(EXPIRY),
    ) -> Iterator[object]:
        state: PaymentState = (stored.read() or PaymentState()).add(element[1])
        if state.completed:
            metrics.inc(metrics.FACTS_AFTER_COMPLETION)
        decision = decide(state, charge_wait=self._charge_wait, deadline_passed=False)
        if decision.verdict is Verdict.COMPLETE:
            state = _completed(state)
            yield from self._emit(decision.payment)
        elif decision.verdict is Verdict.WAIT_FOR_CHARGE:
            assert decision.charge_deadline is not None
            charge_deadline.set(Timestamp(decision.charge_deadline))
        expiry.set(Timestamp(state.first_created + self._timeout))
        stored.write(state)

    @on_timer(CHARGE_DEADLINE)
    def charge_deadline_passed(self, stored: Any = beam.DoFn.StateParam(STATE)) -> Iterator[object]:
        state: PaymentState | None = stored.read()
        if state is None:
            return
        state, outputs = self._settle_late(state)
        stored.write(state)
        yield from outputs

    @on_timer(EXPIRY)
    def expired(self, stored: Any = beam.DoFn.StateParam(STATE)) -> Iterator[object]:
        state: PaymentState | None = stored.read()
        stored.clear()
        if state is None:
            return
        state, outputs = self._settle_late(state)
        yield from outputs
        if state.completed:
            return
        if state.sessions:
            yield self._dead_letter(state, "payment_not_settled", "no settlement before timeout")
        else:
            metrics.inc(metrics.CHARGES_WITHOUT_SESSION)

    def _settle_late(self, state: PaymentState) -> tuple[PaymentState, list[object]]:
        """Completes a payment whose charge deadline passed, with what is known."""
        decision = decide(state, charge_wait=self._charge_wait, deadline_passed=True)
        if decision.verdict is Verdict.COMPLETE:
            return _completed(state), list(self._emit(decision.payment))
        if decision.verdict is Verdict.CHARGE_MISSING:
            letter = self._dead_letter(state, "charge_missing", "no charge id by the deadline")
            return _completed(state), [letter]
        return state, []

    def _emit(self, payment: Payment | None) -> Iterator[Payment]:
        assert payment is not None
        metrics.inc(metrics.PAYMENTS_PREFIX + payment.status.lower())
        yield payment

    def _dead_letter(self, state: PaymentState, reason: str, error: str) -> TaggedOutput:
        metrics.inc(metrics.PAYMENTS_PREFIX + "dead_lettered_" + reason)
        session = settlement(state) or min(state.sessions, key=lambda s: s.meta.event_id)
        # A summary without personal data; the events themselves are in the archive.
        raw = json.dumps(
            {
                "payment_intent": session.payment_intent_id,
                "checkout_session": session.session_id,
                "amount_minor": session.amount_minor,
                "currency": session.currency,
                "events": sorted(
                    [s.meta.event_id for s in state.sessions]
                    + [c.meta.event_id for c in state.charges]
                ),
            },
            sort_keys=True,
        )
        return TaggedOutput(
            DEAD_LETTERS,
            make_dead_letter(
                step="join_payment",
                reason=reason,
                error=error,
                raw=raw,
                source=f"payment_intent:{session.payment_intent_id}",
                event_id=session.meta.event_id,
                time=None,
            ),
        )


def _completed(state: PaymentState) -> PaymentState:
    return PaymentState(sessions=state.sessions, charges=state.charges, completed=True)


class BuildRecordsFn(beam.DoFn):
    """Payment -> Contribution (main) and one tagged output per other record kind."""

    def process(self, payment: Payment) -> Iterator[object]:
        records = build_records(payment)
        for name in records.skipped:
            metrics.inc(metrics.OUTPUT_SKIPPED_PREFIX + name)
        for name in records.warnings:
            metrics.inc(metrics.WARNING_PREFIX + name)
        yield records.contribution
        tagged = (
            (ACQUISITIONS, records.acquisition),
            (CONTRIBUTIONS_STORE, records.contribution_store),
            (SUPPORTER_ITEMS, records.supporter),
            (THANK_YOU_EMAILS, records.thank_you_email),
            (SOFT_OPT_INS, records.soft_opt_in),
        )
        for tag, record in tagged:
            if record is not None:
                yield TaggedOutput(tag, record)


class ProcessStripeEvents(beam.PTransform):
    """PCollection[StripeEvent] (bounded or not) -> CoreOutputs.

    `charge_wait`: how long (event time) a settled payment waits for its
    charge object before completing with the address country.
    `settlement_timeout`: how long a session may wait for an async outcome.
    `dedupe_horizon`: how long an event id is remembered on unbounded input.
    `include_test_mode`: False skips (and counts) Stripe test-mode events.
    """

    def __init__(
        self,
        *,
        charge_wait: timedelta = DEFAULT_CHARGE_WAIT,
        settlement_timeout: timedelta = DEFAULT_SETTLEMENT_TIMEOUT,
        dedupe_horizon: timedelta = DEFAULT_DEDUPE_HORIZON,
        include_test_mode: bool = True,
    ) -> None:
        super().__init__()
        if charge_wait >= settlement_timeout:
            raise ValueError("charge_wait must be shorter than settlement_timeout")
        self._charge_wait = charge_wait
        self._settlement_timeout = settlement_timeout
        self._dedupe_horizon = dedupe_horizon
        self._include_test_mode = include_test_mode

    def expand(self, events: PCollection) -> CoreOutputs:
        classified = events | "ClassifyEvents" >> beam.ParDo(
            ClassifyEventsFn(self._include_test_mode)
        ).with_output_types(KV[str, Any]).with_outputs(DEAD_LETTERS, main=PAYMENT_FACTS)
        routed = (
            classified[PAYMENT_FACTS]
            | "DeduplicateEvents" >> DeduplicateEvents(self._dedupe_horizon)
            | "RouteFacts"
            >> beam.ParDo(RouteFactsFn())
            .with_output_types(KV[str, Any])
            .with_outputs(ADJUSTMENTS, main="keyed")
        )
        joined = routed["keyed"] | "JoinPayments" >> beam.ParDo(
            JoinPaymentsFn(self._charge_wait, self._settlement_timeout)
        ).with_input_types(KV[str, Any]).with_outputs(DEAD_LETTERS, main="payments")
        records = joined["payments"] | "BuildRecords" >> beam.ParDo(BuildRecordsFn()).with_outputs(
            ACQUISITIONS,
            CONTRIBUTIONS_STORE,
            SUPPORTER_ITEMS,
            THANK_YOU_EMAILS,
            SOFT_OPT_INS,
            main="contributions",
        )
        dead_letters = (
            classified[DEAD_LETTERS],
            joined[DEAD_LETTERS],
        ) | "CollectDeadLetters" >> beam.Flatten()
        return CoreOutputs(
            contributions=records["contributions"],
            acquisitions=records[ACQUISITIONS],
            payment_adjustments=routed[ADJUSTMENTS],
            contributions_store=records[CONTRIBUTIONS_STORE],
            supporter_product_data=records[SUPPORTER_ITEMS],
            thank_you_emails=records[THANK_YOU_EMAILS],
            soft_opt_ins=records[SOFT_OPT_INS],
            dead_letters=dead_letters,
        )
