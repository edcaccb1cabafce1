"""What a run leaves behind: its `pipeline_runs` row and its summary as JSON.

`RunStart` is taken when a job is launched (the arguments, with secrets
and DSN passwords masked, and the start time); `run_record` turns it and the
finished run's summary into the `schemas.records.PipelineRun` row that
`transforms.sinks.run_history.append_run` appends to the warehouse, and
`submitted_record` into the row of a job submitted and not waited for (its
end, exit code and counts unknown, so null).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines.summary import RunSummary, summary_json
from schemas.records import PipelineRun, TableRows
from transforms.sinks.postgres import DsnMask

PACKAGE = "stripe-contributions-pipeline"
_REPOSITORY = Path(__file__).resolve().parent.parent
# A value that may carry a password: a `user:password@` after `://`, or `password=`.
_CREDENTIALS = re.compile(r"://[^/@\s]*:[^@\s]*@|password\s*=", re.IGNORECASE)
#: A word of a flag's name that makes its value a secret: Beam's `--s3_secret_access_key`,
#: `--s3_session_token`, any `--*_password`. Whole words, so `--stripe_api_base` is kept.
SECRET_WORDS = frozenset({"secret", "token", "password", "passwd", "key", "credentials"})
MASK = "********"


@dataclass(frozen=True)
class RunStart:
    """A launched run: what the row says before the run has ended."""

    run_id: str
    job: str
    arguments: tuple[str, ...]
    runner: str
    source: str
    range_start: datetime | None
    range_end: datetime | None
    started_at: datetime


def is_secret_flag(flag: str) -> bool:
    """Whether a word of the flag's name (between `_` or `-`) is one of `SECRET_WORDS`."""
    return not SECRET_WORDS.isdisjoint(re.split(r"[_-]+", flag.lstrip("-").lower()))


def masked_arguments(arguments: Sequence[str]) -> tuple[str, ...]:
    """The arguments with every secret masked (`MASK`).

    Masked whole: the value of a flag `is_secret_flag` names (`--flag=value`,
    or the argument after `--flag` unless it is another flag), such as a
    secret Beam takes as a flag (`--s3_secret_access_key`). Masked in part:
    the password of any DSN (`DsnMask`), e.g. a Postgres DSN given as
    `--contributions_store`.
    """
    masked = []
    value_of_secret = False
    for argument in arguments:
        if value_of_secret and not argument.startswith("--"):
            masked.append(MASK)
            value_of_secret = False
            continue
        flag, equals, value = argument.partition("=") if argument.startswith("--") else ("", "", "")
        value_of_secret = bool(flag) and not equals and is_secret_flag(flag)
        if equals and is_secret_flag(flag):
            masked.append(f"{flag}={MASK}")
            continue
        if not equals:
            flag, value = "", argument
        if _CREDENTIALS.search(value):
            value = DsnMask(value)(value)
        masked.append(f"{flag}={value}" if flag else value)
    return tuple(masked)


def start_run(
    job: str,
    arguments: Sequence[str],
    *,
    runner: str | None,
    source: str,
    range_start: datetime | None = None,
    range_end: datetime | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RunStart:
    return RunStart(
        run_id=uuid.uuid4().hex,
        job=job,
        arguments=masked_arguments(arguments),
        runner=runner or "FnApiRunner",
        source=source,
        range_start=range_start,
        range_end=range_end,
        started_at=now(),
    )


def code_version() -> tuple[str, str | None]:
    """(installed package version, git commit of this checkout or None)."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    try:
        found = subprocess.run(
            ["git", "-C", str(_REPOSITORY), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return version, None
    commit = found.stdout.strip()
    return version, commit if found.returncode == 0 and commit else None


@dataclass(frozen=True)
class SubmittedJob:
    """Where a submitted Dataflow job is found in the Jobs API."""

    job_id: str
    project: str
    region: str


def run_record(
    start: RunStart,
    summary: RunSummary | None,
    exit_code: int,
    ended_at: datetime,
    version: tuple[str, str | None],
) -> PipelineRun:
    """The `pipeline_runs` row; without a summary (the run failed) every count is 0."""
    return PipelineRun(
        run_id=start.run_id,
        job=start.job,
        arguments=start.arguments,
        runner=start.runner,
        source=start.source,
        range_start=start.range_start,
        range_end=start.range_end,
        started_at=start.started_at,
        ended_at=ended_at,
        exit_code=exit_code,
        records_read=summary.records_read if summary else 0,
        processed=summary.processed if summary else 0,
        skipped=sum(summary.skipped.values()) if summary else 0,
        dead_lettered=sum(summary.dead_lettered.values()) if summary else 0,
        rows_written=tuple(
            TableRows(destination=name, rows=rows)
            for name, rows in (summary.written.items() if summary else ())
        ),
        code_version=version[0],
        git_commit=version[1],
        dataflow_job_id=None,
        dataflow_project=None,
        dataflow_region=None,
        dataflow_state=None,
        recorded_at=ended_at,
    )


def submitted_record(
    start: RunStart,
    job: SubmittedJob | None,
    recorded_at: datetime,
    version: tuple[str, str | None],
) -> PipelineRun:
    """The row of a run submitted and not waited for: no end, exit code or counts yet (null).

    `job` is where a Dataflow job is looked up (`tools.runs --refresh`);
    None for another runner, whose row stays as submitted. Its state is
    null: nobody has looked at the job yet.
    """
    return dataclasses.replace(
        run_record(start, None, 0, recorded_at, version),
        ended_at=None,
        exit_code=None,
        records_read=None,
        processed=None,
        skipped=None,
        dead_lettered=None,
        dataflow_job_id=job.job_id if job else None,
        dataflow_project=job.project if job else None,
        dataflow_region=job.region if job else None,
    )


def tool_run_record(
    start: RunStart,
    counts: Sequence[tuple[str, int]],
    exit_code: int,
    ended_at: datetime,
    version: tuple[str, str | None],
) -> PipelineRun:
    """The `pipeline_runs` row of a run that reads no events (a re-drive, a reconciliation).

    Its counts are not records read or processed (those stay 0) but named
    counts, one `rows_written` entry each: a re-drive's letters selected,
    resolved and failed again; a reconciliation's payments compared and
    differences.
    """
    return dataclasses.replace(
        run_record(start, None, exit_code, ended_at, version),
        rows_written=tuple(TableRows(destination=name, rows=rows) for name, rows in counts),
    )


def write_summary_json(path: str, record: PipelineRun, summary: RunSummary) -> None:
    """Writes the summary with the run's fields as one JSON object (see the README)."""
    document = summary_json(
        summary,
        run_id=record.run_id,
        job=record.job,
        started_at=_iso(record.started_at),
        ended_at=_iso(record.ended_at) if record.ended_at else None,
        exit_code=record.exit_code,
        source=record.source,
        range_start=_iso(record.range_start) if record.range_start else None,
        range_end=_iso(record.range_end) if record.range_end else None,
        arguments=list(record.arguments),
        code_version=record.code_version,
        git_commit=record.git_commit,
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2) + "\n")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
