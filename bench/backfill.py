"""Benchmark the backfill against two plain-Python baselines, each a whole process.

    python -m bench.backfill                    # 300,000 events, then 75,000
    python -m bench.backfill --events 40000 --seed 3 --workdir out/bench --json

For each size (N events, then N/4) it generates an archive with
`tools.generate_archive` and runs three sides on it, one after the other,
each a child process of its own, timed whole (start-up and imports
included) by the parent through `os.wait4`:

- backfill: `python -m pipelines.backfill --source <archive> --warehouse
  <fresh .duckdb>`, the real job on the default FnApiRunner (grouping on
  disk, as `--shuffle auto` does locally), DuckDB load and summary included;
- plain: `python -m bench.plain --archive <archive> --warehouse <fresh
  .duckdb>`, an independent single-process implementation of the same whole
  job (read, split, parse, dedupe, join, build, write the same nine DuckDB
  tables) with no Beam and none of the project's transforms: the fastest
  honest plain-Python job, the one to measure against;
- loop: the old baseline, a single-threaded loop over the core's own pure
  functions (`split_records`, `decode_record`, `classify`, the backfill's fold
  and best-copy choice in `transforms.domain.fold`, `build_records`,
  `to_row`) that writes nothing.

Then a fourth child compares the tables: the backfill's and plain's
warehouses must hold the same rows in every table (compared row by row,
both ways), and the loop's rows per table must equal the backfill's.

The parent prints, per side, records, wall and CPU seconds of the whole
process, records/s, CPU microseconds per record and peak RSS; the ratios
backfill/plain and backfill/loop (by wall time and by CPU time); peak memory
at both sizes; and whether the tables agree. It exits 1 when they do not,
or when the backfill exits non-zero.

The parent imports nothing but the standard library, on purpose: on Linux a
child's `ru_maxrss` starts from the high-water mark of the process it was
forked from (it survives `exec`), so a parent holding Beam or an archive in
memory would inflate every child's figure. The parent's own peak is printed
so the floor is visible.

See bench/README.md for what each figure means and the last measurement.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.flags import FlagParser

PROJECT_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_EVENTS = 300_000
DEFAULT_SEED = 20250301
#: Records (Firehose records plus export lines) the generator writes per payment,
#: measured on its output (6.7 to 6.8 at every size tried); only used to size the
#: archive, the exact count is read back from truth.json.
RECORDS_PER_PAYMENT = 6.75
#: The smaller run is N / SCALE_DOWN events, to show whether memory grows with N.
SCALE_DOWN = 4
#: The backfill's goal: at least this fraction of the plain job's speed, whole process.
RATIO_TARGET = 0.5

RESULT_PREFIX = "BENCH_RESULT "
BACKFILL = "backfill"
PLAIN = "plain"
LOOP = "loop"
SIDES = (BACKFILL, PLAIN, LOOP)
COMPARE = "compare"


@dataclass(frozen=True)
class ArchiveInfo:
    """One generated archive and what truth.json says about it."""

    path: str
    payments: int
    seed: int
    firehose_records: int
    export_lines: int
    generate_seconds: float

    @property
    def records(self) -> int:
        return self.firehose_records + self.export_lines


@dataclass(frozen=True)
class ChildResult:
    """One side's whole process, as the parent saw it through `os.wait4`."""

    side: str
    records_read: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_kib: int
    exit_code: int

    @property
    def records_per_second(self) -> float:
        return self.records_read / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def cpu_us_per_record(self) -> float:
        return self.cpu_seconds / self.records_read * 1e6 if self.records_read else 0.0

    @property
    def peak_mib(self) -> float:
        return self.peak_rss_kib / 1024


@dataclass(frozen=True)
class TableCheck:
    """One table: rows in each side's output, and rows of one warehouse not in the other."""

    table: str
    backfill_rows: int
    plain_rows: int
    loop_rows: int
    only_in_backfill: int
    only_in_plain: int

    @property
    def agree(self) -> bool:
        return (
            self.only_in_backfill == 0
            and self.only_in_plain == 0
            and self.backfill_rows == self.plain_rows == self.loop_rows
        )


