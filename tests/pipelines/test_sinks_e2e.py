"""Every production sink end to end, on real servers: exact outputs, replays, faults, bad rows.

Servers: moto (Kinesis, S3, DynamoDB, SQS) and the embedded Postgres. The
events are the generator's (start a day from now: see test_streaming.py for
why the streaming job needs live events) plus two crafted payments: one with
exact, hand-written expected messages, and one whose amount (10**35 pence,
beyond Stripe's limit and NUMERIC(38, 9)) is refused at the boundary: its two
records are dead letters and nothing of it reaches any sink.

`replayed` (module scope) runs three jobs on one set of sinks:

1. the streaming job over a two-shard stream holding the events once;
2. the same events put on the stream again, and the streaming job from
   TRIM_HORIZON (so it reads both copies);
3. the backfill of the same events archived in S3 (`--source s3://...`).

After each run every sink is read back (the queues drained). The first run
is checked against the generator's truth; the others must change nothing.
`test_faults_...` runs the streaming job once more, on fresh sinks, with 20 %
of SQS and DynamoDB calls failing and Postgres restarted mid-write, and must
end exactly as the clean run.

The warehouse is read only through `tests.fixtures.sinks.Warehouse` (whole
tables), made in `_new_warehouse`: running these scenarios on another
warehouse means another `Warehouse` there.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from pipelines import backfill, streaming
from schemas.generate import table_of
from schemas.records import ALL_RECORD_TYPES
from tests.builders import (
    charge_object,
    envelope_time,
    eventbridge_envelope,
    session_object,
    stripe_event_document,
)
from tests.fixtures.aws_faults import InjectFaults
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.sinks import (
    DuckDBWarehouse,
    Sinks,
    Warehouse,
    drain,
    drain_bodies,
    ledger_items,
    provision_sinks,
    store_rows,
    supporter_items,
    unique,
)
from tests.pipelines.expected import (
    ACQUISITIONS_SQL,
    CONTRIBUTIONS_SQL,
    expected_acquisitions,
    expected_contributions,
    expected_contributions_store,
    expected_dead_letter_reasons,
    expected_messages,
    expected_supporter_items,
    live_only,
    paid_payments,
)
from tests.transforms.sinks.publisher_schema import publisher_errors
from tools.generate_archive import generate, write_archive
from tools.put_on_kinesis import create_stream, kinesis_client, put_records
from transforms.sinks.postgres import _lock_key

PAYMENTS = 150
SEED = 43
SHARDS = 2
IDLE_TIMEOUT_S = "3"
BUCKET = "stripe-archive"
PREFIX = "eventbridge/"
ACCOUNT = "ed_61RkUK0000000000000000"
CONTRIBUTION_IDS = uuid.UUID("6f1f6c2e-3b0a-5b8e-9d7c-2a4e8f0c1b35")
#: Dead-letter columns that say where and when a record was read.
WHERE_READ = ("dead_letter_id", "source", "time")
#: Tables whose records go to a production sink, so none reach the warehouse.
SENT_ELSEWHERE = (
    "acquisition_events",
    "contributions_store",
    "supporter_product_data",
    "thank_you_emails",
    "soft_opt_ins",
)
STORE_SQL = "SELECT * FROM contributions_store ORDER BY payment_id"
STORE_VIEW_SQL = (
    "SELECT payment_id, payment_status, amount, currency, identity_id, email, contribution_id,"
    " created FROM contributions_store ORDER BY payment_id"
)
ADJUSTMENTS_SQL = "SELECT * FROM payment_adjustments ORDER BY adjustment_id"
#: How long the Postgres restarter waits for a write to block on the payment lock it holds.
RESTART_DEADLINE_S = 120
FAULTY_CALLS = {"sqs": {"SendMessageBatch"}, "dynamodb": {"UpdateItem", "PutItem", "GetItem"}}


@dataclass(frozen=True)
class Events:
    records: tuple[bytes, ...]  # as put on Kinesis, malformed ones included
    truth: dict[str, Any]  # the generator's, plus the crafted paid payment
    malformed: int
    crafted_created: datetime


@dataclass(frozen=True)
class Outputs:
    """Everything the sinks hold after a run; `emails`/`opt_ins` are only what it sent."""

    store: list[tuple[Any, ...]]
    store_view: list[tuple[Any, ...]]  # as STORE_VIEW_SQL selects them
    adjustments: list[tuple[Any, ...]]
    supporter: dict[tuple[str, str], dict[str, Any]]
    ledger: dict[str, str]
    emails: list[tuple[str, str]]  # (MessageGroupId = charge id, body)
    opt_ins: list[tuple[str, str]]
    bus: list[str]  # what the bus's subscriber received: each event's detail, canonical JSON
    warehouse: dict[str, list[tuple[Any, ...]]]  # every table but dead_letters
    contributions: list[tuple[Any, ...]]  # `contributions_current`, as `CONTRIBUTIONS_SQL` selects
    acquisitions: list[tuple[Any, ...]]
    # All but the record-level ones (steps `decode`, `classify`); (step, reason, error, raw, ...)
    dead_letters: list[tuple[Any, ...]]
    # The record-level ones, one per copy read: (source, reason, raw)
    decode_dead_letters: list[tuple[str, str, str]]
    summary: str


def _envelope(event_type: str, data_object: dict[str, Any], created: datetime) -> bytes:
    event_id = f"evt_{data_object['id']}"
    detail = stripe_event_document(
        event_id, event_type, data_object, created=int(created.timestamp())
    )
    envelope = eventbridge_envelope(
        detail,
        envelope_id=str(uuid.uuid5(CONTRIBUTION_IDS, event_id)),
        account=ACCOUNT,
        time=envelope_time(created),
    )
    return json.dumps(envelope).encode()


def _crafted_payment(
    name: str, amount: int, metadata: dict[str, str], created: datetime
) -> list[bytes]:
    session = session_object(
        session_id=f"cs_{name}",
        payment_intent=f"pi_{name}",
        amount_total=amount,
        metadata=metadata,
        email="ada@example.com",
        name="Ada Lovelace",
    )
    charge = charge_object(
        charge_id=f"ch_{name}", payment_intent=f"pi_{name}", amount=amount, card_country="GB"
    )
    return [
        _envelope("checkout.session.completed", session, created),
        _envelope("charge.succeeded", charge, created),
    ]


@pytest.fixture(scope="module")
def events(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Events:
    """The events, also archived in S3 under s3://BUCKET/PREFIX as Firehose writes them."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    archive = generate(payments=PAYMENTS, seed=SEED, start=start, hours=2)
    created = start + timedelta(minutes=30)
    crafted = _crafted_payment(
        "crafted_ok", 1234, {"identityId": "900001", "similarProductsConsent": "true"}, created
    ) + _crafted_payment("crafted_huge", 10**35, {}, created)
    # The sinks are a live deployment's: test-mode payments are skipped.
    truth = live_only(archive.truth.to_json())
    truth["payments"].append(
        {
            "checkout_session_id": "cs_crafted_ok",
            "payment_intent_id": "pi_crafted_ok",
            "charge_id": "ch_crafted_ok",
            "status": "Paid",
            "amount_minor": 1234,
            "refunded_total_minor": 0,
            "currency": "GBP",
            "card_country": "GB",
            "address_country": "GB",
            "identity_id": "900001",
            "disputed": False,
            "livemode": True,
            "account": ACCOUNT,
        }
    )

    folder = tmp_path_factory.mktemp("archive") / "archive"
    write_archive(archive, folder, buffer_seconds=900)  # Firehose's longest buffer: fewer objects
    hour = created.strftime("%Y/%m/%d/%H")
    stamp = created.strftime("%Y-%m-%d-%H-%M-%S")
    (folder / hour).mkdir(parents=True, exist_ok=True)
    (folder / hour / f"crafted-1-{stamp}-{uuid.uuid4()}").write_bytes(b"\n".join(crafted))
    s3 = boto3.session.Session().client("s3")
    s3.create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": moto_server.region}
    )
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.put_object(
            Bucket=BUCKET, Key=f"{PREFIX}{path.relative_to(folder)}", Body=path.read_bytes()
        )
    s3.close()
    return Events(
        records=(*archive.envelopes(include_malformed=True), *crafted),
        truth=truth,
        malformed=sum(truth["counts"]["malformed"].values()),
        crafted_created=created,
    )


