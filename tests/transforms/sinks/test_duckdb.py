"""WriteToWarehouse on the FnApiRunner: exact rows, idempotence, the folded view."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import apache_beam as beam
import duckdb
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from schemas.generate import columns, duckdb_ddl, table_of
from schemas.records import (
    ALL_RECORD_TYPES,
    Acquisition,
    Contribution,
    ContributionStoreRecord,
    DeadLetter,
    PaymentAdjustment,
    SoftOptIn,
    SupporterProductData,
)
from schemas.rows import to_row
from schemas.views import CONTRIBUTIONS_CURRENT, DAILY_TOTALS, FACT_ACQUISITION_EVENT
from tests.builders import RECORD_CREATED as CREATED
from tests.builders import acquisition_record as acquisition
from tests.builders import contribution_record as contribution
from tests.builders import dispute_adjustment as dispute
from tests.builders import refund_adjustment as refund
from tests.builders import refund_object_adjustment as refund_object
from tests.builders import store_record, supporter_item
from tests.transforms.core.test_leftovers import dead_pid
from transforms.core.leftovers import run_tag
from transforms.domain.events import make_dead_letter
from transforms.sinks.duckdb import REJECTED_STEP, WriteToWarehouse


def write(
    path: str, inputs: Mapping[type, Sequence[Any]], expected_counts: Mapping[type, int]
) -> None:
    """Run WriteToWarehouse once and check its summary: every table, 0 included."""
    summary = [(table_of(t).name, expected_counts.get(t, 0)) for t in ALL_RECORD_TYPES]
    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        pcolls = {
            record_type: pipeline | f"Create{record_type.__name__}" >> beam.Create(list(records))
            for record_type, records in inputs.items()
        }
        written = pcolls | WriteToWarehouse(path)
        assert_that(written, equal_to(summary))


def read(path: str, record_type: type) -> list[dict[str, Any]]:
    """Every row of the record type's table as `to_row` dicts, ordered by natural key."""
    table = table_of(record_type)
    names = [c.name for c in columns(record_type)]
    connection = duckdb.connect(path, read_only=True)
    try:
        connection.execute("SET TimeZone = 'UTC'")
        result = connection.execute(
            f'SELECT * FROM "{table.name}" ORDER BY {", ".join(table.key)}'
        ).fetchall()
    finally:
        connection.close()
    return [dict(zip(names, row, strict=True)) for row in result]


def read_current(path: str) -> list[dict[str, Any]]:
    """Every row of the view `contributions_current`, as `to_row` dicts by payment id."""
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


def rows(*records: Any) -> list[dict[str, Any]]:
    return [to_row(r) for r in records]


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "warehouse.duckdb")


def test_writes_exact_rows_of_every_type(path: str) -> None:
    letter = make_dead_letter(
        step="decode", reason="invalid_json", error="e", raw="{", source="f@0"
    )
    inputs: dict[type, list[Any]] = {
        Contribution: [contribution("ch_2"), contribution("ch_1")],
        Acquisition: [acquisition("ch_1")],
        ContributionStoreRecord: [store_record("ch_1")],
        DeadLetter: [letter],
        SoftOptIn: [],
    }
    write(
        path, inputs, {Contribution: 2, Acquisition: 1, ContributionStoreRecord: 1, DeadLetter: 1}
    )

    assert read(path, Contribution) == rows(contribution("ch_1"), contribution("ch_2"))
    assert read(path, Acquisition) == rows(acquisition("ch_1"))
    assert read(path, ContributionStoreRecord) == rows(store_record("ch_1"))
    assert read(path, DeadLetter) == rows(letter)
    assert read(path, SoftOptIn) == []
    (run_folder,) = os.listdir(path + ".staging")
    # Staged files deleted; the emptied folder goes at the next start.
    assert os.listdir(os.path.join(path + ".staging", run_folder, "contributions")) == []


