"""The end-of-run summary, computed from the pipeline's counters.

Pure: counters (from any runner's metrics) and the warehouse's row counts in,
a `RunSummary` out. The accounting identity it checks is

    records read = processed + skipped (duplicates included) + dead-lettered

where every term counts records, one each; payments that could not be
completed are reported apart (they are made of records already counted as
processed).

Two kinds of row counts, never mixed: `written` is what this run wrote, from
the writers' own counters (`writer_counts_of`), and `table_rows` is what the
warehouse's tables hold now, every earlier run included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apache_beam.metrics.execution import MetricResult
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.runner import PipelineResult

from transforms.core import metrics


@dataclass(frozen=True)
class RunSummary:
    counters: Mapping[str, int]
    table_rows: Mapping[str, int]
    #: What this run wrote, by destination (`writer_counts_of`); sorted by name.
    written: Mapping[str, int] = field(default_factory=dict)

    def _with_prefix(self, prefix: str) -> dict[str, int]:
        return {
            name[len(prefix) :]: value
            for name, value in sorted(self.counters.items())
            if name.startswith(prefix) and value
        }

    @property
    def records_read(self) -> int:
        return self.counters.get(metrics.RECORDS_READ, 0)

    @property
    def processed(self) -> int:
        return self.counters.get(metrics.PROCESSED, 0)

    @property
    def skipped(self) -> dict[str, int]:
        return self._with_prefix(metrics.SKIPPED_PREFIX)

    @property
    def dead_lettered(self) -> dict[str, int]:
        return self._with_prefix(metrics.DEAD_LETTERED_PREFIX)

    @property
    def event_types(self) -> dict[str, int]:
        return self._with_prefix(metrics.EVENT_TYPE_PREFIX)

    @property
    def payments(self) -> dict[str, int]:
        return self._with_prefix(metrics.PAYMENTS_PREFIX)

    @property
    def identities(self) -> dict[str, int]:
        """Paid payments that had no identity, by outcome (found, created, unavailable, ...)."""
        return self._with_prefix(metrics.IDENTITY_PREFIX)

    @property
    def outputs_skipped(self) -> dict[str, int]:
        return self._with_prefix(metrics.OUTPUT_SKIPPED_PREFIX)

    @property
    def warnings(self) -> dict[str, int]:
        return self._with_prefix(metrics.WARNING_PREFIX)

    @property
    def accounted(self) -> int:
        return self.processed + sum(self.skipped.values()) + sum(self.dead_lettered.values())

    @property
    def balanced(self) -> bool:
        return self.records_read == self.accounted

    @property
    def files_unreadable(self) -> int:
        return self.counters.get(metrics.FILES_UNREADABLE, 0)

    @property
    def files_too_large(self) -> int:
        return self.counters.get(metrics.FILES_TOO_LARGE, 0)

    @property
    def files_refused(self) -> dict[str, int]:
        return self._with_prefix(metrics.FILES_REFUSED_PREFIX)

    @property
    def succeeded(self) -> bool:
        """Every record accounted for, and every file read to its end."""
        return (
            self.balanced
            and not self.files_unreadable
            and not self.files_too_large
            and not self.files_refused
        )


def counters_of(result: PipelineResult) -> dict[str, int]:
    """The pipeline's counters by name (committed values where the runner has them)."""
    return counters_from(result.metrics().query(MetricsFilter())["counters"])


def counters_from(counters: Iterable[MetricResult]) -> dict[str, int]:
    """The pipeline's counters (namespace `stripe_events`) by name, from any runner's results.

    The committed value where the runner has one, else the attempted one.
    """
    values: dict[str, int] = {}
    for (namespace, name), value in _counter_values(counters).items():
        if namespace == metrics.NAMESPACE:
            values[name] = values.get(name, 0) + value
    return values


def _counter_values(counters: Iterable[MetricResult]) -> dict[tuple[str, str], int]:
    """`{(namespace, name): value}` summed over steps; committed where known, else attempted."""
    values: dict[tuple[str, str], int] = {}
    for counter in counters:
        value = counter.committed if counter.committed is not None else counter.attempted
        key = (counter.key.metric.namespace, counter.key.metric.name)
        values[key] = values.get(key, 0) + int(value or 0)
    return values


#: (Beam counter namespace, counter name prefix, destination prefix) of every
#: writer counter that counts what a run wrote; the rest of the name is the table.
_WRITTEN_ROWS = (
    ("WriteToWarehouse", "rows_written_", "warehouse:"),
    ("WriteToWarehouseBigQuery", "rows_written_", "bigquery:"),
    ("WriteToContributionsStore", "rows_written_", "postgres:"),
)
#: The DynamoDB writer's counter of items written (namespace `stripe_events`).
_SUPPORTER_ITEMS_WRITTEN = "supporter_items_written"
#: The message ledger's `<kind>_sent` (namespace `stripe_events`), not `<kind>_already_sent`
#: nor `<kind>_not_sent` (held back by the message window or `--no_messages`).
_SENT_SUFFIX = "_sent"
_NOT_SENT_SUFFIXES = ("_already_sent", "_not_sent")


