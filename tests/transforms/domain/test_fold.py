"""`transforms.domain.fold`: best copy, join key, the streaming join steps and the bounded fold."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.builders import (
    T0,
    charge_fact,
    intent_fact,
    refund_adjustment,
    session_fact,
)
from transforms.domain.facts import EventMeta, Skip
from transforms.domain.fold import (
    EVENT_KEY,
    PAYMENT_KEY,
    ChargesOnly,
    Folded,
    Joined,
    Unsettled,
    best_copy,
    close_payment,
    fold_event,
    fold_payment,
    join_fact,
    join_key,
    settle_late,
    unsettled_dead_letter,
)
from transforms.domain.payment import PaymentState, decide

WAIT = 600


def _payment_of(state: PaymentState, deadline_passed: bool = False) -> object:
    return decide(state, charge_wait=WAIT, deadline_passed=deadline_passed).payment


def test_best_copy_prefers_the_copy_that_names_its_account() -> None:
    exported = session_fact(account=None)
    delivered = session_fact()
    assert best_copy([exported, delivered]) == delivered
    assert best_copy([delivered, exported]) == delivered


def test_best_copy_of_adjustments_reads_their_account() -> None:
    named = refund_adjustment("ch_1", "5.00")
    bare = replace(named, account=None)
    assert best_copy([bare, named]) == named


def test_best_copy_breaks_ties_the_same_way_whatever_the_order() -> None:
    first = session_fact(created=T0)
    second = session_fact(created=T0 + 1)
    assert best_copy([first, second]) == best_copy([second, first]) == first


@pytest.mark.parametrize(
    ("fact", "expected"),
    [
        pytest.param(session_fact(), (PAYMENT_KEY + "pi_1", session_fact()), id="session"),
        pytest.param(charge_fact(), (PAYMENT_KEY + "pi_1", charge_fact()), id="charge"),
        pytest.param(
            refund_adjustment("ch_1", "5.00"),
            (EVENT_KEY + "evt_x", refund_adjustment("ch_1", "5.00")),
            id="adjustment",
        ),
        pytest.param(
            Skip(EventMeta("evt_x", "invoice.paid", T0, True, None), "not_ours"),
            (EVENT_KEY + "evt_x", "not_ours"),
            id="skip-as-its-reason",
        ),
    ],
)
def test_join_key(fact: object, expected: tuple[str, object]) -> None:
    assert join_key("evt_x", fact) == expected  # type: ignore[arg-type]


def test_join_fact_completes_once_the_charge_object_is_there() -> None:
    session = session_fact()
    waiting = join_fact(PaymentState(), session, WAIT)
    assert waiting == Joined(PaymentState(sessions=(session,)), charge_deadline=T0 + WAIT)
    charge = charge_fact()
    done = join_fact(waiting.state, charge, WAIT)
    full = PaymentState(sessions=(session,), charges=(charge,))
    assert done == Joined(replace(full, completed=True), payment=_payment_of(full))  # type: ignore[arg-type]


def test_join_fact_after_completion_is_stored_and_flagged_only() -> None:
    full = PaymentState(sessions=(session_fact(),), charges=(charge_fact(),), completed=True)
    late = charge_fact("evt_c2")
    assert join_fact(full, late, WAIT) == Joined(full.add(late), after_completion=True)


def test_join_fact_without_settlement_sets_no_deadline() -> None:
    pending = session_fact(payment_status="unpaid")
    assert join_fact(PaymentState(), pending, WAIT) == Joined(PaymentState(sessions=(pending,)))


def test_settle_late_completes_with_the_charge_id_of_an_intent_event() -> None:
    state = PaymentState(sessions=(session_fact(),), charges=(intent_fact(),))
    settled, outcome = settle_late(state, WAIT)
    assert settled == replace(state, completed=True)
    assert outcome == _payment_of(state, deadline_passed=True)
    assert outcome is not None


def test_settle_late_without_a_charge_id_is_charge_missing() -> None:
    state = PaymentState(sessions=(session_fact(),))
    assert settle_late(state, WAIT) == (
        replace(state, completed=True),
        Unsettled(state, "charge_missing", "no charge id by the deadline"),
    )


def test_settle_late_of_an_unsettled_or_completed_state_changes_nothing() -> None:
    pending = PaymentState(sessions=(session_fact(payment_status="unpaid"),))
    done = PaymentState(sessions=(session_fact(),), charges=(charge_fact(),), completed=True)
    assert settle_late(pending, WAIT) == (pending, None)
    assert settle_late(done, WAIT) == (done, None)


def test_close_payment_outcomes() -> None:
    pending = PaymentState(sessions=(session_fact(payment_status="unpaid"),))
    orphan = PaymentState(charges=(charge_fact(),))
    done = PaymentState(sessions=(session_fact(),), charges=(charge_fact(),), completed=True)
    assert close_payment(pending, WAIT) == Unsettled(
        pending, "payment_not_settled", "no settlement before timeout"
    )
    assert close_payment(orphan, WAIT) == ChargesOnly(orphan)
    assert close_payment(done, WAIT) is None


def test_fold_payment_keeps_one_copy_per_event_and_decides() -> None:
    session, charge = session_fact(), charge_fact()
    exported = session_fact(account=None)
    folded = fold_payment([charge, exported, session, charge], WAIT)
    state = PaymentState(sessions=(session,), charges=(charge,))
    assert folded == Folded(_payment_of(state), events=2, duplicates=2)  # type: ignore[arg-type]


def test_fold_payment_past_every_deadline() -> None:
    session = session_fact()
    assert fold_payment([session], WAIT) == Folded(
        Unsettled(
            PaymentState(sessions=(session,)), "charge_missing", "no charge id by the deadline"
        ),
        events=1,
        duplicates=0,
    )


def test_fold_event_keeps_the_best_adjustment_or_counts_the_skip() -> None:
    named = refund_adjustment("ch_1", "5.00")
    bare = replace(named, account=None)
    assert fold_event([bare, named]) == Folded(named, events=1, duplicates=1)
    assert fold_event(["not_ours", "not_ours"]) == Folded(
        None, events=0, duplicates=1, skip_reason="not_ours"
    )


def test_unsettled_dead_letter_summarises_without_personal_data() -> None:
    session = session_fact("evt_s2")
    charge = intent_fact("evt_p1", latest_charge=None)
    letter = unsettled_dead_letter(
        Unsettled(PaymentState(sessions=(session,), charges=(charge,)), "charge_missing", "none")
    )
    assert (letter.step, letter.reason, letter.error) == ("join_payment", "charge_missing", "none")
    assert (letter.source, letter.event_id, letter.time) == ("payment_intent:pi_1", "evt_s2", None)
    assert json.loads(letter.raw) == {
        "amount_minor": 500,
        "checkout_session": "cs_1",
        "currency": "GBP",
        "events": ["evt_p1", "evt_s2"],
        "payment_intent": "pi_1",
    }
