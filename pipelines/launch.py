"""Argument parsing, runner choice, pre-launch checks and the end-of-run report, shared by the jobs.

Exit codes, the same for both jobs and every tool: 0 done, 1 records
unaccounted for, 2 usage (a bad flag or combination), 3 infrastructure (a
source, sink or service missing, unreachable or failing, before or during the
run). An expected failure is one line on stderr, `<prog>: error: <what>`,
never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import apache_beam as beam
import botocore.exceptions
import duckdb
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
    _BeamArgumentParser,
)
from apache_beam.runners.dataflow.dataflow_runner import DataflowPipelineResult
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineResult, PipelineRunner

from pipelines.aws_role import start_role
from pipelines.flags import FlagParser
from pipelines.google_cloud import check_google_cloud, check_temp_location
from pipelines.history import (
    RunStart,
    SubmittedJob,
    code_version,
    run_record,
    submitted_record,
    tool_run_record,
    write_summary_json,
)
from pipelines.options import LOCAL_RUNNERS, CoreOptions, SinkOptions
from pipelines.summary import RunSummary, counters_of, render, writer_counts_of
from schemas.generate import table_of
from schemas.records import ALL_RECORD_TYPES, PipelineRun
from transforms.infrastructure import (
    InfrastructureError,
    describe_error,
    standard_retries_by_default,
)
from transforms.sinks.common import BIGQUERY_PREFIX, WAREHOUSE
from transforms.sinks.contract import SinkConfig
from transforms.sinks.duckdb import duckdb_path
from transforms.sinks.run_history import append_run

#: Every record read is accounted for.
EXIT_DONE = 0
#: The run ended but records are unaccounted for (read != processed + skipped + dead-lettered).
EXIT_UNACCOUNTED = 1
#: A bad flag, value or combination: nothing was started.
EXIT_USAGE = 2
#: A source, sink or service is missing, unreachable or failed (before or during the run).
EXIT_INFRASTRUCTURE = 3

BEAM_OPTIONS_EPILOG = (
    "Any other Beam pipeline option is passed to Beam, e.g. --runner DataflowRunner "
    "--project P --region R --temp_location gs://B/tmp --setup_file ./setup.py. "
    "Without --runner the job runs locally on Beam's FnApiRunner."
)


def parse_options(
    argv: Sequence[str] | None,
    option_classes: Sequence[type[PipelineOptions]],
    *,
    prog: str,
    description: str,
) -> PipelineOptions:
    """The job's options; `--help` and bad values exit with argparse's messages.

    Every flag must be spelt in full, ours and Beam's (`pipelines.flags`):
    one nobody defines exits 2 naming the closest. Beam parses the same
    arguments again without abbreviations, so a flag our parser took as an
    abbreviation would be dropped by Beam, and the job would run with its
    default.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    parser = FlagParser(
        prog=prog,
        description=description,
        epilog=BEAM_OPTIONS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        passed_on=known_flags(),
    )
    for option_class in option_classes:
        # Beam's documented hook; it only calls add_argument, which argparse has.
        option_class._add_argparse_args(cast(Any, parser))
    _, rest = parser.parse_known_args(args)
    dropped = beam_leftovers(rest)
    if dropped:
        parser.error(f"unrecognized arguments: {' '.join(dropped)} (the jobs take only flags)")
    standard_retries_by_default()
    return JobOptions(args)


def beam_leftovers(args: Sequence[str]) -> list[str]:
    """What Beam would discard with a warning: neither a flag of an options class nor its value.

    The flags are known by then (`known_flags`); what is left is an argument
    that is not a value (`sample/archive` without `--source`, a second value)
    or comes after `--`. Parsed as Beam's `get_all_options` parses: its
    parser (private, for `add_value_provider_argument`) with every direct
    subclass of `PipelineOptions`, once each.
    """
    parser = _BeamArgumentParser(allow_abbrev=False)
    for option_class in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        option_class._add_argparse_args(parser)
    _, left = parser.parse_known_args(args)
    return left


_View = TypeVar("_View", bound=PipelineOptions)


class JobOptions(PipelineOptions):
    """A job's options, whose view of each options class is made once.

    Beam's `view_as` parses the flags again for every view (a new argparse
    parser with all the class's options), and Beam asks for views several
    times per step while it builds and runs the graph: about 330 views, 0.07–0.10 s
    of a backfill's start-up. Every view reads and writes the values shared by
    all of them (`_all_options`), so reusing one changes nothing they hold.
    Pickled and copied without the views.
    """

    def view_as(self, cls: type[_View]) -> _View:
        views: dict[type, PipelineOptions] | None = self.__dict__.get("_views")
        if views is None:
            views = {}
            # PipelineOptions.__setattr__ accepts only option names.
            object.__setattr__(self, "_views", views)
        view = views.get(cls)
        if view is None:
            view = views[cls] = super().view_as(cls)
        return cast(_View, view)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_views", None)
        return state


