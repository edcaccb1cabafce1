"""Rewrite the golden schema files that `tests/schemas/test_generate.py` compares against.

Run after a deliberate change to a record type, then review the diff:

    .venv/bin/python -m tools.update_golden
    git diff tests/schemas/golden/
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines.flags import FlagParser
from schemas.generate import (
    arrow_schema_text,
    bigquery_schema,
    duckdb_ddl,
    postgres_ddl,
    table_of,
)
from schemas.records import SCHEMA_RECORD_TYPES

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "schemas" / "golden"


def _bigquery_json(cls: type) -> str:
    return json.dumps(bigquery_schema(cls), indent=2) + "\n"


#: Golden file suffix -> the generated text it pins.
TARGETS: dict[str, Callable[[type], str]] = {
    "bigquery.json": _bigquery_json,
    "postgres.sql": postgres_ddl,
    "duckdb.sql": duckdb_ddl,
    "arrow.txt": arrow_schema_text,
}


def golden_path(cls: type, suffix: str) -> Path:
    """`tests/schemas/golden/<table>.<suffix>`."""
    return GOLDEN_DIR / f"{table_of(cls).name}.{suffix}"


def main(argv: Sequence[str] | None = None) -> None:
    """Write every golden file and print the ones whose content changed."""
    FlagParser(
        prog="python -m tools.update_golden",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for cls in SCHEMA_RECORD_TYPES:
        for suffix, render in TARGETS.items():
            path = golden_path(cls, suffix)
            text = render(cls)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                print(f"updated {path.relative_to(GOLDEN_DIR.parent.parent.parent)}")


if __name__ == "__main__":
    main()
