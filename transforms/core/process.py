"""The core: Stripe events in, contribution records out. No IO.

`ProcessStripeEvents` is the only place with event logic. The backfill and
the streaming job both apply it to a PCollection of `StripeEvent`s (event
time = the event's `created`) and write its outputs; only their read step
and their writers differ.

Steps, with the delivery guarantee each gives:

1. ClassifyEvents: each event becomes one fact (`transforms.domain.facts`); an
   unreadable payload of a type we handle becomes a dead letter.
2. On a bounded input (the backfill): GroupByPayment, FoldPayments. Every
   copy of every fact is grouped by its join key (PaymentIntent id for
   session and charge facts, event id otherwise) in one shuffle (the
   runner's GroupByKey, or whatever the caller passes as `group_by_key`); copies are
   reduced to one per Stripe event id (`evt_...`), so redeliveries,
   EventBridge replays and exported copies count once (a copy with an
   EventBridge envelope beats a bare export, since only it names the
   account), and each payment is decided as if event time had passed every
   deadline. No state or timers: that is what keeps the backfill fast.
3. On an unbounded input (the streaming job): DeduplicateEvents keeps the
   first copy of an event id and remembers it for `dedupe_horizon` of event
   time; RouteFacts counts skips and passes refunds and disputes on as final
   adjustments (no per-payment state: they can come months later, or before
   the payment); JoinPayments keeps per-PaymentIntent state with event-time
   timers (charge wait, then a settlement timeout after which the state is
   dropped). Both paths apply the same rules (`transforms.domain.payment`,
   folded by `transforms.domain.fold`).
   Only when the caller passes `complete_charges` (e.g.
   `transforms.services.complete_from_stripe.CompleteFromStripe`), on either
   path the payments left `charge_missing` (by the fold, or by the join's
   charge deadline or expiry timer) go through it (CompleteCharges) and come
   back completed or as their letters.
4. ResolveIdentities, only when the caller passes `resolve_identities`: the
   settled payments of payers without an identity get one (the IO step lives
   outside the core, in `transforms.services.identity`).
5. BuildRecords: one settled payment -> at most one record of each kind.

No input stops a run: every DoFn has a catch-all that turns an exception no
rule expects into a dead letter (reason `unexpected_error`; step `classify`,
`route`, `join_payment`, `fold_payment` or `build_records`; KeepFirstCopy
only touches a flag, whatever the fact holds),
counted so the accounting identity still holds. BuildRecords is all or
nothing per payment: its records are emitted only once every one of them
fits its table (`schemas.rows.validate`); otherwise the payment is one dead
letter (`invalid_record`) and none of its effects goes out.

Outputs (all in `CoreOutputs`): contributions, acquisitions, acquisition_events,
payment_adjustments, contributions_store, supporter_product_data,
thank_you_emails, soft_opt_ins, dead_letters. Every element is emitted once
per pipeline run; across runs, replays or restarts the writers make it
exactly once by upserting on each record's natural key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder
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
    AcquisitionEvent,
    Contribution,
    ContributionStoreRecord,
    DeadLetter,
    PaymentAdjustment,
    SoftOptIn,
    SupporterProductData,
    ThankYouEmail,
)
from schemas.rows import RowValidationError, validate
from transforms.core import metrics
from transforms.core.state_coder import PaymentStateCoder
from transforms.domain.events import (
    UNEXPECTED_ERROR,
    StripeEvent,
    make_dead_letter,
    unexpected_dead_letter,
)
from transforms.domain.facts import (
    ALL_MODES,
    STRIPE_MODES,
    ChargeFact,
    ClassifyError,
    Fact,
    SessionFact,
    Skip,
    classify,
)
from transforms.domain.fold import (
    CHARGE_MISSING,
    PAYMENT_KEY,
    ChargesOnly,
    Outcome,
    Unsettled,
    close_payment,
    fold_event,
    fold_payment,
    join_fact,
    join_key,
    settle_late,
    unsettled_dead_letter,
)
from transforms.domain.mapping import DEFAULT_PAYMENT_PROVIDER, PaymentRecords, build_records
from transforms.domain.payment import Payment, PaymentState

DEAD_LETTERS = "dead_letters"
#: FoldPayments' and JoinPayments' output of `charge_missing` outcomes, when a
#: completion step is given.
CHARGE_MISSING_OUTCOMES = "charge_missing_outcomes"
#: A payment whose records do not all fit their tables (`schemas.rows.validate`):
#: none of them is emitted.
INVALID_RECORD = "invalid_record"
ADJUSTMENTS = "payment_adjustments"
PAYMENT_FACTS = "payment_facts"
ACQUISITIONS = "acquisitions"
ACQUISITION_EVENTS = "acquisition_events"
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
    acquisition_events: PCollection
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
            AcquisitionEvent: self.acquisition_events,
            PaymentAdjustment: self.payment_adjustments,
            ContributionStoreRecord: self.contributions_store,
            SupporterProductData: self.supporter_product_data,
            ThankYouEmail: self.thank_you_emails,
            SoftOptIn: self.soft_opt_ins,
            DeadLetter: self.dead_letters,
        }


class ClassifyEventsFn(beam.DoFn):
    """StripeEvent -> (event id, Fact); DEAD_LETTERS: DeadLetter."""

    def __init__(self, stripe_mode: str) -> None:
        self._stripe_mode = stripe_mode

    def process(self, event: StripeEvent) -> Iterator[object]:
        metrics.inc(metrics.EVENT_TYPE_PREFIX + event.type)
        try:
            fact = classify(event, stripe_mode=self._stripe_mode)
        except ClassifyError as error:
            letter = make_dead_letter(
                step="classify",
                reason=error.reason,
                error=str(error),
                raw=_event_text(event),
                source=event.source,
                event_id=event.id,
                time=event.arrival,
            )
        except Exception as error:
            letter = unexpected_dead_letter(
                step="classify",
                error=error,
                raw=_event_text(event),
                source=event.source,
                event_id=event.id,
                time=event.arrival,
            )
        else:
            yield event.id, fact
            return
        metrics.inc(metrics.DEAD_LETTERED_PREFIX + letter.reason)
        yield TaggedOutput(DEAD_LETTERS, letter)


def _event_text(event: StripeEvent) -> str:
    """The event as a dead letter's `raw`: what classify read of it."""
    data: dict[str, object] = {"object": event.data_object}
    if event.previous_attributes is not None:
        data["previous_attributes"] = event.previous_attributes
    document = {"id": event.id, "type": event.type, "data": data}
    return json.dumps(document, sort_keys=True, default=repr)


