"""Tests of the archive reader (`ReadArchive`): archives written by hand in `tmp_path` and S3."""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import tracemalloc
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
from transforms.sources.archive import ReadArchive, _ChunkReader, split_records
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
    # Summed by name, as the run summary does: `records_read` counts in two steps.
    values: dict[str, int] = {}
    for counter in results["counters"]:
        name = counter.key.metric.name
        values[name] = values.get(name, 0) + counter.committed
    return values


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


def spans_of(data: bytes, **limits: int) -> list[tuple[int, int, bytes, bool, bool]]:
    return [
        (s.offset, s.length, s.data, s.decodable, s.too_large)
        for s in split_records([data], **limits)
    ]


def test_an_envelope_missing_its_last_brace_is_one_stretch_and_its_detail_is_not_read_bare() -> (
    None
):
    first, broken, last = (encode(envelope(f"evt_{i}", at(1, i))) for i in range(3))
    broken = broken[:-1]
    # `detail` comes last and is whole: only the envelope is open.
    assert broken.endswith(b'"type": "charge.succeeded"}')

    for delimiter in (b"", b"\n"):
        data = delimiter.join([first, broken, last])
        step = len(delimiter)
        assert spans_of(data) == [
            (0, len(first), first, True, False),
            (len(first) + step, len(broken), broken, False, False),
            (len(first) + len(broken) + 2 * step, len(last), last, True, False),
        ]


def test_a_stray_quote_before_an_envelope_is_one_byte_and_the_envelope_is_whole() -> None:
    first, second = encode(envelope("evt_1", at(1))), encode(envelope("evt_2", at(2)))

    assert spans_of(first + b'"' + second + b'\n"x" 7') == [
        (0, len(first), first, True, False),
        (len(first), 1, b'"', False, False),
        (len(first) + 1, len(second), second, True, False),
        # Values that are not objects still stand when whitespace ends them.
        (len(first) + len(second) + 2, 3, b'"x"', True, False),
        (len(first) + len(second) + 6, 1, b"7", True, False),
    ]


@pytest.mark.parametrize(
    "description_bytes", [1_500_000, 5 << 20], ids=["1.5-MB-record", "5-MB-record"]
)
def test_a_record_over_the_limit_is_one_too_large_span(description_bytes: int) -> None:
    first, last = encode(envelope("evt_1", at(1))), encode(envelope("evt_3", at(3)))
    document = envelope("evt_2", at(2))
    # Brackets and an escaped quote inside the long string must not end it.
    document["detail"]["data"]["object"]["description"] = '}]"\\' + "x" * description_bytes
    large = encode(document)

    assert spans_of(first + large + b"\n" + last) == [
        (0, len(first), first, True, False),
        (len(first), len(large), large[:4096], False, True),
        (len(first) + len(large) + 1, len(last), last, True, False),
    ]


def test_the_record_limit_is_inclusive_and_an_unclosed_large_value_runs_to_the_end() -> None:
    record = b'{"object": "event", "id": "evt_1", "pad": "' + b"x" * 50 + b'"}'
    limit = len(record)

    assert spans_of(record + record, max_record_bytes=limit) == [
        (0, limit, record, True, False),
        (limit, limit, record, True, False),
    ]
    assert spans_of(record + record, max_record_bytes=limit - 1) == [
        (0, limit, record[:4096], False, True),
        (limit, limit, record[:4096], False, True),
    ]
    unclosed = record[:-2] + b"x" * 100
    assert spans_of(unclosed, max_record_bytes=limit) == [(0, len(unclosed), unclosed, False, True)]


