"""The backfill's progress line on stderr, while a local run reads the archive.

    progress: 3/12 files, 1.5/6.0 MB (25%), 4512 records, 902 records/s,
    elapsed 0:00:05, ETA 0:00:15     (one line)

It prints `transforms.sources.progress.PROGRESS`, which the archive read
updates per file (and every few thousand records within a file). On a
terminal the line is rewritten in place (`\\r`) every second; when stderr is
not a terminal (a log file, CI) a line is printed every `interval_s` seconds
(`--progress_interval_s`, default 30; 0 turns progress off), so logs get a
line per interval rather than one per second. A last line is printed when
the run ends. The ETA is the read's: the remaining matched bytes at the rate
bytes were read so far (compressed sizes, as the archive listing gives them);
grouping and loading finish after it. Local runners only: on Dataflow the
workers are other machines and their progress is the job's page.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from transforms.sources.progress import ProgressSnapshot, ReadProgress

#: How often a terminal's line is rewritten.
TERMINAL_REFRESH_S = 1.0


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def progress_line(snapshot: ProgressSnapshot, elapsed_s: float) -> str:
    """One line of progress (no newline); the ETA is `?` until a byte has been read."""
    percent = snapshot.bytes_read * 100 // snapshot.bytes_matched if snapshot.bytes_matched else 0
    rate = snapshot.records_read / elapsed_s if elapsed_s > 0 else 0.0
    if snapshot.bytes_read and elapsed_s > 0:
        remaining = max(snapshot.bytes_matched - snapshot.bytes_read, 0)
        eta = _duration(elapsed_s * remaining / snapshot.bytes_read)
    else:
        eta = "?"
    return (
        f"progress: {snapshot.files_read}/{snapshot.files_matched} files, "
        f"{snapshot.bytes_read / 1e6:.1f}/{snapshot.bytes_matched / 1e6:.1f} MB ({percent}%), "
        f"{snapshot.records_read} records, {rate:.0f} records/s, "
        f"elapsed {_duration(elapsed_s)}, ETA {eta}"
    )


class ProgressPrinter:
    """Prints `progress_line`s of a `ReadProgress` to a stream; `tick()` when due, `close()`.

    `terminal`: rewrite one line in place on every tick; otherwise print a
    line when `interval_s` has passed since the last one. The clock is
    injected so tests drive it.
    """

    def __init__(
        self,
        progress: ReadProgress,
        stream: TextIO,
        *,
        terminal: bool,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress = progress
        self._stream = stream
        self._terminal = terminal
        self._interval_s = interval_s
        self._clock = clock
        self._started = clock()
        self._last_printed = self._started
        self._width = 0

    def tick(self) -> None:
        now = self._clock()
        if not self._terminal and now - self._last_printed < self._interval_s:
            return
        self._print(now)

    def close(self) -> None:
        """The last line; on a terminal it ends the rewritten line."""
        self._print(self._clock())
        if self._terminal:
            self._stream.write("\n")
            self._stream.flush()

    def _print(self, now: float) -> None:
        self._last_printed = now
        line = progress_line(self._progress.snapshot(), now - self._started)
        if self._terminal:
            # Pad over a longer previous line; no terminal escape codes needed.
            self._stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


@contextmanager
def printing_progress(
    progress: ReadProgress, stream: TextIO, interval_s: float
) -> Iterator[ProgressPrinter | None]:
    """Prints the progress from a daemon thread while the block runs (off when interval_s is 0)."""
    if interval_s <= 0:
        yield None
        return
    terminal = stream.isatty()
    printer = ProgressPrinter(progress, stream, terminal=terminal, interval_s=interval_s)
    stop = threading.Event()
    refresh = TERMINAL_REFRESH_S if terminal else min(interval_s, TERMINAL_REFRESH_S)

    def loop() -> None:
        while not stop.wait(refresh):
            printer.tick()

    thread = threading.Thread(target=loop, name="progress", daemon=True)
    thread.start()
    try:
        yield printer
    finally:
        stop.set()
        thread.join()
        printer.close()
