"""Reconcile: what the archive says against what every store holds, per day and currency.

    CONTRIBUTIONS_STORE_DSN=postgresql://... python -m pipelines.reconcile \\
        --source s3://archive/stripe/ --start 2024-12-01 --end 2024-12-02 --stripe_mode live \\
        --warehouse bigquery:P.contributions --supporter_table SupporterProductData \\
        --emails_queue_url https://... --opt_ins_queue_url https://... \\
        --acquisitions_bus acquisitions-bus-PROD --sent_messages_table contribution-messages-sent

What the archive says is what the backfill makes of it: the same read
(`ReadArchive`) and core (`ProcessStripeEvents`) write every record into a
scratch DuckDB warehouse, on the local FnApiRunner, that is deleted after
the run. The archive is read from `--start` less `--settlement_timeout_days`
(a Bacs or SEPA payment settles that long after its session) to its end
(refunds and disputes come any time after their payment), and the payments
created in `[--start, --end)` are compared. No identity is created and no
store is written: the scratch run has no production sink.

The same flags as the jobs name the stores, and only those given are read:
the warehouse (always: `--warehouse`, a DuckDB file or `bigquery:P.D`,
`contributions_current`), the contributions store (`--contributions_store`
or its variable `CONTRIBUTIONS_STORE_DSN`, Postgres), the supporter table
(`--supporter_table`), and, from the message ledger
(`--sent_messages_table`), the effects of each queue or bus given
(`--contributions_store_queue_url`: the store and refund messages;
`--acquisitions_bus`, `--emails_queue_url`, `--opt_ins_queue_url`,
`--cloudwatch_namespace`).

A backfill sends no message of a payment older than its
`--messages_max_age_hours` at its `--run_started_at`: given the same two
flags, such a payment's ledger effects the ledger has no entry of are
counted as held back, not differences (without `--run_started_at` every
message is expected).

It prints one line per day and currency, with store minus archive per store
(payments/amount/refunded, amounts in that currency), then up to 10
(`transforms.domain.reconcile.LISTED`) differing payment ids per store and
how they differ. Exit 0 when every difference is zero, 1 when any is not, 2
usage, 3 a store or the archive could not be read. Ids, days, currencies and amounts only: no
personal data is printed.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipelines.aws_role import start_role
from pipelines.backfill import disk_grouping, read_process_write
from pipelines.history import start_run
from pipelines.launch import parse_options, quiet_beam_logs, record_tool_run
from pipelines.options import AwsOptions, BackfillOptions, CoreOptions, SinkOptions
from transforms.domain.reconcile import (
    Comparison,
    Holding,
    compared,
    held_back,
    render_report,
)
from transforms.infrastructure import ConfigurationError
from transforms.sinks.contract import SinkConfig
from transforms.sinks.dynamodb import check_supporter_table
from transforms.sinks.ledger import SENT, check_ledger_table, effect_key
from transforms.sinks.readback import (
    Query,
    duckdb_query,
    ledger_states,
    open_warehouse,
    postgres_query,
    selection,
    store_holdings,
    supporter_holdings,
    utc_day,
    warehouse_holdings,
)
from transforms.sinks.registry import SINKS

OPTION_CLASSES = (BackfillOptions, CoreOptions, SinkOptions, AwsOptions)
PROG = "python -m pipelines.reconcile"

#: (ledger kind, the flag whose sink sends it, the scratch query of the payments that get it).
_LEDGER_KINDS = (
    (
        "contribution_store",
        "contributions_store_queue_url",
        "SELECT payment_id FROM contributions_store",
    ),
    (
        "contribution_refund",
        "contributions_store_queue_url",
        # The store queue sends a refund once charge.refunded says the whole charge is.
        "SELECT DISTINCT a.payment_id FROM payment_adjustments AS a "
        "JOIN contributions_store AS s ON s.payment_id = a.payment_id WHERE a.fully_refunded",
    ),
    ("acquisition_event", "acquisitions_bus", "SELECT payment_id FROM acquisition_events"),
    ("thank_you_email", "emails_queue_url", "SELECT payment_id FROM thank_you_emails"),
    ("soft_opt_in", "opt_ins_queue_url", "SELECT payment_id FROM soft_opt_ins"),
    (
        "payment_success_metric",
        "cloudwatch_namespace",
        "SELECT payment_id FROM contributions WHERE status = 'Paid'",
    ),
)


class Known(NamedTuple):
    """A payment the archive has in the range, whatever its status."""

    day: date
    currency: str
    guest: bool
    created: datetime


@dataclass(frozen=True)
class Plan:
    """What to compare: the range, the mode and the stores' flags."""

    sinks: SinkConfig
    start: datetime | None
    end: datetime | None
    livemode: bool | None
    #: Messages of payments created before this were held back by the backfill (None: none).
    messages_not_before: datetime | None = None


