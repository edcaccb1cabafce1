"""tools.report on the bundled sample in both warehouses: the numbers in the HTML equal SQL.

The expected numbers are computed here with SQL of their own over the
DuckDB tables (not the views the report reads), then compared cell by cell
with the tables of `index.html`; the report of the BigQuery emulator's
copy of the same data must show exactly the same tables. Every PNG must
open at the documented size.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fixtures.bigquery import run_without_google_credentials
from tests.fixtures.warehouses import Warehouses
from tools import report

SECTIONS = ("net_per_day", "campaigns", "refund_dispute_rate", "countries")
EXPONENTS = {"JPY": 0, "KWD": 3}
LIVE_PAID = "livemode AND status IN ('Paid', 'Refunded')"
UTC_DAY = "CAST(timezone('UTC', created) AS DATE)"


@dataclass
class _Tables(HTMLParser):
    """Collects the body cells of each `<section id>`'s table, and every image source."""

    tables: dict[str, list[list[str]]] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    _section: str | None = None
    _cell: list[str] | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section":
            self._section = attributes["id"]
            self.tables[self._section or ""] = []
        elif tag == "img":
            self.images.append(attributes["src"] or "")
        elif tag == "tr" and self._section is not None:
            self.tables[self._section].append([])
        elif tag == "td":
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._section is not None:
            self.tables[self._section][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "section":
            self._section = None


def parse(index: Path) -> _Tables:
    parser = _Tables()
    parser.feed(index.read_text())
    # The header row has no <td>: keep body rows only.
    parser.tables = {name: [r for r in rows if r] for name, rows in parser.tables.items()}
    return parser


def run_report(out: Path, *argv: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return report.main([*argv, "--out", str(out)])


@pytest.fixture(scope="module")
def reports(
    both_warehouses: Warehouses, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    folders = {}
    for name, spec in (
        ("duckdb", str(both_warehouses.duckdb_path)),
        ("bigquery", both_warehouses.bigquery_spec),
    ):
        out = tmp_path_factory.mktemp(f"report_{name}")
        assert run_report(out, "--warehouse", spec) == 0
        folders[name] = out
    return folders


def _percent_matches(cell: str, part: int, whole: int) -> bool:
    return abs(Decimal(cell) - Decimal(100 * part) / Decimal(whole)) <= Decimal("0.005")


def test_net_per_day_equals_sql_in_each_currencys_own_digits(
    reports: dict[str, Path], both_warehouses: Warehouses
) -> None:
    expected = both_warehouses.duckdb(
        f"SELECT {UTC_DAY} AS day, currency, count(*), sum(amount), sum(amount_refunded),"
        f" sum(amount - amount_refunded) FROM contributions_current WHERE {LIVE_PAID}"
        " GROUP BY day, currency ORDER BY currency, day"
    )
    rows = parse(reports["duckdb"] / "index.html").tables["net_per_day"]
    assert [
        (date.fromisoformat(d), c, int(n), Decimal(g), Decimal(r), Decimal(net))
        for d, c, n, g, r, net in rows
    ] == expected
    for _, currency, _, *money in rows:
        digits = EXPONENTS.get(currency, 2)
        assert [-int(Decimal(m).as_tuple().exponent) for m in money] == [digits] * 3, currency
    assert {row[1] for row in rows} == {"AUD", "EUR", "GBP", "JPY", "KWD", "USD"}


def test_campaigns_and_countries_equal_sql(
    reports: dict[str, Path], both_warehouses: Warehouses
) -> None:
    tables = parse(reports["duckdb"] / "index.html").tables
    campaigns = both_warehouses.duckdb(
        "SELECT array_to_string(campaign_codes, ','), count(*) AS n FROM acquisitions"
        " WHERE livemode GROUP BY 1 ORDER BY n DESC, 1"
    )
    assert [(code, int(n)) for code, n in tables["campaigns"]] == [
        (code or report.NO_CAMPAIGN, n) for code, n in campaigns
    ]
    assert len(campaigns) >= 4 and any(code == "" for code, _ in campaigns)

    countries = both_warehouses.duckdb(
        "SELECT country_code, count(*) AS n FROM acquisitions WHERE livemode"
        " GROUP BY 1 ORDER BY n DESC, 1"
    )
    total = sum(n for _, n in countries)
    assert [(c, int(n)) for c, n, _ in tables["countries"]] == countries
    assert all(_percent_matches(share, int(n), total) for _, n, share in tables["countries"])


def test_weekly_refund_and_dispute_rates_equal_sql(
    reports: dict[str, Path], both_warehouses: Warehouses
) -> None:
    weeks = both_warehouses.duckdb(
        f"SELECT CAST(date_trunc('week', {UTC_DAY}) AS DATE) AS week, count(*),"
        " count(*) FILTER (WHERE amount_refunded > 0), count(*) FILTER (WHERE disputed)"
        f" FROM contributions_current WHERE {LIVE_PAID} GROUP BY week ORDER BY week"
    )
    rows = parse(reports["duckdb"] / "index.html").tables["refund_dispute_rate"]
    assert [(date.fromisoformat(w), int(p), int(r), int(d)) for w, p, r, _, d, _ in rows] == weeks
    assert all(
        _percent_matches(rr, int(r), int(p)) and _percent_matches(dr, int(d), int(p))
        for _, p, r, rr, d, dr in rows
    )
    assert any(int(r) > 0 for _, _, r, _, _, _ in rows)
    assert any(int(d) > 0 for _, _, _, _, d, _ in rows)


def test_bigquery_report_shows_the_same_numbers(reports: dict[str, Path]) -> None:
    duckdb_tables = parse(reports["duckdb"] / "index.html").tables
    assert list(duckdb_tables) == list(SECTIONS)
    assert parse(reports["bigquery"] / "index.html").tables == duckdb_tables


def test_every_png_is_shown_and_opens_at_the_documented_size(reports: dict[str, Path]) -> None:
    for out in reports.values():
        parsed = parse(out / "index.html")
        assert parsed.images == [f"{name}.png" for name in SECTIONS]
        for name in SECTIONS:
            with Image.open(out / f"{name}.png") as image:
                assert (image.format, image.size) == ("PNG", (1200, 650))


def test_the_period_keeps_only_its_days(tmp_path: Path, both_warehouses: Warehouses) -> None:
    warehouse = str(both_warehouses.duckdb_path)
    assert run_report(tmp_path, "--warehouse", warehouse, "--start", "2025-03-02") == 0
    tables = parse(tmp_path / "index.html").tables
    assert {row[0] for row in tables["net_per_day"]} == {"2025-03-03"}
    expected = both_warehouses.duckdb(
        "SELECT count(*) FROM acquisitions WHERE livemode"
        " AND event_timestamp >= TIMESTAMPTZ '2025-03-02 00:00:00+00'"
    )
    assert [(sum(int(n) for _, n, _ in tables["countries"]),)] == expected


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        pytest.param(
            ["--warehouse", "/nonexistent/warehouse.duckdb"],
            3,
            "python -m tools.report: error: no DuckDB warehouse at "
            "/nonexistent/warehouse.duckdb: run the backfill first",
            id="no-such-file",
        ),
        pytest.param(
            ["--start", "2025-03-05", "--end", "2025-03-01"],
            2,
            "python -m tools.report: error: --start must be before --end",
            id="start-after-end",
        ),
        pytest.param(
            ["--start", "March"],
            2,
            "python -m tools.report: error: argument --start: not a date (YYYY-MM-DD): 'March'",
            id="not-a-date",
        ),
    ],
)
def test_bad_arguments_exit_with_a_one_line_error_and_write_nothing(
    argv: list[str], code: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        result: Any = report.main([*argv, "--out", str(tmp_path / "report")])
    except SystemExit as exit_:
        result = exit_.code
    assert result == code
    assert capsys.readouterr().err.splitlines()[-1] == message
    assert list(tmp_path.iterdir()) == []


def test_bigquery_without_credentials_is_exit_3_in_one_line(tmp_path: Path) -> None:
    done = run_without_google_credentials(
        ["-m", "tools.report", "--warehouse", "bigquery:p.d", "--out", str(tmp_path / "report")],
        tmp_path,
        key_file=True,
    )
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr.splitlines() == [
        f"python -m tools.report: error: --warehouse bigquery:p.d: no Google credentials (File "
        f"{tmp_path}/absent-key.json was not found.): give application default credentials: "
        "GOOGLE_APPLICATION_CREDENTIALS naming a key file, `gcloud auth application-default "
        "login`, or a service account on Google Cloud"
    ]
    assert not (tmp_path / "report").exists()