@dataclass(frozen=True)
class SizeResult:
    """Every side on one archive."""

    archive: ArchiveInfo
    sides: dict[str, ChildResult]
    tables: tuple[TableCheck, ...]

    def ratio(self, other: str, *, cpu: bool = False) -> float:
        """Backfill speed / `other`'s: records/s of the whole process, or CPU per record."""
        mine, theirs = self.sides[BACKFILL], self.sides[other]
        if cpu:
            return theirs.cpu_us_per_record / mine.cpu_us_per_record if mine.cpu_seconds else 0.0
        base = theirs.records_per_second
        return mine.records_per_second / base if base else 0.0

    @property
    def agree(self) -> bool:
        records = {side.records_read for side in self.sides.values()}
        return (
            self.sides[BACKFILL].exit_code == 0
            and len(records) == 1
            and bool(self.tables)
            and all(table.agree for table in self.tables)
        )


def _self_peak_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _report(value: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(value), flush=True)


def _archive_files(archive: Path) -> list[Path]:
    # What ReadArchive matches for a folder: everything below it.
    return sorted(path for path in archive.rglob("*") if path.is_file())


def run_loop(archive: Path) -> None:
    """The loop side: the core's pure functions in one loop, rows counted per table."""
    # Imported here, not at module level: the parent must stay small (module docstring).
    from collections import Counter

    from schemas.generate import table_of
    from schemas.records import PaymentAdjustment
    from schemas.rows import to_row
    from transforms.core.process import DEFAULT_CHARGE_WAIT
    from transforms.domain.events import SourceRecord, make_dead_letter
    from transforms.domain.facts import ClassifyError, Fact, classify
    from transforms.domain.fold import (
        PAYMENT_KEY,
        Unsettled,
        fold_event,
        fold_payment,
        join_key,
        unsettled_dead_letter,
    )
    from transforms.domain.mapping import build_records
    from transforms.domain.payment import Payment

    # `_decompressed` is private, but it is exactly how ReadArchive decompresses.
    from transforms.sources.archive import _decompressed as decompressed
    from transforms.sources.archive import split_records
    from transforms.sources.decode import DecodeError, decode_record

    charge_wait = int(DEFAULT_CHARGE_WAIT.total_seconds())
    rows: Counter[str] = Counter()

    def row(record: object) -> None:
        to_row(record)
        kind: type = type(record)
        rows[table_of(kind).name] += 1

    records = 0
    # The backfill's one shuffle, as a dict: every copy of every fact by join key.
    groups: dict[str, list[Fact | str]] = {}
    for path in _archive_files(archive):
        name = str(path)
        with path.open("rb") as raw:
            for span in split_records(decompressed(raw)):
                records += 1
                record = SourceRecord(data=span.data, source=f"{name}@{span.offset}")
                try:
                    event = decode_record(record)
                    fact = classify(event)
                except (DecodeError, ClassifyError) as error:
                    letter = make_dead_letter(
                        step="decode" if isinstance(error, DecodeError) else "classify",
                        reason=error.reason,
                        error=str(error),
                        raw=record.data.decode("utf-8", errors="replace"),
                        source=record.source,
                    )
                    row(letter)
                    continue
                key, value = join_key(event.id, fact)
                groups.setdefault(key, []).append(value)

    # The fold the backfill's FoldPayments applies, group by group.
    payments: list[Payment] = []
    adjustment_ids: set[str] = set()
    for key, values in groups.items():
        if key.startswith(PAYMENT_KEY):
            outcome = fold_payment(values, charge_wait).outcome  # type: ignore[arg-type]
        else:
            outcome = fold_event(values).outcome
        if isinstance(outcome, Payment):
            payments.append(outcome)
        elif isinstance(outcome, PaymentAdjustment):
            # The warehouse keeps one row per adjustment id (a refund's created and updated).
            if outcome.adjustment_id not in adjustment_ids:
                adjustment_ids.add(outcome.adjustment_id)
                row(outcome)
        elif isinstance(outcome, Unsettled):
            row(unsettled_dead_letter(outcome))

    for payment in payments:
        built = build_records(payment)
        row(built.contribution)
        for extra in (
            built.acquisition,
            built.acquisition_event,
            built.contribution_store,
            built.supporter,
            built.thank_you_email,
            built.soft_opt_in,
        ):
            if extra is not None:
                row(extra)
    _report({"records_read": records, "rows": dict(rows)})


