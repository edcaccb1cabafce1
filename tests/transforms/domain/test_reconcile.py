"""The comparison of the archive's holdings with a store's: differences, sums, the table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from transforms.domain.reconcile import (
    Comparison,
    Difference,
    DiffRow,
    Holding,
    compare,
    compared,
    diff_table,
    held_back,
    render_report,
    render_table,
)

DAY = date(2025, 3, 1)
PAID = Holding("ch_1", DAY, "GBP", Decimal("5.00"), Decimal("0.00"))


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param(PAID, [], id="same"),
        pytest.param(
            replace(PAID, amount=Decimal("5.000000000"), refunded=Decimal("0E-9")),
            [],
            id="same-amount-other-scale",
        ),
        pytest.param(
            None, [Difference("s", "ch_1", "missing", "2025-03-01 GBP 5.00", "")], id="missing"
        ),
        pytest.param(
            replace(PAID, amount=Decimal("4.5")),
            [Difference("s", "ch_1", "amount", "5.00", "4.50")],
            id="amount",
        ),
        pytest.param(
            replace(PAID, amount=Decimal("5.001")),
            [Difference("s", "ch_1", "amount", "5.00", "5.001")],
            id="amount-finer-than-the-currency",
        ),
        pytest.param(
            replace(PAID, refunded=Decimal("5")),
            [Difference("s", "ch_1", "refunded", "0.00", "5.00")],
            id="refunded",
        ),
        pytest.param(replace(PAID, refunded=None), [], id="store-knows-no-refunds"),
        pytest.param(
            replace(PAID, currency="EUR"),
            [Difference("s", "ch_1", "currency", "GBP", "EUR")],
            id="currency",
        ),
        pytest.param(
            replace(PAID, day=date(2025, 3, 2), amount=Decimal(6)),
            [
                Difference("s", "ch_1", "day", "2025-03-01", "2025-03-02"),
                Difference("s", "ch_1", "amount", "5.00", "6.00"),
            ],
            id="day-and-amount",
        ),
        pytest.param(
            replace(PAID, sent=False), [Difference("s", "ch_1", "unsent", "", "")], id="unsent"
        ),
    ],
)
def test_compare_one_payment(found: Holding | None, expected: list[Difference]) -> None:
    assert compare("s", {"ch_1": PAID}, {"ch_1": found} if found else {}) == expected


def test_a_payment_only_the_store_has_is_extra_when_in_range() -> None:
    inside = Holding("ch_2", DAY, "JPY", Decimal(500))
    outside = replace(inside, payment_id="ch_3", in_range=False)
    found = {"ch_1": PAID, "ch_2": inside, "ch_3": outside}
    assert compare("s", {"ch_1": PAID}, found) == [
        Difference("s", "ch_2", "extra", "", "2025-03-01 JPY 500")
    ]


@pytest.mark.parametrize(
    ("difference", "text"),
    [
        (
            Difference("s", "ch_1", "missing", "2025-03-01 GBP 5.00", ""),
            "ch_1: missing (archive: 2025-03-01 GBP 5.00)",
        ),
        (
            Difference("s", "ch_1", "extra", "", "2025-03-01 GBP 5.00"),
            "ch_1: extra (store: 2025-03-01 GBP 5.00)",
        ),
        (
            Difference("s", "ch_1", "amount", "5.00", "4.00"),
            "ch_1: amount 5.00 in the archive, 4.00 here",
        ),
        (
            Difference("s", "ch_1", "unsent", "", ""),
            "ch_1: claimed, never marked sent (outcome unknown)",
        ),
    ],
)
def test_describe(difference: Difference, text: str) -> None:
    assert difference.describe() == text


def test_diff_table_sums_store_minus_archive_per_day_and_currency() -> None:
    archive = {
        "ch_1": PAID,
        "ch_2": Holding("ch_2", DAY, "GBP", Decimal("10.00"), Decimal("2.00")),
        "ch_3": Holding("ch_3", DAY, "JPY", Decimal(500), Decimal(0)),
    }
    found = {
        "ch_1": PAID,
        "ch_2": Holding("ch_2", DAY, "GBP", Decimal("12.00"), Decimal("0.00")),
        "ch_4": Holding("ch_4", date(2025, 3, 2), "GBP", Decimal("1.00"), Decimal(0)),
        "ch_5": Holding("ch_5", DAY, "GBP", Decimal("9.00"), Decimal(0), in_range=False),
        "ch_3": replace(archive["ch_3"], sent=False),
    }
    assert diff_table(archive, found) == [
        DiffRow(DAY, "GBP", 0, Decimal("2.00"), Decimal("-2.00")),
        DiffRow(DAY, "JPY", -1, Decimal(-500), Decimal(0)),
        DiffRow(date(2025, 3, 2), "GBP", 1, Decimal("1.00"), Decimal(0)),
    ]


def test_diff_table_of_a_ledger_counts_payments_only() -> None:
    entry = Holding("ch_1", DAY, "GBP", None)
    assert diff_table(
        {"ch_1": entry, "ch_2": replace(entry, payment_id="ch_2")}, {"ch_1": entry}
    ) == [DiffRow(DAY, "GBP", -1, None, None)]


def test_render_table_shows_each_store_in_its_shape() -> None:
    other = date(2025, 3, 2)
    text = render_table(
        {
            "warehouse": [
                DiffRow(DAY, "GBP", -1, Decimal("-5.00"), Decimal(0)),
                DiffRow(other, "JPY", 0, Decimal(0), Decimal(300)),
            ],
            "supporter_table": [DiffRow(DAY, "GBP", 0, Decimal("0.5"), None)],
            "thank_you_email": [DiffRow(other, "JPY", 1, None, None)],
        }
    )
    assert text.splitlines() == [
        "day         currency  warehouse   supporter_table  thank_you_email",
        "2025-03-01  GBP       -1/-5.00/0  0/+0.50          0",
        "2025-03-02  JPY       0/0/+300    0/0              +1",
    ]


def test_render_report_lists_the_first_ids_and_counts_the_guests_left_out() -> None:
    archive = {
        f"ch_{n:02}": Holding(f"ch_{n:02}", DAY, "GBP", Decimal("1.00"), Decimal(0))
        for n in range(12)
    }
    guest = Holding("ch_guest", DAY, "GBP", Decimal("2.00"))
    report = render_report(
        [
            Comparison("warehouse", archive, archive),
            Comparison("contributions_store", archive, {}),
            compared("supporter_table", {}, {"ch_guest": guest}, {"ch_guest"}),
        ],
        start=None,
        end=datetime(2025, 3, 2, tzinfo=UTC),
    )
    assert report.splitlines() == [
        "archive: 12 paid payments created from the archive's start to 2025-03-02T00:00:00+00:00",
        "store minus archive per day and currency (payments/amount/refunded):",
        "day         currency  warehouse  contributions_store  supporter_table",
        "2025-03-01  GBP       0/0/0      -12/-12.00/0         0",
        "not compared: 1 supporter items and messages of guests (their identity came from the "
        "Identity API, not the archive)",
        "contributions_store: 12 differences",
        *[f"  ch_{n:02}: missing (archive: 2025-03-01 GBP 1.00)" for n in range(10)],
        "  ... and 2 more",
        "differences in contributions_store",
    ]


NOT_BEFORE = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _ledger(payment_id: str) -> Holding:
    return Holding(payment_id, DAY, "GBP", None)


def test_held_back_leaves_out_old_payments_the_ledger_lacks_and_counts_them() -> None:
    archive = {p: _ledger(p) for p in ("ch_old", "ch_old_sent", "ch_edge", "ch_new")}
    created = {
        "ch_old": datetime(2025, 3, 1, 11, 59, tzinfo=UTC),
        "ch_old_sent": datetime(2025, 3, 1, 1, tzinfo=UTC),
        "ch_edge": NOT_BEFORE,
        "ch_new": datetime(2025, 3, 1, 13, tzinfo=UTC),
    }
    found = {"ch_old_sent": _ledger("ch_old_sent")}
    kept, held = held_back(archive, found, created, NOT_BEFORE)
    assert (sorted(kept), held) == (["ch_edge", "ch_new", "ch_old_sent"], 1)
    # A message in the window that was never sent is still a difference.
    assert [(d.payment_id, d.kind) for d in compare("thank_you_email", kept, found)] == [
        ("ch_edge", "missing"),
        ("ch_new", "missing"),
    ]


def test_held_back_without_a_window_keeps_every_expected_message() -> None:
    archive = {"ch_old": _ledger("ch_old")}
    created = {"ch_old": datetime(2020, 1, 1, tzinfo=UTC)}
    assert held_back(archive, {}, created, None) == (archive, 0)


def test_render_report_counts_the_held_back_messages_apart_from_differences() -> None:
    archive = {"ch_new": _ledger("ch_new")}
    report = render_report(
        [
            Comparison("warehouse", archive, archive),
            Comparison("thank_you_email", archive, archive, held_back=3),
            Comparison("soft_opt_in", {}, {}, held_back=2),
        ],
        start=None,
        end=None,
    )
    assert report.splitlines()[-2:] == [
        "not compared: 5 messages held back as too old for the message window "
        "(outputs skipped: message_too_old), none in the ledger",
        "reconciled: every difference is zero",
    ]
