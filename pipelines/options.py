"""Command-line options shared by the jobs: flag definitions and their checks.

Flags are Beam style (snake_case) and live in `PipelineOptions` subclasses so
they travel with the pipeline to Dataflow; every flag has help text. Values
are checked here and turned into plain arguments for the transforms, which
never read options themselves.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, S3Options

from transforms.core.process import ProcessStripeEvents
from transforms.domain.facts import ALL_MODES, STRIPE_MODES
from transforms.domain.mapping import DEFAULT_PAYMENT_PROVIDER, PRECISE_PAYMENT_PROVIDER
from transforms.domain.redrive import OUTCOME_UNKNOWN_REASON, Delivery
from transforms.infrastructure import (
    DEFAULT_WEB_IDENTITY_AUDIENCE,
    METADATA_IDENTITY_URL,
    TokenSource,
    metadata_token_source,
)
from transforms.services.complete_from_stripe import CompleteFromStripe
from transforms.services.identity import ResolveIdentities, check_api_url
from transforms.services.stripe_charges import API_KEY_ENV as STRIPE_API_KEY_ENV
from transforms.services.stripe_charges import DEFAULT_API_BASE as DEFAULT_STRIPE_API_BASE
from transforms.services.stripe_charges import ChargeRetriever
from transforms.sinks.contract import MessageWindow, SinkConfig, flags_of
from transforms.sinks.postgres import CONTRIBUTIONS_STORE_ENV as CONTRIBUTIONS_STORE_ENV
from transforms.sinks.registry import SINKS
from transforms.sources.archive import archive_s3_client, check_archive

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE = str(PROJECT_ROOT / "sample" / "archive")


def utc_datetime(text: str) -> datetime:
    """An ISO 8601 date or time; without an offset it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date or time: {text!r} (e.g. 2024-12-05 or 2024-12-05T23:00:00Z)"
        ) from error
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from error
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


#: The flag behind each `ProcessStripeEvents` argument, named in its errors instead.
_CORE_FLAGS = {
    "charge_wait": "--charge_wait_minutes",
    "settlement_timeout": "--settlement_timeout_days",
}


