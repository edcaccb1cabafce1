"""The analysts' views: one definition, rendered for BigQuery and DuckDB."""

from __future__ import annotations

import re

import pytest

from schemas.views import (
    CONTRIBUTIONS_CURRENT,
    DAILY_TOTALS,
    DUCKDB,
    FACT_ACQUISITION_EVENT,
    analyst_views,
    bigquery_dialect,
    fact_acquisition_event_columns,
)

#: `FactAcquisitionEventRow` of the consumers' BigQuery publisher (DOMAIN.md, section 4).
CONSUMERS_COLUMNS = {
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
}


def test_fact_acquisition_event_has_exactly_the_consumers_columns() -> None:
    assert sorted(fact_acquisition_event_columns()) == sorted(CONSUMERS_COLUMNS)


def test_views_come_in_creation_order() -> None:
    assert list(analyst_views(DUCKDB)) == [
        CONTRIBUTIONS_CURRENT,
        DAILY_TOTALS,
        FACT_ACQUISITION_EVENT,
    ]


@pytest.mark.parametrize("view", [CONTRIBUTIONS_CURRENT, DAILY_TOTALS, FACT_ACQUISITION_EVENT])
def test_dialects_differ_only_in_references_and_utc_days(view: str) -> None:
    bigquery = analyst_views(bigquery_dialect("p", "d"))[view]
    duckdb = analyst_views(DUCKDB)[view]
    as_duckdb = re.sub(r"`p\.d\.(\w+)`", r'"\1"', bigquery).replace(
        "DATE(created)", "CAST(timezone('UTC', created) AS DATE)"
    )
    assert as_duckdb == duckdb
    assert "`" not in duckdb
