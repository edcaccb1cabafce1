"""Command line: `python -m tools.generate_archive --out DIR --payments N --seed S`."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pipelines.flags import FlagParser
from tools.generate_archive.archive import generate
from tools.generate_archive.firehose import write_archive
from tools.generate_archive.model import DEFAULT_START, DEFAULT_STREAM


def _parse_start(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


PROG = "python -m tools.generate_archive"


def _parser() -> argparse.ArgumentParser:
    parser = FlagParser(
        prog=PROG,
        description="Write a deterministic Stripe->EventBridge->Firehose archive and its truth.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="Firehose prefix to write into (objects under YYYY/MM/dd/HH/): a new or empty "
        "folder, unless --force.",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="Delete everything in --out first, so the folder holds exactly this archive and "
        "the truth matches it. Without it a non-empty --out is refused.",
    )
    parser.add_argument(
        "--payments",
        type=int,
        required=True,
        help="Number of one-off contributions to simulate (~7 events each).",
    )
    parser.add_argument(
        "--seed",
        type=int,
        required=True,
        help="Random seed; the same seed and arguments give the same bytes.",
    )
    parser.add_argument(
        "--start",
        type=_parse_start,
        default=DEFAULT_START,
        help="UTC start of the payments, ISO 8601 (default 2025-03-01T00:00:00Z).",
    )
    parser.add_argument(
        "--hours",
        type=float,
        default=24.0,
        help="Hours over which sessions are created (default 24).",
    )
    parser.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="Where to write truth.json (default: <parent of --out>/truth.json).",
    )
    parser.add_argument(
        "--buffer_seconds",
        type=int,
        default=300,
        help="Firehose buffering interval: an object spans at most this many "
        "seconds of arrivals (Firehose allows 0-900; default 300).",
    )
    parser.add_argument(
        "--stream",
        default=DEFAULT_STREAM,
        help=f"Firehose delivery stream name in object keys (default {DEFAULT_STREAM}).",
    )
    return parser


def _ready_out(out: Path, force: bool) -> str | None:
    """Empties `out` when forced; the error when it cannot be written into, else None."""
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file, not a folder"
    if not out.exists() or not any(out.iterdir()):
        return None
    if not force:
        return (
            f"--out {out} is not empty: the archive would mix with what is there and its "
            "truth would not match; give an empty folder, or --force to delete its contents"
        )
    shutil.rmtree(out)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    error = _ready_out(args.out, args.force)
    if error is not None:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    archive = generate(args.payments, args.seed, args.start, args.hours)
    summary = write_archive(
        archive,
        args.out,
        stream=args.stream,
        truth_path=args.truth,
        buffer_seconds=args.buffer_seconds,
    )
    elapsed = time.perf_counter() - began
    print(
        f"wrote {summary.records} records ({archive.truth.counts['distinct_events']} distinct "
        f"events) in {summary.objects} objects under {summary.out_dir}, truth at "
        f"{summary.truth_path}, in {elapsed:.1f}s",
        file=sys.stderr,
    )
    return 0
