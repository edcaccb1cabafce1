"""Where each output goes: every selected sink, with the warehouse for the rest.

`WriteOutputs(config)` takes every output of the core as `{record type:
PCollection}` (dead letters included) and gives each selected sink of
`config.sinks` (`transforms.sinks.registry.SINKS` for the jobs) the record
types it takes and reads (`transforms.sinks.contract.Sink`); the record types
no sink takes, and the dead letters of the core and of every sink, go to the
one selected warehouse: a DuckDB file (the embedded default) or a BigQuery
dataset (`bigquery:PROJECT.DATASET`: file loads for bounded input, streaming
inserts with insert ids for unbounded input; see `transforms.sinks.bigquery`).
A sink that `reads_dead_letters` (CloudWatch's post-payment-error count) runs
last and is given every dead letter the warehouse gets.

BigQuery is for analysts, so it never receives personal data: with a
BigQuery warehouse every record type with personal data needs its own sink,
and dead letters lose personal data from their raw input
(`transforms.domain.redact`). Every sink upserts or deduplicates on the
record's natural key, so replays, restarts and re-run backfills leave every
store exactly right (see each writer's module).

On an unbounded input, the DuckDB warehouse's load is windowed by
`TriggerLoads`; the other sinks write per bundle and need no windowing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import apache_beam as beam
from apache_beam.pvalue import PCollection
from apache_beam.transforms import trigger, window

from schemas.generate import table_of
from schemas.records import DeadLetter
from schemas.table import step_name
from transforms.sinks.contract import SinkConfig


class TriggerLoads(beam.PTransform):
    """`{record type: PCollection}` -> the same dict, windowed for periodic loads.

    Each PCollection goes into the global window with early panes every
    `interval` of processing time and a final pane when the watermark passes
    the window's end (the end of a bounded read, or a drain), discarding
    fired panes. Why: the records are final when the core emits them, so
    event-time windows would only delay loads; a processing-time trigger
    bounds latency and batches rows into one load per pane; discarding
    because every pane is upserted and must not load earlier panes again.

    `early_panes=False` keeps only the final pane: for the local FnApiRunner,
    whose GroupByKey has no processing-time clock and fires only when the
    source ends anyway. The step names are the same either way.
    """

    def __init__(self, interval: timedelta, *, early_panes: bool = True) -> None:
        super().__init__()
        # Beam's trigger proto holds whole seconds.
        self._interval = max(1, round(interval.total_seconds()))
        self._early_panes = early_panes

    def expand(self, pcolls: Mapping[type, PCollection]) -> dict[type, PCollection]:
        # One trigger object for all: the writer flattens these PCollections, and
        # Beam compares their windowing by trigger identity.
        early = trigger.AfterProcessingTime(self._interval) if self._early_panes else None
        load_trigger = trigger.AfterWatermark(early=early)
        return {
            record_type: pcoll
            | step_name(table_of(record_type).name)
            >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=load_trigger,
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
            for record_type, pcoll in pcolls.items()
        }


class WriteOutputs(beam.PTransform):
    """`{record type: PCollection}` -> None; writes every output to its sink.

    `loads`: the windowing applied before a warehouse that loads in panes
    (a `TriggerLoads` for unbounded input); None for bounded input.
    """

    def __init__(self, config: SinkConfig, loads: beam.PTransform | None = None) -> None:
        super().__init__()
        self._config = config
        self._loads = loads

    def expand(self, pcolls: Mapping[type, PCollection]) -> None:
        config = self._config
        to_warehouse = dict(pcolls)
        dead_letters = [to_warehouse.pop(DeadLetter)] if DeadLetter in to_warehouse else []
        for sink in config.selected:
            if sink.warehouse or sink.reads_dead_letters:
                continue
            inputs = {t: pcolls[t] for t in (*sink.takes, *sink.reads) if t in pcolls}
            for record_type in sink.takes:
                to_warehouse.pop(record_type, None)
            letters = sink.write(config, inputs)
            if letters is not None:
                dead_letters.append(letters)

        to_warehouse[DeadLetter] = tuple(dead_letters) | "CollectDeadLetters" >> beam.Flatten()
        # A sink that counts dead letters sees every one the warehouse gets; its own
        # dead letters join them, uncounted.
        for index, sink in enumerate(s for s in config.selected if s.reads_dead_letters):
            inputs = {t: pcolls[t] for t in sink.reads if t in pcolls}
            inputs[DeadLetter] = to_warehouse[DeadLetter]
            letters = sink.write(config, inputs)
            if letters is not None:
                label = "CollectMetricDeadLetters" + (f"_{index}" if index else "")
                to_warehouse[DeadLetter] = (to_warehouse[DeadLetter], letters) | label >> (
                    beam.Flatten()
                )
        warehouse = config.warehouse
        if warehouse.loads_in_panes and self._loads is not None:
            to_warehouse = to_warehouse | "TriggerWarehouseLoads" >> self._loads
        warehouse.write(config, to_warehouse)