def _new_stream(records: tuple[bytes, ...]) -> str:
    stream = unique("stripe-events")
    client = kinesis_client()
    create_stream(client, stream, SHARDS)
    put_records(client, stream, records)
    client.close()
    return stream


def _run(job: Any, argv: list[str], out: Path) -> str:
    with out.open("w") as capture, contextlib.redirect_stdout(capture):
        code = job(argv)
    summary = out.read_text()
    assert code == 0, summary
    return summary


def _stream(stream: str, sinks: Sinks, out: Path) -> str:
    argv = ["--kinesis_stream", stream, "--initial_position", "TRIM_HORIZON"]
    return _run(streaming.run, [*argv, "--idle_timeout_s", IDLE_TIMEOUT_S, *sinks.flags()], out)


def _new_warehouse(folder: Path) -> Warehouse:
    return DuckDBWarehouse(folder / "warehouse.duckdb")


def _selected(sql: str) -> list[str]:
    """The column names an `expected.*_SQL` query selects."""
    return [name.strip() for name in sql.split("SELECT ", 1)[1].split(" FROM ", 1)[0].split(",")]


#: The steps whose dead letters are keyed by the record's source (one per copy read).
RECORD_STEPS = ("decode", "classify")
#: The crafted huge payment's records (session, charge), both refused at classify.
HUGE_RECORDS = 2


