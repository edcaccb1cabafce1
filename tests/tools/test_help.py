"""Every command's `--help` prints its usage, exits 0 and changes nothing.

Each entry point is called in-process with `--help` from an empty working
folder; the folders the tools write into (golden files, the sample, the
Flex Template metadata, the report) must be byte for byte as before, and the
working folder still empty.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Where some tool writes: all must be left as they were.
WRITTEN_BY_TOOLS = (
    "tests/schemas/golden",
    "tests/pipelines/golden",
    "infra/dataflow",
    "sample",
    "docs/report",
)
COMMANDS = {
    "pipelines.backfill": "run",
    "pipelines.streaming": "run",
    "pipelines.flex_template": "main",
    "pipelines.redrive": "run",
    "tools.dataflow_steps": "main",
    "tools.export_events": "main",
    "tools.flex_metadata": "main",
    "tools.generate_archive": "main",
    "tools.put_on_kinesis": "main",
    "tools.query": "main",
    "tools.report": "main",
    "tools.update_golden": "main",
    "bench.backfill": "main",
    "bench.plain": "main",
}


def _written() -> dict[str, bytes]:
    return {
        str(path.relative_to(ROOT)): path.read_bytes()
        for folder in WRITTEN_BY_TOOLS
        for path in sorted((ROOT / folder).rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_help_prints_usage_and_changes_nothing(
    module: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLEX_TEMPLATE_JOB", raising=False)
    entry: Callable[[list[str]], Any] = getattr(importlib.import_module(module), COMMANDS[module])
    before = _written()

    try:
        code = entry(["--help"])
    except SystemExit as exited:
        code = exited.code

    assert code in (0, None)
    assert capsys.readouterr().out.startswith("usage: ")
    assert _written() == before
    assert list(tmp_path.iterdir()) == []
