"""WriteToContributionsStore against a real Postgres: exact rows, idempotence,
refund/dispute status, dead letters, a server restart mid-run, DSN masking.

Each test writes to a database of its own (`postgres_database`) on the
session's server (`tests/fixtures/postgres.py`). Run with
`.venv/bin/pytest tests/transforms/sinks/test_postgres.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import traceback
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, cast

import apache_beam as beam
import psycopg
import pytest
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineResult
from apache_beam.testing.util import assert_that, equal_to
from psycopg import conninfo

from schemas.generate import columns, table_of
from schemas.records import ContributionStoreRecord, DeadLetter, PaymentAdjustment
from tests.builders import dispute_adjustment as dispute
from tests.builders import refund_adjustment as refund
from tests.builders import store_record as any_store_record
from tests.fixtures.postgres import PostgresServer, _free_port
from transforms.domain.events import make_dead_letter
from transforms.sinks import common, postgres, readback
from transforms.sinks.common import INVALID_ROW
from transforms.sinks.postgres import (
    REJECTED_BY_POSTGRES,
    WRITE_STEP,
    Backoff,
    ContributionsStoreError,
    DsnMask,
    WriteToContributionsStore,
)

STORE = table_of(ContributionStoreRecord).name
store_record = functools.partial(any_store_record, postal_code="N1 9GU")
ADJUSTMENTS = table_of(PaymentAdjustment).name
# Fast retries: the restart test's server is back within a second.
FAST_BACKOFF = Backoff(max_attempts=30, initial_delay=0.02, max_delay=0.5)

Record = ContributionStoreRecord | PaymentAdjustment


def read_rows(dsn: str, record_type: type) -> list[Any]:
    """Every row of the record type's table as records, ordered by natural key."""
    table = table_of(record_type)
    names = ", ".join(f'"{c.name}"' for c in columns(record_type))
    key = ", ".join(f'"{k}"' for k in table.key)
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(f'SELECT {names} FROM "{table.name}" ORDER BY {key}').fetchall()
    return [record_type(*row) for row in rows]


def dead_letter(record: Record, reason: str, error: str) -> DeadLetter:
    table = record.TABLE.name
    key = record.payment_id if isinstance(record, ContributionStoreRecord) else record.adjustment_id
    return make_dead_letter(
        step=WRITE_STEP,
        reason=reason,
        error=error,
        raw=repr(record),
        source=f"contributions_store:{table}/{key}",
        event_id=record.adjustment_id if isinstance(record, PaymentAdjustment) else None,
    )


class _RestartServerAfter(beam.DoFn):
    """Passes elements through; after `count` of them, restarts Postgres (once).

    Records in the distribution `rows_before_restart` how many store rows
    were committed when the server went down, which shows the cut was mid-run.
    """

    def __init__(self, server: PostgresServer, dsn: str, count: int) -> None:
        self._server = server
        self._dsn = dsn
        self._count = count
        self._seen = 0
        self._rows_before = Metrics.distribution("test", "rows_before_restart")

    def process(self, element: Any) -> Iterator[Any]:
        self._seen += 1
        if self._seen == self._count:
            with psycopg.connect(self._dsn) as connection:
                row = connection.execute(f'SELECT count(*) FROM "{STORE}"').fetchone()
            assert row is not None
            self._rows_before.update(int(row[0]))
            self._server.restart_in_background()
        yield element


def run_writer(
    dsn: str,
    records: Sequence[Record],
    *,
    expected_written: Sequence[tuple[str, int]] | None = None,
    expected_dead_letters: Sequence[DeadLetter] = (),
    max_batch_size: int = 500,
    backoff: Backoff = FAST_BACKOFF,
    restart: tuple[PostgresServer, int] | None = None,
) -> PipelineResult:
    """Write `records` in one FnApiRunner pipeline, asserting both outputs exactly.

    `expected_written` defaults to every record written: (table, count) totals.
    """
    if expected_written is None:
        totals: dict[str, int] = {}
        for record in records:
            table = record.TABLE.name
            totals[table] = totals.get(table, 0) + 1
        expected_written = sorted(totals.items())
    pipeline = beam.Pipeline(runner=FnApiRunner())
    inputs: dict[type, beam.PCollection[Any]] = {}
    for record_type in (ContributionStoreRecord, PaymentAdjustment):
        of_type = [r for r in records if isinstance(r, record_type)]
        if of_type:
            name = record_type.__name__
            inputs[record_type] = pipeline | f"Create{name}" >> beam.Create(of_type)
    if restart is not None:
        # Fused with the writer (a single input is not flattened), so the
        # restart falls between two of its batches.
        server, count = restart
        inputs[ContributionStoreRecord] = inputs[ContributionStoreRecord] | "RestartServer" >> (
            beam.ParDo(_RestartServerAfter(server, dsn, count))
        )
    result = inputs | WriteToContributionsStore(dsn, max_batch_size=max_batch_size, backoff=backoff)
    assert_that(
        result.written | "SumWritten" >> beam.CombinePerKey(sum),
        equal_to(list(expected_written)),
        label="CheckWritten",
    )
    assert_that(
        result.dead_letters, equal_to(list(expected_dead_letters)), label="CheckDeadLetters"
    )
    outcome = pipeline.run()
    outcome.wait_until_finish()
    return outcome


