"""List the recent runs of the jobs, from the warehouse's `pipeline_runs` table.

    python -m tools.runs                                  # out/warehouse.duckdb, last 20
    python -m tools.runs --warehouse bigquery:P.D --limit 5
    python -m tools.runs --warehouse bigquery:P.D --refresh    # ask Dataflow first

One line per run, newest first: when it started (UTC), how long it took, the
job, its state, its exit code, the records read / processed / skipped /
dead-lettered, the rows it wrote (all destinations together), what it read,
and the run id (`SELECT * FROM pipeline_runs WHERE run_id = '...'` shows the
arguments, the range, the rows per destination, the code version and the
Dataflow job). The state is `ended` for a run that was waited for; a job
submitted to Dataflow is `submitted` (nobody has looked since, or Dataflow
has not started it), `running`, or its terminal state (`done`, `drained`,
`updated`, `cancelled`, `failed`); `-` stands for what is not known until it
ends. Reads only, exit 0 (also when no run is recorded yet), unless
`--refresh`: then every listed Dataflow job not known to have ended is first
looked up in the Jobs API (Application Default Credentials) and a run whose
state changed gets a newer row (`pipelines.dataflow_jobs`); if a look-up
fails, nothing is written and the tool exits 3 with one line. Exit 2 for a bad
flag, 3 when the warehouse cannot be read (a DuckDB file that does not exist
or is locked, no Google credentials, BigQuery refusing), in one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError

from pipelines.dataflow_jobs import (
    ACTIVE_STATES,
    DEFAULT_ENDPOINT,
    TERMINAL_STATES,
    DataflowJobs,
    JobStatus,
    refreshed_record,
    submitted_job,
)
from pipelines.flags import FlagParser
from pipelines.launch import EXIT_INFRASTRUCTURE, fail, one_line
from schemas.records import PipelineRun
from transforms.infrastructure import InfrastructureError
from transforms.sinks.bigquery import bigquery_dataset, describe_google_error
from transforms.sinks.common import BIGQUERY_PREFIX
from transforms.sinks.run_history import append_run, recent_runs

PROG = "python -m tools.runs"

DEFAULT_WAREHOUSE = "out/warehouse.duckdb"
HEADER = (
    "started (UTC)",
    "duration",
    "job",
    "state",
    "exit",
    "read",
    "processed",
    "skipped",
    "dead-lettered",
    "written",
    "source",
    "run id",
)
_NUMERIC = frozenset(
    {"duration", "exit", "read", "processed", "skipped", "dead-lettered", "written"}
)


UNKNOWN = "-"


def state_of(run: PipelineRun) -> str:
    """`ended`, `submitted`, `running`, or a Dataflow job's terminal state in lower case."""
    if run.dataflow_state is None:
        return "ended" if run.exit_code is not None else "submitted"
    if run.dataflow_state in TERMINAL_STATES:
        return run.dataflow_state.removeprefix("JOB_STATE_").lower()
    return "running" if run.dataflow_state in ACTIVE_STATES else "submitted"


def _duration(run: PipelineRun) -> str:
    if run.ended_at is None:
        return UNKNOWN
    seconds = max(int((run.ended_at - run.started_at).total_seconds()), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _count(value: int | None) -> str:
    return UNKNOWN if value is None else str(value)


def _cells(run: PipelineRun) -> tuple[str, ...]:
    ended = run.exit_code is not None
    return (
        run.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        _duration(run),
        run.job,
        state_of(run),
        _count(run.exit_code),
        _count(run.records_read),
        _count(run.processed),
        _count(run.skipped),
        _count(run.dead_lettered),
        str(sum(item.rows for item in run.rows_written)) if ended else UNKNOWN,
        run.source,
        run.run_id,
    )


def render(runs: Sequence[PipelineRun]) -> str:
    """A plain-text table, columns aligned, numbers right-aligned."""
    rows = [HEADER, *(_cells(run) for run in runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if name in _NUMERIC else cell.ljust(width)
            for name, cell, width in zip(HEADER, row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def refresh(warehouse: str, runs: Sequence[PipelineRun], endpoint: str) -> list[PipelineRun]:
    """The runs after asking Dataflow about those not known to have ended.

    Every look-up is made before any row is written, so a failure (an
    `InfrastructureError`) leaves the table as it was. A run whose state
    changed gets a newer row, appended, and is listed as that row.
    """
    pending = [(run, job) for run in runs if run.exit_code is None and (job := submitted_job(run))]
    if not pending:
        return list(runs)
    jobs = DataflowJobs(endpoint)
    statuses: dict[str, JobStatus] = {run.run_id: jobs.look_up(job) for run, job in pending}
    now = datetime.now(UTC)
    refreshed = []
    for run in runs:
        status = statuses.get(run.run_id)
        newer = refreshed_record(run, status, now) if status is not None else None
        if newer is not None:
            append_run(warehouse, newer)
            print(
                f"run {run.run_id}: Dataflow job {newer.dataflow_job_id} is {newer.dataflow_state}"
                f", recorded in pipeline_runs of {warehouse}",
                file=sys.stderr,
            )
        refreshed.append(newer or run)
    return refreshed


def main(argv: Sequence[str] | None = None) -> int:
    parser = FlagParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--warehouse",
        default=DEFAULT_WAREHOUSE,
        help="DuckDB file, or bigquery:PROJECT.DATASET. Default: %(default)s.",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=20,
        help="How many of the most recent runs to list. Default: %(default)s.",
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="Before listing, look up in the Dataflow Jobs API every listed Dataflow job not "
        "known to have ended, and append a newer row for each whose state changed.",
    )
    parser.add_argument(
        "--dataflow_endpoint",
        default=DEFAULT_ENDPOINT,
        help="Base URL of the Dataflow API for --refresh (as Beam's --dataflow_endpoint). "
        "Default: %(default)s.",
    )
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    if args.warehouse.startswith(BIGQUERY_PREFIX):
        try:
            bigquery_dataset(args.warehouse)
        except ValueError as error:
            parser.error(str(error))
    elif not Path(args.warehouse).exists():
        # Infrastructure, as for tools.query: the flag is well formed, the file is missing.
        return _fail(f"--warehouse {args.warehouse}: no such DuckDB file")
    try:
        runs = recent_runs(args.warehouse, args.limit)
    except (GoogleAuthError, GoogleAPIError) as error:
        return _fail(f"--warehouse {args.warehouse}: {describe_google_error(error)}")
    except duckdb.Error as error:  # e.g. a running job holds the file's lock
        return _fail(f"--warehouse {args.warehouse}: {type(error).__name__}: {error}")
    if args.refresh:
        try:
            runs = refresh(args.warehouse, runs, args.dataflow_endpoint)
        except InfrastructureError as error:
            return fail(PROG, str(error), EXIT_INFRASTRUCTURE)
        except Exception as error:  # the warehouse refused the newer row
            return fail(
                PROG,
                f"pipeline_runs of {args.warehouse} not updated: "
                f"{one_line(f'{type(error).__name__}: {error}')}",
                EXIT_INFRASTRUCTURE,
            )
    if not runs:
        print(f"no runs recorded in {args.warehouse}")
        return 0
    print(render(runs))
    return 0


def _fail(message: str) -> int:
    """One line on stderr, exit 3: the warehouse is the problem, not the flags."""
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)
    return EXIT_INFRASTRUCTURE


if __name__ == "__main__":
    sys.exit(main())
