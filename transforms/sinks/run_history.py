"""The `pipeline_runs` table: the runs of the jobs, appended by the launcher.

    append_run("out/warehouse.duckdb", run)         # or "bigquery:P.D"
    recent_runs("out/warehouse.duckdb", limit=20)   # newest first, each run's latest row

Not a Beam writer: a row says what the launching process knows of its run,
so that process writes it into the run's warehouse: once the pipeline has
finished (its end time, exit code and counts), or, for a job only submitted
to Dataflow, at submission (those left null) and again each time
`tools.runs --refresh` sees the job's state change. The table is
append-only, in DuckDB as in BigQuery: a run is its row with the latest
`recorded_at` (rows of earlier releases have none and are the only row of
their run). The table is created when missing, from
`schemas.records.PipelineRun` (DuckDB DDL, or the BigQuery schema with its
day partitioning), and a table made by an earlier release gets the columns
it lacks (nullable) and loses NOT NULL where the schema has since made a
column nullable, before the first row of this release is appended; reading
never changes the table. In DuckDB it is a plain table in the warehouse
file; in BigQuery a plain table `pipeline_runs` (no `_raw` table and view),
written by a streaming insert whose insert id is the run id and the row's
`recorded_at`, so a retried insert is absorbed by BigQuery's
de-duplication. Holds no personal data: arguments with DSN passwords
masked, counts, names and job ids.
"""

from __future__ import annotations

from typing import Any

import duckdb
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from schemas.generate import (
    Mode,
    bigquery_schema,
    bigquery_table_parameters,
    columns,
    duckdb_ddl,
    duckdb_type,
)
from schemas.records import PipelineRun, TableRows
from schemas.rows import to_bigquery_json_row, to_row
from transforms.sinks.bigquery import bigquery_dataset
from transforms.sinks.common import BIGQUERY_PREFIX
from transforms.sinks.duckdb import add_missing_columns

TABLE = PipelineRun.TABLE.name
_COLUMNS = tuple(column.name for column in columns(PipelineRun))
_NULLABLE = frozenset(
    column.name for column in columns(PipelineRun) if column.mode is Mode.NULLABLE
)
# One parameter per column, cast to the column's type (an empty list has none of its own).
_INSERT = 'INSERT INTO "{table}" ({names}) VALUES ({values})'.format(
    table=TABLE,
    names=", ".join(f'"{name}"' for name in _COLUMNS),
    values=", ".join(f"?::{duckdb_type(column)}" for column in columns(PipelineRun)),
)


def append_run(warehouse: str, run: PipelineRun) -> None:
    """Appends `run` to `pipeline_runs` in the warehouse (a DuckDB path or `bigquery:P.D`)."""
    if warehouse.startswith(BIGQUERY_PREFIX):
        _append_bigquery(*bigquery_dataset(warehouse), run)
    else:
        _append_duckdb(warehouse, run)


def recent_runs(warehouse: str, limit: int) -> list[PipelineRun]:
    """The `limit` most recent runs (each its latest row), newest first; [] without a table."""
    if warehouse.startswith(BIGQUERY_PREFIX):
        return _recent_bigquery(*bigquery_dataset(warehouse), limit)
    return _recent_duckdb(warehouse, limit)


def insert_id(run: PipelineRun) -> str:
    """The BigQuery insert id of a row: the run id, and when the row was recorded if known."""
    if run.recorded_at is None:
        return run.run_id
    return f"{run.run_id}@{run.recorded_at.isoformat()}"


def _select(table: str, existing: frozenset[str], limit: int) -> str:
    """Each run's latest row; a column an older table lacks reads as null."""
    names = ", ".join(name if name in existing else f"NULL AS {name}" for name in _COLUMNS)
    # A table without `recorded_at` holds one row per run. (No `ORDER BY NULL` then:
    # DuckDB 1.5 drops every row when the window is ordered by a constant and filtered.)
    latest = " ORDER BY recorded_at DESC NULLS LAST" if "recorded_at" in existing else ""
    return (
        f"SELECT {', '.join(_COLUMNS)} FROM ("
        f"SELECT {names}, ROW_NUMBER() OVER (PARTITION BY run_id{latest}) AS row_rank"
        f" FROM {table}) AS latest"
        f" WHERE row_rank = 1 ORDER BY started_at DESC, run_id LIMIT {int(limit)}"
    )


def _from_row(row: dict[str, Any]) -> PipelineRun:
    values = dict(row)
    values["arguments"] = tuple(values["arguments"] or ())
    values["rows_written"] = tuple(
        TableRows(destination=item["destination"], rows=int(item["rows"]))
        for item in values["rows_written"] or ()
    )
    return PipelineRun(**values)