@pytest.mark.parametrize("max_batch_size", [1, 2, 500], ids=["row-by-row", "pairs", "one-batch"])
def test_writes_exact_rows(postgres_database: str, max_batch_size: int) -> None:
    records: list[Record] = [
        store_record("ch_1"),
        store_record("ch_2", email=None, identity_id=None, amount=Decimal("5.123456789")),
        store_record("ch_3", payment_status="Failed", currency="USD", country_code=None),
        refund("ch_9", "1.00", event="evt_r9"),
        dispute("ch_8", event="evt_d8"),
    ]
    run_writer(postgres_database, records, max_batch_size=max_batch_size)

    assert read_rows(postgres_database, ContributionStoreRecord) == records[:3]
    assert read_rows(postgres_database, PaymentAdjustment) == [records[4], records[3]]


def test_running_twice_leaves_the_same_rows(postgres_database: str) -> None:
    records: list[Record] = [
        store_record("ch_1"),
        store_record("ch_2"),
        refund("ch_2", "10.00"),
        dispute("ch_1"),
    ]
    run_writer(postgres_database, records, max_batch_size=3)
    first = (
        read_rows(postgres_database, ContributionStoreRecord),
        read_rows(postgres_database, PaymentAdjustment),
    )
    run_writer(postgres_database, records[::-1], max_batch_size=3)

    assert (
        read_rows(postgres_database, ContributionStoreRecord),
        read_rows(postgres_database, PaymentAdjustment),
    ) == first
    assert [r.payment_status for r in first[0]] == ["Paid", "Refunded"]


def test_a_later_record_replaces_the_row_with_its_key(postgres_database: str) -> None:
    run_writer(postgres_database, [store_record("ch_1")])
    changed = store_record("ch_1", email="new@example.com", postal_code=None)
    run_writer(postgres_database, [changed])

    assert read_rows(postgres_database, ContributionStoreRecord) == [changed]


@pytest.mark.parametrize(
    ("runs", "expected_status"),
    [
        pytest.param([[refund("ch_1", "10.00")], [store_record()]], "Refunded", id="refund-first"),
        pytest.param([[store_record()], [refund("ch_1", "10.00")]], "Refunded", id="refund-after"),
        pytest.param([[store_record(), refund("ch_1", "10.00")]], "Refunded", id="same-batch"),
        pytest.param([[store_record()], [refund("ch_1", "4.00")]], "Paid", id="partial-refund"),
        pytest.param(
            [[store_record(), refund("ch_1", "4.00")], [refund("ch_1", "10.00", "evt_r2")]],
            "Refunded",
            id="partial-then-full",
        ),
        pytest.param(
            [[refund("ch_1", "10.00")], [store_record()], [store_record()]],
            "Refunded",
            id="payment-replayed-after-refund",
        ),
        pytest.param(
            [[store_record(payment_status="Failed")], [refund("ch_1", "10.00")]],
            "Failed",
            id="failed-stays-failed",
        ),
        pytest.param([[store_record()], [dispute("ch_1")]], "Paid", id="dispute-keeps-status"),
    ],
)
def test_adjustments_set_the_payment_status(
    postgres_database: str, runs: list[list[Record]], expected_status: str
) -> None:
    for records in runs:
        run_writer(postgres_database, records)

    adjustments = {
        r.adjustment_id: r for run in runs for r in run if isinstance(r, PaymentAdjustment)
    }
    assert read_rows(postgres_database, ContributionStoreRecord) == [
        store_record(payment_status=expected_status)
    ]
    assert read_rows(postgres_database, PaymentAdjustment) == sorted(
        adjustments.values(), key=lambda r: r.adjustment_id
    )