def compare(backfill: Path, plain: Path) -> None:
    """Every table of the two warehouses: row counts, and rows of one missing from the other."""
    import duckdb

    from schemas.generate import table_of
    from schemas.records import ALL_RECORD_TYPES

    tables = {}
    with duckdb.connect() as connection:
        connection.execute(f"ATTACH '{backfill}' AS backfill (READ_ONLY)")
        connection.execute(f"ATTACH '{plain}' AS plain (READ_ONLY)")
        for record_type in ALL_RECORD_TYPES:
            name = table_of(record_type).name
            counts = []
            for query in (
                f'SELECT count(*) FROM backfill."{name}"',
                f'SELECT count(*) FROM plain."{name}"',
                f'SELECT count(*) FROM (FROM backfill."{name}" EXCEPT ALL FROM plain."{name}")',
                f'SELECT count(*) FROM (FROM plain."{name}" EXCEPT ALL FROM backfill."{name}")',
            ):
                found = connection.execute(query).fetchone()
                counts.append(int(found[0]) if found else -1)
            tables[name] = counts
    _report({"tables": tables})


def _records_read(output: str, who: str) -> int:
    """The `records read: N` line a side prints."""
    for line in output.splitlines():
        if line.startswith("records read: "):
            return int(line.removeprefix("records read: "))
    raise RuntimeError(f"the {who} printed no 'records read:' line")


# --------------------------------------------------------------------------- parent


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def payments_for(events: int) -> int:
    """Payments to ask the generator for, to get about `events` records."""
    return max(1, math.ceil(events / RECORDS_PER_PAYMENT))


def _truth_line(truth: Path, name: str) -> dict[str, Any]:
    """One top-level line of truth.json (`counts`, `generator`), without loading the rest."""
    with truth.open() as lines:
        for line in lines:
            if line.startswith(f'"{name}": '):
                value: dict[str, Any] = json.loads(line.removeprefix(f'"{name}": ').rstrip(",\n"))
                return value
    raise RuntimeError(f"{truth} has no {name} line")


def _generated(folder: Path, payments: int, seed: int) -> bool:
    """Whether `folder` already holds the archive of these generator arguments."""
    truth = folder / "truth.json"
    if not truth.is_file() or not (folder / "archive").is_dir():
        return False
    arguments = _truth_line(truth, "generator")
    return bool(arguments.get("payments") == payments and arguments.get("seed") == seed)


