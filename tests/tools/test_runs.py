"""`python -m tools.runs`: the recent runs as a table, exact output."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from tests.fixtures.bigquery import without_google_credentials
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
        "started (UTC)        duration  job        exit  read  processed  skipped"
        "  dead-lettered  written  source          run id",
        "2026-01-02 05:04:05   1:00:01  streaming     1    12         10        1"
        "              0      314  stripe-events   " + "b" * 32,
        "2026-01-02 03:04:05   0:01:01  backfill      0  2264       1176     1080"
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
        (["--limit", "0"], "--limit must be at least 1, got 0"),
        (
            ["--warehouse", "bigquery:p"],
            "--warehouse 'bigquery:p': expected bigquery:PROJECT.DATASET",
        ),
    ],
    ids=["zero-limit", "no-dataset"],
)
def test_bad_arguments_exit_2_with_one_line(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        runs.main(arguments)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m tools.runs: error: {message}"


def test_a_missing_duckdb_warehouse_exits_3_in_one_line_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = tmp_path / "nowhere.duckdb"
    assert runs.main(["--warehouse", str(warehouse)]) == 3
    captured = capsys.readouterr()
    assert (
        captured.err
        == f"python -m tools.runs: error: --warehouse {warehouse}: no such DuckDB file\n"
    )
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


ROOT = Path(__file__).resolve().parents[2]
NO_CREDENTIALS = (
    "python -m tools.runs: error: --warehouse bigquery:p.d: no Google credentials ({found}): "
    "give application default credentials: GOOGLE_APPLICATION_CREDENTIALS naming a key file, "
    "`gcloud auth application-default login`, or a service account on Google Cloud"
)


@pytest.mark.parametrize(
    ("key_file", "found"),
    [
        pytest.param(True, "File {tmp}/absent-key.json was not found.", id="missing-key-file"),
        pytest.param(
            False,
            "Your default credentials were not found. To set up Application Default "
            "Credentials, see https://cloud.google.com/docs/authentication/external/set-up-adc "
            "for more information.",
            id="no-metadata-server",
        ),
    ],
)
def test_bigquery_without_credentials_is_exit_3_in_one_line(
    key_file: bool, found: str, tmp_path: Path
) -> None:
    # A child process: the emulator fixture, once started, gives this one anonymous credentials.
    done = subprocess.run(
        [sys.executable, "-m", "tools.runs", "--warehouse", "bigquery:p.d"],
        cwd=ROOT,
        env=without_google_credentials(tmp_path, key_file=key_file),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr.splitlines() == [NO_CREDENTIALS.format(found=found.format(tmp=tmp_path))]


def test_a_locked_duckdb_file_is_exit_3_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    append_run(warehouse, a_run("a" * 32, STARTED))
    # A job writing the warehouse holds its lock; another process cannot open it.
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({warehouse!r}); "
         "print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert runs.main(["--warehouse", warehouse]) == 3
    finally:
        holder.communicate("", timeout=30)
    assert capsys.readouterr().err == (
        f"python -m tools.runs: error: --warehouse {warehouse}: IOException: IO Error: Could not "
        f'set lock on file "{warehouse}": Conflicting lock is held in '
        f"{os.path.realpath(sys.executable)} (PID {holder.pid}). See also "
        "https://duckdb.org/docs/stable/connect/concurrency\n"
    )


def test_help_exits_0_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        runs.main(["--help"])
    assert exit_info.value.code == 0
    assert "--warehouse" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
