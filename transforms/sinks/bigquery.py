"""The BigQuery warehouse: every record type appended to BigQuery, read through views.

    pcolls = core_outputs.by_record_type()   # {Contribution: pcoll, DeadLetter: pcoll, ...}
    pcolls | WriteToWarehouseBigQuery("my-project", "contributions", method="FILE_LOADS",
                                      temp_location="gs://my-bucket/tmp")

Layout (`schemas.views`): per record type an append-only table `<table>_raw`
(the generated schema plus `_written_at`; partitioned by day on the record's
event-time column and clustered as its `TABLE` says) and a view `<table>`
showing the latest row per natural key; plus `contributions_current` (refunds
and disputes folded in, the rule of `transforms.domain.reconciliation`)
and `daily_totals` (per day, currency and livemode).

Why append + de-duplicating views rather than MERGE. Analysts must see one row
per payment after replays, restarts and re-run backfills. A MERGE per load
(or per streaming micro-batch) into final tables keeps the tables exact, but
each MERGE scans the target's partitions touched by the batch (a backfill
touches them all) and is a DML job, subject to DML quotas and serialised per
table; a streaming job would need a staging table plus a scheduled MERGE, so
the final tables would lag by the schedule. Appending is free with FILE_LOADS
and cheap with streaming inserts, never conflicts, and is idempotent by
construction; the price is paid at query time:
every query of a view runs a window over the raw rows of the partitions it
reads (duplicates included). With filters on the event-time column (`WHERE
created >= ...`), which the views let BigQuery push down to the raw table's
day partitions (the window is partitioned by key and event time), and with
clustering, this stays a small scan; without such a filter a query of a view
scans the whole raw table, duplicates included (`contributions_current`
always aggregates all of `payment_adjustments`, a small table). When the raw
tables grow many duplicates (e.g. after several full backfills), a scheduled
`CREATE OR REPLACE TABLE <t>_raw AS SELECT * FROM <t>_raw QUALIFY ...` (or
a scheduled MERGE into a materialised table) compacts them once instead of
on every query. For dashboards reading `daily_totals` all day, materialise it
with a scheduled query rather than recomputing the window on each refresh.

How a write works:

1. EnsureDataset (once per run, a setup step). `ensure_dataset` creates the
   dataset, the raw tables and the views when missing, and replaces a view
   whose SQL changed; it is idempotent. Rows only move once it has run: the
   validation step takes its (empty) output as a side input.
2. Validate<Table>. Each record is checked with `schemas.rows.validate`; a
   record that fails becomes a `DeadLetter` (step `write_bigquery`, reason
   `invalid_row` as in every writer, the column and rule in `error`, the
   record's repr in `raw`), so a NUMERIC overflow never reaches the service. Valid records
   become JSON rows (`to_bigquery_json_row`) stamped with `_written_at`.
3. Write. `FILE_LOADS`: Beam's `WriteToBigQuery` stages files under
   `temp_location` (GCS) and runs append load jobs; a failed load job fails
   the bundle (Beam retries it) since load jobs report no per-row failures.
   `STREAMING_INSERTS`: Beam's `BigQueryWriteFn` (the DoFn behind
   `WriteToBigQuery`'s streaming path) with insert ids derived from the
   table and natural key, so BigQuery's best-effort de-duplication absorbs
   retries and replays within its window (`WriteToBigQuery` itself draws
   random ids and cannot be given ours). Rows the service rejects come back
   on Beam's failed-rows-with-errors output and become dead letters (reason
   `insert_failed`, the service's errors in `error`), written by a second
   insert step; if that one fails too, the bundle fails and is retried, so
   a row is never dropped.

Delivery guarantee: at least once into `<table>_raw`, exactly once per
natural key as seen through the views. Logs and metrics carry table names
and counts only, never row contents. Metrics (namespace
`WriteToWarehouseBigQuery`): `rows_rejected_<table>`, `rows_written_<table>`
(rows valid and handed to the load or insert; a row the service then refuses
is also a dead letter); Beam's own BigQuery metrics count inserts, failures
and retries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import apache_beam as beam
import google.auth.exceptions
from apache_beam.io.gcp.bigquery import BigQueryDisposition, BigQueryWriteFn, WriteToBigQuery
from apache_beam.io.gcp.bigquery_tools import RetryStrategy
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from schemas.generate import bigquery_table_parameters, table_of
from schemas.records import (
    ALL_RECORD_TYPES,
    AcquisitionEvent,
    ContributionStoreRecord,
    DeadLetter,
    SoftOptIn,
    SupporterProductData,
    ThankYouEmail,
)
from schemas.rows import natural_key, to_bigquery_json_row
from schemas.table import step_name
from schemas.views import (
    RAW_SUFFIX,
    WRITTEN_AT,
    raw_bigquery_schema,
    raw_table_name,
    view_definitions,
)
from transforms.domain.events import make_dead_letter
from transforms.domain.redact import redacted
from transforms.infrastructure import READ_TIMEOUT_S, ConfigurationError, describe_request_error
from transforms.sinks.common import BIGQUERY_PREFIX, WAREHOUSE, RecordCheck
from transforms.sinks.contract import Sink, SinkConfig

Method = Literal["FILE_LOADS", "STREAMING_INSERTS"]

#: The `step` of dead letters made by this writer.
WRITE_STEP = "write_bigquery"
INSERT_FAILED_REASON = "insert_failed"
#: Longest `raw` kept in a dead letter of a refused row (an insert carries at most 10 MB).
MAX_FAILED_RAW_CHARS = 1_000_000

_VALID = "valid"
_REJECTED = "rejected"
_METRICS_NAMESPACE = "WriteToWarehouseBigQuery"
_INSERT_BATCH_SIZE = 500


def ensure_dataset(
    client: bigquery.Client,
    project: str,
    dataset: str,
    record_types: tuple[type, ...] = ALL_RECORD_TYPES,
    location: str | None = None,
) -> None:
    """Creates the dataset, every `<table>_raw` and every view when missing.

    Idempotent: existing tables are left as they are (their data untouched);
    an existing view whose SQL differs from `schemas.views` is updated, so a
    deploy rolls out a changed view (a server that leaves `view.query` out of
    tables.get, like bqemulator 1.4, gets the same SQL patched in on every
    call: harmless). Raw tables are partitioned by day and
    clustered as the record type's `TABLE` says (`bigquery_table_parameters`).
    """
    reference = bigquery.Dataset(f"{project}.{dataset}")
    if location is not None:
        reference.location = location
    client.create_dataset(reference, exists_ok=True)
    for record_type in record_types:
        parameters = bigquery_table_parameters(record_type)
        table = bigquery.Table(
            f"{project}.{dataset}.{raw_table_name(record_type)}",
            schema=[
                bigquery.SchemaField.from_api_repr(f) for f in raw_bigquery_schema(record_type)
            ],
        )
        table.description = table_of(record_type).description
        partitioning = parameters.get("timePartitioning")
        if partitioning is not None:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=partitioning["type"], field=partitioning["field"]
            )
        clustering = parameters.get("clustering")
        if clustering is not None:
            table.clustering_fields = list(clustering["fields"])
        client.create_table(table, exists_ok=True)
    for name, sql in view_definitions(record_types, project, dataset).items():
        view_id = f"{project}.{dataset}.{name}"
        try:
            existing = client.get_table(view_id)
        except NotFound:
            view = bigquery.Table(view_id)
            view.view_query = sql
            client.create_table(view, exists_ok=True)
            continue
        if existing.view_query != sql:
            existing.view_query = sql
            client.update_table(existing, ["view_query"])


class _EnsureDataset(beam.DoFn):
    """Runs `ensure_dataset` once per element (one element per run). Emits nothing."""

    def __init__(self, project: str, dataset: str, record_types: tuple[type, ...]) -> None:
        self._project = project
        self._dataset = dataset
        self._record_types = record_types

    def process(self, unused: Any) -> Iterator[Any]:
        client = bigquery.Client(project=self._project)
        try:
            ensure_dataset(client, self._project, self._dataset, self._record_types)
        finally:
            client.close()
        return iter(())


def insert_id(record_type: type, record: Any) -> str:
    """The streaming insert id of a record: a hash of its table and natural key.

    Every copy of a record (retry, replay, re-run) gets the same id, which is
    what BigQuery's best-effort de-duplication keys on.
    """
    key = json.dumps([table_of(record_type).name, *map(str, natural_key(record))])
    return hashlib.sha256(key.encode()).hexdigest()


class _ValidateRows(beam.DoFn):
    """Record -> `(table spec, (JSON row, insert id))`; `rejected`: DeadLetter.

    Records failing `validate` go to `rejected` when `reject_invalid`, else
    raise RowValidationError (for dead letters themselves: there is nowhere
    further). Raises TypeError for an element of another type (a wiring bug).
    """

    def __init__(self, table_spec: str, record_type: type, *, reject_invalid: bool) -> None:
        self._table_spec = table_spec
        self._record_type = record_type
        self._reject_invalid = reject_invalid

    def setup(self) -> None:
        self._table = table_of(self._record_type).name
        self._rejected = Metrics.counter(_METRICS_NAMESPACE, f"rows_rejected_{self._table}")
        self._written = Metrics.counter(_METRICS_NAMESPACE, f"rows_written_{self._table}")
        self._check = RecordCheck(
            self._record_type,
            "WriteToWarehouseBigQuery",
            WRITE_STEP,
            f"bigquery:{self._table}",
            strict=not self._reject_invalid,
        )

    def process(
        self, record: Any, dataset_ready: Any
    ) -> Iterator[tuple[str, tuple[dict[str, Any], str]] | TaggedOutput]:
        # `dataset_ready` is empty; as a side input it holds rows back until
        # EnsureDataset has run.
        letter = self._check(record)
        if letter is not None:
            self._rejected.inc()
            yield TaggedOutput(_REJECTED, letter)
            return
        row = to_bigquery_json_row(record)
        row[WRITTEN_AT] = (
            datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        )
        self._written.inc()
        yield self._table_spec, (row, insert_id(self._record_type, record))


def failed_row_to_dead_letter(failed: tuple[Any, dict[str, Any], Any]) -> DeadLetter:
    """Beam's failed-rows-with-errors element `(destination, row, errors)` -> a DeadLetter.

    Reason `insert_failed`; `error` is the service's (or Beam's) errors as
    JSON; `raw` the row as sorted JSON without `_written_at`, cut to `MAX_FAILED_RAW_CHARS` (and
    said so in `error`) so that the dead letter itself fits an insert even
    when the row was refused for its size.
    """
    destination, row, errors = failed
    table = str(destination).rsplit(".", 1)[-1].removesuffix(RAW_SUFFIX)
    # Without the write time, a replay of the row makes the same dead letter id.
    record_row = {name: value for name, value in row.items() if name != WRITTEN_AT}
    raw = json.dumps(record_row, sort_keys=True, default=str)
    error = json.dumps(errors, sort_keys=True, default=str)
    if len(raw) > MAX_FAILED_RAW_CHARS:
        error = f"{error} (raw cut to {MAX_FAILED_RAW_CHARS} of {len(raw)} characters)"
        raw = raw[:MAX_FAILED_RAW_CHARS]
    return make_dead_letter(
        step=WRITE_STEP,
        reason=INSERT_FAILED_REASON,
        error=error,
        raw=raw,
        source=f"bigquery:{table}",
    )


def _raise_failed_dead_letter(failed: tuple[Any, dict[str, Any], Any]) -> None:
    """The last resort: a dead letter BigQuery refused fails the bundle (retried)."""
    destination, _, errors = failed
    raise RuntimeError(f"BigQuery rejected a dead letter in {destination}: {errors}")


class WriteToWarehouseBigQuery(beam.PTransform):
    """Appends records to BigQuery, one `<table>_raw` per record type, read through views.

    Input: a dict `{record type: PCollection of that type}` (bounded or
    unbounded; for `FILE_LOADS` on an unbounded input give
    `triggering_frequency`); apply it as `pcolls | WriteToWarehouseBigQuery(...)`.
    Tables and views exist for every record type in `ALL_RECORD_TYPES` and
    every record type given, even with no rows.

    `method`: `FILE_LOADS` (needs `temp_location`, a `gs://` folder) or
    `STREAMING_INSERTS`. `ensure_dataset_first`: run `ensure_dataset` as the
    first step (default); pass False when a deploy step has already run it.

    Output: `PCollection[DeadLetter]` of the dead letters this writer made
    (invalid rows and rows the service rejected), all of them also written to
    `dead_letters`. Guarantee: at least once into `<table>_raw`, one row per
    natural key through the views (see the module docstring).
    """

    def __init__(
        self,
        project: str,
        dataset: str,
        method: Method,
        *,
        temp_location: str | None = None,
        triggering_frequency: int | None = None,
        ensure_dataset_first: bool = True,
    ) -> None:
        super().__init__()
        if method not in ("FILE_LOADS", "STREAMING_INSERTS"):
            raise ValueError(f"method must be FILE_LOADS or STREAMING_INSERTS, got {method!r}")
        if method == "FILE_LOADS" and not (temp_location or "").startswith("gs://"):
            raise ValueError("FILE_LOADS needs temp_location, a gs:// folder for the load files")
        self._project = project
        self._dataset = dataset
        self._method = method
        self._temp_location = temp_location
        self._triggering_frequency = triggering_frequency
        self._ensure_dataset_first = ensure_dataset_first

    def _table_spec(self, record_type: type) -> str:
        return f"{self._project}:{self._dataset}.{raw_table_name(record_type)}"

    def expand(self, pcolls: Mapping[type, PCollection]) -> PCollection:
        if not isinstance(pcolls, Mapping) or not pcolls:
            raise TypeError(
                "WriteToWarehouseBigQuery takes a non-empty {record type: PCollection} dict"
            )
        record_types = tuple(dict.fromkeys((*ALL_RECORD_TYPES, *pcolls)))
        for record_type in record_types:
            table_of(record_type)  # fail at graph construction, not on a worker
        pipeline = next(iter(pcolls.values())).pipeline

        ready: PCollection = pipeline | "StartEnsureDataset" >> beam.Impulse()
        if self._ensure_dataset_first:
            ready = ready | "EnsureDataset" >> beam.ParDo(
                _EnsureDataset(self._project, self._dataset, record_types)
            )
        else:
            ready = ready | "SkipEnsureDataset" >> beam.FlatMap(lambda unused: ())
        dataset_ready = beam.pvalue.AsList(ready)

        rejected: list[PCollection] = []
        for record_type, pcoll in pcolls.items():
            if record_type is DeadLetter:
                continue
            name = step_name(table_of(record_type).name)
            outputs = pcoll | f"Validate{name}" >> beam.ParDo(
                _ValidateRows(self._table_spec(record_type), record_type, reject_invalid=True),
                dataset_ready=dataset_ready,
            ).with_outputs(_REJECTED, main=_VALID)
            rejected.append(outputs[_REJECTED])
            failed = self._write(outputs[_VALID], record_type, name)
            if failed is not None:
                rejected.append(
                    failed | f"DeadLetter{name}Failures" >> beam.Map(failed_row_to_dead_letter)
                )

        invalid_letters = rejected | "FlattenRejectedRows" >> beam.Flatten()
        given_letters = pcolls.get(DeadLetter)
        all_letters = (
            invalid_letters
            if given_letters is None
            else (given_letters, invalid_letters) | "FlattenDeadLetters" >> beam.Flatten()
        )
        letter_rows = all_letters | "ValidateDeadLetters" >> beam.ParDo(
            _ValidateRows(self._table_spec(DeadLetter), DeadLetter, reject_invalid=False),
            dataset_ready=dataset_ready,
        )
        failed_letters = self._write(letter_rows, DeadLetter, "DeadLetters")
        if failed_letters is not None:
            _ = failed_letters | "FailOnRejectedDeadLetters" >> beam.Map(_raise_failed_dead_letter)
        return invalid_letters

    def _write(self, rows: PCollection, record_type: type, name: str) -> PCollection | None:
        """Writes `(table spec, (row, insert id))`; returns the rejected rows, if any."""
        schema = {"fields": raw_bigquery_schema(record_type)}
        parameters = bigquery_table_parameters(record_type)
        if self._method == "FILE_LOADS":
            _ = (
                rows
                | f"DropInsertIds{name}" >> beam.Map(lambda element: element[1][0])
                | f"Load{name}"
                >> WriteToBigQuery(
                    self._table_spec(record_type),
                    schema=schema,
                    method=WriteToBigQuery.Method.FILE_LOADS,
                    create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
                    write_disposition=BigQueryDisposition.WRITE_APPEND,
                    additional_bq_parameters=parameters,
                    custom_gcs_temp_location=self._temp_location,
                    triggering_frequency=self._triggering_frequency,
                )
            )
            return None
        outputs = rows | f"Insert{name}" >> beam.ParDo(
            BigQueryWriteFn(
                batch_size=_INSERT_BATCH_SIZE,
                schema=schema,
                create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
                write_disposition=BigQueryDisposition.WRITE_APPEND,
                retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
                additional_bq_parameters=parameters,
            )
        ).with_outputs(
            BigQueryWriteFn.FAILED_ROWS,
            BigQueryWriteFn.FAILED_ROWS_WITH_ERRORS,
            main="main",
        )
        failed: PCollection = outputs[BigQueryWriteFn.FAILED_ROWS_WITH_ERRORS]
        return failed


#: Record types with personal data, which a BigQuery warehouse never receives.
PERSONAL_RECORD_TYPES: tuple[type, ...] = (
    AcquisitionEvent,
    ContributionStoreRecord,
    SupporterProductData,
    ThankYouEmail,
    SoftOptIn,
)


def bigquery_dataset(warehouse: str) -> tuple[str, str]:
    """(project, dataset) of `--warehouse bigquery:PROJECT.DATASET`; ValueError if malformed."""
    project, _, dataset = warehouse.removeprefix(BIGQUERY_PREFIX).partition(".")
    if not project or not dataset or "." in dataset:
        raise ValueError(f"--warehouse {warehouse!r}: expected bigquery:PROJECT.DATASET")
    return project, dataset


#: How a process gets Google credentials, for the error that none were found.
CREDENTIALS_HINT = (
    "give application default credentials: GOOGLE_APPLICATION_CREDENTIALS naming a key "
    "file, `gcloud auth application-default login`, or a service account on Google Cloud"
)


def describe_google_error(error: Exception) -> str:
    """One line for a failed Google call (`google.auth`'s or the API's error).

    Credentials that cannot be found (`DefaultCredentialsError`) also say how to give them.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = lines[0] if lines else type(error).__name__
    if isinstance(error, google.auth.exceptions.DefaultCredentialsError):
        return f"no Google credentials ({message}): {CREDENTIALS_HINT}"
    return f"{type(error).__name__}: {message}"


