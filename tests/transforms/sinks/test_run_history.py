"""The `pipeline_runs` table in a DuckDB file and in BigQuery (on the emulator)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from schemas.records import PipelineRun, TableRows
from tests.fixtures.bigquery import BigQueryEmulator
from transforms.sinks.run_history import append_run, recent_runs

STARTED = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def a_run(run_id: str, started: datetime, **changes: object) -> PipelineRun:
    run = PipelineRun(
        run_id=run_id,
        job="backfill",
        arguments=("--source", "sample/archive", "--start", "2025-03-01"),
        runner="FnApiRunner",
        source="sample/archive",
        range_start=datetime(2025, 3, 1, tzinfo=UTC),
        range_end=None,
        started_at=started,
        ended_at=started + timedelta(seconds=61),
        exit_code=0,
        records_read=2264,
        processed=1176,
        skipped=1080,
        dead_lettered=8,
        rows_written=(
            TableRows("sent:thank_you_email", 0),
            TableRows("warehouse:contributions", 314),
        ),
        code_version="0.1.0",
        git_commit="0170fb1",
        dataflow_job_id=None,
        dataflow_project=None,
        dataflow_region=None,
        dataflow_state=None,
        recorded_at=started + timedelta(seconds=61),
    )
    return dataclasses.replace(run, **changes)  # type: ignore[arg-type]


def test_duckdb_appends_one_row_per_run_and_lists_newest_first(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    duckdb.connect(warehouse).close()
    assert recent_runs(warehouse, 5) == []
    first = a_run("a" * 32, STARTED)
    second = a_run(
        "b" * 32,
        STARTED + timedelta(hours=1),
        job="streaming",
        exit_code=1,
        range_start=None,
        rows_written=(),
        git_commit=None,
    )

    append_run(warehouse, first)
    append_run(warehouse, second)

    assert recent_runs(warehouse, 5) == [second, first]
    assert recent_runs(warehouse, 1) == [second]
    with duckdb.connect(warehouse, read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM pipeline_runs").fetchone() == (2,)


def test_bigquery_creates_the_table_and_reads_the_runs_back(
    bigquery_emulator: BigQueryEmulator,
) -> None:
    warehouse = f"bigquery:{bigquery_emulator.project}.runs_{uuid.uuid4().hex[:8]}"
    assert recent_runs(warehouse, 5) == []
    first = a_run("c" * 32, STARTED)
    second = a_run(
        "d" * 32, STARTED + timedelta(minutes=5), exit_code=3, records_read=0, rows_written=()
    )

    append_run(warehouse, first)
    append_run(warehouse, second)

    assert recent_runs(warehouse, 5) == [second, first]
