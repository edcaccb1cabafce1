"""`pipelines.redrive` end to end: letters made by a real backfill, re-driven into DuckDB.

The letters come from a backfill over a small archive: a `--end` that cuts
one payment before its charge (`charge_missing`), and a release with a bug
(simulated by a `classify` that rejects one session) that dead-letters a
session (`classify`). The re-drive runs after the "fix", as an operator would.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pytest

from pipelines import backfill, redrive
from schemas.records import DeadLetter
from schemas.rows import to_bigquery_json_row
from tests.builders import (
    ACCOUNT_UK,
    T0,
    charge_object,
    contribution_record,
    envelope_time,
    eventbridge_envelope,
    session_object,
    stripe_event_document,
    supporter_item,
)
from tests.fixtures.http_server import closed_port
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.sinks import (
    LEDGER_KEY,
    SUPPORTER_KEY,
    create_queue,
    create_table,
    drain,
    drain_bodies,
    ledger_items,
    supporter_items,
    unique,
)
from tests.fixtures.unreachable import UNUSABLE_SOURCES, offline_aws, timed
from transforms.core import process
from transforms.domain.events import make_dead_letter
from transforms.domain.facts import ClassifyError
from transforms.sinks.common import rejected_record
from transforms.sinks.duckdb import REJECTED_STEP
from transforms.sinks.dynamodb import REJECTED, WRITE_SUPPORTER_STEP
from transforms.sinks.ledger import SENDING, claim_note, left_claim

BUGGY_SESSION = "evt_session_2"
END = "2024-12-05T23:10:00Z"


def _record(event_id: str, event_type: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    return eventbridge_envelope(
        stripe_event_document(event_id, event_type, obj, created=created),
        envelope_id=f"env-{event_id}",
        account=ACCOUNT_UK,
        time=envelope_time(datetime.fromtimestamp(created, UTC)),
    )


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Two payments: pi_1's charge comes after END; pi_2 is whole within it."""
    records = [
        _record("evt_session_1", "checkout.session.completed", session_object(), T0),
        _record(
            BUGGY_SESSION,
            "checkout.session.completed",
            session_object(session_id="cs_2", payment_intent="pi_2", email="reader2@example.com"),
            T0 + 60,
        ),
        _record(
            "evt_charge_2",
            "charge.succeeded",
            charge_object(charge_id="ch_2", payment_intent="pi_2"),
            T0 + 120,
        ),
        _record("evt_charge_1", "charge.succeeded", charge_object(), T0 + 1800),
    ]
    folder = tmp_path / "archive" / "2024" / "12" / "05" / "23"
    folder.mkdir(parents=True)
    data = b"".join(json.dumps(r).encode() for r in records)  # Firehose: no delimiter
    (folder / "stripe-1-2024-12-05-23-00-00-x.gz").write_bytes(gzip.compress(data))
    return tmp_path / "archive"


