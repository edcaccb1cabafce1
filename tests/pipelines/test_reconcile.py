"""`pipelines.reconcile` end to end: a real backfill into DuckDB, Postgres, DynamoDB and the ledger.

Servers: moto (DynamoDB, SQS, EventBridge) and the embedded Postgres. One
backfill of a generated archive (module scope) writes every store; the
reconcile then finds nothing, and after a row is deleted and an amount
altered in Postgres, an item deleted in DynamoDB, a row deleted and an
amount altered in the warehouse, and a ledger entry deleted, it finds
exactly those payments and differences.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import boto3
import duckdb
import psycopg
import pytest

from pipelines import backfill, reconcile
from tests.fixtures.http_server import closed_port
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.sinks import (
    LEDGER_KEY,
    DuckDBWarehouse,
    Sinks,
    create_queue,
    create_table,
    provision_sinks,
    unique,
)
from tests.fixtures.unreachable import UNUSABLE_SOURCES
from tools.generate_archive import generate, write_archive
from transforms.domain.money import currency_exponent
from transforms.domain.reconcile import Holding, compared

PAYMENTS = 30
SEED = 11
HOURS = 2


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Paid:
    payment_id: str
    identity_id: str
    day: date
    currency: str
    amount: Decimal


@dataclass(frozen=True)
class Reconciled:
    clean: Run
    altered: Run
    paid: list[Paid]  # the payments altered, in the order below
    warehouse: Path


def _run(job: object, argv: list[str]) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = job(argv)  # type: ignore[operator]
    return Run(code, out.getvalue(), err.getvalue())


def _range(start: datetime) -> list[str]:
    end = start + timedelta(hours=HOURS + 1)
    return ["--start", start.isoformat(), "--end", end.isoformat()]


@dataclass(frozen=True)
class Archive:
    folder: Path
    start: datetime


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    folder = tmp_path_factory.mktemp("reconcile") / "archive"
    # Recent payments: a backfill sends messages for young payments only.
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    write_archive(generate(payments=PAYMENTS, seed=SEED, start=start, hours=HOURS), folder)
    return Archive(folder, start)


@pytest.fixture(scope="module")
def reconciled(
    archive: Archive,
    moto_server: MotoServer,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Reconciled:
    root = tmp_path_factory.mktemp("stores")
    sinks = provision_sinks(postgres_server, DuckDBWarehouse(root / "warehouse.duckdb"))
    argv = ["--source", str(archive.folder), *sinks.flags()]
    written = _run(backfill.run, argv)
    assert written.code == 0, written.out + written.err
    argv += _range(archive.start)
    clean = _run(reconcile.run, argv)
    paid = _paid(sinks)
    _alter(sinks, paid)
    return Reconciled(clean, _run(reconcile.run, argv), paid, root / "warehouse.duckdb")


def _paid(sinks: Sinks) -> list[Paid]:
    """Six paid payments with an identity and no refund, from the warehouse."""
    assert isinstance(sinks.warehouse, DuckDBWarehouse)
    with duckdb.connect(str(sinks.warehouse.path), read_only=True) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        rows = connection.execute(
            "SELECT payment_id, identity_id, CAST(created AS DATE), currency, amount "
            "FROM contributions_current WHERE status = 'Paid' AND amount_refunded = 0 "
            "AND identity_id IS NOT NULL AND livemode ORDER BY payment_id LIMIT 6"
        ).fetchall()
    assert len(rows) == 6
    return [Paid(*row) for row in rows]


def _alter(sinks: Sinks, paid: list[Paid]) -> None:
    gone_from_store, altered_in_store, gone_from_table, gone_from_warehouse, altered, unsent = paid
    with psycopg.connect(sinks.contributions_store) as connection:
        connection.execute(
            "DELETE FROM contributions_store WHERE payment_id = %s", [gone_from_store.payment_id]
        )
        connection.execute(
            "UPDATE contributions_store SET amount = amount + 1 WHERE payment_id = %s",
            [altered_in_store.payment_id],
        )
    dynamodb = boto3.session.Session().client("dynamodb")
    dynamodb.delete_item(
        TableName=sinks.supporter_table,
        Key={
            "identityId": {"S": gone_from_table.identity_id},
            "subscriptionName": {"S": f"Stripe - {gone_from_table.payment_id}"},
        },
    )
    dynamodb.delete_item(
        TableName=sinks.sent_messages_table,
        Key={"messageKey": {"S": f"thank_you_email#{unsent.payment_id}"}},
    )
    dynamodb.close()
    assert isinstance(sinks.warehouse, DuckDBWarehouse)
    with duckdb.connect(str(sinks.warehouse.path)) as connection:
        connection.execute(
            "DELETE FROM contributions WHERE payment_id = ?", [gone_from_warehouse.payment_id]
        )
        connection.execute(
            "UPDATE contributions SET amount = amount + 2 WHERE payment_id = ?",
            [altered.payment_id],
        )


def _table(out: str) -> dict[tuple[str, str], dict[str, str]]:
    """The diff table: {(day, currency): {store: cell}}."""
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("day "))
    header = lines[first].split()
    table = {}
    for line in lines[first + 1 :]:
        cells = line.split()
        if len(cells) != len(header) or not cells[0][:4].isdigit():
            break
        table[(cells[0], cells[1])] = dict(zip(header[2:], cells[2:], strict=True))
    return table


STORES = [
    "warehouse",
    "contributions_store",
    "supporter_table",
    "acquisition_event",
    "thank_you_email",
    "soft_opt_in",
]


def test_a_fresh_backfill_reconciles_with_every_difference_zero(reconciled: Reconciled) -> None:
    run = reconciled.clean
    assert run.code == 0, run.out + run.err
    table = _table(run.out)
    assert table
    assert {cell for row in table.values() for cell in row.values()} == {"0", "0/0", "0/0/0"}
    assert all(list(row) == STORES for row in table.values())
    assert run.out.splitlines()[-1] == "reconciled: every difference is zero"


def _amount(value: Decimal, currency: str) -> str:
    return f"{value:.{currency_exponent(currency)}f}"


def _signed(value: Decimal, currency: str) -> str:
    return "0" if not value else ("+" if value > 0 else "") + _amount(value, currency)


def _expected_table(
    clean: dict[tuple[str, str], dict[str, str]], changes: list[tuple[str, Paid, int, Decimal]]
) -> dict[tuple[str, str], dict[str, str]]:
    """The clean table with each (store, payment, payments, amount) change summed in its cell."""
    sums: dict[tuple[str, str, str], tuple[int, Decimal]] = {}
    for store, paid, payments, amount in changes:
        key = (store, paid.day.isoformat(), paid.currency)
        count, total = sums.get(key, (0, Decimal(0)))
        sums[key] = (count + payments, total + amount)
    table = {key: dict(row) for key, row in clean.items()}
    for (store, day, currency), (payments, amount) in sums.items():
        parts = [f"{payments:+d}" if payments else "0"]
        if store in ("warehouse", "contributions_store", "supporter_table"):
            parts.append(_signed(amount, currency))
        if store in ("warehouse", "contributions_store"):
            parts.append("0")
        table[(day, currency)][store] = "/".join(parts)
    return table


def test_deleted_and_altered_rows_are_listed_with_their_difference(
    reconciled: Reconciled,
) -> None:
    run = reconciled.altered
    assert run.code == 1, run.out + run.err
    store_gone, store_altered, item_gone, warehouse_gone, warehouse_altered, unsent = (
        reconciled.paid
    )

    def summary(paid: Paid) -> str:
        return f"{paid.day.isoformat()} {paid.currency} {_amount(paid.amount, paid.currency)}"

    def altered(paid: Paid, plus: int) -> str:
        was, now = paid.amount, paid.amount + plus
        return (
            f"amount {_amount(was, paid.currency)} in the archive, "
            f"{_amount(now, paid.currency)} here"
        )

    warehouse = sorted(
        [
            f"  {warehouse_gone.payment_id}: missing (archive: {summary(warehouse_gone)})",
            f"  {warehouse_altered.payment_id}: {altered(warehouse_altered, 2)}",
        ]
    )
    store = sorted(
        [
            f"  {store_gone.payment_id}: missing (archive: {summary(store_gone)})",
            f"  {store_altered.payment_id}: {altered(store_altered, 1)}",
        ]
    )
    lines = run.out.splitlines()
    assert lines[lines.index("warehouse: 2 differences") :] == [
        "warehouse: 2 differences",
        *warehouse,
        "contributions_store: 2 differences",
        *store,
        "supporter_table: 1 difference",
        f"  {item_gone.payment_id}: missing (archive: {summary(item_gone)})",
        "thank_you_email: 1 difference",
        f"  {unsent.payment_id}: missing (archive: {unsent.day.isoformat()} {unsent.currency})",
        "differences in warehouse, contributions_store, supporter_table, thank_you_email",
    ]
    assert _table(run.out) == _expected_table(
        _table(reconciled.clean.out),
        [
            ("warehouse", warehouse_gone, -1, -warehouse_gone.amount),
            ("warehouse", warehouse_altered, 0, Decimal(2)),
            ("contributions_store", store_gone, -1, -store_gone.amount),
            ("contributions_store", store_altered, 0, Decimal(1)),
            ("supporter_table", item_gone, -1, -item_gone.amount),
            ("thank_you_email", unsent, -1, Decimal(0)),
        ],
    )


def test_no_personal_data_is_printed(reconciled: Reconciled) -> None:
    printed = reconciled.clean.out + reconciled.altered.out
    assert "@" not in printed
    assert not any(paid.identity_id in printed for paid in reconciled.paid)


@pytest.mark.parametrize(
    ("argv", "code", "error"),
    [
        pytest.param(
            ["--runner", "DataflowRunner"],
            2,
            "--runner: the reconcile runs locally, on the FnApiRunner",
            id="remote-runner",
        ),
        pytest.param(
            ["--start", "2025-03-02", "--end", "2025-03-01"],
            2,
            "--start (2025-03-02 00:00:00+00:00) must be before --end (2025-03-01 00:00:00+00:00)",
            id="empty-range",
        ),
        pytest.param(
            ["--contributions_store", "postgresql://u:pw@127.0.0.1:1/db"],
            2,
            "--stripe_mode live or --stripe_mode test is required with production sinks "
            "(--contributions_store): a deployment serves one stage, and test payments must not "
            "reach live resources",
            id="store-without-mode",
        ),
        pytest.param(
            ["--warehouse", "{tmp}/none.duckdb"],
            3,
            'warehouse {tmp}/none.duckdb: IO Error: Cannot open database "{tmp}/none.duckdb" '
            "in read-only mode: database does not exist",
            id="no-warehouse",
        ),
        pytest.param(
            ["--warehouse", "{warehouse}", "--stripe_mode", "live"]
            + ["--contributions_store", "postgresql://u:s3cret@127.0.0.1:1/db"],
            3,
            '--contributions_store: connection failed: connection to server at "127.0.0.1", '
            "port 1 failed: Connection refused",
            id="store-unreachable",
        ),
    ],
)
def test_bad_flags_exit_2_and_unreachable_stores_3_with_one_line(
    reconciled: Reconciled, tmp_path: Path, argv: list[str], code: int, error: str
) -> None:
    def filled(text: str) -> str:
        return text.format(tmp=tmp_path, warehouse=reconciled.warehouse)

    run = _run(reconcile.run, [filled(arg) for arg in argv])
    first, *rest = run.err.splitlines()
    assert (run.code, run.out, first) == (
        code,
        "",
        f"python -m pipelines.reconcile: error: {filled(error)}",
    )
    # An infrastructure failure is recorded in the warehouse's run history, if it exists.
    recorded = f"recorded in pipeline_runs of {reconciled.warehouse}"
    if code == 3 and "{warehouse}" in argv:
        assert len(rest) == 1 and re.fullmatch(rf"run [0-9a-f]{{32}} {recorded}", rest[0])
    else:
        assert rest == []


@pytest.mark.parametrize(("source", "line"), UNUSABLE_SOURCES)
def test_a_missing_empty_or_unreachable_source_is_exit_3_in_seconds_not_differences(
    reconciled: Reconciled, archive: Archive, tmp_path: Path, source: str, line: str
) -> None:
    (tmp_path / "empty").mkdir()
    port = closed_port()
    argv = ["--source", source.format(tmp=tmp_path), "--warehouse", str(reconciled.warehouse)]
    argv += ["--s3_endpoint_url", f"http://127.0.0.1:{port}", "--s3_region_name", "eu-west-1"]

    began = time.monotonic()
    run = _run(reconcile.run, [*argv, *_range(archive.start)])
    elapsed = time.monotonic() - began

    assert (run.code, run.out) == (3, "")
    assert elapsed < 30
    first, *rest = run.err.splitlines()
    assert first == f"python -m pipelines.reconcile: error: {line.format(tmp=tmp_path, port=port)}"
    recorded = f"recorded in pipeline_runs of {reconciled.warehouse}"
    assert len(rest) == 1 and re.fullmatch(rf"run [0-9a-f]{{32}} {recorded}", rest[0])


def test_the_store_queue_is_reconciled_from_the_ledger(
    archive: Archive, moto_server: MotoServer, tmp_path: Path
) -> None:
    """The store fed by its queue: what the ledger says was sent, payments and refunds."""
    warehouse = tmp_path / "warehouse.duckdb"
    ledger = create_table(LEDGER_KEY, unique("sent-messages"))
    argv = [
        "--source",
        str(archive.folder),
        "--stripe_mode",
        "live",
        "--warehouse",
        str(warehouse),
        "--contributions_store_queue_url",
        create_queue(fifo=False),
        "--contributions_store_key_id",
        "key-1",
        "--sent_messages_table",
        ledger,
    ]
    written = _run(backfill.run, argv)
    assert written.code == 0, written.out + written.err
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        refunded, paid = (
            connection.execute(
                "SELECT min(payment_id) FROM contributions_current WHERE livemode "
                f"AND status = '{status}'"
            ).fetchone()[0]  # type: ignore[index]
            for status in ("Refunded", "Paid")
        )
    with contextlib.closing(boto3.session.Session().client("dynamodb")) as dynamodb:
        dynamodb.delete_item(
            TableName=ledger, Key={"messageKey": {"S": f"contribution_refund#{refunded}"}}
        )
        dynamodb.update_item(
            TableName=ledger,
            Key={"messageKey": {"S": f"contribution_store#{paid}"}},
            UpdateExpression="SET #state = :sending",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":sending": {"S": "sending"}},
        )
    run = _run(reconcile.run, [*argv, *_range(archive.start)])
    assert run.code == 1, run.out + run.err
    lines = run.out.splitlines()
    assert lines[lines.index("contribution_store: 1 difference") :] == [
        "contribution_store: 1 difference",
        f"  {paid}: claimed, never marked sent (outcome unknown)",
        "contribution_refund: 1 difference",
        f"  {refunded}: missing (archive: {_day_and_currency(warehouse, refunded)})",
        "differences in contribution_store, contribution_refund",
    ]
    table = _table(run.out)
    assert [list(row) for row in table.values()] == [
        ["warehouse", "contribution_store", "contribution_refund"]
    ] * len(table)
    assert table[_key(warehouse, paid)]["contribution_store"] == "-1"
    assert table[_key(warehouse, refunded)]["contribution_refund"] == "-1"
    changed = {_key(warehouse, p) for p in (paid, refunded)}
    assert {
        cell
        for day, row in table.items()
        for store, cell in row.items()
        if not (day in changed and store != "warehouse")
    } == {"0", "0/0/0"}


def _key(warehouse: Path, payment_id: str) -> tuple[str, str]:
    """The payment's (day, currency) row of the diff table."""
    day, currency = _day_and_currency(warehouse, payment_id).split()
    return day, currency


