"""WriteToWarehouseBigQuery on the FnApiRunner against the BigQuery and GCS emulators."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import apache_beam as beam
import duckdb
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from google.cloud import bigquery

from schemas.generate import columns, table_of
from schemas.records import (
    ALL_RECORD_TYPES,
    Acquisition,
    Contribution,
    ContributionStoreRecord,
    DeadLetter,
    PaymentAdjustment,
    SoftOptIn,
    SupporterProductData,
    ThankYouEmail,
)
from schemas.rows import to_bigquery_json_row, to_row
from schemas.views import (
    CONTRIBUTIONS_CURRENT,
    DAILY_TOTALS,
    FACT_ACQUISITION_EVENT,
    raw_table_name,
)
from tests.builders import RECORD_CREATED as CREATED
from tests.builders import (
    acquisition_record,
    contribution_record,
    dispute_adjustment,
    refund_adjustment,
)
from tests.builders import store_record as any_store_record
from tests.fixtures.bigquery import BigQueryEmulator
from transforms.domain.events import make_dead_letter
from transforms.sinks.bigquery import (
    INSERT_FAILED_REASON,
    MAX_FAILED_RAW_CHARS,
    WRITE_STEP,
    Method,
    WriteToWarehouseBigQuery,
    ensure_dataset,
    failed_row_to_dead_letter,
    insert_id,
)
from transforms.sinks.common import INVALID_ROW
from transforms.sinks.duckdb import WriteToWarehouse

METHODS: tuple[Method, ...] = ("FILE_LOADS", "STREAMING_INSERTS")
_datasets = itertools.count()


contribution = functools.partial(contribution_record, livemode=True, account="ed_1")
acquisition = functools.partial(acquisition_record, livemode=True, account="ed_1")
store_record = functools.partial(any_store_record, livemode=True, account="ed_1")
refund = functools.partial(refund_adjustment, livemode=True, account="ed_1")
dispute = functools.partial(dispute_adjustment, livemode=True, account="ed_1")


def one_of_each() -> dict[type, list[Any]]:
    """One valid record of every record type, nested and repeated columns filled."""
    return {
        Contribution: [contribution()],
        Acquisition: [acquisition("ch_1")],
        PaymentAdjustment: [refund("ch_1", "2.50")],
        ContributionStoreRecord: [store_record("ch_1")],
        SupporterProductData: [
            SupporterProductData(
                identity_id="42",
                subscription_name="Stripe - ch_1",
                product_rate_plan_id="single_contribution",
                product_rate_plan_name="Single Contribution",
                contract_effective_date=date(2025, 3, 5),
                term_end_date=date(2033, 3, 12),
                expiry_date=1994457600,
                contribution_amount=Decimal("10.00"),
                contribution_currency="GBP",
                payment_id="ch_1",
                livemode=True,
                account="ed_1",
            )
        ],
        ThankYouEmail: [
            ThankYouEmail(
                payment_id="ch_1",
                message='{"To": {}}',
                livemode=True,
                account=None,
                created=CREATED,
            )
        ],
        SoftOptIn: [
            SoftOptIn(
                payment_id="ch_1",
                message='{"a": 1}',
                livemode=True,
                account="ed_1",
                created=CREATED,
            )
        ],
        DeadLetter: [
            make_dead_letter(
                step="decode", reason="invalid_json", error="e", raw="{", source="f@0", time=CREATED
            )
        ],
    }


@pytest.fixture
def client(bigquery_emulator: BigQueryEmulator) -> Iterator[bigquery.Client]:
    with bigquery.Client(project=bigquery_emulator.project) as bq_client:
        yield bq_client


def new_dataset() -> str:
    return f"warehouse_{next(_datasets)}"


def write(
    emulator: BigQueryEmulator,
    dataset: str,
    method: Method,
    inputs: Mapping[type, Sequence[Any]],
    expected_rejected: Sequence[DeadLetter] | None = (),
) -> None:
    """Runs the writer once on the FnApiRunner; checks the dead letters it made unless None."""
    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        pcolls = {
            record_type: pipeline | f"Create{record_type.__name__}" >> beam.Create(list(records))
            for record_type, records in inputs.items()
        }
        rejected = pcolls | WriteToWarehouseBigQuery(
            emulator.project,
            dataset,
            method,
            temp_location=emulator.temp_location,
        )
        if expected_rejected is not None:
            assert_that(rejected, equal_to(list(expected_rejected)))


def query(client: bigquery.Client, sql: str) -> list[dict[str, Any]]:
    return [dict(row.items()) for row in client.query(sql).result()]


def read_view(
    client: bigquery.Client, project: str, dataset: str, record_type: type
) -> list[dict[str, Any]]:
    """The record type's de-duplicated view, as `to_row` dicts ordered by natural key."""
    table = table_of(record_type)
    return query(
        client,
        f"SELECT * FROM `{project}.{dataset}.{table.name}` ORDER BY {', '.join(table.key)}",
    )