def known_flags() -> frozenset[str]:
    """Every flag some `PipelineOptions` class defines: ours and all of Beam's."""
    parser = _FlagCollector()
    pending: list[type[PipelineOptions]] = [PipelineOptions]
    seen: set[type[PipelineOptions]] = set()
    while pending:
        option_class = pending.pop()
        if option_class in seen:
            continue
        seen.add(option_class)
        pending.extend(option_class.__subclasses__())
        option_class._add_argparse_args(cast(Any, parser))
    return frozenset(parser.flags)


class _FlagCollector:
    """Records the flags an options class adds, whatever argparse features it uses."""

    def __init__(self) -> None:
        self.flags: set[str] = set()

    def add_argument(self, *names: str, **_: Any) -> None:
        self.flags.update(name for name in names if name.startswith("--"))

    add_value_provider_argument = add_argument

    def add_argument_group(self, *_: Any, **__: Any) -> _FlagCollector:
        return self

    def add_mutually_exclusive_group(self, *_: Any, **__: Any) -> _FlagCollector:
        return self


def runner_for(options: PipelineOptions) -> PipelineRunner | None:
    """FnApiRunner unless --runner was given (None lets Beam resolve the name)."""
    if options.view_as(StandardOptions).runner:
        return None
    return FnApiRunner()


def table_rows(warehouse: str) -> dict[str, int]:
    """Rows in each table of a DuckDB warehouse after the run."""
    if not Path(warehouse).exists():
        return {}
    with duckdb.connect(warehouse, read_only=True) as connection:
        rows = {}
        for record_type in ALL_RECORD_TYPES:
            name = table_of(record_type).name
            found = connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()
            rows[name] = int(found[0]) if found else 0
        return rows


def report(result: PipelineResult, warehouse: str | None) -> RunSummary:
    """Prints the run summary and returns it."""
    summary = RunSummary(
        counters=counters_of(result),
        table_rows=table_rows(warehouse) if warehouse else {},
        written=writer_counts_of(result),
    )
    print(render(summary))
    return summary


def check_sinks(sinks: SinkConfig) -> None:
    """Stops before launch when a selected sink's queue or table is missing or of the wrong kind.

    Runs each selected sink's `check` (once, when sinks share it). Queues and
    DynamoDB tables are infrastructure: the job never creates them. (The
    writers repeat these checks on each worker.)
    """
    for check in dict.fromkeys(sink.check for sink in sinks.selected):
        if check is not None:
            check(sinks)


#: What a job reads from its options before any pipeline exists: every flag's value
#: checked (ValueError naming the flag), the graph then applied to the pipeline given.
Plan = Callable[[PipelineOptions], Callable[[beam.Pipeline], None]]


@dataclass(frozen=True)
class Launch:
    """A checked job ready to run: its pipeline, graph applied, and its sinks."""

    pipeline: beam.Pipeline
    sinks: SinkConfig


def launch_checked(
    prog: str,
    options: PipelineOptions,
    plan: Plan,
    *,
    runner: PipelineRunner | None,
    extra_check: Callable[[], None] | None = None,
) -> Launch | int:
    """Checks the flags, then the infrastructure, then constructs the pipeline and builds it.

    In this order, so that a refused launch never waits for anything:

    1. usage (ValueError, `EXIT_USAGE`): the sink flags, `--stripe_mode`, the
       runner against the warehouse, Dataflow's `--project` and
       `--temp_location` (`pipelines.google_cloud`), then every flag the graph
       reads (`plan(options)`);
    2. infrastructure (`InfrastructureError` or an AWS error,
       `EXIT_INFRASTRUCTURE`): Google Cloud for a Dataflow launch, the AWS role,
       each selected sink, the Stripe key, `extra_check` (the source);
    3. `beam.Pipeline(runner=runner, options=options)`, which on Dataflow
       calls Google Cloud: an error there is infrastructure too, one line;
       Beam's option validation errors are usage;
    4. the graph applied to it; the DuckDB warehouse's folder made.

    Returns the `Launch`, or the exit code after printing one line the way
    argparse does.
    """

    def construct() -> beam.Pipeline:
        return beam.Pipeline(runner=runner, options=options)

    return _checked(prog, options, plan, construct, extra_check)


