"""How far the archive read has got, for a progress line while a backfill runs.

One process-wide `ReadProgress` (`PROGRESS`): the archive's listing step adds
each matched file and its size, the file reader adds each file read and its
records. On the local FnApiRunner the workers are threads of the launching
process, so the launcher can print it while the job runs
(`pipelines.progress`); on a remote runner every worker has its own copy that
nobody reads, and the cost stays the same: one locked update per file listed
and per `RECORDS_PER_UPDATE` records read, never one per record.

It is reporting only: the run's counts of record are Beam's counters, which
the summary reads; a retried bundle may count its files here twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

#: Records a file reader counts locally before it adds them to `PROGRESS`.
RECORDS_PER_UPDATE = 5_000


@dataclass(frozen=True)
class ProgressSnapshot:
    """The read's progress at one moment."""

    files_matched: int = 0
    bytes_matched: int = 0
    files_read: int = 0
    bytes_read: int = 0
    records_read: int = 0


class ReadProgress:
    """Thread-safe totals of the archive read in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = ProgressSnapshot()

    def reset(self) -> None:
        with self._lock:
            self._state = ProgressSnapshot()

    def file_matched(self, size_in_bytes: int) -> None:
        with self._lock:
            state = self._state
            self._state = ProgressSnapshot(
                state.files_matched + 1,
                state.bytes_matched + size_in_bytes,
                state.files_read,
                state.bytes_read,
                state.records_read,
            )

    def records(self, count: int) -> None:
        with self._lock:
            state = self._state
            self._state = ProgressSnapshot(
                state.files_matched,
                state.bytes_matched,
                state.files_read,
                state.bytes_read,
                state.records_read + count,
            )

    def file_read(self, size_in_bytes: int, records: int) -> None:
        """A file read to its end (or to its read error), with its last uncounted records."""
        with self._lock:
            state = self._state
            self._state = ProgressSnapshot(
                state.files_matched,
                state.bytes_matched,
                state.files_read + 1,
                state.bytes_read + size_in_bytes,
                state.records_read + records,
            )

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            return self._state


#: The process's read progress (see the module docstring).
PROGRESS = ReadProgress()