def count_raw(client: bigquery.Client, project: str, dataset: str, record_type: type) -> int:
    (row,) = query(
        client, f"SELECT COUNT(*) AS n FROM `{project}.{dataset}.{raw_table_name(record_type)}`"
    )
    return int(row["n"])


def reconciled_in_duckdb(
    tmp_path: Path, runs: Sequence[Mapping[type, Sequence[Any]]]
) -> list[dict[str, Any]]:
    """`contributions_current` after the DuckDB writer loaded `runs` in order."""
    path = str(tmp_path / "warehouse.duckdb")
    for run in runs:
        with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
            _ = {
                record_type: pipeline
                | f"Create{record_type.__name__}" >> beam.Create(list(records))
                for record_type, records in run.items()
            } | WriteToWarehouse(path)
    names = [c.name for c in columns(Contribution)]
    connection = duckdb.connect(path, read_only=True)
    try:
        connection.execute("SET TimeZone = 'UTC'")
        result = connection.execute(
            f"SELECT {', '.join(names)} FROM {CONTRIBUTIONS_CURRENT} ORDER BY payment_id"
        ).fetchall()
    finally:
        connection.close()
    return [dict(zip(names, row, strict=True)) for row in result]


def test_ensure_dataset_is_idempotent_keeps_rows_and_refreshes_views(
    bigquery_emulator: BigQueryEmulator, client: bigquery.Client
) -> None:
    project, dataset = bigquery_emulator.project, new_dataset()
    ensure_dataset(client, project, dataset)
    (letter,) = one_of_each()[DeadLetter]
    row = {**to_bigquery_json_row(letter), "_written_at": "2025-03-05T14:30:02.000000Z"}
    assert client.insert_rows_json(f"{project}.{dataset}.dead_letters_raw", [row]) == []
    stale = client.get_table(f"{project}.{dataset}.{DAILY_TOTALS}")
    stale.view_query = "SELECT 1 AS outdated"
    client.update_table(stale, ["view_query"])
    ensure_dataset(client, project, dataset)

    assert read_view(client, project, dataset, DeadLetter) == [to_row(letter)]

    # The emulator's tables.get leaves out `view.query`, so the view is judged by what it returns.
    refreshed = client.query(f"SELECT * FROM `{project}.{dataset}.{DAILY_TOTALS}`").result()
    assert [field.name for field in refreshed.schema] == [
        "day",
        "currency",
        "livemode",
        "payments",
        "amount",
        "amount_refunded",
        "net_amount",
        "refunded_payments",
        "disputed_payments",
    ]

    listed = {t.table_id: t.table_type for t in client.list_tables(f"{project}.{dataset}")}
    views = {table_of(t).name for t in ALL_RECORD_TYPES} | {
        CONTRIBUTIONS_CURRENT,
        DAILY_TOTALS,
        FACT_ACQUISITION_EVENT,
    }
    assert listed == {raw_table_name(t): "TABLE" for t in ALL_RECORD_TYPES} | {
        v: "VIEW" for v in views
    }
    for record_type in ALL_RECORD_TYPES:
        table = client.get_table(f"{project}.{dataset}.{raw_table_name(record_type)}")
        spec = table_of(record_type)
        partitioning = table.time_partitioning
        expected = ("DAY", spec.partition_by) if spec.partition_by else None
        assert ((partitioning.type_, partitioning.field) if partitioning else None) == expected
        assert (table.clustering_fields or []) == list(spec.cluster_by)
        assert [f.name for f in table.schema] == [
            *(c.name for c in columns(record_type)),
            "_written_at",
        ]


