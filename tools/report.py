"""Charts of the money for analysts: PNGs plus an index.html with the numbers behind each.

python -m tools.report --out out/report
python -m tools.report --warehouse bigquery:PROJECT.DATASET --start 2025-03-01 --end 2025-04-01 \\
    --out out/report

Reads the analysts' views, which both warehouses define alike (`schemas.views`):
a DuckDB file (read only) or a BigQuery dataset (application default
credentials, the dataset as the queries' default). Live payments only. Writes
to DIR, replacing files of the same names:

    net_per_day.png         net amount (paid minus refunded) per UTC day, one
                            panel per currency, each in its own units
    campaigns.png           payments per campaign code (as sent, codes joined by ",")
    refund_dispute_rate.png share of payments refunded (wholly or partly) and
                            disputed, per week (Monday to Sunday, UTC)
    countries.png           share of payments by country
    index.html              the four charts, each with the table of its numbers

`--start`/`--end` are UTC days, `start <= day < end`. DuckDB is queried in
UTC, as BigQuery is, so both give the same answers. Exit 0 on success, 3 when
the warehouse cannot be read, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import matplotlib

matplotlib.use("Agg")  # headless: never look for a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import PercentFormatter, StrMethodFormatter  # noqa: E402

from pipelines.flags import FlagParser
from transforms.domain.money import currency_exponent  # noqa: E402
from transforms.sinks.common import BIGQUERY_PREFIX, DEFAULT_WAREHOUSE  # noqa: E402

#: Every chart's size: `FIGURE_INCHES` at `DPI` dots per inch.
FIGURE_INCHES = (12.0, 6.5)
DPI = 100
PIXELS = (round(FIGURE_INCHES[0] * DPI), round(FIGURE_INCHES[1] * DPI))
#: Bars drawn in a ranked chart; the rest are drawn as one "other" bar (the table lists all).
TOP = 15
NO_CAMPAIGN = "(none)"
_PANEL_COLUMNS = 3
_MAX_DAY_LABELS = 8

Row = tuple[Any, ...]


class WarehouseError(Exception):
    """The warehouse could not be opened or queried; the message says why."""


@dataclass(frozen=True)
class Period:
    """UTC days `start <= day < end`; either end open."""

    start: date | None = None
    end: date | None = None

    def condition(self, column: str, *, timestamp: bool) -> str:
        """SQL in both dialects: `column`, a DATE (a TIMESTAMP when `timestamp`), in the period."""
        kind = "TIMESTAMP" if timestamp else "DATE"
        bounds = ["TRUE"]
        if self.start is not None:
            bounds.append(f"{column} >= {kind} '{self.start.isoformat()}'")
        if self.end is not None:
            bounds.append(f"{column} < {kind} '{self.end.isoformat()}'")
        return " AND ".join(bounds)


def net_per_day_sql(period: Period) -> str:
    return (
        "SELECT day, currency, payments, amount, amount_refunded, net_amount\n"
        f"FROM daily_totals WHERE livemode AND {period.condition('day', timestamp=False)}\n"
        "ORDER BY currency, day"
    )


def campaigns_sql(period: Period) -> str:
    return (
        "SELECT ARRAY_TO_STRING(campaign_codes, ',') AS campaign_code, COUNT(*) AS payments\n"
        "FROM fact_acquisition_event\n"
        f"WHERE {period.condition('event_timestamp', timestamp=True)}\n"
        "GROUP BY campaign_code ORDER BY payments DESC, campaign_code"
    )


def daily_rates_sql(period: Period) -> str:
    return (
        "SELECT day, SUM(payments) AS payments, SUM(refunded_payments) AS refunded,\n"
        "    SUM(disputed_payments) AS disputed\n"
        f"FROM daily_totals WHERE livemode AND {period.condition('day', timestamp=False)}\n"
        "GROUP BY day ORDER BY day"
    )


def countries_sql(period: Period) -> str:
    return (
        "SELECT country_code, COUNT(*) AS payments\n"
        "FROM fact_acquisition_event\n"
        f"WHERE {period.condition('event_timestamp', timestamp=True)}\n"
        "GROUP BY country_code ORDER BY payments DESC, country_code"
    )


# --- Reading a warehouse ---------------------------------------------------------


Query = Callable[[str], list[Row]]


def duckdb_query(path: str) -> Query:
    """Queries on the DuckDB file at `path`, opened read only, in UTC."""
    if not Path(path).exists():
        raise WarehouseError(f"no DuckDB warehouse at {path}: run the backfill first")

    def run(sql: str) -> list[Row]:
        try:
            with duckdb.connect(path, read_only=True) as connection:
                connection.execute("SET TimeZone = 'UTC'")
                return connection.execute(sql).fetchall()
        except duckdb.Error as error:
            raise WarehouseError(f"{path}: {error}") from error

    return run


def bigquery_query(project: str, dataset: str) -> Query:
    """Queries on BigQuery with `project.dataset` as the default dataset."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError
    from google.cloud import bigquery

    from transforms.sinks.bigquery import describe_google_error

    try:
        client = bigquery.Client(project=project)
    except GoogleAuthError as error:  # no credentials: the client looks for them at once
        raise WarehouseError(
            f"--warehouse bigquery:{project}.{dataset}: {describe_google_error(error)}"
        ) from None
    config = bigquery.QueryJobConfig(default_dataset=f"{project}.{dataset}")

    def run(sql: str) -> list[Row]:
        try:
            return [tuple(row.values()) for row in client.query(sql, job_config=config).result()]
        except (GoogleAPIError, GoogleAuthError) as error:
            raise WarehouseError(
                f"--warehouse bigquery:{project}.{dataset}: {describe_google_error(error)}"
            ) from None

    return run


