"""The bench's plain baseline writes exactly the backfill's tables (`bench/plain.py`).

The bench compares the two on generated archives; this runs the same comparison on
the bundled sample, so a schema change that the baseline misses fails here, not in
the next benchmark.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import duckdb

from bench import plain
from pipelines import backfill
from schemas.generate import table_of
from schemas.records import ALL_RECORD_TYPES

SAMPLE = Path(__file__).resolve().parents[2] / "sample" / "archive"


def test_plain_writes_the_same_rows_as_the_backfill_in_every_table(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "backfill.duckdb", tmp_path / "plain.duckdb"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = backfill.run(["--source", str(SAMPLE), "--warehouse", str(ours)])
    assert code == 0
    records, written = plain.run(SAMPLE, theirs)
    assert records > 0

    with duckdb.connect() as connection:
        connection.execute(f"ATTACH '{ours}' AS backfill (READ_ONLY)")
        connection.execute(f"ATTACH '{theirs}' AS plain (READ_ONLY)")
        for record_type in ALL_RECORD_TYPES:
            name = table_of(record_type).name
            counts = [
                connection.execute(query).fetchall()[0][0]
                for query in (
                    f'SELECT count(*) FROM backfill."{name}"',
                    f'SELECT count(*) FROM (FROM backfill."{name}" EXCEPT ALL FROM plain."{name}")',
                    f'SELECT count(*) FROM (FROM plain."{name}" EXCEPT ALL FROM backfill."{name}")',
                )
            ]
            assert counts == [written[name], 0, 0], name
            assert written[name] > 0, name
