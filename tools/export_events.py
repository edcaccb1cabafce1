"""Fill gaps in the archive from Stripe's Events API.

Stripe keeps events for 30 days. When the archive misses some (an EventBridge
or Firehose outage, a destination created late), this lists the events of a
time range from the Events API, keeps the types the pipeline reads, and writes
them as bare Stripe events, one JSON object a line, into the `exports/` folder
of the archive, which the backfill reads like any Firehose object. The
backfill de-duplicates on the event id, so events the archive already holds
count once (a copy with an EventBridge envelope is kept, since only it names
the account).

    STRIPE_API_KEY=rk_live_... python -m tools.export_events \\
        --since 2024-12-01 --until 2024-12-02 --archive s3://archive-bucket/stripe/
    python -m pipelines.backfill --source s3://archive-bucket/stripe/ \\
        --start 2024-12-01 --end 2024-12-02

The key comes from the environment only (`STRIPE_API_KEY`; a restricted key
with read access to Events is enough) and is never printed. The file is named
after the range (`exports/stripe-events-<since>-<until>.jsonl`) and appears
whole or not at all, so a re-run over the same range replaces it and a failed
run leaves nothing half-written. Exit codes: 0 done, 2 usage (bad
dates, no key), 3 Stripe unreachable or the key refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from apache_beam.io.filesystems import FileSystems

from pipelines.flags import FlagParser
from pipelines.options import utc_datetime
from transforms.domain import facts

PROG = "python -m tools.export_events"
API_KEY_ENV = "STRIPE_API_KEY"
DEFAULT_API_BASE = "https://api.stripe.com"
#: How far back Stripe's Events API returns events.
RETENTION = timedelta(days=30)
#: The page size Stripe allows at most.
PAGE_SIZE = 100
#: Seconds before one HTTP call to Stripe is given up (then retried by the library).
REQUEST_TIMEOUT_S = 30.0
NETWORK_RETRIES = 3
EXPORTS_FOLDER = "exports"

#: The event types the pipeline reads (`transforms.domain.facts`); Stripe takes at most 20.
EXPORTED_TYPES: tuple[str, ...] = tuple(
    sorted(
        {
            facts.SESSION_COMPLETED,
            facts.SESSION_ASYNC_SUCCEEDED,
            facts.SESSION_ASYNC_FAILED,
            facts.CHARGE_SUCCEEDED,
            facts.CHARGE_FAILED,
            facts.CHARGE_REFUNDED,
            facts.PAYMENT_INTENT_SUCCEEDED,
            facts.PAYMENT_INTENT_FAILED,
            *facts.DISPUTE_EVENTS,
            *facts.REFUND_OBJECT_EVENTS,
        }
    )
)
assert len(EXPORTED_TYPES) <= 20, "Stripe's types[] filter takes at most 20 types"


class ExportError(Exception):
    """Stripe could not be reached or refused the request: exit 3."""


def stripe_client(api_key: str, api_base: str) -> stripe.StripeClient:
    """A client with bounded timeouts and the library's own retries on network errors."""
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        max_network_retries=NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT_S),
    )


def list_events(
    client: stripe.StripeClient, since: datetime, until: datetime
) -> Iterator[dict[str, Any]]:
    """Every event of `EXPORTED_TYPES` created in [since, until), as plain JSON objects.

    Pages through the list with `starting_after` until `has_more` is false.
    """
    params: stripe.params.EventListParams = {
        "created": {"gte": int(since.timestamp()), "lt": int(until.timestamp())},
        "types": list(EXPORTED_TYPES),
        "limit": PAGE_SIZE,
    }
    try:
        for event in client.v1.events.list(params=params).auto_paging_iter():
            yield event.to_dict()
    except stripe.AuthenticationError:
        raise ExportError(f"Stripe refused the key in {API_KEY_ENV}") from None
    except stripe.PermissionError:
        raise ExportError(f"the key in {API_KEY_ENV} may not read Events") from None
    except stripe.APIConnectionError:
        raise ExportError(
            f"Stripe could not be reached after {NETWORK_RETRIES} retries (network error)"
        ) from None
    except stripe.StripeError as error:
        message = " ".join(str(error.user_message or "").split())
        raise ExportError(f"Stripe answered {error.http_status}: {message}") from None


def export_path(archive: str, since: datetime, until: datetime) -> str:
    name = f"stripe-events-{since:%Y%m%dT%H%M%SZ}-{until:%Y%m%dT%H%M%SZ}.jsonl"
    return FileSystems.join(archive.rstrip("/"), EXPORTS_FOLDER, name)


def write_atomically(path: str, lines: Sequence[bytes]) -> None:
    """Writes `lines` to `path` so that a reader sees the whole file or none of it.

    Locally through a hidden temporary file in the same folder and a rename;
    an S3 object only becomes visible when its upload completes.
    """
    if "://" in path:
        with FileSystems.create(path) as out:
            for line in lines:
                out.write(line)
        return
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    descriptor, staging = tempfile.mkstemp(dir=folder, prefix=".export-", suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.writelines(lines)
        os.replace(staging, path)
    except BaseException:
        os.unlink(staging)
        raise


def export(
    client: stripe.StripeClient, archive: str, since: datetime, until: datetime
) -> tuple[str, int]:
    """Lists the range's events and writes them to the archive; (path, events written).

    Events are written oldest first (by `created`, then id), so the file is the
    same whatever order the API returned them in.
    """
    events = sorted(list_events(client, since, until), key=lambda e: (e["created"], e["id"]))
    lines = [
        json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        for event in events
    ]
    path = export_path(archive, since, until)
    write_atomically(path, lines)
    return path, len(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = FlagParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--since",
        type=utc_datetime,
        required=True,
        help="First creation time to export (ISO 8601, UTC unless an offset is given). "
        "Stripe returns only the last 30 days.",
    )
    parser.add_argument(
        "--until",
        type=utc_datetime,
        default=None,
        help="Export events created before this time (exclusive). Default: now.",
    )
    parser.add_argument(
        "--archive",
        required=True,
        help="The archive the backfill reads (a local folder or s3://bucket/prefix); the "
        f"events go to its {EXPORTS_FOLDER}/ folder.",
    )
    parser.add_argument(
        "--stripe_api_base",
        default=DEFAULT_API_BASE,
        help="Stripe's API address (a local server in tests). Default: %(default)s.",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, now: datetime | None = None) -> int:
    args = parse_args(argv)
    now = now or datetime.now(UTC)
    until = args.until or now
    if args.since >= until:
        print(f"{PROG}: error: --since must be before --until", file=sys.stderr)
        return 2
    api_key = os.environ.get(API_KEY_ENV)
    if not api_key:
        print(
            f"{PROG}: error: set {API_KEY_ENV} to a Stripe secret or restricted key (never a flag)",
            file=sys.stderr,
        )
        return 2
    if args.since < now - RETENTION:
        print(
            f"{PROG}: note: Stripe keeps events for 30 days; nothing before "
            f"{(now - RETENTION):%Y-%m-%dT%H:%M:%SZ} can be exported",
            file=sys.stderr,
        )
    try:
        path, written = export(
            stripe_client(api_key, args.stripe_api_base), args.archive, args.since, until
        )
    except ExportError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 3
    print(
        f"exported {written} events created in [{args.since:%Y-%m-%dT%H:%M:%SZ}, "
        f"{until:%Y-%m-%dT%H:%M:%SZ}) to {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
