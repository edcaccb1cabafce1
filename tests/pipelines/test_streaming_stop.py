"""A local streaming run with no bound stops on SIGINT or SIGTERM, loads what it read, reports.

The job runs as a subprocess (the FnApiRunner, unbounded read) against a
moto Kinesis stream holding a few payments' records. The test waits, with a
deadline, for the job's progress line saying every record was read, then
signals it: the job must exit 0 with the summary on stdout and every
payment in the DuckDB warehouse. A second signal aborts at once.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.moto_server import MotoServer
from tests.pipelines.expected import (
    CURRENT_CONTRIBUTIONS_SQL,
    expected_contributions,
    rows,
)
from tools.generate_archive import generate
from tools.put_on_kinesis import create_stream, kinesis_client, put_records

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAYMENTS = 5
SEED = 1
READ_DEADLINE_S = 90.0
EXIT_DEADLINE_S = 120.0


@dataclass(frozen=True)
class Stream:
    name: str
    records: int
    truth: dict[str, Any]


@pytest.fixture(scope="module")
def stream(moto_server: MotoServer) -> Stream:
    # Created a day ahead, like live events: no timer is due before the read ends.
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    archive = generate(payments=PAYMENTS, seed=SEED, start=start, hours=1)
    records = list(archive.envelopes(include_malformed=False))
    name = f"stop-{uuid.uuid4().hex[:8]}"
    client = kinesis_client()
    create_stream(client, name, 1)
    put_records(client, name, records)
    client.close()
    return Stream(name, len(records), archive.truth.to_json())


@dataclass
class Job:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]

    def wait_for_line(self, text: str) -> None:
        deadline = time.monotonic() + READ_DEADLINE_S
        while (left := deadline - time.monotonic()) > 0:
            line = self.lines.get(timeout=left)
            if line is None:
                pytest.fail(f"the job exited ({self.process.wait()}) before printing {text!r}")
            if text in line:
                return
        pytest.fail(f"no {text!r} on stderr within {READ_DEADLINE_S}s")

    def finish(self) -> tuple[int, str]:
        code = self.process.wait(timeout=EXIT_DEADLINE_S)
        assert self.process.stdout is not None
        return code, self.process.stdout.read()


def _forward(stderr: Any, lines: queue.Queue[str | None]) -> None:
    for line in stderr:
        lines.put(line)
    lines.put(None)


@pytest.fixture
def start_job(stream: Stream, tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(warehouse: Path) -> Job:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines.streaming",
                "--kinesis_stream",
                stream.name,
                "--warehouse",
                str(warehouse),
            ],
            cwd=PROJECT_ROOT,
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_forward, args=(process.stderr, lines), daemon=True).start()
        return Job(process, lines)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_read_and_loads_what_was_read(
    signum: signal.Signals, stream: Stream, start_job: Any, tmp_path: Path
) -> None:
    warehouse = tmp_path / "stopped.duckdb"
    job = start_job(warehouse)
    job.wait_for_line(f"{stream.records} records read so far")

    job.process.send_signal(signum)
    code, summary = job.finish()

    assert code == 0, summary
    assert f"records read: {stream.records}\n" in summary
    assert summary.rstrip().endswith(": holds")
    assert rows(warehouse, CURRENT_CONTRIBUTIONS_SQL) == expected_contributions(stream.truth)


def test_a_second_signal_aborts_at_once(stream: Stream, start_job: Any, tmp_path: Path) -> None:
    job = start_job(tmp_path / "aborted.duckdb")
    job.wait_for_line(f"{stream.records} records read so far")

    job.process.send_signal(signal.SIGINT)
    job.wait_for_line("SIGINT: stopping the read")
    job.process.send_signal(signal.SIGINT)
    code, summary = job.finish()

    assert code == 128 + signal.SIGINT
    assert "records read:" not in summary
