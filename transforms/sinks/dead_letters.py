"""The `dead_letters` table seen from `pipelines.redrive`: select, claim, resolve, release.

    store = letter_store("out/warehouse.duckdb")        # or "bigquery:P.D"
    letters = store.select(Selection(reasons=("charge_missing",)))
    store.claim(ids, run_id)       # before the run
    store.resolve(ids, run_id, at) # after it: the letters still claimed are resolved

Marks, not removal: a resolved letter keeps its row, with `redriven_at` and
`redrive_run_id` set, so the table stays the audit trail of what failed and
when it was fixed (it only grows by what fails). How a claim works: before
the run each selected letter gets `redrive_run_id`; the run's writers write
every letter they produce with both columns null, so a letter that fails
again (same step, source and raw, hence the same `dead_letter_id`) is
pending again, unclaimed. After a successful run, the letters still claimed
are the resolved ones. A run that dies half-way leaves claims with a null
`redriven_at`: still pending, and selected again by the next re-drive.

DuckDB: UPDATEs in one short-lived connection each (the pipeline's writer
opens the file only while no claim is being made). BigQuery (append-only
`<table>_raw` behind a latest-row-per-key view, `transforms.sinks.bigquery`):
a claim or a mark appends a copy of the row with the new values and a later
`_written_at`, which the view then shows.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import apache_beam as beam
import duckdb
from apache_beam.pvalue import PCollection

from schemas.generate import columns, table_of
from schemas.records import Contribution, DeadLetter
from schemas.rows import natural_key, to_bigquery_json_row
from schemas.table import step_name
from schemas.views import WRITTEN_AT, raw_table_name
from transforms.sinks.common import BIGQUERY_PREFIX

_TABLE = table_of(DeadLetter).name
_NAMES = tuple(c.name for c in columns(DeadLetter))


@dataclass(frozen=True)
class Selection:
    """Which letters to re-drive; every given criterion must hold (empty = any).

    `since <= time < until` applies to letters with a `time`; payment letters
    have none, so a time range leaves them out. Resolved letters are left out
    unless `include_redriven`.
    """

    steps: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    include_redriven: bool = False

    def where(self, placeholder: Placeholder) -> tuple[str, dict[str, Any]]:
        """A WHERE clause and its parameters; `placeholder(name)` spells a parameter."""
        conditions = ["TRUE"]
        parameters: dict[str, Any] = {}
        for column, values in (("step", self.steps), ("reason", self.reasons)):
            if values:
                conditions.append(f"{column} IN ({_list(placeholder, column, values, parameters)})")
        if self.ids:
            conditions.append(
                f"dead_letter_id IN ({_list(placeholder, 'id', self.ids, parameters)})"
            )
        if self.since is not None:
            parameters["since"] = self.since
            conditions.append(f"time >= {placeholder('since')}")
        if self.until is not None:
            parameters["until"] = self.until
            conditions.append(f"time < {placeholder('until')}")
        if not self.include_redriven:
            conditions.append("redriven_at IS NULL")
        return " AND ".join(conditions), parameters


class Placeholder(Protocol):
    """How a query dialect spells the parameter `name` (`$name`, `@name`)."""

    def __call__(self, name: str) -> str: ...


def _list(
    placeholder: Placeholder, prefix: str, values: Sequence[str], parameters: dict[str, Any]
) -> str:
    names = [f"{prefix}{index}" for index in range(len(values))]
    parameters.update(zip(names, values, strict=True))
    return ", ".join(placeholder(name) for name in names)


class LetterStore(Protocol):
    def select(self, selection: Selection) -> list[DeadLetter]: ...
    def claim(self, letters: Sequence[DeadLetter], run_id: str) -> None: ...
    def resolve(self, ids: Sequence[str], run_id: str, at: datetime) -> set[str]: ...
    def release(self, ids: Sequence[str], run_id: str) -> None: ...
    def paid_or_failed(self, payment_intents: Iterable[str]) -> set[str]: ...
    def settled_at(self, payment_ids: Iterable[str]) -> dict[str, datetime]:
        """{charge id: the contribution's `created` (UTC)} of the charges the warehouse has."""
        ...

    def pending_ids(self) -> set[str]: ...
    def claimed(self, ids: Sequence[str], run_id: str) -> set[str]: ...


def letter_store(warehouse: str) -> LetterStore:
    """The store for `--warehouse`: a DuckDB file, or `bigquery:PROJECT.DATASET`."""
    if warehouse.startswith(BIGQUERY_PREFIX):
        project, _, dataset = warehouse[len(BIGQUERY_PREFIX) :].partition(".")
        return BigQueryLetters(project, dataset)
    return DuckDBLetters(warehouse)


def _letter(row: Sequence[Any]) -> DeadLetter:
    values = dict(zip(_NAMES, row, strict=True))
    for name in ("time", "redriven_at"):
        moment = values[name]
        if isinstance(moment, datetime):
            values[name] = moment.astimezone(UTC)
    return DeadLetter(**values)


class _ContributionLookups(ABC):
    """What the re-drive asks of the warehouse's contributions, the same on either warehouse."""

    @abstractmethod
    def _contributions(self, selected: str, key: str, wanted: list[str]) -> list[Any]:
        """The `selected` columns of the contributions whose `key` is one of `wanted`."""

    def _lookup(self, selected: str, key: str, ids: Iterable[str]) -> list[Any]:
        wanted = sorted(set(ids))
        return self._contributions(selected, key, wanted) if wanted else []

    def paid_or_failed(self, payment_intents: Iterable[str]) -> set[str]:
        rows = self._lookup("DISTINCT payment_intent_id", "payment_intent_id", payment_intents)
        return {row[0] for row in rows}

    def settled_at(self, payment_ids: Iterable[str]) -> dict[str, datetime]:
        rows = self._lookup("payment_id, created", "payment_id", payment_ids)
        return {row[0]: row[1].astimezone(UTC) for row in rows}


class DuckDBLetters(_ContributionLookups):
    def __init__(self, path: str) -> None:
        self._path = path

    def _connect(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        connection = duckdb.connect(self._path, read_only=read_only)
        connection.execute("SET TimeZone = 'UTC'")
        return connection

    def select(self, selection: Selection) -> list[DeadLetter]:
        where, parameters = selection.where(lambda name: f"${name}")
        with self._connect(read_only=True) as connection:
            # A warehouse written before the redrive columns existed gets them on its next load.
            present = {
                name
                for (name,) in connection.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                    [_TABLE],
                ).fetchall()
            }
            if "redriven_at" not in present:
                raise ValueError(
                    f"{self._path}: {_TABLE} has no redriven_at column yet; run any backfill "
                    "into it once (it adds the column) before re-driving"
                )
            rows = connection.execute(
                f'SELECT {", ".join(_NAMES)} FROM "{_TABLE}" WHERE {where} '
                "ORDER BY time NULLS LAST, dead_letter_id",
                parameters,
            ).fetchall()
        return [_letter(row) for row in rows]

    def claim(self, letters: Sequence[DeadLetter], run_id: str) -> None:
        self._update(
            "redrive_run_id = $run, redriven_at = NULL", [d.dead_letter_id for d in letters], run_id
        )

    def resolve(self, ids: Sequence[str], run_id: str, at: datetime) -> set[str]:
        if not ids:
            return set()
        with self._connect(read_only=False) as connection:
            rows = connection.execute(
                f'UPDATE "{_TABLE}" SET redriven_at = $at '
                "WHERE redrive_run_id = $run AND redriven_at IS NULL "
                "AND dead_letter_id IN (SELECT unnest($ids)) RETURNING dead_letter_id",
                {"at": at, "run": run_id, "ids": list(ids)},
            ).fetchall()
        return {row[0] for row in rows}

    def release(self, ids: Sequence[str], run_id: str) -> None:
        with self._connect(read_only=False) as connection:
            connection.execute(
                f'UPDATE "{_TABLE}" SET redrive_run_id = NULL '
                "WHERE redrive_run_id = $run AND redriven_at IS NULL "
                "AND dead_letter_id IN (SELECT unnest($ids))",
                {"run": run_id, "ids": list(ids)},
            )

    def _update(self, assignments: str, ids: Sequence[str], run_id: str) -> None:
        if not ids:
            return
        with self._connect(read_only=False) as connection:
            connection.execute(
                f'UPDATE "{_TABLE}" SET {assignments} '
                "WHERE dead_letter_id IN (SELECT unnest($ids))",
                {"run": run_id, "ids": list(ids)},
            )

    def _contributions(self, selected: str, key: str, wanted: list[str]) -> list[Any]:
        table = table_of(Contribution).name
        with self._connect(read_only=True) as connection:
            return connection.execute(
                f'SELECT {selected} FROM "{table}" WHERE {key} IN (SELECT unnest($ids))',
                {"ids": wanted},
            ).fetchall()

    def claimed(self, ids: Sequence[str], run_id: str) -> set[str]:
        """Which of `ids` are still claimed by `run_id` (not rewritten, not yet marked)."""
        if not ids:
            return set()
        with self._connect(read_only=True) as connection:
            rows = connection.execute(
                f'SELECT dead_letter_id FROM "{_TABLE}" WHERE redrive_run_id = $run '
                "AND redriven_at IS NULL AND dead_letter_id IN (SELECT unnest($ids))",
                {"run": run_id, "ids": list(ids)},
            ).fetchall()
        return {row[0] for row in rows}

    def pending_ids(self) -> set[str]:
        with self._connect(read_only=True) as connection:
            rows = connection.execute(
                f'SELECT dead_letter_id FROM "{_TABLE}" WHERE redriven_at IS NULL'
            ).fetchall()
        return {row[0] for row in rows}


class BigQueryLetters(_ContributionLookups):
    def __init__(self, project: str, dataset: str) -> None:
        from google.cloud import bigquery

        self._bigquery = bigquery
        self._client = bigquery.Client(project=project)
        self._dataset = f"{project}.{dataset}"

    def _query(self, sql: str, parameters: dict[str, Any]) -> list[Any]:
        bigquery = self._bigquery
        typed = []
        for name, value in parameters.items():
            if isinstance(value, list):
                typed.append(bigquery.ArrayQueryParameter(name, "STRING", value))
            elif isinstance(value, datetime):
                typed.append(bigquery.ScalarQueryParameter(name, "TIMESTAMP", value))
            else:
                typed.append(bigquery.ScalarQueryParameter(name, "STRING", value))
        config = bigquery.QueryJobConfig(query_parameters=typed)
        return list(self._client.query(sql, job_config=config).result())

    def select(self, selection: Selection) -> list[DeadLetter]:
        where, parameters = selection.where(lambda name: f"@{name}")
        rows = self._query(
            f"SELECT {', '.join(_NAMES)} FROM `{self._dataset}.{_TABLE}` WHERE {where} "
            "ORDER BY time, dead_letter_id",
            parameters,
        )
        return [_letter(tuple(row.values())) for row in rows]

    def _append(self, letters: Iterable[DeadLetter]) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        rows = [{**to_bigquery_json_row(letter), WRITTEN_AT: stamp} for letter in letters]
        if not rows:
            return
        errors = self._client.insert_rows_json(
            f"{self._dataset}.{raw_table_name(DeadLetter)}", rows
        )
        if errors:
            raise RuntimeError(f"BigQuery refused {len(errors)} dead-letter marks: {errors[:1]}")

    def _current(self, ids: Sequence[str]) -> list[DeadLetter]:
        return self.select(Selection(ids=tuple(ids), include_redriven=True)) if ids else []

    def claim(self, letters: Sequence[DeadLetter], run_id: str) -> None:
        self._append(
            dataclasses.replace(d, redrive_run_id=run_id, redriven_at=None) for d in letters
        )

    def resolve(self, ids: Sequence[str], run_id: str, at: datetime) -> set[str]:
        claimed = [
            d for d in self._current(ids) if d.redrive_run_id == run_id and d.redriven_at is None
        ]
        self._append(dataclasses.replace(d, redriven_at=at) for d in claimed)
        return {d.dead_letter_id for d in claimed}

    def release(self, ids: Sequence[str], run_id: str) -> None:
        claimed = [
            d for d in self._current(ids) if d.redrive_run_id == run_id and d.redriven_at is None
        ]
        self._append(dataclasses.replace(d, redrive_run_id=None) for d in claimed)

    def claimed(self, ids: Sequence[str], run_id: str) -> set[str]:
        return {
            d.dead_letter_id
            for d in self._current(ids)
            if d.redrive_run_id == run_id and d.redriven_at is None
        }

    def pending_ids(self) -> set[str]:
        rows = self._query(
            f"SELECT dead_letter_id FROM `{self._dataset}.{_TABLE}` WHERE redriven_at IS NULL", {}
        )
        return {row[0] for row in rows}

    def _contributions(self, selected: str, key: str, wanted: list[str]) -> list[Any]:
        table = f"{self._dataset}.{table_of(Contribution).name}"
        return self._query(
            f"SELECT {selected} FROM `{table}` WHERE {key} IN UNNEST(@ids)", {"ids": wanted}
        )


def _describe(record: Any) -> str:
    if isinstance(record, DeadLetter):
        return f"{_TABLE}\t{record.dead_letter_id} {record.step}/{record.reason} {record.source}"
    record_type: type = type(record)
    key = "/".join(str(part) for part in natural_key(record))
    return f"{table_of(record_type).name}\t{key}"


class DescribeOutputs(beam.PTransform):
    """{record type: PCollection} -> text files of `<table>\t<natural key>`, one line per record.

    What `pipelines.redrive --dry_run` prints instead of writing: keys only,
    never a row's personal data. Files `<prefix>*`, local.
    """

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def expand(self, pcolls: Mapping[type, PCollection]) -> PCollection:
        lines = [
            pcoll | f"Describe{step_name(table_of(record_type).name)}" >> beam.Map(_describe)
            for record_type, pcoll in pcolls.items()
        ]
        return (
            tuple(lines)
            | "MergeDescriptions" >> beam.Flatten()
            | "WriteDescriptions" >> beam.io.WriteToText(self._prefix)
        )