def _events_text(key: str, event_ids: Iterable[str]) -> str:
    """A dead letter's `raw` for a group of facts: their key and event ids, no payload
    (the events themselves are in the archive or the stream)."""
    return json.dumps({"key": key, "events": sorted(set(event_ids))}, sort_keys=True)


def _fact_event_id(fact: Fact | str) -> str:
    if isinstance(fact, PaymentAdjustment):
        return fact.adjustment_id
    if isinstance(fact, str):
        return "(skipped)"
    return fact.meta.event_id


def _record_failure(step: str, key: str, error: Exception, event_ids: list[str]) -> DeadLetter:
    return unexpected_dead_letter(
        step=step,
        error=error,
        raw=_events_text(key, event_ids),
        source=key,
        event_id=min(event_ids) if event_ids else None,
    )


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
        # No catch-all here: this reads and writes one flag, whatever the fact holds,
        # so only the runner can fail it, and such a failure is retried. (A second
        # output would also move the stateful step under a new name, losing its
        # state on an in-place update.)
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
    """PCollection[(event id, Fact)] (unbounded) -> PCollection[Fact], one per event id."""

    def __init__(self, horizon: timedelta) -> None:
        super().__init__()
        self._horizon = horizon

    def expand(self, keyed: PCollection) -> PCollection:
        return keyed | "KeepFirstCopy" >> beam.ParDo(
            KeepFirstCopyFn(self._horizon)
        ).with_input_types(KV[str, Any])


