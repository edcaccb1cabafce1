"""The local DuckDB warehouse: every record type upserted into one DuckDB file.

    {Contribution: contributions, DeadLetter: dead_letters, ...} | WriteToWarehouse("out/wh.duckdb")

How a load works:

1. Stage (in parallel, on any worker). Each record is checked with
   `schemas.rows.validate`; a record that fails becomes a `DeadLetter`
   (step `write_warehouse`, reason `invalid_row`; `transforms.sinks.common`)
   bound for `dead_letters`, so nothing is dropped and nothing blocks a
   streaming job. Valid rows are
   written, per bundle and per window, to a Parquet file
   `<path>.staging/run-<tag>/<table>/<uuid>.parquet` (schema `arrow_schema`), flushed
   every `_BATCH_ROWS` rows, so memory stays flat whatever the row count.
   Workers never open the DuckDB file: DuckDB allows one writing process.
2. Gather. The staged file names are keyed by one constant and grouped, so
   each window/pane (as the caller's windowing and trigger decide; batch: one)
   yields one list of files.
3. Load (one DoFn call per pane). Opens DuckDB once and, in one transaction,
   creates any missing table from `duckdb_ddl` and (re)creates the analysts'
   views (`schemas.views.duckdb_view_statements`: `contributions_current`,
   `daily_totals`, `fact_acquisition_event`, the same definitions as in
   BigQuery), upserts each table by its natural key (`upsert_statements`:
   delete the rows whose key is staged, then insert the staged rows from
   `read_parquet([...])`), folds refunds into `contributions_store`
   (`STORE_RECONCILIATION_SQL`, the rule of `transforms.domain.reconciliation`),
   commits, and only then deletes the staged files.
   `contributions` keeps each payment as the core emitted it, as in BigQuery;
   `contributions_current` folds its refunds and disputes in.
   Rows sharing a key within one load are reduced to one first: the greatest
   by all columns in declaration order, so the winner never depends on bundle
   order. Across loads the later load's row replaces the earlier.

Memory: staging is bounded by `_BATCH_ROWS`; DuckDB runs with a memory limit
(`LOAD_MEMORY_LIMIT`, one thread) and spills to `<path>.tmp` beyond it. That
is also why the tables have no PRIMARY KEY: DuckDB pins a key's index in
memory, where it would grow with the table.

Delivery guarantee: effectively once per natural key. A retried load finds
some files already deleted (they were committed) and skips them; a retried
staging bundle leaves its first attempt's file orphaned in the run's staging
folder, never loaded (its name was never emitted), removed with the folder.
Accumulating panes re-send file names already loaded; they are skipped too.

Leftovers: `<tag>` names the launching process (`transforms.core.leftovers`).
A killed run's staged files are never loaded by anyone (their names died with
it), so each new `WriteToWarehouse` removes, when the pipeline is built, the
`run-<tag>` folders of `<path>.staging` whose process is gone, and never a
live run's. A finished run's folder (emptied by its loads) goes the same way
at the next start.

Every table of `ALL_RECORD_TYPES` (plus any other record type given) exists
after the run, even with no rows: a `CreateTables` step runs once, and the
load waits for it through a side input. Loads in one process are serialised
by a lock; the staging folder must be on a filesystem all workers share, so
this writer is for local and single-machine runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.windowed_value import WindowedValue

from schemas.generate import Mode, arrow_schema, columns, duckdb_ddl, duckdb_type, table_of
from schemas.records import (
    ALL_RECORD_TYPES,
    ContributionStoreRecord,
    DeadLetter,
    PaymentAdjustment,
)
from schemas.rows import to_columns
from schemas.table import step_name
from schemas.views import duckdb_view_statements
from transforms.core.leftovers import remove_stale, run_tag
from transforms.domain.reconciliation import store_reconciliation_update
from transforms.infrastructure import InfrastructureError
from transforms.sinks.common import BIGQUERY_PREFIX, WAREHOUSE, RecordCheck
from transforms.sinks.contract import Flag, Sink, SinkConfig

#: The `step` of dead letters for records that fail `validate` here.
REJECTED_STEP = "write_warehouse"

_STAGED = "staged"
_REJECTED = "rejected"
_METRICS_NAMESPACE = "WriteToWarehouse"
_RUN_FOLDER_PREFIX = "run-"
# Rows buffered before a Parquet row group is written: bounds staging memory.
_BATCH_ROWS = 5_000
# One key so that every staged file of a window/pane meets in one load.
_LOAD_KEY = "load"
#: DuckDB's memory limit while loading; above it, sorts and uncommitted rows
#: spill to `<warehouse>.tmp`. Measured: one load of 470,000 rows into each
#: table (about 3.2 million events) fits, at +215 MiB of peak RSS.
LOAD_MEMORY_LIMIT = "128MB"
_CONNECTION_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "memory_limit": LOAD_MEMORY_LIMIT,
    # Each DuckDB thread needs buffers of its own: with two, that load peaked
    # at +300 MiB. Loading is a small part of a run.
    "threads": 1,
    # Memory DuckDB frees goes back to the system instead of staying cached by
    # its allocator, which otherwise kept ~50 MiB more after loading 4x the rows.
    "allocator_flush_threshold": "8MB",
    "allocator_bulk_deallocation_flush_threshold": "8MB",
}
# DuckDB allows one writer per file; loads of concurrent panes in one process
# would otherwise conflict on the same rows.
_LOAD_LOCK = threading.Lock()

DEFAULT_LOCK_TIMEOUT_S = 60.0
WAREHOUSE_LOCK_TIMEOUT = Flag(
    "warehouse_lock_timeout_s",
    "How long the DuckDB warehouse's table creation and each load wait for the file while "
    "another process (another run, a query) holds DuckDB's lock on it; then the run stops "
    "with exit 3 and that load writes nothing. Default: %(default)s.",
    default=f"{DEFAULT_LOCK_TIMEOUT_S:g}",
)


class WarehouseLockedError(InfrastructureError):
    """Another process held the DuckDB warehouse longer than the lock timeout."""


def connect_waiting(
    path: str,
    timeout_s: float,
    *,
    sleep: Any = time.sleep,
    clock: Any = time.monotonic,
) -> duckdb.DuckDBPyConnection:
    """Opens the warehouse for writing, waiting up to `timeout_s` while another process holds it.

    Raises `WarehouseLockedError` (one line, naming the holder's PID as DuckDB
    reports it) once the time is up. `sleep` and `clock` are for tests.
    """
    deadline = clock() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(path, config=_CONNECTION_CONFIG)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            remaining = deadline - clock()
            if remaining <= 0:
                holder = re.search(r"PID (\d+)", str(error))
                held_by = f"process {holder.group(1)}" if holder else "another process"
                raise WarehouseLockedError(
                    f"--warehouse {path} is locked by {held_by} (another run or a query) for "
                    f"more than {timeout_s:g}s (--warehouse_lock_timeout_s): this load wrote "
                    "nothing to it; run again once that process ends"
                ) from None
            sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)


#: The store half of the reconciliation (`transforms.domain.reconciliation`), run
#: after every load: `contributions_store` mirrors the operational store, whose
#: rows are updated in place. `contributions` is not updated; the view
#: `contributions_current` applies the rule at query time.
STORE_RECONCILIATION_SQL: str = store_reconciliation_update(
    f'"{ContributionStoreRecord.TABLE.name}"', f'"{PaymentAdjustment.TABLE.name}"'
)


# --- SQL built from the schemas -----------------------------------------------


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def upsert_statements(record_type: type, files: Sequence[str]) -> tuple[str, str]:
    """Upserts the staged Parquet files into the record type's table, by natural key.

    Two statements, to run in one transaction: DELETE the rows whose key is
    staged, then INSERT the staged rows. Rows sharing a key are reduced to the
    greatest by all columns in declaration order, so duplicates within a load
    always resolve the same way. The INSERT's result is its row count.
    """
    table = table_of(record_type)
    target = _quote(table.name)
    names = ", ".join(_quote(c.name) for c in columns(record_type))
    key = ", ".join(_quote(k) for k in table.key)
    order = ", ".join(f"{_quote(c.name)} DESC NULLS LAST" for c in columns(record_type))
    staged = f"read_parquet([{', '.join(_literal(f) for f in files)}])"
    matches = " AND ".join(f"{target}.{_quote(k)} = staged.{_quote(k)}" for k in table.key)
    delete = (
        f"DELETE FROM {target}\n"
        f"USING (SELECT DISTINCT {key} FROM {staged}) AS staged\n"
        f"WHERE {matches}"
    )
    # Only keys staged more than once go through the sort; the others stream
    # through a hash join, which keeps big loads within the memory limit.
    insert = (
        f"INSERT INTO {target} ({names})\n"
        f"WITH repeated AS (SELECT {key} FROM {staged} GROUP BY {key} HAVING count(*) > 1)\n"
        f"SELECT {names} FROM {staged} ANTI JOIN repeated USING ({key})\n"
        f"UNION ALL\n"
        f"SELECT {names} FROM {staged} SEMI JOIN repeated USING ({key})\n"
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1"
    )
    return delete, insert


# --- DoFns ----------------------------------------------------------------------


class _ParquetStage:
    """One Parquet file being staged: records are buffered and written in row groups.

    A row group is built column by column (`to_columns`), not from a dict per
    row: 3.7 -> 2.2 µs per contribution, 10.2 -> 6.9 per acquisition.
    """

    def __init__(self, directory: str, record_type: type, schema: pa.Schema) -> None:
        self.path = os.path.join(directory, f"{uuid.uuid4().hex}.parquet")
        self._record_type = record_type
        self._schema = schema
        self._writer: pq.ParquetWriter | None = None
        self._records: list[Any] = []

    def add(self, record: Any) -> None:
        self._records.append(record)
        if len(self._records) >= _BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._records:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self._schema)
        values = to_columns(self._record_type, self._records)
        arrays = [
            pa.array(column, type=field.type)
            for column, field in zip(values, self._schema, strict=True)
        ]
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
        self._records = []

    def close(self) -> str:
        self._flush()
        assert self._writer is not None  # a stage exists only once a row was added
        self._writer.close()
        return self.path


class _StageRows(beam.DoFn):
    """Record of one type -> Parquet files; emits `(table, file)` per bundle and window.

    Main output: `(table name, staged file path)` in the window of the rows it
    holds. Output `rejected`: a DeadLetter per record failing `validate`
    (only when `reject_invalid`; otherwise RowValidationError fails the bundle,
    which is right for the dead letters themselves: there is nowhere further).
    Raises TypeError for an element that is not of the declared record type,
    a wiring bug rather than bad data.
    """

    def __init__(self, staging_dir: str, record_type: type, *, reject_invalid: bool) -> None:
        self._staging_dir = staging_dir
        self._record_type = record_type
        self._reject_invalid = reject_invalid
        self._stages: dict[BoundedWindow, _ParquetStage] = {}

    def setup(self) -> None:
        self._table = table_of(self._record_type).name
        self._schema = arrow_schema(self._record_type)
        self._directory = os.path.join(self._staging_dir, self._table)
        os.makedirs(self._directory, exist_ok=True)
        self._rejected = Metrics.counter(_METRICS_NAMESPACE, f"rows_rejected_{self._table}")
        self._check = RecordCheck(
            self._record_type,
            "WriteToWarehouse",
            REJECTED_STEP,
            f"warehouse:{self._table}",
            strict=not self._reject_invalid,
        )

    def start_bundle(self) -> None:
        self._stages = {}

    def process(
        self,
        record: Any,
        window: BoundedWindow = beam.DoFn.WindowParam,  # type: ignore[assignment]
    ) -> Iterator[beam.pvalue.TaggedOutput]:
        letter = self._check(record)
        if letter is not None:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(_REJECTED, letter)
            return
        stage = self._stages.get(window)
        if stage is None:
            stage = self._stages[window] = _ParquetStage(
                self._directory, self._record_type, self._schema
            )
        stage.add(record)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        stages, self._stages = self._stages, {}
        for window, stage in stages.items():
            yield WindowedValue((self._table, stage.close()), window.max_timestamp(), (window,))


def _create_tables(connection: duckdb.DuckDBPyConnection, record_types: Iterable[type]) -> None:
    """Creates missing tables, then (re)creates the analysts' views, which read them."""
    existing = _columns_by_table(connection)
    for record_type in record_types:
        # Before the DDL: its comments name every column, the added ones too.
        _add_missing_columns(connection, record_type, existing.get(table_of(record_type).name))
        connection.execute(duckdb_ddl(record_type))
    for statement in duckdb_view_statements():
        connection.execute(statement)


