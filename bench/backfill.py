"""Benchmark the backfill against a plain-Python loop over the same pure functions.

    python -m bench.backfill                    # 200,000 events, then 50,000
    python -m bench.backfill --events 40000 --seed 3 --workdir out/bench --json

For each size (N events, then N/4) it generates an archive with
`tools.generate_archive` and runs two sides on it, one after the other, each
in a child process of its own:

- backfill: `pipelines.backfill.run(["--source", <archive>, "--warehouse",
  <fresh .duckdb>])`, the real job on the default FnApiRunner (grouping on
  disk, as `--shuffle auto` does locally), including the DuckDB load and its
  end-of-run summary;
- baseline: a single-threaded loop over the functions the core adapts: read
  every file (`split_records`), `decode_record`, `classify`, group every fact
  by `join_key` in a dict, fold each group with `fold_payment` / `fold_event`
  (`transforms.domain.fold`, the backfill's own fold and best-copy choice),
  `build_records`, and `to_row` for every record. It does no IO besides reading the archive and
  pays for no runner (no coders, shuffles, bundles, metrics or state), so it
  is the practical upper limit of the backfill on one core.

Each child prints one line `BENCH_RESULT {json}`: its wall and CPU time (the work
only, imports excluded), records read, contributions produced (the backfill's
from its warehouse `contributions` table), and its peak RSS from
`getrusage` at exit (itself, and separately its own children, if any). The
parent prints records per second for both sides, their ratio, peak memory at
both sizes, and exits 1 if the two sides disagree on records read or on
contributions.

The parent imports nothing but the standard library, on purpose: on Linux a
child's `ru_maxrss` starts from the high-water mark of the process it was
forked from (it survives `exec`), so a parent holding Beam or an archive in
memory would inflate both children's figures. The parent's own peak is
printed so the floor is visible.

See bench/README.md for what each figure means and the last measurement.
"""

from __future__ import annotations

import argparse
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

PROJECT_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_EVENTS = 200_000
DEFAULT_SEED = 20250301
#: Records (Firehose records plus export lines) the generator writes per payment,
#: measured on its output (6.7 to 6.8 at every size tried); only used to size the
#: archive, the exact count is read back from truth.json.
RECORDS_PER_PAYMENT = 6.75
#: The smaller run is N / SCALE_DOWN events, to show whether memory grows with N.
SCALE_DOWN = 4
#: Below this backfill/baseline ratio the README asks for a profile.
RATIO_TARGET = 0.5

RESULT_PREFIX = "BENCH_RESULT "
BASELINE = "baseline"
BACKFILL = "backfill"
SIDES = (BASELINE, BACKFILL)


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
    """What one side reported, plus what the parent saw of its process."""

    side: str
    wall_seconds: float
    cpu_seconds: float
    records_read: int
    contributions: int
    peak_rss_kib: int
    children_peak_rss_kib: int
    rss_after_imports_kib: int
    exit_code: int
    process_seconds: float

    @property
    def records_per_second(self) -> float:
        return self.records_read / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def peak_mib(self) -> float:
        # Self plus the largest child: an upper bound, the two need not peak together.
        return (self.peak_rss_kib + self.children_peak_rss_kib) / 1024


@dataclass(frozen=True)
class SizeResult:
    """Both sides on one archive."""

    archive: ArchiveInfo
    baseline: ChildResult
    backfill: ChildResult

    @property
    def ratio(self) -> float:
        base = self.baseline.records_per_second
        return self.backfill.records_per_second / base if base else 0.0

    @property
    def agree(self) -> bool:
        return (
            self.baseline.contributions == self.backfill.contributions
            and self.baseline.records_read == self.backfill.records_read == self.archive.records
            and self.backfill.exit_code == 0
        )


# --------------------------------------------------------------------------- children


