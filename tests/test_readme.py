"""Every example query of the README gives the same answer in DuckDB and in BigQuery.

The queries are read from the README itself: each statement of a ```sql
block and each `tools.query "..."` argument. They run on the bundled
sample loaded into both warehouses (`both_warehouses`): the DuckDB file in
UTC, the BigQuery emulator's dataset as the default dataset.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures.warehouses import Warehouses

README = Path(__file__).resolve().parents[1] / "README.md"
_SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)
_TOOLS_QUERY = re.compile(r'tools\.query (?:--warehouse \S+ )?"(.*?)"', re.DOTALL)


def readme_queries() -> list[str]:
    text = README.read_text()
    queries = [
        statement.strip()
        for block in _SQL_BLOCK.findall(text)
        for statement in block.split(";\n")
        if statement.strip()
    ]
    queries += [" ".join(query.split()) for query in _TOOLS_QUERY.findall(text)]
    return queries


def _comment(query: str) -> str:
    first = query.splitlines()[0]
    return first.removeprefix("-- ") if first.startswith("--") else first[:60]


#: DuckDB syntax that BigQuery rejects but the DuckDB-backed emulator lets through.
_DUCKDB_ONLY = re.compile(r"ORDER BY ALL|::|\bAS \w+\(|\"|\bunnest\(", re.IGNORECASE)


def test_the_readme_queries_cover_every_analysts_view_in_portable_sql() -> None:
    queries = readme_queries()
    text = " ".join(queries)
    for name in (
        "daily_totals",
        "contributions_current",
        "fact_acquisition_event",
        "contributions",
    ):
        assert f"FROM {name}" in text or f"JOIN {name}" in text, name
    assert [q for q in queries if _DUCKDB_ONLY.search(q)] == []


@pytest.mark.parametrize("query", readme_queries(), ids=_comment)
def test_query_answers_alike_in_duckdb_and_bigquery(
    query: str, both_warehouses: Warehouses
) -> None:
    in_duckdb = both_warehouses.duckdb(query)
    assert in_duckdb, "a query with no rows on the sample shows nothing"
    assert both_warehouses.bigquery(query) == in_duckdb


_HEADING = re.compile(r"^(##|###) (.+)$", re.MULTILINE)
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_CONTENTS = re.compile(r"^\*\*Contents\*\*\n\n(.*?)\n\n", re.MULTILINE | re.DOTALL)


def _slug(title: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def test_the_contents_list_every_section_with_its_anchor() -> None:
    text = README.read_text()
    contents = _CONTENTS.search(text)
    assert contents is not None, "no **Contents** list"
    headings = _HEADING.findall(_FENCE.sub("", text))
    expected = [
        ("  " if level == "###" else "") + f"- [{title}](#{_slug(title)})"
        for level, title in headings
    ]
    assert contents[1].splitlines() == expected
