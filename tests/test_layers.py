"""The layers of `transforms/`, checked from the imports of every module.

- `transforms/domain/` has no Beam and no IO: it imports neither
  `apache_beam` nor any client of a store or service;
- `transforms/core/` has no IO either: no IO client, no source, sink or
  service (an IO step such as `transforms/services/identity.py` is injected);
- `transforms/sources/` and `transforms/sinks/` never import each other
  (what they share lives in `transforms/infrastructure.py`), and
  `transforms/services/` imports neither;
- `pipelines/` wires: nothing under `transforms/` or `schemas/` imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Top-level packages a domain module must not import: Beam and every IO client.
FORBIDDEN_IN_DOMAIN = frozenset(
    {
        "apache_beam",
        "boto3",
        "botocore",
        "psycopg",
        "duckdb",
        "google",
        "pyarrow",
        "requests",
        "urllib3",
        "stripe",
        "http",
        "socket",
        "urllib.request",
    }
)
#: What the core must not import: every IO client, and the IO layers.
FORBIDDEN_IN_CORE = (FORBIDDEN_IN_DOMAIN - {"apache_beam"}) | {
    "transforms.sources",
    "transforms.sinks",
    "transforms.services",
    "transforms.infrastructure",
}


def imported_modules(path: Path) -> set[str]:
    """Every module named by an `import` or `from ... import` in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules_under(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def offending(paths: list[Path], forbidden: set[str] | frozenset[str]) -> dict[str, list[str]]:
    """{module path: the imports it must not have}, for the modules that have any."""
    found = {}
    for path in paths:
        bad = sorted(
            name
            for name in imported_modules(path)
            if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)
        )
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_the_domain_imports_neither_beam_nor_io_clients() -> None:
    paths = modules_under("transforms/domain")
    assert len(paths) > 5
    assert offending(paths, FORBIDDEN_IN_DOMAIN) == {}


def test_the_domain_imports_no_other_layer() -> None:
    layers = {
        "transforms.core",
        "transforms.sources",
        "transforms.sinks",
        "transforms.services",
        "pipelines",
    }
    assert offending(modules_under("transforms/domain"), layers) == {}


def test_the_core_imports_no_io() -> None:
    paths = modules_under("transforms/core")
    assert len(paths) >= 3
    assert offending(paths, FORBIDDEN_IN_CORE) == {}


@pytest.mark.parametrize(
    ("package", "other"),
    [
        ("transforms/sources", "transforms.sinks"),
        ("transforms/sinks", "transforms.sources"),
        ("transforms/services", "transforms.sources"),
        ("transforms/services", "transforms.sinks"),
    ],
    ids=[
        "sources-do-not-import-sinks",
        "sinks-do-not-import-sources",
        "services-do-not-import-sources",
        "services-do-not-import-sinks",
    ],
)
def test_sources_and_sinks_do_not_import_each_other(package: str, other: str) -> None:
    paths = modules_under(package)
    assert paths, package
    assert offending(paths, {other}) == {}


@pytest.mark.parametrize("package", ["transforms", "schemas"])
def test_nothing_below_the_pipelines_imports_them(package: str) -> None:
    assert offending(modules_under(package), {"pipelines"}) == {}


def test_the_checks_see_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "rule.py"
    module.write_text("import json\nfrom apache_beam.pvalue import TaggedOutput\nimport duckdb\n")
    assert imported_modules(module) >= {"json", "apache_beam.pvalue", "duckdb"}
    bad = {name for name in imported_modules(module) if name.split(".")[0] in FORBIDDEN_IN_DOMAIN}
    assert bad == {"apache_beam.pvalue", "apache_beam.pvalue.TaggedOutput", "duckdb"}