def test_a_file_with_broken_records_keeps_every_good_record_and_letters_each_broken_once(
    tmp_path: Path,
) -> None:
    records = [encode(envelope(f"evt_{i}", at(23, i))) for i in range(5)]
    missing_brace = records[1][:-1]
    document = envelope("evt_large", at(23, 30))
    document["detail"]["data"]["object"]["description"] = "x" * (5 << 20)
    large = encode(document)
    path = tmp_path / "2024/12/05/23/broken.gz"
    content = [records[0], missing_brace, records[2], b'"', records[3], large, records[4]]
    positions = write(path, content)

    outcome = run(
        str(tmp_path),
        [
            expected_event(f"evt_{i}", at(23, i), f"{path}@{positions[at_]}")
            for i, at_ in ((0, 0), (2, 2), (3, 4), (4, 6))
        ],
        [
            make_dead_letter(
                step="decode",
                reason="invalid_json",
                error=f"not JSON: {json_error(missing_brace)}",
                raw=missing_brace.decode(),
                source=f"{path}@{positions[1]}",
            ),
            make_dead_letter(
                step="decode",
                reason="invalid_json",
                error="not JSON: Unterminated string starting at: line 1 column 1 (char 0)",
                raw='"',
                source=f"{path}@{positions[3]}",
            ),
            make_dead_letter(
                step="read",
                reason="record_too_large",
                error=f"{len(large)} bytes, over the 1048576 byte limit (raw: the first 4096)",
                raw=large[:4096].decode(),
                source=f"{path}@{positions[5]}",
                event_id="evt_large",
            ),
        ],
    )

    assert counters(outcome) == {
        "files_read": 1,
        "records_read": 7,
        "dead_lettered_invalid_json": 2,
        "dead_lettered_record_too_large": 1,
    }