def build_checked(
    prog: str,
    pipeline: beam.Pipeline,
    options: PipelineOptions,
    build: Callable[[beam.Pipeline, PipelineOptions], None],
    extra_check: Callable[[], None] | None = None,
) -> SinkConfig | int:
    """`launch_checked` for a pipeline constructed already (a local one: the re-drive's).

    The graph is built among the usage checks, as its ValueErrors are flags.
    """

    def plan(options: PipelineOptions) -> Callable[[beam.Pipeline], None]:
        build(pipeline, options)
        return lambda _: None

    launch = _checked(prog, options, plan, lambda: pipeline, extra_check)
    return launch if isinstance(launch, int) else launch.sinks


def check_flags(options: PipelineOptions, plan: Plan) -> Callable[[beam.Pipeline], None]:
    """A launch's usage checks (ValueError naming the flag), offline; what builds the graph.

    The sink flags, `--stripe_mode`, the runner against the warehouse,
    Dataflow's `--project` and `--temp_location`, then `plan(options)`.
    """
    sinks = options.view_as(SinkOptions).sink_config()
    options.view_as(CoreOptions).checked_stripe_mode()
    check_runner(options, sinks)
    check_temp_location(options)
    return plan(options)


def _checked(
    prog: str,
    options: PipelineOptions,
    plan: Plan,
    construct: Callable[[], beam.Pipeline],
    extra_check: Callable[[], None] | None,
) -> Launch | int:
    try:
        apply = check_flags(options, plan)
        sinks = options.view_as(SinkOptions).sink_config()
        # What constructing the pipeline would do first: the source check matches a glob
        # with Beam's filesystems, which read their options (S3 endpoint, ...) from here.
        FileSystems.set_options(options)
        # Every flag is checked (usage, exit 2) before any infrastructure is (exit 3).
        check_google_cloud(options)
        # Before the checks, which are AWS calls too; workers start it themselves.
        start_role(options)
        check_sinks(sinks)
        options.view_as(CoreOptions).check_stripe_key()
        if extra_check is not None:
            extra_check()
        pipeline = _constructed(construct)
        apply(pipeline)
    except ValueError as error:
        return fail(prog, str(error), EXIT_USAGE)
    except InfrastructureError as error:
        return fail(prog, str(error), EXIT_INFRASTRUCTURE)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        return fail(prog, f"an AWS check failed: {describe_error(error)}", EXIT_INFRASTRUCTURE)
    warehouse = duckdb_path(sinks)
    if warehouse:
        Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    return Launch(pipeline, sinks)


#: Where the errors of Beam's launch-time Google Cloud calls come from (auth, API, HTTP).
_GOOGLE_CLOUD_ERROR_MODULES = ("google.auth.", "google.api_core.", "requests.")


def _constructed(construct: Callable[[], beam.Pipeline]) -> beam.Pipeline:
    """`construct()`; a Google Cloud error of Beam's launch-time calls as `InfrastructureError`.

    Matched by module rather than imported: a local run never loads those clients.
    """
    try:
        return construct()
    except Exception as error:
        if not type(error).__module__.startswith(_GOOGLE_CLOUD_ERROR_MODULES):
            raise
        message = " ".join(str(error).split())
        raise InfrastructureError(
            f"the pipeline could not be constructed: {type(error).__name__}: {message}"
        ) from None


def check_runner(options: PipelineOptions, sinks: SinkConfig) -> None:
    """ValueError when a DuckDB warehouse is given to a remote runner.

    Its workers would each write their own file on their own disk, which is
    deleted with the worker: every row would be lost.
    """
    runner = options.view_as(StandardOptions).runner
    warehouse = duckdb_path(sinks)
    if warehouse is None or runner is None or runner in LOCAL_RUNNERS:
        return
    raise ValueError(
        f"--warehouse {warehouse} is a DuckDB file, which {runner} workers would write on "
        "their own disks and lose: give --warehouse bigquery:PROJECT.DATASET and the "
        "production sinks"
    )


def fail(prog: str, message: str, code: int) -> int:
    """Prints `<prog>: error: <message>` as one line on stderr and returns `code`."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return code


def one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def expected_failure(error: BaseException) -> str | None:
    """What failed, in one line, when `error` is (or wraps) an expected infrastructure failure.

    Expected: `InfrastructureError` (ours: a store, queue or warehouse failed
    after its retries) and botocore's errors. Looks along `__cause__` and
    `__context__`, then in the error's text: the FnApiRunner re-raises a
    worker's exception as a RuntimeError that holds only the worker's
    traceback as text. None for anything else, which is a bug and keeps its
    traceback.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, InfrastructureError):
            return str(current)
        if isinstance(current, botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError):
            return f"an AWS call failed: {describe_error(current)}"
        current = current.__cause__ or current.__context__
    return _failure_in_text(str(error))


def _names(*kinds: type) -> frozenset[str]:
    """The class names of `kinds` and of all their subclasses."""
    names: set[str] = set()
    pending = list(kinds)
    while pending:
        kind = pending.pop()
        names.add(kind.__name__)
        pending.extend(kind.__subclasses__())
    return frozenset(names)


