"""Streaming: the Stripe events on the Kinesis stream into the warehouse, as they arrive.

Reads the Kinesis data stream EventBridge puts the Stripe events on
(`transforms.sources.kinesis.ReadFromKinesis`, at least once), decodes each record
(`transforms.sources.decode.DecodeEvents`: event time = the Stripe event's
`created`), applies the same core as the backfill
(`transforms.core.process.ProcessStripeEvents`) and writes every output with the same
writers (`transforms.sinks.WriteOutputs`: the DuckDB or BigQuery warehouse,
Postgres, DynamoDB, SQS), with the same identity step when
`--identity_api_url` is given, and the same completion from Stripe with
`--complete_from_stripe` (here at each payment's charge deadline, see
`transforms.core.process.JoinPaymentsFn`). Only the read step and the
windowing before the warehouse writer differ from the backfill.

Windowing before the warehouse writer (`transforms.sinks.TriggerLoads`): a global window whose
panes fire every `--load_interval_s` of processing time (early firings) and
once more when the watermark passes the end of the window (the end of a
bounded read, or a drain), discarding what was fired. Why: the records are
already final when the core emits them (a payment is emitted once, a refund
is an adjustment the warehouse folds in by key), so event-time windows would
only delay loads and split nothing useful; a processing-time trigger bounds
the latency and batches rows into one warehouse transaction per pane instead
of one per record; discarding because each pane's rows are upserted and a
pane must not load the previous panes' staged files again. A count trigger is
not used: the writer's first GroupByKey gathers staged files, not records, so
a count would count files. On the local FnApiRunner the early panes are left
out: its GroupByKey has no processing-time clock, and it fires only when the
source ends anyway.

Event time and the watermark: the source's watermark follows Kinesis arrival
times (now), and the core's rules are event-time timers on `created`. Live
events arrive within seconds of their `created`, so a streaming run and the
backfill agree; replaying events created long ago belongs to the backfill
(on a streaming runner their charge wait and dedupe horizon would already
have passed when they arrive).

Locally against a Kinesis stream (FnApiRunner in streaming mode; the standard
AWS configuration, e.g. AWS_ENDPOINT_URL for a local server), bounded so it
ends and prints the same summary as the backfill:

    python -m pipelines.streaming --kinesis_stream stripe-events \\
        --idle_timeout_s 5 --warehouse out/streaming.duckdb

A local run, bounded or not, stops on Ctrl-C (SIGINT) or SIGTERM: the read
ends (`transforms.sources.kinesis.reader.request_stop`), what was read is
processed and loaded as at the end of a bounded read, the summary is printed
and the exit code is as usual. A second signal aborts at once (exit 128 +
the signal's number), loading nothing more. While it reads, a local run says
on stderr how many records it has read, when that changed (at most every
`PROGRESS_INTERVAL_S`, the first at once).

On Dataflow (runs until drained or cancelled), into BigQuery and the production
sinks:

    python -m pipelines.streaming --runner DataflowRunner --streaming \\
        --project my-project --region europe-west1 \\
        --temp_location gs://my-project-dataflow/tmp --setup_file ./setup.py \\
        --kinesis_stream arn:aws:kinesis:eu-west-1:123456789012:stream/stripe-events \\
        --stripe_mode live --warehouse bigquery:my-project.contributions \\
        --acquisitions_bus acquisitions-bus --supporter_table SupporterProductData \\
        --contributions_store_queue_url https://sqs.eu-west-1.amazonaws.com/123456789012/store \\
        --contributions_store_key_id KEY_ID \\
        --emails_queue_url https://sqs.eu-west-1.amazonaws.com/123456789012/emails.fifo \\
        --opt_ins_queue_url https://sqs.eu-west-1.amazonaws.com/123456789012/opt-ins.fifo \\
        --sent_messages_table contribution-messages-sent
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

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
    CoreOptions,
    IdentityOptions,
    KinesisOptions,
    ReportOptions,
    SinkOptions,
)
from schemas.records import DeadLetter
from transforms.infrastructure import check_table_key, naming_flag
from transforms.sinks.router import TriggerLoads, WriteOutputs
from transforms.sources.decode import DecodeEvents
from transforms.sources.kinesis import COORDINATION_KEY_SCHEMA, ReadFromKinesis, check_stream
from transforms.sources.kinesis.reader import (
    clear_stop,
    records_read_in_process,
    request_stop,
    stop_requested,
)

OPTION_CLASSES = (
    KinesisOptions,
    CoreOptions,
    IdentityOptions,
    SinkOptions,
    AwsOptions,
    ReportOptions,
)
PROG = "python -m pipelines.streaming"


def build(pipeline: beam.Pipeline, options: PipelineOptions) -> None:
    """Reads Kinesis, decodes, applies the core and writes every output.

    Raises ValueError for a bad flag combination (e.g. no `--kinesis_stream`).
    """
    plan(options)(pipeline)


def plan(options: PipelineOptions) -> Callable[[beam.Pipeline], None]:
    """Every flag the graph reads, checked (ValueError naming the flag); then what builds it.

    Needs no pipeline, so the launch checks the flags before constructing one.
    """
    kinesis = options.view_as(KinesisOptions)
    read_arguments = kinesis.kinesis_arguments()
    core = options.view_as(CoreOptions).process_stripe_events(
        resolve_identities=options.view_as(IdentityOptions).identity_resolver()
    )
    sinks = options.view_as(SinkOptions).sink_config()
    load_interval = kinesis.load_interval()

    def apply(pipeline: beam.Pipeline) -> None:
        records = pipeline | "ReadFromKinesis" >> ReadFromKinesis(**read_arguments)
        decoded = records | "DecodeEvents" >> DecodeEvents()
        outputs = decoded.events | "ProcessStripeEvents" >> core
        tables = outputs.by_record_type()
        tables[DeadLetter] = (
            outputs.dead_letters,
            decoded.dead_letters,
        ) | "CollectDeadLetters" >> beam.Flatten()
        loads = TriggerLoads(
            load_interval, early_panes=not isinstance(pipeline.runner, FnApiRunner)
        )
        _ = tables | "WriteOutputs" >> WriteOutputs(sinks, loads)

    return apply


def check_source(options: PipelineOptions) -> None:
    """Before launch: the stream (and the coordination table, when given) exist.

    A missing `--kinesis_stream` is left to `build`, which names the flag.
    """
    kinesis = options.view_as(KinesisOptions)
    if kinesis.kinesis_stream:
        check_stream(kinesis.kinesis_stream)
    if kinesis.kinesis_coordination_table:
        with naming_flag("--kinesis_coordination_table"):
            check_table_key(kinesis.kinesis_coordination_table, COORDINATION_KEY_SCHEMA)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PROGRESS_INTERVAL_S = 10.0
#: How often the progress thread looks at the count.
_PROGRESS_POLL_S = 0.5


def _report_reading(done: threading.Event) -> None:
    """Until `done`: a line on stderr when the records read changed, at most every interval."""
    base = reported = records_read_in_process()
    last_line = float("-inf")
    while not done.wait(_PROGRESS_POLL_S):
        count = records_read_in_process()
        if count != reported and time.monotonic() - last_line >= PROGRESS_INTERVAL_S:
            print(
                f"{PROG}: {count - base} records read so far "
                "(Ctrl-C or SIGTERM stops the read and loads them)",
                file=sys.stderr,
                flush=True,
            )
            reported, last_line = count, time.monotonic()


@contextlib.contextmanager
def stop_reading_on_signals() -> Iterator[None]:
    """While inside: SIGINT or SIGTERM ends the local read; a second one exits at once.

    Progress lines on stderr say how many records were read (`_report_reading`).

    The handler runs in the main thread; the FnApiRunner's readers run in a
    thread of this process and poll the flag it sets. The previous handlers
    are restored on the way out.
    """

    def handle(signum: int, _: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop_requested():
            print(f"{PROG}: {name} again: aborting, nothing more is loaded", file=sys.stderr)
            sys.stderr.flush()
            os._exit(128 + signum)
        request_stop()
        print(
            f"{PROG}: {name}: stopping the read; what was read is being processed and "
            "loaded (send it again to abort)",
            file=sys.stderr,
            flush=True,
        )

    clear_stop()
    # Only the main thread may set handlers (a job run from another thread reads on).
    in_main = threading.current_thread() is threading.main_thread()
    previous = {number: signal.signal(number, handle) for number in STOP_SIGNALS if in_main}
    done = threading.Event()
    reporter = threading.Thread(target=_report_reading, args=(done,), daemon=True)
    reporter.start()
    try:
        yield
    finally:
        done.set()
        reporter.join()
        for number, handler in previous.items():
            signal.signal(number, handler)
        clear_stop()


def run(argv: Sequence[str] | None = None, *, wait: bool = True) -> int:
    """Runs the streaming job.

    A bounded read (`--idle_timeout_s` or `--max_records`), or any read on the
    local FnApiRunner (which SIGINT or SIGTERM ends: `stop_reading_on_signals`),
    is waited for; then the summary is printed and the result is 0 when every
    record read is accounted for, 1 otherwise. An
    unbounded read on a remote runner (Dataflow) returns 0 once submitted.
    A bad flag combination exits 2 with a message, like argparse; a missing
    or failing stream, table or queue exits 3 with one line. `wait=False`
    (the Flex Template launcher) returns 0 once any job is submitted.
    """
    options = parse_options(argv, OPTION_CLASSES, prog=PROG, description=__doc__ or "")
    local = runner_for(options)
    if local is not None:
        # The FnApiRunner runs the splittable Kinesis read only in streaming mode.
        options.view_as(StandardOptions).streaming = True
    quiet_beam_logs()
    started = start_run(
        "streaming",
        sys.argv[1:] if argv is None else argv,
        runner=options.view_as(StandardOptions).runner,
        source=options.view_as(KinesisOptions).kinesis_stream or "",
    )
    launch = launch_checked(
        PROG, options, plan, runner=local, extra_check=lambda: check_source(options)
    )
    if isinstance(launch, int):
        return launch
    pipeline, sinks = launch.pipeline, launch.sinks
    if local is None:
        result = start(PROG, pipeline)
    else:
        with stop_reading_on_signals():
            # The FnApiRunner runs the whole job inside run().
            result = start(PROG, pipeline)
    if isinstance(result, int):
        record_run(started, sinks, None, result)
        return result
    if not wait or (local is None and not options.view_as(KinesisOptions).read_is_bounded()):
        print(f"submitted: {result}; it runs until drained or cancelled")
        record_submitted(started, sinks, result, options)
        return 0
    return finish(result, sinks, PROG, started, options.view_as(ReportOptions).summary_json)


if __name__ == "__main__":
    sys.exit(run())
