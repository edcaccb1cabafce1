"""The run's history row and its JSON summary: masked arguments, counts, code version."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.history import (
    SubmittedJob,
    masked_arguments,
    run_record,
    start_run,
    submitted_record,
    tool_run_record,
    write_summary_json,
)
from pipelines.summary import RunSummary
from schemas.records import TableRows
from tests.builders import pipeline_run, submitted_run

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ENDED = datetime(2026, 1, 2, 3, 5, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("arguments", "masked"),
    [
        (
            ["--contributions_store", "postgresql://app:S3cr3t@db:5432/c", "--stripe_mode=live"],
            ("--contributions_store", "postgresql://app:********@db:5432/c", "--stripe_mode=live"),
        ),
        (
            ["--contributions_store=host=db user=app password=S3cr3t dbname=c"],
            ("--contributions_store=host=db user=app password=******** dbname=c",),
        ),
        (
            ["--source", "s3://bucket/stripe/", "--warehouse", "out/w.duckdb"],
            ("--source", "s3://bucket/stripe/", "--warehouse", "out/w.duckdb"),
        ),
        (
            ["--identity_api_url", "https://user:S3cr3t@identity.example/"],
            ("--identity_api_url", "********"),
        ),
        (
            ["--s3_secret_access_key", "wJalrXUtn", "--s3_session_token=FwoGZX", "--source", "s"],
            ("--s3_secret_access_key", "********", "--s3_session_token=********", "--source", "s"),
        ),
        (
            ["--s3_access_key_id=AKIA1", "--db_password", "-p4ss", "--store_passwd", "x"],
            (
                "--s3_access_key_id=********",
                "--db_password",
                "********",
                "--store_passwd",
                "********",
            ),
        ),
        (
            ["--stripe_api_base", "http://127.0.0.1:1", "--keys=k", "--monkey", "m", "--tokens=t"],
            ("--stripe_api_base", "http://127.0.0.1:1", "--keys=k", "--monkey", "m", "--tokens=t"),
        ),
        (
            ["--enable_hot_key_logging", "--source", "s", "--api_token"],
            ("--enable_hot_key_logging", "--source", "s", "--api_token"),
        ),
    ],
    ids=[
        "url-dsn",
        "keyvalue-dsn-with-equals",
        "no-secret",
        "other-url-masked-whole",
        "beams-s3-secret-flags",
        "key-password-passwd-words",
        "whole-words-only",
        "a-secret-switch-has-no-value",
    ],
)
def test_arguments_are_kept_but_for_secrets_and_passwords(
    arguments: list[str], masked: tuple[str, ...]
) -> None:
    assert masked_arguments(arguments) == masked


def test_the_run_record_holds_the_runs_counts_and_what_it_wrote() -> None:
    start = start_run(
        "backfill",
        ["--start", "2025-03-01"],
        runner=None,
        source="sample/archive",
        range_start=datetime(2025, 3, 1, tzinfo=UTC),
        now=lambda: STARTED,
    )
    summary = RunSummary(
        counters={
            "records_read": 10,
            "processed": 6,
            "skipped_duplicate": 2,
            "skipped_other_stripe_mode": 1,
            "dead_lettered_invalid_json": 1,
        },
        table_rows={"contributions": 99},
        written={"sent:thank_you_email": 2, "warehouse:contributions": 3},
    )
    record = run_record(start, summary, 0, ENDED, ("1.2.3", "abc123"))
    assert len(record.run_id) == 32
    assert record == pipeline_run(
        record.run_id,
        STARTED,
        arguments=("--start", "2025-03-01"),
        ended_at=ENDED,
        records_read=10,
        processed=6,
        skipped=3,
        dead_lettered=1,
        rows_written=(
            TableRows("sent:thank_you_email", 2),
            TableRows("warehouse:contributions", 3),
        ),
        code_version="1.2.3",
        git_commit="abc123",
        recorded_at=ENDED,
    )
    failed = run_record(start, None, 3, ENDED, ("1.2.3", None))
    assert (failed.exit_code, failed.records_read, failed.rows_written) == (3, 0, ())


def test_summary_json_carries_the_run(tmp_path: Path) -> None:
    start = start_run(
        "streaming",
        ["--kinesis_stream", "s"],
        runner="DirectRunner",
        source="s",
        now=lambda: STARTED,
    )
    summary = RunSummary(counters={"records_read": 1, "processed": 1}, table_rows={})
    record = run_record(start, summary, 0, ENDED, ("1.2.3", None))
    path = tmp_path / "deep" / "summary.json"

    write_summary_json(str(path), record, summary)

    document = json.loads(path.read_text())
    assert {key: document[key] for key in list(document)[:12]} == {
        "run_id": record.run_id,
        "job": "streaming",
        "started_at": "2026-01-02T03:04:05Z",
        "ended_at": "2026-01-02T03:05:06Z",
        "exit_code": 0,
        "source": "s",
        "range_start": None,
        "range_end": None,
        "arguments": ["--kinesis_stream", "s"],
        "code_version": "1.2.3",
        "git_commit": None,
        "records_read": 1,
    }
    assert (document["written_by_this_run"], document["table_totals"]) == ({}, None)


def test_a_redrive_row_carries_its_letter_counts_and_no_record_counts() -> None:
    start = start_run(
        "redrive",
        ["--warehouse", "out/w.duckdb", "--contributions_store", "postgresql://a:S3cr3t@db/c"],
        runner=None,
        source="sample/archive",
        now=lambda: STARTED,
    )
    counts = [("letters_selected", 5), ("letters_resolved", 3), ("letters_failed", 2)]
    record = tool_run_record(start, counts, 1, ENDED, ("1.2.3", "abc"))
    assert record.job == "redrive"
    assert record.arguments == (
        "--warehouse",
        "out/w.duckdb",
        "--contributions_store",
        "postgresql://a:********@db/c",
    )
    assert (record.started_at, record.ended_at, record.exit_code) == (STARTED, ENDED, 1)
    assert (record.records_read, record.processed, record.skipped, record.dead_lettered) == (
        0,
        0,
        0,
        0,
    )
    assert record.rows_written == (
        TableRows(destination="letters_selected", rows=5),
        TableRows(destination="letters_resolved", rows=3),
        TableRows(destination="letters_failed", rows=2),
    )
    assert (record.code_version, record.git_commit) == ("1.2.3", "abc")


def test_a_submitted_record_knows_where_the_job_is_and_nothing_of_its_end() -> None:
    start = start_run(
        "streaming",
        ["--kinesis_stream", "s", "--runner", "DataflowRunner"],
        runner="DataflowRunner",
        source="s",
        now=lambda: STARTED,
    )
    job = SubmittedJob("2026-01-02_03_04_05-1", "p", "europe-west1")

    record = submitted_record(start, job, ENDED, ("1.2.3", "abc"))

    assert record == submitted_run(
        start.run_id,
        STARTED,
        job="streaming",
        arguments=("--kinesis_stream", "s", "--runner", "DataflowRunner"),
        source="s",
        range_start=None,
        code_version="1.2.3",
        git_commit="abc",
        dataflow_job_id="2026-01-02_03_04_05-1",
        dataflow_project="p",
        dataflow_region="europe-west1",
        recorded_at=ENDED,
    )
    other_runner = submitted_record(start, None, ENDED, ("1.2.3", "abc"))
    assert (other_runner.dataflow_job_id, other_runner.exit_code) == (None, None)
