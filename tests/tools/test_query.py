"""`tools.query`: a missing warehouse exits 3, a statement DuckDB refuses exits 2, one line each."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tools import query


def test_a_missing_warehouse_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.duckdb"

    assert query.main(["SELECT 1", "--warehouse", str(missing)]) == 3

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"python -m tools.query: error: cannot open --warehouse {missing}: ")


def test_a_refused_statement_exits_2_and_a_good_one_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("CREATE TABLE contributions (amount INTEGER)")

    assert query.main(["SELECT nope FROM contributions", "--warehouse", str(warehouse)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith('python -m tools.query: error: Binder Error: Referenced column "nope"')

    assert (
        query.main(["SELECT count(*) AS n FROM contributions", "--warehouse", str(warehouse)]) == 0
    )
    assert capsys.readouterr().out.splitlines()[1:5] == [
        "│   n   │",
        "│ int64 │",
        "├───────┤",
        "│     0 │",
    ]
