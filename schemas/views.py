"""BigQuery raw tables and the views analysts query, generated from `schemas.records`.

Every record type is stored twice over in BigQuery:

    <table>_raw   append-only, the generated schema plus `_written_at`
                  (TIMESTAMP, when the writer produced the row); partitioned
                  by day and clustered exactly as the record's `TABLE` says
    <table>       a view: the latest row (greatest `_written_at`) per natural
                  key (`TABLE.key`), with the generated columns only

and the analysts' views are built on top of those:

    contributions_current   `contributions` with refunds and disputes folded
                            in by the rule of `transforms.domain.reconciliation`
    daily_totals            per UTC day, currency and livemode: paid payments,
                            amount, amount refunded, net amount, refunded and
                            disputed payments
    fact_acquisition_event  live `acquisitions` under the consumers' column names

The analysts' views are written once and rendered per `Dialect`: for BigQuery
here (`view_definitions`) and for the DuckDB warehouse, whose per-entity
tables are real tables with the same names (`duckdb_view_statements`), so
both warehouses answer the same queries alike.

Replays, restarts and re-run backfills append more copies to `<table>_raw`;
the views always show one row per key. Column lists come from the schema
generators, never by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.generate import bigquery_schema, columns, table_of
from schemas.records import Acquisition, Contribution, PaymentAdjustment
from transforms.domain.reconciliation import adjustment_summary, current_contribution_columns

#: Column the writer adds to every raw row; the views keep the greatest per key.
WRITTEN_AT = "_written_at"
RAW_SUFFIX = "_raw"
CONTRIBUTIONS_CURRENT = "contributions_current"
DAILY_TOTALS = "daily_totals"
FACT_ACQUISITION_EVENT = "fact_acquisition_event"
# `acquisitions` columns the consumers' `fact_acquisition_event` lacks.
_FACT_OMITTED = ("livemode", "account")


def raw_table_name(record_type: type) -> str:
    """`<table>_raw`: the append-only table the writer loads into."""
    return table_of(record_type).name + RAW_SUFFIX


def raw_bigquery_schema(record_type: type) -> list[dict[str, Any]]:
    """The generated BigQuery schema of the record type plus `_written_at`."""
    return [
        *bigquery_schema(record_type),
        {
            "name": WRITTEN_AT,
            "type": "TIMESTAMP",
            "mode": "REQUIRED",
            "description": "When the writer produced this copy; the views keep the latest.",
        },
    ]


def _ref(project: str, dataset: str, table: str) -> str:
    return f"`{project}.{dataset}.{table}`"


def latest_view_sql(record_type: type, project: str, dataset: str) -> str:
    """The view `<table>`: exactly one row per natural key, the latest written.

    Rows of one key written at the same instant are identical copies (a
    replayed record), so which one wins does not matter. The window is also
    partitioned by the table's partition column: a record's event time is a
    function of its key (assigned once, from the Stripe event), so the result
    is the same, and BigQuery can push a filter on that column through the
    window into the raw table, pruning its partitions.
    """
    table = table_of(record_type)
    names = ", ".join(c.name for c in columns(record_type))
    window = table.key
    if table.partition_by is not None and table.partition_by not in window:
        window = (*window, table.partition_by)
    key = ", ".join(window)
    return (
        f"SELECT {names}\n"
        f"FROM {_ref(project, dataset, raw_table_name(record_type))}\n"
        f"WHERE TRUE\n"
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {WRITTEN_AT} DESC) = 1"
    )


@dataclass(frozen=True)
class Dialect:
    """How one warehouse spells what the analysts' views need; the rest is shared SQL.

    `table(name)` references a table or view of the warehouse by name;
    `utc_date(expression)` is the UTC calendar day of a TIMESTAMP expression.
    """

    name: str
    table: Callable[[str], str]
    utc_date: Callable[[str], str]


def bigquery_dialect(project: str, dataset: str) -> Dialect:
    """BigQuery: `project.dataset.name`; DATE() of a TIMESTAMP is its UTC day."""
    return Dialect(
        name="bigquery",
        table=lambda name: _ref(project, dataset, name),
        utc_date=lambda expression: f"DATE({expression})",
    )


#: DuckDB: tables of the open database. Its TIMESTAMPTZ becomes a date in the
#: session's time zone, which is the reader's, so the day is taken in UTC explicitly.
DUCKDB = Dialect(
    name="duckdb",
    table=lambda name: '"' + name.replace('"', '""') + '"',
    utc_date=lambda expression: f"CAST(timezone('UTC', {expression}) AS DATE)",
)


def contributions_current_sql(dialect: Dialect) -> str:
    """The view `contributions_current`: contributions with adjustments folded in.

    The rule of `transforms.domain.reconciliation`, rendered as a query
    rather than the warehouse's UPDATEs, so it holds whatever order the rows
    arrived in (a refund before its payment, a refund in a later run).
    """
    folded = current_contribution_columns("c", "a")
    select = ",\n    ".join(
        f"{folded[c.name]} AS {c.name}" if c.name in folded else f"c.{c.name}"
        for c in columns(Contribution)
    )
    adjustments = adjustment_summary(dialect.table(table_of(PaymentAdjustment).name))
    return f"""WITH a AS (
    {adjustments}
)
SELECT
    {select}