def open_warehouse(spec: str) -> Query:
    """`bigquery:PROJECT.DATASET` or a DuckDB file path."""
    if spec.startswith(BIGQUERY_PREFIX):
        project, _, dataset = spec[len(BIGQUERY_PREFIX) :].partition(".")
        if not project or not dataset:
            raise WarehouseError(f"{spec}: expected bigquery:PROJECT.DATASET")
        return bigquery_query(project, dataset)
    return duckdb_query(spec)


# --- Figures ---------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One chart and the table of the numbers it shows."""

    name: str  # file stem of the PNG
    title: str
    note: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    figure: Figure


def _money(amount: Decimal, currency: str) -> str:
    """Exact, in the currency's own minor-unit digits (JPY 0, KWD 3, GBP 2)."""
    return f"{amount.quantize(Decimal(1).scaleb(-currency_exponent(currency)))}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}" if whole else "0.00"


def _new_figure() -> Figure:
    return plt.figure(figsize=FIGURE_INCHES, dpi=DPI, layout="constrained")


def _empty(figure: Figure, title: str) -> Figure:
    figure.suptitle(title)
    figure.text(0.5, 0.5, "no live payments in this period", ha="center", va="center")
    return figure


def _ranked(labels: list[str], counts: list[int]) -> tuple[list[str], list[int]]:
    """The `TOP` largest as they are, the rest summed into one "other" bar."""
    if len(labels) <= TOP:
        return labels, counts
    rest = len(labels) - TOP + 1
    return [*labels[: TOP - 1], f"other ({rest})"], [*counts[: TOP - 1], sum(counts[TOP - 1 :])]


