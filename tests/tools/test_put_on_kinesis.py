"""Tests of `tools.put_on_kinesis`: the records it would put, and its one-line failures."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tools import put_on_kinesis
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


def test_without_an_aws_region_it_says_how_to_set_one_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent"))

    assert put_on_kinesis.main(["--stream", "stripe-events", "--generate", "1"]) == 3

    assert capsys.readouterr() == (
        "",
        "python -m tools.put_on_kinesis: error: --stream stripe-events: no AWS region "
        "configured: set AWS_REGION (or AWS_DEFAULT_REGION, or region in the AWS config file)\n",
    )