FROM {dialect.table(table_of(Contribution).name)} AS c
LEFT JOIN a ON a.payment_id = c.payment_id"""


def daily_totals_sql(dialect: Dialect) -> str:
    """The view `daily_totals`: one row per UTC day of `created`, currency and livemode.

    Counts `Paid` and `Refunded` payments (a refund does not un-pay a day:
    it shows in `amount_refunded` and `net_amount`); `Failed` ones are left out.
    `refunded_payments` counts payments with any refund, partial ones included.
    """
    return f"""SELECT
    {dialect.utc_date("created")} AS day,
    currency,
    livemode,
    COUNT(*) AS payments,
    SUM(amount) AS amount,
    SUM(amount_refunded) AS amount_refunded,
    SUM(amount - amount_refunded) AS net_amount,
    COUNT(CASE WHEN amount_refunded > 0 THEN 1 END) AS refunded_payments,
    COUNT(CASE WHEN disputed THEN 1 END) AS disputed_payments
FROM {dialect.table(CONTRIBUTIONS_CURRENT)}
WHERE status IN ('Paid', 'Refunded')
GROUP BY day, currency, livemode"""


def fact_acquisition_event_columns() -> tuple[str, ...]:
    """The columns of `fact_acquisition_event`, in table order.

    Every acquisition column except the two the consumers' table lacks
    (`livemode`, `account`); `acquisitions` already uses the consumers' names.
    """
    return tuple(c.name for c in columns(Acquisition) if c.name not in _FACT_OMITTED)


def fact_acquisition_event_sql(dialect: Dialect) -> str:
    """The view `fact_acquisition_event`: live acquisitions with the consumers' columns.

    Like the consumers' production table, which test-mode payments never
    reach, it holds live payments only.
    """
    select = ",\n    ".join(fact_acquisition_event_columns())
    return f"""SELECT
    {select}
FROM {dialect.table(table_of(Acquisition).name)}
WHERE livemode"""


def analyst_views(dialect: Dialect) -> dict[str, str]:
    """{view name: SQL} of the views both warehouses share, in creation order."""
    return {
        CONTRIBUTIONS_CURRENT: contributions_current_sql(dialect),
        DAILY_TOTALS: daily_totals_sql(dialect),
        FACT_ACQUISITION_EVENT: fact_acquisition_event_sql(dialect),
    }


# The record types whose tables each analysts' view reads, directly or through another view.
_ANALYST_VIEWS_READ: dict[str, tuple[type, ...]] = {
    CONTRIBUTIONS_CURRENT: (Contribution, PaymentAdjustment),
    DAILY_TOTALS: (Contribution, PaymentAdjustment),
    FACT_ACQUISITION_EVENT: (Acquisition,),
}


def duckdb_view_statements() -> tuple[str, ...]:
    """`CREATE OR REPLACE VIEW` for each of `analyst_views` in DuckDB, in creation order."""
    return tuple(
        f"CREATE OR REPLACE VIEW {DUCKDB.table(name)} AS\n{sql}"
        for name, sql in analyst_views(DUCKDB).items()
    )


def view_definitions(record_types: tuple[type, ...], project: str, dataset: str) -> dict[str, str]:
    """{view name: SQL} in creation order: a view comes after the views it reads.

    One latest-row view per record type, then each of `analyst_views` for
    BigQuery whose record types are all given (`_ANALYST_VIEWS_READ`).
    """
    views = {
        table_of(record_type).name: latest_view_sql(record_type, project, dataset)
        for record_type in record_types
    }
    for name, sql in analyst_views(bigquery_dialect(project, dataset)).items():
        if all(t in record_types for t in _ANALYST_VIEWS_READ[name]):
            views[name] = sql
    return views
