"""The Firehose layout: records batched into hour-foldered objects, plus the API export."""

from __future__ import annotations

import gzip
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.generate_archive.archive import Archive
from tools.generate_archive.model import DEFAULT_STREAM, ArrivedRecord, random_uuid
from tools.generate_archive.truth import write_truth


@dataclass(frozen=True)
class WriteSummary:
    """What `write_archive` wrote: paths and object counts by style."""

    out_dir: Path
    truth_path: Path
    objects: int
    newline_objects: int
    concatenated_objects: int
    gzip_objects: int
    plain_objects: int
    records: int
    bytes_written: int

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("out_dir", "truth_path")}


def write_archive(
    archive: Archive,
    out_dir: Path,
    *,
    stream: str = DEFAULT_STREAM,
    truth_path: Path | None = None,
    buffer_seconds: int = 300,
    buffer_bytes: int = 4 * 1024 * 1024,
) -> WriteSummary:
    """Write the archive under `out_dir` as Firehose would, plus exports/ and truth.json.

    An object closes when its next record arrived `buffer_seconds` or more after its
    oldest record, or when it reaches `buffer_bytes` uncompressed (Firehose's buffering
    hints). Files are written as they close, so memory stays bounded. `truth_path`
    defaults to `out_dir.parent / "truth.json"`. Existing files are overwritten, other
    files in `out_dir` are left alone.
    """
    truth_path = truth_path or out_dir.parent / "truth.json"
    rng = random.Random(f"{archive.seed}:writer")
    counts: Counter[str] = Counter()
    batch: list[ArrivedRecord] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if not batch:
            return
        oldest = batch[0].arrival_ms // 1000
        stamp = datetime.fromtimestamp(oldest, tz=UTC)
        newline = rng.random() < 0.4 or any(r.malformed for r in batch)
        compressed = rng.random() < 0.85
        name = f"{stream}-1-{stamp:%Y-%m-%d-%H-%M-%S}-{random_uuid(rng)}" + (
            ".gz" if compressed else ""
        )
        body = (
            b"".join(r.data + b"\n" for r in batch) if newline else b"".join(r.data for r in batch)
        )
        if compressed:
            body = gzip.compress(body, compresslevel=5, mtime=0)
        path = out_dir / f"{stamp:%Y/%m/%d/%H}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        counts["objects"] += 1
        counts["newline_objects" if newline else "concatenated_objects"] += 1
        counts["gzip_objects" if compressed else "plain_objects"] += 1
        counts["records"] += len(batch)
        counts["bytes_written"] += len(body)
        batch.clear()
        size = 0

    for rec in archive.records():
        if batch and (
            rec.arrival_ms - batch[0].arrival_ms >= buffer_seconds * 1000 or size >= buffer_bytes
        ):
            flush()
        batch.append(rec)
        size += len(rec.data)
    flush()

    exports = archive.exports()
    if exports:
        stamp = datetime.fromisoformat(archive.truth.generator["start"])
        export_path = out_dir / "exports" / f"stripe-events-export-{stamp:%Y-%m-%d}.jsonl"
        export_path.parent.mkdir(parents=True, exist_ok=True)
        export_path.write_bytes(b"".join(line + b"\n" for line in exports))

    summary = WriteSummary(
        out_dir=out_dir,
        truth_path=truth_path,
        objects=counts["objects"],
        newline_objects=counts["newline_objects"],
        concatenated_objects=counts["concatenated_objects"],
        gzip_objects=counts["gzip_objects"],
        plain_objects=counts["plain_objects"],
        records=counts["records"],
        bytes_written=counts["bytes_written"],
    )
    write_truth(archive.truth, truth_path, summary.as_json())
    return summary