def _columns_by_table(connection: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """{table or view: its column names}, read in one query (one per table cost twice as much)."""
    found: dict[str, set[str]] = {}
    for table, name in connection.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
    ).fetchall():
        found.setdefault(table, set()).add(name)
    return found


def _add_missing_columns(
    connection: duckdb.DuckDBPyConnection, record_type: type, existing: set[str] | None
) -> None:
    """Adds the nullable columns a table made by an older release lacks (e.g. `redriven_at`).

    Only nullable columns are ever added to a record type, so old rows read as null.
    A table that does not exist yet (`existing` None) has no columns to add: its
    DDL makes it whole.
    """
    if not existing:
        return
    table = table_of(record_type).name
    for column in columns(record_type):
        if column.name not in existing and column.mode is Mode.NULLABLE:
            connection.execute(
                f"ALTER TABLE {_quote(table)} ADD COLUMN {_quote(column.name)} "
                f"{duckdb_type(column)}"
            )


def add_missing_columns(connection: duckdb.DuckDBPyConnection, record_type: type) -> None:
    """`_add_missing_columns` for one table, its columns read here (for a caller
    outside the load, e.g. `transforms.sinks.run_history`)."""
    existing = _columns_by_table(connection).get(table_of(record_type).name)
    _add_missing_columns(connection, record_type, existing)