class CoreOptions(PipelineOptions):
    """How the core turns events into records (same for every job)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("event processing")
        group.add_argument(
            "--charge_wait_minutes",
            type=positive_number,
            default=60.0,
            help="How long (event time) a settled payment waits for its charge object, which "
            "alone carries the card country, before completing with the address country. "
            "Default: %(default)s.",
        )
        group.add_argument(
            "--settlement_timeout_days",
            type=positive_number,
            default=21.0,
            help="How long a Checkout Session paid by a delayed method (Bacs, SEPA) may wait "
            "for its async outcome before it is dead-lettered as payment_not_settled. "
            "Default: %(default)s.",
        )
        group.add_argument(
            "--stripe_mode",
            choices=STRIPE_MODES,
            default=None,
            help="Which Stripe mode this deployment serves: live (the PROD resources) or test "
            "(the CODE ones); events of the other mode are skipped and counted "
            "(other_stripe_mode). Required, and live or test, with any production sink: a "
            "deployment serves one stage. Default without production sinks: all (the local "
            "warehouse keeps both, with livemode on every row).",
        )
        group.add_argument(
            "--first_name_custom_field",
            default=None,
            metavar="KEY",
            help="Key of the Checkout custom text field in which the page collects the "
            "reader's given name, sent as the thank-you email's first_name. Without it "
            "first_name is null, as today's payment API sends it (Stripe's name is the "
            "full name, family name first in many languages).",
        )
        group.add_argument(
            "--acquisition_payment_provider",
            default=DEFAULT_PAYMENT_PROVIDER,
            help="The acquisitions' paymentProvider, on the bus and in the acquisitions table. "
            f"Default: %(default)s, which today's acquisitions publisher accepts; "
            f"{PRECISE_PAYMENT_PROVIDER} is precise once that consumer accepts it (README).",
        )
        group.add_argument(
            "--complete_from_stripe",
            action="store_true",
            default=False,
            help="A payment whose charge event is missing (it would be a charge_missing dead "
            "letter) gets its PaymentIntent retrieved from Stripe once, its latest charge "
            "expanded, and completes as if the charge event had arrived; a failed retrieval "
            "leaves the letter, its error saying why. The streaming job retrieves at the "
            "payment's charge deadline (--charge_wait_minutes after it settled); a charge event "
            "arriving later is counted, never a second payment. The key comes only from "
            f"the {STRIPE_API_KEY_ENV} environment variable (a restricted key with read access "
            "to PaymentIntents and charges), is checked before launch (exit 3 when Stripe "
            "refuses it) and is never logged. Default: off.",
        )
        group.add_argument(
            "--stripe_api_base",
            default=DEFAULT_STRIPE_API_BASE,
            help="With --complete_from_stripe: the Stripe API's address (tests and proxies). "
            "Default: %(default)s.",
        )

    def checked_stripe_mode(self) -> str:
        """The checked `--stripe_mode` (ValueError when production effects need one).

        Production effects are the selected production sinks and the Identity
        API (`--identity_api_url`), which creates identities in the stage's
        Identity API.
        """
        production = list(self.view_as(SinkOptions).sink_config().production_flags)
        if self.view_as(IdentityOptions).identity_api_url:
            production.append("--identity_api_url")
        if not production:
            return self.stripe_mode or ALL_MODES
        if self.stripe_mode not in ("live", "test"):
            raise ValueError(
                "--stripe_mode live or --stripe_mode test is required with production sinks ("
                + ", ".join(production)
                + "): a deployment serves one stage, and test payments must not reach live "
                "resources"
            )
        return str(self.stripe_mode)

    def _stripe_access(self) -> tuple[str, str]:
        """(key, API base) for --complete_from_stripe; ValueError when either is unusable."""
        key = os.environ.get(STRIPE_API_KEY_ENV, "").strip()
        if not key:
            raise ValueError(
                f"--complete_from_stripe needs the {STRIPE_API_KEY_ENV} environment variable"
            )
        if not self.stripe_api_base or not self.stripe_api_base.startswith(("https://", "http://")):
            raise ValueError("--stripe_api_base must be an http(s):// address")
        return key, self.stripe_api_base.rstrip("/")

    def charge_completer(self) -> CompleteFromStripe | None:
        """The core's `complete_charges` step, or None without --complete_from_stripe."""
        if not self.complete_from_stripe:
            return None
        key, api_base = self._stripe_access()
        return CompleteFromStripe(key, api_base, timedelta(minutes=self.charge_wait_minutes))

    def check_stripe_key(self) -> None:
        """Before launch, with --complete_from_stripe: Stripe accepts the key (else exit 3)."""
        if self.complete_from_stripe:
            ChargeRetriever(*self._stripe_access()).check_key()

    def process_stripe_events(self, **arguments: Any) -> ProcessStripeEvents:
        """The core with these flags (and any other `arguments`, e.g. `group_by_key`).

        The core checks its arguments itself; its ValueError is re-raised
        naming the flags instead of the arguments.
        """
        if not self.acquisition_payment_provider:
            raise ValueError("--acquisition_payment_provider must not be empty")
        try:
            return ProcessStripeEvents(
                charge_wait=timedelta(minutes=self.charge_wait_minutes),
                settlement_timeout=timedelta(days=self.settlement_timeout_days),
                stripe_mode=self.checked_stripe_mode(),
                payment_provider=self.acquisition_payment_provider,
                first_name_field=self.first_name_custom_field or None,
                complete_charges=self.charge_completer(),
                **arguments,
            )
        except ValueError as error:
            message = str(error)
            for argument, flag in _CORE_FLAGS.items():
                message = re.sub(rf"\b{argument}\b", flag, message)
            raise ValueError(message) from None


IDENTITY_API_TOKEN_ENV = "IDENTITY_API_TOKEN"