def _append_duckdb(path: str, run: PipelineRun) -> None:
    # Bound as parameters, not staged as an Arrow table: scanning one makes DuckDB
    # import pyarrow's dataset and compute modules, 30 ms for a single row.
    row = to_row(run)
    with duckdb.connect(path) as connection:
        if _duckdb_columns(connection):
            # Before the DDL, whose column comments name the new columns.
            _migrate_duckdb(connection)
        connection.execute(duckdb_ddl(PipelineRun))
        connection.execute(_INSERT, [row[name] for name in _COLUMNS])


def _migrate_duckdb(connection: duckdb.DuckDBPyConnection) -> None:
    """Adds the nullable columns an older table lacks; drops NOT NULL where the schema did."""
    add_missing_columns(connection, PipelineRun)
    found = connection.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_name = ? AND is_nullable = 'NO'",
        [TABLE],
    ).fetchall()
    for (name,) in found:
        if name in _NULLABLE:
            connection.execute(f'ALTER TABLE "{TABLE}" ALTER COLUMN "{name}" DROP NOT NULL')


def _duckdb_columns(connection: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The columns of `pipeline_runs`; empty when there is no such table."""
    found = connection.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [TABLE]
    ).fetchall()
    return frozenset(name for (name,) in found)


def _recent_duckdb(path: str, limit: int) -> list[PipelineRun]:
    with duckdb.connect(path, read_only=True) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        existing = _duckdb_columns(connection)
        if not existing:
            return []
        cursor = connection.execute(_select(f'"{TABLE}"', existing, limit))
        names = [column[0] for column in cursor.description]
        return [_from_row(dict(zip(names, values, strict=True))) for values in cursor.fetchall()]


def ensure_bigquery_table(client: bigquery.Client, project: str, dataset: str) -> bigquery.Table:
    """The `pipeline_runs` table, created (and its dataset) when missing, migrated if older."""
    client.create_dataset(bigquery.Dataset(f"{project}.{dataset}"), exists_ok=True)
    wanted = [bigquery.SchemaField.from_api_repr(f) for f in bigquery_schema(PipelineRun)]
    table = bigquery.Table(f"{project}.{dataset}.{TABLE}", schema=wanted)
    table.description = PipelineRun.TABLE.description
    partitioning = bigquery_table_parameters(PipelineRun).get("timePartitioning")
    if partitioning is not None:
        table.time_partitioning = bigquery.TimePartitioning(
            type_=partitioning["type"], field=partitioning["field"]
        )
    table = client.create_table(table, exists_ok=True)
    return _migrate_bigquery(client, table, wanted)


def _migrate_bigquery(
    client: bigquery.Client, table: bigquery.Table, wanted: list[bigquery.SchemaField]
) -> bigquery.Table:
    """The table with the columns it lacks added and relaxed ones made NULLABLE (a patch).

    BigQuery allows exactly these two changes in place: adding a NULLABLE
    column and relaxing REQUIRED to NULLABLE.
    """
    current = {field.name: field for field in table.schema}
    schema = []
    for field in table.schema:
        if field.mode == "REQUIRED" and field.name in _NULLABLE:
            field = bigquery.SchemaField.from_api_repr({**field.to_api_repr(), "mode": "NULLABLE"})
        schema.append(field)
    schema.extend(field for field in wanted if field.name not in current)
    if schema == list(table.schema):
        return table
    table.schema = schema
    return client.update_table(table, ["schema"])


def _append_bigquery(project: str, dataset: str, run: PipelineRun) -> None:
    client = bigquery.Client(project=project)
    try:
        table = ensure_bigquery_table(client, project, dataset)
        errors = client.insert_rows_json(
            table, [to_bigquery_json_row(run)], row_ids=[insert_id(run)]
        )
    finally:
        client.close()
    if errors:
        raise RuntimeError(f"BigQuery refused the {TABLE} row of run {run.run_id}: {errors}")


def _recent_bigquery(project: str, dataset: str, limit: int) -> list[PipelineRun]:
    client = bigquery.Client(project=project)
    try:
        try:
            table = client.get_table(f"{project}.{dataset}.{TABLE}")
        except NotFound:
            return []
        existing = frozenset(field.name for field in table.schema)
        rows = client.query(_select(f"`{project}.{dataset}.{TABLE}`", existing, limit)).result()
        return [_from_row(dict(row.items())) for row in rows]
    finally:
        client.close()