def _self_peak_kib() -> int:
    # Linux reports ru_maxrss in KiB.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _cpu_seconds() -> float:
    """User plus system CPU time of this process and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _report(
    *,
    side: str,
    wall: float,
    cpu: float,
    records: int,
    contributions: int,
    after_imports: int,
    code: int = 0,
) -> None:
    """Prints the child's one result line; called last, so the peaks are final."""
    result = {
        "side": side,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "records_read": records,
        "contributions": contributions,
        "peak_rss_kib": _self_peak_kib(),
        "children_peak_rss_kib": int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
        "rss_after_imports_kib": after_imports,
        "exit_code": code,
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def _archive_files(archive: Path) -> list[Path]:
    # What ReadArchive matches for a folder: everything below it.
    return sorted(path for path in archive.rglob("*") if path.is_file())


def run_baseline(archive: Path) -> None:
    """The baseline side: the core's pure functions in one loop, in this process."""
    # Imported here, not at module level: the parent must stay small (module docstring).
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

    after_imports = _self_peak_kib()
    charge_wait = int(DEFAULT_CHARGE_WAIT.total_seconds())

    began, cpu_began = time.perf_counter(), _cpu_seconds()
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
                    to_row(letter)
                    continue
                key, value = join_key(event.id, fact)
                groups.setdefault(key, []).append(value)

    # The fold the backfill's FoldPayments applies, group by group.
    payments: list[Payment] = []
    for key, values in groups.items():
        if key.startswith(PAYMENT_KEY):
            outcome = fold_payment(values, charge_wait).outcome  # type: ignore[arg-type]
        else:
            outcome = fold_event(values).outcome
        if isinstance(outcome, Payment):
            payments.append(outcome)
        elif isinstance(outcome, PaymentAdjustment):
            to_row(outcome)
        elif isinstance(outcome, Unsettled):
            to_row(unsettled_dead_letter(outcome))

    contributions = 0
    for payment in payments:
        built = build_records(payment)
        contributions += 1
        to_row(built.contribution)
        for extra in (
            built.acquisition,
            built.contribution_store,
            built.supporter,
            built.thank_you_email,
            built.soft_opt_in,
        ):
            if extra is not None:
                to_row(extra)
    wall, cpu = time.perf_counter() - began, _cpu_seconds() - cpu_began
    _report(
        side=BASELINE,
        wall=wall,
        cpu=cpu,
        records=records,
        contributions=contributions,
        after_imports=after_imports,
    )


def run_backfill(archive: Path, warehouse: Path, log: Path) -> None:
    """The backfill side: `pipelines.backfill.run` in this process, output to `log`."""
    import duckdb

    from pipelines import backfill
    from schemas.records import Contribution

    after_imports = _self_peak_kib()
    for leftover in (warehouse, warehouse.with_name(warehouse.name + ".wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(warehouse.with_name(warehouse.name + ".staging"), ignore_errors=True)
    argv = ["--source", str(archive), "--warehouse", str(warehouse)]
    began, cpu_began = time.perf_counter(), _cpu_seconds()
    with log.open("w") as out, contextlib.redirect_stdout(out):
        code = backfill.run(argv)
    wall, cpu = time.perf_counter() - began, _cpu_seconds() - cpu_began
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        found = connection.execute(f'SELECT count(*) FROM "{Contribution.TABLE.name}"').fetchone()
    _report(
        side=BACKFILL,
        wall=wall,
        cpu=cpu,
        records=_records_read(log.read_text()),
        contributions=int(found[0]) if found else 0,
        after_imports=after_imports,
        code=code,
    )


def _records_read(summary: str) -> int:
    """The `records read: N` line of the backfill's end-of-run summary."""
    for line in summary.splitlines():
        if line.startswith("records read: "):
            return int(line.removeprefix("records read: "))
    raise RuntimeError("the backfill printed no 'records read:' line; see its log")


# --------------------------------------------------------------------------- parent


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def payments_for(events: int) -> int:
    """Payments to ask the generator for, to get about `events` records."""
    return max(1, math.ceil(events / RECORDS_PER_PAYMENT))


def _truth_counts(truth: Path) -> dict[str, Any]:
    """The `counts` line of truth.json, without loading its one-line-per-payment list."""
    with truth.open() as lines:
        for line in lines:
            if line.startswith('"counts": '):
                value: dict[str, Any] = json.loads(line.removeprefix('"counts": ').rstrip(",\n"))
                return value
    raise RuntimeError(f"{truth} has no counts line")


def generate(events: int, seed: int, folder: Path) -> ArchiveInfo:
    """A fresh archive of about `events` records under `folder`/archive."""
    payments = payments_for(events)
    shutil.rmtree(folder, ignore_errors=True)
    archive = folder / "archive"
    _progress(f"generating {payments:,} payments (about {events:,} records) into {archive}")
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tools.generate_archive", "--out", str(archive)]
        + ["--payments", str(payments), "--seed", str(seed)],
        cwd=PROJECT_ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    counts = _truth_counts(folder / "truth.json")
    return ArchiveInfo(
        path=str(archive),
        payments=payments,
        seed=seed,
        firehose_records=int(counts["records"]),
        export_lines=int(counts.get("exports", {}).get("lines", 0)),
        generate_seconds=time.perf_counter() - began,
    )


def run_child(side: str, archive: Path, folder: Path) -> ChildResult:
    """Runs one side in a child process and parses its result line."""
    command = [sys.executable, "-m", "bench.backfill", "--child", side, "--archive", str(archive)]
    if side == BACKFILL:
        command += ["--warehouse", str(folder / "warehouse.duckdb")]
    stderr_log = folder / f"{side}.stderr.log"
    _progress(f"running the {side}")
    began = time.perf_counter()
    with stderr_log.open("w") as errors:
        done = subprocess.run(
            command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=errors, text=True
        )
    process_seconds = time.perf_counter() - began
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = "\n".join(stderr_log.read_text().splitlines()[-20:])
        raise RuntimeError(f"the {side} child failed (exit {done.returncode}):\n{tail}")
    reported = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    return ChildResult(**reported, process_seconds=process_seconds)


def bench_size(events: int, seed: int, workdir: Path) -> SizeResult:
    folder = workdir / f"events-{events}"
    info = generate(events, seed, folder)
    _progress(
        f"generated {info.records:,} records ({info.firehose_records:,} Firehose records "
        f"+ {info.export_lines:,} export lines) in {info.generate_seconds:.1f}s"
    )
    archive = Path(info.path)
    baseline = run_child(BASELINE, archive, folder)
    backfill = run_child(BACKFILL, archive, folder)
    return SizeResult(archive=info, baseline=baseline, backfill=backfill)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
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
            "peak_mib": round(result.peak_mib, 1),
        }

    return {
        "machine": machine(),
        "parent_peak_rss_kib": _self_peak_kib(),
        "total_seconds": round(total_seconds, 1),
        "sizes": [
            {
                "archive": {**asdict(size.archive), "records": size.archive.records},
                "baseline": side(size.baseline),
                "backfill": side(size.backfill),
                "ratio": round(size.ratio, 4),
                "agree": size.agree,
            }
            for size in sizes
        ],
    }


def _rows(sizes: Sequence[SizeResult]) -> Iterator[tuple[str, ...]]:
    yield (
        "side",
        "records",
        "wall s",
        "cpu s",
        "records/s",
        "peak MiB",
        "imports MiB",
        "contributions",
    )
    for size in sizes:
        for result in (size.baseline, size.backfill):
            yield (
                result.side,
                f"{result.records_read:,}",
                f"{result.wall_seconds:.1f}",
                f"{result.cpu_seconds:.1f}",
                f"{result.records_per_second:,.0f}",
                f"{result.peak_mib:.0f}",
                f"{result.rss_after_imports_kib / 1024:.0f}",
                f"{result.contributions:,}",
            )


def render(sizes: Sequence[SizeResult], total_seconds: float) -> str:
    rows = list(_rows(sizes))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    out = list(lines)
    for size in sizes:
        out.append(
            f"ratio backfill/baseline at {size.archive.records:,} records: {size.ratio:.3f}"
            + ("" if size.ratio >= RATIO_TARGET else f" (below {RATIO_TARGET}: profile it)")
        )
    if len(sizes) == 2:
        big, small = sizes
        for name in SIDES:
            peak_big = getattr(big, name).peak_mib
            peak_small = getattr(small, name).peak_mib
            growth = big.archive.records / small.archive.records
            out.append(
                f"{name} peak memory: {peak_small:.0f} MiB at {small.archive.records:,} records, "
                f"{peak_big:.0f} MiB at {big.archive.records:,} "
                f"(x{peak_big / peak_small:.2f} for x{growth:.1f} records)"
            )
    for size in sizes:
        verdict = "agree" if size.agree else "DISAGREE"
        out.append(
            f"contributions at {size.archive.records:,} records: baseline "
            f"{size.baseline.contributions:,}, backfill {size.backfill.contributions:,}: {verdict}"
        )
    info = machine()
    out.append(
        f"{info['cpus']} CPUs, Python {info['python']}, Beam {info['apache_beam']}, "
        f"{info['date']}; parent peak {_self_peak_kib() / 1024:.0f} MiB; "
        f"whole bench {total_seconds:.0f}s"
    )
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        "--json",
        action="store_true",
        help="Print the figures as one JSON document instead of the table.",
    )
    parser.add_argument(
        "--child",
        choices=SIDES,
        default=None,
        help="Internal: run one side in this process on --archive and print its "
        f"'{RESULT_PREFIX.strip()} {{json}}' line. The parent passes it.",
    )
    parser.add_argument(
        "--archive", type=Path, default=None, help="Internal, with --child: the archive folder."
    )
    parser.add_argument(
        "--warehouse",
        type=Path,
        default=None,
        help="Internal, with --child backfill: the DuckDB file to (re)create; its log goes "
        "next to it.",
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.child is not None:
        if args.archive is None:
            parser.error("--child needs --archive")
        if args.child == BASELINE:
            run_baseline(args.archive)
        else:
            if args.warehouse is None:
                parser.error("--child backfill needs --warehouse")
            run_backfill(args.archive, args.warehouse, args.warehouse.with_suffix(".log"))
        return 0
    if args.events < SCALE_DOWN * 10:
        parser.error(f"--events must be at least {SCALE_DOWN * 10}")

    began = time.perf_counter()
    with _workdir(args.workdir) as workdir:
        sizes = [
            bench_size(events, args.seed, workdir)
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