#: One attempt per call of the pre-launch check: the client retries only when given a
#: `Retry` (its annotation asks for one; None is how it is told not to).
_ONE_ATTEMPT: Any = None


def check_dataset(project: str, dataset: str) -> None:
    """Before launch: `ConfigurationError` naming `--warehouse` unless BigQuery serves the project.

    With the launch's credentials (application default), one attempt per call,
    bounded waits: the dataset is read, and if it is missing, the project's
    datasets are listed (the writer creates a missing dataset, not a project).
    """
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    where = f"{WAREHOUSE.option} {BIGQUERY_PREFIX}{project}.{dataset}"
    try:
        client = bigquery.Client(project=project)
        try:
            try:
                client.get_dataset(
                    f"{project}.{dataset}", timeout=READ_TIMEOUT_S, retry=_ONE_ATTEMPT
                )
            except NotFound:
                listed = client.list_datasets(
                    project, max_results=1, timeout=READ_TIMEOUT_S, retry=_ONE_ATTEMPT
                )
                next(iter(listed), None)
        finally:
            client.close()
    except NotFound:
        raise ConfigurationError(
            f"{where}: project {project} does not exist or these credentials cannot see it: "
            "correct the flag"
        ) from None
    except api_exceptions.Forbidden:
        raise ConfigurationError(
            f"{where}: these credentials may not use BigQuery in project {project}: grant them "
            "roles/bigquery.dataEditor and roles/bigquery.jobUser, or give another project"
        ) from None
    except auth_exceptions.DefaultCredentialsError as error:
        found = str(error).split(". ", 1)[0].rstrip(".")
        raise ConfigurationError(
            f"{where}: no Google Cloud credentials ({found}): run `gcloud auth "
            "application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from None
    except Exception as error:  # requests' and google's transport errors: no common base
        if not type(error).__module__.startswith(("google.", "requests.", "urllib3.")):
            raise
        raise ConfigurationError(
            f"{where}: BigQuery did not answer: {describe_request_error(error)}: check the "
            "network, the credentials and BIGQUERY_EMULATOR_HOST"
        ) from None


def _check(config: SinkConfig) -> None:
    check_dataset(*bigquery_dataset(str(config[WAREHOUSE.name])))


def _check_flags(config: SinkConfig) -> None:
    bigquery_dataset(str(config[WAREHOUSE.name]))
    missing = [t for t in PERSONAL_RECORD_TYPES if t not in config.taken()]
    if missing:
        flags = [
            " or ".join(
                sink.flags[0].option
                for sink in config.sinks
                if t in sink.takes and not sink.warehouse
            )
            or f"a sink for {table_of(t).name}"
            for t in missing
        ]
        raise ValueError(
            f"a BigQuery warehouse holds no personal data, so "
            f"{', '.join(table_of(t).name for t in missing)} need sinks of their own: "
            f"missing {', '.join(flags)}"
        )


def _write(config: SinkConfig, pcolls: Mapping[type, PCollection]) -> None:
    project, dataset = bigquery_dataset(str(config[WAREHOUSE.name]))
    bounded = all(pcoll.is_bounded for pcoll in pcolls.values())
    to_write = dict(pcolls)
    # Analysts query BigQuery: a dead letter's raw input loses its personal
    # data there (its `source` says where the full record can be read again).
    to_write[DeadLetter] = to_write[DeadLetter] | "RedactPersonalData" >> beam.Map(redacted)
    _ = to_write | "WriteToBigQuery" >> WriteToWarehouseBigQuery(
        project,
        dataset,
        "FILE_LOADS" if bounded else "STREAMING_INSERTS",
        temp_location=config.temp_location,
    )


#: The analysts' warehouse: `--warehouse bigquery:PROJECT.DATASET`. Every record type
#: with personal data must have a sink of its own (`PERSONAL_RECORD_TYPES`).
SINK = Sink(
    name="bigquery",
    flags=(WAREHOUSE,),
    write=_write,
    check_flags=_check_flags,
    check=_check,
    selected_when=lambda config: str(config[WAREHOUSE.name]).startswith(BIGQUERY_PREFIX),
    warehouse=True,
)