def archive_read(options: PipelineOptions) -> dict[str, Any]:
    """`ReadArchive`'s arguments: from `--start` less the settlement timeout to the end."""
    archive = options.view_as(BackfillOptions).archive_arguments()
    if archive["start"] is not None:
        archive["start"] -= timedelta(days=options.view_as(CoreOptions).settlement_timeout_days)
    archive["end"] = None
    return archive


def build(pipeline: beam.Pipeline, options: PipelineOptions, scratch_warehouse: str) -> None:
    """The backfill's read and core, every record into the scratch DuckDB warehouse."""
    archive = archive_read(options)
    core_options = options.view_as(CoreOptions)
    core = core_options.process_stripe_events(group_by_key=disk_grouping(options, None))
    # Built here, never from the flags: a secret's environment variable must not
    # turn a production sink on in the scratch run.
    sinks = SinkConfig({"warehouse": scratch_warehouse}, sinks=SINKS)
    read_process_write(pipeline, archive, core, sinks)


def plan_of(options: PipelineOptions) -> Plan:
    """The checked flags (ValueError naming the flag)."""
    if options.view_as(StandardOptions).runner:
        raise ValueError("--runner: the reconcile runs locally, on the FnApiRunner")
    sinks = options.view_as(SinkOptions).sink_config()
    mode = options.view_as(CoreOptions).checked_stripe_mode()
    backfill = options.view_as(BackfillOptions)
    backfill.archive_arguments()
    livemode = {"live": True, "test": False}.get(mode)
    return Plan(sinks, backfill.start, backfill.end, livemode, _messages_not_before(options))


def _messages_not_before(options: PipelineOptions) -> datetime | None:
    """The backfill's message window, when the operator names its `--run_started_at`.

    Without it every message the archive implies is expected (a stream sent
    them when they were paid); `--no_messages` is refused: a run that sent
    none is reconciled by leaving the queue and bus flags out.
    """
    messages = options.view_as(SinkOptions)
    if messages.no_messages:
        raise ValueError(
            "--no_messages: leave the queue and bus flags out to reconcile a run that sent none"
        )
    if messages.run_started_at is None:
        return None
    return messages.message_window().not_before


def preflight(plan: Plan) -> None:
    """Every store named is reachable, before the archive is read (ConfigurationError if not)."""
    query, _ = open_warehouse(str(plan.sinks["warehouse"]))
    query("SELECT COUNT(*) FROM contributions_current WHERE FALSE")
    if plan.sinks["contributions_store"]:
        postgres_query(str(plan.sinks["contributions_store"]))(
            "SELECT COUNT(*) FROM contributions_store WHERE FALSE"
        )
    if plan.sinks["supporter_table"]:
        check_supporter_table(str(plan.sinks["supporter_table"]))
    if any(plan.sinks[flag] for _, flag, _ in _LEDGER_KINDS):
        check_ledger_table(str(plan.sinks["sent_messages_table"]))


