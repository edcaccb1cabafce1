"""Reading a record letter's input again: from its raw text, an archive offset, or Kinesis."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from schemas.records import DeadLetter
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.sinks import unique
from tools.put_on_kinesis import create_stream, kinesis_client
from transforms.domain.events import SourceRecord, make_dead_letter
from transforms.sources.archive import parse_archive_source, read_record_at
from transforms.sources.kinesis.client import parse_kinesis_source
from transforms.sources.redrive import reread_records

RECORDS = [b'{"id": "a", "object": "event"}', b'{"id": "b"}', b"not json at all"]


def _letter(source: str, *, step: str = "decode", raw: str = "[redacted]") -> DeadLetter:
    return make_dead_letter(step=step, reason="invalid_json", error="e", raw=raw, source=source)


@pytest.fixture
def archive_file(tmp_path: Path) -> tuple[Path, list[int]]:
    """A gzip file of three records, concatenated with no delimiter, and their offsets."""
    path = tmp_path / "2024" / "12" / "05" / "23" / "f.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b"".join(RECORDS)))
    offsets = [sum(len(r) for r in RECORDS[:i]) for i in range(len(RECORDS))]
    return path, offsets


def test_read_record_at_returns_the_one_record_at_each_offset(
    archive_file: tuple[Path, list[int]],
) -> None:
    path, offsets = archive_file
    assert [read_record_at(str(path), offset) for offset in offsets] == RECORDS
    assert read_record_at(str(path), offsets[1] + 1) is None  # no record starts there


@pytest.mark.parametrize(
    ("source", "parsed"),
    [
        pytest.param("/a/b.gz@12", ("/a/b.gz", 12), id="local"),
        pytest.param("s3://bucket/p/x@y.gz@0", ("s3://bucket/p/x@y.gz", 0), id="s3-at-in-name"),
        pytest.param("/a/b.gz", None, id="no-offset"),
        pytest.param("payment_intent:pi_1", None, id="payment"),
        pytest.param("kinesis:s/shardId-0/1@2", None, id="kinesis"),
    ],
)
def test_parse_archive_source(source: str, parsed: tuple[str, int] | None) -> None:
    assert parse_archive_source(source) == parsed


@pytest.mark.parametrize(
    ("source", "parsed"),
    [
        pytest.param("kinesis:events/shardId-000/495", ("events", "shardId-000", "495"), id="name"),
        pytest.param(
            "kinesis:arn:aws:kinesis:eu-west-1:1:stream/events/shardId-1/7",
            ("arn:aws:kinesis:eu-west-1:1:stream/events", "shardId-1", "7"),
            id="arn",
        ),
        pytest.param("kinesis:events", None, id="no-position"),
        pytest.param("/a/b.gz@1", None, id="archive"),
    ],
)
def test_parse_kinesis_source(source: str, parsed: tuple[str, str, str] | None) -> None:
    assert parse_kinesis_source(source) == parsed


def test_reread_takes_raw_only_for_decode_letters_and_reads_others_from_the_file(
    archive_file: tuple[Path, list[int]],
) -> None:
    path, offsets = archive_file
    decode = _letter(f"{path}@{offsets[2]}", raw="not json at all")
    classify = _letter(f"{path}@{offsets[0]}", step="classify", raw='{"summary": 1}')
    gone = _letter(f"{path.parent}/missing.gz@0", step="classify")
    nowhere = _letter("nowhere", step="classify")

    reread = reread_records([decode, classify, gone, nowhere], from_raw=True)

    assert [record for _, record in reread.records] == [
        SourceRecord(data=b"not json at all", source=decode.source),
        SourceRecord(data=RECORDS[0], source=classify.source),
    ]
    assert reread.unreadable == (gone, nowhere)


def test_reread_reads_a_kinesis_record_at_its_sequence_number(moto_server: MotoServer) -> None:
    client = kinesis_client()
    stream = unique("redrive")
    create_stream(client, stream, 1)
    first = client.put_record(StreamName=stream, Data=b'{"first": 1}', PartitionKey="k1")
    second = client.put_record(StreamName=stream, Data=b'{"second": 2}', PartitionKey="k2")
    letter = _letter(f"kinesis:{stream}/{second['ShardId']}/{second['SequenceNumber']}")
    missing = _letter(f"kinesis:{unique('no-such-stream')}/shardId-000000000000/1")

    reread = reread_records([letter, missing], from_raw=False, kinesis=lambda: client)

    assert [(r.data, r.source) for _, r in reread.records] == [(b'{"second": 2}', letter.source)]
    assert reread.unreadable == (missing,)
    assert first["SequenceNumber"] != second["SequenceNumber"]