def written_by_destination(counters: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """`{(namespace, counter): value}` -> what the run wrote, `{destination: count}`.

    Destinations: `warehouse:<table>` (rows upserted into the DuckDB file),
    `bigquery:<table>` (rows handed to BigQuery's load or insert),
    `postgres:<table>` (rows upserted into the contributions store),
    `dynamodb:supporter_product_data` (items written) and `sent:<kind>`
    (messages the ledger sent: emails, opt-ins, bus events, store messages).
    """
    written: dict[str, int] = {}
    for (namespace, name), value in counters.items():
        destination = None
        for writer_namespace, prefix, where in _WRITTEN_ROWS:
            if namespace == writer_namespace and name.startswith(prefix):
                destination = where + name[len(prefix) :]
        if namespace == metrics.NAMESPACE:
            if name == _SUPPORTER_ITEMS_WRITTEN:
                destination = "dynamodb:supporter_product_data"
            elif name.endswith(_SENT_SUFFIX) and not name.endswith(_NOT_SENT_SUFFIXES):
                destination = "sent:" + name[: -len(_SENT_SUFFIX)]
        if destination is not None:
            written[destination] = written.get(destination, 0) + value
    return dict(sorted(written.items()))


def writer_counts_of(result: PipelineResult) -> dict[str, int]:
    """What the run wrote, by destination (see `written_by_destination`)."""
    return written_by_destination(
        _counter_values(result.metrics().query(MetricsFilter())["counters"])
    )


def summary_of(counters: Iterable[MetricResult]) -> RunSummary:
    """The summary of a run from its counters alone, as a remote runner reports them.

    No table totals: the warehouse of such a run is not a DuckDB file.
    """
    results = list(counters)
    return RunSummary(
        counters=counters_from(results),
        table_rows={},
        written=written_by_destination(_counter_values(results)),
    )


def render(summary: RunSummary) -> str:
    """A plain-text report for operators; no personal data, only counts."""
    lines = [f"records read: {summary.records_read}"]

    def section(title: str, counts: Mapping[str, int]) -> None:
        lines.append(f"{title}: {sum(counts.values())}")
        lines.extend(f"  {name}: {value}" for name, value in counts.items())

    section("by event type", summary.event_types)
    lines.append(f"duplicates: {summary.skipped.get('duplicate', 0)}")
    section("skipped by reason (duplicates included)", summary.skipped)
    section("dead-lettered records by reason", summary.dead_lettered)
    lines.append(f"processed: {summary.processed}")
    section("payments completed or dead-lettered", summary.payments)
    for name in (metrics.FACTS_AFTER_COMPLETION, metrics.CHARGES_WITHOUT_SESSION):
        lines.append(f"{name.replace('_', ' ')}: {summary.counters.get(name, 0)}")
    stripe = (metrics.CHARGES_COMPLETED_FROM_STRIPE, metrics.CHARGE_RETRIEVALS_FAILED)
    if any(summary.counters.get(name) for name in stripe):
        for name in stripe:
            lines.append(f"{name.replace('_', ' ')}: {summary.counters.get(name, 0)}")
    if summary.identities:
        section("payments without identity, by outcome", summary.identities)
        requests = summary.counters.get(metrics.IDENTITY_API_REQUESTS, 0)
        lines.append(f"requests to the identity api: {requests}")
    section("outputs skipped", summary.outputs_skipped)
    section("warnings", summary.warnings)
    section("written by this run", summary.written)
    if summary.table_rows:
        section("table totals (the whole warehouse, earlier runs included)", summary.table_rows)
    else:
        lines.append("table totals: not counted (the warehouse is not a DuckDB file)")
    if summary.files_unreadable:
        lines.append(
            f"unreadable files: {summary.files_unreadable} (see dead_letters, step read):"
            " their records after the failure were not read"
        )
    if summary.files_too_large:
        lines.append(
            f"files over the size limit: {summary.files_too_large} (see dead_letters, step read):"
            " their records after the limit were not read"
        )
    if summary.files_refused:
        section("files refused, not read (see dead_letters, step read)", summary.files_refused)
    verdict = "holds" if summary.balanced else "DOES NOT HOLD"
    lines.append(
        f"read {summary.records_read} = processed {summary.processed}"
        f" + skipped {sum(summary.skipped.values())}"
        f" + dead-lettered {sum(summary.dead_lettered.values())}: {verdict}"
    )
    return "\n".join(lines)


def summary_json(summary: RunSummary, **run: Any) -> dict[str, Any]:
    """The summary as a JSON-ready dict (`--summary_json`); `run` adds the run's fields.

    The schema is documented in the README (Operations: the summary as JSON).
    """
    return {
        **run,
        "records_read": summary.records_read,
        "processed": summary.processed,
        "skipped": summary.skipped,
        "dead_lettered": summary.dead_lettered,
        "accounted": summary.accounted,
        "balanced": summary.balanced,
        "files_unreadable": summary.files_unreadable,
        "succeeded": summary.succeeded,
        "event_types": summary.event_types,
        "payments": summary.payments,
        "identities": summary.identities,
        "outputs_skipped": summary.outputs_skipped,
        "warnings": summary.warnings,
        "written_by_this_run": dict(summary.written),
        "table_totals": dict(summary.table_rows) if summary.table_rows else None,
        "counters": dict(sorted(summary.counters.items())),
    }
