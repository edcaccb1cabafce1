"""Backfill: the Stripe events archived in S3 (or a local folder) into every store.

Reads Firehose's archive (`transforms.sources.archive.ReadArchive`), applies the same
core as the streaming job (`transforms.core.process.ProcessStripeEvents`) and writes
every output with the same writers (`transforms.sinks.WriteOutputs`): by
default all of them into a local DuckDB warehouse, or into BigQuery,
Postgres, DynamoDB and SQS when their flags are given. Every writer upserts
or de-duplicates by natural key, so re-running it over the same input leaves
exactly the same rows, items and messages. With `--identity_api_url` (token
in IDENTITY_API_TOKEN) payers without an identity get one from the Identity
API before their records are built (`transforms.services.identity`).

Locally, on the bundled sample (FnApiRunner):

    python -m pipelines.backfill
    python -m pipelines.backfill --source s3://archive/stripe/ \\
        --start 2024-12-01 --end 2024-12-08 --warehouse out/december.duckdb

On Dataflow, into the production sinks (every record type with personal data
needs its own: BigQuery gets none):

    python -m pipelines.backfill --runner DataflowRunner --project my-project \\
        --region europe-west1 --temp_location gs://my-project-dataflow/tmp \\
        --setup_file ./setup.py --source s3://archive/stripe/ \\
        --start 2024-12-01 --end 2024-12-08 --stripe_mode live \\
        --warehouse bigquery:my-project.contributions --acquisitions_bus acquisitions-bus \\
        --supporter_table SupporterProductData \\
        --contributions_store_queue_url https://sqs.eu-west-1.amazonaws.com/123456789012/store \\
        --contributions_store_key_id KEY_ID \\
        --emails_queue_url https://sqs.eu-west-1.amazonaws.com/123456789012/emails.fifo \\
        --opt_ins_queue_url https://sqs.eu-west-1.amazonaws.com/123456789012/opt-ins.fifo \\
        --sent_messages_table contribution-messages-sent
"""

from __future__ import annotations

import gc
import sys

if __name__ == "__main__":
    # Started as a script, the process imports about 2,000 modules (most of them
    # Beam's) before it reads a record, and nearly every object they make lives
    # until exit: the collections run meanwhile would only scan them, a fifth of
    # the start-up's CPU time. Collection resumes below, with those objects frozen.
    gc.disable()

from collections.abc import Callable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.history import start_run
from pipelines.launch import (
    finish,
    launch_checked,
    parse_options,
    quiet_beam_logs,
    record_run,
    record_submitted,
    runner_for,
    start,
)
from pipelines.options import (
    AwsOptions,
    BackfillOptions,
    CoreOptions,
    IdentityOptions,
    ReportOptions,
    SinkOptions,
)
from pipelines.progress import printing_progress
from schemas.records import DeadLetter
from transforms.core.disk_group import GroupByKeyOnDisk
from transforms.core.fact_codec import decode_fact, encode_fact
from transforms.core.process import ProcessStripeEvents
from transforms.sinks.contract import SinkConfig
from transforms.sinks.router import WriteOutputs
from transforms.sources.archive import ReadArchive
from transforms.sources.progress import PROGRESS

OPTION_CLASSES = (
    BackfillOptions,
    CoreOptions,
    IdentityOptions,
    SinkOptions,
    AwsOptions,
    ReportOptions,
)
PROG = "python -m pipelines.backfill"


def build(pipeline: beam.Pipeline, options: PipelineOptions) -> None:
    """Reads the archive, applies the core and writes every output."""
    plan(options)(pipeline)


def plan(options: PipelineOptions) -> Callable[[beam.Pipeline], None]:
    """Every flag the graph reads, checked (ValueError naming the flag); then what builds it.

    Needs no pipeline, so the launch checks the flags before constructing one.
    """
    archive = options.view_as(BackfillOptions).archive_arguments()
    core = options.view_as(CoreOptions).process_stripe_events(
        group_by_key=disk_grouping(options, options.view_as(StandardOptions).runner),
        resolve_identities=options.view_as(IdentityOptions).identity_resolver(),
    )
    sinks = options.view_as(SinkOptions).sink_config()
    return lambda pipeline: read_process_write(pipeline, archive, core, sinks)


def disk_grouping(options: PipelineOptions, runner: str | None) -> GroupByKeyOnDisk | None:
    """The grouping on local disk `--shuffle` asks for on `runner`, or None for the runner's."""
    shuffle_dir = options.view_as(BackfillOptions).disk_shuffle_dir(runner)
    if shuffle_dir is None:
        return None
    return GroupByKeyOnDisk(shuffle_dir, encode=encode_fact, decode=decode_fact)


def read_process_write(
    pipeline: beam.Pipeline,
    archive: dict[str, Any],
    core: ProcessStripeEvents,
    sinks: SinkConfig,
) -> None:
    """The backfill's graph: the archive read, the core, every output written to `sinks`.

    The read classifies and keys each event itself (`core.key_facts()`), so
    the core starts at its grouping (`of_keyed_facts`): fewer Beam steps per
    record, the same rules.
    """
    read = pipeline | "ReadArchive" >> ReadArchive(**archive, key_facts=core.key_facts())
    outputs = read.events | "ProcessStripeEvents" >> core.of_keyed_facts()
    tables = outputs.by_record_type()
    tables[DeadLetter] = (
        outputs.dead_letters,
        read.dead_letters,
    ) | "CollectDeadLetters" >> beam.Flatten()
    _ = tables | "WriteOutputs" >> WriteOutputs(sinks)


def run(argv: Sequence[str] | None = None, *, wait: bool = True) -> int:
    """Runs the backfill to completion, prints the summary; the exit code.

    0 done, 1 records unaccounted for, 2 a bad flag, 3 a source or sink
    missing or failing (`pipelines.launch`), each failure one line on stderr.

    `wait=False` (the Flex Template launcher, `pipelines.flex_template`) returns 0
    once the job is submitted: its summary is then the Dataflow job's counters.
    """
    options = parse_options(
        argv,
        OPTION_CLASSES,
        prog=PROG,
        description=__doc__ or "",
    )
    quiet_beam_logs()
    archive = options.view_as(BackfillOptions)
    started = start_run(
        "backfill",
        sys.argv[1:] if argv is None else argv,
        runner=options.view_as(StandardOptions).runner,
        source=archive.source,
        range_start=archive.start,
        range_end=archive.end,
    )
    local = runner_for(options)
    launch = launch_checked(PROG, options, plan, runner=local, extra_check=archive.check_source)
    if isinstance(launch, int):
        return launch
    pipeline, sinks = launch.pipeline, launch.sinks
    # Only a local run's workers update this process's progress; the FnApiRunner
    # runs the whole pipeline inside `start`.
    interval = archive.progress_interval_s if local is not None and wait else 0.0
    PROGRESS.reset()
    with printing_progress(PROGRESS, sys.stderr, interval):
        result = start(PROG, pipeline)
    if isinstance(result, int):
        record_run(started, sinks, None, result)
        return result
    if not wait:
        print(f"submitted: {result}")
        record_submitted(started, sinks, result, options)
        return 0
    return finish(result, sinks, PROG, started, options.view_as(ReportOptions).summary_json)


if __name__ == "__main__":
    # What the imports made stays until exit: moved out of the collector's view,
    # it is never scanned again, while what the run makes is collected as usual.
    gc.freeze()
    gc.enable()
    sys.exit(run())