class RouteFactsFn(beam.DoFn):
    """Fact -> (PaymentIntent id, fact); ADJUSTMENTS: PaymentAdjustment; skips counted;
    DEAD_LETTERS: the catch-all's."""

    def process(self, fact: Fact) -> Iterator[object]:
        try:
            routed = _route(fact)
        except Exception as error:
            metrics.inc(metrics.DEAD_LETTERED_PREFIX + UNEXPECTED_ERROR)
            event_id = _fact_event_id(fact)
            yield TaggedOutput(DEAD_LETTERS, _record_failure("route", event_id, error, [event_id]))
            return
        if isinstance(routed, str):
            metrics.inc(metrics.SKIPPED_PREFIX + routed)
            return
        metrics.inc(metrics.PROCESSED)
        yield routed


def _route(fact: Fact) -> str | TaggedOutput | tuple[str, Fact]:
    """A skip's reason, an adjustment's tagged output, or (PaymentIntent id, fact)."""
    if isinstance(fact, Skip):
        return fact.reason
    if isinstance(fact, PaymentAdjustment):
        return TaggedOutput(ADJUSTMENTS, fact)
    return fact.payment_intent_id, fact


class JoinPaymentsFn(beam.DoFn):
    """(PaymentIntent id, SessionFact | ChargeFact) -> Payment; DEAD_LETTERS: DeadLetter.

    Holds one PaymentState per PaymentIntent (stored with `PaymentStateCoder`).
    Emits each payment once, as soon as `transforms.domain.fold.join_fact`
    completes it; the charge timer completes it with what is known
    (`settle_late`), and the settlement timer drops the state
    (`close_payment`: dead-lettering a session that never settled).

    With `divert_charge_missing`, a timer's `charge_missing` outcome is
    emitted uncounted to CHARGE_MISSING_OUTCOMES instead of a letter, as
    FoldPaymentsFn does, for the caller's completion step. The state is
    marked completed all the same, so a charge event arriving later is
    counted (`facts_after_completion`) and never emits the payment again.
    """

    STATE = ReadModifyWriteStateSpec("payment", PaymentStateCoder())
    CHARGE_DEADLINE = TimerSpec("charge_deadline", TimeDomain.WATERMARK)
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(
        self,
        charge_wait: timedelta,
        settlement_timeout: timedelta,
        divert_charge_missing: bool = False,
    ) -> None:
        self._charge_wait = int(charge_wait.total_seconds())
        self._timeout = int(settlement_timeout.total_seconds())
        self._divert_charge_missing = divert_charge_missing

    def process(
        self,
        element: tuple[str, SessionFact | ChargeFact],
        stored: Any = beam.DoFn.StateParam(STATE),
        charge_deadline: Any = beam.DoFn.TimerParam(CHARGE_DEADLINE),
        expiry: Any = beam.DoFn.TimerParam(EXPIRY),
    ) -> Iterator[object]:
        key, fact = element
        try:
            joined = join_fact(stored.read() or PaymentState(), fact, self._charge_wait)
        except Exception as error:
            # The fact is left out of the state, and the payment waits for the rest.
            metrics.inc(metrics.PAYMENTS_PREFIX + "dead_lettered_" + UNEXPECTED_ERROR)
            event_id = _fact_event_id(fact)
            letter = _record_failure("join_payment", PAYMENT_KEY + key, error, [event_id])
            yield TaggedOutput(DEAD_LETTERS, letter)
            return
        if joined.after_completion:
            metrics.inc(metrics.FACTS_AFTER_COMPLETION)
        if joined.payment is not None:
            yield emitted(joined.payment)
        elif joined.charge_deadline is not None:
            charge_deadline.set(Timestamp(joined.charge_deadline))
        expiry.set(Timestamp(joined.state.first_created + self._timeout))
        stored.write(joined.state)

    @on_timer(CHARGE_DEADLINE)
    def charge_deadline_passed(self, stored: Any = beam.DoFn.StateParam(STATE)) -> Iterator[object]:
        state: PaymentState | None = stored.read()
        if state is None:
            return
        try:
            state, outcome = settle_late(state, self._charge_wait)
        except Exception as error:
            stored.clear()
            yield _state_failure(state, error)
            return
        stored.write(state)
        yield from outputs_or_diverted(outcome, self._divert_charge_missing)

    @on_timer(EXPIRY)
    def expired(self, stored: Any = beam.DoFn.StateParam(STATE)) -> Iterator[object]:
        state: PaymentState | None = stored.read()
        stored.clear()
        if state is None:
            return
        try:
            outcome = close_payment(state, self._charge_wait)
        except Exception as error:
            yield _state_failure(state, error)
            return
        yield from outputs_or_diverted(outcome, self._divert_charge_missing)


