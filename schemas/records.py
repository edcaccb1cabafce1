"""Every record the pipeline writes: one frozen dataclass per table.

These classes are the single source of truth. BigQuery JSON schemas, Postgres
DDL, DuckDB DDL and Arrow schemas are generated from them by
`schemas.generate`, and `tests/schemas/golden/` pins the result.

Personal data (email, name, postal code, state) appears only in the
operational stores that need it (`contributions_store`, the email message
body, the acquisitions bus event) and in `dead_letters.raw`; never in
`contributions` or `acquisitions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import ClassVar

from schemas.table import Table, column


@dataclass(frozen=True)
class AbTest:
    name: str = column("A/B test name.")
    variant: str = column("Variant the reader saw.")


@dataclass(frozen=True)
class QueryParameter:
    key: str = column("URL query parameter name.")
    value: str = column("URL query parameter value.")


@dataclass(frozen=True)
class PrintOptions:
    product: str = column("Print product.")
    delivery_country_code: str = column("Delivery country, ISO alpha-2.")


@dataclass(frozen=True)
class Contribution:
    """One one-off contribution as paid; `contributions_current` folds refunds and disputes in."""

    TABLE: ClassVar[Table] = Table(
        name="contributions",
        description="One row per one-off contribution paid on a Stripe-hosted page.",
        key=("payment_id",),
        partition_by="created",
        cluster_by=("currency", "country_code"),
    )

    payment_id: str = column("Stripe charge id (ch_...): the payment's natural key.")
    payment_intent_id: str = column("Stripe PaymentIntent id (pi_...).")
    checkout_session_id: str = column("Stripe Checkout Session id (cs_...).")
    contribution_id: str = column("UUIDv5 of payment_id under CONTRIBUTION_ID_NAMESPACE.")
    status: str = column("Paid, Failed or Refunded (refunded only when fully refunded).")
    amount: Decimal = column("Amount paid, major units, exact.")
    amount_refunded: Decimal = column("Cumulative amount refunded, major units.")
    currency: str = column("ISO 4217 code, upper case.")
    country_code: str = column("Card country, else billing address country, else GB.")
    country_source: str = column("Where country_code came from: card, address or default.")
    payment_method: str | None = column("Stripe payment method type (card, bacs_debit, ...).")
    identity_id: str | None = column("Reader's identity id, when known.")
    disputed: bool = column("True once any dispute was opened on the charge.")
    livemode: bool = column("False for Stripe test-mode payments.")
    account: str | None = column("Stripe partner event source (ed_...), one per Stripe account.")
    created: datetime = column("When the payment settled (Stripe event time, UTC).")


@dataclass(frozen=True)
class Acquisition:
    """A row of `fact_acquisition_event` for one paid contribution."""

    TABLE: ClassVar[Table] = Table(
        name="acquisitions",
        description="Acquisition events (fact_acquisition_event columns) of one-off contributions.",
        key=("payment_id",),
        partition_by="event_timestamp",
        cluster_by=("currency", "country_code"),
    )

    event_timestamp: datetime = column("When the payment settled (UTC).")
    product: str = column("CONTRIBUTION for one-off contributions.")
    amount: Decimal = column("Amount, major units, exact.")
    country_code: str = column("Card country, else address country, else GB.")
    currency: str = column("ISO 4217 code, upper case.")
    component_id: str | None = column("Page component the reader came from.")
    component_type: str | None = column("Type of that component.")
    campaign_codes: tuple[str, ...] = column(
        "Zero or one element: the session's campaign code as sent (several codes joined by "
        "commas stay one string)."
    )
    source: str | None = column("Acquisition source.")
    referrer_url: str | None = column("Referring page.")
    ab_tests: tuple[AbTest, ...] = column("A/B tests the reader was in; never null.")
    payment_frequency: str = column("ONE_OFF.")
    payment_provider: str = column("As published on the bus (--acquisition_payment_provider).")
    print_options: PrintOptions | None = column("Always null for contributions.")
    browser_id: str | None = column("Analytics browser id.")
    identity_id: str | None = column("Reader's identity id, when known.")
    page_view_id: str | None = column("Analytics page view id.")
    referrer_page_view_id: str | None = column("Page view id of the referring page.")
    labels: tuple[str, ...] = column("Free labels.")
    promo_code: str | None = column("Promo code; none for contributions.")
    reused_existing_payment_method: bool = column("Always false on hosted checkout.")
    reader_type: str = column("Direct.")
    acquisition_type: str = column("Purchase.")
    zuora_subscription_number: str | None = column("Always null for contributions.")
    contribution_id: str = column("The contribution's UUID.")
    payment_id: str = column("Stripe charge id (ch_...).")
    query_parameters: tuple[QueryParameter, ...] = column("URL parameters of the landing page.")
    platform: str = column(
        "Platform: SUPPORT when not given; iosnativeapp/androidnativeapp become "
        "IOS_NATIVE_APP/ANDROID_NATIVE_APP."
    )
    livemode: bool = column("False for Stripe test mode.")
    account: str | None = column("Stripe partner event source (ed_...).")


@dataclass(frozen=True)
class AcquisitionEvent:
    """The exact `Detail` of the `AcquisitionsEvent` published on the acquisitions bus."""

    TABLE: ClassVar[Table] = Table(
        name="acquisition_events",
        description="Acquisitions bus events (AcquisitionDataRow JSON), one per paid payment.",
        key=("payment_id",),
        partition_by="created",
    )

    payment_id: str = column("Stripe charge id (ch_...).")
    message: str = column("The event's Detail JSON (contains the email address).")
    livemode: bool = column("False for Stripe test mode.")
    account: str | None = column("Stripe partner event source (ed_...).")
    created: datetime = column("When the payment settled (UTC).")


@dataclass(frozen=True)
class PaymentAdjustment:
    """A refund or dispute event against a charge, kept without payment state."""

    TABLE: ClassVar[Table] = Table(
        name="payment_adjustments",
        description="Refunds and disputes, one row per Stripe event, keyed by charge id.",
        key=("adjustment_id",),
        partition_by="created",
        cluster_by=("payment_id",),
    )

    adjustment_id: str = column(
        "Stripe event id (evt_...) that carried the adjustment; the refund id (re_...) "
        "for a refund object's events."
    )
    payment_id: str = column("Stripe charge id (ch_...) adjusted.")
    kind: str = column("refund or dispute.")
    event_type: str = column("Stripe event type.")
    amount: Decimal = column("Refund: amount refunded by this event; dispute: disputed amount.")
    amount_refunded_total: Decimal | None = column(
        "Refund from charge.refunded: cumulative amount refunded so far; "
        "null for a refund object, whose amount is that one refund."
    )
    fully_refunded: bool | None = column(
        "Refund from charge.refunded: True once the whole charge is refunded (its "
        "`refunded`); null for a refund object, which does not know."
    )
    currency: str = column("ISO 4217 code, upper case.")
    dispute_id: str | None = column("Stripe dispute id (dp_...).")
    dispute_status: str | None = column("Dispute status after this event.")
    livemode: bool = column("False for Stripe test mode.")
    account: str | None = column("Stripe partner event source (ed_...).")
    created: datetime = column("Stripe event time (UTC).")


@dataclass(frozen=True)
class ContributionStoreRecord:
    """The operational contributions store row (today's `newContributionData`)."""

    TABLE: ClassVar[Table] = Table(
        name="contributions_store",
        description="Operational contributions store, upserted by payment id.",
        key=("payment_id",),
        partition_by="created",
    )

    payment_provider: str = column("Stripe.")
    payment_status: str = column("Paid, Failed or Refunded.")
    payment_id: str = column("Stripe charge id (ch_...).")
    identity_id: str | None = column("Reader's identity id.")
    email: str | None = column("Reader's email (personal data).")
    created: datetime = column("When the payment settled (UTC).")
    currency: str = column("ISO 4217 code, upper case.")
    amount: Decimal = column("Amount, major units.")
    country_code: str | None = column("Country, ISO alpha-2.")
    country_subdivision_code: str | None = column("Billing address state (personal data).")
    postal_code: str | None = column("Billing postal code (personal data).")
    contribution_id: str = column("The contribution's UUID.")
    livemode: bool = column("False for Stripe test mode.")
    account: str | None = column("Stripe partner event source (ed_...).")


@dataclass(frozen=True)
class SupporterProductData:
    """An item of the DynamoDB `SupporterProductData` table."""

    TABLE: ClassVar[Table] = Table(
        name="supporter_product_data",
        description="Supporter data store items, keyed by identity and subscription name.",
        key=("identity_id", "subscription_name"),
    )

    identity_id: str = column("Reader's identity id (partition key).")
    subscription_name: str = column("'Stripe - <charge id>' (sort key).")
    product_rate_plan_id: str = column("single_contribution.")
    product_rate_plan_name: str = column("Single Contribution.")
    contract_effective_date: date = column("Payment date (UTC).")
    term_end_date: date = column("Payment date + 8 years + 1 week.")
    expiry_date: int = column("Epoch seconds of term_end_date + 1 day: the table's TTL.")
    contribution_amount: Decimal = column("Amount, major units.")
    contribution_currency: str = column("ISO 4217 code, upper case.")
    payment_id: str = column("Stripe charge id (ch_...).")
    livemode: bool = column("False for Stripe test mode.")
    account: str | None = column("Stripe partner event source (ed_...).")


@dataclass(frozen=True)
class ThankYouEmail:
    """The exact SQS body that triggers the thank-you email."""

    TABLE: ClassVar[Table] = Table(
        name="thank_you_emails",
        description="Thank-you email messages, one per paid payment with an identity.",
        key=("payment_id",),
        partition_by="created",
    )

    payment_id: str = column("Stripe charge id (ch_...).")
    message: str = column("JSON body sent to the email queue (contains the email address).")
    livemode: bool = column("False for Stripe test mode.")
    account: str | None = column("Stripe partner event source (ed_...).")
    created: datetime = column("When the payment settled (UTC).")


@dataclass(frozen=True)
class SoftOptIn:
    """The exact SQS body that sets the reader's soft opt-in consents."""

    TABLE: ClassVar[Table] = Table(
        name="soft_opt_ins",
        description="Soft opt-in messages, one per paid payment with an identity.",
        key=("payment_id",),
        partition_by="created",
    )

    payment_id: str = column("Stripe charge id (ch_...).")
    message: str = column("JSON body sent to the soft opt-in queue.")
    livemode: bool = column("False for Stripe test mode.")
    account: str | None = column("Stripe partner event source (ed_...).")
    created: datetime = column("When the payment settled (UTC).")


@dataclass(frozen=True)
class DeadLetter:
    """Anything the pipeline could not turn into records, with what it needs to retry.

    `time` is the record's arrival time where known (Kinesis arrival, envelope
    time), never the wall clock, so that re-runs write the same rows.
    """

    TABLE: ClassVar[Table] = Table(
        name="dead_letters",
        description="Records and payments that could not be processed, with the reason.",
        key=("dead_letter_id",),
        partition_by="time",
        cluster_by=("step", "reason"),
    )

    dead_letter_id: str = column("Deterministic id: hash of step, source and raw.")
    step: str = column("Pipeline step that failed (decode, classify, join, write_...).")
    reason: str = column("Short machine-readable reason (invalid_json, charge_missing, ...).")
    error: str = column("Human-readable error.")
    raw: str = column("The raw input (record text or payment summary).")
    source: str = column("Where it came from: file@byte_offset, or stream/shard/sequence.")
    event_id: str | None = column("Stripe event id, when known.")
    time: datetime | None = column("Arrival time of the record, when known (UTC).")
    # Set only by `pipelines.redrive`; the writers always write None, so a
    # letter that fails again is pending again.
    redriven_at: datetime | None = column(
        "When pipelines.redrive resolved the letter (UTC); null while pending.", default=None
    )
    redrive_run_id: str | None = column(
        "Run id of the re-drive that claimed (then resolved) the letter; null if none.",
        default=None,
    )


#: Every table the pipeline writes, in the order the summary prints them.
ALL_RECORD_TYPES: tuple[type, ...] = (
    Contribution,
    Acquisition,
    AcquisitionEvent,
    PaymentAdjustment,
    ContributionStoreRecord,
    SupporterProductData,
    ThankYouEmail,
    SoftOptIn,
    DeadLetter,
)


@dataclass(frozen=True)
class TableRows:
    """Rows (or items, or messages) one run wrote to one destination."""

    destination: str = column(
        "Where: warehouse:<table>, bigquery:<table>, postgres:<table>, dynamodb:<table> or "
        "sent:<message kind>."
    )
    rows: int = column("Rows upserted, items written or messages sent by the run.")


@dataclass(frozen=True)
class PipelineRun:
    """One run of a job: appended by the launcher once the run has ended, or when submitted.

    Not a pipeline output, so not in `ALL_RECORD_TYPES`: the writers create,
    stage, upsert and count every type there (its steps would join the pinned
    Dataflow graph, and the summary's table totals would count runs as data),
    whereas this row is written by the launcher (`transforms.sinks.run_history`)
    from what it knows of the run: its end time, exit code and counts once it
    has finished. A job only submitted to Dataflow gets a row without them
    (null) and its Dataflow job id; each refresh that sees its state change
    (`tools.runs --refresh`) appends a newer row for the same run id, and the
    run is its row with the latest `recorded_at`.
    """

    TABLE: ClassVar[Table] = Table(
        name="pipeline_runs",
        description="One row per run of the backfill or the streaming job.",
        key=("run_id",),
        partition_by="started_at",
        cluster_by=("job",),
    )

    run_id: str = column("Random id of the run (UUID4), printed at the end of the summary.")
    job: str = column("backfill or streaming.")
    arguments: tuple[str, ...] = column(
        "Command-line arguments as given, with any DSN password masked (secrets come from "
        "the environment and are never arguments)."
    )
    runner: str = column("Beam runner: FnApiRunner when none was given.")
    source: str = column("What was read: the archive folder or s3:// prefix, or the stream.")
    range_start: datetime | None = column("--start of a backfill (UTC), when given.")
    range_end: datetime | None = column("--end of a backfill (UTC, exclusive), when given.")
    started_at: datetime = column("When the job was launched (UTC).")
    ended_at: datetime | None = column(
        "When the run ended and its summary was made (UTC); for a Dataflow job, when it "
        "entered its terminal state. Null while a submitted job has not ended."
    )
    exit_code: int | None = column(
        "The job's exit code: 0 done, 1 records unaccounted for, 3 failed (a Dataflow job's "
        "terminal state maps onto these: see the README). Null while a submitted job has "
        "not ended."
    )
    records_read: int | None = column(
        "Records read (the summary's first line). Null while a submitted job has not ended."
    )
    processed: int | None = column("Records processed. Null while a submitted job has not ended.")
    skipped: int | None = column(
        "Records skipped, duplicates included. Null while a submitted job has not ended."
    )
    dead_lettered: int | None = column(
        "Records dead-lettered. Null while a submitted job has not ended."
    )
    rows_written: tuple[TableRows, ...] = column(
        "What the run itself wrote, per destination (from the writers' counters; not "
        "the tables' totals). Empty while a submitted job has not ended."
    )
    code_version: str = column("Version of the installed stripe-contributions-pipeline package.")
    git_commit: str | None = column("Commit of the checkout the job ran from, when known.")
    dataflow_job_id: str | None = column(
        "Id of the Dataflow job the run submitted; null for a run on the launching machine."
    )
    dataflow_project: str | None = column("Google Cloud project of the Dataflow job.")
    dataflow_region: str | None = column("Region of the Dataflow job.")
    dataflow_state: str | None = column(
        "The Dataflow job's state (JOB_STATE_RUNNING, JOB_STATE_DONE, ...) when this row was "
        "written from the Jobs API; null at submission (not looked at yet) and for local runs."
    )
    recorded_at: datetime | None = column(
        "When this row was written (UTC). A run's latest row is the one that counts; null in "
        "rows of earlier releases, which wrote one row per run."
    )


#: Every table with a generated schema: the pipeline's outputs and the run history.
SCHEMA_RECORD_TYPES: tuple[type, ...] = (*ALL_RECORD_TYPES, PipelineRun)