def test_running_twice_leaves_identical_rows(path: str) -> None:
    inputs: dict[type, list[Any]] = {
        Contribution: [contribution("ch_1"), contribution("ch_2")],
        PaymentAdjustment: [refund("ch_1", "10.00")],
        Acquisition: [acquisition("ch_1"), acquisition("ch_2")],
    }
    counts = {Contribution: 2, PaymentAdjustment: 1, Acquisition: 2}
    write(path, inputs, counts)
    first = {t: read(path, t) for t in ALL_RECORD_TYPES}
    write(path, inputs, counts)
    second = {t: read(path, t) for t in ALL_RECORD_TYPES}
    assert second == first
    # `contributions` keeps the payments as emitted; the view folds the refund in.
    assert first[Contribution] == rows(contribution("ch_1"), contribution("ch_2"))
    assert read_current(path) == rows(
        contribution("ch_1", status="Refunded", amount_refunded=Decimal("10.00")),
        contribution("ch_2"),
    )


def test_refund_in_an_earlier_run_refunds_the_contribution_and_store_row(path: str) -> None:
    write(path, {PaymentAdjustment: [refund("ch_1", "10.00")]}, {PaymentAdjustment: 1})
    write(
        path,
        {Contribution: [contribution("ch_1")], ContributionStoreRecord: [store_record("ch_1")]},
        {Contribution: 1, ContributionStoreRecord: 1},
    )
    assert read(path, Contribution) == rows(contribution("ch_1"))
    assert read_current(path) == rows(
        contribution("ch_1", status="Refunded", amount_refunded=Decimal("10.00"))
    )
    assert read(path, ContributionStoreRecord) == rows(
        store_record("ch_1", payment_status="Refunded")
    )


@pytest.mark.parametrize(
    ("adjustments", "status", "expected"),
    [
        pytest.param(
            [refund("ch_1", "4.00", "evt_1"), refund("ch_1", "6.00", "evt_2")],
            "Paid",
            {"status": "Paid", "amount_refunded": Decimal("6.00")},
            id="partial-refund-keeps-paid",
        ),
        pytest.param(
            [refund("ch_1", "10.00", "evt_2"), refund("ch_1", "4.00", "evt_1")],
            "Paid",
            {"status": "Refunded", "amount_refunded": Decimal("10.00")},
            id="cumulative-total-wins-over-arrival-order",
        ),
        pytest.param(
            [refund_object("ch_1", "4.00", "re_1"), refund_object("ch_1", "6.00", "re_2")],
            "Paid",
            {"status": "Refunded", "amount_refunded": Decimal("10.00")},
            id="refund-objects-alone-add-up",
        ),
        pytest.param(
            [refund_object("ch_1", "4.00", "re_1")],
            "Paid",
            {"status": "Paid", "amount_refunded": Decimal("4.00")},
            id="one-partial-refund-object-keeps-paid",
        ),
        pytest.param(
            [
                refund_object("ch_1", "4.00", "re_1"),
                refund("ch_1", "10.00", "evt_2"),
                refund("ch_1", "4.00", "evt_1"),
                refund_object("ch_1", "6.00", "re_2"),
            ],
            "Paid",
            {"status": "Refunded", "amount_refunded": Decimal("10.00")},
            id="charge-refunded-and-refund-objects-count-the-money-once",
        ),
        pytest.param(
            [refund("ch_1", "4.00", "evt_1"), refund_object("ch_1", "6.00", "re_2")],
            "Paid",
            {"status": "Paid", "amount_refunded": Decimal("6.00")},
            id="the-greater-of-the-two-while-some-events-are-missing",
        ),
        pytest.param(
            [dispute("ch_1")],
            "Paid",
            {"status": "Paid", "disputed": True},
            id="dispute-sets-disputed-keeps-paid",
        ),
        pytest.param(
            [refund("ch_1", "10.00")],
            "Failed",
            {"status": "Failed", "amount_refunded": Decimal("10.00")},
            id="failed-stays-failed",
        ),
    ],
)
def test_adjustments_in_the_same_load(
    path: str, adjustments: list[PaymentAdjustment], status: str, expected: dict[str, Any]
) -> None:
    write(
        path,
        {
            Contribution: [contribution("ch_1", status=status)],
            ContributionStoreRecord: [store_record("ch_1", payment_status=status)],
            PaymentAdjustment: adjustments,
        },
        {Contribution: 1, ContributionStoreRecord: 1, PaymentAdjustment: len(adjustments)},
    )
    assert read(path, Contribution) == rows(contribution("ch_1", status=status))
    assert read_current(path) == rows(contribution("ch_1", **expected))
    assert read(path, ContributionStoreRecord) == rows(
        store_record("ch_1", payment_status=expected["status"])
    )