def _observe(sinks: Sinks, summary: str) -> Outputs:
    warehouse = sinks.warehouse
    tables = [table_of(t).name for t in ALL_RECORD_TYPES if table_of(t).name != "dead_letters"]
    dead_letters = warehouse.table("dead_letters")
    columns = [c for c in dead_letters.columns if c not in WHERE_READ]
    return Outputs(
        store=store_rows(sinks.contributions_store, STORE_SQL),
        store_view=store_rows(sinks.contributions_store, STORE_VIEW_SQL),
        adjustments=store_rows(sinks.contributions_store, ADJUSTMENTS_SQL),
        supporter=supporter_items(sinks.supporter_table),
        ledger=ledger_items(sinks.sent_messages_table),
        emails=drain(sinks.emails_queue_url),
        opt_ins=drain(sinks.opt_ins_queue_url),
        bus=sorted(
            json.dumps(json.loads(body)["detail"], sort_keys=True)
            for body in drain_bodies(sinks.bus_subscriber_url)
        ),
        warehouse={t: list(warehouse.table(t).rows) for t in tables},
        contributions=warehouse.table("contributions_current").select(
            *_selected(CONTRIBUTIONS_SQL)
        ),
        acquisitions=warehouse.table("acquisitions").select(*_selected(ACQUISITIONS_SQL)),
        dead_letters=[r for r in dead_letters.select(*columns) if r[0] not in RECORD_STEPS],
        decode_dead_letters=[
            r[1:]
            for r in dead_letters.select("step", "source", "reason", "raw")
            if r[0] in RECORD_STEPS
        ],
        summary=summary,
    )


@dataclass(frozen=True)
class Replayed:
    first: Outputs  # the streaming job, each event once on the stream
    second: Outputs  # the streaming job again, each event twice on the stream
    third: Outputs  # the backfill of the S3 archive


