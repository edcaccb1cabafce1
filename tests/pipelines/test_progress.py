"""The backfill's progress line: exact text, in place on a terminal, periodic otherwise."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines import backfill
from pipelines.progress import ProgressPrinter, printing_progress, progress_line
from tools.generate_archive import generate, write_archive
from transforms.sources.progress import ProgressSnapshot, ReadProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("snapshot", "elapsed", "line"),
    [
        (
            ProgressSnapshot(),
            0.0,
            "progress: 0/0 files, 0.0/0.0 MB (0%), 0 records, 0 records/s, elapsed 0:00:00, ETA ?",
        ),
        (
            ProgressSnapshot(12, 6_000_000, 0, 0, 0),
            4.0,
            "progress: 0/12 files, 0.0/6.0 MB (0%), 0 records, 0 records/s, elapsed 0:00:04, ETA ?",
        ),
        (
            ProgressSnapshot(12, 6_000_000, 3, 1_500_000, 4512),
            5.0,
            "progress: 3/12 files, 1.5/6.0 MB (25%), 4512 records, 902 records/s, "
            "elapsed 0:00:05, ETA 0:00:15",
        ),
        (
            ProgressSnapshot(2, 1_000, 2, 1_000, 10),
            3725.0,
            "progress: 2/2 files, 0.0/0.0 MB (100%), 10 records, 0 records/s, "
            "elapsed 1:02:05, ETA 0:00:00",
        ),
    ],
    ids=["nothing-yet", "listed-not-read", "a-quarter", "done"],
)
def test_progress_line(snapshot: ProgressSnapshot, elapsed: float, line: str) -> None:
    assert progress_line(snapshot, elapsed) == line


def test_read_progress_adds_files_and_records() -> None:
    progress = ReadProgress()
    progress.file_matched(100)
    progress.file_matched(50)
    progress.records(5_000)
    progress.file_read(100, 7)
    assert progress.snapshot() == ProgressSnapshot(2, 150, 1, 100, 5_007)
    progress.reset()
    assert progress.snapshot() == ProgressSnapshot()


def test_not_a_terminal_prints_a_line_per_interval_and_a_last_one() -> None:
    progress, stream, clock = ReadProgress(), io.StringIO(), FakeClock()
    printer = ProgressPrinter(progress, stream, terminal=False, interval_s=30, clock=clock)
    progress.file_matched(2_000_000)
    clock.now += 29
    printer.tick()
    assert stream.getvalue() == ""
    progress.file_read(1_000_000, 300)
    clock.now += 1
    printer.tick()
    clock.now += 10
    printer.tick()
    progress.file_read(1_000_000, 100)
    clock.now += 10
    printer.close()
    assert stream.getvalue().splitlines() == [
        "progress: 1/1 files, 1.0/2.0 MB (50%), 300 records, 10 records/s, "
        "elapsed 0:00:30, ETA 0:00:30",
        "progress: 2/1 files, 2.0/2.0 MB (100%), 400 records, 8 records/s, "
        "elapsed 0:00:50, ETA 0:00:00",
    ]


def test_a_terminal_rewrites_one_line_in_place() -> None:
    progress, stream, clock = ReadProgress(), io.StringIO(), FakeClock()
    printer = ProgressPrinter(progress, stream, terminal=True, interval_s=30, clock=clock)
    progress.file_matched(10_000_000)
    progress.file_read(10_000_000, 12_345)
    clock.now += 1
    printer.tick()
    progress.reset()
    clock.now += 1
    printer.tick()
    printer.close()
    first = (
        "progress: 1/1 files, 10.0/10.0 MB (100%), 12345 records, 12345 records/s, "
        "elapsed 0:00:01, ETA 0:00:00"
    )
    second = "progress: 0/0 files, 0.0/0.0 MB (0%), 0 records, 0 records/s, elapsed 0:00:02, ETA ?"
    assert stream.getvalue() == (
        f"\r{first}\r{second.ljust(len(first))}\r{second.ljust(len(second))}\n"
    )


def test_an_interval_of_zero_prints_nothing() -> None:
    stream = io.StringIO()
    with printing_progress(ReadProgress(), stream, 0) as printer:
        assert printer is None
    assert stream.getvalue() == ""


def test_the_printing_thread_ends_with_the_last_line() -> None:
    stream = io.StringIO()  # not a terminal; the interval is far longer than the block
    progress = ReadProgress()
    with printing_progress(progress, stream, 3600) as printer:
        assert printer is not None
        progress.file_matched(10)
        progress.file_read(10, 1)
    [line] = stream.getvalue().splitlines()
    assert line.startswith("progress: 1/1 files, 0.0/0.0 MB (100%), 1 records, ")
    assert line.endswith(", ETA 0:00:00")


def test_a_local_backfill_ends_its_progress_with_every_file_and_record(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    write_archive(
        generate(payments=4, seed=3, start=datetime(2025, 5, 1, tzinfo=UTC)), tmp_path / "archive"
    )
    files = [path for path in (tmp_path / "archive").rglob("*") if path.is_file()]
    megabytes = sum(path.stat().st_size for path in files) / 1e6

    code = backfill.run(
        ["--source", str(tmp_path / "archive"), "--warehouse", str(tmp_path / "w.duckdb")]
    )

    out, err = capfd.readouterr()
    read = int(out.splitlines()[0].removeprefix("records read: "))
    [line] = [line for line in err.splitlines() if line.startswith("progress: ")]
    assert code == 0
    assert line.startswith(
        f"progress: {len(files)}/{len(files)} files, {megabytes:.1f}/{megabytes:.1f} MB (100%), "
        f"{read} records, "
    )
    assert line.endswith(", ETA 0:00:00")


def test_progress_interval_0_prints_no_progress(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    write_archive(
        generate(payments=1, seed=3, start=datetime(2025, 5, 1, tzinfo=UTC)), tmp_path / "archive"
    )
    code = backfill.run(
        [
            "--source",
            str(tmp_path / "archive"),
            "--warehouse",
            str(tmp_path / "w.duckdb"),
            "--progress_interval_s",
            "0",
        ]
    )
    assert code == 0
    assert "progress: " not in capfd.readouterr().err