def test_a_refund_seen_as_created_and_updated_counts_once(path: str) -> None:
    write(
        path,
        {
            Contribution: [contribution("ch_1")],
            PaymentAdjustment: [
                refund_object("ch_1", "6.00", "re_1", "refund.created"),
                refund_object("ch_1", "6.00", "re_1", "refund.updated"),
            ],
        },
        {Contribution: 1, PaymentAdjustment: 1},
    )
    write(
        path,
        {PaymentAdjustment: [refund_object("ch_1", "6.00", "re_1", "charge.refund.updated")]},
        {PaymentAdjustment: 1},
    )

    assert read(path, Contribution) == rows(contribution("ch_1"))
    assert read_current(path) == rows(contribution("ch_1", amount_refunded=Decimal("6.00")))
    assert read(path, PaymentAdjustment) == rows(
        refund_object("ch_1", "6.00", "re_1", "charge.refund.updated")
    )


def test_duplicate_keys_within_one_load_resolve_deterministically(path: str) -> None:
    # The greatest row by all columns in declaration order wins: "Paid" > "Failed".
    failed = contribution("ch_1", status="Failed")
    paid = contribution("ch_1")
    write(path, {Contribution: [failed, paid, failed]}, {Contribution: 1})
    assert read(path, Contribution) == rows(paid)
    write(path, {Contribution: [paid, failed]}, {Contribution: 1})
    assert read(path, Contribution) == rows(paid)


def test_a_later_load_replaces_rows_by_the_whole_natural_key(path: str) -> None:
    # Key (identity_id, subscription_name): rows sharing one part only are distinct.
    write(
        path,
        {
            SupporterProductData: [
                supporter_item("42", "ch_1", "5.00"),
                supporter_item("42", "ch_2", "6.00"),
                supporter_item("43", "ch_1", "7.00"),
            ]
        },
        {SupporterProductData: 3},
    )
    write(
        path,
        {SupporterProductData: [supporter_item("42", "ch_1", "9.00")]},
        {SupporterProductData: 1},
    )

    assert read(path, SupporterProductData) == rows(
        supporter_item("42", "ch_1", "9.00"),
        supporter_item("42", "ch_2", "6.00"),
        supporter_item("43", "ch_1", "7.00"),
    )


def test_a_warehouse_made_with_primary_keys_still_loads(path: str) -> None:
    # Tables made before the key constraint was dropped keep it; delete-then-insert
    # in one transaction must not trip it.
    with duckdb.connect(path) as connection:
        connection.execute(
            duckdb_ddl(Contribution).replace("\n);", ',\n    PRIMARY KEY ("payment_id")\n);', 1)
        )
    write(path, {Contribution: [contribution("ch_1", status="Failed")]}, {Contribution: 1})
    write(path, {Contribution: [contribution("ch_1"), contribution("ch_2")]}, {Contribution: 2})

    assert read(path, Contribution) == rows(contribution("ch_1"), contribution("ch_2"))


