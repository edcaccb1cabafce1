"""Safe backfills: messages only for recent payments, every table as usual (moto, Postgres).

One generated live archive spans four hours. A backfill "launched" 70 hours
after its second hour (`--run_started_at`) with the default
`--messages_max_age_hours` (72) must send the emails, soft opt-ins, bus
events and store-queue messages of exactly the payments created in the last
two hours, count the others as `message_too_old`, and still write every
payment to the warehouse and the supporter table. A `--no_messages` run
sends nothing, writes the Postgres store and claims nothing in the ledger.
The expected bodies come from a plain local run (DuckDB only), whose message
tables hold what would be sent, with each message's `created`.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines import backfill
from schemas.records import ContributionStoreRecord
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.sinks import (
    LEDGER_KEY,
    SUPPORTER_KEY,
    create_bus,
    create_queue,
    create_table,
    drain,
    drain_bodies,
    ledger_items,
    store_rows,
    supporter_items,
    unique,
)
from tools.generate_archive import generate, write_archive
from transforms.domain.store_messages import new_contribution_message, refunded_payment_message

PAYMENTS = 40
SEED = 2  # live payments, and full refunds, both before and after the cutoff
START = datetime(2025, 3, 1, tzinfo=UTC)
CUTOFF = START + timedelta(hours=2)
#: The default maximum age (72 hours) puts the cutoff two hours into the archive.
RUN_STARTED_AT = CUTOFF + timedelta(hours=72)
#: The analytics tables, which get every payment whatever its age.
ANALYTICS_SQL = (
    "SELECT * FROM contributions",
    "SELECT * FROM acquisitions",
    "SELECT * FROM payment_adjustments",
)
STORE_SQL = "SELECT payment_id, payment_status, amount, currency FROM contributions_store"
SUPPORTER_SQL = "SELECT identity_id, subscription_name FROM supporter_product_data"


def _rows(warehouse: Path, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return sorted(connection.execute(sql, list(parameters)).fetchall())


@dataclass(frozen=True)
class Expected:
    """What the plain run would send, split at the cutoff: `{kind: {fresh|old: [...]}}`."""

    folder: Path
    plain: Path
    emails: dict[bool, list[tuple[str, str]]]
    opt_ins: dict[bool, list[tuple[str, str]]]
    bus: dict[bool, list[dict[str, Any]]]
    store: dict[bool, list[dict[str, Any]]]
    refunded: dict[bool, list[str]]

    def too_old(self) -> int:
        old = (self.emails[False], self.opt_ins[False], self.bus[False], self.store[False])
        return sum(len(messages) for messages in old)


def _messages(plain: Path, table: str) -> dict[bool, list[tuple[str, str]]]:
    sql = f"SELECT payment_id, message, created >= ? FROM {table} WHERE livemode"
    rows = _rows(plain, sql, CUTOFF)
    return {fresh: sorted((p, m) for p, m, f in rows if f == fresh) for fresh in (True, False)}


def _parsed(body: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(body, parse_float=Decimal, parse_int=Decimal)
    return parsed


def _canonical(bodies: list[dict[str, Any]]) -> list[str]:
    """Store bodies as comparable text; amounts by value (the warehouse keeps 9 decimals)."""

    def number(value: Any) -> str:
        return format(Decimal(value).normalize(), "f")

    return sorted(json.dumps(b, sort_keys=True, default=number) for b in bodies)


@pytest.fixture(scope="module")
def expected(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Expected:
    root = tmp_path_factory.mktemp("messages")
    folder = root / "archive"
    write_archive(generate(payments=PAYMENTS, seed=SEED, start=START, hours=4), folder)
    plain = root / "plain.duckdb"
    _run(["--source", str(folder), "--warehouse", str(plain)], root / "plain.txt")
    store: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    with duckdb.connect(str(plain), read_only=True) as connection:
        found = connection.execute(
            "SELECT *, created >= ? FROM contributions_store WHERE livemode", [CUTOFF]
        ).fetchall()
    refunded: dict[bool, list[str]] = {True: [], False: []}
    for *row, fresh in found:
        # The warehouse folds refunds into the status; the message is the payment's.
        record = ContributionStoreRecord(*row)
        paid = replace(record, payment_status="Paid")
        store[fresh].append(_parsed(new_contribution_message(paid)))
        if record.payment_status == "Refunded":
            refunded[fresh].append(record.payment_id)
    bus_rows = _messages(plain, "acquisition_events")
    expected = Expected(
        folder=folder,
        plain=plain,
        emails=_messages(plain, "thank_you_emails"),
        opt_ins=_messages(plain, "soft_opt_ins"),
        bus={f: [json.loads(m) for _, m in rows] for f, rows in bus_rows.items()},
        store=store,
        refunded=refunded,
    )
    # The scenario needs both sides of the cutoff, for every kind.
    for kind in (expected.emails, expected.opt_ins, expected.bus, expected.store, refunded):
        assert kind[True] and kind[False], kind
    return expected


def _run(argv: list[str], out: Path) -> str:
    with out.open("w") as capture, contextlib.redirect_stdout(capture):
        code = backfill.run(argv)
    summary = out.read_text()
    assert code == 0, summary
    return summary


def _outputs_skipped(summary: str) -> dict[str, int]:
    lines = summary.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("outputs skipped:"))
    counts = {}
    for line in lines[start + 1 :]:
        match = re.fullmatch(r"  (\w+): (\d+)", line)
        if match is None:
            break
        counts[match[1]] = int(match[2])
    return counts


def _analytics(warehouse: Path, live_only: bool) -> list[list[tuple[Any, ...]]]:
    where = " WHERE livemode" if live_only else ""
    tables = [_rows(warehouse, sql + where) for sql in ANALYTICS_SQL]
    assert all(tables)
    return tables


def test_only_recent_payments_get_messages_and_every_table_is_written(
    expected: Expected, tmp_path: Path
) -> None:
    bus, subscriber = create_bus()
    emails, opt_ins, store_queue = create_queue(), create_queue(), create_queue(fifo=False)
    supporter = create_table(SUPPORTER_KEY, unique("SupporterProductData"))
    ledger = create_table(LEDGER_KEY, unique("sent-messages"))
    warehouse = tmp_path / "w.duckdb"
    summary = _run(
        [
            "--source", str(expected.folder), "--warehouse", str(warehouse),
            "--stripe_mode", "live", "--run_started_at", RUN_STARTED_AT.isoformat(),
            "--acquisitions_bus", bus, "--emails_queue_url", emails,
            "--opt_ins_queue_url", opt_ins, "--contributions_store_queue_url", store_queue,
            "--contributions_store_key_id", "key-1", "--supporter_table", supporter,
            "--sent_messages_table", ledger,
        ],
        tmp_path / "run.txt",
    )  # fmt: skip

    assert drain(emails) == expected.emails[True]
    assert drain(opt_ins) == expected.opt_ins[True]
    details = [json.loads(body)["detail"] for body in drain_bodies(subscriber)]
    assert sorted(details, key=lambda d: d["paymentId"]) == sorted(
        expected.bus[True], key=lambda d: d["paymentId"]
    )
    refunds = [_parsed(refunded_payment_message(charge)) for charge in expected.refunded[True]]
    assert _canonical([_parsed(b) for b in drain_bodies(store_queue)]) == _canonical(
        expected.store[True] + refunds
    )
    assert _outputs_skipped(summary)["message_too_old"] == expected.too_old()
    # Nothing old was claimed: a later run with a wider window can still send it.
    old = {p for p, _ in expected.emails[False]}
    assert not {key for key in ledger_items(ledger) if key.split("#", 1)[1] in old}

    # Every table as usual, old payments included.
    assert _analytics(warehouse, live_only=False) == _analytics(expected.plain, live_only=True)
    assert sorted(supporter_items(supporter)) == _rows(
        expected.plain, SUPPORTER_SQL + " WHERE livemode"
    )


def test_no_messages_sends_nothing_and_writes_the_store(
    expected: Expected, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    bus, subscriber = create_bus()
    emails, opt_ins = create_queue(), create_queue()
    ledger = create_table(LEDGER_KEY, unique("sent-messages"))
    dsn = postgres_server.create_database()
    warehouse = tmp_path / "w.duckdb"
    summary = _run(
        [
            "--source", str(expected.folder), "--warehouse", str(warehouse),
            "--stripe_mode", "live", "--no_messages", "--acquisitions_bus", bus,
            "--emails_queue_url", emails, "--opt_ins_queue_url", opt_ins,
            "--contributions_store", dsn, "--sent_messages_table", ledger,
        ],
        tmp_path / "run.txt",
    )  # fmt: skip

    assert (drain(emails), drain(opt_ins), drain_bodies(subscriber)) == ([], [], [])
    assert ledger_items(ledger) == {}
    sent = (
        len(expected.emails[True] + expected.emails[False])
        + len(expected.opt_ins[True] + expected.opt_ins[False])
        + len(expected.bus[True] + expected.bus[False])
    )
    assert _outputs_skipped(summary)["no_messages"] == sent
    assert "message_too_old" not in summary
    stored = sorted(store_rows(dsn, STORE_SQL))
    assert stored == _rows(expected.plain, STORE_SQL + " WHERE livemode")
    assert _analytics(warehouse, live_only=False) == _analytics(expected.plain, live_only=True)


def test_no_messages_sends_nothing_to_the_store_queue_and_writes_every_table(
    expected: Expected, tmp_path: Path
) -> None:
    """The store through its queue is a message sink: `--no_messages` holds back every
    payment's store message and refund, claims none, and the run counts none as written."""
    store_queue = create_queue(fifo=False)
    supporter = create_table(SUPPORTER_KEY, unique("SupporterProductData"))
    ledger = create_table(LEDGER_KEY, unique("sent-messages"))
    warehouse, summary_json = tmp_path / "w.duckdb", tmp_path / "summary.json"
    summary = _run(
        [
            "--source", str(expected.folder), "--warehouse", str(warehouse),
            "--stripe_mode", "live", "--no_messages",
            "--contributions_store_queue_url", store_queue,
            "--contributions_store_key_id", "key-1", "--supporter_table", supporter,
            "--sent_messages_table", ledger, "--summary_json", str(summary_json),
        ],
        tmp_path / "run.txt",
    )  # fmt: skip

    assert drain_bodies(store_queue) == []
    # No claim; only the facts of the full refunds, which a later run that sends their
    # payments' messages follows with the refund messages.
    refunded = expected.refunded[True] + expected.refunded[False]
    assert ledger_items(ledger) == {f"refund_due#{charge}": "recorded" for charge in refunded}
    assert _outputs_skipped(summary)["no_messages"] == len(
        expected.store[True] + expected.store[False]
    )
    assert "message_too_old" not in summary
    written = json.loads(summary_json.read_text())["written_by_this_run"]
    assert [name for name in written if name.startswith("sent:")] == []
    # The queue takes the store's records in place of the warehouse's copy: none anywhere.
    assert written["warehouse:contributions_store"] == 0
    assert _rows(warehouse, STORE_SQL) == []
    assert _analytics(warehouse, live_only=False) == _analytics(expected.plain, live_only=True)
    assert sorted(supporter_items(supporter)) == _rows(
        expected.plain, SUPPORTER_SQL + " WHERE livemode"
    )