@pytest.mark.parametrize("method", METHODS)
def test_every_table_reads_back_exactly_once_after_writing_twice(
    bigquery_emulator: BigQueryEmulator, client: bigquery.Client, method: Method
) -> None:
    project, dataset = bigquery_emulator.project, new_dataset()
    inputs = one_of_each()

    write(bigquery_emulator, dataset, method, inputs)
    write(bigquery_emulator, dataset, method, inputs)

    for record_type, records in inputs.items():
        name = record_type.__name__
        # Both copies reach the raw table (the emulator ignores insert ids, and
        # load jobs have none): the view alone must make them one row.
        assert count_raw(client, project, dataset, record_type) == 2, name
        assert read_view(client, project, dataset, record_type) == [to_row(r) for r in records]


@pytest.mark.parametrize("method", METHODS)
def test_invalid_row_becomes_dead_letter_and_others_are_written(
    bigquery_emulator: BigQueryEmulator, client: bigquery.Client, method: Method
) -> None:
    project, dataset = bigquery_emulator.project, new_dataset()
    too_big = contribution("ch_big", amount=Decimal("1" * 30))  # NUMERIC: 29 integer digits
    good = contribution("ch_ok")
    letter = make_dead_letter(
        step=WRITE_STEP,
        reason=INVALID_ROW,
        error="contributions.amount: NUMERIC allows at most 29 digits before the point, got 30",
        raw=repr(too_big),
        source="bigquery:contributions",
    )

    write(bigquery_emulator, dataset, method, {Contribution: [too_big, good]}, [letter])

    assert read_view(client, project, dataset, Contribution) == [to_row(good)]
    assert read_view(client, project, dataset, DeadLetter) == [to_row(letter)]


def test_current_state_folds_adjustments_that_arrived_before_their_payments(
    bigquery_emulator: BigQueryEmulator, client: bigquery.Client, tmp_path: Path
) -> None:
    project, dataset = bigquery_emulator.project, new_dataset()
    next_day = datetime(2025, 3, 6, 9, 0, tzinfo=UTC)
    paid = contribution("ch_1")
    partly_refunded = contribution("ch_2")
    disputed = contribution("ch_3")
    failed = contribution("ch_4", status="Failed")
    euro = contribution("ch_5", currency="EUR", amount=Decimal("7.50"), created=next_day)
    adjustments = [
        refund("ch_1", "10.00"),
        refund("ch_2", "2.00", event="evt_r2"),
        refund("ch_2", "4.00", event="evt_r3"),  # cumulative: 4.00 in all, not 6.00
        dispute("ch_3"),
        refund("ch_4", "10.00", event="evt_r4"),
    ]

    # The adjustments land in an earlier run than the payments they adjust.
    write(bigquery_emulator, dataset, "STREAMING_INSERTS", {PaymentAdjustment: adjustments})
    write(
        bigquery_emulator,
        dataset,
        "STREAMING_INSERTS",
        {Contribution: [paid, partly_refunded, disputed, failed, euro]},
    )

    current = query(
        client, f"SELECT * FROM `{project}.{dataset}.{CONTRIBUTIONS_CURRENT}` ORDER BY payment_id"
    )
    assert current == [
        to_row(dataclasses.replace(paid, status="Refunded", amount_refunded=Decimal("10"))),
        to_row(dataclasses.replace(partly_refunded, amount_refunded=Decimal("4"))),
        to_row(dataclasses.replace(disputed, disputed=True)),
        to_row(dataclasses.replace(failed, amount_refunded=Decimal("10"))),
        to_row(euro),
    ]
    assert current == reconciled_in_duckdb(
        tmp_path,
        [
            {PaymentAdjustment: adjustments},
            {Contribution: [paid, partly_refunded, disputed, failed, euro]},
        ],
    )
    totals = query(client, f"SELECT * FROM `{project}.{dataset}.{DAILY_TOTALS}` ORDER BY day")
    assert totals == [
        {
            "day": date(2025, 3, 5),
            "currency": "GBP",
            "livemode": True,
            "payments": 3,
            "amount": Decimal("30"),
            "amount_refunded": Decimal("14"),
            "net_amount": Decimal("16"),
            "refunded_payments": 2,
            "disputed_payments": 1,
        },
        {
            "day": date(2025, 3, 6),
            "currency": "EUR",
            "livemode": True,
            "payments": 1,
            "amount": Decimal("7.5"),
            "amount_refunded": Decimal("0"),
            "net_amount": Decimal("7.5"),
            "refunded_payments": 0,
            "disputed_payments": 0,
        },
    ]