def _state_failure(state: PaymentState, error: Exception) -> TaggedOutput:
    """The catch-all's dead letter of a payment whose stored state a timer failed on."""
    metrics.inc(metrics.PAYMENTS_PREFIX + "dead_lettered_" + UNEXPECTED_ERROR)
    facts: list[SessionFact | ChargeFact] = [*state.sessions, *state.charges]
    key = PAYMENT_KEY + (facts[0].payment_intent_id if facts else "(empty state)")
    event_ids = [f.meta.event_id for f in facts]
    return TaggedOutput(DEAD_LETTERS, _record_failure("join_payment", key, error, event_ids))


def _join_key(element: tuple[str, Fact]) -> tuple[str, Fact | str]:
    return join_key(*element)


class KeyFacts:
    """StripeEvent -> (join key, fact), or TaggedOutput(DEAD_LETTERS, DeadLetter).

    The bounded path's ClassifyEvents and KeyByPayment as one function, by
    calling them (`ClassifyEventsFn`, `_join_key`), for a reader that applies
    them inside its own step (the backfill's `ReadArchive`) and hands the
    keyed facts to `ProcessStripeEvents.of_keyed_facts()`: one Beam element
    per fact instead of one per record per step. Counters are ClassifyEvents'.
    """

    def __init__(self, stripe_mode: str) -> None:
        self._classify = ClassifyEventsFn(stripe_mode)

    def __call__(self, event: StripeEvent) -> Iterator[object]:
        for output in self._classify.process(event):
            yield output if isinstance(output, TaggedOutput) else _join_key(output)  # type: ignore[arg-type]


class FoldPaymentsFn(beam.DoFn):
    """(join key, [Fact | skip reason]) -> Payment; ADJUSTMENTS; DEAD_LETTERS. Bounded input.

    With the whole input at hand, one group holds every copy of every fact of
    a PaymentIntent (or of one other event); `transforms.domain.fold` folds it
    to one outcome as the streaming join would decide once event time has
    passed every deadline. No state or timers, so no per-element state traffic.

    With `divert_charge_missing`, a payment that would be a `charge_missing`
    letter is emitted uncounted to CHARGE_MISSING_OUTCOMES instead, as its
    `Unsettled` outcome, for the caller's completion step.
    """

    def __init__(self, charge_wait: timedelta, divert_charge_missing: bool = False) -> None:
        self._charge_wait = int(charge_wait.total_seconds())
        self._divert_charge_missing = divert_charge_missing

    def process(self, element: tuple[str, Iterable[Fact | str]]) -> Iterator[object]:
        key, grouped = element
        values = list(grouped)
        try:
            if key.startswith(PAYMENT_KEY):
                folded = fold_payment(values, self._charge_wait)  # type: ignore[arg-type]
            else:
                folded = fold_event(values)
        except Exception as error:
            # Every copy in the group is a record read: each is dead-lettered here.
            metrics.inc(metrics.DEAD_LETTERED_PREFIX + UNEXPECTED_ERROR, len(values))
            event_ids = [_fact_event_id(value) for value in values]
            yield TaggedOutput(DEAD_LETTERS, _record_failure("fold_payment", key, error, event_ids))
            return
        if folded.duplicates:
            metrics.inc(metrics.SKIPPED_PREFIX + "duplicate", folded.duplicates)
        if folded.skip_reason is not None:
            metrics.inc(metrics.SKIPPED_PREFIX + folded.skip_reason)
            return
        metrics.inc(metrics.PROCESSED, folded.events)
        if isinstance(folded.outcome, PaymentAdjustment):
            yield TaggedOutput(ADJUSTMENTS, folded.outcome)
            return
        yield from outputs_or_diverted(folded.outcome, self._divert_charge_missing)


def outputs_or_diverted(outcome: Outcome | None, divert_charge_missing: bool) -> Iterator[object]:
    """`outputs_of(outcome)`, except that with `divert_charge_missing` a `charge_missing`
    outcome goes uncounted to CHARGE_MISSING_OUTCOMES (the completion step counts it)."""
    if (
        divert_charge_missing
        and isinstance(outcome, Unsettled)
        and outcome.reason == CHARGE_MISSING
    ):
        yield TaggedOutput(CHARGE_MISSING_OUTCOMES, outcome)
        return
    yield from outputs_of(outcome)