def comparisons(plan: Plan, scratch: Query) -> list[Comparison]:
    """Every store the flags name, against the scratch warehouse."""
    where = selection("duckdb", start=plan.start, end=plan.end, livemode=plan.livemode)
    known = {
        row[0]: Known(utc_day(row[1]), row[2], row[3] is None, _utc(row[1]))
        for row in scratch(
            f"SELECT payment_id, created, currency, identity_id FROM contributions WHERE {where}"
        )
    }
    guests = {payment_id for payment_id, payment in known.items() if payment.guest}
    query, dialect = open_warehouse(str(plan.sinks["warehouse"]))
    found = [
        Comparison(
            "warehouse",
            warehouse_holdings(scratch, where),
            warehouse_holdings(query, _where(plan, dialect)),
        )
    ]
    if plan.sinks["contributions_store"]:
        store = postgres_query(str(plan.sinks["contributions_store"]))
        found.append(
            Comparison(
                "contributions_store",
                store_holdings(scratch, where),
                store_holdings(store, _where(plan, "postgres")),
            )
        )
    if plan.sinks["supporter_table"]:
        table = str(plan.sinks["supporter_table"])
        found.append(
            compared(
                "supporter_table",
                _supporter_archive(scratch, known),
                supporter_holdings(table, start=plan.start, end=plan.end),
                guests,
            )
        )
    kinds = [(kind, sql) for kind, flag, sql in _LEDGER_KINDS if plan.sinks[flag]]
    if kinds:
        keys = [effect_key(kind, payment_id) for kind, _ in kinds for payment_id in known]
        states = ledger_states(str(plan.sinks["sent_messages_table"]), keys)
        for kind, sql in kinds:
            expected = {row[0] for row in scratch(sql)} & set(known)
            sent = {
                p: _ledger_holding(p, known[p], states[effect_key(kind, p)])
                for p in known
                if effect_key(kind, p) in states
            }
            archive, held = held_back(
                {p: _ledger_holding(p, known[p], SENT) for p in expected},
                sent,
                {p: known[p].created for p in expected},
                plan.messages_not_before,
            )
            found.append(replace(compared(kind, archive, sent, guests), held_back=held))
    return found


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _where(plan: Plan, dialect: str) -> str:
    return selection(dialect, start=plan.start, end=plan.end, livemode=plan.livemode)


def _supporter_archive(scratch: Query, known: dict[str, Known]) -> dict[str, Holding]:
    rows = scratch(
        "SELECT payment_id, contract_effective_date, contribution_currency, contribution_amount "
        "FROM supporter_product_data"
    )
    return {row[0]: Holding(row[0], row[1], row[2], row[3]) for row in rows if row[0] in known}


def _ledger_holding(payment_id: str, known: Known, state: str) -> Holding:
    """A ledger entry in `state`, on its payment's day and in its currency (it knows neither)."""
    return Holding(payment_id, known.day, known.currency, None, sent=state == SENT)


def run(argv: Sequence[str] | None = None) -> int:
    """Reconciles; 0 when nothing differs, 1 when something does, 2 usage, 3 infrastructure."""
    options = parse_options(argv, OPTION_CLASSES, prog=PROG, description=__doc__ or "")
    quiet_beam_logs()
    try:
        plan = plan_of(options)
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    start = start_run(
        "reconcile",
        list(sys.argv[1:] if argv is None else argv),
        runner="FnApiRunner",
        source=options.view_as(BackfillOptions).source,
        range_start=plan.start,
        range_end=plan.end,
    )
    try:
        start_role(options)
        # Before any store is read: a missing, empty or unreachable archive would
        # otherwise show as every payment differing, or hang in Beam's retries.
        options.view_as(BackfillOptions).check_source(archive_read(options))
        preflight(plan)
        with tempfile.TemporaryDirectory(prefix="reconcile-") as folder:
            scratch = str(Path(folder) / "archive.duckdb")
            pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
            build(pipeline, options, scratch)
            print(f"reading {_read_range(options)} into a scratch warehouse", file=sys.stderr)
            _run_scratch(pipeline)
            found = comparisons(plan, duckdb_query(scratch))
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except ConfigurationError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        record_tool_run(start, str(plan.sinks["warehouse"]), [], 3)
        return 3
    print(render_report(found, start=plan.start, end=plan.end))
    code = 1 if any(c.differences for c in found) else 0
    counts = [
        (name, count)
        for c in found
        for name, count in (
            (f"{c.store}_compared", len(c.archive)),
            (f"{c.store}_differences", len(c.differences)),
        )
    ]
    record_tool_run(start, str(plan.sinks["warehouse"]), counts, code)
    return code


def _read_range(options: PipelineOptions) -> str:
    backfill = options.view_as(BackfillOptions)
    if backfill.start is None:
        return f"the whole archive {backfill.source}"
    since = backfill.start - timedelta(days=options.view_as(CoreOptions).settlement_timeout_days)
    return f"the archive {backfill.source} from {since.isoformat()} to its end"


def _run_scratch(pipeline: beam.Pipeline) -> None:
    try:
        pipeline.run().wait_until_finish()
    except Exception as error:  # noqa: BLE001 - any failure to read the archive is one line, exit 3
        first = str(error).strip().splitlines()
        raise ConfigurationError(
            f"reading the archive failed: {type(error).__name__}: {first[-1] if first else ''}"
        ) from None


if __name__ == "__main__":
    sys.exit(run())