class IdentityOptions(PipelineOptions):
    """Whether payers without an identity get one from the Identity API (same for every job)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("identity")
        group.add_argument(
            "--identity_api_url",
            default=None,
            help="The Identity API endpoint (https://...). When given, a paid payment whose "
            "session names no identity gets one by get-or-create on the payer's email before "
            "its records are built, so guests get their email, supporter item and soft opt-in; "
            "a payer the API cannot serve after retries goes on as a guest (counted). A "
            "production side effect: it needs --stripe_mode live (production's Identity API) or "
            "test (CODE's; only then are test-mode payments looked up). The "
            f"token comes only from the {IDENTITY_API_TOKEN_ENV} environment variable and is "
            "never logged. Default: off, payers without an identity stay guests.",
        )
        group.add_argument(
            "--identity_timeout_s",
            type=positive_number,
            default=5.0,
            help="Timeout of one Identity API request (connect, and each read). "
            "Default: %(default)s.",
        )
        group.add_argument(
            "--identity_attempts",
            type=positive_integer,
            default=3,
            help="Attempts per payer on 5xx answers and connection failures, each starting with "
            "a lookup. Default: %(default)s.",
        )
        group.add_argument(
            "--identity_retry_delay_s",
            type=positive_number,
            default=0.5,
            help="Wait between two attempts. Default: %(default)s.",
        )
        group.add_argument(
            "--identity_max_concurrent",
            type=positive_integer,
            default=4,
            help="Most Identity API requests in flight at once per worker process. "
            "Default: %(default)s.",
        )

    def identity_resolver(self) -> ResolveIdentities | None:
        """The `resolve_identities` step for the core, or None without --identity_api_url."""
        if not self.identity_api_url:
            return None
        try:
            url = check_api_url(self.identity_api_url)
        except ValueError as error:
            raise ValueError(f"--identity_api_url {error}") from None
        token = os.environ.get(IDENTITY_API_TOKEN_ENV, "").strip()
        if not token:
            raise ValueError(
                f"--identity_api_url needs the {IDENTITY_API_TOKEN_ENV} environment variable"
            )
        return ResolveIdentities(
            url,
            token,
            timeout=timedelta(seconds=self.identity_timeout_s),
            attempts=self.identity_attempts,
            retry_delay=timedelta(seconds=self.identity_retry_delay_s),
            max_concurrent=self.identity_max_concurrent,
            stripe_mode=self.view_as(CoreOptions).checked_stripe_mode(),
        )


class AwsOptions(PipelineOptions):
    """How the job's AWS clients get credentials (same for every job)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("aws credentials")
        group.add_argument(
            "--aws_role_arn",
            default=None,
            help="Optional. An IAM role that every AWS client of the job (Kinesis, S3, "
            "DynamoDB, SQS, on the launcher and on every worker) assumes with the Google-"
            "signed identity token of the workers' service account (STS "
            "AssumeRoleWithWebIdentity, refreshed before expiry): how Dataflow workers reach "
            "AWS without any key. Default: the standard AWS credentials chain.",
        )
        group.add_argument(
            "--aws_region",
            default=None,
            help="Optional. The AWS region of the stream, archive, tables and queues, for every "
            "AWS client of the job (it sets AWS_DEFAULT_REGION on the launcher and on every "
            "worker, which have no AWS configuration on Dataflow). Default: the standard AWS "
            "configuration.",
        )
        group.add_argument(
            "--aws_web_identity_audience",
            default=DEFAULT_WEB_IDENTITY_AUDIENCE,
            help="With --aws_role_arn: the audience the identity token is requested for; the "
            "role's trust policy must expect it. Default: %(default)s.",
        )
        group.add_argument(
            "--aws_identity_token_url",
            default=METADATA_IDENTITY_URL,
            help="With --aws_role_arn: the identity endpoint of Google's metadata server, "
            "which only Google Cloud VMs reach; tests give a local stand-in. "
            "Default: %(default)s.",
        )

    def token_source(self) -> TokenSource:
        """Where fresh identity tokens for `--aws_role_arn` come from."""
        return metadata_token_source(self.aws_web_identity_audience, self.aws_identity_token_url)


