"""`python -m tools.runs`: the recent runs as a table, exact output."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from tests.transforms.sinks.test_run_history import STARTED, a_run
from tools import runs
from transforms.sinks.run_history import append_run


def test_lists_the_recent_runs_newest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    append_run(warehouse, a_run("a" * 32, STARTED))
    append_run(
        warehouse,
        a_run(
            "b" * 32,
            STARTED + timedelta(hours=2),
            job="streaming",
            source="stripe-events",
            exit_code=1,
            ended_at=STARTED + timedelta(hours=3, seconds=1),
            records_read=12,
            processed=10,
            skipped=1,
            dead_lettered=0,
        ),
    )
    append_run(warehouse, a_run("c" * 32, STARTED - timedelta(days=1)))

    assert runs.main(["--warehouse", warehouse, "--limit", "2"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "started (UTC)        duration  job        state  exit  read  processed  skipped"
        "  dead-lettered  written  source          run id",
        "2026-01-02 05:04:05   1:00:01  streaming  ended     1    12         10        1"
        "              0      314  stripe-events   " + "b" * 32,
        "2026-01-02 03:04:05   0:01:01  backfill   ended     0  2264       1176     1080"
        "              8      314  sample/archive  " + "a" * 32,
    ]


def test_says_so_when_no_run_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    duckdb.connect(warehouse).close()
    assert runs.main(["--warehouse", warehouse]) == 0
    assert capsys.readouterr().out == f"no runs recorded in {warehouse}\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--warehouse", "nowhere.duckdb"], "--warehouse nowhere.duckdb: no such DuckDB file"),
        (["--limit", "0"], "--limit must be at least 1, got 0"),
    ],
    ids=["missing-file", "zero-limit"],
)
def test_bad_arguments_exit_2_with_one_line(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        runs.main(arguments)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m tools.runs: error: {message}"


def test_help_exits_0_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        runs.main(["--help"])
    assert exit_info.value.code == 0
    assert "--warehouse" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
