"""The `pipeline_runs` table in a DuckDB file and in BigQuery (on the emulator)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from pathlib import Path

import duckdb
from google.cloud import bigquery

from schemas.generate import bigquery_schema, columns
from schemas.records import PipelineRun
from schemas.rows import to_bigquery_json_row
from tests.builders import RUN_STARTED, pipeline_run, submitted_run
from tests.fixtures.bigquery import BigQueryEmulator
from transforms.sinks.run_history import append_run, ensure_bigquery_table, recent_runs


def test_duckdb_appends_one_row_per_run_and_lists_newest_first(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    duckdb.connect(warehouse).close()
    assert recent_runs(warehouse, 5) == []
    first = pipeline_run("a" * 32, RUN_STARTED)
    second = pipeline_run(
        "b" * 32,
        RUN_STARTED + timedelta(hours=1),
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
    first = pipeline_run("c" * 32, RUN_STARTED)
    second = pipeline_run(
        "d" * 32, RUN_STARTED + timedelta(minutes=5), exit_code=3, records_read=0, rows_written=()
    )

    append_run(warehouse, first)
    append_run(warehouse, second)

    assert recent_runs(warehouse, 5) == [second, first]


#: What `pipeline_runs` of the release before Dataflow submissions lacked, and what it required.
ADDED = ("dataflow_job_id", "dataflow_project", "dataflow_region", "dataflow_state", "recorded_at")
RELAXED = ("ended_at", "exit_code", "records_read", "processed", "skipped", "dead_lettered")


def test_a_run_is_its_latest_row(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    submitted = submitted_run("e" * 32, RUN_STARTED)
    running = dataclasses.replace(
        submitted,
        dataflow_state="JOB_STATE_RUNNING",
        recorded_at=RUN_STARTED + timedelta(minutes=1),
    )
    other = pipeline_run("f" * 32, RUN_STARTED - timedelta(hours=1))

    append_run(warehouse, running)  # appended first, recorded later: the order does not matter
    append_run(warehouse, submitted)
    append_run(warehouse, other)

    assert recent_runs(warehouse, 5) == [running, other]
    assert recent_runs(warehouse, 1) == [running]


def _an_older_release_table(warehouse: str, run: PipelineRun) -> None:
    """`pipeline_runs` as the earlier release made it (no new columns, counts NOT NULL)."""
    append_run(warehouse, run)
    with duckdb.connect(warehouse) as connection:
        for name in ADDED:
            connection.execute(f"ALTER TABLE pipeline_runs DROP COLUMN {name}")
        for name in RELAXED:
            connection.execute(f"ALTER TABLE pipeline_runs ALTER COLUMN {name} SET NOT NULL")


def _columns(warehouse: str) -> list[tuple[str, str]]:
    with duckdb.connect(warehouse, read_only=True) as connection:
        return connection.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns"
            " WHERE table_name = 'pipeline_runs' ORDER BY ordinal_position"
        ).fetchall()


def test_duckdb_reads_an_older_table_as_is_and_migrates_it_on_the_next_append(
    tmp_path: Path,
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    old = pipeline_run("a" * 32, RUN_STARTED, recorded_at=None)
    _an_older_release_table(warehouse, old)
    before = _columns(warehouse)
    submitted = submitted_run("e" * 32, RUN_STARTED + timedelta(hours=1))

    assert recent_runs(warehouse, 5) == [old]
    assert _columns(warehouse) == before  # reading changes nothing
    append_run(warehouse, submitted)

    assert recent_runs(warehouse, 5) == [submitted, old]
    columns = dict(_columns(warehouse))
    assert [name for name in columns if name in ADDED] == list(ADDED)
    assert {name: columns[name] for name in RELAXED} == dict.fromkeys(RELAXED, "YES")


def test_bigquery_keeps_every_row_and_lists_each_runs_latest(
    bigquery_emulator: BigQueryEmulator,
) -> None:
    warehouse = f"bigquery:{bigquery_emulator.project}.runs_{uuid.uuid4().hex[:8]}"
    submitted = submitted_run("e" * 32, RUN_STARTED)
    done = dataclasses.replace(
        submitted,
        ended_at=RUN_STARTED + timedelta(minutes=30),
        exit_code=0,
        records_read=10,
        processed=7,
        skipped=2,
        dead_lettered=1,
        dataflow_state="JOB_STATE_DONE",
        recorded_at=RUN_STARTED + timedelta(minutes=31),
    )

    append_run(warehouse, submitted)
    append_run(warehouse, done)

    assert recent_runs(warehouse, 5) == [done]
    project, dataset = warehouse.removeprefix("bigquery:").split(".")
    with bigquery.Client(project=project) as client:
        rows = client.query(f"SELECT count(*) AS n FROM `{project}.{dataset}.pipeline_runs`")
        assert [row["n"] for row in rows.result()] == [2]


def test_bigquery_reads_an_older_table_and_patches_its_schema_before_appending(
    bigquery_emulator: BigQueryEmulator,
) -> None:
    """Up to the patched schema: bqemulator accepts the patch (tables.patch) but keeps its
    own storage as it was, so an insert after it fails there (500); BigQuery itself takes
    both changes in place (a NULLABLE column added, REQUIRED relaxed to NULLABLE)."""
    project, dataset = bigquery_emulator.project, f"runs_{uuid.uuid4().hex[:8]}"
    warehouse = f"bigquery:{project}.{dataset}"
    old = pipeline_run("a" * 32, RUN_STARTED, recorded_at=None)
    older_schema = [
        bigquery.SchemaField.from_api_repr(
            {**field, "mode": "REQUIRED"} if field["name"] in RELAXED else field
        )
        for field in bigquery_schema(PipelineRun)
        if field["name"] not in ADDED
    ]
    table_id = f"{project}.{dataset}.pipeline_runs"
    row = {k: v for k, v in to_bigquery_json_row(old).items() if k not in ADDED}
    with bigquery.Client(project=project) as client:
        client.create_dataset(dataset)
        client.create_table(bigquery.Table(table_id, schema=older_schema))
        assert client.insert_rows_json(table_id, [row]) == []

        assert recent_runs(warehouse, 5) == [old]
        ensure_bigquery_table(client, project, dataset)

        schema = client.get_table(table_id).schema
    assert [field.name for field in schema] == [c.name for c in columns(PipelineRun)]
    modes = {field.name: field.mode for field in schema}
    assert {name: modes[name] for name in (*RELAXED, *ADDED)} == dict.fromkeys(
        (*RELAXED, *ADDED), "NULLABLE"
    )