class _CreateTables(beam.DoFn):
    """Creates every table once, so that tables without rows exist too. Emits nothing."""

    def __init__(self, path: str, record_types: tuple[type, ...], lock_timeout_s: float) -> None:
        self._path = path
        self._record_types = record_types
        self._lock_timeout_s = lock_timeout_s

    def process(self, unused: Any) -> Iterator[Any]:
        with _LOAD_LOCK:
            connection = connect_waiting(self._path, self._lock_timeout_s)
            try:
                connection.begin()
                _create_tables(connection, self._record_types)
                connection.commit()
            finally:
                connection.close()
        return iter(())


class _LoadStagedFiles(beam.DoFn):
    """`(key, [(table, file), ...])` -> `(table, rows upserted)` for every table.

    One transaction per call: create tables, upsert each table's files,
    reconcile, commit; then delete the files. Increments `rows_written_<table>`.
    """

    def __init__(self, path: str, record_types: tuple[type, ...], lock_timeout_s: float) -> None:
        self._path = path
        self._record_types = record_types
        self._lock_timeout_s = lock_timeout_s

    def setup(self) -> None:
        self._written = {
            table_of(t).name: Metrics.counter(
                _METRICS_NAMESPACE, f"rows_written_{table_of(t).name}"
            )
            for t in self._record_types
        }

    def process(
        self, element: tuple[str, Iterable[tuple[str, str]]], tables_created: Any
    ) -> Iterator[tuple[str, int]]:
        # `tables_created` is empty; as a side input it only makes this step wait
        # for CreateTables, so the two never hold the DuckDB file at once.
        _, staged = element
        files_by_table: dict[str, list[str]] = defaultdict(list)
        for table, path in staged:
            # A missing file was loaded and committed by an earlier attempt.
            if os.path.exists(path):
                files_by_table[table].append(path)
        written: dict[str, int] = {}
        with _LOAD_LOCK:
            connection = connect_waiting(self._path, self._lock_timeout_s)
            try:
                connection.begin()
                _create_tables(connection, self._record_types)
                for record_type in self._record_types:
                    table = table_of(record_type).name
                    files = sorted(files_by_table.get(table, ()))
                    if not files:
                        written[table] = 0
                        continue
                    delete, insert = upsert_statements(record_type, files)
                    connection.execute(delete)
                    result = connection.execute(insert).fetchone()
                    written[table] = int(result[0]) if result else 0
                connection.execute(STORE_RECONCILIATION_SQL)
                connection.commit()
            except BaseException:
                # Never mask the original error with one from the rollback.
                with contextlib.suppress(duckdb.Error):
                    connection.rollback()
                raise
            finally:
                connection.close()
        for files in files_by_table.values():
            for path in files:
                os.remove(path)
        for table, count in written.items():
            self._written[table].inc(count)
            yield table, count