class SinkOptions(PipelineOptions):
    """Where each output goes: the flags of every registered sink (`transforms.sinks.registry`).

    Anything without a sink of its own goes to the warehouse. A flag with an
    environment variable (a secret) takes the variable's value when the flag
    is not given. The message flags say which messages the queues and the
    bus get (`MessageWindow`); every other output is written whatever its age.
    """

    run_started_at: str | None

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("outputs")
        for flag in flags_of(SINKS).values():
            group.add_argument(flag.option, default=flag.default, help=flag.help)
        messages = parser.add_argument_group("messages")
        messages.add_argument(
            "--messages_max_age_hours",
            type=positive_number,
            default=72.0,
            help="Messages (thank-you emails, soft opt-ins, acquisitions bus events, "
            "contributions store queue messages) are only sent for payments (and refunds) "
            "younger than this at --run_started_at; older ones are counted "
            "(outputs skipped: message_too_old) and every table is written as usual. The "
            "default is the window in which Stripe itself retries a delivery, so a backfill "
            "does not re-send what went out when the payments were made. Default: %(default)s.",
        )
        messages.add_argument(
            "--no_messages",
            action="store_true",
            default=False,
            help="Send no message at all (counted as outputs skipped: no_messages); every "
            "table is written as usual.",
        )
        messages.add_argument(
            "--run_started_at",
            type=iso_time_text,
            default=None,
            help="The time messages' age is measured from (ISO 8601, UTC unless an offset is "
            "given). Default: when the job is launched, fixed then and passed to every worker.",
        )

    def run_start(self) -> datetime:
        """`--run_started_at`; unless given, now, fixed in the options by the first call.

        The launcher builds the graph, and so calls this first; the value then
        travels with the options, so every later call, here or on a worker,
        measures from the same instant.
        """
        if self.run_started_at is None:
            self.run_started_at = datetime.now(UTC).isoformat()
        return utc_datetime(self.run_started_at)

    def message_window(self) -> MessageWindow:
        """Which messages this run sends: none, or those younger than the maximum age."""
        if self.no_messages:
            return MessageWindow(send=False)
        return MessageWindow.measured_from(
            self.run_start(), timedelta(hours=self.messages_max_age_hours)
        )

    def sink_config(self) -> SinkConfig:
        """The sinks, checked for consistency (ValueError with the flag names)."""
        values: dict[str, str | None] = {}
        for flag in flags_of(SINKS).values():
            value = getattr(self, flag.name)
            if not value and flag.env is not None:
                value = os.environ.get(flag.env) or None
            values[flag.name] = value
        return SinkConfig(
            values,
            sinks=SINKS,
            temp_location=self.view_as(GoogleCloudOptions).temp_location,
            messages=self.message_window(),
        )


AUTO_SHUFFLE = "auto"
DISK_SHUFFLE = "disk"
RUNNER_SHUFFLE = "runner"
SHUFFLES = (AUTO_SHUFFLE, DISK_SHUFFLE, RUNNER_SHUFFLE)
#: Runners whose workers share the launching machine's filesystem.
LOCAL_RUNNERS = frozenset(
    {
        "FnApiRunner",
        "DirectRunner",
        "BundleBasedDirectRunner",
        "SwitchingDirectRunner",
        "PrismRunner",
    }
)