def net_per_day(rows: list[Row]) -> Section:
    title = "Net amount per day, by currency (live payments)"
    by_currency: dict[str, list[Row]] = {}
    for row in rows:
        by_currency.setdefault(row[1], []).append(row)
    figure = _new_figure()
    if not by_currency:
        _empty(figure, title)
    else:
        figure.suptitle(title)
        # Every panel spans the same calendar days, a bar per day with payments.
        first = min(row[0] for row in rows)
        span = (max(row[0] for row in rows) - first).days + 1
        step = math.ceil(span / _MAX_DAY_LABELS)
        ticks = list(range(0, span, step))
        labels = [f"{first + timedelta(days=t):%d %b}" for t in ticks]
        panels = len(by_currency)
        columns = min(panels, _PANEL_COLUMNS)
        grid = figure.subplots(math.ceil(panels / columns), columns, squeeze=False)
        for axes, (currency, days) in zip(grid.flat, sorted(by_currency.items()), strict=False):
            positions = [(d[0] - first).days for d in days]
            axes.bar(positions, [float(d[5]) for d in days], width=0.8, color="#2a6f97")
            axes.set_xlim(-0.6, span - 0.4)
            axes.set_xticks(ticks, labels)
            axes.set_title(currency)
            axes.set_ylabel(f"net, {currency}")
            axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,g}"))
            axes.grid(axis="y", alpha=0.3)
        for axes in list(grid.flat)[panels:]:
            axes.set_visible(False)
    return Section(
        name="net_per_day",
        title=title,
        note="Paid minus refunded, by the day the payment settled (UTC); "
        "each currency in its own units, never summed across currencies.",
        header=("day", "currency", "payments", "gross", "refunded", "net"),
        rows=tuple(
            (
                day.isoformat(),
                currency,
                str(payments),
                _money(gross, currency),
                _money(refunded, currency),
                _money(net, currency),
            )
            for day, currency, payments, gross, refunded, net in rows
        ),
        figure=figure,
    )


def campaigns(rows: list[Row]) -> Section:
    title = "Payments by campaign code (live payments)"
    labels = [code or NO_CAMPAIGN for code, _ in rows]
    counts = [int(n) for _, n in rows]
    figure = _new_figure()
    if not rows:
        _empty(figure, title)
    else:
        shown, values = _ranked(labels, counts)
        axes = figure.subplots()
        axes.barh(shown[::-1], values[::-1], color="#468faf")
        axes.set_title(title)
        axes.set_xlabel("payments")
        axes.grid(axis="x", alpha=0.3)
    return Section(
        name="campaigns",
        title=title,
        note=f"Payments counted once, under their campaign code as sent; "
        f"{NO_CAMPAIGN} when the session carried none.",
        header=("campaign code", "payments"),
        rows=tuple((label, str(n)) for label, n in zip(labels, counts, strict=True)),
        figure=figure,
    )


def weekly_rates(rows: list[Row]) -> Section:
    title = "Refund and dispute rate per week (live payments)"
    weeks: dict[date, list[int]] = {}
    for day, payments, refunded, disputed in rows:
        week = weeks.setdefault(day - timedelta(days=day.weekday()), [0, 0, 0])
        week[0] += int(payments)
        week[1] += int(refunded)
        week[2] += int(disputed)
    figure = _new_figure()
    ordered = sorted(weeks.items())
    if not ordered:
        _empty(figure, title)
    else:
        axes = figure.subplots()
        positions = range(len(ordered))
        refund_rates = [r / p if p else 0.0 for _, (p, r, _) in ordered]
        dispute_rates = [d / p if p else 0.0 for _, (p, _, d) in ordered]
        axes.bar([x - 0.2 for x in positions], refund_rates, 0.4, label="refunded", color="#e07a5f")
        axes.bar(
            [x + 0.2 for x in positions], dispute_rates, 0.4, label="disputed", color="#3d405b"
        )
        axes.set_xticks(list(positions), [f"week of {w:%d %b %Y}" for w, _ in ordered])
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_ylabel("share of the week's payments")
        axes.set_title(title)
        axes.legend()
        axes.grid(axis="y", alpha=0.3)
    return Section(
        name="refund_dispute_rate",
        title=title,
        note="Payments settled in the week (Monday to Sunday, UTC) that were since "
        "refunded, wholly or partly, or disputed; all currencies counted together.",
        header=("week from", "payments", "refunded", "refund rate %", "disputed", "dispute rate %"),
        rows=tuple(
            (
                week.isoformat(),
                str(p),
                str(r),
                _percent(r, p),
                str(d),
                _percent(d, p),
            )
            for week, (p, r, d) in ordered
        ),
        figure=figure,
    )


