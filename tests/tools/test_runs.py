"""`python -m tools.runs`: the recent runs as a table, exact output; `--refresh` from Dataflow.

The refresh tests run against the local Dataflow stand-in
(`tests.fixtures.dataflow_api`) with real Application Default Credentials: a
service account key file in GOOGLE_APPLICATION_CREDENTIALS, whose key signs
each request's bearer token (checked).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from schemas.records import PipelineRun, TableRows
from tests.builders import RUN_STARTED, pipeline_run, submitted_run
from tests.fixtures.bigquery import run_without_google_credentials
from tests.fixtures.dataflow_api import (
    CLIENT_EMAIL,
    DataflowApi,
    adc_claims,
    counter_updates,
    use_adc,
)
from tests.fixtures.http_server import closed_port
from tools import runs
from transforms.sinks.run_history import append_run, recent_runs


def test_lists_the_recent_runs_newest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    append_run(warehouse, pipeline_run("a" * 32, RUN_STARTED))
    append_run(
        warehouse,
        pipeline_run(
            "b" * 32,
            RUN_STARTED + timedelta(hours=2),
            job="streaming",
            source="stripe-events",
            exit_code=1,
            ended_at=RUN_STARTED + timedelta(hours=3, seconds=1),
            records_read=12,
            processed=10,
            skipped=1,
            dead_lettered=0,
        ),
    )
    append_run(warehouse, pipeline_run("c" * 32, RUN_STARTED - timedelta(days=1)))

    assert runs.main(["--warehouse", warehouse, "--limit", "2"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "started (UTC)        duration  job        state  exit  read  processed  skipped"
        "  dead-lettered  written  source          run id",
        "2026-01-02 05:04:05   1:00:01  streaming  ended     1    12         10        1"
        "              0      314  stripe-events   " + "b" * 32,
        "2026-01-02 03:04:05   0:01:01  backfill   ended     0  2264       1176     1080"
        "              8      314  sample/archive  " + "a" * 32,
    ]


def test_says_so_when_no_run_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    duckdb.connect(warehouse).close()
    assert runs.main(["--warehouse", warehouse]) == 0
    assert capsys.readouterr().out == f"no runs recorded in {warehouse}\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--limit", "0"], "--limit must be at least 1, got 0"),
        (
            ["--warehouse", "bigquery:p"],
            "--warehouse 'bigquery:p': expected bigquery:PROJECT.DATASET",
        ),
    ],
    ids=["zero-limit", "no-dataset"],
)
def test_bad_arguments_exit_2_with_one_line(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        runs.main(arguments)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m tools.runs: error: {message}"


def test_a_missing_duckdb_warehouse_exits_3_in_one_line_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = tmp_path / "nowhere.duckdb"
    assert runs.main(["--warehouse", str(warehouse)]) == 3
    captured = capsys.readouterr()
    assert (
        captured.err
        == f"python -m tools.runs: error: --warehouse {warehouse}: no such DuckDB file\n"
    )
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


NO_CREDENTIALS = (
    "python -m tools.runs: error: --warehouse bigquery:p.d: no Google credentials ({found}): "
    "give application default credentials: GOOGLE_APPLICATION_CREDENTIALS naming a key file, "
    "`gcloud auth application-default login`, or a service account on Google Cloud"
)


@pytest.mark.parametrize(
    ("key_file", "found"),
    [
        pytest.param(True, "File {tmp}/absent-key.json was not found.", id="missing-key-file"),
        pytest.param(
            False,
            "Your default credentials were not found. To set up Application Default "
            "Credentials, see https://cloud.google.com/docs/authentication/external/set-up-adc "
            "for more information.",
            id="no-metadata-server",
        ),
    ],
)
def test_bigquery_without_credentials_is_exit_3_in_one_line(
    key_file: bool, found: str, tmp_path: Path
) -> None:
    done = run_without_google_credentials(
        ["-m", "tools.runs", "--warehouse", "bigquery:p.d"], tmp_path, key_file=key_file
    )
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr.splitlines() == [NO_CREDENTIALS.format(found=found.format(tmp=tmp_path))]


def test_a_locked_duckdb_file_is_exit_3_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    append_run(warehouse, pipeline_run("a" * 32, RUN_STARTED))
    # A job writing the warehouse holds its lock; another process cannot open it.
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({warehouse!r}); "
         "print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert runs.main(["--warehouse", warehouse]) == 3
    finally:
        holder.communicate("", timeout=30)
    assert capsys.readouterr().err == (
        f"python -m tools.runs: error: --warehouse {warehouse}: IOException: IO Error: Could not "
        f'set lock on file "{warehouse}": Conflicting lock is held in '
        f"{os.path.realpath(sys.executable)} (PID {holder.pid}). See also "
        "https://duckdb.org/docs/stable/connect/concurrency\n"
    )


def test_help_exits_0_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        runs.main(["--help"])
    assert exit_info.value.code == 0
    assert "--warehouse" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


JOB_ID = "2026-01-02_03_04_05-7777"
JOB_PATH = f"/v1b3/projects/test-project/locations/europe-west1/jobs/{JOB_ID}"
#: Balanced: 10 read = 7 processed + 2 skipped + 1 dead-lettered.
BALANCED = {
    ("stripe_events", "records_read"): 10,
    ("stripe_events", "processed"): 7,
    ("stripe_events", "skipped_duplicate"): 2,
    ("stripe_events", "dead_lettered_invalid_json"): 1,
    ("WriteToWarehouseBigQuery", "rows_written_contributions"): 4,
    ("stripe_events", "thank_you_email_sent"): 2,
}


def a_submitted_run() -> PipelineRun:
    """The row `record_submitted` appends for Dataflow job JOB_ID: nothing known of its end."""
    return submitted_run(
        "e" * 32, RUN_STARTED, source="s3://archive/stripe/", dataflow_job_id=JOB_ID
    )


def _rows(warehouse: str) -> list[tuple[object, ...]]:
    with duckdb.connect(warehouse, read_only=True) as connection:
        return connection.execute(
            "SELECT * FROM pipeline_runs ORDER BY recorded_at NULLS FIRST"
        ).fetchall()


def _refresh(warehouse: str, api: DataflowApi) -> int:
    return runs.main(["--warehouse", warehouse, "--refresh", "--dataflow_endpoint", api.url])


def _refresh_fails(warehouse: str, endpoint: str, capsys: pytest.CaptureFixture[str]) -> str:
    """`--refresh` against `endpoint`, which must exit 3, print nothing and leave every row
    as it was; what it said on stderr."""
    rows = _rows(warehouse)
    code = runs.main(["--warehouse", warehouse, "--refresh", "--dataflow_endpoint", endpoint])
    out, err = capsys.readouterr()
    assert (code, out, _rows(warehouse)) == (3, "", rows)
    return err


@dataclasses.dataclass(frozen=True)
class Submitted:
    """A DuckDB `warehouse` holding `a_submitted_run()`, with Application Default Credentials
    for the Dataflow stand-in from `key_file`."""

    warehouse: str
    key_file: Path


@pytest.fixture
def submitted(
    tmp_path: Path, dataflow_api: DataflowApi, monkeypatch: pytest.MonkeyPatch
) -> Submitted:
    warehouse = str(tmp_path / "w.duckdb")
    append_run(warehouse, a_submitted_run())
    return Submitted(warehouse, use_adc(monkeypatch, tmp_path, dataflow_api))


def test_a_submitted_run_is_listed_as_submitted_with_nothing_invented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    append_run(warehouse, a_submitted_run())

    assert runs.main(["--warehouse", warehouse]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "started (UTC)        duration  job       state      exit  read  processed  skipped"
        "  dead-lettered  written  source                run id",
        "2026-01-02 03:04:05         -  backfill  submitted     -     -          -        -"
        "              -        -  s3://archive/stripe/  " + "e" * 32,
    ]


def test_refresh_ends_a_done_job_with_its_exit_code_and_counts(
    submitted: Submitted, dataflow_api: DataflowApi, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = submitted.warehouse
    dataflow_api.job(JOB_ID, "JOB_STATE_DONE", "2026-01-02T04:05:06.500Z")
    # The same counters counted in another step too: the steps add up. A service metric
    # and a distribution of the same name are not counters of ours.
    dataflow_api.metrics[JOB_ID] = [
        *counter_updates(BALANCED),
        *counter_updates(
            {("stripe_events", "records_read"): 3, ("stripe_events", "processed"): 3}, step="s7"
        ),
        {
            "name": {"origin": "dataflow/v1b3", "name": "records_read", "context": {}},
            "kind": "Sum",
            "scalar": 99,
        },
        {
            "name": {
                "origin": "user",
                "name": "records_read",
                "context": {"namespace": "stripe_events", "step": "s9"},
            },
            "kind": "Distribution",
            "distribution": {"count": 5, "sum": 50, "min": 1, "max": 20},
        },
    ]
    before = datetime.now(UTC)

    assert _refresh(warehouse, dataflow_api) == 0

    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "started (UTC)        duration  job       state  exit  read  processed  skipped"
        "  dead-lettered  written  source                run id",
        "2026-01-02 03:04:05   1:01:01  backfill  done      0    13         10        2"
        "              1        6  s3://archive/stripe/  " + "e" * 32,
    ]
    assert err.splitlines() == [
        f"run {'e' * 32}: Dataflow job {JOB_ID} is JOB_STATE_DONE, recorded in pipeline_runs"
        f" of {warehouse}"
    ]
    [done] = recent_runs(warehouse, 5)
    assert done.recorded_at is not None and before <= done.recorded_at <= datetime.now(UTC)
    assert done == dataclasses.replace(
        a_submitted_run(),
        ended_at=datetime(2026, 1, 2, 4, 5, 6, 500000, tzinfo=UTC),
        exit_code=0,
        records_read=13,
        processed=10,
        skipped=2,
        dead_lettered=1,
        rows_written=(TableRows("bigquery:contributions", 4), TableRows("sent:thank_you_email", 2)),
        dataflow_state="JOB_STATE_DONE",
        recorded_at=done.recorded_at,
    )
    assert len(_rows(warehouse)) == 2  # appended: the submission's row is kept
    assert dataflow_api.paths() == [("GET", JOB_PATH), ("GET", f"{JOB_PATH}/metrics")]
    for _, _, authorization in dataflow_api.requests:
        claims = adc_claims(authorization, submitted.key_file)
        assert (claims["iss"], claims["scope"]) == (
            CLIENT_EMAIL,
            "https://www.googleapis.com/auth/cloud-platform",
        )


@pytest.mark.parametrize(
    ("state", "counters", "listed", "exit_code"),
    [
        ("JOB_STATE_DONE", {**BALANCED, ("stripe_events", "processed"): 6}, "done", 1),
        ("JOB_STATE_DRAINED", BALANCED, "drained", 0),
        ("JOB_STATE_UPDATED", BALANCED, "updated", 0),
        ("JOB_STATE_CANCELLED", BALANCED, "cancelled", 1),
        ("JOB_STATE_FAILED", BALANCED, "failed", 3),
    ],
    ids=["done-unbalanced", "drained", "updated", "cancelled", "failed"],
)
def test_each_terminal_state_maps_to_its_documented_exit_code(
    state: str,
    counters: dict[tuple[str, str], int],
    listed: str,
    exit_code: int,
    submitted: Submitted,
    dataflow_api: DataflowApi,
    capsys: pytest.CaptureFixture[str],
) -> None:
    warehouse = submitted.warehouse
    dataflow_api.job(JOB_ID, state, "2026-01-02T03:34:05.123456Z")
    dataflow_api.metrics[JOB_ID] = counter_updates(counters)

    assert _refresh(warehouse, dataflow_api) == 0

    processed = counters[("stripe_events", "processed")]
    assert capsys.readouterr().out.splitlines()[1].split() == [
        "2026-01-02", "03:04:05", "0:30:00", "backfill", listed, str(exit_code),
        "10", str(processed), "2", "1", "6", "s3://archive/stripe/", "e" * 32,
    ]  # fmt: skip
    [refreshed] = recent_runs(warehouse, 5)
    assert (refreshed.dataflow_state, refreshed.exit_code) == (state, exit_code)


def test_a_running_job_stays_running_and_an_unchanged_state_appends_nothing(
    submitted: Submitted, dataflow_api: DataflowApi, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = submitted.warehouse
    dataflow_api.job(JOB_ID, "JOB_STATE_RUNNING", "2026-01-02T03:05:00Z")

    assert _refresh(warehouse, dataflow_api) == 0
    first = capsys.readouterr()
    rows = _rows(warehouse)
    assert _refresh(warehouse, dataflow_api) == 0
    second = capsys.readouterr()

    assert first.out.splitlines()[1].split() == [
        "2026-01-02", "03:04:05", "-", "backfill", "running", "-", "-", "-", "-", "-", "-",
        "s3://archive/stripe/", "e" * 32,
    ]  # fmt: skip
    assert first.err.splitlines() == [
        f"run {'e' * 32}: Dataflow job {JOB_ID} is JOB_STATE_RUNNING, recorded in pipeline_runs"
        f" of {warehouse}"
    ]
    [running] = recent_runs(warehouse, 5)
    assert running == dataclasses.replace(
        a_submitted_run(), dataflow_state="JOB_STATE_RUNNING", recorded_at=running.recorded_at
    )
    assert (second.out, second.err) == (first.out, "")
    assert len(rows) == 2 and _rows(warehouse) == rows
    # No metrics are asked for a job that has not ended.
    assert dataflow_api.paths() == [("GET", JOB_PATH)] * 2


def test_an_unreachable_api_is_one_line_exit_3_and_the_row_unchanged(
    submitted: Submitted, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = submitted.warehouse
    append_run(warehouse, pipeline_run("a" * 32, RUN_STARTED - timedelta(days=1)))
    endpoint = f"http://localhost:{closed_port()}"

    assert _refresh_fails(warehouse, endpoint, capsys) == (
        f"python -m tools.runs: error: the Dataflow Jobs API at {endpoint} is unreachable"
        f" (ConnectionError): job {JOB_ID} not looked up\n"
    )


def test_a_job_the_api_does_not_know_is_one_line_exit_3_and_the_row_unchanged(
    submitted: Submitted, dataflow_api: DataflowApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _refresh_fails(submitted.warehouse, dataflow_api.url, capsys) == (
        f"python -m tools.runs: error: the Dataflow Jobs API at {dataflow_api.url} answered 404"
        f" for job {JOB_ID} in test-project/europe-west1: GET {dataflow_api.url}{JOB_PATH}"
        f"?%24alt=json%3Benum-encoding%3Dint: no such resource: {JOB_PATH}\n"
    )


def test_refresh_asks_nothing_when_every_listed_run_has_ended(
    tmp_path: Path, dataflow_api: DataflowApi, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    append_run(warehouse, pipeline_run("a" * 32, RUN_STARTED))

    assert _refresh(warehouse, dataflow_api) == 0

    assert capsys.readouterr().out.splitlines()[1].split()[4:6] == ["ended", "0"]
    assert dataflow_api.requests == []


def test_help_with_refresh_asks_nothing_and_writes_nothing(
    tmp_path: Path,
    dataflow_api: DataflowApi,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warehouse = tmp_path / "w.duckdb"
    append_run(str(warehouse), a_submitted_run())
    before = warehouse.read_bytes()
    monkeypatch.chdir(tmp_path)

    with pytest.raises(SystemExit) as exit_info:
        runs.main(["--warehouse", str(warehouse), "--refresh", "--help"])

    assert exit_info.value.code == 0
    assert "--dataflow_endpoint" in capsys.readouterr().out
    assert (sorted(p.name for p in tmp_path.iterdir()), warehouse.read_bytes()) == (
        ["w.duckdb"],
        before,
    )
    assert dataflow_api.requests == []


def test_no_credentials_is_one_line_exit_3_and_the_row_unchanged(
    submitted: Submitted,
    dataflow_api: DataflowApi,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-key.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))

    assert _refresh_fails(submitted.warehouse, dataflow_api.url, capsys) == (
        "python -m tools.runs: error: no Google Cloud credentials for the Dataflow Jobs API: set"
        " up Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS or gcloud): File"
        f" {missing} was not found.\n"
    )
    assert dataflow_api.requests == []
