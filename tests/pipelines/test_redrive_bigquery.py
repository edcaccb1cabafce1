"""`pipelines.redrive` on a BigQuery warehouse, whose letters are redacted.

The redacted letters cannot be re-driven from their `raw`: the classify
letter's record is read again from the archive file and offset it names, and
the charge_missing payment's events from `--source`. Marks are appended rows
that the latest-row view shows. Servers: bqemulator, moto, embedded Postgres.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.cloud import bigquery

from pipelines import redrive
from tests.fixtures.bigquery import BigQueryEmulator
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.sinks import (
    LEDGER_KEY,
    SUPPORTER_KEY,
    create_bus,
    create_queue,
    create_table,
    drain,
    store_rows,
    unique,
)
from tests.pipelines.test_redrive import BUGGY_SESSION, archive, buggy_backfill
from transforms.sinks.dead_letters import letter_store

__all__ = ["archive"]


def test_redacted_letters_are_reread_from_their_source_and_marked_in_the_view(
    archive: Path,
    bigquery_emulator: BigQueryEmulator,
    moto_server: MotoServer,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, dataset = bigquery_emulator.project, f"redrive_{uuid.uuid4().hex[:8]}"
    emails, store = create_queue(), postgres_server.create_database()
    flags = [
        "--warehouse",
        f"bigquery:{project}.{dataset}",
        "--temp_location",
        bigquery_emulator.temp_location,
        "--contributions_store",
        store,
        "--supporter_table",
        create_table(SUPPORTER_KEY, unique("SupporterProductData")),
        "--emails_queue_url",
        emails,
        "--opt_ins_queue_url",
        create_queue(),
        "--sent_messages_table",
        create_table(LEDGER_KEY, unique("sent-messages")),
        "--acquisitions_bus",
        create_bus()[0],
        "--stripe_mode",
        "live",
    ]
    buggy_backfill(archive, flags, monkeypatch)
    with bigquery.Client(project=project) as client:

        def query(sql: str) -> list[tuple[object, ...]]:
            job = client.query(
                sql, job_config=bigquery.QueryJobConfig(default_dataset=f"{project}.{dataset}")
            )
            return [tuple(row.values()) for row in job.result()]

        letters = query("SELECT reason, raw FROM dead_letters ORDER BY reason")
        assert [reason for reason, _ in letters] == ["charge_missing", "invalid_event"]
        assert "reader2@example.com" not in str(letters[1][1])  # redacted on the way
        assert BUGGY_SESSION in str(letters[1][1])

        # The letters' payments are older than the default message window: widened.
        window = ["--messages_max_age_hours", str(24 * 365 * 100)]
        assert redrive.run(["--source", str(archive), *flags, *window]) == 0

        assert query("SELECT payment_intent_id, country_code FROM contributions ORDER BY 1") == [
            ("pi_1", "US"),
            ("pi_2", "US"),
        ]
        marks = query(
            "SELECT reason, redriven_at IS NOT NULL, redrive_run_id LIKE 'redrive-%' "
            "FROM dead_letters ORDER BY reason"
        )
        assert marks == [("charge_missing", True, True), ("invalid_event", True, True)]
    # What the re-drive reads to say why a sender's message was not sent: the settled times.
    assert letter_store(f"bigquery:{project}.{dataset}").settled_at(["ch_1", "ch_2", "ch_9"]) == {
        "ch_1": datetime(2024, 12, 5, 23, 0, tzinfo=UTC),
        "ch_2": datetime(2024, 12, 5, 23, 1, tzinfo=UTC),
    }
    assert sorted(group for group, _ in drain(emails)) == ["ch_1", "ch_2"]
    assert store_rows(store, "SELECT payment_id FROM contributions_store ORDER BY 1") == [
        ("ch_1",),
        ("ch_2",),
    ]

    assert redrive.run(["--source", str(archive), *flags, *window]) == 0  # nothing left
    assert drain(emails) == []
