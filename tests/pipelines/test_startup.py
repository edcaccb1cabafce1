"""What the backfill's start-up pays for: the modules it loads and the garbage collector.

Each test runs a fresh interpreter (as `python -m pipelines.backfill` does)
and reports its state as JSON: what is in `sys.modules` and how the collector
is set. In-process, the test session would already hold every module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Loaded only by the runs that use them; a DuckDB backfill needs none.
NOT_FOR_A_DUCKDB_BACKFILL = ("stripe", "httpx", "pyarrow.dataset", "pyarrow.compute")

_REPORT = """
import gc, json, runpy, sys
{body}
print("STATE " + json.dumps({{
    "exit": code,
    "gc_enabled": gc.isenabled(),
    "frozen": gc.get_freeze_count(),
    "loaded": sorted(m for m in {watched!r} if m in sys.modules),
}}))
"""

_AS_SCRIPT = """
sys.argv = ["pipelines.backfill", *{args!r}]
try:
    runpy.run_module("pipelines.backfill", run_name="__main__", alter_sys=True)
    code = None
except SystemExit as stop:
    code = stop.code
"""

_AS_LIBRARY = """
import pipelines.backfill
code = None
"""


def child_state(body: str) -> dict[str, Any]:
    script = _REPORT.format(body=body, watched=NOT_FOR_A_DUCKDB_BACKFILL)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("STATE ")]
    assert len(lines) == 1, done.stderr
    state: dict[str, Any] = json.loads(lines[0].removeprefix("STATE "))
    return state


def test_a_duckdb_backfill_run_as_a_script_freezes_its_imports_and_loads_no_unused_client(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "archive"
    empty.mkdir()
    args = ["--source", str(empty), "--allow_empty", "--warehouse", str(tmp_path / "w.duckdb")]

    state = child_state(_AS_SCRIPT.format(args=args))

    assert state["exit"] == 0
    assert state["gc_enabled"] is True
    # Beam's modules alone leave well over 100,000 objects behind.
    assert state["frozen"] > 100_000
    assert state["loaded"] == []


def test_importing_the_backfill_leaves_the_collector_alone() -> None:
    state = child_state(_AS_LIBRARY)

    assert state == {"exit": None, "gc_enabled": True, "frozen": 0, "loaded": []}