def test_row_the_insert_refuses_becomes_dead_letter_with_the_error(
    bigquery_emulator: BigQueryEmulator, client: bigquery.Client
) -> None:
    # Beam refuses a row above the 9 MB insert payload on its failed-rows
    # output, the same path as a row the service rejects (which the emulator,
    # returning HTTP 500 instead of per-row errors, cannot produce).
    project, dataset = bigquery_emulator.project, new_dataset()
    huge = ThankYouEmail(
        payment_id="ch_huge", message="x" * 9_500_000, livemode=True, account=None, created=CREATED
    )
    small = ThankYouEmail(
        payment_id="ch_1", message="{}", livemode=True, account=None, created=CREATED
    )

    write(bigquery_emulator, dataset, "STREAMING_INSERTS", {ThankYouEmail: [huge, small]}, None)

    assert read_view(client, project, dataset, ThankYouEmail) == [to_row(small)]
    (letter,) = read_view(client, project, dataset, DeadLetter)
    assert (letter["step"], letter["reason"], letter["source"]) == (
        WRITE_STEP,
        INSERT_FAILED_REASON,
        "bigquery:thank_you_emails",
    )
    assert "exceeds the maximum insert payload size" in letter["error"]
    assert f"raw cut to {MAX_FAILED_RAW_CHARS} of" in letter["error"]
    raw = json.dumps(to_bigquery_json_row(huge), sort_keys=True)
    assert letter["raw"] == raw[:MAX_FAILED_RAW_CHARS]
    assert (
        letter["dead_letter_id"]
        == make_dead_letter(
            step=WRITE_STEP,
            reason=INSERT_FAILED_REASON,
            error="",
            raw=raw[:MAX_FAILED_RAW_CHARS],
            source="bigquery:thank_you_emails",
        ).dead_letter_id
    )  # the same on every replay


def test_insert_id_depends_on_table_and_natural_key_only() -> None:
    paid = contribution("ch_1")
    refunded = contribution("ch_1", status="Refunded", amount_refunded=Decimal("10"))

    assert insert_id(Contribution, paid) == insert_id(Contribution, refunded)
    assert insert_id(Contribution, paid) != insert_id(Contribution, contribution("ch_2"))
    assert len(insert_id(Contribution, paid)) <= 128  # BigQuery's insertId limit


def test_failed_row_keeps_the_row_and_the_service_error() -> None:
    errors = [{"reason": "invalid", "message": "no such field: x"}]

    row = {"payment_id": "ch_1", "_written_at": "2025-03-05T14:30:01.000000Z"}

    letter = failed_row_to_dead_letter(("p:d.contributions_raw", row, errors))

    assert letter == make_dead_letter(
        step=WRITE_STEP,
        reason=INSERT_FAILED_REASON,
        error='[{"message": "no such field: x", "reason": "invalid"}]',
        raw='{"payment_id": "ch_1"}',
        source="bigquery:contributions",
    )
