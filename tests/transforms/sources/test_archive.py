"""Tests of the archive reader (`ReadArchive`): archives written by hand in `tmp_path` and S3."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineResult
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import DeadLetter
from tests.builders import envelope_time, eventbridge_envelope, stripe_event_document
from tests.fixtures.moto_server import MotoServer
from transforms.domain.events import StripeEvent, make_dead_letter
from transforms.sources.archive import ReadArchive, split_records
from transforms.sources.progress import PROGRESS, ProgressSnapshot

ACCOUNT = "ed_test_61RkUK"


def at(hour: int, minute: int = 0, second: int = 0, *, day: int = 5) -> datetime:
    return datetime(2024, 12, day, hour, minute, second, tzinfo=UTC)


def charge(event_id: str) -> dict[str, Any]:
    # Non-ASCII on purpose: offsets are bytes, not characters.
    return {"id": f"ch_{event_id}", "object": "charge", "amount": 500, "description": "José"}


def snapshot(event_id: str, created: datetime) -> dict[str, Any]:
    return stripe_event_document(
        event_id,
        "charge.succeeded",
        charge(event_id),
        created=int(created.timestamp()),
        livemode=False,
    )


def envelope(event_id: str, created: datetime) -> dict[str, Any]:
    return eventbridge_envelope(
        snapshot(event_id, created),
        envelope_id=f"eb-{event_id}",
        account=ACCOUNT,
        time=envelope_time(created + timedelta(seconds=1)),
    )


def encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def offsets(records: Sequence[bytes], delimiter: bytes) -> list[int]:
    positions, position = [], 0
    for data in records:
        positions.append(position)
        position += len(data) + len(delimiter)
    return positions


def write(path: Path, records: Sequence[bytes], delimiter: bytes = b"") -> list[int]:
    """Writes `records` joined by `delimiter` (gzip when the name ends in .gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = b"".join(data + delimiter for data in records)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return offsets(records, delimiter)


def expected_event(
    event_id: str, created: datetime, source: str, *, wrapped: bool = True
) -> StripeEvent:
    return StripeEvent(
        id=event_id,
        type="charge.succeeded",
        created=int(created.timestamp()),
        livemode=False,
        api_version="2024-06-20",
        account=ACCOUNT if wrapped else None,
        data_object=charge(event_id),
        previous_attributes=None,
        source=source,
        arrival=created + timedelta(seconds=1) if wrapped else None,
    )


def run(
    source: str,
    events: Iterable[StripeEvent],
    dead_letters: Iterable[DeadLetter],
    **bounds: Any,
) -> PipelineResult:
    pipeline = test_pipeline.TestPipeline(runner=FnApiRunner())
    result = pipeline | "ReadArchive" >> ReadArchive(source, **bounds)
    assert_that(result.events, equal_to(list(events)), label="CheckEvents")
    assert_that(result.dead_letters, equal_to(list(dead_letters)), label="CheckDeadLetters")
    outcome = pipeline.run()
    outcome.wait_until_finish()
    return outcome


def counters(outcome: PipelineResult) -> dict[str, int]:
    results = outcome.metrics().query(MetricsFilter().with_namespace("stripe_events"))
    return {counter.key.metric.name: counter.committed for counter in results["counters"]}


def test_reads_gzip_and_plain_delimited_and_undelimited_files(tmp_path: Path) -> None:
    gz = tmp_path / "2024/12/05/23/stream-1-2024-12-05-23-00-00-uuid.gz"
    gz_records = [encode(envelope(f"evt_gz{i}", at(23, i))) for i in range(3)]
    gz_offsets = write(gz, gz_records)  # Firehose's default: no delimiter
    plain = tmp_path / "2024/12/05/22/stream-1-2024-12-05-22-00-00-uuid"
    plain_records = [encode(envelope(f"evt_nl{i}", at(22, i))) for i in range(2)]
    plain_offsets = write(plain, plain_records, b"\n")
    mixed = tmp_path / "mixed.json"
    mixed_records = [encode(envelope(f"evt_mx{i}", at(21, i))) for i in range(3)]
    mixed.write_bytes(mixed_records[0] + mixed_records[1] + b"\r\n" + mixed_records[2] + b"\n")
    mixed_offsets = [0, len(mixed_records[0]), len(mixed_records[0]) + len(mixed_records[1]) + 2]

    outcome = run(
        str(tmp_path),
        [expected_event(f"evt_gz{i}", at(23, i), f"{gz}@{gz_offsets[i]}") for i in range(3)]
        + [expected_event(f"evt_nl{i}", at(22, i), f"{plain}@{plain_offsets[i]}") for i in range(2)]
        + [
            expected_event(f"evt_mx{i}", at(21, i), f"{mixed}@{mixed_offsets[i]}") for i in range(3)
        ],
        [],
    )

    assert counters(outcome) == {"files_read": 3, "records_read": 8}


def test_truncated_record_in_undelimited_gzip_is_one_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "2024/12/05/23/stream.gz"
    records = [encode(envelope(f"evt_{i}", at(23, i))) for i in range(5)]
    # Cut record 2 inside a string, as a lost write would: the next record
    # starts right after the cut, with no delimiter.
    cut = records[2].index(b'"evt_2"') + 4
    records[2] = records[2][:cut]
    positions = write(path, records)

    outcome = run(
        str(tmp_path),
        [expected_event(f"evt_{i}", at(23, i), f"{path}@{positions[i]}") for i in (0, 1, 3, 4)],
        [
            make_dead_letter(
                step="decode",
                reason="invalid_json",
                error=f"not JSON: {json_error(records[2])}",
                raw=records[2].decode(),
                source=f"{path}@{positions[2]}",
            )
        ],
    )

    assert counters(outcome) == {
        "files_read": 1,
        "records_read": 5,
        "dead_lettered_invalid_json": 1,
    }


def json_error(data: bytes) -> str:
    try:
        json.loads(data)
    except json.JSONDecodeError as error:
        return str(error)
    raise AssertionError("expected invalid JSON")


def test_garbage_line_is_dead_lettered_up_to_the_newline(tmp_path: Path) -> None:
    path = tmp_path / "lines.json"
    first, second = encode(envelope("evt_1", at(1))), encode(envelope("evt_2", at(2)))
    path.write_bytes(first + b"\nnot json at all\n" + second + b"\n")

    run(
        str(tmp_path),
        [
            expected_event("evt_1", at(1), f"{path}@0"),
            expected_event("evt_2", at(2), f"{path}@{len(first) + 17}"),
        ],
        [
            make_dead_letter(
                step="decode",
                reason="invalid_json",
                error="not JSON: Expecting value: line 1 column 1 (char 0)",
                raw="not json at all",
                source=f"{path}@{len(first) + 1}",
            )
        ],
    )


def test_reads_bare_events_exported_from_the_api(tmp_path: Path) -> None:
    path = tmp_path / "exports/events-2024-12-05.json"
    records = [encode(snapshot(f"evt_{i}", at(12, i))) for i in range(2)]
    positions = write(path, records, b"\n")

    run(
        str(tmp_path / "exports"),
        [
            expected_event(f"evt_{i}", at(12, i), f"{path}@{positions[i]}", wrapped=False)
            for i in range(2)
        ],
        [],
    )


def test_reads_only_files_matching_a_glob(tmp_path: Path) -> None:
    wanted = tmp_path / "2024/12/05/10/a.gz"
    write(wanted, [encode(envelope("evt_wanted", at(10)))])
    write(tmp_path / "2024/12/05/10/a.json", [encode(envelope("evt_other", at(10)))])

    run(
        str(tmp_path / "2024/*/*/*/*.gz"), [expected_event("evt_wanted", at(10), f"{wanted}@0")], []
    )


def test_prunes_hours_outside_the_arrival_window_and_filters_created_exactly(
    tmp_path: Path,
) -> None:
    start, end = at(10), at(12)
    # Every record below is created inside [start, end): only its file's hour
    # decides whether it is read.
    in_margin_before = tmp_path / "2024/12/05/09/in-margin-before.gz"
    write(in_margin_before, [encode(envelope("evt_margin_before", at(10, 30)))])
    before_margin = tmp_path / "2024/12/05/08/before-margin.gz"
    write(before_margin, [encode(envelope("evt_pruned_before", at(11)))])
    in_margin_after = tmp_path / "2024/12/08/12/in-margin-after.gz"
    write(in_margin_after, [encode(envelope("evt_margin_after", at(11, 59)))])
    after_margin = tmp_path / "2024/12/08/13/after-margin.gz"
    write(after_margin, [encode(envelope("evt_pruned_after", at(11, 30)))])
    # No hour folder: always read, so the exact `created` filter decides.
    edges = tmp_path / "unsorted/edges.json"
    edge_records = [
        encode(envelope("evt_before_start", at(9, 59, 59))),
        encode(envelope("evt_at_start", at(10))),
        encode(envelope("evt_last_second", at(11, 59, 59))),
        encode(envelope("evt_at_end", at(12))),
    ]
    edge_offsets = write(edges, edge_records, b"\n")
    PROGRESS.reset()

    outcome = run(
        str(tmp_path),
        [
            expected_event("evt_margin_before", at(10, 30), f"{in_margin_before}@0"),
            expected_event("evt_margin_after", at(11, 59), f"{in_margin_after}@0"),
            expected_event("evt_at_start", at(10), f"{edges}@{edge_offsets[1]}"),
            expected_event("evt_last_second", at(11, 59, 59), f"{edges}@{edge_offsets[2]}"),
        ],
        [],
        start=start,
        end=end,
    )

    assert counters(outcome) == {
        "files_read": 3,
        "files_skipped_outside_time_range": 2,
        "records_read": 6,
        "skipped_outside_time_range": 2,
    }
    # The progress counts what is to be read: the pruned files are not in it.
    size = sum(path.stat().st_size for path in (in_margin_before, in_margin_after, edges))
    assert PROGRESS.snapshot() == ProgressSnapshot(3, size, 3, size, 6)


def test_a_narrow_margin_prunes_more(tmp_path: Path) -> None:
    late = tmp_path / "2024/12/05/13/late.gz"
    write(late, [encode(envelope("evt_late_arrival", at(11)))])

    outcome = run(
        str(tmp_path), [], [], start=at(10), end=at(12), arrival_margin_after=timedelta(0)
    )

    assert counters(outcome) == {"files_skipped_outside_time_range": 1}


def gzip_stream(*parts: bytes) -> bytes:
    """An unfinished gzip stream, flushed after each part so that a cut after a part is exact."""
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    return b"".join(
        compressor.compress(part) + compressor.flush(zlib.Z_SYNC_FLUSH) for part in parts
    )


def test_truncated_gzip_keeps_what_was_read_and_dead_letters_the_file(tmp_path: Path) -> None:
    records = [encode(envelope(f"evt_{i}", at(23, i))) for i in range(3)]
    half = len(records[2]) // 2
    # The stream stops in the middle of record 2 without gzip's trailer.
    stream = gzip_stream(records[0] + records[1], records[2][:half])
    path = tmp_path / "2024/12/05/23/truncated.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(stream)

    outcome = run(
        str(tmp_path),
        [
            expected_event("evt_0", at(23, 0), f"{path}@0"),
            expected_event("evt_1", at(23, 1), f"{path}@{len(records[0])}"),
        ],
        [
            make_dead_letter(
                step="read",
                reason="unreadable_file",
                error="EOFError: gzip stream ends before its end marker",
                raw=records[2][:half].decode("utf-8", errors="replace"),
                source=f"{path}@{len(records[0]) + len(records[1])}",
            )
        ],
    )

    assert counters(outcome) == {
        "files_read": 1,
        "records_read": 2,
        "files_unreadable": 1,
    }


def test_corrupt_gzip_is_a_dead_letter_and_other_files_are_read(tmp_path: Path) -> None:
    corrupt = tmp_path / "2024/12/05/23/corrupt.gz"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 32)
    try:
        zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(corrupt.read_bytes())
    except zlib.error as error:
        zlib_message = str(error)
    good = tmp_path / "2024/12/05/23/good.gz"
    write(good, [encode(envelope("evt_good", at(23)))])

    run(
        str(tmp_path),
        [expected_event("evt_good", at(23), f"{good}@0")],
        [
            make_dead_letter(
                step="read",
                reason="unreadable_file",
                error=f"error: {zlib_message}",
                raw="",
                source=f"{corrupt}@0",
            )
        ],
    )


