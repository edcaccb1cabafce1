"""Fail fast, clearly: every source and sink is checked before launch, and an expected failure,
before or during the run, is one line on stderr with its exit code (2 usage, 3 infrastructure).

Runs the jobs in-process (`run([...])`) against real servers: moto for S3 and Kinesis, the
embedded Postgres fixture, a closed port for an endpoint that does not answer, and a second
process holding DuckDB's lock on the warehouse.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import boto3
import psycopg
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from psycopg import conninfo

from pipelines import backfill, streaming
from pipelines.launch import EXIT_INFRASTRUCTURE, expected_failure, start
from tests.fixtures.http_server import SilentEndpoint, closed_port
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.unreachable import offline_aws, timed
from tools import put_on_kinesis
from tools.dataflow_steps import DRY_RUN_ARGS
from tools.generate_archive import generate, write_archive
from transforms import infrastructure
from transforms.infrastructure import AWS_ATTEMPTS
from transforms.sinks.duckdb import WarehouseLockedError, connect_waiting
from transforms.sinks.postgres import ContributionsStoreError
from transforms.sinks.run_history import recent_runs
from transforms.sources import archive as archive_source

SAMPLE_ARCHIVE = Path(__file__).resolve().parents[2] / "sample" / "archive"
#: DataflowRunner's offline dry-run options: Beam accepts them and contacts nothing.
DATAFLOW = list(DRY_RUN_ARGS)
BACKFILL = "python -m pipelines.backfill: error: "
STREAMING = "python -m pipelines.streaming: error: "


#: What a run that got going always reports on stderr: its progress and its history row.
_RUN_REPORT = re.compile(r"^(progress: .*|run [0-9a-f]{32} recorded in pipeline_runs of .*)$")


def _errors(err: str) -> list[str]:
    """The lines of `err` apart from the run's own report (progress, history row)."""
    return [line for line in err.splitlines() if not _RUN_REPORT.match(line)]


def _only_line(err: str) -> str:
    lines = _errors(err)
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "code", "line"),
    [
        pytest.param(
            ["--source", "/nonexistent/archive"],
            3,
            "--source /nonexistent/archive does not exist: give the archive's folder, a glob "
            "or s3://bucket/prefix",
            id="missing-folder",
        ),
        pytest.param(
            ["--source", ""],
            2,
            "--source must not be empty: give a folder, a glob or s3://bucket/prefix",
            id="empty-source",
        ),
        pytest.param(
            ["--warehouse", ":memory:"],
            2,
            "--warehouse :memory: is an in-memory DuckDB database, discarded with every row "
            "when the run ends: give a file (e.g. out/warehouse.duckdb)",
            id="memory-warehouse",
        ),
        pytest.param(
            ["--warehouse", ""],
            2,
            "--warehouse must not be empty: give a DuckDB file (e.g. out/warehouse.duckdb) or "
            "bigquery:PROJECT.DATASET",
            id="empty-warehouse",
        ),
        pytest.param(
            [*DATAFLOW, "--warehouse", "out/w.duckdb"],
            2,
            "--warehouse out/w.duckdb is a DuckDB file, which DataflowRunner workers would "
            "write on their own disks and lose: give --warehouse bigquery:PROJECT.DATASET and "
            "the production sinks",
            id="duckdb-on-dataflow",
        ),
        pytest.param(
            ["--contributions_store", "mysql://root:S3cretPw9@127.0.0.1/store"],
            2,
            "--contributions_store takes a Postgres DSN (postgresql://... or host=... "
            "dbname=...), not a mysql:// one",
            id="mysql-dsn",
        ),
        pytest.param(
            ["--warehouse_lock_timeout_s", "soon"],
            2,
            "--warehouse_lock_timeout_s takes seconds (0 or more), got 'soon'",
            id="bad-lock-timeout",
        ),
    ],
)
def test_the_backfill_refuses_before_launch_in_one_line(
    argv: list[str], code: int, line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "--warehouse" not in argv:
        argv = [*argv, "--warehouse", str(tmp_path / "out" / "w.duckdb")]

    assert backfill.run(argv) == code

    assert _only_line(capsys.readouterr().err) == BACKFILL + line
    assert not (tmp_path / "out").exists()


def test_a_range_with_no_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Files outside Firehose's hour folders (API exports) may hold any time: left out here.
    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE_ARCHIVE, archive, ignore=shutil.ignore_patterns("exports"))
    files = sum(1 for path in archive.rglob("*") if path.is_file())
    argv = ["--source", str(archive), "--start", "2030-01-01", "--end", "2030-01-02"]

    assert backfill.run([*argv, "--warehouse", str(tmp_path / "w.duckdb")]) == 3

    assert _only_line(capsys.readouterr().err) == (
        f"{BACKFILL}--source {archive} holds {files} files but none filed from 2029-12-31T23h "
        "to 2030-01-05T00h (--start/--end with the arrival margins): check --source and the "
        "range, or pass --allow_empty to run on nothing"
    )


