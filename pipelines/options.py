"""Command-line options shared by the jobs: flag definitions and their checks.

Flags are Beam style (snake_case) and live in `PipelineOptions` subclasses so
they travel with the pipeline to Dataflow; every flag has help text. Values
are checked here and turned into plain arguments for the transforms, which
never read options themselves.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE = str(PROJECT_ROOT / "sample" / "archive")
DEFAULT_WAREHOUSE = "out/warehouse.duckdb"


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
            "--exclude_test_mode",
            action="store_true",
            default=False,
            help="Skip (and count) Stripe test-mode events. By default they are processed like "
            "live ones and flagged livemode=false.",
        )

    def core_arguments(self) -> dict[str, Any]:
        """Keyword arguments for `ProcessStripeEvents`."""
        charge_wait = timedelta(minutes=self.charge_wait_minutes)
        timeout = timedelta(days=self.settlement_timeout_days)
        if charge_wait >= timeout:
            raise ValueError("--charge_wait_minutes must be shorter than --settlement_timeout_days")
        return {
            "charge_wait": charge_wait,
            "settlement_timeout": timeout,
            "include_test_mode": not self.exclude_test_mode,
        }


class WarehouseOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("outputs")
        group.add_argument(
            "--warehouse",
            default=DEFAULT_WAREHOUSE,
            help="DuckDB file that receives every table (created with its folder if missing; "
            "rows are upserted by natural key, so re-runs are harmless). "
            "Default: %(default)s.",
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

    def archive_arguments(self) -> dict[str, Any]:
        """Keyword arguments for `ReadArchive`."""
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
