"""Put EventBridge envelopes on a Kinesis data stream, as EventBridge's Kinesis target would.

For demos and tests of the streaming job against a local Kinesis (moto) or a
real stream. The records are either generated (`tools.generate_archive`,
`Archive.envelopes()`: arrival order, redeliveries and malformed records
included) or read from a Firehose archive folder (objects in key order,
records split as the backfill splits them; `exports/` is skipped because the
API export never went through EventBridge).

    python -m tools.put_on_kinesis --stream stripe-events --create --shards 2 \\
        --archive sample/archive
    python -m tools.put_on_kinesis --stream stripe-events --generate 500 --seed 7 \\
        --start 2026-12-01T00:00:00Z

Records go out with PutRecords in order, in batches of at most 500 records
and 5 MiB; entries a call reports as failed (throttling) are retried, in
order, with a growing pause, and the script fails if some still fail after
`MAX_ATTEMPTS`. The partition key is the envelope's `id`, EventBridge's
default; a record without one (malformed) is keyed by the SHA-256 of its
bytes. Endpoint, region and credentials come only from the standard AWS
configuration (AWS_PROFILE, AWS_ENDPOINT_URL, ...).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions

from pipelines.flags import FlagParser
from pipelines.launch import EXIT_INFRASTRUCTURE
from pipelines.options import utc_datetime
from tools.generate_archive import DEFAULT_START, generate
from transforms.infrastructure import RETRYING_CLIENT_CONFIG, ConfigurationError, describe_error
from transforms.sources.archive import split_records
from transforms.sources.kinesis import check_stream

#: PutRecords takes at most 500 records and 5 MiB (data and partition keys) per call.
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
#: Calls made for one batch before its still-failing entries are an error.
MAX_ATTEMPTS = 8
_FIRST_PAUSE_SECONDS = 0.1
_GZIP_MAGIC = b"\x1f\x8b"


def partition_key(data: bytes) -> str:
    """The envelope's `id` (EventBridge's default key), else the SHA-256 of the bytes."""
    try:
        envelope = json.loads(data)
    except ValueError:
        envelope = None
    if isinstance(envelope, dict) and isinstance(envelope.get("id"), str) and envelope["id"]:
        return str(envelope["id"])[:256]
    return hashlib.sha256(data).hexdigest()


def archive_records(folder: Path) -> Iterator[bytes]:
    """Every record of the Firehose objects under `folder`, objects in key order.

    Objects are gzip or plain, newline-delimited or concatenated; an
    undecodable stretch (a malformed record) is put as it is, like any other
    record; a record over 1 MiB raises `ValueError` (Kinesis would refuse it).
    `exports/` is not read.
    """
    paths = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and "exports" not in path.relative_to(folder).parts
    )
    for path in paths:
        body = path.read_bytes()
        if body.startswith(_GZIP_MAGIC):
            body = gzip.decompress(body)
        for span in split_records([body]):
            if span.too_large:
                # Only its head was kept, and Kinesis takes no record this long.
                raise ValueError(
                    f"{path}@{span.offset}: a record of {span.length} bytes, over the 1 MiB"
                    " a Kinesis record may hold"
                )
            yield span.data


def batches(records: Iterable[bytes]) -> Iterator[list[dict[str, Any]]]:
    """PutRecords entries in order, at most `MAX_BATCH_RECORDS` and `MAX_BATCH_BYTES` each."""
    batch: list[dict[str, Any]] = []
    size = 0
    for data in records:
        key = partition_key(data)
        entry_size = len(data) + len(key.encode())
        if batch and (len(batch) >= MAX_BATCH_RECORDS or size + entry_size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append({"Data": data, "PartitionKey": key})
        size += entry_size
    if batch:
        yield batch


def stream_argument(stream: str) -> dict[str, str]:
    return {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}


def put_batch(client: Any, stream: str, entries: list[dict[str, Any]]) -> None:
    """PutRecords until every entry is accepted; RuntimeError after `MAX_ATTEMPTS` calls."""
    pending = entries
    pause = _FIRST_PAUSE_SECONDS
    for _ in range(MAX_ATTEMPTS):
        response = client.put_records(Records=pending, **stream_argument(stream))
        if not response.get("FailedRecordCount"):
            return
        # Results are in request order; only entries with an ErrorCode failed.
        pending = [
            entry
            for entry, result in zip(pending, response["Records"], strict=True)
            if "ErrorCode" in result
        ]
        time.sleep(pause)
        pause *= 2
    raise RuntimeError(f"{len(pending)} records still failing after {MAX_ATTEMPTS} PutRecords")


def put_records(client: Any, stream: str, records: Iterable[bytes]) -> int:
    """Puts every record on `stream` in order; returns how many were put."""
    count = 0
    for entries in batches(records):
        put_batch(client, stream, entries)
        count += len(entries)
    return count


def create_stream(client: Any, stream: str, shards: int) -> None:
    """Creates a provisioned stream with `shards` shards and waits until it is active."""
    client.create_stream(StreamName=stream, ShardCount=shards)
    client.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )


def kinesis_client() -> Any:
    # The default session reads endpoint, region and credentials from the standard
    # AWS configuration; nothing is passed explicitly on purpose.
    return boto3.session.Session().client("kinesis", config=RETRYING_CLIENT_CONFIG)


PROG = "python -m tools.put_on_kinesis"


def _parser() -> argparse.ArgumentParser:
    parser = FlagParser(
        prog=PROG,
        description="Put EventBridge envelopes (generated, or from a Firehose archive folder) "
        "on a Kinesis data stream with PutRecords. AWS endpoint and credentials come from the "
        "standard AWS configuration (e.g. AWS_ENDPOINT_URL).",
    )
    parser.add_argument("--stream", required=True, help="Stream name, or ARN (without --create).")
    parser.add_argument(
        "--create", action="store_true", help="Create the stream first (it must not exist)."
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=2,
        help="Shards of the stream made by --create. Default: %(default)s.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--archive", type=Path, help="A Firehose archive folder, e.g. sample/archive."
    )
    source.add_argument(
        "--generate",
        type=int,
        metavar="PAYMENTS",
        help="Generate this many payments' records (with redeliveries and malformed records).",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="Generator seed (with --generate). Default: 1."
    )
    parser.add_argument(
        "--start",
        type=utc_datetime,
        default=DEFAULT_START,
        help="Generator start: the first session's `created` (with --generate, ISO 8601). "
        "Default: %(default)s.",
    )
    parser.add_argument(
        "--hours",
        type=float,
        default=24.0,
        help="Hours over which generated sessions are created. Default: %(default)s.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.create and args.stream.startswith("arn:"):
        _parser().error("--create takes a stream name, not an ARN")
    if args.shards < 1:
        _parser().error("--shards must be at least 1")
    if args.archive is not None:
        if not args.archive.is_dir():
            _parser().error(f"--archive {args.archive} is not a folder")
        records: Iterable[bytes] = archive_records(args.archive)
    else:
        archive = generate(args.generate, args.seed, args.start, args.hours)
        records = archive.envelopes(include_malformed=True)
    try:
        client = kinesis_client()
        if args.create:
            create_stream(client, args.stream, args.shards)
        else:
            check_stream(args.stream, client)
        began = time.perf_counter()
        count = put_records(client, args.stream, records)
    except ConfigurationError as error:
        return _fail(str(error).replace("--kinesis_stream", "--stream"))
    except botocore.exceptions.NoRegionError:
        return _fail(
            f"--stream {args.stream}: no AWS region configured: set AWS_REGION (or "
            "AWS_DEFAULT_REGION, or region in the AWS config file)"
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        return _fail(f"Kinesis {args.stream}: {describe_error(error)}")
    print(
        f"put {count} records on {args.stream} in {time.perf_counter() - began:.1f}s",
        file=sys.stderr,
    )
    return 0


def _fail(message: str) -> int:
    """One line on stderr, exit 3: the stream or the endpoint is the problem, not the flags."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_INFRASTRUCTURE


if __name__ == "__main__":
    sys.exit(main())