class BackfillOptions(PipelineOptions):
    """Where the backfill reads from."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("archive")
        group.add_argument(
            "--source",
            default=DEFAULT_SAMPLE,
            help="The Firehose archive: a local folder or glob, or s3://bucket/prefix (read "
            "recursively; the S3 endpoint follows the standard AWS configuration, e.g. "
            "AWS_ENDPOINT_URL). Default: the bundled sample, %(default)s.",
        )
        group.add_argument(
            "--start",
            type=utc_datetime,
            default=None,
            help="Only events created at or after this time (ISO 8601, UTC unless an offset "
            "is given). Files more than --arrival_margin_before_hours before it are not read.",
        )
        group.add_argument(
            "--end",
            type=utc_datetime,
            default=None,
            help="Only events created before this time (exclusive). Files filed more than "
            "--arrival_margin_after_hours after it are not read.",
        )
        group.add_argument(
            "--allow_empty",
            action="store_true",
            default=False,
            help="Run even when --source holds no file in the --start/--end range (with the "
            "arrival margins), which is otherwise refused before launch (exit 3) as a likely "
            "wrong folder, prefix or range.",
        )
        group.add_argument(
            "--arrival_margin_before_hours",
            type=float,
            default=1.0,
            help="Firehose files objects by arrival hour: read files up to this many hours "
            "before --start. Default: %(default)s.",
        )
        group.add_argument(
            "--arrival_margin_after_hours",
            type=float,
            default=72.0,
            help="Events arrive late when Stripe retries (up to 3 days): read files up to this "
            "many hours after --end. Default: %(default)s.",
        )
        group.add_argument(
            "--shuffle",
            choices=SHUFFLES,
            default=AUTO_SHUFFLE,
            help="How events are grouped by payment. disk: an external merge sort in "
            "--shuffle_dir, so memory stays flat however big the archive (local runners "
            "only: every worker must see that folder); runner: the runner's GroupByKey "
            "(Dataflow's shuffle spills to disk by itself; the local FnApiRunner holds it all "
            "in memory). auto: disk on local runners, runner on any other. "
            "Default: %(default)s.",
        )
        group.add_argument(
            "--shuffle_dir",
            default=None,
            help="Folder for --shuffle disk's temporary run files (about 400 bytes per event, "
            "removed after the merge). Default: the system's temporary folder.",
        )
        group.add_argument(
            "--progress_interval_s",
            type=float,
            default=30.0,
            help="Progress of the archive read on stderr (local runners): on a terminal one "
            "line rewritten every second; otherwise a line every this many seconds. "
            "0 turns it off. Default: %(default)s.",
        )

    def disk_shuffle_dir(self, runner: str | None) -> str | None:
        """The folder for `GroupByKeyOnDisk`, or None to use the runner's GroupByKey."""
        local = runner is None or runner in LOCAL_RUNNERS
        shuffle = self.shuffle
        if shuffle == AUTO_SHUFFLE:
            shuffle = DISK_SHUFFLE if local else RUNNER_SHUFFLE
        if shuffle == RUNNER_SHUFFLE:
            return None
        if not local:
            raise ValueError(
                f"--shuffle {DISK_SHUFFLE} needs a local runner, whose workers share "
                f"--shuffle_dir; {runner} workers do not: use --shuffle {RUNNER_SHUFFLE}"
            )
        directory = self.shuffle_dir or tempfile.gettempdir()
        if not os.path.isdir(directory):
            raise ValueError(f"--shuffle_dir {directory} is not a folder")
        return directory

    def archive_arguments(self) -> dict[str, Any]:
        """Keyword arguments for `ReadArchive`."""
        if not self.source or not self.source.strip():
            raise ValueError(
                "--source must not be empty: give a folder, a glob or s3://bucket/prefix"
            )
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"--start ({self.start}) must be before --end ({self.end})")
        if self.arrival_margin_before_hours < 0 or self.arrival_margin_after_hours < 0:
            raise ValueError("arrival margins must not be negative")
        return {
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "arrival_margin_before": timedelta(hours=self.arrival_margin_before_hours),
            "arrival_margin_after": timedelta(hours=self.arrival_margin_after_hours),
        }

    def check_source(self, archive: dict[str, Any] | None = None) -> None:
        """Before reading: `--source` exists and holds a file in the range, or `--allow_empty`.

        The range is `archive`'s (`archive_arguments()` unless given: the reconcile
        reads from earlier than `--start`). ValueError for an empty `--source`,
        `ConfigurationError` (exit 3, one line naming the flag) for a folder,
        bucket or prefix that is missing, unreachable or empty
        (`transforms.sources.archive.check_archive`).
        """
        archive = self.archive_arguments() if archive is None else archive
        s3_client = None
        if archive["source"].startswith("s3://"):
            # The client Beam's S3 filesystem would make, with bounded timeouts and retries.
            s3 = self.view_as(S3Options)
            s3_client = archive_s3_client(
                endpoint_url=s3.s3_endpoint_url,
                region_name=s3.s3_region_name,
                aws_access_key_id=s3.s3_access_key_id,
                aws_secret_access_key=s3.s3_secret_access_key,
                aws_session_token=s3.s3_session_token,
                use_ssl=not s3.s3_disable_ssl,
                verify=s3.s3_verify,
            )
        check_archive(**archive, allow_empty=self.allow_empty, s3_client=s3_client)


