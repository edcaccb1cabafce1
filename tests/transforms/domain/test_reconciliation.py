"""The refund/dispute rule itself, in both of its renderings, on an in-memory DuckDB.

`current_contribution_columns` (what the `contributions_current` view selects
in DuckDB and BigQuery) and `store_reconciliation_update` (what the DuckDB
warehouse and the Postgres store run on `contributions_store`) must give the
expected state for every case of the rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import duckdb
import pytest

from transforms.domain.reconciliation import (
    DISPUTE,
    REFUND,
    adjustment_summary,
    current_contribution_columns,
    store_reconciliation_update,
)

#: A paid contribution of 10 with nothing refunded: (amount, amount_refunded, status, disputed).
PAID = ("10", "0", "Paid", False)
FAILED = ("10", "0", "Failed", False)
#: The contribution (the store row has its amount and status), its adjustments as (kind,
#: amount_refunded_total) for charge.refunded and disputes, or (kind, None, amount) for a
#: refund object, the expected (amount_refunded, status, disputed) and store status.
CASES = [
    pytest.param(PAID, [], ("0", "Paid", False), "Paid", id="none"),
    pytest.param(PAID, [(REFUND, "4")], ("4", "Paid", False), "Paid", id="partial"),
    pytest.param(PAID, [(REFUND, "10")], ("10", "Refunded", False), "Refunded", id="full"),
    pytest.param(
        PAID, [(REFUND, "10"), (REFUND, "4")], ("10", "Refunded", False), "Refunded", id="any-order"
    ),
    pytest.param(
        ("10", "6", "Paid", False), [(REFUND, "4")], ("6", "Paid", False), "Paid", id="greater"
    ),
    pytest.param(FAILED, [(REFUND, "10")], ("10", "Failed", False), "Failed", id="failed"),
    pytest.param(PAID, [(DISPUTE, None)], ("0", "Paid", True), "Paid", id="dispute"),
    pytest.param(
        PAID, [(DISPUTE, None), (REFUND, "10")], ("10", "Refunded", True), "Refunded", id="both"
    ),
    pytest.param(
        ("10", "10", "Refunded", True),
        [(REFUND, "10"), (DISPUTE, None)],
        ("10", "Refunded", True),
        "Refunded",
        id="already-folded",
    ),
    pytest.param(
        PAID, [(REFUND, None, "3"), (REFUND, None, "4")], ("7", "Paid", False), "Paid",
        id="refund-objects-add-up",
    ),
    pytest.param(
        PAID, [(REFUND, None, "6"), (REFUND, None, "4")], ("10", "Refunded", False), "Refunded",
        id="refund-objects-in-full",
    ),
    pytest.param(
        PAID, [(REFUND, "10"), (REFUND, None, "6"), (REFUND, None, "4")],
        ("10", "Refunded", False), "Refunded", id="both-kinds-count-the-money-once",
    ),
    pytest.param(
        PAID, [(REFUND, "3"), (REFUND, None, "3"), (REFUND, None, "5")],
        ("8", "Paid", False), "Paid", id="the-greater-of-the-two",
    ),
]  # fmt: skip

Contribution = tuple[str, str, str, bool]
Adjustments = list[tuple[str, str | None] | tuple[str, None, str]]


@pytest.fixture
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute(
        "CREATE TABLE contributions (payment_id TEXT, amount DECIMAL(38, 9), "
        "amount_refunded DECIMAL(38, 9), status TEXT, disputed BOOLEAN)"
    )
    connection.execute(
        "CREATE TABLE contributions_store (payment_id TEXT, amount DECIMAL(38, 9), "
        "payment_status TEXT)"
    )
    connection.execute(
        "CREATE TABLE payment_adjustments (payment_id TEXT, kind TEXT, "
        "amount_refunded_total DECIMAL(38, 9), amount DECIMAL(38, 9))"
    )
    yield connection
    connection.close()


def _insert(
    connection: duckdb.DuckDBPyConnection,
    payment_id: str,
    contribution: Contribution,
    adjustments: Adjustments,
) -> None:
    amount, refunded, status, disputed = contribution
    connection.execute(
        "INSERT INTO contributions VALUES (?, ?, ?, ?, ?)",
        [payment_id, amount, refunded, status, disputed],
    )
    connection.execute(
        "INSERT INTO contributions_store VALUES (?, ?, ?)", [payment_id, amount, status]
    )
    for adjustment in adjustments:
        kind, total = adjustment[0], adjustment[1]
        adjusted: str | None = adjustment[2] if len(adjustment) == 3 else total
        connection.execute(
            "INSERT INTO payment_adjustments VALUES (?, ?, ?, ?)",
            [payment_id, kind, total, adjusted],
        )


def _store_status(connection: duckdb.DuckDBPyConnection, payment_id: str) -> str:
    found = connection.execute(
        "SELECT payment_status FROM contributions_store WHERE payment_id = ?", [payment_id]
    ).fetchone()
    assert found is not None
    return str(found[0])


def _expected(folded: tuple[str, str, bool]) -> tuple[Decimal, str, bool]:
    refunded, status, disputed = folded
    return Decimal(refunded), status, disputed


@pytest.mark.parametrize(("contribution", "adjustments", "folded", "store_status"), CASES)
def test_the_view_folds_adjustments_and_the_store_update_runs_once(
    connection: duckdb.DuckDBPyConnection,
    contribution: Contribution,
    adjustments: Adjustments,
    folded: tuple[str, str, bool],
    store_status: str,
) -> None:
    _insert(connection, "ch_1", contribution, adjustments)
    columns = current_contribution_columns("c", "a")
    view = (
        f"SELECT {columns['amount_refunded']}, {columns['status']}, {columns['disputed']}\n"
        f"FROM contributions AS c\n"
        f"LEFT JOIN ({adjustment_summary('payment_adjustments')}) AS a "
        f"ON a.payment_id = c.payment_id"
    )
    update = store_reconciliation_update("contributions_store", "payment_adjustments")

    viewed = connection.execute(view).fetchall()
    connection.execute(update)
    updated = _store_status(connection, "ch_1")
    changed_again = connection.execute(update).fetchone()

    assert viewed == [_expected(folded)]
    assert updated == store_status
    assert changed_again == (0,)


def test_a_payment_filter_reconciles_only_the_payments_it_names(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    for payment_id in ("ch_1", "ch_2"):
        _insert(connection, payment_id, ("10", "0", "Paid", False), [(REFUND, "10")])
    update = store_reconciliation_update(
        "contributions_store", "payment_adjustments", payment_filter="payment_id = 'ch_2'"
    )

    connection.execute(update)

    assert [_store_status(connection, p) for p in ("ch_1", "ch_2")] == ["Paid", "Refunded"]
