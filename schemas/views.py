"""BigQuery raw tables and the views analysts query, generated from `schemas.records`.

Every record type is stored twice over in BigQuery:

    <table>_raw   append-only, the generated schema plus `_written_at`
                  (TIMESTAMP, when the writer produced the row); partitioned
                  by day and clustered exactly as the record's `TABLE` says
    <table>       a view: the latest row (greatest `_written_at`) per natural
                  key (`TABLE.key`), with the generated columns only

and two views are built on top of those:

    contributions_current   `contributions` with refunds and disputes folded
                            in by the rule of `transforms.sinks.duckdb.reconciliation_sql`
    daily_totals            per UTC day, currency and livemode: paid payments,
                            amount, amount refunded, net amount, disputed payments

Replays, restarts and re-run backfills append more copies to `<table>_raw`;
the views always show one row per key. Column lists come from the schema
generators, never by hand.
"""

from __future__ import annotations

from typing import Any

from schemas.generate import bigquery_schema, columns, table_of
from schemas.records import Acquisition, Contribution, PaymentAdjustment

#: Column the writer adds to every raw row; the views keep the greatest per key.
WRITTEN_AT = "_written_at"
RAW_SUFFIX = "_raw"
CONTRIBUTIONS_CURRENT = "contributions_current"
DAILY_TOTALS = "daily_totals"

# The adjustment kinds `transforms.domain.facts` emits and `reconciliation_sql` folds.
_REFUND = "refund"
_DISPUTE = "dispute"


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


def contributions_current_sql(project: str, dataset: str) -> str:
    """The view `contributions_current`: contributions with adjustments folded in.

    The same rule as `transforms.sinks.duckdb.reconciliation_sql`, as a query
    rather than UPDATEs, so it holds whatever order the rows arrived in (a
    refund before its payment, a refund in a later run):

    - refunded = max(`amount_refunded_total`) of the payment's refund adjustments;
    - amount_refunded = greatest(amount_refunded, refunded);
    - status = `Refunded` when it was `Paid` and the new amount_refunded is
      > 0 and >= amount (a partial refund keeps `Paid`; `Failed` stays);
    - disputed = disputed or any dispute adjustment exists.
    """
    new_refunded = "GREATEST(c.amount_refunded, COALESCE(a.refunded, c.amount_refunded))"
    replaced = {
        "amount_refunded": f"{new_refunded} AS amount_refunded",
        "status": (
            f"CASE WHEN c.status = 'Paid' AND {new_refunded} > 0 AND {new_refunded} >= c.amount "
            "THEN 'Refunded' ELSE c.status END AS status"
        ),
        "disputed": "(c.disputed OR COALESCE(a.disputed, FALSE)) AS disputed",
    }
    select = ",\n    ".join(replaced.get(c.name, f"c.{c.name}") for c in columns(Contribution))
    return f"""WITH a AS (
    SELECT
        payment_id,
        MAX(CASE WHEN kind = '{_REFUND}' THEN amount_refunded_total END) AS refunded,
        COUNT(CASE WHEN kind = '{_DISPUTE}' THEN 1 END) > 0 AS disputed
    FROM {_ref(project, dataset, table_of(PaymentAdjustment).name)}
    GROUP BY payment_id
)
SELECT
    {select}
FROM {_ref(project, dataset, table_of(Contribution).name)} AS c
LEFT JOIN a ON a.payment_id = c.payment_id"""


def daily_totals_sql(project: str, dataset: str) -> str:
    """The view `daily_totals`: one row per UTC day of `created`, currency and livemode.

    Counts `Paid` and `Refunded` payments (a refund does not un-pay a day:
    it shows in `amount_refunded` and `net_amount`); `Failed` ones are left out.
    """
    return f"""SELECT
    DATE(created) AS day,
    currency,
    livemode,
    COUNT(*) AS payments,
    SUM(amount) AS amount,
    SUM(amount_refunded) AS amount_refunded,
    SUM(amount - amount_refunded) AS net_amount,
    COUNT(CASE WHEN disputed THEN 1 END) AS disputed_payments
FROM {_ref(project, dataset, CONTRIBUTIONS_CURRENT)}
WHERE status IN ('Paid', 'Refunded')
GROUP BY day, currency, livemode"""


FACT_ACQUISITION_EVENT = "fact_acquisition_event"
#: The columns of today's `fact_acquisition_event` rows (the acquisitions
#: publisher's FactAcquisitionEventRow), in its order: the view's interface.
FACT_ACQUISITION_EVENT_COLUMNS = (
    "event_timestamp",
    "product",
    "amount",
    "currency",
    "country_code",
    "component_id",
    "component_type",
    "campaign_codes",
    "referrer_url",
    "ab_tests",
    "payment_frequency",
    "payment_provider",
    "print_options",
    "browser_id",
    "identity_id",
    "page_view_id",
    "referrer_page_view_id",
    "promo_code",
    "query_parameters",
    "reused_existing_payment_method",
    "acquisition_type",
    "reader_type",
    "zuora_subscription_number",
    "contribution_id",
    "payment_id",
    "platform",
    "labels",
    "source",
)


def fact_acquisition_event_sql(project: str, dataset: str) -> str:
    """The view `fact_acquisition_event`: exactly today's table's columns, one row per payment.

    A query written for the existing table runs unchanged against it.
    """
    columns = ",\n    ".join(FACT_ACQUISITION_EVENT_COLUMNS)
    return f"""SELECT
    {columns}
FROM {_ref(project, dataset, table_of(Acquisition).name)}"""


def view_definitions(record_types: tuple[type, ...], project: str, dataset: str) -> dict[str, str]:
    """{view name: SQL} in creation order: a view comes after the views it reads.

    One latest-row view per record type; `fact_acquisition_event` with
    `Acquisition`; `contributions_current` and
    `daily_totals` only when both `Contribution` and `PaymentAdjustment` are given.
    """
    views = {
        table_of(record_type).name: latest_view_sql(record_type, project, dataset)
        for record_type in record_types
    }
    if Acquisition in record_types:
        views[FACT_ACQUISITION_EVENT] = fact_acquisition_event_sql(project, dataset)
    if Contribution in record_types and PaymentAdjustment in record_types:
        views[CONTRIBUTIONS_CURRENT] = contributions_current_sql(project, dataset)
        views[DAILY_TOTALS] = daily_totals_sql(project, dataset)
    return views
