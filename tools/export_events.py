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

An `s3://` archive is written with a boto3 client of the standard AWS chain
(credentials from the environment or the instance, never flags), with bounded
timeouts; `--s3_endpoint_url` and `--s3_region_name` override the endpoint and
region as the jobs' flags of the same names do. Its bucket is looked at
before Stripe is asked, so a wrong bucket or endpoint fails at once.

The key comes from the environment only (`STRIPE_API_KEY`; a restricted key
with read access to Events is enough) and is never printed. The file is named
after the range (`exports/stripe-events-<since>-<until>.jsonl`) and appears
whole or not at all, so a re-run over the same range replaces it and a failed
run leaves nothing half-written. Exit codes: 0 done, 2 usage (bad
dates, no key, an archive neither local nor S3), 3 Stripe unreachable or the
key refused, or the archive's bucket missing, unreachable or not writable;
each failure one line on stderr.
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

import botocore.exceptions
import stripe

from pipelines.flags import FlagParser
from pipelines.options import utc_datetime
from transforms.domain import facts
from transforms.infrastructure import describe_error, error_code
from transforms.sources.archive import archive_s3_client

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
_S3_HINT = " (check --s3_endpoint_url or AWS_ENDPOINT_URL, the region and the credentials)"

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
    return f"{archive.rstrip('/')}/{EXPORTS_FOLDER}/{name}"


def check_bucket(archive: str, s3_client: Any) -> None:
    """Before Stripe is asked: the archive's bucket exists and its endpoint answers.

    Raises `ExportError`. A refusal (403) passes: a role that may put objects
    need not be allowed to look at the bucket, and the upload will tell.
    """
    bucket = _bucket_and_key(archive)[0]
    try:
        s3_client.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as error:
        if error_code(error) in ("404", "NoSuchBucket", "NotFound"):
            raise ExportError(
                f"--archive {archive}: the S3 bucket {bucket!r} does not exist"
            ) from None
        if error_code(error) not in ("403", "AccessDenied"):
            raise ExportError(f"--archive {archive}: {describe_error(error)}") from None
    except botocore.exceptions.BotoCoreError as error:
        raise ExportError(f"--archive {archive}: {describe_error(error)}{_S3_HINT}") from None


def write_atomically(path: str, lines: Sequence[bytes], s3_client: Any | None = None) -> None:
    """Writes `lines` to `path` so that a reader sees the whole file or none of it.

    Locally through a hidden temporary file in the same folder and a rename;
    to S3 (`s3://bucket/key`, with `s3_client`) as one object, which only
    becomes visible when its upload completes. Raises `ExportError`.
    """
    if path.startswith("s3://"):
        bucket, key = _bucket_and_key(path)
        client = s3_client or archive_s3_client()
        try:
            client.put_object(Bucket=bucket, Key=key, Body=b"".join(lines))
        except botocore.exceptions.ClientError as error:
            raise ExportError(f"{path} could not be written: {describe_error(error)}") from None
        except botocore.exceptions.BotoCoreError as error:
            raise ExportError(
                f"{path} could not be written: {describe_error(error)}{_S3_HINT}"
            ) from None
        return
    try:
        _write_local(path, lines)
    except OSError as error:
        raise ExportError(f"{path} could not be written: {error.strerror or error}") from None


def _bucket_and_key(path: str) -> tuple[str, str]:
    bucket, _, key = path[len("s3://") :].partition("/")
    return bucket, key


def _write_local(path: str, lines: Sequence[bytes]) -> None:
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
    client: stripe.StripeClient,
    archive: str,
    since: datetime,
    until: datetime,
    s3_client: Any | None = None,
) -> tuple[str, int]:
    """Lists the range's events and writes them to the archive; (path, events written).

    Events are written oldest first (by `created`, then id), so the file is the
    same whatever order the API returned them in. An `s3://` archive is
    written with `s3_client`, whose bucket is checked before Stripe is asked.
    """
    if archive.startswith("s3://"):
        s3_client = s3_client or archive_s3_client()
        check_bucket(archive, s3_client)
    events = sorted(list_events(client, since, until), key=lambda e: (e["created"], e["id"]))
    lines = [
        json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        for event in events
    ]
    path = export_path(archive, since, until)
    write_atomically(path, lines, s3_client)
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
        "--s3_endpoint_url",
        default=None,
        help="The S3 endpoint of an s3:// --archive, as the jobs' flag of the same name. "
        "Default: the standard AWS configuration (AWS_ENDPOINT_URL, ...), then AWS's own.",
    )
    parser.add_argument(
        "--s3_region_name",
        default=None,
        help="The region of an s3:// --archive's bucket. Default: the standard AWS "
        "configuration (AWS_DEFAULT_REGION, ...).",
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
    s3 = args.archive.startswith("s3://")
    if (s3 and not _bucket_and_key(args.archive)[0]) or (not s3 and "://" in args.archive):
        print(
            f"{PROG}: error: --archive {args.archive}: give a local folder or s3://bucket/prefix",
            file=sys.stderr,
        )
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
        s3_client = None
        if s3:
            # Credentials from the standard AWS chain only: never a flag.
            s3_client = archive_s3_client(
                endpoint_url=args.s3_endpoint_url, region_name=args.s3_region_name
            )
        path, written = export(
            stripe_client(api_key, args.stripe_api_base), args.archive, args.since, until, s3_client
        )
    except ExportError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 3
    except botocore.exceptions.BotoCoreError as error:  # the S3 client could not be made
        print(f"{PROG}: error: --archive {args.archive}: {describe_error(error)}", file=sys.stderr)
        return 3
    print(
        f"exported {written} events created in [{args.since:%Y-%m-%dT%H:%M:%SZ}, "
        f"{until:%Y-%m-%dT%H:%M:%SZ}) to {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