def generate(events: int, seed: int, folder: Path, *, reuse: bool = False) -> ArchiveInfo:
    """An archive of about `events` records under `folder`/archive: fresh, or kept if `reuse`."""
    payments = payments_for(events)
    archive = folder / "archive"
    began = time.perf_counter()
    if reuse and _generated(folder, payments, seed):
        _progress(f"reusing the archive of {payments:,} payments in {archive}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
        _progress(f"generating {payments:,} payments (about {events:,} records) into {archive}")
        subprocess.run(
            [sys.executable, "-m", "tools.generate_archive", "--out", str(archive)]
            + ["--payments", str(payments), "--seed", str(seed)],
            cwd=PROJECT_ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    counts = _truth_line(folder / "truth.json", "counts")
    return ArchiveInfo(
        path=str(archive),
        payments=payments,
        seed=seed,
        firehose_records=int(counts["records"]),
        export_lines=int(counts.get("exports", {}).get("lines", 0)),
        generate_seconds=time.perf_counter() - began,
    )


def _fresh(warehouse: Path) -> Path:
    for leftover in (warehouse, warehouse.with_name(warehouse.name + ".wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(warehouse.with_name(warehouse.name + ".staging"), ignore_errors=True)
    return warehouse


def _command(side: str, archive: Path, folder: Path) -> list[str]:
    if side == BACKFILL:
        warehouse = _fresh(folder / "backfill.duckdb")
        return ["-m", "pipelines.backfill", "--source", str(archive), "--warehouse", str(warehouse)]
    if side == PLAIN:
        warehouse = _fresh(folder / "plain.duckdb")
        return ["-m", "bench.plain", "--archive", str(archive), "--warehouse", str(warehouse)]
    return ["-m", "bench.backfill", "--child", LOOP, "--archive", str(archive)]


def _run(name: str, arguments: list[str], folder: Path) -> tuple[str, int, float, Any]:
    """Runs `python <arguments>`; (stdout, exit code, wall seconds, rusage of that child)."""
    out_path, err_path = folder / f"{name}.stdout.log", folder / f"{name}.stderr.log"
    began = time.perf_counter()
    with out_path.open("w") as out, err_path.open("w") as err:
        child = subprocess.Popen(
            [sys.executable, *arguments], cwd=PROJECT_ROOT, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    return out_path.read_text(), child.returncode, wall, usage


def run_child(side: str, archive: Path, folder: Path) -> tuple[ChildResult, dict[str, int]]:
    """Runs one side as a whole process; its figures, and the loop's rows per table."""
    _progress(f"running the {side}")
    output, code, wall, usage = _run(side, _command(side, archive, folder), folder)
    if code != 0 and side != BACKFILL:
        tail = "\n".join((folder / f"{side}.stderr.log").read_text().splitlines()[-20:])
        raise RuntimeError(f"the {side} child failed (exit {code}):\n{tail}")
    rows: dict[str, int] = {}
    if side == LOOP:
        reported = json.loads(output.splitlines()[-1].removeprefix(RESULT_PREFIX))
        records, rows = int(reported["records_read"]), reported["rows"]
    else:
        records = _records_read(output, side)
    result = ChildResult(
        side=side,
        records_read=records,
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_kib=int(usage.ru_maxrss),
        exit_code=code,
    )
    return result, rows


def check_tables(folder: Path, loop_rows: dict[str, int]) -> tuple[TableCheck, ...]:
    arguments = ["-m", "bench.backfill", "--child", COMPARE, "--archive", str(folder)]
    output, code, _, _ = _run(COMPARE, arguments, folder)
    if code != 0:
        raise RuntimeError(f"comparing the warehouses failed; see {folder}/compare.stderr.log")
    tables = json.loads(output.splitlines()[-1].removeprefix(RESULT_PREFIX))["tables"]
    return tuple(
        TableCheck(name, backfill, plain, loop_rows.get(name, 0), only_backfill, only_plain)
        for name, (backfill, plain, only_backfill, only_plain) in tables.items()
    )


def bench_size(events: int, seed: int, workdir: Path, *, reuse: bool = False) -> SizeResult:
    folder = workdir / f"events-{events}"
    info = generate(events, seed, folder, reuse=reuse)
    _progress(
        f"archive of {info.records:,} records ({info.firehose_records:,} Firehose records "
        f"+ {info.export_lines:,} export lines), generated in {info.generate_seconds:.1f}s"
    )
    archive = Path(info.path)
    sides: dict[str, ChildResult] = {}
    loop_rows: dict[str, int] = {}
    for side in SIDES:
        sides[side], rows = run_child(side, archive, folder)
        loop_rows = rows or loop_rows
    return SizeResult(archive=info, sides=sides, tables=check_tables(folder, loop_rows))


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "apache_beam": metadata.version("apache-beam"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def as_json(sizes: Sequence[SizeResult], total_seconds: float) -> dict[str, Any]:
    def side(result: ChildResult) -> dict[str, Any]:
        return {
            **asdict(result),
            "records_per_second": round(result.records_per_second, 1),
            "cpu_us_per_record": round(result.cpu_us_per_record, 1),
            "peak_mib": round(result.peak_mib, 1),
        }

    return {
        "machine": machine(),
        "parent_peak_rss_kib": _self_peak_kib(),
        "total_seconds": round(total_seconds, 1),
        "sizes": [
            {
                "archive": {**asdict(size.archive), "records": size.archive.records},
                "sides": {name: side(result) for name, result in size.sides.items()},
                "ratios": {
                    f"backfill/{other}": {
                        "wall": round(size.ratio(other), 4),
                        "cpu": round(size.ratio(other, cpu=True), 4),
                    }
                    for other in (PLAIN, LOOP)
                },
                "tables": [asdict(table) for table in size.tables],
                "agree": size.agree,
            }
            for size in sizes
        ],
    }


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]


def render(sizes: Sequence[SizeResult], total_seconds: float) -> str:
    rows: list[tuple[str, ...]] = [
        ("side", "records", "wall s", "cpu s", "records/s", "cpu µs/record", "peak MiB")
    ]
    for size in sizes:
        for result in size.sides.values():
            rows.append(
                (
                    result.side,
                    f"{result.records_read:,}",
                    f"{result.wall_seconds:.1f}",
                    f"{result.cpu_seconds:.1f}",
                    f"{result.records_per_second:,.0f}",
                    f"{result.cpu_us_per_record:.0f}",
                    f"{result.peak_mib:.0f}",
                )
            )
    out = _table(rows)
    for size in sizes:
        for other in (PLAIN, LOOP):
            wall = size.ratio(other)
            out.append(
                f"ratio backfill/{other} at {size.archive.records:,} records: {wall:.3f} "
                f"(by CPU time {size.ratio(other, cpu=True):.3f})"
                + (
                    f" below {RATIO_TARGET}: profile it"
                    if other == PLAIN and wall < RATIO_TARGET
                    else ""
                )
            )
    if len(sizes) == 2:
        big, small = sizes
        for name in SIDES:
            peak_big, peak_small = big.sides[name].peak_mib, small.sides[name].peak_mib
            growth = big.archive.records / small.archive.records
            out.append(
                f"{name} peak memory: {peak_small:.0f} MiB at {small.archive.records:,} records, "
                f"{peak_big:.0f} MiB at {big.archive.records:,} "
                f"(x{peak_big / peak_small:.2f} for x{growth:.1f} records)"
            )
    for size in sizes:
        bad = [t.table for t in size.tables if not t.agree]
        rows_total = sum(t.backfill_rows for t in size.tables)
        verdict = (
            f"the three sides agree on all {len(size.tables)} tables ({rows_total:,} rows)"
            if size.agree
            else "DISAGREE on " + (", ".join(bad) or "records read or the backfill's exit code")
        )
        out.append(f"tables at {size.archive.records:,} records: {verdict}")
    info = machine()
    out.append(
        f"{info['cpus']} CPUs, load average {info['load_average']}, Python {info['python']}, "
        f"Beam {info['apache_beam']}, {info['date']}; parent peak "
        f"{_self_peak_kib() / 1024:.0f} MiB; whole bench {total_seconds:.0f}s"
    )
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    parser = FlagParser(
        prog="python -m bench.backfill",
        description=(__doc__ or "").split("\n\n", 1)[0],
    )
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        help="About how many records the large archive holds; the small one holds a "
        f"quarter. Default: {DEFAULT_EVENTS:,}.",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="Generator seed; the same seed and size give the same archive. Default: %(default)s.",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="Folder for the archives, warehouses and child logs (kept). "
        "Default: a temporary folder, removed at the end.",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="With --workdir: keep an archive already generated there with the same size and "
        "seed instead of generating it again.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="Print the figures as one JSON document instead of the table.",
    )
    parser.add_argument(
        "--child",
        choices=(LOOP, COMPARE),
        default=None,
        help=f"Internal: run the loop side on --archive, or compare the warehouses in the "
        f"--archive folder, and print one '{RESULT_PREFIX.strip()} {{json}}' line. "
        "The parent passes it.",
    )
    parser.add_argument(
        "--archive",
        type=Path,
        default=None,
        help="Internal, with --child: the archive (loop) or the size's folder (compare).",
    )
    return parser


@contextlib.contextmanager
def _workdir(given: Path | None) -> Iterator[Path]:
    """The given folder (kept), or a temporary one removed on exit."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as temporary:
        yield Path(temporary)


def compile_sources() -> None:
    """Byte-compiles the project's modules before any side runs, as an installed
    package (the Docker image) has them. Where PYTHONDONTWRITEBYTECODE is set
    (as on the machine of the README's figures) nothing else writes them, and
    every child would compile what it imports again: 0.04-0.10 s per run."""
    for package in ("pipelines", "transforms", "schemas", "bench", "tools"):
        compileall.compile_dir(PROJECT_ROOT / package, quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.child is not None:
        if args.archive is None:
            parser.error("--child needs --archive")
        if args.child == LOOP:
            run_loop(args.archive)
        else:
            compare(args.archive / "backfill.duckdb", args.archive / "plain.duckdb")
        return 0
    if args.events < SCALE_DOWN * 10:
        parser.error(f"--events must be at least {SCALE_DOWN * 10}")
    if args.reuse and args.workdir is None:
        parser.error("--reuse needs --workdir")

    began = time.perf_counter()
    compile_sources()
    with _workdir(args.workdir) as workdir:
        sizes = [
            bench_size(events, args.seed, workdir, reuse=args.reuse)
            for events in (args.events, args.events // SCALE_DOWN)
        ]
    total = time.perf_counter() - began
    if args.json:
        print(json.dumps(as_json(sizes, total), indent=2))
    else:
        print(render(sizes, total))
    return 0 if all(size.agree for size in sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