def buggy_backfill(archive: Path, flags: Sequence[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The backfill of a release whose classify rejects one session, cut at END."""
    real = process.classify

    def buggy(event: Any, **kwargs: Any) -> Any:
        if event.id == BUGGY_SESSION:
            raise ClassifyError("invalid_event", "simulated bug: session not understood")
        return real(event, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(process, "classify", buggy)
        code = backfill.run(["--source", str(archive), "--end", END, *flags])
    assert code == 0


def _buggy_backfill(
    archive: Path, path: str, monkeypatch: pytest.MonkeyPatch, flags: Sequence[str] = ()
) -> None:
    """`buggy_backfill` into a DuckDB warehouse, and the two letters it leaves."""
    buggy_backfill(archive, ["--warehouse", path, *flags], monkeypatch)
    source = f"{next(archive.rglob('*.gz'))}@{_offset_of(archive, BUGGY_SESSION)}"
    assert _query(path, "SELECT step, reason, source FROM dead_letters ORDER BY step") == [
        ("classify", "invalid_event", source),
        ("join_payment", "charge_missing", "payment_intent:pi_1"),
    ]


@pytest.fixture
def warehouse(archive: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The warehouse of the buggy backfill: one classify letter, one charge_missing letter."""
    path = str(archive.parent / "warehouse.duckdb")
    _buggy_backfill(archive, path, monkeypatch)
    return path


def _offset_of(archive: Path, event_id: str) -> int:
    data = gzip.decompress(next(archive.rglob("*.gz")).read_bytes())
    return data.index(b'{"version"', data.index(event_id.encode()) - 400)


def _query(path: str, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(path, read_only=True) as connection:
        return connection.execute(sql).fetchall()


_REDRIVE_RUNS = (
    "SELECT exit_code, list_transform(rows_written, r -> (r.destination, r.rows)),"
    " records_read, ended_at IS NOT NULL FROM pipeline_runs WHERE job = 'redrive'"
    " ORDER BY started_at"
)


def _tables(path: str) -> dict[str, list[str]]:
    """Every table's rows but the run history's (each run appends its own row)."""
    names = [
        row[0]
        for row in _query(
            path,
            "SELECT table_name FROM duckdb_tables() WHERE table_name <> 'pipeline_runs' ORDER BY 1",
        )
    ]
    return {
        name: sorted(repr(row) for row in _query(path, f'SELECT * FROM "{name}"')) for name in names
    }


def test_redrive_resolves_both_letters_marks_them_and_a_second_run_does_nothing(
    archive: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _query(warehouse, "SELECT payment_intent_id FROM contributions") == []

    code = redrive.run(["--warehouse", warehouse, "--source", str(archive)])

    assert code == 0
    assert _query(
        warehouse, "SELECT payment_intent_id, status, country_code FROM contributions ORDER BY 1"
    ) == [("pi_1", "Paid", "US"), ("pi_2", "Paid", "US")]
    marks = _query(
        warehouse,
        "SELECT reason, redriven_at IS NOT NULL, redrive_run_id FROM dead_letters ORDER BY 1",
    )
    assert [(reason, marked) for reason, marked, _ in marks] == [
        ("charge_missing", True),
        ("invalid_event", True),
    ]
    assert marks[0][2] == marks[1][2] and marks[0][2].startswith("redrive-")
    assert "2 marked redriven" in capsys.readouterr().out
    before = _tables(warehouse)

    assert redrive.run(["--warehouse", warehouse, "--source", str(archive)]) == 0

    assert "nothing to re-drive" in capsys.readouterr().out
    assert _tables(warehouse) == before
    assert _query(warehouse, _REDRIVE_RUNS) == [
        (0, [("letters_selected", 2), ("letters_resolved", 2), ("letters_failed", 0)], 0, True),
        (0, [("letters_selected", 0), ("letters_resolved", 0), ("letters_failed", 0)], 0, True),
    ]


def test_a_letter_that_fails_again_stays_pending_and_exits_1(
    archive: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Still cut at END: the charge of pi_1 is not re-read, so it fails the same way.
    code = redrive.run(
        [
            "--warehouse",
            warehouse,
            "--reason",
            "charge_missing",
            "--source",
            str(archive),
            "--end",
            END,
        ]
    )

    assert code == 1
    assert _query(
        warehouse, "SELECT reason, redriven_at, redrive_run_id FROM dead_letters ORDER BY 1"
    ) == [("charge_missing", None, None), ("invalid_event", None, None)]
    assert "failed again the same way (pending, rewritten by this run): 1" in (
        capsys.readouterr().out
    )
    assert _query(warehouse, _REDRIVE_RUNS) == [
        (1, [("letters_selected", 1), ("letters_resolved", 0), ("letters_failed", 1)], 0, True)
    ]


def test_dry_run_shows_what_the_letters_would_become_and_changes_nothing(
    archive: Path, warehouse: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tables(warehouse)
    file_before = Path(warehouse).read_bytes()

    code = redrive.run(["--warehouse", warehouse, "--source", str(archive), "--dry_run"])

    assert code == 0
    out = capsys.readouterr().out
    assert "\n  contributions\tch_1\n" in out and "\n  contributions\tch_2\n" in out
    assert "thank_you_emails\tch_1" in out and "thank_you_emails\tch_2" in out
    assert _tables(warehouse) == before
    assert Path(warehouse).read_bytes() == file_before


def test_selection_by_reason_redrives_only_that_letter(archive: Path, warehouse: str) -> None:
    assert (
        redrive.run(
            ["--warehouse", warehouse, "--reason", "invalid_event", "--source", str(archive)]
        )
        == 0
    )

    assert _query(
        warehouse, "SELECT reason, redriven_at IS NOT NULL FROM dead_letters ORDER BY 1"
    ) == [("charge_missing", False), ("invalid_event", True)]
    assert _query(warehouse, "SELECT payment_intent_id FROM contributions") == [("pi_2",)]


def _letter_ids(path: str) -> dict[str, str]:
    return dict(_query(path, "SELECT step, dead_letter_id FROM dead_letters"))


@pytest.mark.parametrize(
    ("steps", "contributions"),
    [
        pytest.param(["classify"], [("pi_2",)], id="one-id"),
        pytest.param(["classify", "join_payment"], [("pi_1",), ("pi_2",)], id="two-ids"),
        pytest.param([], [], id="an-id-that-is-no-letter"),
    ],
)
def test_selection_by_ids_redrives_only_those_letters(
    archive: Path, warehouse: str, steps: list[str], contributions: list[tuple[str]]
) -> None:
    ids = _letter_ids(warehouse)
    chosen = ",".join(ids[step] for step in steps) or "0" * 64

    code = redrive.run(["--warehouse", warehouse, "--ids", chosen, "--source", str(archive)])

    assert code == 0
    assert _query(
        warehouse, "SELECT step FROM dead_letters WHERE redriven_at IS NOT NULL ORDER BY 1"
    ) == [(step,) for step in sorted(steps)]
    assert _query(warehouse, "SELECT payment_intent_id FROM contributions ORDER BY 1") == (
        contributions
    )


# The classify letter's time is its envelope's (T0 + 60 s); the charge_missing letter is a
# payment's, with no time, so any range leaves it out.
SESSION_2_TIME = "2024-12-05T23:01:00Z"


@pytest.mark.parametrize(
    ("window", "redriven"),
    [
        pytest.param(["--since", SESSION_2_TIME], ["invalid_event"], id="since-is-inclusive"),
        pytest.param(["--since", "2024-12-05T23:01:01Z"], [], id="since-after-the-letter"),
        pytest.param(["--until", "2024-12-05T23:01:01Z"], ["invalid_event"], id="until-after"),
        pytest.param(["--until", SESSION_2_TIME], [], id="until-is-exclusive"),
        pytest.param(
            ["--since", "2024-12-05T23:00:00Z", "--until", "2024-12-05T23:02:00Z"],
            ["invalid_event"],
            id="both-around-the-letter",
        ),
        pytest.param(
            ["--since", "2024-12-06T00:01:00+01:00"], ["invalid_event"], id="since-with-an-offset"
        ),
    ],
)
def test_selection_by_time_takes_only_timed_letters_in_the_range(
    archive: Path,
    warehouse: str,
    capsys: pytest.CaptureFixture[str],
    window: list[str],
    redriven: list[str],
) -> None:
    capsys.readouterr()

    code = redrive.run(["--warehouse", warehouse, *window, "--source", str(archive)])

    assert code == 0
    assert _query(
        warehouse, "SELECT reason FROM dead_letters WHERE redriven_at IS NOT NULL ORDER BY 1"
    ) == [(reason,) for reason in redriven]
    assert _query(warehouse, "SELECT payment_intent_id FROM contributions") == (
        [("pi_2",)] if redriven else []
    )
    out = capsys.readouterr().out
    if not redriven:
        assert out == "no dead letters match the selection: nothing to re-drive\n"


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(["--since", "2025-01-02", "--until", "2025-01-01"], 2, id="empty-range"),
        pytest.param(["--runner", "DataflowRunner"], 2, id="remote-runner"),
        pytest.param(["--reasn", "x"], 2, id="misspelt-flag"),
        pytest.param(["--outcome_unknown", "delivered"], 2, id="outcome-word-for-no-selection"),
        pytest.param(
            ["--outcome_unknown", "maybe", "--reason", "outcome_unknown"], 2, id="outcome-word"
        ),
    ],
)
def test_usage_errors_exit_2(warehouse: str, argv: list[str], code: int) -> None:
    try:
        result = redrive.run(["--warehouse", warehouse, *argv])
    except SystemExit as exit_:
        result = int(exit_.code or 0)
    assert result == code


def test_a_missing_warehouse_is_infrastructure_and_exits_3(tmp_path: Path) -> None:
    assert redrive.run(["--warehouse", str(tmp_path / "none" / "w.duckdb")]) == 3


def test_a_warehouse_that_does_not_exist_is_not_created_by_the_runs_row(tmp_path: Path) -> None:
    assert redrive.run(["--warehouse", str(tmp_path / "w.duckdb")]) == 3
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.parametrize(("source", "line"), UNUSABLE_SOURCES)
def test_a_missing_empty_or_unreachable_source_stops_the_redrive_in_one_line(
    warehouse: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
    line: str,
) -> None:
    offline_aws(monkeypatch, tmp_path)
    (tmp_path / "empty").mkdir()
    port = closed_port()
    argv = ["--warehouse", warehouse, "--source", source.format(tmp=tmp_path)]
    argv += ["--s3_endpoint_url", f"http://127.0.0.1:{port}", "--s3_region_name", "eu-west-1"]
    capsys.readouterr()

    code, elapsed = timed(redrive.run, argv)

    captured = capsys.readouterr()
    assert (code, captured.out) == (3, "")
    assert elapsed < 30
    assert captured.err.splitlines()[0] == (
        f"python -m pipelines.redrive: error: {line.format(tmp=tmp_path, port=port)}"
    )
    assert captured.err.splitlines()[1:] == [
        f"run {_run_ids(warehouse)[-1]} recorded in pipeline_runs of {warehouse}"
    ]
    # Nothing was claimed: both letters are pending as they were.
    assert _query(
        warehouse, "SELECT reason, redriven_at, redrive_run_id FROM dead_letters ORDER BY 1"
    ) == [("charge_missing", None, None), ("invalid_event", None, None)]
    assert _query(warehouse, _REDRIVE_RUNS) == [
        (3, [("letters_selected", 2), ("letters_resolved", 0), ("letters_failed", 0)], 0, True)
    ]


def _run_ids(path: str) -> list[str]:
    return [row[0] for row in _query(path, "SELECT run_id FROM pipeline_runs ORDER BY started_at")]


def test_redriving_twice_into_sqs_sends_exactly_one_email_per_payment(
    archive: Path, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue, ledger = create_queue(), create_table(LEDGER_KEY, unique("sent-messages"))
    path = str(archive.parent / "warehouse.duckdb")
    sinks = ["--stripe_mode", "live", "--emails_queue_url", queue, "--sent_messages_table", ledger]
    _buggy_backfill(archive, path, monkeypatch, sinks)
    assert drain(queue) == []  # neither payment was complete

    redrive_flags = ["--warehouse", path, "--source", str(archive), *sinks]
    # The letters' payments are older than the default message window, which the
    # re-drive keeps like the jobs: the operator widens it to send their emails.
    redrive_flags += ["--messages_max_age_hours", str(24 * 365 * 100)]
    assert redrive.run([*redrive_flags, "--dry_run"]) == 0
    assert (drain(queue), ledger_items(ledger)) == ([], {})  # a dry run sends nothing
    assert redrive.run(redrive_flags) == 0
    first = drain(queue)
    # Forced: the resolved letters again, so the ledger alone must stop a second email.
    assert redrive.run([*redrive_flags, "--include_redriven"]) == 0
    second = drain(queue)

    assert [json.loads(body)["IdentityUserId"] for _, body in first] == ["1001", "1001"]
    assert sorted(group for group, _ in first) == ["ch_1", "ch_2"]
    assert second == []
    assert ledger_items(ledger) == {
        "thank_you_email#ch_1": "sent",
        "thank_you_email#ch_2": "sent",
    }


def test_a_writers_letter_is_redriven_by_building_its_payment_again(
    archive: Path, tmp_path: Path
) -> None:
    """A row the warehouse refused (its letter keeps the record) is written once re-driven."""
    path = str(tmp_path / "warehouse.duckdb")
    assert backfill.run(["--source", str(archive), "--warehouse", path]) == 0
    written = "SELECT payment_id, amount FROM contributions ORDER BY payment_id"
    assert _query(path, written) == [("ch_1", Decimal("5.00")), ("ch_2", Decimal("5.00"))]
    # As if the writer had refused pi_2's contribution: no row, one letter naming it.
    refused = rejected_record(
        contribution_record("ch_2", payment_intent_id="pi_2"),
        step=REJECTED_STEP,
        reason="invalid_row",
        error="contributions.amount: out of range",
        source="warehouse:contributions",
    )
    with duckdb.connect(path) as connection:
        connection.execute("DELETE FROM contributions WHERE payment_id = 'ch_2'")
        connection.execute(
            "INSERT INTO dead_letters (dead_letter_id, step, reason, error, raw, source) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                refused.dead_letter_id,
                refused.step,
                refused.reason,
                refused.error,
                refused.raw,
                refused.source,
            ],
        )

    flags = ["--warehouse", path, "--source", str(archive), "--step", REJECTED_STEP]
    assert redrive.run(flags) == 0

    assert _query(path, written) == [("ch_1", Decimal("5.00")), ("ch_2", Decimal("5.00"))]
    assert _query(path, "SELECT step, redriven_at IS NOT NULL FROM dead_letters") == [
        (REJECTED_STEP, True)
    ]
    assert redrive.run(flags) == 0  # nothing left to re-drive


def _insert_letter(path: str, letter: DeadLetter) -> None:
    with duckdb.connect(path) as connection:
        connection.execute(
            "INSERT INTO dead_letters (dead_letter_id, step, reason, error, raw, source) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                letter.dead_letter_id,
                letter.step,
                letter.reason,
                letter.error,
                letter.raw,
                letter.source,
            ],
        )


def _supporter_letter(table: str, charge_id: str) -> DeadLetter:
    """The letter of a supporter item DynamoDB refused, as its writer makes it: the item as
    JSON (which names the charge, no PaymentIntent) and `dynamodb:<table>/Stripe - <charge>`."""
    item = supporter_item("1001", charge_id)
    return make_dead_letter(
        step=WRITE_SUPPORTER_STEP,
        reason=REJECTED,
        error="AccessDeniedException",
        raw=json.dumps(to_bigquery_json_row(item), sort_keys=True),
        source=f"dynamodb:{table}/{item.subscription_name}",
    )


def test_a_supporter_items_letter_is_redriven_as_the_payment_its_charge_belongs_to(
    archive: Path, tmp_path: Path, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path, table = str(tmp_path / "warehouse.duckdb"), create_table(SUPPORTER_KEY, unique("sup"))
    sinks = ["--stripe_mode", "live", "--supporter_table", table]
    assert backfill.run(["--source", str(archive), "--warehouse", path, *sinks]) == 0
    written = supporter_items(table)
    assert sorted(written) == [("1001", "Stripe - ch_1"), ("1001", "Stripe - ch_2")]
    # As if DynamoDB had refused ch_2's item: no item, the writer's letter for it.
    boto3.session.Session().client("dynamodb").delete_item(
        TableName=table,
        Key={"identityId": {"S": "1001"}, "subscriptionName": {"S": "Stripe - ch_2"}},
    )
    _insert_letter(path, _supporter_letter(table, "ch_2"))
    capsys.readouterr()

    flags = ["--warehouse", path, "--source", str(archive), "--step", WRITE_SUPPORTER_STEP]
    assert redrive.run([*flags, *sinks]) == 0

    assert supporter_items(table) == written  # the payment built again: the same item
    assert _query(path, "SELECT step, redriven_at IS NOT NULL FROM dead_letters") == [
        (WRITE_SUPPORTER_STEP, True)
    ]
    out = capsys.readouterr().out
    assert "re-reading 1 payments' events" in out and "1 marked redriven" in out
    assert redrive.run([*flags, *sinks]) == 0
    assert "nothing to re-drive" in capsys.readouterr().out
    assert supporter_items(table) == written


def test_a_supporter_items_letter_whose_charge_is_not_in_the_source_stays_pending(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "warehouse.duckdb")
    assert backfill.run(["--source", str(archive), "--warehouse", path]) == 0
    letter = _supporter_letter("SupporterProductData", "ch_9")
    _insert_letter(path, letter)
    contributions = _query(path, "SELECT * FROM contributions ORDER BY payment_id")
    capsys.readouterr()

    assert redrive.run(["--warehouse", path, "--source", str(archive)]) == 1

    assert "its charge's events are not in --source (pending)" in capsys.readouterr().out
    assert _query(path, "SELECT dead_letter_id, redriven_at, redrive_run_id FROM dead_letters") == [
        (letter.dead_letter_id, None, None)
    ]
    assert _query(path, "SELECT * FROM contributions ORDER BY payment_id") == contributions


CLAIMED_AT = 1733443200.25


def _rejected_email(queue: str, ledger: str, path: str, *, claimed_at: float) -> DeadLetter:
    """What a refused thank-you email for ch_2 leaves: its letter, and the ledger item still
    claimed (`sending`) at `claimed_at` (the letter says `CLAIMED_AT`)."""
    dynamodb = boto3.session.Session().client("dynamodb")
    dynamodb.put_item(
        TableName=ledger,
        Item={
            "messageKey": {"S": "thank_you_email#ch_2"},
            "kind": {"S": "thank_you_email"},
            "paymentId": {"S": "ch_2"},
            "state": {"S": SENDING},
            "claimedAt": {"N": repr(claimed_at)},
            "claimToken": {"S": "t1"},
        },
    )
    letter = make_dead_letter(
        step="send_thank_you_email",
        reason="rejected",
        error="InvalidParameterValue" + claim_note(CLAIMED_AT),
        raw='{"To": {"Address": "[body]"}}',
        source=f"sqs:{queue}/ch_2",
    )
    _insert_letter(path, letter)
    return letter


def _messages_flags(queue: str, ledger: str) -> list[str]:
    return [
        "--stripe_mode",
        "live",
        "--emails_queue_url",
        queue,
        "--sent_messages_table",
        ledger,
        "--messages_max_age_hours",
        str(24 * 365 * 100),
    ]


def test_a_rejected_sends_letter_releases_its_claim_and_sends_the_message_once(
    archive: Path, tmp_path: Path, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, ledger, path = _backfilled(archive, tmp_path)
    _rejected_email(queue, ledger, path, claimed_at=CLAIMED_AT)
    capsys.readouterr()
    flags = ["--warehouse", path, "--source", str(archive), *_messages_flags(queue, ledger)]

    assert redrive.run(flags) == 0

    first = drain(queue)
    assert [group for group, _ in first] == ["ch_2"]
    assert ledger_items(ledger) == {"thank_you_email#ch_2": "sent"}
    assert "ledger claims of failed sends released: 1" in capsys.readouterr().out
    assert _query(path, "SELECT step, redriven_at IS NOT NULL FROM dead_letters") == [
        ("send_thank_you_email", True)
    ]
    # Forced again: the claim is now a sent item, not the letter's, so nothing is released
    # and the ledger stops a second email.
    assert redrive.run([*flags, "--include_redriven"]) == 0
    assert drain(queue) == []
    assert "ledger claims that changed since the letter (kept): 1" in capsys.readouterr().out
    assert ledger_items(ledger) == {"thank_you_email#ch_2": "sent"}
    sent_and_resolved = [
        ("letters_selected", 1),
        ("letters_resolved", 1),
        ("letters_failed", 0),
        ("sender_letters_not_sent", 0),
    ]
    assert _query(path, _OUTCOME_RUNS) == [(0, sent_and_resolved), (0, sent_and_resolved)]


def test_a_ledger_error_letter_is_redriven_without_a_claim_to_release(
    archive: Path, tmp_path: Path, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, ledger, path = _backfilled(archive, tmp_path)
    letter = make_dead_letter(
        step="send_thank_you_email",
        reason="ledger_error",
        error="ProvisionedThroughputExceededException",
        raw='{"To": {"Address": "[body]"}}',
        source=f"sqs:{queue}/ch_2",
    )
    _insert_letter(path, letter)
    capsys.readouterr()
    flags = ["--warehouse", path, "--source", str(archive), *_messages_flags(queue, ledger)]

    assert redrive.run(flags) == 0

    assert [group for group, _ in drain(queue)] == ["ch_2"]
    assert ledger_items(ledger) == {"thank_you_email#ch_2": "sent"}
    assert "ledger claims" not in capsys.readouterr().out
    assert redrive.run(flags) == 0
    assert drain(queue) == []


def test_a_claim_that_changed_since_the_letter_is_not_released_and_nothing_is_sent(
    archive: Path, tmp_path: Path, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, ledger, path = _backfilled(archive, tmp_path)
    # Claimed again after the failure (a later send in flight): not the letter's claim.
    letter = _rejected_email(queue, ledger, path, claimed_at=CLAIMED_AT + 60)
    capsys.readouterr()
    flags = ["--warehouse", path, "--source", str(archive), *_messages_flags(queue, ledger)]

    assert redrive.run(flags) == 1

    assert drain(queue) == []
    out = capsys.readouterr().out
    assert "ledger claims that changed since the letter (kept): 1" in out
    assert "senders' letters whose message the run did not send (pending, why below): 1" in out
    assert (
        "    the ledger holds a claim of it not marked sent (claimed again since the letter, or "
        "met by this run: its outcome_unknown letter is pending), see the runbook  "
        f"{letter.dead_letter_id} send_thank_you_email/rejected {letter.source}\n"
    ) in out
    item = (
        boto3.session.Session()
        .client("dynamodb")
        .get_item(TableName=ledger, Key={"messageKey": {"S": "thank_you_email#ch_2"}})["Item"]
    )
    assert (item["state"]["S"], item["claimedAt"]["N"]) == (SENDING, repr(CLAIMED_AT + 60))
    # The re-driven payment met that claim: its send is an outcome_unknown letter, pending;
    # the rejected letter stays pending too, as its message is not out.
    rows = _query(path, "SELECT dead_letter_id, reason, redriven_at IS NULL FROM dead_letters")
    assert sorted((i == letter.dead_letter_id, reason, pending) for i, reason, pending in rows) == [
        (False, "outcome_unknown", True),
        (True, "rejected", True),
    ]
    assert _query(path, _OUTCOME_RUNS) == [
        (
            1,
            [
                ("letters_selected", 1),
                ("letters_resolved", 0),
                ("letters_failed", 0),
                ("sender_letters_not_sent", 1),
            ],
        )
    ]


def test_a_missing_queue_stops_the_redrive_before_it_claims_anything(
    warehouse: str, archive: Path, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"{moto_server.endpoint_url}/123456789012/{unique('missing')}.fifo"
    ledger = create_table(LEDGER_KEY, unique("sent-messages"))
    flags = [
        "--stripe_mode",
        "live",
        "--emails_queue_url",
        missing,
        "--sent_messages_table",
        ledger,
    ]
    assert redrive.run(["--warehouse", warehouse, "--source", str(archive), *flags]) == 3
    assert capsys.readouterr().err.count("\n") == 1
    pending = "SELECT reason FROM dead_letters WHERE redrive_run_id IS NULL ORDER BY 1"
    assert _query(warehouse, pending) == [("charge_missing",), ("invalid_event",)]


def _runs(*rows: tuple[int, int, int]) -> list[tuple[int, list[tuple[str, int]]]]:
    """The re-drives' `pipeline_runs` rows for one selected not-sent sender's letter:
    (exit code, letters resolved, sender_letters_not_sent) per run."""
    return [
        (
            code,
            [
                ("letters_selected", 1),
                ("letters_resolved", resolved),
                ("letters_failed", 0),
                ("sender_letters_not_sent", not_sent),
            ],
        )
        for code, resolved, not_sent in rows
    ]


def _without(flags: list[str], option: str) -> list[str]:
    """`flags` without `option` and its value."""
    at = flags.index(option)
    return flags[:at] + flags[at + 2 :]


@pytest.mark.parametrize(
    ("drop", "add", "refusal"),
    [
        ("--emails_queue_url", [], "send_thank_you_email (1 letter) needs --emails_queue_url"),
        (
            None,
            ["--no_messages"],
            "send_thank_you_email (1 letter) is not sent under --no_messages",
        ),
    ],
    ids=["sender-flag-missing", "no-messages"],
)
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_a_senders_letter_the_run_cannot_send_is_refused_before_anything_is_claimed(
    archive: Path,
    tmp_path: Path,
    moto_server: MotoServer,
    capsys: pytest.CaptureFixture[str],
    drop: str | None,
    add: list[str],
    refusal: str,
    dry_run: bool,
) -> None:
    queue, ledger, path = _backfilled(archive, tmp_path)
    letter = _rejected_email(queue, ledger, path, claimed_at=CLAIMED_AT)
    claim, tables = _ledger_item(ledger), _tables(path)
    capsys.readouterr()
    flags = ["--warehouse", path, "--source", str(archive), *_messages_flags(queue, ledger)]

    refused = [*(flags if drop is None else _without(flags, drop)), *add]
    assert redrive.run([*refused, *(["--dry_run"] if dry_run else [])]) == 2

    err = capsys.readouterr().err
    assert err == (
        "python -m pipelines.redrive: error: the selected senders' letters are resolved only "
        f"once their message is sent, which this run cannot do: {refusal}. Give the senders' "
        "flags (and --sent_messages_table), or leave those letters out with --step, --reason "
        "or --ids\n"
    )
    # Nothing claimed, released or sent: the letter and its ledger claim as they were.
    assert (drain(queue), _ledger_item(ledger), _tables(path)) == ([], claim, tables)
    assert _query(path, _OUTCOME_RUNS) == []

    assert redrive.run(flags) == 0

    assert [group for group, _ in drain(queue)] == ["ch_2"]
    assert ledger_items(ledger) == {"thank_you_email#ch_2": "sent"}
    assert _query(path, "SELECT dead_letter_id, redriven_at IS NOT NULL FROM dead_letters") == [
        (letter.dead_letter_id, True)
    ]
    assert redrive.run(flags) == 0
    assert "nothing to re-drive" in capsys.readouterr().out
    assert drain(queue) == []
    assert _query(path, _OUTCOME_RUNS) == [
        *_runs((0, 1, 0)),
        (0, [("letters_selected", 0), ("letters_resolved", 0), ("letters_failed", 0)]),
    ]


def test_a_senders_letter_outside_the_message_window_stays_pending_until_it_is_sent(
    archive: Path, tmp_path: Path, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, ledger, path = _backfilled(archive, tmp_path)
    letter = _rejected_email(queue, ledger, path, claimed_at=CLAIMED_AT)
    capsys.readouterr()
    flags = ["--warehouse", path, "--source", str(archive), *_messages_flags(queue, ledger)]
    # The default window (72 hours before the run) leaves the 2024 payment out.
    narrow = [*_without(flags, "--messages_max_age_hours"), "--run_started_at", "2024-12-09"]

    assert redrive.run(narrow) == 1

    out = capsys.readouterr().out
    assert "ledger claims of failed sends released: 1" in out
    assert "senders' letters whose message the run did not send (pending, why below): 1" in out
    assert (
        "    outside the message window: its payment settled 2024-12-05 23:01 UTC, before "
        "2024-12-06 00:00 UTC; give a --messages_max_age_hours that covers it  "
        f"{letter.dead_letter_id} send_thank_you_email/rejected {letter.source}\n"
    ) in out
    # Released, and nothing claimed again: a later run with a covering window sends it.
    assert (drain(queue), _ledger_item(ledger)) == ([], None)
    assert _query(path, "SELECT redriven_at, redrive_run_id FROM dead_letters") == [(None, None)]

    assert redrive.run(flags) == 0

    assert [group for group, _ in drain(queue)] == ["ch_2"]
    assert ledger_items(ledger) == {"thank_you_email#ch_2": "sent"}
    assert _query(path, "SELECT redriven_at IS NOT NULL FROM dead_letters") == [(True,)]
    assert redrive.run([*flags, "--include_redriven"]) == 0
    assert drain(queue) == []
    assert _query(path, _OUTCOME_RUNS) == _runs((1, 0, 1), (0, 1, 0), (0, 1, 0))


EMAIL_KEY = "thank_you_email#ch_2"


def _backfilled(archive: Path, tmp_path: Path) -> tuple[str, str, str]:
    """(a FIFO queue, a ledger table, a warehouse the archive was backfilled into without
    messages), for a test that then plants a sender's letter and re-drives it."""
    queue, ledger = create_queue(), create_table(LEDGER_KEY, unique("sent-messages"))
    path = str(tmp_path / "warehouse.duckdb")
    assert backfill.run(["--source", str(archive), "--warehouse", path]) == 0
    return queue, ledger, path


def _ledger_item(ledger: str) -> dict[str, Any] | None:
    found = (
        boto3.session.Session()
        .client("dynamodb")
        .get_item(TableName=ledger, Key={"messageKey": {"S": EMAIL_KEY}}, ConsistentRead=True)
    )
    item: dict[str, Any] | None = found.get("Item")
    return item


def _put_claim(ledger: str, claimed_at: float) -> None:
    boto3.session.Session().client("dynamodb").put_item(
        TableName=ledger,
        Item={
            "messageKey": {"S": EMAIL_KEY},
            "kind": {"S": "thank_you_email"},
            "paymentId": {"S": "ch_2"},
            "state": {"S": SENDING},
            "claimedAt": {"N": repr(claimed_at)},
            "claimToken": {"S": "t1"},
        },
    )


def _emailed(queue: str) -> list[str]:
    """The addressees of every message in the queue (FIFO or standard), drained."""
    bodies = [body for _, body in drain(queue)] if queue.endswith(".fifo") else drain_bodies(queue)
    return sorted(json.loads(body)["To"]["Address"] for body in bodies)


#: (queue, ledger, warehouse, the re-drive's flags for the outcome_unknown letter)
UnknownOutcome = tuple[str, str, str, list[str]]


def _unknown_outcome(archive: Path, tmp_path: Path, *, fifo: bool = True) -> UnknownOutcome:
    """A backfill meeting a claim of ch_2's thank-you email left days ago (a crash between
    claim and mark): ch_1's email goes, ch_2's becomes an outcome_unknown letter naming that
    claim. (queue, ledger, warehouse, the re-drive's flags for that letter)."""
    queue, ledger = create_queue(fifo=fifo), create_table(LEDGER_KEY, unique("sent-messages"))
    path = str(tmp_path / "warehouse.duckdb")
    _put_claim(ledger, CLAIMED_AT)
    sinks = _messages_flags(queue, ledger)
    assert backfill.run(["--source", str(archive), "--warehouse", path, *sinks]) == 0
    assert _emailed(queue) == ["reader1@example.com"]
    target = f"sqs:{queue.rsplit('/', 1)[1]}"
    assert _query(path, "SELECT step, reason, source, error FROM dead_letters") == [
        (
            "send_thank_you_email",
            "outcome_unknown",
            f"{target}/ch_2",
            f"claimed in {ledger} and never marked sent: the earlier attempt may or may not "
            f"have reached {target}; check before re-driving" + claim_note(CLAIMED_AT),
        )
    ]
    flags = ["--warehouse", path, "--source", str(archive), "--reason", "outcome_unknown"]
    return queue, ledger, path, [*flags, *sinks]


@pytest.fixture
def unknown_outcome(archive: Path, tmp_path: Path, moto_server: MotoServer) -> UnknownOutcome:
    """`_unknown_outcome` on a FIFO queue."""
    return _unknown_outcome(archive, tmp_path)


@pytest.fixture(params=["delivered", "not_delivered"])
def delivery(request: pytest.FixtureRequest) -> str:
    """The operator's word on an outcome_unknown letter, each in turn."""
    return str(request.param)


def _letters(path: str) -> list[tuple[str, bool]]:
    return _query(path, "SELECT reason, redriven_at IS NOT NULL FROM dead_letters ORDER BY 1")


_OUTCOME_RUNS = (
    "SELECT exit_code, list_transform(rows_written, r -> (r.destination, r.rows))"
    " FROM pipeline_runs WHERE job = 'redrive' ORDER BY started_at"
)


def _counts(
    *, selected: int, resolved: int, failed: int = 0, **outcome: int
) -> list[tuple[str, int]]:
    names = ("marked_sent", "claims_released", "claims_changed", "not_sent", "no_claim")
    return [
        ("letters_selected", selected),
        ("letters_resolved", resolved),
        ("letters_failed", failed),
        *((f"outcome_unknown_{name}", outcome.get(name, 0)) for name in names),
    ]


def test_an_outcome_unknown_letter_without_the_operators_word_is_listed_and_left_pending(
    unknown_outcome: UnknownOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, ledger, path, flags = unknown_outcome
    claim = _ledger_item(ledger)
    capsys.readouterr()

    assert redrive.run(flags) == 1

    assert "its message may have gone: check the target, then give --outcome_unknown" in (
        capsys.readouterr().out
    )
    assert (_emailed(queue), _ledger_item(ledger)) == ([], claim)
    assert _letters(path) == [("outcome_unknown", False)]
    assert _query(path, _OUTCOME_RUNS) == [
        (1, [("letters_selected", 1), ("letters_resolved", 0), ("letters_failed", 0)])
    ]


def test_delivered_marks_the_letters_claim_sent_resolves_it_and_sends_nothing(
    unknown_outcome: UnknownOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, ledger, path, flags = unknown_outcome
    flags += ["--outcome_unknown", "delivered"]
    claim, tables = _ledger_item(ledger), _tables(path)
    capsys.readouterr()

    assert redrive.run([*flags, "--dry_run"]) == 0
    assert "claim as the letter left it: would be marked sent" in capsys.readouterr().out
    assert (_emailed(queue), _ledger_item(ledger), _tables(path)) == ([], claim, tables)

    assert redrive.run(flags) == 0

    out = capsys.readouterr().out
    assert "delivered: mark its ledger claim sent, send nothing" in out
    assert "ledger claims marked sent (nothing sent, letter resolved): 1" in out
    assert _emailed(queue) == []
    item = _ledger_item(ledger)
    assert item is not None
    run_id = _query(path, "SELECT redrive_run_id FROM dead_letters")[0][0]
    assert (item["state"], item["claimedAt"], item["confirmedBy"]) == (
        {"S": "sent"},
        {"N": repr(CLAIMED_AT)},
        {"S": run_id},
    )
    assert _letters(path) == [("outcome_unknown", True)]
    assert redrive.run(flags) == 0
    assert "nothing to re-drive" in capsys.readouterr().out
    # Forced: the claim is already sent under the letter's claim, which resolves it again.
    assert redrive.run([*flags, "--include_redriven"]) == 0
    assert (_emailed(queue), _ledger_item(ledger)) == ([], item)
    assert _query(path, _OUTCOME_RUNS) == [
        (0, _counts(selected=1, resolved=1, marked_sent=1)),
        (0, [("letters_selected", 0), ("letters_resolved", 0), ("letters_failed", 0)]),
        (0, _counts(selected=1, resolved=1, marked_sent=1)),
    ]


@pytest.mark.parametrize("fifo", [True, False], ids=["fifo-queue", "standard-queue"])
def test_not_delivered_releases_the_claim_and_sends_the_message_exactly_once(
    archive: Path,
    tmp_path: Path,
    moto_server: MotoServer,
    capsys: pytest.CaptureFixture[str],
    fifo: bool,
) -> None:
    # A standard queue takes a repeat as a new message: only the ledger stops a second one.
    queue, ledger, path, flags = _unknown_outcome(archive, tmp_path, fifo=fifo)
    flags += ["--outcome_unknown", "not_delivered"]
    claim, tables = _ledger_item(ledger), _tables(path)
    capsys.readouterr()

    assert redrive.run([*flags, "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "claim as the letter left it: would be released" in out
    assert "thank_you_emails\tch_2" in out
    assert (_emailed(queue), _ledger_item(ledger), _tables(path)) == ([], claim, tables)

    assert redrive.run(flags) == 0

    out = capsys.readouterr().out
    assert "re-drive (its claim released first)" in out
    assert "ledger claims released (payment re-driven): 1" in out
    assert _emailed(queue) == ["reader2@example.com"]
    assert ledger_items(ledger) == {"thank_you_email#ch_1": "sent", EMAIL_KEY: "sent"}
    assert _letters(path) == [("outcome_unknown", True)]
    assert redrive.run(flags) == 0
    assert "nothing to re-drive" in capsys.readouterr().out
    # Forced: the ledger item is no longer the letter's claim (sent since): kept, and the
    # re-driven payment's email is already sent.
    assert redrive.run([*flags, "--include_redriven"]) == 0
    assert "ledger claims that changed since the letter (kept): 1" in capsys.readouterr().out
    assert _emailed(queue) == []
    assert ledger_items(ledger) == {"thank_you_email#ch_1": "sent", EMAIL_KEY: "sent"}
    assert _query(path, _OUTCOME_RUNS) == [
        (0, _counts(selected=1, resolved=1, claims_released=1)),
        (0, [("letters_selected", 0), ("letters_resolved", 0), ("letters_failed", 0)]),
        (0, _counts(selected=1, resolved=1, claims_changed=1)),
    ]


def test_a_claim_that_changed_since_the_outcome_unknown_letter_is_kept(
    unknown_outcome: UnknownOutcome, capsys: pytest.CaptureFixture[str], delivery: str
) -> None:
    queue, ledger, path, flags = unknown_outcome
    flags += ["--outcome_unknown", delivery]
    # Released by hand and claimed again by a later send still in flight: not the letter's.
    _put_claim(ledger, CLAIMED_AT + 60)
    later = _ledger_item(ledger)
    capsys.readouterr()

    assert redrive.run([*flags, "--dry_run"]) == (1 if delivery == "delivered" else 0)
    assert "claim changed since the letter: kept" in capsys.readouterr().out
    assert (_emailed(queue), _ledger_item(ledger)) == ([], later)

    assert redrive.run(flags) == 1

    assert "ledger claims that changed since the letter (kept): 1" in capsys.readouterr().out
    assert (_emailed(queue), _ledger_item(ledger)) == ([], later)
    assert _letters(path) == [("outcome_unknown", False)]
    (error,) = _query(path, "SELECT error FROM dead_letters")[0]
    if delivery == "delivered":
        assert left_claim(error) == CLAIMED_AT
        counts = _counts(selected=1, resolved=0, claims_changed=1)
    else:
        # Its payment re-driven, the sender met the later claim: the letter is rewritten and
        # now names that claim, for the operator to check in turn.
        assert left_claim(error) == CLAIMED_AT + 60
        counts = _counts(selected=1, resolved=0, failed=1, claims_changed=1)
    assert _query(path, _OUTCOME_RUNS) == [(1, counts)]


def test_an_outcome_unknown_letter_naming_no_claim_is_refused(
    unknown_outcome: UnknownOutcome, capsys: pytest.CaptureFixture[str], delivery: str
) -> None:
    queue, ledger, path, flags = unknown_outcome
    # As letters were written before they named their claim.
    with duckdb.connect(path) as connection:
        connection.execute("UPDATE dead_letters SET error = split_part(error, '; claim left', 1)")
    claim, tables = _ledger_item(ledger), _tables(path)
    capsys.readouterr()

    assert redrive.run([*flags, "--outcome_unknown", delivery]) == 1

    assert "its error names no ledger claim" in capsys.readouterr().out
    assert (_emailed(queue), _ledger_item(ledger)) == ([], claim)
    assert _tables(path) == tables
    assert _query(path, _OUTCOME_RUNS) == [(1, _counts(selected=1, resolved=0, no_claim=1))]


def test_not_delivered_outside_the_message_window_stays_pending_until_it_is_sent(
    unknown_outcome: UnknownOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, ledger, path, flags = unknown_outcome
    flags += ["--outcome_unknown", "not_delivered"]
    # Without the wide window the payment (2024) gets its rows but no message.
    narrow = (
        flags[: flags.index("--messages_max_age_hours")]
        + flags[flags.index("--messages_max_age_hours") + 2 :]
    )
    capsys.readouterr()

    assert redrive.run(narrow) == 1

    out = capsys.readouterr().out
    assert "messages the run did not send (pending, why below): 1" in out
    assert "    outside the message window: its payment settled 2024-12-05 23:01 UTC" in out
    assert (_emailed(queue), _ledger_item(ledger)) == ([], None)
    assert _letters(path) == [("outcome_unknown", False)]
    # The window widened: the claim is gone (counted as changed), the email goes once.
    assert redrive.run(flags) == 0
    assert _emailed(queue) == ["reader2@example.com"]
    assert ledger_items(ledger) == {"thank_you_email#ch_1": "sent", EMAIL_KEY: "sent"}
    assert _letters(path) == [("outcome_unknown", True)]
    assert _query(path, _OUTCOME_RUNS) == [
        (1, _counts(selected=1, resolved=0, claims_released=1, not_sent=1)),
        (0, _counts(selected=1, resolved=1, claims_changed=1)),
    ]
