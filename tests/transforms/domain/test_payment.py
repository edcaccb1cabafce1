"""`decide`: a PaymentIntent's facts, joined in any order, to one Decision."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations
from math import factorial

import pytest

from tests.builders import (
    ACCOUNT_UK,
    T0,
    charge_fact,
    charge_object,
    intent_fact,
    session_fact,
)
from transforms.domain.facts import ChargeFact, SessionFact
from transforms.domain.payment import (
    Decision,
    Payment,
    PaymentState,
    Verdict,
    decide,
    settlement,
)

WAIT = 600
DAY = 86_400


def state_of(facts: Sequence[SessionFact | ChargeFact], *, completed: bool = False) -> PaymentState:
    state = PaymentState(completed=completed)
    for fact in facts:
        state = state.add(fact)
    return state


def assert_every_order_decides(
    facts: Sequence[SessionFact | ChargeFact], expected: Decision, *, deadline_passed: bool
) -> None:
    """The facts, added in each of their permutations, all lead to `expected`."""
    decisions = [
        decide(state_of(order), charge_wait=WAIT, deadline_passed=deadline_passed)
        for order in permutations(facts)
    ]
    assert decisions == [expected] * factorial(len(facts))


def test_state_add_keeps_arrival_order_and_does_not_mutate() -> None:
    session, charge, intent = session_fact(), charge_fact(), intent_fact()
    empty = PaymentState()

    state = empty.add(charge).add(session).add(intent)

    assert empty == PaymentState(sessions=(), charges=(), completed=False)
    assert state == PaymentState(sessions=(session,), charges=(charge, intent), completed=False)
    assert state.first_created == T0


def test_paid_session_with_charge_object_completes_in_any_order() -> None:
    session = session_fact()
    charge = charge_fact(created=T0 + 2)
    intent = intent_fact(created=T0 + 1)
    expected = Decision(
        Verdict.COMPLETE,
        Payment(
            session=session,
            status="Paid",
            settled_at=T0,
            charge_id="ch_1",
            card_country="US",
            payment_method="card",
            account=ACCOUNT_UK,
        ),
    )

    for deadline_passed in (False, True):
        assert_every_order_decides(
            [session, charge, intent], expected, deadline_passed=deadline_passed
        )


def test_charge_before_session_completes_the_same_in_any_order() -> None:
    charge = charge_fact("evt_c", created=T0 - 5, obj=charge_object(card_country="au"))
    intent = intent_fact("evt_pi", created=T0 - 4)
    session = session_fact("evt_s", created=T0)
    session_copy = session_fact("evt_s", created=T0)
    expected = Decision(
        Verdict.COMPLETE,
        Payment(
            session=session,
            status="Paid",
            settled_at=T0,
            charge_id="ch_1",
            card_country="AU",
            payment_method="card",
            account=ACCOUNT_UK,
        ),
    )

    assert_every_order_decides(
        [charge, intent, session, session_copy], expected, deadline_passed=False
    )


def test_paid_session_alone_waits_for_the_charge_until_the_deadline() -> None:
    state = state_of([session_fact(created=T0 + 30)])

    assert decide(state, charge_wait=WAIT, deadline_passed=False) == Decision(
        Verdict.WAIT_FOR_CHARGE, payment=None, charge_deadline=T0 + 30 + WAIT
    )


def test_paid_session_with_only_a_latest_charge_id_waits_then_completes_without_country() -> None:
    session = session_fact(country="FR")
    intent = intent_fact(latest_charge="ch_9")
    expected = Decision(
        Verdict.COMPLETE,
        Payment(
            session=session,
            status="Paid",
            settled_at=T0,
            charge_id="ch_9",
            card_country=None,
            payment_method="card",
            account=ACCOUNT_UK,
        ),
    )

    assert_every_order_decides(
        [session, intent],
        Decision(Verdict.WAIT_FOR_CHARGE, charge_deadline=T0 + WAIT),
        deadline_passed=False,
    )
    assert_every_order_decides([session, intent], expected, deadline_passed=True)


def test_payment_method_is_unknown_when_the_session_offered_several() -> None:
    session = session_fact(payment_method_types=("card", "link"))
    intent = intent_fact()

    assert decide(state_of([session, intent]), charge_wait=WAIT, deadline_passed=True) == Decision(
        Verdict.COMPLETE,
        Payment(
            session=session,
            status="Paid",
            settled_at=T0,
            charge_id="ch_1",
            card_country=None,
            payment_method=None,
            account=ACCOUNT_UK,
        ),
    )


def test_paid_session_with_nothing_after_the_deadline_is_charge_missing() -> None:
    state = state_of([session_fact(), intent_fact(latest_charge=None)])

    assert decide(state, charge_wait=WAIT, deadline_passed=True) == Decision(
        Verdict.CHARGE_MISSING, payment=None, charge_deadline=T0 + WAIT
    )


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [charge_fact(created=T0 + 1)],
        [charge_fact(created=T0 + 1), intent_fact(created=T0 + 1)],
    ],
    ids=["nothing-else", "with-charge", "with-charge-and-intent"],
)
@pytest.mark.parametrize("deadline_passed", [False, True], ids=["before", "after-deadline"])
def test_pending_session_waits_for_settlement(
    extra: list[ChargeFact], deadline_passed: bool
) -> None:
    pending = session_fact(payment_status="unpaid", payment_method_types=("bacs_debit",))

    assert decide(
        state_of([pending, *extra]), charge_wait=WAIT, deadline_passed=deadline_passed
    ) == Decision(Verdict.WAIT_FOR_SETTLEMENT)


def test_charges_alone_wait_for_settlement() -> None:
    state = state_of([charge_fact(), intent_fact()])

    assert decide(state, charge_wait=WAIT, deadline_passed=True) == Decision(
        Verdict.WAIT_FOR_SETTLEMENT, payment=None, charge_deadline=None
    )


def test_async_success_settles_at_the_async_event_in_any_order() -> None:
    bacs = ("bacs_debit",)
    pending = session_fact("evt_s1", payment_status="unpaid", payment_method_types=bacs)
    charge = charge_fact(
        "evt_c", created=T0 + 3 * DAY, obj=charge_object(method="bacs_debit", card_country=None)
    )
    succeeded = session_fact(
        "evt_s2",
        event_type="checkout.session.async_payment_succeeded",
        created=T0 + 3 * DAY + 10,
        payment_method_types=bacs,
    )
    expected = Decision(
        Verdict.COMPLETE,
        Payment(
            session=succeeded,
            status="Paid",
            settled_at=T0 + 3 * DAY + 10,
            charge_id="ch_1",
            card_country=None,
            payment_method="bacs_debit",
            account=ACCOUNT_UK,
        ),
    )

    assert_every_order_decides([pending, charge, succeeded], expected, deadline_passed=False)


def test_async_success_without_charge_waits_from_the_async_event() -> None:
    pending = session_fact("evt_s1", payment_status="unpaid")
    succeeded = session_fact(
        "evt_s2", event_type="checkout.session.async_payment_succeeded", created=T0 + 3 * DAY
    )

    assert decide(
        state_of([pending, succeeded]), charge_wait=WAIT, deadline_passed=False
    ) == Decision(Verdict.WAIT_FOR_CHARGE, charge_deadline=T0 + 3 * DAY + WAIT)


def test_async_failure_picks_the_failed_charge_and_is_failed_in_any_order() -> None:
    bacs = ("bacs_debit",)
    pending = session_fact("evt_s1", payment_status="unpaid", payment_method_types=bacs)
    failed_charge = charge_fact(
        "evt_c",
        event_type="charge.failed",
        created=T0 + 3 * DAY,
        obj=charge_object(charge_id="ch_bad", method="bacs_debit", status="failed"),
    )
    failed_intent = intent_fact(
        "evt_pi",
        event_type="payment_intent.payment_failed",
        created=T0 + 3 * DAY,
        latest_charge="ch_bad",
        last_payment_error_charge="ch_bad",
    )
    failed = session_fact(
        "evt_s2",
        event_type="checkout.session.async_payment_failed",
        created=T0 + 3 * DAY + 5,
        payment_status="unpaid",
        payment_method_types=bacs,
    )
    expected = Decision(
        Verdict.COMPLETE,
        Payment(
            session=failed,
            status="Failed",
            settled_at=T0 + 3 * DAY + 5,
            charge_id="ch_bad",
            card_country=None,
            payment_method="bacs_debit",
            account=ACCOUNT_UK,
        ),
    )

    assert_every_order_decides(
        [pending, failed_charge, failed_intent, failed], expected, deadline_passed=False
    )


def test_async_failure_with_only_the_intent_completes_after_the_deadline() -> None:
    failed = session_fact(
        "evt_s2",
        event_type="checkout.session.async_payment_failed",
        payment_status="unpaid",
        payment_method_types=("sepa_debit",),
    )
    failed_intent = intent_fact(
        "evt_pi",
        event_type="payment_intent.payment_failed",
        latest_charge="ch_latest",
        last_payment_error_charge="ch_bad",
    )

    assert decide(
        state_of([failed, failed_intent]), charge_wait=WAIT, deadline_passed=True
    ) == Decision(
        Verdict.COMPLETE,
        Payment(
            session=failed,
            status="Failed",
            settled_at=T0,
            charge_id="ch_bad",
            card_country=None,
            payment_method="sepa_debit",
            account=ACCOUNT_UK,
        ),
    )


def test_a_failed_debit_after_a_declined_card_is_the_debit_in_any_order() -> None:
    methods = ("card", "bacs_debit")
    declined = charge_fact(
        "evt_c0",
        event_type="charge.failed",
        created=T0 - 20,
        obj=charge_object(charge_id="ch_0", card_country="US", status="failed"),
    )
    declined_intent = intent_fact(
        "evt_pi0",
        event_type="payment_intent.payment_failed",
        created=T0 - 20,
        latest_charge="ch_0",
        last_payment_error_charge="ch_0",
    )
    pending = session_fact("evt_s1", payment_status="unpaid", payment_method_types=methods)
    debit = charge_fact(
        "evt_c1",
        event_type="charge.failed",
        created=T0 + 3 * DAY,
        obj=charge_object(charge_id="py_1", method="bacs_debit", status="failed"),
    )
    debit_intent = intent_fact(
        "evt_pi1",
        event_type="payment_intent.payment_failed",
        created=T0 + 3 * DAY,
        latest_charge="py_1",
        last_payment_error_charge="py_1",
    )
    failed = session_fact(
        "evt_s2",
        event_type="checkout.session.async_payment_failed",
        created=T0 + 3 * DAY + 5,
        payment_status="unpaid",
        payment_method_types=methods,
    )
    expected = Decision(
        Verdict.COMPLETE,
        Payment(
            session=failed,
            status="Failed",
            settled_at=T0 + 3 * DAY + 5,
            charge_id="py_1",
            card_country=None,
            payment_method="bacs_debit",
            account=ACCOUNT_UK,
        ),
    )

    assert_every_order_decides(
        [declined, declined_intent, pending, debit, debit_intent, failed],
        expected,
        deadline_passed=False,
    )
    # Before the debit's own events arrive, the declined card does not settle it.
    assert decide(
        state_of([declined, declined_intent, pending, failed]),
        charge_wait=WAIT,
        deadline_passed=False,
    ) == Decision(Verdict.WAIT_FOR_CHARGE, charge_deadline=T0 + 3 * DAY + 5 + WAIT)
    assert decide(
        state_of([declined, failed]), charge_wait=WAIT, deadline_passed=False
    ) == Decision(Verdict.WAIT_FOR_CHARGE, charge_deadline=T0 + 3 * DAY + 5 + WAIT)


def test_a_declined_attempt_before_the_success_is_not_the_payment() -> None:
    declined = charge_fact(
        "evt_c0",
        event_type="charge.failed",
        created=T0 - 20,
        obj=charge_object(charge_id="ch_0", card_country="DE", status="failed"),
    )
    charge = charge_fact("evt_c1", created=T0 - 5)
    session = session_fact()

    expected = Decision(
        Verdict.COMPLETE,
        Payment(
            session=session,
            status="Paid",
            settled_at=T0,
            charge_id="ch_1",
            card_country="US",
            payment_method="card",
            account=ACCOUNT_UK,
        ),
    )

    assert_every_order_decides([declined, charge, session], expected, deadline_passed=False)


@pytest.mark.parametrize(
    ("charge_created", "deadline_passed", "expected"),
    [
        (
            T0 + WAIT,
            False,
            Decision(
                Verdict.COMPLETE,
                Payment(
                    session=session_fact(),
                    status="Paid",
                    settled_at=T0,
                    charge_id="ch_1",
                    card_country="US",
                    payment_method="card",
                    account=ACCOUNT_UK,
                ),
            ),
        ),
        (
            T0 + WAIT + 1,
            False,
            Decision(Verdict.WAIT_FOR_CHARGE, charge_deadline=T0 + WAIT),
        ),
        (
            T0 + WAIT + 1,
            True,
            Decision(Verdict.CHARGE_MISSING, charge_deadline=T0 + WAIT),
        ),
    ],
    ids=["at-deadline-counts", "after-deadline-ignored", "after-deadline-ignored-missing"],
)
def test_charge_created_after_the_deadline_is_ignored(
    charge_created: int, deadline_passed: bool, expected: Decision
) -> None:
    state = state_of([session_fact(), charge_fact(created=charge_created)])

    assert decide(state, charge_wait=WAIT, deadline_passed=deadline_passed) == expected


def test_late_charge_object_does_not_replace_the_intent_id_known_in_time() -> None:
    session = session_fact()
    intent = intent_fact(created=T0 + 10, latest_charge="ch_1")
    late_charge = charge_fact(created=T0 + WAIT + 1, obj=charge_object(card_country="CA"))

    expected = Decision(
        Verdict.COMPLETE,
        Payment(
            session=session,
            status="Paid",
            settled_at=T0,
            charge_id="ch_1",
            card_country=None,
            payment_method="card",
            account=ACCOUNT_UK,
        ),
    )

    assert_every_order_decides([session, intent, late_charge], expected, deadline_passed=True)


@pytest.mark.parametrize("deadline_passed", [False, True], ids=["before", "after-deadline"])
@pytest.mark.parametrize(
    "facts",
    [
        [session_fact()],
        [session_fact(), charge_fact()],
        [session_fact(), intent_fact()],
        [session_fact(payment_status="unpaid"), charge_fact()],
    ],
    ids=["session", "session-charge", "session-intent", "pending-charge"],
)
def test_duplicate_facts_change_nothing(
    facts: list[SessionFact | ChargeFact], deadline_passed: bool
) -> None:
    once = decide(state_of(facts), charge_wait=WAIT, deadline_passed=deadline_passed)
    twice = decide(state_of(facts + facts), charge_wait=WAIT, deadline_passed=deadline_passed)
    thrice = decide(
        state_of(facts + facts[::-1] + facts), charge_wait=WAIT, deadline_passed=deadline_passed
    )

    assert (twice, thrice) == (once, once)


def test_earliest_of_two_paid_sessions_settles() -> None:
    first = session_fact("evt_s1", created=T0)
    later = session_fact("evt_s0", created=T0 + 60)

    for order in permutations([first, later]):
        assert settlement(state_of(order)) == first


def test_earliest_of_two_async_outcomes_settles() -> None:
    first = session_fact(
        "evt_s9", event_type="checkout.session.async_payment_succeeded", created=T0 + DAY
    )
    later = session_fact(
        "evt_s1", event_type="checkout.session.async_payment_succeeded", created=T0 + DAY + 1
    )
    tie = session_fact(
        "evt_s8", event_type="checkout.session.async_payment_succeeded", created=T0 + DAY
    )

    for order in permutations([first, later, tie]):
        assert settlement(state_of(order)) == tie


def test_earliest_charge_object_wins_and_event_id_breaks_ties() -> None:
    session = session_fact()
    legacy_intent = intent_fact(
        "evt_c2", created=T0 + 1, legacy_charges=[charge_object(card_country="IE")]
    )
    charge = charge_fact("evt_c1", created=T0 + 1, obj=charge_object(card_country="US"))
    later_charge = charge_fact("evt_c0", created=T0 + 2, obj=charge_object(card_country="FR"))
    expected = Decision(
        Verdict.COMPLETE,
        Payment(
            session=session,
            status="Paid",
            settled_at=T0,
            charge_id="ch_1",
            card_country="US",
            payment_method="card",
            account=ACCOUNT_UK,
        ),
    )

    assert_every_order_decides(
        [session, legacy_intent, charge, later_charge], expected, deadline_passed=False
    )


def test_async_outcome_wins_over_the_completion_before_it() -> None:
    paid = session_fact("evt_s1", created=T0)
    succeeded = session_fact(
        "evt_s2", event_type="checkout.session.async_payment_succeeded", created=T0 + DAY
    )

    assert settlement(state_of([succeeded, paid])) == succeeded
    assert settlement(state_of([paid])) == paid
    assert settlement(state_of([session_fact(payment_status="unpaid")])) is None


@pytest.mark.parametrize("deadline_passed", [False, True], ids=["before", "after-deadline"])
@pytest.mark.parametrize(
    "facts",
    [[], [session_fact()], [session_fact(), charge_fact()]],
    ids=["empty", "session", "session-charge"],
)
def test_completed_state_is_already_completed(
    facts: list[SessionFact | ChargeFact], deadline_passed: bool
) -> None:
    state = state_of(facts, completed=True)

    assert decide(state, charge_wait=WAIT, deadline_passed=deadline_passed) == Decision(
        Verdict.ALREADY_COMPLETED, payment=None, charge_deadline=None
    )


@pytest.mark.parametrize(
    ("session_account", "charge_account", "intent_account", "expected_account"),
    [
        (None, None, ACCOUNT_UK, ACCOUNT_UK),
        (None, ACCOUNT_UK, None, ACCOUNT_UK),
        (ACCOUNT_UK, None, None, ACCOUNT_UK),
        (None, None, None, None),
    ],
    ids=["from-intent", "from-charge", "from-session", "unknown"],
)
def test_account_is_taken_from_any_fact(
    session_account: str | None,
    charge_account: str | None,
    intent_account: str | None,
    expected_account: str | None,
) -> None:
    session = session_fact(account=session_account)
    charge = charge_fact(account=charge_account)
    intent = intent_fact(account=intent_account)

    expected = Decision(
        Verdict.COMPLETE,
        Payment(
            session=session,
            status="Paid",
            settled_at=T0,
            charge_id="ch_1",
            card_country="US",
            payment_method="card",
            account=expected_account,
        ),
    )

    assert_every_order_decides([session, charge, intent], expected, deadline_passed=False)