def test_bad_rows_become_dead_letters_and_the_rest_of_the_batch_is_written(
    postgres_database: str,
) -> None:
    good: list[Record] = [store_record("ch_1"), store_record("ch_3"), refund("ch_3", "10.00")]
    invalid = store_record("ch_2", amount=Decimal("1.0000000001"))
    nul_byte = store_record("ch_4", email="reader\x00@example.com")
    # A required column left empty, which the type checker would otherwise refuse.
    bad_adjustment = dataclasses.replace(refund("ch_5", "1.00", "evt_r5"), currency=cast(str, None))
    run_writer(
        postgres_database,
        [*good, invalid, nul_byte, bad_adjustment],
        max_batch_size=10,
        expected_written=[(STORE, 2), (ADJUSTMENTS, 1)],
        expected_dead_letters=[
            dead_letter(
                invalid,
                INVALID_ROW,
                f"{STORE}.amount: NUMERIC allows at most 9 digits after the point, got 10",
            ),
            dead_letter(
                bad_adjustment, INVALID_ROW, f"{ADJUSTMENTS}.currency: is required but is None"
            ),
            dead_letter(
                nul_byte,
                REJECTED_BY_POSTGRES,
                f"{STORE}: client PostgreSQL text fields cannot contain NUL (0x00) bytes",
            ),
        ],
    )

    assert read_rows(postgres_database, ContributionStoreRecord) == [
        store_record("ch_1"),
        store_record("ch_3", payment_status="Refunded"),
    ]
    assert read_rows(postgres_database, PaymentAdjustment) == [good[2]]


