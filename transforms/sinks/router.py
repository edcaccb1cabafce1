"""Where each output goes: the production sinks, with the local warehouse as default.

`WriteOutputs(config)` takes every output of the core as `{record type:
PCollection}` (dead letters included) and sends each record type to its
sink:

- Contribution, Acquisition, PaymentAdjustment, DeadLetter: the warehouse;
- ContributionStoreRecord (with the adjustments, for the status): the
  Postgres contributions store when configured, else the warehouse;
- SupporterProductData: DynamoDB `SupporterProductData` when configured;
- ContributionStoreRecord may instead go to the store's SQS queue (with the
  adjustments, for refund messages): `transforms.sinks.store_queue`;
- AcquisitionEvent: the acquisitions EventBridge bus when configured;
- ThankYouEmail, SoftOptIn: SQS queues (standard or FIFO) guarded by the
  DynamoDB ledger when configured;
- with a CloudWatch namespace, a `payment-success` count per paid
  Contribution and a `post-payment-tasks-error` count per dead letter.

The warehouse is a DuckDB file (the embedded default) or a BigQuery dataset
(`bigquery:PROJECT.DATASET`: file loads for bounded input, streaming inserts
with insert ids for unbounded input; see `transforms.sinks.bigquery`). BigQuery is
for analysts, so it never receives personal data: with a BigQuery
warehouse every operational output needs its own sink, and dead letters
lose personal data from their raw input (`transforms.domain.redact`). Records a production
sink could not write come back as dead letters and go to the warehouse's
`dead_letters` table with the rest. Every sink upserts or deduplicates on
the record's natural key, so replays, restarts and re-run backfills leave
every store exactly right (see each writer's module).

On an unbounded input, the warehouse load is windowed by `TriggerLoads`;
the other sinks write per bundle and need no windowing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import apache_beam as beam
from apache_beam.pvalue import PCollection
from apache_beam.transforms import trigger, window

from schemas.generate import table_of
from schemas.records import (
    AcquisitionEvent,
    Contribution,
    ContributionStoreRecord,
    DeadLetter,
    PaymentAdjustment,
    SoftOptIn,
    SupporterProductData,
    ThankYouEmail,
)
from schemas.table import step_name
from transforms.domain.redact import redacted
from transforms.sinks.bigquery import WriteToWarehouseBigQuery
from transforms.sinks.cloudwatch import CountPaymentMetrics
from transforms.sinks.duckdb import WriteToWarehouse
from transforms.sinks.dynamodb import WriteSupporterItems
from transforms.sinks.eventbridge import DEFAULT_SOURCE, PublishAcquisitions
from transforms.sinks.postgres import WriteToContributionsStore
from transforms.sinks.sqs import SOFT_OPT_IN, THANK_YOU_EMAIL, SendMessages
from transforms.sinks.store_queue import SendToContributionsStore

BIGQUERY_PREFIX = "bigquery:"


@dataclass(frozen=True)
class SinkConfig:
    """Which sinks to write to; None means "the warehouse".

    `warehouse` is a DuckDB path or `bigquery:PROJECT.DATASET`;
    `bigquery_temp_location` (a gs:// folder) is needed for BigQuery file
    loads, i.e. with a BigQuery warehouse on bounded input.
    """

    warehouse: str
    contributions_store_dsn: str | None = None
    contributions_store_queue_url: str | None = None
    contributions_store_key_id: str | None = None
    acquisitions_bus: str | None = None
    acquisitions_source: str = DEFAULT_SOURCE
    cloudwatch_namespace: str | None = None
    supporter_table: str | None = None
    emails_queue_url: str | None = None
    opt_ins_queue_url: str | None = None
    sent_messages_table: str | None = None
    bigquery_temp_location: str | None = None

    def __post_init__(self) -> None:
        queues = self.emails_queue_url or self.opt_ins_queue_url
        if queues and not self.sent_messages_table:
            raise ValueError(
                "the SQS sinks need a sent-messages ledger table: FIFO deduplication "
                "alone forgets a message after 5 minutes"
            )
        if self.contributions_store_queue_url and self.contributions_store_dsn:
            raise ValueError(
                "give --contributions_store_queue_url or --contributions_store, not both"
            )
        if self.contributions_store_queue_url and not self.contributions_store_key_id:
            raise ValueError("--contributions_store_queue_url needs --contributions_store_key_id")
        ledgered = [
            flag
            for flag, value in (
                ("--acquisitions_bus", self.acquisitions_bus),
                ("--contributions_store_queue_url", self.contributions_store_queue_url),
                ("--cloudwatch_namespace", self.cloudwatch_namespace),
            )
            if value
        ]
        if ledgered and not self.sent_messages_table:
            raise ValueError(
                ", ".join(ledgered)
                + " need --sent_messages_table: neither EventBridge, CloudWatch "
                "nor a standard queue de-duplicates, the ledger makes them exactly once"
            )
        if self.bigquery is not None:
            missing = [
                flag
                for flag, value in (
                    (
                        "--contributions_store or --contributions_store_queue_url",
                        self.contributions_store_dsn or self.contributions_store_queue_url,
                    ),
                    ("--acquisitions_bus", self.acquisitions_bus),
                    ("--supporter_table", self.supporter_table),
                    ("--emails_queue_url", self.emails_queue_url),
                    ("--opt_ins_queue_url", self.opt_ins_queue_url),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    "a BigQuery warehouse holds no personal data, so the contributions store, "
                    "supporter items and messages need their own sinks: missing "
                    + ", ".join(missing)
                )

    @property
    def bigquery(self) -> tuple[str, str] | None:
        """(project, dataset) when the warehouse is BigQuery, else None."""
        if not self.warehouse.startswith(BIGQUERY_PREFIX):
            return None
        project, _, dataset = self.warehouse[len(BIGQUERY_PREFIX) :].partition(".")
        if not project or not dataset or "." in dataset:
            raise ValueError(f"--warehouse {self.warehouse!r}: expected bigquery:PROJECT.DATASET")
        return project, dataset

    @property
    def production_flags(self) -> list[str]:
        """The flags that configure a production sink (anything but a DuckDB warehouse)."""
        return [
            flag
            for flag, value in (
                ("--warehouse bigquery:...", self.bigquery is not None),
                ("--contributions_store", self.contributions_store_dsn),
                ("--contributions_store_queue_url", self.contributions_store_queue_url),
                ("--acquisitions_bus", self.acquisitions_bus),
                ("--supporter_table", self.supporter_table),
                ("--emails_queue_url", self.emails_queue_url),
                ("--opt_ins_queue_url", self.opt_ins_queue_url),
                ("--cloudwatch_namespace", self.cloudwatch_namespace),
            )
            if value
        ]

    @property
    def duckdb_path(self) -> str | None:
        return None if self.warehouse.startswith(BIGQUERY_PREFIX) else self.warehouse

    def __repr__(self) -> str:
        # Never show a DSN (it may hold a password) in display data or errors.
        store = "<set>" if self.contributions_store_dsn else None
        return (
            f"SinkConfig(warehouse={self.warehouse!r}, contributions_store={store}, "
            f"contributions_store_queue_url={self.contributions_store_queue_url!r}, "
            f"acquisitions_bus={self.acquisitions_bus!r}, "
            f"acquisitions_source={self.acquisitions_source!r}, "
            f"cloudwatch_namespace={self.cloudwatch_namespace!r}, "
            f"supporter_table={self.supporter_table!r}, "
            f"emails_queue_url={self.emails_queue_url!r}, "
            f"opt_ins_queue_url={self.opt_ins_queue_url!r}, "
            f"sent_messages_table={self.sent_messages_table!r}, "
            f"bigquery_temp_location={self.bigquery_temp_location!r})"
        )


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

    `loads`: the windowing applied before the warehouse writer (a
    `TriggerLoads` for unbounded input); None for bounded input.
    """

    def __init__(self, config: SinkConfig, loads: beam.PTransform | None = None) -> None:
        super().__init__()
        self._config = config
        self._loads = loads

    def expand(self, pcolls: Mapping[type, PCollection]) -> None:
        config = self._config
        to_warehouse = dict(pcolls)
        dead_letters = [to_warehouse.pop(DeadLetter)] if DeadLetter in to_warehouse else []

        if config.contributions_store_dsn:
            # The store folds refunds and disputes into the payment's status.
            store_inputs: dict[type, PCollection] = {
                ContributionStoreRecord: to_warehouse.pop(ContributionStoreRecord),
                PaymentAdjustment: pcolls[PaymentAdjustment],
            }
            store = store_inputs | "WriteToContributionsStore" >> WriteToContributionsStore(
                config.contributions_store_dsn
            )
            dead_letters.append(store.dead_letters)
        elif config.contributions_store_queue_url:
            assert config.contributions_store_key_id and config.sent_messages_table
            queued: dict[type, PCollection] = {
                ContributionStoreRecord: to_warehouse.pop(ContributionStoreRecord),
                PaymentAdjustment: pcolls[PaymentAdjustment],
            }
            store_queue = queued | "SendToContributionsStore" >> SendToContributionsStore(
                config.contributions_store_queue_url,
                config.contributions_store_key_id,
                config.sent_messages_table,
            )
            dead_letters.append(store_queue.dead_letters)
        if config.acquisitions_bus:
            published = to_warehouse.pop(AcquisitionEvent) | (
                "PublishAcquisitions"
                >> PublishAcquisitions(
                    config.acquisitions_bus,
                    config.sent_messages_table,
                    source=config.acquisitions_source,
                )
            )
            dead_letters.append(published.dead_letters)
        if config.supporter_table:
            supporter = to_warehouse.pop(SupporterProductData) | (
                "WriteSupporterItems" >> WriteSupporterItems(config.supporter_table)
            )
            dead_letters.append(supporter.dead_letters)
        for record_type, queue_url, kind, label in (
            (ThankYouEmail, config.emails_queue_url, THANK_YOU_EMAIL, "SendThankYouEmails"),
            (SoftOptIn, config.opt_ins_queue_url, SOFT_OPT_IN, "SendSoftOptIns"),
        ):
            if queue_url:
                sent = to_warehouse.pop(record_type) | label >> SendMessages(
                    queue_url, kind, config.sent_messages_table
                )
                dead_letters.append(sent.dead_letters)

        to_warehouse[DeadLetter] = tuple(dead_letters) | "CollectDeadLetters" >> beam.Flatten()
        if config.cloudwatch_namespace:
            metrics = {
                Contribution: pcolls[Contribution],
                DeadLetter: to_warehouse[DeadLetter],
            } | "CountPaymentMetrics" >> CountPaymentMetrics(
                config.cloudwatch_namespace, config.sent_messages_table
            )
            to_warehouse[DeadLetter] = (
                to_warehouse[DeadLetter],
                metrics.dead_letters,
            ) | "CollectMetricDeadLetters" >> beam.Flatten()
        bigquery = config.bigquery
        if bigquery is not None:
            bounded = all(pcoll.is_bounded for pcoll in pcolls.values())
            project, dataset = bigquery
            # Analysts query BigQuery: a dead letter's raw input loses its personal
            # data there (its `source` says where the full record can be read again).
            to_warehouse[DeadLetter] = to_warehouse[DeadLetter] | (
                "RedactPersonalData" >> beam.Map(redacted)
            )
            _ = to_warehouse | "WriteToBigQuery" >> WriteToWarehouseBigQuery(
                project,
                dataset,
                "FILE_LOADS" if bounded else "STREAMING_INSERTS",
                temp_location=config.bigquery_temp_location,
            )
            return
        if self._loads is not None:
            to_warehouse = to_warehouse | "TriggerWarehouseLoads" >> self._loads
        _ = to_warehouse | "WriteToWarehouse" >> WriteToWarehouse(config.warehouse)