def _day_and_currency(warehouse: Path, payment_id: str) -> str:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        day, currency = connection.execute(
            "SELECT CAST(created AS DATE), currency FROM contributions WHERE payment_id = ?",
            [payment_id],
        ).fetchone()  # type: ignore[misc]
    return f"{day.isoformat()} {currency}"


@pytest.mark.parametrize(
    ("store", "kept", "left_out"),
    [
        pytest.param("supporter_table", {"ch_1"}, 1, id="supporter-item"),
        pytest.param("thank_you_email", {"ch_1"}, 1, id="email"),
        pytest.param("soft_opt_in", {"ch_1"}, 1, id="opt-in"),
        pytest.param("warehouse", {"ch_1", "ch_guest"}, 0, id="warehouse-needs-no-identity"),
        pytest.param("acquisition_event", {"ch_1", "ch_guest"}, 0, id="bus-needs-no-identity"),
    ],
)
def test_a_guests_identity_effects_are_left_out_and_counted(
    store: str, kept: set[str], left_out: int
) -> None:
    holding = Holding("ch_1", date(2025, 3, 1), "GBP", Decimal("5.00"))
    guest = Holding("ch_guest", date(2025, 3, 1), "GBP", Decimal("3.00"))
    found = {"ch_1": holding, "ch_guest": guest}
    comparison = compared(store, {"ch_1": holding}, found, {"ch_guest"})
    assert (set(comparison.found), comparison.guests_left_out) == (kept, left_out)


