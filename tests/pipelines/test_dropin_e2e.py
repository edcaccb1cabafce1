"""The drop-in for today's consumers, through the real jobs, against real wire protocols (moto).

One small generated archive (live and test payments, full refunds) is read
by the backfill, by the backfill again, then by the streaming job from
Kinesis, into a live deployment's acquisitions bus (a rule on it delivers
to a subscriber queue, so the test reads what a subscriber receives), its
contributions store queue and its ledger. The subscriber must get exactly
one event per live paid payment, the store queue one `newContributionData`
per live paid payment and one `refundedPaymentId` per fully refunded live
charge, every body equal to the expected one. The expected bodies come
from the generator's truth and from a plain local run (`--stripe_mode all`,
DuckDB only), whose `acquisition_events` and `contributions_store` tables
hold what would be sent.

Then: a run with 20 % injected failures (refused calls and lost answers) on
PutEvents and SendMessageBatch delivers the same; a test-mode run reaches
only the test deployment's resources.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines import backfill, streaming
from schemas.records import ContributionStoreRecord
from tests.fixtures.aws_faults import InjectFaults
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.sinks import (
    LEDGER_KEY,
    create_bus,
    create_queue,
    create_table,
    drain_bodies,
    unique,
)
from tests.pipelines.expected import major, paid_payments
from tests.transforms.sinks.publisher_schema import publisher_errors
from tools.generate_archive import generate, write_archive
from tools.put_on_kinesis import create_stream, kinesis_client, put_records
from transforms.domain.store_messages import new_contribution_message, refunded_payment_message

PAYMENTS = 40
SEED = 3  # 3 fully refunded live charges, 3 test payments (one refunded), a failed one
IDLE_TIMEOUT_S = "4"


@dataclass(frozen=True)
class Deployment:
    """One stage's resources: the bus and its subscriber, the store queue, the ledger."""

    mode: str
    bus: str
    subscriber: str
    store_queue: str
    ledger: str

    def flags(self, warehouse: Path) -> list[str]:
        return [
            "--stripe_mode",
            self.mode,
            "--acquisitions_bus",
            self.bus,
            "--contributions_store_queue_url",
            self.store_queue,
            "--contributions_store_key_id",
            f"key-{self.mode}",
            "--sent_messages_table",
            self.ledger,
            "--warehouse",
            str(warehouse),
        ]

    def received(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(bus event details, store bodies), each drained from its queue."""
        envelopes = [json.loads(body) for body in drain_bodies(self.subscriber)]
        for envelope in envelopes:
            assert publisher_errors(envelope) == [], envelope["detail"]["paymentId"]
            assert (envelope["source"], envelope["detail-type"]) == (
                "payment-api.1",
                "AcquisitionsEvent",
            )
        details = sorted((e["detail"] for e in envelopes), key=lambda d: d["paymentId"])
        return details, drain_bodies(self.store_queue)


def _deployment(mode: str) -> Deployment:
    bus, subscriber = create_bus()
    return Deployment(
        mode=mode,
        bus=bus,
        subscriber=subscriber,
        store_queue=create_queue(fifo=False),
        ledger=create_table(LEDGER_KEY, unique(f"ledger-{mode}")),
    )


@dataclass(frozen=True)
class Archive:
    folder: Path
    records: tuple[bytes, ...]
    truth: dict[str, Any]
    #: From the plain local run: {charge id: (livemode, bus Detail)}.
    details: dict[str, tuple[bool, dict[str, Any]]]
    #: From the plain local run: {charge id: (livemode, parsed newContributionData body)}.
    stored: dict[str, tuple[bool, dict[str, Any]]]


def _run(job: Any, argv: list[str], out: Path) -> str:
    with out.open("w") as capture, contextlib.redirect_stdout(capture):
        code = job(argv)
    summary = out.read_text()
    assert code == 0, summary
    return summary


def _parsed(body: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(body, parse_float=Decimal, parse_int=Decimal)
    return parsed


@pytest.fixture(scope="module")
def archive(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    # In the future, like live events: the streaming job's watermark follows arrival.
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    generated = generate(payments=PAYMENTS, seed=SEED, start=start, hours=1)
    root = tmp_path_factory.mktemp("dropin")
    folder = root / "archive"
    write_archive(generated, folder)
    warehouse = root / "plain.duckdb"
    _run(backfill.run, ["--source", str(folder), "--warehouse", str(warehouse)], root / "p.txt")
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        events = connection.execute(
            "SELECT payment_id, livemode, message FROM acquisition_events"
        ).fetchall()
        store = connection.execute("SELECT * FROM contributions_store").fetchall()
    stored = {}
    for row in store:
        # The warehouse folds refunds into the status; the message is the payment's.
        record = replace(ContributionStoreRecord(*row), payment_status="Paid")
        stored[record.payment_id] = (record.livemode, _parsed(new_contribution_message(record)))
    return Archive(
        folder=folder,
        records=tuple(generated.envelopes(include_malformed=True)),
        truth=generated.truth.to_json(),
        details={pid: (live, json.loads(message)) for pid, live, message in events},
        stored=stored,
    )


def _expected(archive: Archive, live: bool) -> tuple[list[dict[str, Any]], Counter[str]]:
    """(bus details, store bodies as a multiset of canonical JSON) for one mode."""
    payments = [p for p in paid_payments(archive.truth) if p["livemode"] == live]
    details = [archive.details[p["charge_id"]] for p in payments]
    assert all(mode == live for mode, _ in details)
    bodies = [archive.stored[p["charge_id"]][1] for p in payments]
    refunded = [p["charge_id"] for p in payments if p["status"] == "Refunded"]
    bodies += [_parsed(refunded_payment_message(charge)) for charge in refunded]
    # The truth, independently of the local run: ids, amounts and currencies.
    truth_view = sorted(
        (p["charge_id"], major(p["amount_minor"], p["currency"]), p["currency"]) for p in payments
    )
    assert truth_view == sorted(
        (d["paymentId"], Decimal(str(d["amount"])), d["currency"]) for _, d in details
    )
    return sorted((d for _, d in details), key=lambda d: d["paymentId"]), _canonical(bodies)


def _canonical(bodies: list[dict[str, Any]]) -> Counter[str]:
    """Bodies as comparable text; amounts by value (the warehouse keeps 9 decimals)."""

    def number(value: Any) -> str:
        assert isinstance(value, Decimal)
        return format(value.normalize(), "f")

    return Counter(json.dumps(b, sort_keys=True, default=number) for b in bodies)


def _received_store(bodies: list[str]) -> Counter[str]:
    return _canonical([_parsed(body) for body in bodies])


def test_backfill_twice_then_streaming_deliver_each_effect_once(
    archive: Archive, tmp_path: Path
) -> None:
    live, test = _deployment("live"), _deployment("test")
    details, store = _expected(archive, live=True)
    assert sum(1 for b in store if "refundedPaymentId" in b) == 3
    warehouse = tmp_path / "live.duckdb"

    _run(backfill.run, ["--source", str(archive.folder), *live.flags(warehouse)], tmp_path / "1")
    first = live.received()
    assert first[0] == details
    assert _received_store(first[1]) == store

    _run(backfill.run, ["--source", str(archive.folder), *live.flags(warehouse)], tmp_path / "2")
    stream = unique("stripe-events")
    client = kinesis_client()
    create_stream(client, stream, 2)
    put_records(client, stream, archive.records)
    client.close()
    argv = ["--kinesis_stream", stream, "--idle_timeout_s", IDLE_TIMEOUT_S]
    _run(streaming.run, [*argv, *live.flags(tmp_path / "stream.duckdb")], tmp_path / "3")
    assert live.received() == ([], [])
    # The test deployment's resources saw nothing of the live runs.
    assert test.received() == ([], [])


def test_a_test_run_reaches_only_the_test_deployment(archive: Archive, tmp_path: Path) -> None:
    live, test = _deployment("live"), _deployment("test")
    details, store = _expected(archive, live=False)
    assert details

    _run(
        backfill.run,
        ["--source", str(archive.folder), *test.flags(tmp_path / "t.duckdb")],
        tmp_path / "t",
    )
    received = test.received()
    assert received[0] == details
    assert _received_store(received[1]) == store
    assert live.received() == ([], [])


def test_twenty_percent_failures_deliver_the_same(
    archive: Archive, tmp_path: Path, aws_faults: InjectFaults
) -> None:
    live = _deployment("live")
    details, store = _expected(archive, live=True)
    operations = {"events": {"PutEvents"}, "sqs": {"SendMessageBatch"}}
    argv = ["--source", str(archive.folder), *live.flags(tmp_path / "f.duckdb")]
    with aws_faults(rate=0.2, seed=13, operations=operations) as faults:
        _run(backfill.run, argv, tmp_path / "f")
    # Batches of 10 make few calls: every one of them rolled the dice, and some lost.
    for operation in ("PutEvents", "SendMessageBatch"):
        injected = faults.refused.get(operation, 0) + faults.lost.get(operation, 0)
        assert injected > 0, operation
    assert faults.lost.get("PutEvents", 0) > 0
    with duckdb.connect(str(tmp_path / "f.duckdb"), read_only=True) as connection:
        letters = connection.execute(
            "SELECT step, reason, source FROM dead_letters WHERE step LIKE 'send_%'"
        ).fetchall()
    # A lost answer went out: it is an outcome_unknown dead letter, never a second message.
    assert {reason for _, reason, _ in letters} <= {"outcome_unknown"}
    # A refund waits for its payment's message to be known sent; one whose payment
    # message is in doubt waits for the operator (the store cannot refund a row it may
    # not have).
    in_doubt = {
        source.rsplit("/", 1)[-1]
        for step, _, source in letters
        if step == "send_contribution_store"
    }
    for charge in in_doubt:
        store[json.dumps({"refundedPaymentId": charge}, sort_keys=True)] -= 1
    received = live.received()
    assert received[0] == details
    assert _received_store(received[1]) == +store