class ReportOptions(PipelineOptions):
    """What a run reports besides its printed summary."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("run report")
        group.add_argument(
            "--summary_json",
            default=None,
            help="Also write the end-of-run summary to this file as JSON (schema in the "
            "README, Operations). Every run waited for also appends a row to the "
            "warehouse's pipeline_runs table.",
        )


def positive_integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from error
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def iso_time_text(text: str) -> str:
    """Checks an ISO 8601 time and keeps it as text.

    Options travel to Dataflow as JSON, which has no datetime; the value is
    parsed with `utc_datetime` when the transform's arguments are built.
    """
    utc_datetime(text)
    return text


#: Where a shard is read from when the job starts, as `transforms.sources.kinesis` names them.
INITIAL_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")


class KinesisOptions(PipelineOptions):
    """Where the streaming job reads from, and the optional bounds of a test or demo read.

    `--kinesis_stream` is required by the streaming job, but not declared
    `required` to argparse: Beam parses every options class's flags for every
    job, so a required flag here would break the backfill. `kinesis_arguments`
    checks it instead.
    """

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("kinesis")
        group.add_argument(
            "--kinesis_stream",
            default=None,
            help="Required. The Kinesis data stream EventBridge puts the Stripe events on: a "
            "stream name or an ARN (arn:aws:kinesis:...). Credentials, region and endpoint come "
            "from the standard AWS configuration (e.g. AWS_PROFILE, AWS_ENDPOINT_URL).",
        )
        group.add_argument(
            "--initial_position",
            choices=INITIAL_POSITIONS,
            default="TRIM_HORIZON",
            help="Where each shard is read from when the job starts: the oldest record kept "
            "(TRIM_HORIZON), only new records (LATEST), or --initial_timestamp (AT_TIMESTAMP). "
            "Default: %(default)s.",
        )
        group.add_argument(
            "--initial_timestamp",
            type=iso_time_text,
            default=None,
            help="With --initial_position AT_TIMESTAMP (and only with it): read records that "
            "arrived at or after this time (ISO 8601, UTC unless an offset is given).",
        )
        group.add_argument(
            "--idle_timeout_s",
            type=positive_number,
            default=None,
            help="Tests and demos: end a read once none of its shards has returned a record for "
            "this many seconds, which makes the run end. Per restriction: the whole stream "
            "without --kinesis_coordination_table, each shard's lineage with it. Off by "
            "default: the job runs until stopped.",
        )
        group.add_argument(
            "--max_records",
            type=positive_integer,
            default=None,
            help="Tests and demos: end a read after this many records. Per restriction: a total "
            "across all shards without --kinesis_coordination_table, a bound per shard's lineage "
            "with it (the total is then at most this times the shards readable at start). Off "
            "by default.",
        )
        group.add_argument(
            "--kinesis_coordination_table",
            default=None,
            help="Optional. A DynamoDB table (key shardKey HASH, not created by the job) through "
            "which the shards are read in parallel, one restriction per shard, like the KCL's "
            "lease table; it records drained shards and which reader adopts a merged shard. "
            "Without it one reader thread reads every shard. Credentials, region and endpoint "
            "come from the standard AWS configuration.",
        )
        group.add_argument(
            "--load_interval_s",
            type=positive_integer,
            default=60,
            help="How often (processing time) the records that arrived since the last load "
            "are loaded into the warehouse; a last load follows the end of a bounded read. "
            "Default: %(default)s.",
        )

    def read_is_bounded(self) -> bool:
        """True when a test bound (`--idle_timeout_s`, `--max_records`) ends the read."""
        return self.idle_timeout_s is not None or self.max_records is not None

    def kinesis_arguments(self) -> dict[str, Any]:
        """Keyword arguments for `ReadFromKinesis`; ValueError names a bad combination."""
        if not self.kinesis_stream:
            raise ValueError("--kinesis_stream is required (a stream name or ARN)")
        at_timestamp = self.initial_position == "AT_TIMESTAMP"
        if at_timestamp != (self.initial_timestamp is not None):
            raise ValueError(
                "--initial_timestamp is required with --initial_position AT_TIMESTAMP "
                "and only with it"
            )
        return {
            "stream": self.kinesis_stream,
            "initial_position": self.initial_position,
            "initial_timestamp": (
                utc_datetime(self.initial_timestamp) if self.initial_timestamp else None
            ),
            "idle_timeout": (
                timedelta(seconds=self.idle_timeout_s) if self.idle_timeout_s is not None else None
            ),
            "max_records": self.max_records,
            "coordination_table": self.kinesis_coordination_table,
        }

    def load_interval(self) -> timedelta:
        """How often the streaming job loads the warehouse (processing time)."""
        return timedelta(seconds=self.load_interval_s)


def comma_list(text: str) -> tuple[str, ...]:
    """`a,b , c` -> ("a", "b", "c"); empty parts are refused."""
    parts = tuple(part.strip() for part in text.split(","))
    if not all(parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated values, got {text!r}")
    return parts


class RedriveOptions(PipelineOptions):
    """Which dead letters `pipelines.redrive` re-drives (the archive flags say where to re-read)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("selection")
        group.add_argument(
            "--step",
            type=comma_list,
            default=(),
            help="Only letters of these steps (comma-separated: decode, classify, "
            "join_payment, ...).",
        )
        group.add_argument(
            "--reason",
            type=comma_list,
            default=(),
            help="Only letters of these reasons (comma-separated: invalid_event, "
            "charge_missing, ...).",
        )
        group.add_argument(
            "--ids",
            type=comma_list,
            default=(),
            help="Only these letters (comma-separated dead_letter_id values).",
        )
        group.add_argument(
            "--since",
            type=utc_datetime,
            default=None,
            help="Only letters whose time is at or after this (ISO 8601, UTC unless an offset "
            "is given); payment letters have no time, so a range leaves them out.",
        )
        group.add_argument(
            "--until",
            type=utc_datetime,
            default=None,
            help="Only letters whose time is before this (exclusive).",
        )
        group.add_argument(
            "--include_redriven",
            action="store_true",
            help="Select letters already resolved by an earlier re-drive too (their rows "
            "and messages are upserted and de-duplicated again, so nothing is sent twice).",
        )
        group.add_argument(
            "--outcome_unknown",
            choices=[delivery.value for delivery in Delivery],
            default=None,
            help="What you found at the target of the selected senders' outcome_unknown "
            "letters (select them by --ids or --reason outcome_unknown): delivered marks "
            "each one's ledger claim sent and sends nothing; not_delivered releases the "
            "claim and re-drives the payment, which sends the message once. Only while the "
            "claim is still the one the letter names. Without it they are listed, not "
            "re-driven.",
        )

    def selection_arguments(self) -> dict[str, Any]:
        """Keyword arguments for `transforms.sinks.dead_letters.Selection`."""
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"--since ({self.since}) must be before --until ({self.until})")
        if (
            self.outcome_unknown is not None
            and not self.ids
            and OUTCOME_UNKNOWN_REASON not in self.reason
        ):
            raise ValueError(
                f"--outcome_unknown {self.outcome_unknown} says what you found for the letters "
                f"you checked: select them by --ids or --reason {OUTCOME_UNKNOWN_REASON}"
            )
        return {
            "steps": tuple(self.step),
            "reasons": tuple(self.reason),
            "ids": tuple(self.ids),
            "since": self.since,
            "until": self.until,
            "include_redriven": bool(self.include_redriven),
        }

    def delivery(self) -> Delivery | None:
        """The operator's word on the selected outcome_unknown letters (`--outcome_unknown`)."""
        return None if self.outcome_unknown is None else Delivery(self.outcome_unknown)