def whitespace_bomb(decompressed_mib: int) -> bytes:
    """A gzip file of nothing but spaces: about 1,000 times smaller than it inflates."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(decompressed_mib)) + packer.flush()


def test_a_gzip_bomb_is_read_in_bounded_memory() -> None:
    bomb = whitespace_bomb(64)
    assert len(bomb) < 80 << 10
    tracemalloc.start()
    try:
        reader = _ChunkReader(lambda: io.BytesIO(bomb))
        spans = list(split_records(reader))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (spans, reader.error) == ([], None)
    # About two read chunks of text (1 MiB each) and one of inflated bytes.
    assert peak < 8 << 20


def test_a_file_past_the_object_limit_is_read_up_to_it_then_dead_lettered(tmp_path: Path) -> None:
    good = tmp_path / "2024/12/05/23/good.gz"
    write(good, [encode(envelope("evt_good", at(23)))])
    first = encode(envelope("evt_first", at(23, 1)))
    bomb = tmp_path / "2024/12/05/23/bomb.gz"
    bomb.write_bytes(gzip.compress(first) + whitespace_bomb(24))
    limit = 16 << 20

    outcome = run(
        str(tmp_path),
        [
            expected_event("evt_good", at(23), f"{good}@0"),
            expected_event("evt_first", at(23, 1), f"{bomb}@0"),
        ],
        [
            make_dead_letter(
                step="read",
                reason="object_too_large",
                error=f"ObjectTooLarge: decompresses to more than {limit} bytes",
                raw="",
                # Where the records read end, as for an unreadable file.
                source=f"{bomb}@{len(first)}",
            )
        ],
        max_object_bytes=limit,
    )

    assert counters(outcome) == {"files_read": 2, "records_read": 2, "files_too_large": 1}


def test_links_are_followed_inside_the_source_only_and_special_files_are_refused(
    tmp_path: Path,
) -> None:
    # Glob characters, spaces and non-ASCII in folder names are only names.
    source = tmp_path / "arch[1] * ? é"
    hour = source / "2024/12/05/23"
    real = hour / "a.gz"
    write(real, [encode(envelope("evt_a", at(23)))])
    odd = source / "sub [x]/b?.json"
    write(odd, [encode(envelope("evt_b", at(23, 1)))])
    outside = tmp_path / "outside"
    write(outside / "secret.json", [b'{"secret": "S3cret-outside"}'])
    write(outside / "folder/c.json", [encode(envelope("evt_c", at(23, 2)))])
    (source / "latest").symlink_to(hour)  # inside: read, and only once
    (source / "linked.json").symlink_to(real)  # the same file: read once
    (source / "secret.json").symlink_to(outside / "secret.json")
    (source / "elsewhere").symlink_to(outside / "folder")
    (source / "dangling.gz").symlink_to(source / "missing.gz")
    os.mkfifo(source / "fifo.gz")
    listener = socket.socket(socket.AF_UNIX)
    try:
        os.chdir(source)  # a socket's path is limited to about 100 bytes
        listener.bind("socket.gz")
    finally:
        os.chdir(tmp_path)

    def refused(name: str, reason: str, error: str) -> DeadLetter:
        return make_dead_letter(
            step="read",
            reason=reason,
            error=f"not read: {error}",
            raw="",
            source=str(source / name),
        )

    outcome = run(
        str(source),
        [
            expected_event("evt_a", at(23), f"{real}@0"),
            expected_event("evt_b", at(23, 1), f"{odd}@0"),
        ],
        [
            refused("dangling.gz", "not_a_regular_file", "a symbolic link to nothing"),
            refused("elsewhere", "symlink_outside_source", "a symbolic link out of the source"),
            refused("fifo.gz", "not_a_regular_file", "a FIFO, not a regular file"),
            refused("secret.json", "symlink_outside_source", "a symbolic link out of the source"),
            refused("socket.gz", "not_a_regular_file", "a socket, not a regular file"),
        ],
    )
    listener.close()

    assert counters(outcome) == {
        "files_read": 2,
        "records_read": 2,
        "files_refused_not_a_regular_file": 3,
        "files_refused_symlink_outside_source": 2,
    }


def test_a_glob_reports_only_the_refused_files_it_would_take(tmp_path: Path) -> None:
    hour = tmp_path / "2024/12/05/23"
    hour.mkdir(parents=True)
    os.mkfifo(hour / "taken.gz")
    os.mkfifo(hour / "other.json")
    (tmp_path / "outside").mkdir()
    (tmp_path / "2024/12/06").symlink_to(tmp_path / "outside")
    (tmp_path / "2024/elsewhere").symlink_to(tmp_path / "outside")  # `*` takes it: 2024/*/*/*/
    (tmp_path / "2024/12/05/23/deeper").symlink_to(tmp_path / "outside")  # too deep

    outcome = run(
        str(tmp_path / "2024/*/*/*/*.gz"),
        [],
        [
            make_dead_letter(
                step="read",
                reason="symlink_outside_source",
                error="not read: a symbolic link out of the source",
                raw="",
                source=str(tmp_path / "2024/12/06"),
            ),
            make_dead_letter(
                step="read",
                reason="symlink_outside_source",
                error="not read: a symbolic link out of the source",
                raw="",
                source=str(tmp_path / "2024/elsewhere"),
            ),
            make_dead_letter(
                step="read",
                reason="not_a_regular_file",
                error="not read: a FIFO, not a regular file",
                raw="",
                source=str(hour / "taken.gz"),
            ),
        ],
    )

    assert counters(outcome) == {
        "files_refused_not_a_regular_file": 1,
        "files_refused_symlink_outside_source": 2,
    }


def test_split_records_hands_on_the_document_it_parsed_and_none_for_bytes_not_utf8() -> None:
    good = b'{"id": "evt_1", "object": "event", "note": "caf\xc3\xa9"}'
    not_utf8 = b'{"id": "evt_2", "object": "event", "note": "caf\xe9"}'
    spans = list(split_records([good + b"\n" + not_utf8 + b"\n"]))
    assert [(s.data, s.decodable, s.parsed) for s in spans] == [
        (good, True, {"id": "evt_1", "object": "event", "note": "café"}),
        (not_utf8, True, None),
    ]