def test_an_empty_folder_needs_allow_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--source", str(empty), "--warehouse", str(tmp_path / "w.duckdb")]

    assert backfill.run(argv) == 3
    assert _only_line(capsys.readouterr().err) == (
        f"{BACKFILL}--source {empty} holds no files: check --source and the range, or pass "
        "--allow_empty to run on nothing"
    )

    assert backfill.run([*argv, "--allow_empty"]) == 0
    captured = capsys.readouterr()
    assert _errors(captured.err) == []
    assert (
        captured.out.splitlines()[-1] == "read 0 = processed 0 + skipped 0 + dead-lettered 0: holds"
    )


def test_an_unreachable_s3_endpoint_fails_in_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    offline_aws(monkeypatch, tmp_path)
    port = closed_port()
    argv = ["--source", "s3://archive/stripe/", "--s3_endpoint_url", f"http://127.0.0.1:{port}"]
    argv += ["--s3_region_name", "eu-west-1", "--warehouse", str(tmp_path / "w.duckdb")]

    code, elapsed = timed(backfill.run, argv)

    assert code == 3
    assert elapsed < 30
    assert _only_line(capsys.readouterr().err) == (
        f"{BACKFILL}--source s3://archive/stripe/ cannot be listed: EndpointConnectionError: "
        f'Could not connect to the endpoint URL: "http://127.0.0.1:{port}/archive?list-type=2'
        '&prefix=stripe%2F&encoding-type=url" (check --s3_endpoint_url or AWS_ENDPOINT_URL, '
        "the region and the credentials)"
    )


#: The read timeout the silent-endpoint test gives every client instead of READ_TIMEOUT_S:
#: the same bound, reached in seconds.
SHORT_READ_TIMEOUT_S = 0.5


