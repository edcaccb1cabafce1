"""A job submitted to Dataflow and not waited for: its `pipeline_runs` row, then its refresh.

The Flex Template launcher (`pipelines.flex_template`, `run(..., wait=False)`)
submits for real: Beam's DataflowRunner translates the job, stages it in the
GCS emulator and posts jobs.create to the local Dataflow stand-in
(`tests.fixtures.dataflow_api`), whose answer carries the job id. Nothing is
injected: the id in the row is the one the stand-in answered. The warehouse
is BigQuery (the emulator), as on Dataflow; the other sinks are moto and the
embedded Postgres, checked before launch as always. Then `tools.runs
--refresh` brings the BigQuery row up to date from jobs.get and getMetrics,
with the Application Default Credentials of the environment (here the
emulator fixture's anonymous ones).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.cloud import dataflow

from pipelines import flex_template, streaming
from schemas.records import PipelineRun, TableRows
from tests.builders import submitted_run
from tests.fixtures.bigquery import BigQueryEmulator
from tests.fixtures.dataflow_api import SUBMITTED_JOB_ID, DataflowApi, counter_updates
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
from tools import runs
from tools.put_on_kinesis import create_stream, kinesis_client
from transforms.sinks.run_history import recent_runs

SAMPLE_ARCHIVE = Path(__file__).resolve().parents[2] / "sample" / "archive"
JOB_PATH = f"/v1b3/projects/test-project/locations/europe-west1/jobs/{SUBMITTED_JOB_ID}"


def _dataflow_flags(
    api: DataflowApi, emulator: BigQueryEmulator, postgres: PostgresServer, warehouse: str
) -> list[str]:
    """DataflowRunner against the stand-in, and the production sinks on the local servers."""
    return [
        "--runner=DataflowRunner",
        "--project=test-project",
        "--region=europe-west1",
        f"--temp_location={emulator.temp_location}",
        f"--dataflow_endpoint={api.url}",
        "--no_auth",
        f"--warehouse={warehouse}",
        f"--contributions_store={postgres.create_database()}",
        f"--supporter_table={create_table(SUPPORTER_KEY, unique('SupporterProductData'))}",
        f"--emails_queue_url={create_queue()}",
        f"--opt_ins_queue_url={create_queue()}",
        f"--sent_messages_table={create_table(LEDGER_KEY, unique('sent-messages'))}",
        f"--acquisitions_bus={create_bus()[0]}",
        "--stripe_mode=live",
    ]


def test_a_submitted_backfill_is_recorded_then_refreshed_to_its_end(
    dataflow_api: DataflowApi,
    bigquery_emulator: BigQueryEmulator,
    moto_server: MotoServer,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    warehouse = f"bigquery:{bigquery_emulator.project}.submitted_{uuid.uuid4().hex[:8]}"
    argv = [
        *_dataflow_flags(dataflow_api, bigquery_emulator, postgres_server, warehouse),
        f"--source={SAMPLE_ARCHIVE}",
        "--allow_empty=false",
    ]
    monkeypatch.setenv(flex_template.JOB_VARIABLE, "backfill")
    before = datetime.now(UTC)

    assert flex_template.main(argv) == 0

    out, err = capsys.readouterr()
    [submitted] = recent_runs(warehouse, 5)
    assert out.splitlines()[-1].startswith(f"submitted: <DataflowPipelineResult {SUBMITTED_JOB_ID}")
    assert (
        err.splitlines()[-1] == f"run {submitted.run_id} recorded in pipeline_runs of {warehouse}"
    )
    assert [body["name"] for body in dataflow_api.created] == [dataflow_api.created[0]["name"]]
    assert dataflow_api.paths()[0] == (
        "POST",
        "/v1b3/projects/test-project/locations/europe-west1/jobs",
    )
    assert submitted.recorded_at is not None and before <= submitted.recorded_at
    assert submitted == submitted_run(
        submitted.run_id,
        submitted.started_at,
        arguments=tuple(
            flex_template.normalise(
                argv, flex_template.switch_flags(flex_template.JOBS["backfill"][0])
            )
        ),
        source=str(SAMPLE_ARCHIVE),
        range_start=None,
        code_version=submitted.code_version,
        git_commit=submitted.git_commit,
        dataflow_job_id=SUBMITTED_JOB_ID,
        recorded_at=submitted.recorded_at,
    )

    dataflow_api.job(SUBMITTED_JOB_ID, "JOB_STATE_DONE", "2026-12-04T03:20:00.250000Z")
    dataflow_api.metrics[SUBMITTED_JOB_ID] = counter_updates(
        {
            ("stripe_events", "records_read"): 10,
            ("stripe_events", "processed"): 7,
            ("stripe_events", "skipped_duplicate"): 2,
            ("stripe_events", "dead_lettered_invalid_json"): 1,
            ("WriteToWarehouseBigQuery", "rows_written_contributions"): 4,
            ("WriteToContributionsStore", "rows_written_contributions_store"): 3,
        }
    )
    dataflow_api.requests.clear()

    code = runs.main(
        ["--warehouse", warehouse, "--refresh", "--dataflow_endpoint", dataflow_api.url]
    )

    out, err = capsys.readouterr()
    assert code == 0, err
    [done] = recent_runs(warehouse, 5)
    assert done == PipelineRun(
        **{
            **submitted.__dict__,
            "ended_at": datetime(2026, 12, 4, 3, 20, 0, 250000, tzinfo=UTC),
            "exit_code": 0,
            "records_read": 10,
            "processed": 7,
            "skipped": 2,
            "dead_lettered": 1,
            "rows_written": (
                TableRows("bigquery:contributions", 4),
                TableRows("postgres:contributions_store", 3),
            ),
            "dataflow_state": "JOB_STATE_DONE",
            "recorded_at": done.recorded_at,
        }
    )
    assert err.splitlines() == [
        f"run {submitted.run_id}: Dataflow job {SUBMITTED_JOB_ID} is JOB_STATE_DONE, recorded in "
        f"pipeline_runs of {warehouse}"
    ]
    # The emulator fixture makes ADC anonymous for the whole session (tests/tools/test_runs.py
    # checks the token that real ADC sends).
    assert dataflow_api.requests == [
        ("GET", JOB_PATH, None),
        ("GET", f"{JOB_PATH}/metrics", None),
    ]


def test_a_streaming_job_submitted_unbounded_is_recorded_as_submitted(
    dataflow_api: DataflowApi,
    bigquery_emulator: BigQueryEmulator,
    moto_server: MotoServer,
    postgres_server: PostgresServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m pipelines.streaming` itself (not the launcher): an unbounded read on Dataflow."""
    warehouse = f"bigquery:{bigquery_emulator.project}.streaming_{uuid.uuid4().hex[:8]}"
    stream = unique("stripe-events")
    kinesis = kinesis_client()
    create_stream(kinesis, stream, 1)
    kinesis.close()
    argv = [
        *_dataflow_flags(dataflow_api, bigquery_emulator, postgres_server, warehouse),
        "--streaming",
        f"--kinesis_stream={stream}",
    ]

    assert streaming.run(argv) == 0

    out, err = capsys.readouterr()
    [submitted] = recent_runs(warehouse, 5)
    assert out.splitlines()[-1] == (
        f"submitted: <DataflowPipelineResult {SUBMITTED_JOB_ID} PENDING>; it runs until drained"
        " or cancelled"
    )
    assert (
        err.splitlines()[-1] == f"run {submitted.run_id} recorded in pipeline_runs of {warehouse}"
    )
    # Beam's client sends enums as numbers (`$alt=json;enum-encoding=int`).
    assert [body["type"] for body in dataflow_api.created] == [
        int(dataflow.JobType.JOB_TYPE_STREAMING)
    ]
    assert (
        submitted.job,
        submitted.source,
        submitted.arguments,
        submitted.ended_at,
        submitted.exit_code,
        submitted.records_read,
        submitted.dataflow_job_id,
        submitted.dataflow_project,
        submitted.dataflow_region,
        submitted.dataflow_state,
    ) == (
        "streaming",
        stream,
        tuple(argv),
        None,
        None,
        None,
        SUBMITTED_JOB_ID,
        "test-project",
        "europe-west1",
        None,
    )
