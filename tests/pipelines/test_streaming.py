"""The streaming job end to end on a real Kinesis API (moto), against the truth and the backfill.

One module-scoped run feeds every test: the generator plans 750 payments
(about 5,300 records, with redeliveries, replays and malformed records); a
two-shard stream gets 80 % of the records before the job starts and the rest
from a background thread in chunks while the job runs; the job reads until
no shard has returned a record for `IDLE_TIMEOUT_S`. The backfill then reads the
same generated archive (`write_archive`) into a second warehouse.

Event time: the Kinesis source's watermark follows arrival time (now), while
the core's rules are event-time timers on each event's `created` (the charge
wait, the settlement timeout, the dedupe horizon). The archive is therefore
generated starting a day from now: every `created` stays ahead of the
watermark for the whole read, so no timer fires before the read ends, exactly
as in the backfill, whose watermark jumps to the end only once everything is
read. Generated in the past (the generator's default start), the timers
would be due as soon as the watermark moves, and a streaming runner could
complete a payment before its charge arrives or forget an event id before its
redelivery: a real difference from the backfill, not a test artefact, and
the reason replays of old events belong to the backfill.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines import backfill, streaming
from tests.fixtures.moto_server import MotoServer
from tests.pipelines.expected import (
    ACQUISITIONS_SQL,
    CONTRIBUTIONS_STORE_SQL,
    CURRENT_CONTRIBUTIONS_SQL,
    SUPPORTER_ITEMS_SQL,
    email_identities,
    expected_acquisitions,
    expected_contributions,
    expected_contributions_store,
    expected_dead_letter_reasons,
    expected_messages,
    expected_supporter_items,
    missing_charge_payment_intents,
    opt_in_identities,
    rows,
    snapshot,
)
from tools.generate_archive import generate, write_archive
from tools.put_on_kinesis import create_stream, kinesis_client, put_records
from transforms.sinks.run_history import recent_runs

PAYMENTS = 750
SEED = 29
SHARDS = 2
#: Share of the records on the stream before the job starts; the rest is put while it runs.
PUT_BEFORE = 0.8
LATE_CHUNKS = 6
#: Between two late chunks; well under the idle timeout, so the read cannot end between them.
LATE_PAUSE_S = 0.5
IDLE_TIMEOUT_S = 4
#: Dead-letter columns that say where and when a record was read: a file offset and
#: the envelope time for the backfill, a shard sequence number and Kinesis arrival here.
WHERE_READ = ("dead_letter_id", "source", "time")


@dataclass(frozen=True)
class Runs:
    stream: str
    truth: dict[str, Any]
    streaming_warehouse: Path
    streaming_output: str
    backfill_warehouse: Path
    job_started: float
    job_ended: float
    late_puts: tuple[float, ...]
    late_records: int


def _chunks(records: list[bytes], count: int) -> Iterator[list[bytes]]:
    size = -(-len(records) // count)
    for begin in range(0, len(records), size):
        yield records[begin : begin + size]


def _put_while_running(stream: str, records: list[bytes], put_times: list[float]) -> None:
    client = kinesis_client()
    pause = threading.Event()
    for chunk in _chunks(records, LATE_CHUNKS):
        pause.wait(LATE_PAUSE_S)
        put_records(client, stream, chunk)
        put_times.append(time.monotonic())


@pytest.fixture(scope="module")
def runs(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    archive = generate(payments=PAYMENTS, seed=SEED, start=start, hours=6)
    records = list(archive.envelopes(include_malformed=True))
    stream = f"stripe-events-{uuid.uuid4().hex[:8]}"
    client = kinesis_client()
    create_stream(client, stream, SHARDS)
    split = int(len(records) * PUT_BEFORE)
    put_records(client, stream, records[:split])

    root = tmp_path_factory.mktemp("streaming")
    warehouse = root / "streaming.duckdb"
    late_puts: list[float] = []
    producer = threading.Thread(
        target=_put_while_running, args=(stream, records[split:], late_puts), daemon=True
    )
    capture = root / "summary.txt"
    with capture.open("w") as out, contextlib.redirect_stdout(out):
        job_started = time.monotonic()
        producer.start()
        code = streaming.run(
            [
                "--kinesis_stream",
                stream,
                "--idle_timeout_s",
                str(IDLE_TIMEOUT_S),
                "--warehouse",
                str(warehouse),
            ]
        )
        job_ended = time.monotonic()
    producer.join()
    assert code == 0

    write_archive(archive, root / "archive" / "archive")
    backfill_warehouse = root / "backfill.duckdb"
    with contextlib.redirect_stdout(None):
        code = backfill.run(
            ["--source", str(root / "archive" / "archive"), "--warehouse", str(backfill_warehouse)]
        )
    assert code == 0
    return Runs(
        stream=stream,
        truth=archive.truth.to_json(),
        streaming_warehouse=warehouse,
        streaming_output=capture.read_text(),
        backfill_warehouse=backfill_warehouse,
        job_started=job_started,
        job_ended=job_ended,
        late_puts=tuple(late_puts),
        late_records=len(records) - split,
    )


def test_the_run_is_large_and_records_arrived_while_the_job_ran(runs: Runs) -> None:
    assert runs.truth["counts"]["records"] >= 5_000
    assert sum(runs.truth["counts"]["malformed"].values()) > 0
    assert runs.truth["counts"]["deliveries"]["redelivery"] > 0
    assert runs.late_records > 1_000
    assert len(runs.late_puts) == LATE_CHUNKS
    # Every late chunk went on the stream after the job started and before it ended.
    assert all(runs.job_started < put < runs.job_ended for put in runs.late_puts)


def test_contributions_match_the_truth_row_by_row(runs: Runs) -> None:
    assert rows(runs.streaming_warehouse, CURRENT_CONTRIBUTIONS_SQL) == expected_contributions(
        runs.truth
    )


def test_paid_payments_have_one_row_in_each_output(runs: Runs) -> None:
    warehouse, truth = runs.streaming_warehouse, runs.truth
    assert rows(warehouse, ACQUISITIONS_SQL) == expected_acquisitions(truth)
    assert rows(warehouse, CONTRIBUTIONS_STORE_SQL) == expected_contributions_store(truth)
    assert rows(warehouse, SUPPORTER_ITEMS_SQL) == expected_supporter_items(truth)
    assert email_identities(warehouse) == expected_messages(truth)
    assert opt_in_identities(warehouse) == expected_messages(truth)


def test_dead_letters_hold_malformed_records_and_missing_charges(runs: Runs) -> None:
    warehouse, truth = runs.streaming_warehouse, runs.truth
    reasons = Counter(r[0] for r in rows(warehouse, "SELECT reason FROM dead_letters"))
    assert reasons == expected_dead_letter_reasons(truth)
    assert rows(
        warehouse, "SELECT source FROM dead_letters WHERE reason = 'charge_missing' ORDER BY 1"
    ) == [(f"payment_intent:{pi}",) for pi in missing_charge_payment_intents(truth)]
    # A malformed record's dead letter names its shard and sequence number.
    sources = rows(warehouse, "SELECT source, raw FROM dead_letters WHERE step = 'decode'")
    prefix = f"kinesis:{runs.stream}/shardId-"
    assert sources
    assert all(src.startswith(prefix) and src.rsplit("/", 1)[1].isdigit() for src, _ in sources)
    assert all(raw for _, raw in sources)


def test_summary_accounts_for_every_record(runs: Runs) -> None:
    counts = runs.truth["counts"]
    read = counts["records"]
    duplicates = sum(counts["deliveries"].values()) - counts["deliveries"]["original"]
    lines = runs.streaming_output.splitlines()
    assert lines[0] == f"records read: {read}"
    assert f"duplicates: {duplicates}" in lines
    assert lines[-1].startswith(f"read {read} = processed ")
    assert lines[-1].endswith(": holds")


def test_the_streaming_run_is_recorded_in_its_warehouse(runs: Runs) -> None:
    [run] = recent_runs(str(runs.streaming_warehouse), 5)
    assert (run.job, run.source, run.exit_code) == ("streaming", runs.stream, 0)
    assert run.records_read == runs.truth["counts"]["records"]
    written = sum(item.rows for item in run.rows_written)
    assert f"written by this run: {written}" in runs.streaming_output.splitlines()


def test_streaming_and_backfill_write_identical_rows(runs: Runs) -> None:
    """The same events through both jobs: every table equal, row by row.

    Dead letters are compared without the columns that say where and when a
    record was read (`WHERE_READ`), which differ by nature between a file and
    a stream; everything else, including the raw record, must be equal.
    """
    streamed = snapshot(runs.streaming_warehouse)
    backfilled = snapshot(runs.backfill_warehouse)
    assert streamed.keys() == backfilled.keys()
    for table in streamed.keys() - {"dead_letters"}:
        assert streamed[table] == backfilled[table], table
        assert streamed[table], table
    columns = [
        r[0]
        for r in rows(runs.streaming_warehouse, "DESCRIBE dead_letters")
        if r[0] not in WHERE_READ
    ]
    query = f"SELECT {', '.join(columns)} FROM dead_letters ORDER BY ALL"
    assert rows(runs.streaming_warehouse, query) == rows(runs.backfill_warehouse, query)
    assert len(streamed["dead_letters"]) == len(backfilled["dead_letters"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param([], "--kinesis_stream is required", id="no-stream"),
        pytest.param(
            ["--kinesis_stream", "s", "--initial_position", "AT_TIMESTAMP"],
            "--initial_timestamp is required with --initial_position AT_TIMESTAMP",
            id="at-timestamp-without-time",
        ),
        pytest.param(
            ["--kinesis_stream", "s", "--initial_timestamp", "2026-01-01T00:00:00Z"],
            "--initial_timestamp is required with --initial_position AT_TIMESTAMP",
            id="time-without-at-timestamp",
        ),
    ],
)
def test_bad_flag_combinations_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert streaming.run(argv) == 2
    assert message in capsys.readouterr().err


def test_help_lists_the_kinesis_core_and_warehouse_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        streaming.run(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--kinesis_stream", "--idle_timeout_s", "--charge_wait_minutes", "--warehouse"):
        assert flag in help_text
