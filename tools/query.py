"""Query the local warehouse with SQL, in UTC, and print the result as a table.

python -m tools.query "SELECT currency, sum(amount) FROM contributions GROUP BY ALL"
python -m tools.query --warehouse out/other.duckdb "SELECT * FROM daily_totals ORDER BY day"

Exit 0 done, 2 a statement DuckDB refuses (syntax, unknown table or column),
3 a warehouse that cannot be opened (missing, or locked by a running job).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import duckdb

from pipelines.flags import FlagParser
from transforms.sinks.common import DEFAULT_WAREHOUSE


def main(argv: Sequence[str] | None = None) -> int:
    parser = FlagParser(prog="python -m tools.query", description=__doc__)
    parser.add_argument("sql", help="One SQL statement (DuckDB dialect).")
    parser.add_argument(
        "--warehouse", default=DEFAULT_WAREHOUSE, help="DuckDB file. Default: %(default)s."
    )
    parser.add_argument(
        "--max_rows", type=int, default=50, help="Rows to print. Default: %(default)s."
    )
    args = parser.parse_args(argv)
    try:
        connection = duckdb.connect(args.warehouse, read_only=True)
    except duckdb.Error as error:
        return _fail(f"cannot open --warehouse {args.warehouse}: {error}", 3)
    with connection:
        try:
            # As in BigQuery: TIMESTAMP literals and printed times are UTC.
            connection.execute("SET TimeZone = 'UTC'")
            connection.sql(args.sql).show(max_rows=args.max_rows)
        except duckdb.Error as error:
            return _fail(str(error), 2)
    return 0


def _fail(message: str, code: int) -> int:
    """One line on stderr (DuckDB's messages span several), and the exit code."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"python -m tools.query: error: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
