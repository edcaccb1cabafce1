"""The core's two paths agree: the bounded fold and the streaming state machine.

The backfill goes through `FoldPayments` (one GroupByKey), the streaming job
through `DeduplicateEvents` and `JoinPayments` (state and timers). Fed the
same generated events, in arrival order and with the watermark held until
the end (as a backfill sees event time), both must produce the same records
in every output.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from tools.generate_archive import generate
from transforms.core.disk_group import GroupByKeyOnDisk
from transforms.core.process import CoreOutputs, ProcessStripeEvents
from transforms.domain.events import SourceRecord, StripeEvent
from transforms.sources.decode import DecodeError, decode_record

OUTPUTS = (
    "contributions",
    "acquisitions",
    "payment_adjustments",
    "contributions_store",
    "supporter_product_data",
    "thank_you_emails",
    "soft_opt_ins",
    "dead_letters",
)


def generated_events() -> list[StripeEvent]:
    archive = generate(payments=40, seed=23, start=datetime(2025, 6, 1, tzinfo=UTC), hours=2)
    events = []
    for index, record in enumerate(archive.records()):
        try:
            events.append(decode_record(SourceRecord(record.data, f"test@{index}")))
        except DecodeError:
            continue  # malformed on purpose; decoding has its own tests
    return events


# The FnApiRunner runs in this process and pickles functions by reference,
# so a module-level function can hand results back to the test.
_COLLECTED: dict[str, list[Any]] = {}


def _collect(values: list[Any], name: str) -> None:
    _COLLECTED.setdefault(name, []).extend(values)


def run_bounded(
    events: list[StripeEvent], group_by_key: beam.PTransform | None = None, **core: Any
) -> dict[str, list[Any]]:
    """Every output of the backfill's path (`FoldPayments`) on `events`, as lists."""
    _COLLECTED.clear()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = (
            p
            | beam.Create(events)
            | beam.Map(lambda e: TimestampedValue(e, e.created))
            | ProcessStripeEvents(group_by_key=group_by_key, **core)
        )
        for name in OUTPUTS:
            _ = (
                getattr(out, name)
                | f"Collect{name}" >> beam.combiners.ToList()
                | f"Keep{name}" >> beam.Map(_collect, name)
            )
    return {name: list(_COLLECTED.get(name, [])) for name in OUTPUTS}


def test_grouping_on_disk_gives_the_same_outputs_as_the_runners_shuffle(tmp_path: Path) -> None:
    events = generated_events()
    expected = run_bounded(events)
    assert len(expected["contributions"]) >= 30

    # ~4 KB runs: dozens of them, merged in two passes at fan-in 8.
    on_disk = run_bounded(events, GroupByKeyOnDisk(str(tmp_path), run_bytes=4_096, fan_in=8))

    for name in OUTPUTS:
        assert sorted(map(repr, on_disk[name])) == sorted(map(repr, expected[name])), name
    assert list(tmp_path.iterdir()) == []


def test_streaming_path_matches_the_bounded_fold() -> None:
    events = generated_events()
    expected = run_bounded(events)
    assert len(expected["contributions"]) >= 30

    stream = EventStream().advance_watermark_to(min(e.created for e in events) - 1)
    for start in range(0, len(events), 50):
        chunk = events[start : start + 50]
        stream = stream.add_elements([TimestampedValue(e, e.created) for e in chunk])
    # Fire every timer at a finite watermark: outputs of timers that fire only
    # when the watermark jumps to infinity can miss the assertion's final pane.
    last = max(e.created for e in events)
    stream = stream.advance_watermark_to(last + 30 * 24 * 3600).advance_watermark_to_infinity()

    def check(out: CoreOutputs) -> None:
        for name in OUTPUTS:
            assert_that(getattr(out, name), equal_to(expected[name]), label=f"Same{name}")

    with BeamTestPipeline(
        runner=BundleBasedDirectRunner(), options=PipelineOptions(streaming=True)
    ) as p:
        check(p | stream | ProcessStripeEvents())