def test_a_silent_s3_endpoint_fails_after_each_attempts_read_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An endpoint that accepts and never answers: each attempt ends at the read timeout."""
    offline_aws(monkeypatch, tmp_path)
    monkeypatch.setattr(infrastructure, "READ_TIMEOUT_S", SHORT_READ_TIMEOUT_S)
    monkeypatch.setattr(
        archive_source, "RETRYING_CLIENT_CONFIG", infrastructure.aws_client_config(AWS_ATTEMPTS)
    )
    argv = ["--source", "s3://archive/stripe/", "--s3_region_name", "eu-west-1"]
    argv += ["--warehouse", str(tmp_path / "w.duckdb")]

    with SilentEndpoint() as endpoint:
        code, elapsed = timed(backfill.run, [*argv, "--s3_endpoint_url", endpoint.url])
        connections = endpoint.connections

    assert code == 3
    assert connections == AWS_ATTEMPTS
    # Every attempt waited its read timeout; botocore's backoff between them is under 1 + 2 s.
    assert AWS_ATTEMPTS * SHORT_READ_TIMEOUT_S <= elapsed < AWS_ATTEMPTS * SHORT_READ_TIMEOUT_S + 5
    assert _only_line(capsys.readouterr().err) == (
        f"{BACKFILL}--source s3://archive/stripe/ cannot be listed: ReadTimeoutError: "
        f'Read timeout on endpoint URL: "{endpoint.url}/archive?list-type=2'
        '&prefix=stripe%2F&encoding-type=url" (check --s3_endpoint_url or AWS_ENDPOINT_URL, '
        "the region and the credentials)"
    )
    assert not (tmp_path / "w.duckdb").exists()


def test_a_missing_bucket_or_an_empty_prefix_stops_the_backfill(
    moto_server: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = boto3.session.Session().client("s3")
    s3.create_bucket(
        Bucket="fail-fast-archive",
        CreateBucketConfiguration={"LocationConstraint": moto_server.region},
    )
    s3.put_object(Bucket="fail-fast-archive", Key="stripe/2025/03/01/00/a.gz", Body=b"")
    warehouse = ["--warehouse", str(tmp_path / "w.duckdb")]

    assert backfill.run(["--source", "s3://no-such-bucket/stripe/", *warehouse]) == 3
    assert _only_line(capsys.readouterr().err) == (
        f"{BACKFILL}--source s3://no-such-bucket/stripe/: the S3 bucket 'no-such-bucket' "
        "does not exist"
    )
    assert backfill.run(["--source", "s3://fail-fast-archive/strpe/", *warehouse]) == 3
    assert _only_line(capsys.readouterr().err) == (
        f"{BACKFILL}--source s3://fail-fast-archive/strpe/ holds no files: check --source "
        "and the range, or pass --allow_empty to run on nothing"
    )


def test_a_missing_stream_stops_the_streaming_job_and_the_producer(
    moto_server: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--kinesis_stream", "no-such-stream", "--idle_timeout_s", "1"]

    assert streaming.run([*argv, "--warehouse", str(tmp_path / "w.duckdb")]) == 3
    assert _only_line(capsys.readouterr().err) == (
        f"{STREAMING}--kinesis_stream: the Kinesis stream 'no-such-stream' does not exist; the "
        "job does not create it: check the name, region and endpoint, or create the stream"
    )

    assert put_on_kinesis.main(["--stream", "no-such-stream", "--generate", "1"]) == 3
    assert _only_line(capsys.readouterr().err) == (
        "python -m tools.put_on_kinesis: error: --stream: the Kinesis stream 'no-such-stream' "
        "does not exist; the job does not create it: check the name, region and endpoint, or "
        "create the stream"
    )


def test_an_unreachable_store_stops_before_launch_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    dsn = f"postgresql://postgres:S3cretPw9%21@127.0.0.1:{port}/store"
    argv = ["--contributions_store", dsn, "--stripe_mode", "test"]

    assert backfill.run([*argv, "--warehouse", str(tmp_path / "w.duckdb")]) == 3

    line = _only_line(capsys.readouterr().err)
    assert line.startswith(
        f"{BACKFILL}--contributions_store: cannot connect to the contributions store at "
        f"127.0.0.1:{port}/store: OperationalError: "
    )
    assert "Connection refused" in line
    assert "S3cretPw9" not in line


def _fail_with_store_error(_: int) -> int:
    raise ContributionsStoreError(
        "Could not write batch in the contributions store at h:5432/store after 8 attempts: "
        "OperationalError: the server closed the connection"
    )


def test_a_failure_during_the_run_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The FnApiRunner keeps only the worker's traceback as text; the line is found in it."""
    pipeline = beam.Pipeline(runner=FnApiRunner())
    _ = pipeline | beam.Create([1]) | "WriteStore" >> beam.Map(_fail_with_store_error)

    assert start("prog", pipeline) == EXIT_INFRASTRUCTURE

    assert _only_line(capsys.readouterr().err) == (
        "prog: error: Could not write batch in the contributions store at h:5432/store after "
        "8 attempts: OperationalError: the server closed the connection [while running "
        "'WriteStore']"
    )


def test_an_unexpected_error_is_not_an_expected_failure() -> None:
    assert expected_failure(RuntimeError("Traceback ...\nKeyError: 'x'")) is None
    assert expected_failure(RuntimeError("x")) is None


