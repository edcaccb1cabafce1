"""The BigQuery views' definitions: `fact_acquisition_event` is today's table, column for column."""

from __future__ import annotations

from dataclasses import fields

from schemas.records import Acquisition, Contribution, PaymentAdjustment
from schemas.views import (
    FACT_ACQUISITION_EVENT,
    FACT_ACQUISITION_EVENT_COLUMNS,
    fact_acquisition_event_sql,
    view_definitions,
)


def test_every_column_of_todays_table_is_an_acquisition_column() -> None:
    # FactAcquisitionEventRow's columns, in its order; `livemode`, `account` stay ours.
    assert set(FACT_ACQUISITION_EVENT_COLUMNS) == {f.name for f in fields(Acquisition)} - {
        "livemode",
        "account",
    }
    assert len(FACT_ACQUISITION_EVENT_COLUMNS) == 28


def test_the_view_selects_exactly_those_columns_from_the_latest_acquisitions() -> None:
    sql = fact_acquisition_event_sql("p", "d")
    selected = sql.split("SELECT", 1)[1].split("FROM", 1)[0]
    assert tuple(c.strip() for c in selected.split(",")) == FACT_ACQUISITION_EVENT_COLUMNS
    assert sql.endswith("FROM `p.d.acquisitions`")


def test_the_view_comes_after_the_acquisitions_view_it_reads() -> None:
    names = list(view_definitions((Contribution, Acquisition, PaymentAdjustment), "p", "d"))
    assert names.index(FACT_ACQUISITION_EVENT) > names.index("acquisitions")
    assert FACT_ACQUISITION_EVENT not in view_definitions((Contribution,), "p", "d")
