"""Tests of `transforms.core.leftovers`: which tagged folders count as a killed run's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from transforms.core.leftovers import is_stale, remove_stale, run_tag


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def on_another_host(tag: str) -> str:
    pid, host, run = tag.split("-")
    return "-".join([pid, "h00000000" if host != "h00000000" else "h11111111", run])


def test_only_a_gone_process_of_this_host_makes_a_folder_stale() -> None:
    dead = run_tag(dead_pid())

    assert [
        is_stale(f"group-{dead}", "group-"),
        is_stale(f"group-{run_tag(os.getppid())}", "group-"),  # the test runner: alive
        is_stale(f"group-{run_tag()}", "group-"),  # this process
        is_stale(f"group-{on_another_host(dead)}", "group-"),
        is_stale(f"run-{dead}", "group-"),
        is_stale("group-0123456789abcdef0123456789abcdef", "group-"),  # before tags
        is_stale(f"group-{dead}.partial", "group-"),
    ] == [True, False, False, False, False, False, False]


def test_remove_stale_deletes_killed_runs_folders_and_files_only(tmp_path: Path) -> None:
    killed = tmp_path / f"run-{run_tag(dead_pid())}"
    (killed / "contributions").mkdir(parents=True)
    (killed / "contributions" / "a.parquet").write_bytes(b"PAR1")
    killed_file = tmp_path / f"run-{run_tag(dead_pid())}"
    killed_file.write_bytes(b"")
    live = tmp_path / f"run-{run_tag(os.getppid())}"
    live.mkdir()

    removed = remove_stale(str(tmp_path), "run-")

    assert sorted(removed) == sorted([str(killed), str(killed_file)])
    assert sorted(tmp_path.iterdir()) == [live]
    assert remove_stale(str(tmp_path / "missing"), "run-") == []