class WriteToWarehouse(beam.PTransform):
    """Upserts records into a DuckDB file, one table per record type.

    Input: a dict `{record type: PCollection of that type}` (bounded or
    unbounded, any windowing); apply it as `pcolls | WriteToWarehouse(path)`.
    Every table in `ALL_RECORD_TYPES` and every record type given is created.

    Output: `PCollection[tuple[str, int]]`, per load (one per window/pane) one
    `(table name, rows upserted)` for every table, 0 included. A run whose
    inputs are all empty creates the tables and outputs nothing.

    Guarantee: idempotent per natural key (`TABLE.key`): the same input twice
    leaves the same rows. Payment adjustments are folded into
    `contributions_store` after every load (`transforms.domain.reconciliation`), and into
    `contributions` by the view `contributions_current`. Records failing
    validation are written to `dead_letters` instead. Metrics: `rows_written_<table>`,
    `rows_rejected_<table>`.
    """

    def __init__(self, path: str, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        super().__init__()
        self._path = path
        self._lock_timeout_s = lock_timeout_s

    def expand(self, pcolls: Mapping[type, PCollection]) -> PCollection:
        if not isinstance(pcolls, Mapping) or not pcolls:
            raise TypeError("WriteToWarehouse takes a non-empty {record type: PCollection} dict")
        record_types = tuple(dict.fromkeys((*ALL_RECORD_TYPES, *pcolls)))
        for record_type in record_types:
            table_of(record_type)  # fail at graph construction, not on a worker
        staging_root = self._path + ".staging"
        remove_stale(staging_root, _RUN_FOLDER_PREFIX)
        staging_dir = os.path.join(staging_root, _RUN_FOLDER_PREFIX + run_tag())
        pipeline = next(iter(pcolls.values())).pipeline

        staged: list[PCollection] = []
        rejected: list[PCollection] = []
        for record_type, pcoll in pcolls.items():
            outputs = pcoll | f"Stage{step_name(table_of(record_type).name)}" >> beam.ParDo(
                _StageRows(staging_dir, record_type, reject_invalid=True)
            ).with_outputs(_REJECTED, main=_STAGED)
            staged.append(outputs[_STAGED])
            rejected.append(outputs[_REJECTED])
        staged.append(
            rejected
            | "FlattenRejectedRows" >> beam.Flatten()
            | "StageRejectedRows"
            >> beam.ParDo(_StageRows(staging_dir, DeadLetter, reject_invalid=False))
        )

        tables_created = (
            pipeline
            | "StartCreateTables" >> beam.Impulse()
            | "CreateTables"
            >> beam.ParDo(_CreateTables(self._path, record_types, self._lock_timeout_s))
        )
        return (
            staged
            | "FlattenStagedFiles" >> beam.Flatten()
            | "KeyStagedFiles" >> beam.Map(lambda staged_file: (_LOAD_KEY, staged_file))
            | "GatherStagedFiles" >> beam.GroupByKey()
            | "LoadStagedFiles"
            >> beam.ParDo(
                _LoadStagedFiles(self._path, record_types, self._lock_timeout_s),
                tables_created=beam.pvalue.AsList(tables_created),
            )
        )


def _write(config: SinkConfig, pcolls: Mapping[type, PCollection]) -> None:
    _ = pcolls | "WriteToWarehouse" >> WriteToWarehouse(
        str(config[WAREHOUSE.name]), _lock_timeout_s(config)
    )


def _lock_timeout_s(config: SinkConfig) -> float:
    text = config[WAREHOUSE_LOCK_TIMEOUT.name] or f"{DEFAULT_LOCK_TIMEOUT_S:g}"
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"--{WAREHOUSE_LOCK_TIMEOUT.name} takes seconds (0 or more), got {text!r}")
    return value


