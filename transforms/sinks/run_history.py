"""The `pipeline_runs` table: one row per run, appended by the launcher after the run.

    append_run("out/warehouse.duckdb", run)         # or "bigquery:P.D"
    recent_runs("out/warehouse.duckdb", limit=20)   # newest first

Not a Beam writer: the row is only known once the pipeline has finished (its
end time, exit code and counts), so the launching process writes it, once,
into the run's warehouse. The table is created when missing, from
`schemas.records.PipelineRun` (DuckDB DDL, or the BigQuery schema with its
day partitioning). In DuckDB it is a plain table in the warehouse file; in
BigQuery a plain table `pipeline_runs` (no `_raw` table and view: a run is
appended once and never replaced), written by a streaming insert whose
insert id is the run id, so a retried insert is absorbed by BigQuery's
de-duplication. Holds no personal data: arguments with DSN passwords masked,
counts and names.
"""

from __future__ import annotations

from typing import Any

import duckdb
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from schemas.generate import (
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

TABLE = PipelineRun.TABLE.name
_COLUMNS = tuple(column.name for column in columns(PipelineRun))
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
    """The `limit` most recent runs, newest first; [] when the table does not exist yet."""
    if warehouse.startswith(BIGQUERY_PREFIX):
        return _recent_bigquery(*bigquery_dataset(warehouse), limit)
    return _recent_duckdb(warehouse, limit)


def _select(table: str, limit: int) -> str:
    names = ", ".join(_COLUMNS)
    return f"SELECT {names} FROM {table} ORDER BY started_at DESC, run_id LIMIT {int(limit)}"


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
        connection.execute(duckdb_ddl(PipelineRun))
        connection.execute(_INSERT, [row[name] for name in _COLUMNS])


def _recent_duckdb(path: str, limit: int) -> list[PipelineRun]:
    with duckdb.connect(path, read_only=True) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        found = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [TABLE]
        ).fetchone()
        if not found or not found[0]:
            return []
        cursor = connection.execute(_select(f'"{TABLE}"', limit))
        names = [column[0] for column in cursor.description]
        return [_from_row(dict(zip(names, values, strict=True))) for values in cursor.fetchall()]


def _table(client: bigquery.Client, project: str, dataset: str) -> bigquery.Table:
    """The `pipeline_runs` table, created (and its dataset) when missing."""
    client.create_dataset(bigquery.Dataset(f"{project}.{dataset}"), exists_ok=True)
    table = bigquery.Table(
        f"{project}.{dataset}.{TABLE}",
        schema=[bigquery.SchemaField.from_api_repr(f) for f in bigquery_schema(PipelineRun)],
    )
    table.description = PipelineRun.TABLE.description
    partitioning = bigquery_table_parameters(PipelineRun).get("timePartitioning")
    if partitioning is not None:
        table.time_partitioning = bigquery.TimePartitioning(
            type_=partitioning["type"], field=partitioning["field"]
        )
    return client.create_table(table, exists_ok=True)


def _append_bigquery(project: str, dataset: str, run: PipelineRun) -> None:
    client = bigquery.Client(project=project)
    try:
        table = _table(client, project, dataset)
        errors = client.insert_rows_json(table, [to_bigquery_json_row(run)], row_ids=[run.run_id])
    finally:
        client.close()
    if errors:
        raise RuntimeError(f"BigQuery refused the {TABLE} row of run {run.run_id}: {errors}")


def _recent_bigquery(project: str, dataset: str, limit: int) -> list[PipelineRun]:
    client = bigquery.Client(project=project)
    try:
        try:
            client.get_table(f"{project}.{dataset}.{TABLE}")
        except NotFound:
            return []
        rows = client.query(_select(f"`{project}.{dataset}.{TABLE}`", limit)).result()
        return [_from_row(dict(row.items())) for row in rows]
    finally:
        client.close()
