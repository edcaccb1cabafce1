"""Write the operational contributions store (Postgres): payments, refunds and disputes.

    {ContributionStoreRecord: records, PaymentAdjustment: adjustments}
        | WriteToContributionsStore(dsn)   -> ContributionsStoreResult(written, dead_letters)

How a write works. Both inputs are flattened and cut into batches of at most
`max_batch_size` records (`BatchElements`, per bundle and window). Each record
is checked with `schemas.rows.validate`; then each batch is written in one
transaction:

1. `pg_advisory_xact_lock` on every payment id of the batch, in a fixed order.
   Two batches touching the same payment (its payment row in one, its refund
   in the other) thus commit one after the other, and the second sees the
   first's rows when it reconciles; without it each would reconcile before
   the other committed and a refund could be missed for good.
2. `INSERT ... ON CONFLICT (<TABLE.key>) DO UPDATE` of every record into
   `contributions_store` (key `payment_id`) and `payment_adjustments` (key
   `adjustment_id`). Records sharing a key within a batch are reduced to one
   first, the greatest by all columns in declaration order, as the DuckDB
   warehouse does, so the winner never depends on arrival order.
3. The store half of `transforms.domain.reconciliation`'s UPDATEs, limited to the
   batch's payment ids: a payment becomes `Refunded` once its refunds reach
   its amount, whichever arrived first; a partial refund keeps `Paid`;
   `Failed` stays `Failed`. A dispute alone does not change the status.

Failures:

- A record failing `validate` -> dead letter, reason `invalid_row` (as in every writer).
- A record Postgres (or the driver) rejects as data (SQLSTATE classes 22 and
  23: numeric overflow, NUL bytes in text, a constraint) -> the batch is
  rolled back and redone row by row, each row under a savepoint, so only the
  bad row becomes a dead letter (reason `rejected_by_postgres`, with the
  SQLSTATE and Postgres's primary message, never its DETAIL, which may quote
  the row) and the others are written.
- A dropped connection or a transient server error (`psycopg.OperationalError`:
  shutdown, restart, failover, deadlock, serialization failure; a server that
  went silent, found by `KEEPALIVE_PARAMETERS` in about 30 s) -> the
  connection is thrown away and the whole batch transaction is retried on a
  new one, after an exponential backoff with full jitter (`Backoff`). When
  the attempts run out, `ContributionsStoreError` fails the bundle and the
  runner retries it; idempotency makes that safe.

Delivery guarantee: effectively once per natural key. Every statement is an
upsert or a reconciliation that reaches the same state when repeated, so a
retried batch or bundle, a replayed run or a redelivered record leaves the
same rows. Every input record is written or dead-lettered, never dropped.

Tables are created when missing from `schemas.generate.postgres_ddl`, once
per worker in `DoFn.setup()`, under an advisory lock because concurrent
`CREATE TABLE IF NOT EXISTS` can still fail with a unique violation on the
catalog. `payment_adjustments` also gets an index on its clustering column
(`payment_id`), which the reconciliation looks adjustments up by.

The DSN (libpq key/value or URL) may hold a password: it is never logged, and
every message this module logs or raises has the password masked
(`DsnMask`). Logs and counters carry table names, counts, SQLSTATEs and error
classes only, never row values. Tests: `.venv/bin/pytest tests/transforms/sinks/test_postgres.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput

from schemas.generate import columns, postgres_ddl, table_of
from schemas.records import (
    ContributionStoreRecord,
    DeadLetter,
    PaymentAdjustment,
)
from schemas.rows import natural_key, to_row
from transforms.domain.reconciliation import store_reconciliation_update
from transforms.infrastructure import Backoff, ConfigurationError, InfrastructureError
from transforms.sinks.common import invalid_row, rejected_record
from transforms.sinks.contract import Flag, Sink, SinkConfig

if TYPE_CHECKING:
    # Imported where used at run time: a job without this sink does not load psycopg.
    import psycopg

_LOG = logging.getLogger(__name__)

#: The `step` of every dead letter this writer emits.
WRITE_STEP = "write_contributions_store"
#: Postgres rejected the row (a record failing `validate` is `common.INVALID_ROW`).
REJECTED_BY_POSTGRES = "rejected_by_postgres"

WRITTEN_TAG = "written"
DEAD_LETTERS_TAG = "dead_letters"

#: The record types this writer takes, in the order their tables are created.
RECORD_TYPES: tuple[type, ...] = (ContributionStoreRecord, PaymentAdjustment)

_METRICS_NAMESPACE = "WriteToContributionsStore"
_CONNECT_TIMEOUT_SECONDS = 10
#: A connection whose server vanished (a failover, a dropped NAT entry) is found dead by the
#: kernel instead of waited on for hours: TCP keepalives probe an idle socket after 10 s,
#: every 5 s, 3 times (about 25 s), and data left unacknowledged for 30 s (the AWS clients'
#: read timeout) closes it. The writer then retries the batch on a new connection. No
#: statement_timeout: a batch may rightly wait for another's advisory lock.
KEEPALIVE_PARAMETERS: Mapping[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds
}
_MASK = "********"
# Advisory lock key serialising table creation across workers.
_DDL_LOCK_KEY = 0x636F6E7472696275  # "contribu"


class ContributionsStoreError(InfrastructureError):
    """Writing to the contributions store failed; the message never holds the password."""


#: Rides out a Postgres restart or failover of ten seconds or so.
STORE_BACKOFF = Backoff(initial_delay=0.2, max_delay=5.0)


class DsnMask:
    """Masks a DSN's password in any text, and names the server without it.

    The password is found by libpq's own parser (key/value or URL form), and
    masked as written and percent-encoded. A DSN libpq cannot parse is masked
    whole, along with anything after `password=` or between `:` and `@`; and
    since libpq quotes the offending token of such a DSN in its error (an
    invalid percent-escape in the password quotes the password), every
    double-quoted token of a message about it is masked too.
    """

    def __init__(self, dsn: str) -> None:
        import psycopg

        self._secrets: tuple[str, ...]
        self._unparsable = False
        try:
            params = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.Error:
            self._unparsable = True
            secrets = {dsn, *_written_passwords(dsn)}
            self._secrets = tuple(sorted((s for s in secrets if s), key=len, reverse=True))
            self.server = "an unparsable DSN"
            return
        password = str(params.get("password") or "")
        secrets = {password, urllib.parse.quote(password), urllib.parse.quote_plus(password)}
        # Longest first, so a secret containing another is masked whole.
        self._secrets = tuple(sorted((s for s in secrets if s), key=len, reverse=True))
        host = params.get("host") or params.get("hostaddr") or "localhost"
        port = params.get("port") or "5432"
        self.server = f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        if self._unparsable:
            text = re.sub(r'"[^"]*"', f'"{_MASK}"', text)
        text = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", rf"\1{_MASK}", text)
        return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", rf"\1{_MASK}@", text)


def _written_passwords(dsn: str) -> set[str]:
    """The password of a DSN libpq cannot parse, as written and percent-decoded."""
    found = set()
    url = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)@", dsn)
    if url and ":" in url.group(1):
        found.add(url.group(1).split(":", 1)[1])
    for match in re.finditer(r"password\s*=\s*('(?:[^'\\]|\\.)*'?|\S+)", dsn):
        found.add(match.group(1).strip("'"))
    return found | {urllib.parse.unquote(secret) for secret in found}


class ContributionsStoreResult(NamedTuple):
    """The outputs of `WriteToContributionsStore` (a NamedTuple so Beam records the names)."""

    written: PCollection[tuple[str, int]]
    dead_letters: PCollection[DeadLetter]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# Limits the reconciliation to the batch's payments, bound as a text[].
_PAYMENT_FILTER = "payment_id = ANY(%(payment_ids)s)"
_STORE_RECONCILIATION = store_reconciliation_update(
    _quote(table_of(ContributionStoreRecord).name),
    _quote(table_of(PaymentAdjustment).name),
    payment_filter=_PAYMENT_FILTER,
)


def upsert_sql(record_type: type) -> str:
    """`INSERT ... ON CONFLICT (<key>) DO UPDATE` of one row, `%s` per column in order."""
    table = table_of(record_type)
    names = [c.name for c in columns(record_type)]
    updates = ", ".join(f"{_quote(n)} = EXCLUDED.{_quote(n)}" for n in names if n not in table.key)
    return (
        f"INSERT INTO {_quote(table.name)} ({', '.join(_quote(n) for n in names)})\n"
        f"VALUES ({', '.join('%s' for _ in names)})\n"
        f"ON CONFLICT ({', '.join(_quote(k) for k in table.key)}) DO UPDATE SET {updates}"
    )


def create_tables_sql() -> str:
    """The DDL of both tables plus the `payment_adjustments(payment_id)` index."""
    statements = [postgres_ddl(record_type) for record_type in RECORD_TYPES]
    adjustments = table_of(PaymentAdjustment)
    indexed = ", ".join(_quote(c) for c in adjustments.cluster_by)
    index = _quote(f"{adjustments.name}_{'_'.join(adjustments.cluster_by)}_idx")
    statements.append(
        f"CREATE INDEX IF NOT EXISTS {index} ON {_quote(adjustments.name)} ({indexed});\n"
    )
    return "".join(statements)


def _lock_key(payment_id: str) -> int:
    return int.from_bytes(hashlib.sha256(payment_id.encode()).digest()[:8], "big", signed=True)


def _order_key(row: Sequence[Any]) -> tuple[tuple[bool, Any], ...]:
    # None sorts first and is never compared with a value.
    return tuple((value is not None, value) for value in row)


@dataclass(frozen=True)
class _Row:
    record: Any
    table: str
    values: tuple[Any, ...]


class _Rejected(NamedTuple):
    row: _Row
    error: psycopg.Error


class _WriteBatchesFn(beam.DoFn):
    """`list[ContributionStoreRecord | PaymentAdjustment]` -> `(table, rows upserted)`.

    One transaction per batch (see the module docstring). Main output: per
    batch, `(table name, rows upserted)` for each table the batch wrote to.
    Output `dead_letters`: a `DeadLetter` per record not written. Raises
    TypeError for an element of another type (a wiring bug, not bad data)
    and `ContributionsStoreError` when the batch still fails after retries.
    """

    def __init__(self, dsn: str, backoff: Backoff) -> None:
        self._dsn = dsn
        self._backoff = backoff
        self._connection: psycopg.Connection[Any] | None = None

    def setup(self) -> None:
        self._mask = DsnMask(self._dsn)
        self._rng = random.Random()
        self._tables = {t: table_of(t).name for t in RECORD_TYPES}
        self._upserts = {table_of(t).name: upsert_sql(t) for t in RECORD_TYPES}
        self._written = {
            name: Metrics.counter(_METRICS_NAMESPACE, f"rows_written_{name}")
            for name in self._tables.values()
        }
        self._rejected = Metrics.counter(_METRICS_NAMESPACE, "rows_dead_lettered")
        self._retried = Metrics.counter(_METRICS_NAMESPACE, "batch_retries")
        self._with_retries("create tables", self._create_tables)

    def teardown(self) -> None:
        self._close()

    def process(self, batch: list[Any]) -> Iterator[Any]:
        rows: dict[tuple[str, tuple[Any, ...]], _Row] = {}
        for record in batch:
            table = self._tables.get(type(record))
            if table is None:
                raise TypeError(
                    f"WriteToContributionsStore: a {type(record).__name__} among "
                    f"{', '.join(t.__name__ for t in RECORD_TYPES)} records"
                )
            letter = invalid_row(
                record,
                step=WRITE_STEP,
                source=_source(record, table),
                event_id=_event_id(record),
            )
            if letter is not None:
                self._rejected.inc()
                yield TaggedOutput(DEAD_LETTERS_TAG, letter)
                continue
            row = _Row(record, table, tuple(to_row(record).values()))
            key = (table, natural_key(record))
            kept = rows.get(key)
            if kept is None or _order_key(row.values) > _order_key(kept.values):
                rows[key] = row
        if not rows:
            return
        # Sorted so that concurrent batches take row locks in one order too.
        ordered = sorted(rows.values(), key=lambda r: (r.table, _order_key(r.values)))
        rejected: list[_Rejected] = self._with_retries(
            f"write a batch of {len(ordered)} rows", lambda c: self._write(c, ordered)
        )
        rejected_rows = {id(r.row) for r in rejected}
        counts: dict[str, int] = {}
        for row in ordered:
            if id(row) not in rejected_rows:
                counts[row.table] = counts.get(row.table, 0) + 1
        for item in rejected:
            diag = item.error.diag
            sqlstate = item.error.sqlstate or "client"
            # The primary message only: DETAIL may quote the row's values.
            message = diag.message_primary or str(item.error)
            yield self._dead_letter(
                item.row.record,
                item.row.table,
                REJECTED_BY_POSTGRES,
                f"{item.row.table}: {sqlstate} {self._mask(message)}",
            )
        for table, count in counts.items():
            self._written[table].inc(count)
            yield table, count

    def _write(self, connection: psycopg.Connection[Any], rows: list[_Row]) -> list[_Rejected]:
        """Write `rows` in one transaction; returns the rows Postgres rejected as data."""
        import psycopg

        try:
            with connection.transaction(), connection.cursor() as cursor:
                self._lock_payments(cursor, rows)
                for table, upsert in self._upserts.items():
                    values = [r.values for r in rows if r.table == table]
                    if values:
                        cursor.executemany(upsert, values)
                self._reconcile(cursor, rows)
            return []
        except (psycopg.DataError, psycopg.IntegrityError):
            # Some row is bad: find it, without losing the others.
            return self._write_row_by_row(connection, rows)

    def _write_row_by_row(
        self, connection: psycopg.Connection[Any], rows: list[_Row]
    ) -> list[_Rejected]:
        """Write `rows` in one transaction, each under a savepoint; returns the rejected ones."""
        import psycopg

        rejected: list[_Rejected] = []
        with connection.transaction(), connection.cursor() as cursor:
            self._lock_payments(cursor, rows)
            for row in rows:
                try:
                    with connection.transaction():
                        cursor.execute(self._upserts[row.table], row.values)
                except (psycopg.DataError, psycopg.IntegrityError) as error:
                    rejected.append(_Rejected(row, error))
            self._reconcile(cursor, rows)
        return rejected

    def _lock_payments(self, cursor: psycopg.Cursor[Any], rows: list[_Row]) -> None:
        keys = sorted({_lock_key(r.record.payment_id) for r in rows})
        # unnest yields in array order, so every batch locks in ascending key order.
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", (keys,)
        )

    def _reconcile(self, cursor: psycopg.Cursor[Any], rows: list[_Row]) -> None:
        payment_ids = sorted({r.record.payment_id for r in rows})
        cursor.execute(_STORE_RECONCILIATION, {"payment_ids": payment_ids})

    def _create_tables(self, connection: psycopg.Connection[Any]) -> None:
        with connection.transaction(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
            cursor.execute(create_tables_sql())

    def _with_retries(self, what: str, work: Any) -> Any:
        """`work(connection)` on a live connection, retried per `Backoff` on connection loss.

        Any psycopg error that is still there after the last attempt, or that
        is not an `OperationalError`, is raised as `ContributionsStoreError`
        with the password masked (and without the original as its cause,
        whose text is not masked).
        """
        import psycopg

        attempt = 1
        while True:
            try:
                return work(self._connect())
            except psycopg.OperationalError as error:
                self._close()
                description = self._describe(error)
                if attempt >= self._backoff.max_attempts:
                    raise ContributionsStoreError(
                        f"Could not {what} in the contributions store at {self._mask.server} "
                        f"after {attempt} attempts: {description}"
                    ) from None
                delay = self._backoff.delay(attempt, self._rng)
                _LOG.warning(
                    "Could not %s in the contributions store at %s (attempt %d of %d): %s; "
                    "retrying in %.2fs",
                    what,
                    self._mask.server,
                    attempt,
                    self._backoff.max_attempts,
                    description,
                    delay,
                )
                self._retried.inc()
                time.sleep(delay)
                attempt += 1
            except psycopg.Error as error:
                raise ContributionsStoreError(
                    f"Could not {what} in the contributions store at {self._mask.server}: "
                    f"{self._describe(error)}"
                ) from None

    def _describe(self, error: psycopg.Error) -> str:
        sqlstate = f" [{error.sqlstate}]" if error.sqlstate else ""
        return self._mask(f"{type(error).__name__}{sqlstate}: {error}".strip())

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        connection = self._connection
        if connection is None or connection.closed or connection.broken:
            self._close()
            params = connection_parameters(self._dsn, _CONNECT_TIMEOUT_SECONDS)
            connection = self._connection = psycopg.connect(self._dsn, autocommit=True, **params)
        return connection

    def _close(self) -> None:
        import psycopg

        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                connection.close()

    def _dead_letter(self, record: Any, table: str, reason: str, error: str) -> TaggedOutput:
        self._rejected.inc()
        return TaggedOutput(
            DEAD_LETTERS_TAG,
            rejected_record(
                record,
                step=WRITE_STEP,
                reason=reason,
                error=error,
                source=_source(record, table),
                event_id=_event_id(record),
            ),
        )


def _source(record: Any, table: str) -> str:
    return f"contributions_store:{table}/{'/'.join(map(str, natural_key(record)))}"


def _event_id(record: Any) -> str | None:
    return record.adjustment_id if isinstance(record, PaymentAdjustment) else None


class WriteToContributionsStore(beam.PTransform):
    """Upserts payments and their refunds/disputes into the Postgres contributions store.

    Input: a dict `{ContributionStoreRecord: PCollection, PaymentAdjustment:
    PCollection}` (either key may be left out; bounded or unbounded, any
    windowing), applied as `pcolls | WriteToContributionsStore(dsn)`. A dict
    rather than one mixed collection, as `WriteToWarehouse` takes, so the
    element type of each input is declared by its key.

    Output `ContributionsStoreResult`:

    - `written`: `(table name, rows upserted)` per committed batch and table
      it wrote to, in the batch's window; sum per key for totals.
    - `dead_letters`: a `DeadLetter` (step `write_contributions_store`,
      reason `invalid_row` or `rejected_by_postgres`) per record not written.

    Every input record is on exactly one of the two (a record replacing
    another with the same key in one batch counts once). Guarantee,
    transactions, reconciliation, retries and DSN masking: see the module
    docstring. `max_batch_size` and `backoff` tune the writes and never
    change the result. Metrics (namespace `WriteToContributionsStore`):
    `rows_written_<table>`, `rows_dead_lettered`, `batch_retries`.
    """

    def __init__(
        self, dsn: str, *, max_batch_size: int = 500, backoff: Backoff = STORE_BACKOFF
    ) -> None:
        super().__init__()
        if not dsn:
            raise ValueError("dsn is required")
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._dsn = dsn
        self._max_batch_size = max_batch_size
        self._backoff = backoff

    def __repr__(self) -> str:
        # Beam puts a transform's repr in display data and error messages.
        return f"WriteToContributionsStore({DsnMask(self._dsn).server})"

    def expand(self, pcolls: Mapping[type, PCollection]) -> ContributionsStoreResult:
        if not isinstance(pcolls, Mapping) or not pcolls:
            raise TypeError(
                "WriteToContributionsStore takes a non-empty {record type: PCollection} dict"
            )
        unknown = [t for t in pcolls if t not in RECORD_TYPES]
        if unknown:
            raise TypeError(
                f"WriteToContributionsStore takes only {[t.__name__ for t in RECORD_TYPES]}, "
                f"not {[getattr(t, '__name__', t) for t in unknown]}"
            )
        inputs = [pcolls[t] for t in RECORD_TYPES if t in pcolls]
        # A Flatten of one input is skipped: it would stop the runner from
        # fusing the writer with its producer.
        records = inputs[0] if len(inputs) == 1 else inputs | "FlattenRecords" >> beam.Flatten()
        outputs = (
            records
            | "BatchRecords"
            >> beam.BatchElements(
                min_batch_size=self._max_batch_size, max_batch_size=self._max_batch_size
            )
            | "WriteBatches"
            >> beam.ParDo(_WriteBatchesFn(self._dsn, self._backoff)).with_outputs(
                DEAD_LETTERS_TAG, main=WRITTEN_TAG
            )
        )
        return ContributionsStoreResult(
            written=outputs[WRITTEN_TAG], dead_letters=outputs[DEAD_LETTERS_TAG]
        )


#: Where the options layer looks for the DSN when `--contributions_store` is not given.
CONTRIBUTIONS_STORE_ENV = "CONTRIBUTIONS_STORE_DSN"
CONTRIBUTIONS_STORE = Flag(
    "contributions_store",
    "Postgres DSN of the contributions store (postgresql://user@host/db). "
    f"Default: the {CONTRIBUTIONS_STORE_ENV} environment variable, else the "
    "warehouse. Prefer the variable or a password file (PGPASSFILE): a password on "
    "the command line is visible to other users of the machine. Never logged.",
    env=CONTRIBUTIONS_STORE_ENV,
    secret=True,
)


def _write(config: SinkConfig, pcolls: Mapping[type, PCollection]) -> PCollection:
    dsn = str(config[CONTRIBUTIONS_STORE.name])
    store = pcolls | "WriteToContributionsStore" >> WriteToContributionsStore(dsn)
    return store.dead_letters


#: The DSN schemes libpq reads as a URL; a DSN without `scheme://` is libpq's key=value form.
DSN_SCHEMES = ("postgresql", "postgres")
#: How long the pre-launch check waits for the store to answer.
CHECK_CONNECT_TIMEOUT_SECONDS = 5


def connection_parameters(dsn: str, connect_timeout: int) -> dict[str, Any]:
    """libpq parameters bounding every wait on the store: `connect_timeout` seconds to
    connect, `KEEPALIVE_PARAMETERS` once connected. Those `dsn` sets itself are left to it."""
    from psycopg import conninfo

    given = conninfo.conninfo_to_dict(dsn)
    wanted = {"connect_timeout": connect_timeout, **KEEPALIVE_PARAMETERS}
    return {name: value for name, value in wanted.items() if name not in given}


def check_dsn(dsn: str) -> None:
    """ValueError, the password masked, unless `dsn` is a Postgres URL or key=value DSN."""
    import psycopg
    from psycopg import conninfo

    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", dsn)
    flag = CONTRIBUTIONS_STORE.option
    if scheme and scheme.group(1).lower() not in DSN_SCHEMES:
        raise ValueError(
            f"{flag} takes a Postgres DSN (postgresql://... or host=... dbname=...), "
            f"not a {scheme.group(1)}:// one"
        )
    try:
        conninfo.conninfo_to_dict(dsn)
    except psycopg.Error as error:
        mask = DsnMask(dsn)
        raise ValueError(f"{flag} is not a valid Postgres DSN: {mask(str(error))}") from None


def check_store(dsn: str) -> None:
    """`ConfigurationError` (password masked) unless the store accepts a connection now."""
    import psycopg

    mask = DsnMask(dsn)
    params = connection_parameters(dsn, CHECK_CONNECT_TIMEOUT_SECONDS)
    try:
        psycopg.connect(dsn, autocommit=True, **params).close()
    except psycopg.Error as error:
        raise ConfigurationError(
            f"{CONTRIBUTIONS_STORE.option}: cannot connect to the contributions store at "
            f"{mask.server}: {mask(f'{type(error).__name__}: {error}')}"
        ) from None


#: The contributions store takes the store records and reads the adjustments, which
#: fold into the payment's status (they still go to the warehouse too).
SINK = Sink(
    name="contributions_store",
    flags=(CONTRIBUTIONS_STORE,),
    write=_write,
    takes=(ContributionStoreRecord,),
    reads=(PaymentAdjustment,),
    check_flags=lambda config: check_dsn(str(config[CONTRIBUTIONS_STORE.name])),
    check=lambda config: check_store(str(config[CONTRIBUTIONS_STORE.name])),
)


__all__ = [
    "Backoff",
    "ContributionsStoreError",
    "ContributionsStoreResult",
    "DsnMask",
    "WriteToContributionsStore",
]