def _check_flags(config: SinkConfig) -> None:
    """A path DuckDB would keep in memory loses every row when the run ends: refused."""
    path = str(config[WAREHOUSE.name] or "")
    if not path.strip():
        raise ValueError(
            "--warehouse must not be empty: give a DuckDB file (e.g. out/warehouse.duckdb) "
            "or bigquery:PROJECT.DATASET"
        )
    if path.startswith(":memory:"):
        raise ValueError(
            f"--warehouse {path} is an in-memory DuckDB database, discarded with every row when "
            "the run ends: give a file (e.g. out/warehouse.duckdb)"
        )
    _lock_timeout_s(config)


def _check(config: SinkConfig) -> None:
    """An existing warehouse that another process holds: wait (bounded), else stop before launch."""
    path = str(config[WAREHOUSE.name])
    if os.path.exists(path):
        connect_waiting(path, _lock_timeout_s(config)).close()


#: The default warehouse: `--warehouse` is a file path (anything but `bigquery:...`).
SINK = Sink(
    name="duckdb",
    flags=(WAREHOUSE, WAREHOUSE_LOCK_TIMEOUT),
    write=_write,
    check_flags=_check_flags,
    check=_check,
    selected_when=lambda config: not str(config[WAREHOUSE.name]).startswith(BIGQUERY_PREFIX),
    warehouse=True,
    loads_in_panes=True,
    production=False,
)


def duckdb_path(config: SinkConfig) -> str | None:
    """The DuckDB file the run writes to, or None when its warehouse is another."""
    return str(config[WAREHOUSE.name]) if config.warehouse is SINK else None
