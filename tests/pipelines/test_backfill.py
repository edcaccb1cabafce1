"""The backfill end to end on generated archives, checked row by row against the generator's truth.

The truth says what each simulated payment is (ids, amount, currency,
countries, identity, refunds, dispute, account); the expected rows are
derived from it with DOMAIN.md's rules in `tests/pipelines/expected.py`,
independently of the pipeline.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines import backfill
from schemas.generate import table_of
from schemas.records import ALL_RECORD_TYPES
from tests.pipelines.expected import (
    ACQUISITIONS_SQL,
    CONTRIBUTIONS_STORE_SQL,
    CURRENT_CONTRIBUTIONS_SQL,
    SUPPORTER_ITEMS_SQL,
    email_identities,
    expected_acquisitions,
    expected_contributions,
    expected_contributions_store,
    expected_dead_letter_reasons,
    expected_messages,
    expected_supporter_items,
    missing_charge_payment_intents,
    opt_in_identities,
    rows,
    snapshot,
)
from tools.generate_archive import generate, write_archive
from transforms.sinks.run_history import recent_runs

SAMPLE = Path(__file__).resolve().parents[2] / "sample"


@pytest.fixture(scope="module", params=["generated", "sample"])
def archive(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `archive/` and `truth.json`."""
    if request.param == "sample":
        return SAMPLE
    root = tmp_path_factory.mktemp("generated")
    generated = generate(payments=150, seed=11, start=datetime(2025, 5, 1, tzinfo=UTC))
    write_archive(generated, root / "archive")
    return root


S3_SECRET = "wJalrXUtnFEMI-secret"
S3_TOKEN = "FwoGZXIvYXdzE-token"


def run_backfill(archive: Path, warehouse: Path, capture: Path, *flags: str) -> str:
    """Runs the backfill to exit 0 and returns what it printed."""
    with capture.open("w") as out, contextlib.redirect_stdout(out):
        code = backfill.run(
            ["--source", str(archive / "archive"), "--warehouse", str(warehouse), *flags]
        )
    assert code == 0
    return capture.read_text()


@pytest.fixture(scope="module")
def runs(
    archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], list[str], list[dict[str, list[tuple[Any, ...]]]]]:
    """The backfill run twice into one warehouse: (warehouse, truth, outputs, snapshots).

    Both runs group on disk (the local default) in a folder of their own,
    which must be empty again after each run.
    """
    warehouse = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    shuffle_dir = tmp_path_factory.mktemp("shuffle")
    outputs, snapshots = [], []
    for index in range(2):
        capture = tmp_path_factory.mktemp("stdout") / "summary.txt"
        summary_json = warehouse.parent / f"summary-{index}.json"
        outputs.append(
            run_backfill(
                archive,
                warehouse,
                capture,
                "--shuffle_dir",
                str(shuffle_dir),
                "--summary_json",
                str(summary_json),
                # Beam's S3 credentials, which a local archive does not use: never recorded.
                "--s3_secret_access_key",
                S3_SECRET,
                f"--s3_session_token={S3_TOKEN}",
            )
        )
        assert list(shuffle_dir.iterdir()) == []
        snapshots.append(snapshot(warehouse))
    truth = json.loads((archive / "truth.json").read_text())
    return warehouse, truth, outputs, snapshots


def test_contributions_match_the_truth_row_by_row(runs: Any) -> None:
    warehouse, truth, _, _ = runs
    assert rows(warehouse, CURRENT_CONTRIBUTIONS_SQL) == expected_contributions(truth)


def test_paid_payments_have_one_row_in_each_output(runs: Any) -> None:
    warehouse, truth, _, _ = runs
    assert rows(warehouse, ACQUISITIONS_SQL) == expected_acquisitions(truth)
    assert rows(warehouse, CONTRIBUTIONS_STORE_SQL) == expected_contributions_store(truth)
    assert rows(warehouse, SUPPORTER_ITEMS_SQL) == expected_supporter_items(truth)
    assert email_identities(warehouse) == expected_messages(truth)
    assert opt_in_identities(warehouse) == expected_messages(truth)


def test_no_personal_data_in_analytics_tables(runs: Any) -> None:
    warehouse, _, _, _ = runs
    for table in ("contributions", "acquisitions"):
        columns = {r[0] for r in rows(warehouse, f"DESCRIBE {table}")}
        assert columns.isdisjoint({"email", "name", "postal_code", "state"}), table
        dump = json.dumps(rows(warehouse, f"SELECT * FROM {table}"), default=str)
        assert "@example" not in dump


def test_dead_letters_hold_malformed_records_and_missing_charges(runs: Any) -> None:
    warehouse, truth, _, _ = runs
    reasons = Counter(r[0] for r in rows(warehouse, "SELECT reason FROM dead_letters"))
    assert reasons == expected_dead_letter_reasons(truth)
    assert rows(
        warehouse, "SELECT source FROM dead_letters WHERE reason = 'charge_missing' ORDER BY 1"
    ) == [(f"payment_intent:{pi}",) for pi in missing_charge_payment_intents(truth)]
    # Record-level dead letters say where the record is.
    sources = rows(warehouse, "SELECT source, raw FROM dead_letters WHERE step = 'decode'")
    assert all(src.rsplit("@", 1)[1].isdigit() and raw for src, raw in sources)