_HOLD_LOCK = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1])
connection.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
print("held", flush=True)
sys.stdin.readline()
connection.close()
print("released", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A second process that holds the warehouse's DuckDB lock until told to release it."""
    warehouse = tmp_path / "w.duckdb"
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline() == "held\n"
    yield warehouse, process
    process.kill()
    process.wait()


def test_a_locked_warehouse_stops_the_backfill_after_the_wait_and_writes_nothing(
    lock_holder: tuple[Path, subprocess.Popen[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse, process = lock_holder
    argv = ["--warehouse", str(warehouse), "--warehouse_lock_timeout_s", "0.2"]

    assert backfill.run(argv) == 3

    assert _only_line(capsys.readouterr().err) == (
        f"{BACKFILL}--warehouse {warehouse} is locked by process {process.pid} (another run "
        "or a query) for more than 0.2s (--warehouse_lock_timeout_s): this load wrote "
        "nothing to it; run again once that process ends"
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("release\n")
    process.stdin.flush()
    assert process.stdout.readline() == "released\n"
    with connect_waiting(str(warehouse), 0) as connection:
        tables = connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    assert tables == [("held",)]


def test_the_wait_ends_as_soon_as_the_other_process_lets_go(
    lock_holder: tuple[Path, subprocess.Popen[str]],
) -> None:
    warehouse, process = lock_holder
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None and stdout is not None
    waits: list[float] = []

    def release_on_first_wait(seconds: float) -> None:
        # Instead of sleeping: the first retry happens after the holder has let go.
        waits.append(seconds)
        if len(waits) == 1:
            stdin.write("release\n")
            stdin.flush()
            assert stdout.readline() == "released\n"

    with connect_waiting(str(warehouse), 60, sleep=release_on_first_wait) as connection:
        assert connection.execute("SELECT count(*) FROM held").fetchone() == (0,)
    assert waits == [0.05]


def test_the_lock_wait_is_bounded_by_its_timeout(
    lock_holder: tuple[Path, subprocess.Popen[str]],
) -> None:
    warehouse, _ = lock_holder
    now = [0.0]

    def advance(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(WarehouseLockedError):
        connect_waiting(str(warehouse), 2.0, sleep=advance, clock=lambda: now[0])
    assert now[0] == pytest.approx(2.0)


def test_a_store_that_fails_during_the_run_ends_it_in_one_line(
    postgres_server: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store accepts the check's connection but refuses the writer's tables mid-run."""
    dsn = postgres_server.create_database()
    role = f"no_create_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN")
        connection.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    database = conninfo.conninfo_to_dict(dsn)["dbname"]
    archive = tmp_path / "archive"
    write_archive(generate(payments=2, seed=3), archive)
    argv = ["--source", str(archive), "--warehouse", str(tmp_path / "w.duckdb")]
    argv += ["--contributions_store", f"{dsn} user={role}", "--stripe_mode", "test"]
    argv += ["--summary_json", str(tmp_path / "summary.json")]

    assert backfill.run(argv) == 3

    err = capsys.readouterr().err
    line = _only_line(err)
    assert line.startswith(
        f"{BACKFILL}Could not create tables in the contributions store at "
        f"{postgres_server.host}:{postgres_server.port}/{database}: InsufficientPrivilege "
        "[42501]: permission denied for schema public"
    )
    assert line.endswith("']")  # Beam names the step: [while running '...']
    # The failed run is in the history all the same, with its exit code and zero counts; it
    # ended without a summary, so no --summary_json.
    (run,) = recent_runs(str(tmp_path / "w.duckdb"), 5)
    assert (run.job, run.exit_code, run.source, run.arguments) == (
        "backfill", 3, str(archive), tuple(argv)
    )  # fmt: skip
    counts = (run.records_read, run.processed, run.skipped, run.dead_lettered, run.rows_written)
    assert counts == (0, 0, 0, 0, ())
    assert run.ended_at is not None and run.started_at <= run.ended_at
    assert not (tmp_path / "summary.json").exists()
    assert f"run {run.run_id} recorded in pipeline_runs of {tmp_path / 'w.duckdb'}" in err