def test_tables_made_by_an_older_release_get_the_nullable_columns_they_lack(path: str) -> None:
    # Each table's DDL comments on every column: the lacking ones are added first.
    old_acquisition = dataclasses.replace(acquisition("ch_0"), account=None)
    with duckdb.connect(path) as connection:
        connection.execute(duckdb_ddl(Acquisition))
        connection.execute('ALTER TABLE "acquisitions" DROP COLUMN "account"')
        old_row = to_row(old_acquisition)
        del old_row["account"]
        marks = ", ".join("?" for _ in old_row)
        connection.execute(f'INSERT INTO "acquisitions" VALUES ({marks})', list(old_row.values()))
        connection.execute(duckdb_ddl(DeadLetter))
        connection.execute('ALTER TABLE "dead_letters" DROP COLUMN "redrive_run_id"')
        connection.execute('ALTER TABLE "dead_letters" DROP COLUMN "redriven_at"')
    letter = make_dead_letter(
        step="decode", reason="invalid_json", error="e", raw="{", source="f@0"
    )

    write(
        path,
        {Acquisition: [acquisition("ch_1")], DeadLetter: [letter]},
        {Acquisition: 1, DeadLetter: 1},
    )

    assert read(path, Acquisition) == rows(old_acquisition, acquisition("ch_1"))
    assert read(path, DeadLetter) == rows(letter)
    (account,) = [c for c in columns(Acquisition) if c.name == "account"]
    with duckdb.connect(path, read_only=True) as connection:
        assert connection.execute(
            "SELECT comment FROM duckdb_columns()"
            " WHERE table_name = 'acquisitions' AND column_name = 'account'"
        ).fetchall() == [(account.description,)]


def test_empty_collection_still_creates_every_table(path: str) -> None:
    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        empty = pipeline | beam.Create([]).with_output_types(DeadLetter)
        written = {DeadLetter: empty} | WriteToWarehouse(path)
        assert_that(written, equal_to([]))
    for record_type in ALL_RECORD_TYPES:
        assert read(path, record_type) == []
    with duckdb.connect(path, read_only=True) as connection:
        views = connection.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY view_name"
        ).fetchall()
        for (view,) in views:
            assert connection.execute(f"SELECT count(*) FROM {view}").fetchall() == [(0,)]
    assert views == [(CONTRIBUTIONS_CURRENT,), (DAILY_TOTALS,), (FACT_ACQUISITION_EVENT,)]


def test_invalid_record_is_written_as_a_dead_letter(path: str) -> None:
    too_big = contribution("ch_9", amount=Decimal("1" + "0" * 29))
    write(
        path,
        {Contribution: [contribution("ch_1"), too_big]},
        {Contribution: 1, DeadLetter: 1},
    )
    assert read(path, Contribution) == rows(contribution("ch_1"))
    (letter,) = read(path, DeadLetter)
    assert letter["step"] == REJECTED_STEP
    assert letter["reason"] == "invalid_row"
    assert letter["error"] == (
        "contributions.amount: NUMERIC allows at most 29 digits before the point, got 30"
    )
    assert letter["source"] == "warehouse:contributions"


def test_each_window_is_loaded_on_its_own(path: str) -> None:
    # The caller's windowing decides the loads; the writer only follows it.
    late = contribution("ch_2", created=CREATED.replace(hour=15))
    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        contributions = (
            pipeline
            | beam.Create([contribution("ch_1"), late])
            | "StampWithCreated"
            >> beam.Map(lambda c: window.TimestampedValue(c, c.created.timestamp()))
            | "WindowByHour" >> beam.WindowInto(window.FixedWindows(3600))
        )
        written = {Contribution: contributions} | WriteToWarehouse(path)
        per_load = [(table_of(t).name, 1 if t is Contribution else 0) for t in ALL_RECORD_TYPES]
        assert_that(written, equal_to(per_load * 2))
    assert read(path, Contribution) == rows(contribution("ch_1"), late)


def test_a_killed_runs_staged_files_are_removed_at_the_next_start_and_a_live_runs_kept(
    path: str,
) -> None:
    staging = Path(path + ".staging")
    killed = staging / f"run-{run_tag(dead_pid())}" / "contributions"
    live = staging / f"run-{run_tag(os.getppid())}" / "contributions"
    untagged = staging / "contributions"  # staged before runs had tags: not provably stale
    for folder in (killed, live, untagged):
        folder.mkdir(parents=True)
        (folder / "0123.parquet").write_bytes(b"PAR1")

    write(path, {Contribution: [contribution("ch_1")]}, {Contribution: 1})

    assert read(path, Contribution) == rows(contribution("ch_1"))
    assert not killed.parent.exists()
    assert sorted(staging.rglob("*.parquet")) == sorted(
        [live / "0123.parquet", untagged / "0123.parquet"]
    )
