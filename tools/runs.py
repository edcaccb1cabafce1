"""List the recent runs of the jobs, from the warehouse's `pipeline_runs` table.

    python -m tools.runs                                  # out/warehouse.duckdb, last 20
    python -m tools.runs --warehouse bigquery:P.D --limit 5

One line per run, newest first: when it started (UTC), how long it took, the
job, its exit code, the records read / processed / skipped / dead-lettered,
the rows it wrote (all destinations together), what it read, and the run id
(`SELECT * FROM pipeline_runs WHERE run_id = '...'` shows the arguments, the
range, the rows per destination and the code version). Reads only; exit 0,
also when no run is recorded yet, 2 a bad flag, 3 when the warehouse cannot be
read (a DuckDB file that does not exist or is locked, no Google credentials,
BigQuery refusing), in one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import duckdb
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError

from pipelines.flags import FlagParser
from pipelines.launch import EXIT_INFRASTRUCTURE, one_line
from schemas.records import PipelineRun
from transforms.sinks.bigquery import bigquery_dataset, describe_google_error
from transforms.sinks.common import BIGQUERY_PREFIX
from transforms.sinks.run_history import recent_runs

PROG = "python -m tools.runs"
DEFAULT_WAREHOUSE = "out/warehouse.duckdb"
HEADER = (
    "started (UTC)",
    "duration",
    "job",
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


def _duration(run: PipelineRun) -> str:
    seconds = max(int((run.ended_at - run.started_at).total_seconds()), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _cells(run: PipelineRun) -> tuple[str, ...]:
    return (
        run.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        _duration(run),
        run.job,
        str(run.exit_code),
        str(run.records_read),
        str(run.processed),
        str(run.skipped),
        str(run.dead_lettered),
        str(sum(item.rows for item in run.rows_written)),
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