def test_rejects_naive_or_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ReadArchive("/archive", start=datetime(2024, 12, 5))
    with pytest.raises(ValueError, match="before end"):
        ReadArchive("/archive", start=at(12), end=at(10))


@pytest.mark.parametrize("chunk", [1, 7, 4096], ids=lambda size: f"chunk-{size}")
def test_split_records_finds_the_same_spans_whatever_the_chunk_size(chunk: int) -> None:
    first, second = encode(envelope("evt_1", at(1))), encode(snapshot("evt_2", at(2)))
    broken = first[:40]
    data = first + broken + second + b"\n [1] 2\n"
    chunks = (data[i : i + chunk] for i in range(0, len(data), chunk))

    spans = [(s.offset, s.data, s.decodable) for s in split_records(chunks)]

    start_of_tail = len(first) + len(broken) + len(second) + 2
    assert spans == [
        (0, first, True),
        (len(first), broken, False),
        (len(first) + len(broken), second, True),
        (start_of_tail, b"[1]", True),
        (start_of_tail + 4, b"2", True),
    ]


def test_reads_an_s3_prefix_through_the_configured_endpoint(moto_server: MotoServer) -> None:
    s3 = boto3.client("s3")  # configured by the environment only, as Beam's client is
    s3.create_bucket(
        Bucket="archive", CreateBucketConfiguration={"LocationConstraint": moto_server.region}
    )
    records = [encode(envelope(f"evt_{i}", at(23, i))) for i in range(2)]
    s3.put_object(
        Bucket="archive",
        Key="stripe/2024/12/05/23/stream-1-2024-12-05-23-00-00-uuid.gz",
        Body=gzip.compress(b"".join(records)),
    )
    s3.put_object(
        Bucket="archive",
        Key="stripe/exports/bare.json",
        Body=encode(snapshot("evt_bare", at(1))) + b"\n",
    )
    # Shares the key prefix but not the folder: must not be read.
    s3.put_object(
        Bucket="archive", Key="stripe-old/x.json", Body=encode(snapshot("evt_old", at(1)))
    )
    gz_path = "s3://archive/stripe/2024/12/05/23/stream-1-2024-12-05-23-00-00-uuid.gz"

    run(
        "s3://archive/stripe",
        [
            expected_event("evt_0", at(23, 0), f"{gz_path}@0"),
            expected_event("evt_1", at(23, 1), f"{gz_path}@{len(records[0])}"),
            expected_event(
                "evt_bare", at(1), "s3://archive/stripe/exports/bare.json@0", wrapped=False
            ),
        ],
        [],
    )
