"""Every command: `--help` prints its usage and changes nothing; flags are spelt in full.

The commands are found, not listed: every module of `pipelines/`, `tools/`
and `bench/` (and a package's `__main__.py`) with an `if __name__ ==
"__main__":` block, whose entry is the function that block calls. Each is
called in-process from an empty working folder; the folders the tools
write into (golden files, the sample, the Flex Template metadata, the
report) must be byte for byte as before, and the working folder still empty.
Each parses with `pipelines.flags.FlagParser`, whose flags are snake_case,
and refuses an abbreviation of one (exit 2, naming the flag).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.flags import FlagParser

ROOT = Path(__file__).resolve().parents[2]
#: Where some tool writes: all must be left as they were.
WRITTEN_BY_TOOLS = (
    "tests/schemas/golden",
    "tests/pipelines/golden",
    "infra/dataflow",
    "sample",
    "docs/report",
)
COMMAND_FOLDERS = ("pipelines", "tools", "bench")
SNAKE_CASE = re.compile(r"--[a-z][a-z0-9]*(_[a-z0-9]+)*")


def _is_main_block(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        and any(
            isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators
        )
    )


def discovered_commands() -> dict[str, tuple[str, str]]:
    """{`python -m` name: (module to import, entry function)} of every command."""
    found = {}
    for folder in COMMAND_FOLDERS:
        paths = [*(ROOT / folder).glob("*.py"), *(ROOT / folder).glob("*/__main__.py")]
        for path in sorted(paths):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            blocks = [node for node in tree.body if _is_main_block(node)]
            called = {
                node.func.id
                for block in blocks
                for node in ast.walk(block)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id != "SystemExit"
            }
            if not blocks:
                continue
            assert len(called) == 1, f"{path}: no single entry function in {sorted(called)}"
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[module.removesuffix(".__main__")] = (module, called.pop())
    return found


COMMANDS = discovered_commands()


def entry_of(command: str) -> Callable[[list[str]], Any]:
    module, function = COMMANDS[command]
    entry: Callable[[list[str]], Any] = getattr(importlib.import_module(module), function)
    return entry


def test_the_commands_are_found_with_their_entry_functions() -> None:
    # Two the hand-written list once missed, and a package's `__main__.py`.
    assert COMMANDS["pipelines.reconcile"] == ("pipelines.reconcile", "run")
    assert COMMANDS["tools.runs"] == ("tools.runs", "main")
    assert COMMANDS["tools.generate_archive"] == ("tools.generate_archive.__main__", "main")
    assert "pipelines.options" not in COMMANDS


def _written() -> dict[str, bytes]:
    return {
        str(path.relative_to(ROOT)): path.read_bytes()
        for folder in WRITTEN_BY_TOOLS
        for path in sorted((ROOT / folder).rglob("*"))
        if path.is_file()
    }


@contextlib.contextmanager
def _writes_nothing(workdir: Path) -> Iterator[None]:
    """The block must leave the tools' output folders as they were and `workdir` empty."""
    before = _written()
    yield
    assert _written() == before
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_help_prints_usage_and_changes_nothing(
    module: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLEX_TEMPLATE_JOB", raising=False)
    entry = entry_of(module)

    with _writes_nothing(tmp_path):
        try:
            code = entry(["--help"])
        except SystemExit as exited:
            code = exited.code

    assert code in (0, None)
    assert capsys.readouterr().out.startswith("usage: ")


class _Parsing(BaseException):
    """Stops a command as it starts parsing, holding its parser (not an Exception: never caught)."""

    def __init__(self, parser: FlagParser) -> None:
        super().__init__()
        self.parser = parser


def parser_of(command: str, monkeypatch: pytest.MonkeyPatch) -> FlagParser:
    """The parser the command parses its arguments with (the Flex Template's: the backfill's)."""

    def stop(self: FlagParser, *_: Any, **__: Any) -> Any:
        raise _Parsing(self)

    with monkeypatch.context() as patched:
        patched.setattr(FlagParser, "parse_known_args", stop)
        with pytest.raises(_Parsing) as parsing:
            entry_of(command)(["--help"])
    return parsing.value.parser


@pytest.fixture(autouse=True)
def _flex_template_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEX_TEMPLATE_JOB", "backfill")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_is_snake_case(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    flags = parser_of(command, monkeypatch).flags
    assert sorted(flag for flag in flags - {"-h"} if not SNAKE_CASE.fullmatch(flag)) == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_abbreviated_flag_exits_2_naming_the_flag(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    parser = parser_of(command, monkeypatch)
    # One of its own flags; --help for a command that has none.
    own = {f for f in parser.flags - {"-h", "--help"} if f[:-1] not in parser.flags}
    flag = min(own or {"--help"})
    abbreviation = flag[:-1]

    with _writes_nothing(tmp_path), pytest.raises(SystemExit) as exited:
        entry_of(command)([abbreviation, "x"])

    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"{parser.prog}: error: unrecognized flag {abbreviation} (did you mean {flag}?)"
    )
