"""Tests of `tools.put_on_kinesis.archive_records`: the records it would put."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tools.put_on_kinesis import archive_records


def test_archive_records_puts_every_record_and_refuses_one_kinesis_would_refuse(
    tmp_path: Path,
) -> None:
    first, second = b'{"object": "event", "id": "evt_1"}', b'{"object": "event", "id": "evt_2"}'
    (tmp_path / "a.gz").write_bytes(gzip.compress(first + second))
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "e.json").write_bytes(b'{"object": "event", "id": "evt_3"}')

    assert list(archive_records(tmp_path)) == [first, second]

    large = b'{"object": "event", "pad": "' + b"x" * (1 << 20) + b'"}'
    (tmp_path / "b.json").write_bytes(large)
    with pytest.raises(ValueError, match=rf"b\.json@0: a record of {len(large)} bytes, over"):
        list(archive_records(tmp_path))
