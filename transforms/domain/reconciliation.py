"""The refund/dispute reconciliation rule, written once and rendered as SQL for every store.

Refunds and disputes are payment adjustments keyed by charge id, with no
payment state: they can arrive months after their payment, or before it.
Each store folds them into the payment's current state with this rule,
which holds whatever order the rows arrived in:

- `refunded` = the greater of the greatest `amount_refunded_total` of the
  payment's `charge.refunded` adjustments (Stripe's `amount_refunded` is
  cumulative, so the greatest is current) and the sum of `amount` of its
  refund-object adjustments (one row per refund id, `amount_refunded_total`
  null). Both describe the same money: taking the greater never counts a
  refund twice when a destination sends both kinds, and one that sends only
  one kind still gets every refund;
- `amount_refunded` = greatest(`amount_refunded`, `refunded`);
- `status` becomes `Refunded` when it is `Paid` and the new `amount_refunded`
  is > 0 and >= `amount`: a partial refund keeps `Paid`, `Failed` stays
  `Failed`;
- `disputed` = `disputed` or any `dispute` adjustment exists;
- the contributions store's `payment_status` follows the same refund rule.

The rule's parts are SQL expressions over a contribution `c` (or a store row
`s`) and the payment's adjustment summary `a` (`adjustment_summary`). Two
renderings use them: `store_reconciliation_update`, the UPDATE of the
contributions store's `payment_status` that the DuckDB warehouse runs after
every load and the Postgres store after every batch (the same SQL: both speak
`UPDATE ... FROM`), and `current_contribution_columns`, the folded columns of
the `contributions_current` view, rendered for DuckDB and BigQuery by
`schemas.views`. The SQL sticks
to what DuckDB, Postgres and BigQuery share (CASE inside aggregates, GREATEST
over non-null arguments). Table references are passed in already quoted for
their target, so this module knows no store.
"""

from __future__ import annotations

#: The adjustment kinds `transforms.domain.facts` emits.
REFUND = "refund"
DISPUTE = "dispute"
#: The payment statuses the rule reads and writes.
PAID = "Paid"
REFUNDED = "Refunded"


def adjustment_summary(payment_adjustments: str, payment_filter: str | None = None) -> str:
    """A query of one row per payment with adjustments: `payment_id`, `refunded`, `disputed`.

    `refunded` is 0 for a payment with disputes only. `payment_filter`, a
    boolean SQL expression on the adjustments' `payment_id`, limits it to
    some payments; None summarises all.
    """
    where = f"\n    WHERE {payment_filter}" if payment_filter is not None else ""
    return f"""SELECT
        payment_id,
        GREATEST(
            COALESCE(MAX(CASE WHEN kind = '{REFUND}' THEN amount_refunded_total END), 0),
            COALESCE(
                SUM(
                    CASE WHEN kind = '{REFUND}' AND amount_refunded_total IS NULL
                    THEN amount END
                ),
                0
            )
        ) AS refunded,
        COUNT(CASE WHEN kind = '{DISPUTE}' THEN 1 END) > 0 AS disputed
    FROM {payment_adjustments}{where}
    GROUP BY payment_id"""


def new_amount_refunded(c: str = "c", a: str = "a") -> str:
    """The contribution's amount refunded once its adjustments are folded in."""
    # GREATEST in BigQuery is NULL when any argument is; keep both non-null.
    return f"GREATEST({c}.amount_refunded, COALESCE({a}.refunded, {c}.amount_refunded))"


def becomes_refunded(status: str, amount: str, refunded: str) -> str:
    """True when a payment of `status` and `amount`, refunded `refunded` in all, is Refunded now."""
    return f"{status} = '{PAID}' AND {refunded} > 0 AND {refunded} >= {amount}"


def new_status(c: str = "c", a: str = "a") -> str:
    """The contribution's status once its adjustments are folded in."""
    refunded = becomes_refunded(f"{c}.status", f"{c}.amount", new_amount_refunded(c, a))
    return f"CASE WHEN {refunded} THEN '{REFUNDED}' ELSE {c}.status END"


def new_disputed(c: str = "c", a: str = "a") -> str:
    """The contribution's disputed flag once its adjustments are folded in (none: FALSE)."""
    return f"({c}.disputed OR COALESCE({a}.disputed, FALSE))"


def current_contribution_columns(c: str = "c", a: str = "a") -> dict[str, str]:
    """{column: the expression that replaces it} for a query of current contributions.

    A query joins each contribution `c` to its summary `a` (a LEFT JOIN:
    contributions without adjustments keep their columns as they are).
    """
    return {
        "amount_refunded": new_amount_refunded(c, a),
        "status": new_status(c, a),
        "disputed": new_disputed(c, a),
    }


def store_reconciliation_update(
    contributions_store: str, payment_adjustments: str, *, payment_filter: str | None = None
) -> str:
    """The UPDATE that folds the adjustments into the store's `payment_status`.

    Only rows that change are updated, so running it again is a no-op.
    `payment_filter` (see `adjustment_summary`) limits it to the payments a
    writer has just written; None reconciles all.
    """
    adjustments = f"(\n    {adjustment_summary(payment_adjustments, payment_filter)}\n) AS a"
    return f"""UPDATE {contributions_store} AS s
SET payment_status = '{REFUNDED}'
FROM {adjustments}
WHERE s.payment_id = a.payment_id
    AND {becomes_refunded("s.payment_status", "s.amount", "a.refunded")}"""