def emitted(payment: Payment) -> Payment:
    """The payment, counted by its status."""
    metrics.inc(metrics.PAYMENTS_PREFIX + payment.status.lower())
    return payment


def outputs_of(outcome: Outcome | None) -> Iterator[object]:
    """A payment outcome as the join's outputs: a payment, a dead letter, or a count."""
    if isinstance(outcome, Payment):
        yield emitted(outcome)
    elif isinstance(outcome, Unsettled):
        metrics.inc(metrics.PAYMENTS_PREFIX + "dead_lettered_" + outcome.reason)
        yield TaggedOutput(DEAD_LETTERS, unsettled_dead_letter(outcome))
    elif isinstance(outcome, ChargesOnly):
        metrics.inc(metrics.CHARGES_WITHOUT_SESSION)


class BuildRecordsFn(beam.DoFn):
    """Payment -> Contribution (main) and one tagged output per other record kind;
    DEAD_LETTERS: the payment, when any of its records is invalid or building failed.

    All or nothing: every record of the payment is built and checked against its
    table (`schemas.rows.validate`, what every writer checks) before any is
    emitted, so a payment never goes out half-written (an email and a soft
    opt-in sent for a contribution no table took).
    """

    def __init__(self, payment_provider: str, first_name_field: str | None = None) -> None:
        self._payment_provider = payment_provider
        self._first_name_field = first_name_field

    def process(self, payment: Payment) -> Iterator[object]:
        try:
            records = build_records(
                payment,
                payment_provider=self._payment_provider,
                first_name_field=self._first_name_field,
            )
            outputs = checked_outputs(records)
        except RecordRejected as error:
            letter = payment_dead_letter(payment, INVALID_RECORD, str(error))
        except Exception as error:
            letter = unexpected_dead_letter(
                step=BUILD_STEP,
                error=error,
                raw=payment_text(payment),
                source=f"payment_intent:{payment.session.payment_intent_id}",
                event_id=payment.session.meta.event_id,
            )
        else:
            for name in records.skipped:
                metrics.inc(metrics.OUTPUT_SKIPPED_PREFIX + name)
            for name in records.warnings:
                metrics.inc(metrics.WARNING_PREFIX + name)
            yield from outputs
            return
        # The payment was counted by its status when it settled; it is a dead letter instead.
        metrics.counter(metrics.PAYMENTS_PREFIX + payment.status.lower()).dec()
        metrics.inc(metrics.PAYMENTS_PREFIX + "dead_lettered_" + letter.reason)
        yield TaggedOutput(DEAD_LETTERS, letter)


#: `DeadLetter.step` of payments whose records could not be built.
BUILD_STEP = "build_records"


class RecordRejected(ValueError):
    """A record of a payment does not fit its table: `<table>.<column>: <rule>`."""


def checked_outputs(records: PaymentRecords) -> list[object]:
    """The payment's records as BuildRecords' outputs, each checked against its table.

    Raises `RecordRejected` naming the table and column of the first invalid one.
    """
    tagged = (
        ("contributions", records.contribution),
        (ACQUISITIONS, records.acquisition),
        (ACQUISITION_EVENTS, records.acquisition_event),
        (CONTRIBUTIONS_STORE, records.contribution_store),
        (SUPPORTER_ITEMS, records.supporter),
        (THANK_YOU_EMAILS, records.thank_you_email),
        (SOFT_OPT_INS, records.soft_opt_in),
    )
    outputs: list[object] = []
    for tag, record in tagged:
        if record is None:
            continue
        try:
            validate(record)
        except RowValidationError as error:
            raise RecordRejected(f"{type(record).TABLE.name}.{error}") from None
        outputs.append(record if tag == "contributions" else TaggedOutput(tag, record))
    return outputs


def payment_text(payment: Payment) -> str:
    """A payment as a dead letter's `raw`, without personal data (the events are in the
    archive or the stream)."""
    session = payment.session
    return json.dumps(
        {
            "payment_intent": session.payment_intent_id,
            "checkout_session": session.session_id,
            "charge": payment.charge_id,
            "status": payment.status,
            "amount_minor": session.amount_minor,
            "currency": session.currency,
            "event": session.meta.event_id,
        },
        sort_keys=True,
        default=repr,
    )