@pytest.fixture(scope="module")
def replayed(
    events: Events, postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Replayed:
    root = tmp_path_factory.mktemp("replayed")
    sinks = provision_sinks(postgres_server, _new_warehouse(root))
    stream = _new_stream(events.records)
    first = _observe(sinks, _stream(stream, sinks, root / "first.txt"))
    put_records(kinesis_client(), stream, events.records)
    second = _observe(sinks, _stream(stream, sinks, root / "second.txt"))
    argv = ["--source", f"s3://{BUCKET}/{PREFIX}", *sinks.flags()]
    third = _observe(sinks, _run(backfill.run, argv, root / "third.txt"))
    return Replayed(first, second, third)


def _term_end(start: date) -> date:
    return start.replace(year=start.year + 8) + timedelta(weeks=1)


def test_the_store_holds_each_paid_payment_once_with_its_status(
    events: Events, replayed: Replayed
) -> None:
    identities = {p["charge_id"]: p["identity_id"] for p in events.truth["payments"]}
    found = [(*row[:5], row[5] is not None, row[6]) for row in replayed.first.store_view]
    expected = [
        (*row, identities[row[0]], True, str(uuid.uuid5(CONTRIBUTION_IDS, row[0])))
        for row in expected_contributions_store(events.truth)
    ]
    assert found == expected
    assert {row[1] for row in found} == {"Paid", "Refunded"}
    assert replayed.first.adjustments


def test_supporter_items_have_exactly_the_documented_attributes(
    events: Events, replayed: Replayed
) -> None:
    created = {row[0]: row[7].astimezone(UTC).date() for row in replayed.first.store_view}
    expected = {}
    for identity, name, amount, currency in expected_supporter_items(events.truth):
        start = created[name.removeprefix("Stripe - ")]
        end = _term_end(start)
        expiry = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        expected[(identity, name)] = {
            "identityId": identity,
            "subscriptionName": name,
            "productRatePlanId": "single_contribution",
            "productRatePlanName": "Single Contribution",
            "contractEffectiveDate": start.isoformat(),
            "termEndDate": end.isoformat(),
            "expiryDate": int(expiry.timestamp()),
            "contributionAmount": amount,
            "contributionCurrency": currency,
        }
    found = {
        key: {
            **item,
            "expiryDate": int(item["expiryDate"]),
            "contributionAmount": Decimal(item["contributionAmount"]),
        }
        for key, item in replayed.first.supporter.items()
    }
    assert found == expected


def test_one_thank_you_email_and_one_opt_in_per_paid_payment_with_identity(
    events: Events, replayed: Replayed
) -> None:
    first = replayed.first
    expected = expected_messages(events.truth)
    emails = {pid: json.loads(body) for pid, body in first.emails}
    opt_ins = {pid: json.loads(body) for pid, body in first.opt_ins}
    assert [pid for pid, _ in first.emails] == [pid for pid, _ in expected]
    assert [pid for pid, _ in first.opt_ins] == [pid for pid, _ in expected]
    email_of = {row[0]: row[5] for row in first.store_view}
    assert [(pid, emails[pid]["IdentityUserId"]) for pid in emails] == expected
    assert [(pid, opt_ins[pid]["identityId"]) for pid in opt_ins] == expected
    assert all(emails[pid]["To"]["Address"] == email_of[pid] for pid in emails)
    assert all(
        opt_ins[pid]["subscriptionId"] == str(uuid.uuid5(CONTRIBUTION_IDS, pid)) for pid in opt_ins
    )
    assert set(first.ledger.values()) == {"sent"}
    assert sorted(first.ledger) == sorted(
        [f"{kind}#{pid}" for pid, _ in expected for kind in ("soft_opt_in", "thank_you_email")]
        + [f"acquisition_event#{p['charge_id']}" for p in paid_payments(events.truth)]
    )

    day = events.crafted_created.date()
    assert emails["ch_crafted_ok"] == {
        "To": {
            "Address": "ada@example.com",
            "SubscriberKey": "ada@example.com",
            "ContactAttributes": {
                "SubscriberAttributes": {
                    "EmailAddress": "ada@example.com",
                    "edition": "uk",
                    "payment method": "credit / debit card",
                    "currency": "GBP",
                    "amount": "12.34",
                    "first_name": None,
                    "date_of_payment": f"{day.day} {day:%B %Y}",
                }
            },
        },
        "DataExtensionName": "contribution-thank-you",
        "IdentityUserId": "900001",
    }
    assert opt_ins["ch_crafted_ok"] == {
        "subscriptionId": str(uuid.uuid5(CONTRIBUTION_IDS, "ch_crafted_ok")),
        "identityId": "900001",
        "eventType": "Acquisition",
        "productName": "CONTRIBUTION",
        "printProduct": None,
        "previousProductName": None,
        "userConsentsOverrides": {"similarGuardianProducts": True},
    }


def test_one_bus_event_per_paid_payment_as_the_publisher_accepts_it(
    events: Events, replayed: Replayed
) -> None:
    details = [json.loads(detail) for detail in replayed.first.bus]
    assert sorted(d["paymentId"] for d in details) == sorted(
        p["charge_id"] for p in paid_payments(events.truth)
    )
    for detail in details:
        assert publisher_errors({"detail": detail}) == [], detail["paymentId"]
    crafted = next(d for d in details if d["paymentId"] == "ch_crafted_ok")
    assert (crafted["amount"], crafted["currency"], crafted["identityId"]) == (
        12.34,
        "GBP",
        "900001",
    )
    assert crafted["similarProductsConsent"] is True


def test_the_warehouse_holds_the_analytics_rows_and_nothing_sent_elsewhere(
    events: Events, replayed: Replayed
) -> None:
    first = replayed.first
    assert first.contributions == expected_contributions(events.truth)
    assert first.acquisitions == expected_acquisitions(events.truth)
    assert [table for table in SENT_ELSEWHERE if first.warehouse[table]] == []
    assert first.warehouse["payment_adjustments"]


def test_the_huge_amount_and_the_malformed_records_are_dead_letters(
    events: Events, replayed: Replayed
) -> None:
    first = replayed.first
    huge = sorted(
        (reason, json.loads(raw)["data"]["object"]["id"])
        for _, reason, raw in first.decode_dead_letters
        if "crafted_huge" in raw
    )
    # Refused at the boundary: nothing of the payment reached a sink (see the ledger).
    assert huge == [("invalid_charge", "ch_crafted_huge"), ("invalid_session", "cs_crafted_huge")]
    assert [r for r in first.dead_letters if "crafted_huge" in r[3]] == []
    reasons = Counter(r[1] for r in first.dead_letters) + Counter(
        reason for _, reason, _ in first.decode_dead_letters
    )
    assert reasons == expected_dead_letter_reasons(events.truth) + Counter(
        invalid_session=1, invalid_charge=1
    )
    assert len(first.decode_dead_letters) == events.malformed + HUGE_RECORDS
    assert first.summary.splitlines()[-1].endswith(": holds")


def test_replays_and_the_backfill_duplicate_nothing_anywhere(
    events: Events, replayed: Replayed
) -> None:
    first = replayed.first
    read = f"records read: {len(events.records)}"
    assert first.summary.splitlines()[0] == read
    # The second streaming run read both copies of every record.
    assert replayed.second.summary.splitlines()[0] == f"records read: {2 * len(events.records)}"
    for later in (replayed.second, replayed.third):
        assert later.store == first.store
        assert later.adjustments == first.adjustments
        assert later.supporter == first.supporter
        assert later.ledger == first.ledger
        assert (later.emails, later.opt_ins, later.bus) == ([], [], [])
        assert later.warehouse == first.warehouse
        assert later.dead_letters == first.dead_letters
        assert later.summary.splitlines()[-1].endswith(": holds")
    # A malformed record is a dead letter per copy read: both copies on the stream, then
    # the archive's; each copy once, however often it was read.
    raws = Counter(raw for _, _, raw in first.decode_dead_letters)
    for later, copies in ((replayed.second, 2), (replayed.third, 3)):
        assert Counter(raw for _, _, raw in later.decode_dead_letters) == Counter(
            {raw: count * copies for raw, count in raws.items()}
        )


def test_faults_and_a_postgres_restart_still_end_with_exactly_the_clean_outputs(
    events: Events,
    replayed: Replayed,
    postgres_server: PostgresServer,
    aws_faults: InjectFaults,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sinks = provision_sinks(postgres_server, _new_warehouse(tmp_path))
    stream = _new_stream(events.records)
    # Hold one payment's lock as the writer takes it, and restart Postgres once a
    # write transaction waits for it: the cut then falls inside a batch's transaction.
    held = paid_payments(events.truth)[0]["charge_id"]
    holder = psycopg.connect(sinks.contributions_store, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (_lock_key(held),))
    restarted = threading.Event()

    def restart_when_a_write_waits() -> None:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        deadline = time.monotonic() + RESTART_DEADLINE_S
        try:
            while time.monotonic() < deadline:
                row = holder.execute(query).fetchone()
                if row and row[0]:
                    postgres_server.restart_in_background()  # cuts the holder too
                    restarted.set()
                    return
                time.sleep(0.05)
        finally:
            if not restarted.is_set():
                holder.close()  # releases the lock, so the job can end and the test fail

    watcher = threading.Thread(target=restart_when_a_write_waits, daemon=True)
    watcher.start()
    caplog.set_level("WARNING", logger="transforms.sinks.postgres")
    with aws_faults(rate=0.2, seed=5, operations=FAULTY_CALLS) as faults:
        summary = _stream(stream, sinks, tmp_path / "summary.txt")
    watcher.join()
    holder.close()
    postgres_server.wait_until_ready()

    assert restarted.is_set()
    assert any(r.getMessage().startswith("Could not write a batch of") for r in caplog.records)
    for operation in ("SendMessageBatch", "UpdateItem", "PutItem", "GetItem"):
        assert faults.refused.get(operation, 0) + faults.lost.get(operation, 0) > 0, operation
    # Hundreds of calls each: some applied by the server with their answer lost.
    assert faults.lost.get("PutItem", 0) > 0 and faults.lost.get("UpdateItem", 0) > 0
    outputs = _observe(sinks, summary)
    clean = replayed.first
    assert outputs.store == clean.store
    assert outputs.adjustments == clean.adjustments
    assert outputs.supporter == clean.supporter
    assert outputs.ledger == clean.ledger
    assert (outputs.emails, outputs.opt_ins) == (clean.emails, clean.opt_ins)
    assert outputs.bus == clean.bus
    assert outputs.warehouse == clean.warehouse
    assert outputs.dead_letters == clean.dead_letters
    assert len(outputs.decode_dead_letters) == events.malformed + HUGE_RECORDS