def _failure_in_text(text: str) -> str | None:
    """The last `module.SomeExpectedError: message` line of a traceback held as text."""
    aws = _names(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
    ours = _names(InfrastructureError)
    pattern = "|".join(re.escape(name) for name in sorted(aws | ours, key=len, reverse=True))
    found = re.findall(rf"^(?:[\w.]+\.)?({pattern}): (.+)$", text, flags=re.MULTILINE)
    if not found:
        return None
    name, message = found[-1]
    return f"an AWS call failed: {name}: {message}" if name in aws else str(message)


def start(prog: str, pipeline: beam.Pipeline) -> PipelineResult | int:
    """`pipeline.run()`; an expected failure during the run is one line and EXIT_INFRASTRUCTURE.

    The local FnApiRunner runs the whole pipeline inside `run()`.
    """
    try:
        return pipeline.run()
    except Exception as error:
        message = expected_failure(error)
        if message is None:
            raise
        return fail(prog, message, EXIT_INFRASTRUCTURE)


def finish(
    result: PipelineResult,
    sinks: SinkConfig,
    prog: str = "",
    run: RunStart | None = None,
    summary_path: str | None = None,
) -> int:
    """Waits for the run, prints its summary; EXIT_DONE when it succeeded, else EXIT_UNACCOUNTED.

    An expected failure while waiting is one line and EXIT_INFRASTRUCTURE.
    With `run`, the run is also recorded (`record_run`) and `summary_path` written.
    """
    try:
        result.wait_until_finish()
    except Exception as error:
        message = expected_failure(error)
        if message is None:
            raise
        if run is not None:
            record_run(run, sinks, None, EXIT_INFRASTRUCTURE)
        return fail(prog, message, EXIT_INFRASTRUCTURE)
    summary = report(result, duckdb_path(sinks))
    code = EXIT_DONE if summary.succeeded else EXIT_UNACCOUNTED
    if run is not None:
        record_run(run, sinks, summary, code, summary_path)
    return code


def record_run(
    run: RunStart,
    sinks: SinkConfig,
    summary: RunSummary | None,
    exit_code: int,
    summary_path: str | None = None,
) -> None:
    """Appends the run's `pipeline_runs` row to the warehouse and writes `--summary_json`.

    A run whose row cannot be written has still written its data: the error
    is one line on stderr, and the exit code stays the run's.
    """
    record = run_record(run, summary, exit_code, datetime.now(UTC), code_version())
    if summary_path is not None and summary is not None:
        write_summary_json(summary_path, record, summary)
    _append_record(str(sinks[WAREHOUSE.name]), record)


def record_submitted(
    run: RunStart, sinks: SinkConfig, result: PipelineResult, options: PipelineOptions
) -> None:
    """Appends the `pipeline_runs` row of a job submitted and not waited for (`submitted_record`).

    Its end, exit code and counts are not known yet (null in the row); a
    Dataflow job's id, with the project and region it runs in, lets
    `tools.runs --refresh` bring the run up to date from the Jobs API. A dry
    run (Beam's `--dry_run`, by Beam's own test of it) submits nothing and
    records nothing.
    """
    if options.view_as(TestOptions).dry_run:
        return
    job = None
    if isinstance(result, DataflowPipelineResult) and result.has_job:
        cloud = options.view_as(GoogleCloudOptions)
        job = SubmittedJob(result.job_id(), cloud.project or "", cloud.region or "")
    record = submitted_record(run, job, datetime.now(UTC), code_version())
    _append_record(str(sinks[WAREHOUSE.name]), record)


def record_tool_run(
    run: RunStart, warehouse: str, counts: Sequence[tuple[str, int]], exit_code: int
) -> None:
    """Appends the `pipeline_runs` row of a re-drive or reconciliation (`tool_run_record`).

    Not into a DuckDB warehouse that does not exist: the row would create it.
    """
    if not warehouse.startswith(BIGQUERY_PREFIX) and not Path(warehouse).exists():
        return
    _append_record(
        warehouse, tool_run_record(run, counts, exit_code, datetime.now(UTC), code_version())
    )


def _append_record(warehouse: str, record: PipelineRun) -> None:
    try:
        append_run(warehouse, record)
    except Exception as error:  # the row is a report; the run's outcome stands
        print(
            f"warning: run {record.run_id} not recorded in pipeline_runs of {warehouse}:"
            f" {one_line(f'{type(error).__name__}: {error}')}",
            file=sys.stderr,
        )
        return
    print(f"run {record.run_id} recorded in pipeline_runs of {warehouse}", file=sys.stderr)


def quiet_beam_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