def test_a_row_postgres_rejects_is_isolated_from_its_batch(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # validate() would catch the overflow first; bypass it to reach Postgres.
    monkeypatch.setattr(common, "validate", lambda record: None)
    overflow = store_record("ch_2", amount=Decimal("1" + "0" * 29))
    run_writer(
        postgres_database,
        [store_record("ch_1"), overflow, store_record("ch_3")],
        expected_written=[(STORE, 2)],
        expected_dead_letters=[
            dead_letter(overflow, REJECTED_BY_POSTGRES, f"{STORE}: 22003 numeric field overflow")
        ],
    )

    assert read_rows(postgres_database, ContributionStoreRecord) == [
        store_record("ch_1"),
        store_record("ch_3"),
    ]


def test_postgres_restarted_mid_run_leaves_complete_rows(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    adjustments = [refund("ch_03", "10.00", "evt_r03"), refund("ch_07", "2.00", "evt_r07")]
    run_writer(postgres_database, adjustments)
    payments = [store_record(f"ch_{n:02d}") for n in range(12)]
    outcome = run_writer(
        postgres_database, payments, max_batch_size=3, restart=(postgres_server, 7)
    )
    postgres_server.wait_until_ready()

    metrics = outcome.metrics().query(MetricsFilter().with_name("rows_before_restart"))
    (before,) = metrics["distributions"]
    assert 0 < before.committed.max < 12  # the server went down between batches of the run
    (retries,) = outcome.metrics().query(MetricsFilter().with_name("batch_retries"))["counters"]
    assert retries.committed >= 1  # and the writer saw the cut and reconnected
    assert read_rows(postgres_database, ContributionStoreRecord) == [
        store_record(f"ch_{n:02d}", payment_status="Refunded" if n == 3 else "Paid")
        for n in range(12)
    ]
    assert read_rows(postgres_database, PaymentAdjustment) == adjustments


def test_concurrent_workers_create_the_tables_once(postgres_database: str) -> None:
    workers = [postgres._WriteBatchesFn(postgres_database, FAST_BACKOFF) for _ in range(8)]
    start = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def set_up(worker: postgres._WriteBatchesFn) -> None:
        start.wait()
        try:
            worker.setup()
        except BaseException as error:
            errors.append(error)
        finally:
            worker.teardown()

    threads = [threading.Thread(target=set_up, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert read_rows(postgres_database, ContributionStoreRecord) == []
    assert read_rows(postgres_database, PaymentAdjustment) == []


PASSWORD = "S3cr3t!pw#42"


@pytest.mark.parametrize(
    "dsn",
    [
        pytest.param(f"host=127.0.0.1 port=1 user=u password={PASSWORD} dbname=d", id="keyvalue"),
        pytest.param(f"host=127.0.0.1 port=1 password='{PASSWORD} x' dbname=d", id="quoted"),
        pytest.param("postgresql://u:S3cr3t%21pw%2342@127.0.0.1:1/d", id="url-encoded"),
        pytest.param(f"host=127.0.0.1 password={PASSWORD} port='unterminated", id="unparsable"),
    ],
)
def test_dsn_mask_hides_the_password(dsn: str) -> None:
    mask = DsnMask(dsn)
    masked = mask(f"connecting to {dsn} failed")

    assert PASSWORD not in masked and "S3cr3t" not in masked
    assert PASSWORD not in mask.server and "S3cr3t" not in mask.server


@pytest.mark.parametrize(
    "dsn",
    [
        pytest.param("postgresql://pipeline:S3cretPw9%zz@127.0.0.1:1/c", id="bad-percent-escape"),
        pytest.param("postgresql://pipeline:S3cretPw9%@127.0.0.1:1/c", id="cut-percent-escape"),
        pytest.param("host=127.0.0.1 password='S3cretPw9 port=1", id="unterminated-quote"),
        pytest.param("host=127.0.0.1 password=S3cretPw9 bogus", id="missing-equals"),
        pytest.param(
            "postgresql://pipeline:S3cretPw9@127.0.0.1:1/c?sslmode=S3cretPw9", id="bad-option"
        ),
        pytest.param("mysql://pipeline:S3cretPw9@127.0.0.1:1/c", id="other-scheme"),
    ],
)
def test_libpqs_own_message_about_a_malformed_dsn_is_masked(dsn: str) -> None:
    """libpq quotes what it could not parse; the mask must cover its real messages."""
    messages = []
    for attempt in (conninfo.conninfo_to_dict, lambda d: psycopg.connect(d, connect_timeout=1)):
        try:
            attempt(dsn)
        except psycopg.Error as error:
            messages.append(str(error))
    assert messages
    mask = DsnMask(dsn)
    for message in messages:
        assert "S3cretPw9" not in mask(message)
    assert "S3cretPw9" not in mask.server


def test_the_password_never_reaches_logs_or_errors(
    postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dsn = f"postgresql://postgres:S3cr3t%21pw%2342@127.0.0.1:{_free_port()}/postgres"
    pipeline = beam.Pipeline(runner=FnApiRunner())
    _ = {
        ContributionStoreRecord: pipeline | beam.Create([store_record()])
    } | WriteToContributionsStore(
        dsn, backoff=Backoff(max_attempts=2, initial_delay=0.01, max_delay=0.01)
    )

    with pytest.raises(Exception) as raised:
        pipeline.run().wait_until_finish()

    texts = ["".join(traceback.format_exception(raised.value))]
    texts += [record.getMessage() for record in caplog.records]
    texts += [record.exc_text or "" for record in caplog.records]
    assert ContributionsStoreError.__name__ in texts[0]
    assert any("attempt 1 of 2" in text for text in texts)  # the retry was logged
    assert [text for text in texts if "S3cr3t" in text] == []


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        pytest.param(
            "host=h dbname=d",
            {"connect_timeout": 7, **postgres.KEEPALIVE_PARAMETERS},
            id="key-value",
        ),
        pytest.param(
            "postgresql://u:p@h/d?keepalives_idle=60&connect_timeout=2",
            {
                "keepalives": 1,
                "keepalives_interval": 5,
                "keepalives_count": 3,
                "tcp_user_timeout": 30_000,
            },
            id="the-dsns-own-values-win",
        ),
        pytest.param("host=h keepalives=0 tcp_user_timeout=0", {
            "connect_timeout": 7, "keepalives_idle": 10, "keepalives_interval": 5,
            "keepalives_count": 3,
        }, id="turned-off-in-the-dsn"),
    ],
)  # fmt: skip
def test_connection_parameters_bound_every_wait_unless_the_dsn_says(
    dsn: str, expected: dict[str, int]
) -> None:
    assert postgres.connection_parameters(dsn, 7) == expected


def _socket_options(connection: psycopg.Connection[Any]) -> tuple[int, ...]:
    """What the kernel holds for the connection's socket: keepalive on, idle, interval,
    count (seconds, probes) and TCP_USER_TIMEOUT (milliseconds)."""
    import socket

    with socket.socket(fileno=os.dup(connection.fileno())) as sock:
        return (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        )


def test_every_connection_to_the_store_has_keepalives_and_a_user_timeout(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's, the pre-launch check's and the reconcile's connections, on their sockets."""
    seen: list[tuple[int, ...]] = []
    real = psycopg.connect

    def recording(*args: Any, **kwargs: Any) -> Any:
        connection = real(*args, **kwargs)
        seen.append(_socket_options(connection))
        return connection

    monkeypatch.setattr(psycopg, "connect", recording)

    run_writer(postgres_database, [store_record("ch_1")])
    writer = len(seen)
    postgres.check_store(postgres_database)
    rows = readback.postgres_query(postgres_database)(f'SELECT payment_id FROM "{STORE}"')

    assert rows == [("ch_1",)]
    assert writer >= 1 and len(seen) == writer + 2
    assert set(seen) == {(1, 10, 5, 3, 30_000)}
