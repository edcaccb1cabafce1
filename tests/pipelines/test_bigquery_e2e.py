"""The BigQuery warehouse through the real jobs, on the emulators, against the generator's truth.

Servers: bqemulator and gcp-storage-emulator (`bigquery_emulator`), moto
(S3, Kinesis, DynamoDB, SQS) and the embedded Postgres: with a BigQuery
warehouse every operational output must have its own sink. The events are
the generator's (start a day from now: see test_streaming.py for why the
streaming job needs live events) plus one crafted payment whose amount
(10**35 pence, beyond Stripe's limit and NUMERIC(38, 9)) is refused at the
boundary, its session and its charge each one dead letter.

`runs` (module scope) writes three times into one BigQuery dataset:

1. the backfill of the archive in a local folder (`FILE_LOADS` through
   `--temp_location gs://...`);
2. the backfill again, of the same files in moto S3 (`--source s3://...`;
   Beam reads S3 and stages load files in GCS in one job);
3. the streaming job over the same events on a two-shard moto Kinesis
   stream, bounded by `--idle_timeout_s` (`STREAMING_INSERTS`; the rows it
   sends are recorded to check their insert ids, which the emulator ignores).

After each run every view and the row count of every `<table>_raw` are read
back. The first run is checked against the truth (`tests/pipelines/expected.py`);
the later ones must leave every view as it was while the raw tables grow,
since the emulator, like a replay past BigQuery's de-duplication window,
keeps every copy: the views alone make them one row per natural key.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from apache_beam.io.gcp.bigquery_tools import BigQueryWrapper
from google.cloud import bigquery

from pipelines import backfill, streaming
from schemas.generate import table_of
from schemas.records import ALL_RECORD_TYPES
from schemas.views import (
    CONTRIBUTIONS_CURRENT,
    DAILY_TOTALS,
    FACT_ACQUISITION_EVENT,
    fact_acquisition_event_columns,
    raw_table_name,
)
from tests.builders import (
    charge_object,
    envelope_time,
    eventbridge_envelope,
    session_object,
    stripe_event_document,
)
from tests.fixtures.bigquery import BigQueryEmulator
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.sinks import (
    LEDGER_KEY,
    SUPPORTER_KEY,
    create_bus,
    create_queue,
    create_table,
    unique,
)
from tests.pipelines.expected import (
    ACQUISITIONS_SQL,
    CONTRIBUTIONS_SQL,
    CURRENT_CONTRIBUTIONS_SQL,
    expected_acquisitions,
    expected_contributions,
    expected_dead_letter_reasons,
    live_only,
    major,
    paid_payments,
)
from tools.generate_archive import REQUIRED_SCENARIOS, generate, write_archive
from tools.put_on_kinesis import create_stream, kinesis_client, put_records
from transforms.sinks.run_history import recent_runs

#: The fewest payments for which the generator forces every required scenario (23 x 3,
#: twice over), so each view and raw table still gets rows; each payment more only costs
#: time in the three runs.
PAYMENTS = 2 * len(REQUIRED_SCENARIOS) * 3
SEED = 61
SHARDS = 2
BUCKET = "stripe-archive-bigquery"
PREFIX = "eventbridge/"
IDLE_TIMEOUT_S = "3"
ACCOUNT = "ed_61RkUK0000000000000000"
HUGE = "crafted_huge"
#: The crafted payment's records: its session and its charge.
HUGE_RECORDS = ("checkout.session.completed", "charge.succeeded")
PERSONAL_COLUMNS = {"email", "name", "postal_code", "state"}
#: Tables whose records go to a production sink, never to BigQuery.
SENT_ELSEWHERE = (
    "acquisition_events",
    "contributions_store",
    "supporter_product_data",
    "thank_you_emails",
    "soft_opt_ins",
)
VIEWS = (
    *(table_of(t).name for t in ALL_RECORD_TYPES),
    CONTRIBUTIONS_CURRENT,
    DAILY_TOTALS,
    FACT_ACQUISITION_EVENT,
)
DISPUTE_EVENTS = (
    "charge.dispute.created",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.updated",
    "charge.dispute.closed",
)
JOBS_PAGE = 10_000
DEAD_LETTER_RAW = 4  # the `raw` column's position in `dead_letters`
#: The tables that receive rows, in `ALL_RECORD_TYPES` order.
LOADED = ("contributions", "acquisitions", "payment_adjustments", "dead_letters")
TOO_MUCH = "expected `int` <= 99999999"

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Events:
    archive: Path  # the Firehose folder (with exports/) the backfill reads
    records: tuple[bytes, ...]  # as put on Kinesis, malformed ones included
    truth: dict[str, Any]
    malformed: int


@dataclass(frozen=True)
class Snapshot:
    """The dataset after one run: every view's rows (sorted) and every raw table's row count."""

    views: dict[str, list[Row]]
    raw_counts: dict[str, int]
    load_jobs: int  # every load job into the dataset so far
    summary: str


@dataclass(frozen=True)
class Inserted:
    """One row as the streaming job sent it to `tabledata.insertAll`."""

    table: str
    insert_id: str | None
    row: dict[str, Any]


@dataclass(frozen=True)
class Runs:
    project: str
    dataset: str
    events: Events
    first: Snapshot  # the backfill of the local folder
    second: Snapshot  # the backfill of the same files in S3
    third: Snapshot  # the streaming job over the same events
    inserted: tuple[Inserted, ...]  # every row the streaming job inserted


def _envelope(event_type: str, data_object: dict[str, Any], created: datetime) -> bytes:
    event_id = f"evt_{data_object['id']}"
    detail = stripe_event_document(
        event_id, event_type, data_object, created=int(created.timestamp())
    )
    envelope = eventbridge_envelope(
        detail,
        envelope_id=str(uuid.uuid5(uuid.NAMESPACE_URL, event_id)),
        account=ACCOUNT,
        time=envelope_time(created),
    )
    return json.dumps(envelope).encode()


def _huge_payment(created: datetime) -> list[bytes]:
    """A paid card payment of 10**35 pence: 34 digits before the point in pounds."""
    session = session_object(
        session_id=f"cs_{HUGE}",
        payment_intent=f"pi_{HUGE}",
        amount_total=10**35,
        metadata={},
        email="ada@example.com",
        name="Ada Lovelace",
    )
    charge = charge_object(
        charge_id=f"ch_{HUGE}", payment_intent=f"pi_{HUGE}", amount=10**35, card_country="GB"
    )
    return [
        _envelope("checkout.session.completed", session, created),
        _envelope("charge.succeeded", charge, created),
    ]


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Events:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    archive = generate(payments=PAYMENTS, seed=SEED, start=start, hours=2)
    created = start + timedelta(minutes=30)
    huge = _huge_payment(created)
    folder = tmp_path_factory.mktemp("archive") / "archive"
    write_archive(archive, folder, buffer_seconds=900)  # Firehose's longest buffer: fewer files
    hour = folder / created.strftime("%Y/%m/%d/%H")
    hour.mkdir(parents=True, exist_ok=True)
    (hour / f"crafted-1-{created:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}").write_bytes(b"\n".join(huge))
    # The sinks are a live deployment's: test-mode payments are skipped.
    truth = live_only(archive.truth.to_json())
    return Events(
        archive=folder,
        records=(*archive.envelopes(include_malformed=True), *huge),
        truth=truth,
        malformed=sum(truth["counts"]["malformed"].values()),
    )


def _query(client: bigquery.Client, sql: str) -> list[Row]:
    return [tuple(row.values()) for row in client.query(sql).result()]


def _snapshot(client: bigquery.Client, project: str, dataset: str, summary: str) -> Snapshot:
    views = {
        view: sorted(_query(client, f"SELECT * FROM `{project}.{dataset}.{view}`"), key=repr)
        for view in VIEWS
    }
    raw_counts = {}
    for record_type in ALL_RECORD_TYPES:
        raw = f"`{project}.{dataset}.{raw_table_name(record_type)}`"
        ((count,),) = _query(client, f"SELECT COUNT(*) FROM {raw}")
        raw_counts[table_of(record_type).name] = int(count)
    load_jobs = _count_load_jobs(client, dataset)
    return Snapshot(views=views, raw_counts=raw_counts, load_jobs=load_jobs, summary=summary)


def _count_load_jobs(client: bigquery.Client, dataset: str) -> int:
    """Load jobs into `dataset` so far."""
    # The emulator answers one page of at most maxResults jobs (100 by default).
    jobs = list(client.list_jobs(all_users=True, page_size=JOBS_PAGE))
    assert len(jobs) < JOBS_PAGE, "the job list may be cut short"
    return sum(
        1
        for job in jobs
        if isinstance(job, bigquery.LoadJob) and job.destination.dataset_id == dataset
    )


@contextlib.contextmanager
def _recording_inserts() -> Iterator[list[Inserted]]:
    """Records every row Beam's streaming inserts send, with its insert id.

    The emulator ignores insert ids, so this is where they are checked; the
    FnApiRunner runs the writer in this process.
    """
    inserted: list[Inserted] = []
    insert_rows = BigQueryWrapper.insert_rows

    def recording(self: BigQueryWrapper, *args: Any, **kwargs: Any) -> Any:
        call = inspect.signature(insert_rows).bind(self, *args, **kwargs)
        ids = call.arguments.get("insert_ids") or [None] * len(call.arguments["rows"])
        inserted.extend(
            Inserted(call.arguments["table_id"], insert_id, row)
            for insert_id, row in zip(ids, call.arguments["rows"], strict=True)
        )
        return insert_rows(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BigQueryWrapper, "insert_rows", recording)
        yield inserted


def _run(job: Callable[[Sequence[str]], int], argv: list[str], out: Path) -> str:
    with out.open("w") as capture, contextlib.redirect_stdout(capture):
        code = job(argv)
    summary = out.read_text()
    assert code == 0, summary
    return summary


@pytest.fixture(scope="module")
def runs(
    events: Events,
    bigquery_emulator: BigQueryEmulator,
    moto_server: MotoServer,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Runs:
    root = tmp_path_factory.mktemp("bigquery_e2e")
    project = bigquery_emulator.project
    dataset = f"e2e_{uuid.uuid4().hex[:8]}"
    flags = [
        "--warehouse",
        f"bigquery:{project}.{dataset}",
        "--temp_location",
        bigquery_emulator.temp_location,
        "--contributions_store",
        postgres_server.create_database(),
        "--supporter_table",
        create_table(SUPPORTER_KEY, unique("SupporterProductData")),
        "--emails_queue_url",
        create_queue(),
        "--opt_ins_queue_url",
        create_queue(),
        "--sent_messages_table",
        create_table(LEDGER_KEY, unique("sent-messages")),
        "--acquisitions_bus",
        create_bus()[0],
        "--stripe_mode",
        "live",
    ]
    s3 = boto3.session.Session().client("s3")
    s3.create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": moto_server.region}
    )
    for path in sorted(p for p in events.archive.rglob("*") if p.is_file()):
        key = f"{PREFIX}{path.relative_to(events.archive)}"
        s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    s3.close()
    stream = unique("stripe-events")
    kinesis = kinesis_client()
    create_stream(kinesis, stream, SHARDS)
    put_records(kinesis, stream, events.records)
    kinesis.close()
    streaming_argv = ["--kinesis_stream", stream, "--idle_timeout_s", IDLE_TIMEOUT_S, *flags]

    with bigquery.Client(project=project) as client:
        first = _snapshot(
            client,
            project,
            dataset,
            _run(backfill.run, ["--source", str(events.archive), *flags], root / "first.txt"),
        )
        second = _snapshot(
            client,
            project,
            dataset,
            _run(
                backfill.run, ["--source", f"s3://{BUCKET}/{PREFIX}", *flags], root / "second.txt"
            ),
        )
        with _recording_inserts() as inserted:
            summary = _run(streaming.run, streaming_argv, root / "third.txt")
        third = _snapshot(client, project, dataset, summary)
    return Runs(project, dataset, events, first, second, third, tuple(inserted))


def _view(runs: Runs, sql: str) -> list[Row]:
    """`sql` (written for the DuckDB warehouse's table names) on the BigQuery views."""
    qualified = sql.replace(" FROM ", f" FROM `{runs.project}.{runs.dataset}`.", 1)
    with bigquery.Client(project=runs.project) as client:
        return _query(client, qualified)


def expected_adjustments(truth: dict[str, Any]) -> list[Row]:
    """(payment, kind, event type, amount, refunded total, currency) per refund or dispute event.

    The generator sends each refund twice: as its refund object (refund.created,
    one row per refund id, no cumulative total) and as charge.refunded.
    """
    expected: list[Row] = []
    for p in truth["payments"]:
        currency = p["currency"]
        refunded = 0
        for amount in p["refunds_minor"]:
            refunded += amount
            expected.append(
                (
                    p["charge_id"],
                    "refund",
                    "charge.refunded",
                    major(amount, currency),
                    major(refunded, currency),
                    currency,
                )
            )
            expected.append(
                (
                    p["charge_id"],
                    "refund",
                    "refund.created",
                    major(amount, currency),
                    None,
                    currency,
                )
            )
        if p["disputed"]:
            won = ("charge.dispute.funds_reinstated",) if p["dispute_outcome"] == "won" else ()
            expected.extend(
                (
                    p["charge_id"],
                    "dispute",
                    event,
                    major(p["amount_minor"], currency),
                    None,
                    currency,
                )
                for event in (*DISPUTE_EVENTS, *won)
            )
    return sorted(expected, key=repr)


def expected_daily_totals(truth: dict[str, Any], settled: dict[str, date]) -> list[Row]:
    """Per settlement day (UTC), currency and livemode, over paid and refunded payments.

    The settlement day is the one fact the truth does not hold: it comes from
    `contributions.created` (`settled`, by payment id).
    """
    totals: dict[tuple[date, str, bool], list[Any]] = {}
    for p in paid_payments(truth):
        key = (settled[p["charge_id"]], p["currency"], p["livemode"])
        day = totals.setdefault(key, [0, Decimal(0), Decimal(0), 0, 0])
        day[0] += 1
        day[1] += major(p["amount_minor"], p["currency"])
        day[2] += major(p["refunded_total_minor"], p["currency"])
        day[3] += int(p["refunded_total_minor"] > 0)
        day[4] += int(p["disputed"])
    return sorted(
        (*key, payments, amount, refunded, amount - refunded, refunds, disputed)
        for key, (payments, amount, refunded, refunds, disputed) in totals.items()
    )


def as_emitted(row: Row) -> Row:
    """An expected `contributions` row as the core emits it: before any refund or dispute."""
    status = "Paid" if row[3] == "Refunded" else row[3]
    return (*row[:3], status, row[4], Decimal(0), *row[6:9], False, *row[10:])


def test_contributions_current_folds_refunds_and_disputes_exactly_as_the_truth(
    runs: Runs,
) -> None:
    expected = expected_contributions(runs.events.truth)
    assert _view(runs, CURRENT_CONTRIBUTIONS_SQL) == expected
    # The folding is the view's: the appended rows are as the core emitted them.
    assert _view(runs, CONTRIBUTIONS_SQL) == [as_emitted(row) for row in expected]
    # Every case of the rule occurs: full and partial refunds, disputes, failures.
    assert {row[3] for row in expected} == {"Paid", "Failed", "Refunded"}
    assert any(row[3] == "Paid" and row[5] > 0 for row in expected)
    assert any(row[9] for row in expected)


def test_acquisitions_and_adjustments_hold_exactly_the_truth(runs: Runs) -> None:
    truth = runs.events.truth
    assert _view(runs, ACQUISITIONS_SQL) == expected_acquisitions(truth)
    adjustments = _view(
        runs,
        "SELECT payment_id, kind, event_type, amount, amount_refunded_total, currency"
        " FROM payment_adjustments",
    )
    assert sorted(adjustments, key=repr) == expected_adjustments(truth)
    assert {row[1] for row in adjustments} == {"refund", "dispute"}


def test_fact_acquisition_event_has_todays_columns_one_row_per_payment(runs: Runs) -> None:
    with bigquery.Client(project=runs.project) as client:
        sql = f"SELECT * FROM `{runs.project}.{runs.dataset}.{FACT_ACQUISITION_EVENT}` LIMIT 0"
        schema = client.query(sql).result().schema
    fact_columns = fact_acquisition_event_columns()
    assert tuple(field.name for field in schema) == fact_columns
    columns = ", ".join(fact_columns)
    facts = _view(runs, f"SELECT {columns} FROM {FACT_ACQUISITION_EVENT}")
    acquisitions = _view(runs, f"SELECT {columns} FROM acquisitions")
    assert sorted(facts, key=repr) == sorted(acquisitions, key=repr)
    payment_ids = [row[fact_columns.index("payment_id")] for row in facts]
    assert sorted(payment_ids) == sorted(p["charge_id"] for p in paid_payments(runs.events.truth))


def test_daily_totals_sum_the_current_state_per_day(runs: Runs) -> None:
    settled = {
        payment_id: created.astimezone(UTC).date()
        for payment_id, created in _view(runs, "SELECT payment_id, created FROM contributions")
    }
    totals = _view(runs, f"SELECT * FROM {DAILY_TOTALS} ORDER BY day, currency, livemode")
    assert totals == expected_daily_totals(runs.events.truth, settled)


def test_no_personal_data_anywhere_in_bigquery(runs: Runs) -> None:
    """No personal column in the analytics tables; no email or name in any cell of any view.

    Dead letters included: their raw input is redacted on the way to BigQuery
    (the crafted session refused at the boundary keeps its ids and amount, not
    its email), while `source` still says where the full record is.
    """
    with bigquery.Client(project=runs.project) as client:
        for view, raw in (
            ("contributions", "contributions_raw"),
            ("acquisitions", "acquisitions_raw"),
            (CONTRIBUTIONS_CURRENT, "contributions_raw"),
        ):
            sql = f"SELECT * FROM `{runs.project}.{runs.dataset}.{view}` LIMIT 0"
            schema = client.query(sql).result().schema
            assert {field.name for field in schema}.isdisjoint(PERSONAL_COLUMNS), view
            table = client.get_table(f"{runs.project}.{runs.dataset}.{raw}")
            assert {field.name for field in table.schema}.isdisjoint(PERSONAL_COLUMNS), raw
    for snapshot in (runs.first, runs.second, runs.third):
        for view, rows in snapshot.views.items():
            dump = json.dumps([list(row) for row in rows], default=str)
            assert "@example" not in dump and "Lovelace" not in dump, view
        assert {table: snapshot.views[table] for table in SENT_ELSEWHERE} == {
            table: [] for table in SENT_ELSEWHERE
        }
    # The refused session is there, without its personal fields.
    refused = {
        letter["data"]["object"]["id"]: letter["data"]["object"]
        for letter in (
            json.loads(row[DEAD_LETTER_RAW])
            for row in runs.first.views["dead_letters"]
            if f"_{HUGE}" in row[DEAD_LETTER_RAW]
        )
    }
    assert sorted(refused) == [f"ch_{HUGE}", f"cs_{HUGE}"]
    session = refused[f"cs_{HUGE}"]
    assert (session["payment_intent"], session["amount_total"]) == (f"pi_{HUGE}", 10**35)
    assert session["customer_details"]["email"] == session["customer_details"]["name"]
    assert session["customer_details"]["email"] == "[redacted]"


def test_the_huge_amount_is_dead_lettered_with_its_step_and_the_rest_is_complete(
    runs: Runs,
) -> None:
    # After the backfill alone; the streaming run adds rows for malformed records only.
    letters = [
        (step, reason, error, source, raw)
        for _, step, reason, error, raw, source, *_ in runs.first.views["dead_letters"]
    ]
    huge = sorted(
        (step, reason, error, source.startswith(f"{runs.events.archive}/"))
        for step, reason, error, source, raw in letters
        if f"_{HUGE}" in raw
    )
    # Refused at the boundary, so nothing of the payment reached any writer.
    assert huge == [
        ("classify", "invalid_charge", f"data.object.amount: {TOO_MUCH}", True),
        ("classify", "invalid_session", f"data.object.amount_total: {TOO_MUCH}", True),
    ]
    reasons = Counter(reason for _, reason, _, _, _ in letters)
    assert reasons == expected_dead_letter_reasons(runs.events.truth) + Counter(
        invalid_session=1, invalid_charge=1
    )
    assert runs.first.summary.splitlines()[-1].endswith(": holds")
    ids = {r[0] for r in runs.first.views["contributions"]}
    assert f"ch_{HUGE}" not in ids
    assert len(ids) == len(expected_contributions(runs.events.truth))


#: The steps whose dead letters are keyed by the record's source.
RECORD_STEPS = ("decode", "classify")


def _decoded(letters: list[Row], source_prefix: str) -> list[Row]:
    """(step, reason, error, raw) of the record dead letters read from sources so named."""
    return sorted(
        r[1:5] for r in letters if r[1] in RECORD_STEPS and r[5].startswith(source_prefix)
    )


def test_rerun_and_streaming_leave_every_view_as_after_the_first_run(runs: Runs) -> None:
    first, second, third = runs.first, runs.second, runs.third
    for later in (second, third):
        assert later.summary.splitlines()[-1].endswith(": holds")
        assert {v: rows for v, rows in later.views.items() if v != "dead_letters"} == {
            v: rows for v, rows in first.views.items() if v != "dead_letters"
        }
    # A malformed record's dead letter is keyed by where it was read, so each
    # source (folder, S3, stream) adds its own rows; every other dead letter
    # is the same row after every run.
    archived = _decoded(first.views["dead_letters"], str(runs.events.archive))
    assert len(archived) == runs.events.malformed + len(HUGE_RECORDS)
    new_sources = (
        (second, f"s3://{BUCKET}/{PREFIX}", first),
        (third, "kinesis:", second),
    )
    for later, source, before in new_sources:
        added = sorted(set(later.views["dead_letters"]) - set(before.views["dead_letters"]))
        assert sorted(set(before.views["dead_letters"]) - set(later.views["dead_letters"])) == []
        assert sorted(r[1:5] for r in added) == archived, source
        assert _decoded(added, source) == archived, source


def test_raw_tables_keep_every_copy_and_the_views_one_row_per_key(runs: Runs) -> None:
    first, second, third = runs.first, runs.second, runs.third
    for table, count in first.raw_counts.items():
        if table in SENT_ELSEWHERE:
            assert (count, second.raw_counts[table], third.raw_counts[table]) == (0, 0, 0)
            continue
        assert count == len(first.views[table]) > 0, table
        assert second.raw_counts[table] == 2 * count, table
        # The stream's dead letters for malformed records replace, in number, the archive's.
        assert third.raw_counts[table] == 3 * count, table


def test_the_backfill_loads_files_and_the_streaming_job_inserts(runs: Runs) -> None:
    # One load job per table that receives rows; the streaming job runs none.
    first, second, third = runs.first, runs.second, runs.third
    assert [t for t, count in first.raw_counts.items() if count] == list(LOADED)
    assert first.load_jobs == len(LOADED)
    assert second.load_jobs - first.load_jobs == len(LOADED)
    assert third.load_jobs == second.load_jobs


def test_streaming_inserts_carry_a_hash_of_table_and_natural_key_as_insert_id(runs: Runs) -> None:
    """What BigQuery's best-effort de-duplication keys on (the emulator ignores it)."""
    third = runs.third
    inserted: dict[str, list[str]] = {}
    expected: dict[str, list[str]] = {}
    for record_type in ALL_RECORD_TYPES:
        table = table_of(record_type)
        raw = raw_table_name(record_type)
        sent = [row for row in runs.inserted if row.table == raw]
        if not sent:
            continue
        inserted[raw] = sorted(row.insert_id or "" for row in sent)
        keys = [[table.name, *(str(row.row[k]) for k in table.key)] for row in sent]
        expected[raw] = sorted(hashlib.sha256(json.dumps(key).encode()).hexdigest() for key in keys)
        # One row per natural key: the core emits each record once per run.
        assert len(set(expected[raw])) == len(sent) == third.raw_counts[table.name] // 3, raw
    assert inserted == expected
    assert sorted(inserted) == [f"{t}_raw" for t in sorted(LOADED)]


def test_each_run_is_recorded_in_the_datasets_pipeline_runs(runs: Runs) -> None:
    recorded = sorted(
        recent_runs(f"bigquery:{runs.project}.{runs.dataset}", 10),
        key=lambda run: run.started_at,
    )
    assert [(run.job, run.exit_code) for run in recorded] == [
        ("backfill", 0),
        ("backfill", 0),
        ("streaming", 0),
    ]
    assert recorded[1].source == f"s3://{BUCKET}/{PREFIX}"
    for run, snapshot in zip(recorded, (runs.first, runs.second, runs.third), strict=True):
        lines = snapshot.summary.splitlines()
        written = {item.destination: item.rows for item in run.rows_written}
        start = lines.index(f"written by this run: {sum(written.values())}")
        assert lines[start + 1 : start + 1 + len(written)] == [
            f"  {name}: {rows}" for name, rows in written.items()
        ]
        assert written["bigquery:contributions"] > 0
        assert written["postgres:contributions_store"] > 0
        assert "table totals: not counted (the warehouse is not a DuckDB file)" in lines