def countries(rows: list[Row]) -> Section:
    title = "Share of payments by country (live payments)"
    labels = [country for country, _ in rows]
    counts = [int(n) for _, n in rows]
    total = sum(counts)
    figure = _new_figure()
    if not rows:
        _empty(figure, title)
    else:
        shown, values = _ranked(labels, counts)
        axes = figure.subplots()
        axes.barh(shown[::-1], [v / total for v in values[::-1]], color="#61a5c2")
        axes.xaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_xlabel("share of payments")
        axes.set_title(title)
        axes.grid(axis="x", alpha=0.3)
    return Section(
        name="countries",
        title=title,
        note="Card country, else the billing address country, else GB; "
        "by number of payments, so currencies are never mixed.",
        header=("country", "payments", "share %"),
        rows=tuple(
            (label, str(n), _percent(n, total)) for label, n in zip(labels, counts, strict=True)
        ),
        figure=figure,
    )


def build_sections(query: Query, period: Period) -> list[Section]:
    return [
        net_per_day(query(net_per_day_sql(period))),
        campaigns(query(campaigns_sql(period))),
        weekly_rates(query(daily_rates_sql(period))),
        countries(query(countries_sql(period))),
    ]


def render_html(sections: Sequence[Section], source: str, period: Period) -> str:
    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(f"<{tag}>{html.escape(v)}</{tag}>" for v in values)

    span = f"{period.start or 'the first day'} to {period.end or 'the last day'} (end excluded)"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Contributions report</title>',
        "<style>body{font-family:sans-serif;max-width:1250px;margin:auto}"
        "table{border-collapse:collapse;margin-bottom:2em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body>",
        "<h1>Contributions report</h1>",
        f"<p>Warehouse {html.escape(source)}; live payments; {html.escape(span)}.</p>",
    ]
    for section in sections:
        parts += [
            f'<section id="{section.name}">',
            f"<h2>{html.escape(section.title)}</h2>",
            f'<img src="{section.name}.png" width="{PIXELS[0]}" height="{PIXELS[1]}"'
            f' alt="{html.escape(section.title)}">',
            f"<p>{html.escape(section.note)}</p>",
            f"<table><thead><tr>{cells('th', section.header)}</tr></thead><tbody>",
            *(f"<tr>{cells('td', row)}</tr>" for row in section.rows),
            "</tbody></table>",
            "</section>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(query: Query, source: str, period: Period, out: Path) -> list[Path]:
    """Writes the PNGs and index.html into `out`; returns their paths, index last."""
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(query, period)
    written = []
    for section in sections:
        path = out / f"{section.name}.png"
        # Fixed size, no tight bounding box: every PNG is exactly PIXELS.
        section.figure.savefig(path, dpi=DPI, metadata={"Software": None})
        plt.close(section.figure)
        written.append(path)
    index = out / "index.html"
    index.write_text(render_html(sections, source, period))
    written.append(index)
    return written


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = FlagParser(
        prog="python -m tools.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--warehouse",
        default=DEFAULT_WAREHOUSE,
        help="A DuckDB file or bigquery:PROJECT.DATASET. Default: %(default)s.",
    )
    parser.add_argument("--start", type=_day, help="First UTC day included (YYYY-MM-DD).")
    parser.add_argument("--end", type=_day, help="First UTC day excluded (YYYY-MM-DD).")
    parser.add_argument(
        "--out", required=True, type=Path, help="Folder for the PNGs and index.html."
    )
    args = parser.parse_args(argv)
    if args.start is not None and args.end is not None and args.start >= args.end:
        parser.error("--start must be before --end")
    period = Period(args.start, args.end)
    try:
        written = write_report(open_warehouse(args.warehouse), args.warehouse, period, args.out)
    except WarehouseError as error:
        # The warehouse is missing or cannot be read: infrastructure, not usage.
        message = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
        print(f"python -m tools.report: error: {message}", file=sys.stderr)
        return 3
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
