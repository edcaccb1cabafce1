"""The backfill's exit status and messages when the input or the flags are wrong."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines import backfill

SAMPLE_ARCHIVE = Path(__file__).resolve().parents[2] / "sample" / "archive"


def test_a_corrupt_file_fails_the_run_but_every_other_record_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE_ARCHIVE, archive)
    good = gzip.compress(b'{"not": "an event"}\n')
    # A gzip member cut short: its first record is readable, the rest is lost.
    (archive / "2025" / "03" / "01" / "00" / "corrupt.gz").write_bytes(good + good[:12])
    warehouse = tmp_path / "warehouse.duckdb"

    code = backfill.run(["--source", str(archive), "--warehouse", str(warehouse)])

    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[-2].startswith("unreadable files: 1 ")
    assert out[-1].endswith(": holds")
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        steps = connection.execute(
            "SELECT step, reason, count(*) FROM dead_letters GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        contributions = connection.execute("SELECT count(*) FROM contributions").fetchone()
    assert steps == [
        ("decode", "invalid_event", 2),
        ("decode", "invalid_json", 4),
        ("decode", "not_an_event", 3),
        ("join_payment", "charge_missing", 6),
        ("read", "unreadable_file", 1),
    ]
    truth = json.loads((SAMPLE_ARCHIVE.parent / "truth.json").read_text())
    assert contributions == (sum(1 for p in truth["payments"] if p["charge_id"]),)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "2025-03-02", "--end", "2025-03-01"], "--start (2025-03-02 00:00:00+00:00)"),
        (["--start", "yesterday"], "not an ISO 8601 date or time: 'yesterday'"),
        (["--charge_wait_minutes", "0"], "must be greater than 0, got 0"),
        (
            ["--emails_queue_url", "http://127.0.0.1:1/q.fifo"],
            "--emails_queue_url need --sent_messages_table",
        ),
        (["--shuffle", "memory"], "argument --shuffle: invalid choice: 'memory'"),
        (["--shuffle_dir", "/nonexistent/shuffle"], "--shuffle_dir /nonexistent/shuffle is not a"),
    ],
    ids=[
        "start-after-end",
        "bad-date",
        "zero-wait",
        "queue-without-ledger",
        "unknown-shuffle",
        "missing-shuffle-dir",
    ],
)
def test_bad_flags_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        code = backfill.run(argv)
        raise SystemExit(code)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
