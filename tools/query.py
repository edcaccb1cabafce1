"""Query the local warehouse with SQL, in UTC, and print the result as a table.

python -m tools.query "SELECT currency, sum(amount) FROM contributions GROUP BY ALL"
python -m tools.query --warehouse out/other.duckdb "SELECT * FROM daily_totals ORDER BY day"
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import duckdb

from transforms.sinks.common import DEFAULT_WAREHOUSE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.query", description=__doc__)
    parser.add_argument("sql", help="One SQL statement (DuckDB dialect).")
    parser.add_argument(
        "--warehouse", default=DEFAULT_WAREHOUSE, help="DuckDB file. Default: %(default)s."
    )
    parser.add_argument(
        "--max_rows", type=int, default=50, help="Rows to print. Default: %(default)s."
    )
    args = parser.parse_args(argv)
    try:
        with duckdb.connect(args.warehouse, read_only=True) as connection:
            # As in BigQuery: TIMESTAMP literals and printed times are UTC.
            connection.execute("SET TimeZone = 'UTC'")
            connection.sql(args.sql).show(max_rows=args.max_rows)
    except duckdb.Error as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
