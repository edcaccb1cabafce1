"""The end-of-run summary, computed from the pipeline's counters.

Pure: counters (from any runner's metrics) and the warehouse's row counts in,
a `RunSummary` out. The accounting identity it checks is

    records read = processed + skipped (duplicates included) + dead-lettered

where every term counts records, one each; payments that could not be
completed are reported apart (they are made of records already counted as
processed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.runner import PipelineResult

from transforms.core import metrics


@dataclass(frozen=True)
class RunSummary:
    counters: Mapping[str, int]
    table_rows: Mapping[str, int]

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
    found = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))
    values: dict[str, int] = {}
    for counter in found["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        values[counter.key.metric.name] = values.get(counter.key.metric.name, 0) + int(value or 0)
    return values


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
    if summary.identities:
        section("payments without identity, by outcome", summary.identities)
        requests = summary.counters.get(metrics.IDENTITY_API_REQUESTS, 0)
        lines.append(f"requests to the identity api: {requests}")
    section("outputs skipped", summary.outputs_skipped)
    section("warnings", summary.warnings)
    if summary.table_rows:
        section("rows per table", summary.table_rows)
    else:
        lines.append("rows per table: not counted (the warehouse is not a DuckDB file)")
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