def test_help_describes_the_command_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with pytest.raises(SystemExit) as exit_info:
        reconcile.run(["--help", "--warehouse", str(warehouse)])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: python -m pipelines.reconcile ")
    assert "Reconcile: what the archive says against what every store holds" in help_text
    for flag in ("--source", "--start", "--end", "--contributions_store", "--supporter_table"):
        assert flag in help_text
    assert not warehouse.exists()


def test_messages_a_backfill_held_back_are_counted_not_differences(
    archive: Archive, moto_server: MotoServer, tmp_path: Path
) -> None:
    """A backfill's window (half the archive too old) reconciled with the same window."""
    warehouse = tmp_path / "warehouse.duckdb"
    ledger = create_table(LEDGER_KEY, unique("sent-messages"))
    # Messages of payments created before archive.start + 1h are held back.
    window = [
        "--run_started_at",
        (archive.start + timedelta(hours=5)).isoformat(),
        "--messages_max_age_hours",
        "4",
    ]
    argv = [
        "--source",
        str(archive.folder),
        "--stripe_mode",
        "live",
        "--warehouse",
        str(warehouse),
        "--emails_queue_url",
        create_queue(),
        "--sent_messages_table",
        ledger,
    ]
    written = _run(backfill.run, [*argv, *window])
    assert written.code == 0, written.out + written.err
    too_old = _skipped_too_old(written.out + written.err)
    assert too_old > 0
    held = (
        f"not compared: {too_old} messages held back as too old for the message window "
        "(outputs skipped: message_too_old), none in the ledger"
    )

    clean = _run(reconcile.run, [*argv, *window, *_range(archive.start)])
    assert clean.code == 0, clean.out + clean.err
    assert clean.out.splitlines()[-2:] == [held, "reconciled: every difference is zero"]

    with contextlib.closing(boto3.session.Session().client("dynamodb")) as dynamodb:
        sent = sorted(
            item["messageKey"]["S"]
            for item in dynamodb.scan(TableName=ledger)["Items"]
            if item["messageKey"]["S"].startswith("thank_you_email#")
        )
        dynamodb.delete_item(TableName=ledger, Key={"messageKey": {"S": sent[0]}})
    unsent = sent[0].split("#", 1)[1]
    missing = _run(reconcile.run, [*argv, *window, *_range(archive.start)])
    assert missing.code == 1, missing.out + missing.err
    lines = missing.out.splitlines()
    assert lines[lines.index(held) :] == [
        held,
        "thank_you_email: 1 difference",
        f"  {unsent}: missing (archive: {_day_and_currency(warehouse, unsent)})",
        "differences in thank_you_email",
    ]

    # Without the backfill's window every message the archive implies is expected.
    unwindowed = _run(reconcile.run, [*argv, *_range(archive.start)])
    assert unwindowed.code == 1, unwindowed.out + unwindowed.err
    assert f"thank_you_email: {too_old + 1} differences" in unwindowed.out.splitlines()
    assert "messages held back" not in unwindowed.out


def _skipped_too_old(summary: str) -> int:
    """The backfill summary's `outputs skipped: message_too_old` count."""
    lines = summary.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("outputs skipped:"))
    counts = {}
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        name, count = line.strip().split(": ")
        counts[name] = int(count)
    return counts["message_too_old"]


def test_each_reconciliation_appends_its_run_with_its_counts_per_store(
    reconciled: Reconciled,
) -> None:
    with duckdb.connect(str(reconciled.warehouse), read_only=True) as connection:
        rows = connection.execute(
            "SELECT exit_code, list_transform(rows_written, r -> (r.destination, r.rows)),"
            " ended_at IS NOT NULL FROM pipeline_runs WHERE job = 'reconcile' AND exit_code < 2"
            " ORDER BY started_at"
        ).fetchall()
    assert [(code, ended) for code, _, ended in rows] == [(0, True), (1, True)]
    clean, altered = (dict(counts) for _, counts, _ in rows)
    names = [f"{store}_{count}" for store in STORES for count in ("compared", "differences")]
    assert list(clean) == names and list(altered) == names
    assert all(clean[f"{store}_differences"] == 0 for store in STORES)
    assert clean["warehouse_compared"] > 0
    assert altered["warehouse_differences"] == 2