def test_summary_accounts_for_every_record(runs: Any) -> None:
    _, truth, outputs, _ = runs
    counts = truth["counts"]
    read = counts["records"] + counts["exports"]["lines"]
    duplicates = sum(counts["deliveries"].values()) - counts["deliveries"]["original"]
    duplicates += counts["exports"]["duplicates_of_archive"]
    for output in outputs:
        lines = output.splitlines()
        assert lines[0] == f"records read: {read}"
        assert f"duplicates: {duplicates}" in lines
        assert lines[-1].startswith(f"read {read} = processed ")
        assert lines[-1].endswith(": holds")


def test_each_run_is_recorded_with_what_it_wrote_apart_from_the_table_totals(runs: Any) -> None:
    warehouse, _, outputs, snapshots = runs
    recorded = sorted(recent_runs(str(warehouse), 10), key=lambda run: run.started_at)
    assert [(run.job, run.exit_code, run.runner) for run in recorded] == [
        ("backfill", 0, "FnApiRunner")
    ] * 2
    totals = {name: len(table) for name, table in snapshots[-1].items()}
    for index, (run, output) in enumerate(zip(recorded, outputs, strict=True)):
        written = {item.destination: item.rows for item in run.rows_written}
        lines = output.splitlines()
        assert lines[0] == f"records read: {run.records_read}"
        start = lines.index(f"written by this run: {sum(written.values())}")
        assert lines[start + 1 : start + 1 + len(written)] == [
            f"  {name}: {rows}" for name, rows in written.items()
        ]
        document = json.loads((warehouse.parent / f"summary-{index}.json").read_text())
        assert (document["run_id"], document["exit_code"]) == (run.run_id, 0)
        assert document["written_by_this_run"] == written
        assert document["table_totals"] == totals
        assert document["records_read"] == run.records_read
        assert document["arguments"] == list(run.arguments)
        assert run.arguments[-3:] == (
            "--s3_secret_access_key",
            "********",
            "--s3_session_token=********",
        )
        for secret in (S3_SECRET, S3_TOKEN):
            assert secret not in json.dumps(document)
            assert secret not in str(run.arguments)
        counts = (run.processed, run.skipped, run.dead_lettered)
        assert sum(count for count in counts if count is not None) == run.records_read
        assert None not in counts
    # Every row is upserted again by the second run: it wrote as many as the
    # first, and the tables hold one copy (the totals count each row once).
    assert recorded[0].rows_written == recorded[1].rows_written
    assert sum(item.rows for item in recorded[0].rows_written) == sum(totals.values())


def test_every_table_has_one_row_per_natural_key_after_two_runs(runs: Any) -> None:
    warehouse, _, _, _ = runs
    for record_type in ALL_RECORD_TYPES:
        table = table_of(record_type)
        key = ", ".join(table.key)
        [(total, distinct)] = rows(
            warehouse, f"SELECT count(*), count(DISTINCT ({key})) FROM {table.name}"
        )
        assert total == distinct, table.name
        assert total > 0, table.name


def test_running_twice_leaves_exactly_the_same_rows(runs: Any) -> None:
    _, _, _, snapshots = runs
    first, second = snapshots
    assert first == second
    assert {name: len(table) for name, table in first.items()} == {
        name: len(table) for name, table in second.items()
    }


def test_the_runners_shuffle_writes_the_same_rows_as_the_disk_shuffle(
    runs: Any, archive: Path, tmp_path: Path
) -> None:
    _, _, outputs, snapshots = runs
    warehouse = tmp_path / "warehouse.duckdb"

    output = run_backfill(archive, warehouse, tmp_path / "summary.txt", "--shuffle", "runner")

    assert snapshot(warehouse) == snapshots[0]
    assert output == outputs[0]


def _first_hour(archive: Path) -> datetime:
    """The earliest Firehose hour folder of the archive (`YYYY/MM/dd/HH`)."""
    hours = sorted(p.relative_to(archive) for p in archive.glob("[0-9]*/*/*/*") if p.is_dir())
    year, month, day, hour = (int(part) for part in hours[0].parts)
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_a_smaller_range_records_what_it_wrote_not_what_the_tables_hold(
    runs: Any, archive: Path, tmp_path: Path
) -> None:
    """The same one-hour backfill into a fresh warehouse and into the full one: both write the
    same rows, and only the tables' totals tell the two warehouses apart."""
    full_warehouse, _, _, _ = runs
    start = _first_hour(archive / "archive")
    end = start + timedelta(hours=1)
    window = ["--start", f"{start:%Y-%m-%dT%H:%M:%SZ}", "--end", f"{end:%Y-%m-%dT%H:%M:%SZ}"]
    fresh, full = tmp_path / "fresh.duckdb", tmp_path / "full.duckdb"
    shutil.copyfile(full_warehouse, full)
    written = {}
    for warehouse in (fresh, full):
        summary = tmp_path / f"{warehouse.stem}.json"
        run_backfill(
            archive, warehouse, tmp_path / "out.txt", *window, "--summary_json", str(summary)
        )
        document = json.loads(summary.read_text())
        (run,) = [run for run in recent_runs(str(warehouse), 10) if run.range_start == start]
        assert run.run_id == document["run_id"]
        assert {item.destination: item.rows for item in run.rows_written} == (
            document["written_by_this_run"]
        )
        totals = {name: len(table) for name, table in snapshot(warehouse).items()}
        assert document["table_totals"] == totals
        written[warehouse.stem] = (document["written_by_this_run"], totals)

    (fresh_written, fresh_totals), (full_written, full_totals) = written["fresh"], written["full"]
    assert full_written == fresh_written
    # Into a fresh warehouse the run's rows are all the tables hold; into the full one they
    # are a part of it.
    assert sum(fresh_written.values()) == sum(fresh_totals.values()) > 0
    assert sum(full_written.values()) < sum(full_totals.values())