def payment_dead_letter(payment: Payment, reason: str, error: str) -> DeadLetter:
    return make_dead_letter(
        step=BUILD_STEP,
        reason=reason,
        error=error,
        raw=payment_text(payment),
        source=f"payment_intent:{payment.session.payment_intent_id}",
        event_id=payment.session.meta.event_id,
    )


class ProcessStripeEvents(beam.PTransform):
    """PCollection[StripeEvent] (bounded or not) -> CoreOutputs.

    `charge_wait`: how long (event time) a settled payment waits for its
    charge object before completing with the address country.
    `settlement_timeout`: how long a session may wait for an async outcome.
    `dedupe_horizon`: how long an event id is remembered on unbounded input.
    `stripe_mode`: `live` or `test` skips (and counts, `other_stripe_mode`) the
    other mode's events; `all` (the default) processes both.
    `payment_provider`: the acquisitions' `paymentProvider`.
    `first_name_field`: key of the Checkout custom text field holding the
    reader's given name for the thank-you email; None sends no first name.
    `group_by_key`: the bounded path's one shuffle, `(join key, fact)` ->
    `(join key, facts)`; default `beam.GroupByKey()`. The local backfill passes
    `transforms.core.disk_group.GroupByKeyOnDisk`, because the local runner holds a
    GroupByKey's input in memory. It only moves facts; the rules stay here.
    `resolve_identities`: a `PCollection[Payment] -> PCollection[Payment]`
    applied to settled payments before their records are built, e.g.
    `transforms.services.identity.ResolveIdentities`; it may set a payment's
    `identity_id`. Default: none, and the graph is as without it.
    `complete_charges`: a `PCollection[Unsettled]` -> outputs `payments` and
    DEAD_LETTERS transform applied to the payments the fold (bounded) or the
    join's timers (unbounded: at the charge deadline, or at expiry) leave
    `charge_missing`, e.g.
    `transforms.services.complete_from_stripe.CompleteFromStripe`; its payments
    flow on like the others. Default: none, they are `charge_missing` letters
    and the graph is as without it (on an unbounded input, JoinPayments'
    outputs change with it).

    `of_keyed_facts()` is the same core for a bounded input that is already
    classified and keyed (`key_facts()` applied by the reader, as the
    backfill's `ReadArchive` does in its read step): it starts at
    GroupByPayment. Classification stays defined here, and the reader only
    calls it; fusing it into the read saves two Beam steps per record, and a
    second core would be a second place for the rules.
    """

    def __init__(
        self,
        *,
        charge_wait: timedelta = DEFAULT_CHARGE_WAIT,
        settlement_timeout: timedelta = DEFAULT_SETTLEMENT_TIMEOUT,
        dedupe_horizon: timedelta = DEFAULT_DEDUPE_HORIZON,
        stripe_mode: str = ALL_MODES,
        payment_provider: str = DEFAULT_PAYMENT_PROVIDER,
        first_name_field: str | None = None,
        group_by_key: beam.PTransform | None = None,
        resolve_identities: beam.PTransform | None = None,
        complete_charges: beam.PTransform | None = None,
    ) -> None:
        super().__init__()
        if charge_wait >= settlement_timeout:
            raise ValueError("charge_wait must be shorter than settlement_timeout")
        self._charge_wait = charge_wait
        self._settlement_timeout = settlement_timeout
        self._dedupe_horizon = dedupe_horizon
        if stripe_mode not in STRIPE_MODES:
            raise ValueError(f"stripe_mode must be one of {STRIPE_MODES}, got {stripe_mode!r}")
        self._stripe_mode = stripe_mode
        self._payment_provider = payment_provider
        self._first_name_field = first_name_field
        self._group_by_key = group_by_key if group_by_key is not None else beam.GroupByKey()
        self._resolve_identities = resolve_identities
        self._complete_charges = complete_charges
        self._keyed_input = False

    def key_facts(self) -> KeyFacts:
        """What `of_keyed_facts()` expects applied to each event: classify, then key."""
        return KeyFacts(self._stripe_mode)

    def of_keyed_facts(self) -> ProcessStripeEvents:
        """This core for a bounded PCollection of `key_facts()` outputs (its dead
        letters are the reader's to write)."""
        keyed = copy.copy(self)
        keyed._keyed_input = True
        return keyed

    def expand(self, events: PCollection) -> CoreOutputs:
        classify_letters: list[PCollection] = []
        if self._keyed_input:
            if not events.is_bounded:
                raise ValueError("ProcessStripeEvents.of_keyed_facts: the input must be bounded")
            keyed = events
        else:
            classified = events | "ClassifyEvents" >> beam.ParDo(
                ClassifyEventsFn(self._stripe_mode)
            ).with_output_types(KV[str, Any]).with_outputs(DEAD_LETTERS, main=PAYMENT_FACTS)
            classify_letters = [classified[DEAD_LETTERS]]
            if events.is_bounded:
                keyed = classified[PAYMENT_FACTS] | "KeyByPayment" >> beam.Map(_join_key)
        completing = self._complete_charges is not None
        if events.is_bounded:
            # One shuffle: group every copy of every fact by its join key.
            tags = (DEAD_LETTERS, ADJUSTMENTS) + ((CHARGE_MISSING_OUTCOMES,) if completing else ())
            joined = (
                keyed
                | "GroupByPayment" >> self._group_by_key
                | "FoldPayments"
                >> beam.ParDo(FoldPaymentsFn(self._charge_wait, completing)).with_outputs(
                    *tags, main="payments"
                )
            )
            adjustments = joined[ADJUSTMENTS]
            other_letters = []
        else:
            routed = (
                classified[PAYMENT_FACTS]
                | "DeduplicateEvents" >> DeduplicateEvents(self._dedupe_horizon)
                | "RouteFacts"
                >> beam.ParDo(RouteFactsFn())
                .with_output_types(KV[str, Any])
                .with_outputs(DEAD_LETTERS, ADJUSTMENTS, main="keyed")
            )
            other_letters = [routed[DEAD_LETTERS]]
            # The extra output only with a completion step: without one, JoinPayments
            # is the step a running job's state belongs to, unchanged.
            tags = (DEAD_LETTERS,) + ((CHARGE_MISSING_OUTCOMES,) if completing else ())
            joined = routed["keyed"] | "JoinPayments" >> beam.ParDo(
                JoinPaymentsFn(self._charge_wait, self._settlement_timeout, completing)
            ).with_input_types(KV[str, Any]).with_outputs(*tags, main="payments")
            adjustments = routed[ADJUSTMENTS]
        payments = joined["payments"]
        if self._complete_charges is not None:
            completed = (
                joined[CHARGE_MISSING_OUTCOMES] | "CompleteCharges" >> self._complete_charges
            )
            other_letters.append(completed[DEAD_LETTERS])
            payments = (payments, completed["payments"]) | "CollectPayments" >> beam.Flatten()
        if self._resolve_identities is not None:
            payments = payments | "ResolveIdentities" >> self._resolve_identities
        records = payments | "BuildRecords" >> beam.ParDo(
            BuildRecordsFn(self._payment_provider, self._first_name_field)
        ).with_outputs(
            ACQUISITIONS,
            ACQUISITION_EVENTS,
            CONTRIBUTIONS_STORE,
            SUPPORTER_ITEMS,
            THANK_YOU_EMAILS,
            SOFT_OPT_INS,
            DEAD_LETTERS,
            main="contributions",
        )
        dead_letters = (
            *classify_letters,
            *other_letters,
            joined[DEAD_LETTERS],
            records[DEAD_LETTERS],
        ) | "CollectDeadLetters" >> beam.Flatten()
        return CoreOutputs(
            contributions=records["contributions"],
            acquisitions=records[ACQUISITIONS],
            acquisition_events=records[ACQUISITION_EVENTS],
            payment_adjustments=adjustments,
            contributions_store=records[CONTRIBUTIONS_STORE],
            supporter_product_data=records[SUPPORTER_ITEMS],
            thank_you_emails=records[THANK_YOU_EMAILS],
            soft_opt_ins=records[SOFT_OPT_INS],
            dead_letters=dead_letters,
        )
