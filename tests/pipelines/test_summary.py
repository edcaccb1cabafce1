"""The run summary: the accounting identity and what an operator reads."""

from __future__ import annotations

import pytest

from pipelines.summary import RunSummary, render, summary_json, written_by_destination

COUNTERS = {
    "records_read": 10,
    "event_type:checkout.session.completed": 4,
    "event_type:charge.succeeded": 4,
    "processed": 5,
    "skipped_duplicate": 2,
    "skipped_not_a_payment_event": 1,
    "dead_lettered_invalid_json": 2,
    "payments_paid": 2,
    "payments_dead_lettered_charge_missing": 1,
    "output_skipped_email_no_identity": 1,
    "warning_ab_tests_unreadable": 1,
    "facts_after_completion": 3,
}


@pytest.mark.parametrize(
    ("read", "balanced"),
    [(10, True), (11, False), (9, False)],
    ids=["all-accounted", "one-record-lost", "one-record-counted-twice"],
)
def test_identity(read: int, balanced: bool) -> None:
    summary = RunSummary(counters={**COUNTERS, "records_read": read}, table_rows={})
    assert summary.accounted == 10
    assert summary.balanced is balanced


def test_render_lists_every_count() -> None:
    text = render(
        RunSummary(
            counters=COUNTERS,
            table_rows={"contributions": 2, "dead_letters": 3},
            written={"warehouse:contributions": 1, "warehouse:dead_letters": 2},
        )
    )
    assert text.splitlines() == [
        "records read: 10",
        "by event type: 8",
        "  charge.succeeded: 4",
        "  checkout.session.completed: 4",
        "duplicates: 2",
        "skipped by reason (duplicates included): 3",
        "  duplicate: 2",
        "  not_a_payment_event: 1",
        "dead-lettered records by reason: 2",
        "  invalid_json: 2",
        "processed: 5",
        "payments completed or dead-lettered: 3",
        "  dead_lettered_charge_missing: 1",
        "  paid: 2",
        "facts after completion: 3",
        "charges without checkout session: 0",
        "outputs skipped: 1",
        "  email_no_identity: 1",
        "warnings: 1",
        "  ab_tests_unreadable: 1",
        "written by this run: 3",
        "  warehouse:contributions: 1",
        "  warehouse:dead_letters: 2",
        "table totals (the whole warehouse, earlier runs included): 5",
        "  contributions: 2",
        "  dead_letters: 3",
        "read 10 = processed 5 + skipped 3 + dead-lettered 2: holds",
    ]


def test_render_flags_an_identity_that_does_not_hold() -> None:
    text = render(RunSummary(counters={**COUNTERS, "records_read": 12}, table_rows={}))
    assert text.splitlines()[-1] == (
        "read 12 = processed 5 + skipped 3 + dead-lettered 2: DOES NOT HOLD"
    )


def test_an_unreadable_file_fails_the_run_and_is_reported() -> None:
    summary = RunSummary(counters={**COUNTERS, "files_unreadable": 1}, table_rows={})
    assert (summary.balanced, summary.succeeded) == (True, False)
    assert render(summary).splitlines()[-2] == (
        "unreadable files: 1 (see dead_letters, step read): their records after the failure"
        " were not read"
    )


def test_files_over_the_limit_or_refused_fail_the_run_and_are_reported() -> None:
    summary = RunSummary(
        counters={
            **COUNTERS,
            "files_too_large": 1,
            "files_refused_symlink_outside_source": 2,
            "files_refused_not_a_regular_file": 1,
        },
        table_rows={},
    )
    assert (summary.balanced, summary.succeeded) == (True, False)
    assert render(summary).splitlines()[-5:] == [
        "files over the size limit: 1 (see dead_letters, step read): their records after the"
        " limit were not read",
        "files refused, not read (see dead_letters, step read): 3",
        "  not_a_regular_file: 1",
        "  symlink_outside_source: 2",
        "read 10 = processed 5 + skipped 3 + dead-lettered 2: holds",
    ]


def test_render_says_when_rows_were_not_counted() -> None:
    lines = render(RunSummary(counters=COUNTERS, table_rows={})).splitlines()
    assert "table totals: not counted (the warehouse is not a DuckDB file)" in lines
    assert "written by this run: 0" in lines
    assert not any(line.startswith("table totals (the whole") for line in lines)


def test_written_counts_come_from_every_writers_counters_and_nothing_else() -> None:
    counters = {
        ("WriteToWarehouse", "rows_written_contributions"): 3,
        ("WriteToWarehouse", "rows_rejected_contributions"): 1,
        ("WriteToWarehouseBigQuery", "rows_written_acquisitions"): 2,
        ("WriteToContributionsStore", "rows_written_contributions"): 4,
        ("WriteToContributionsStore", "rows_dead_lettered"): 1,
        ("stripe_events", "supporter_items_written"): 5,
        ("stripe_events", "thank_you_email_sent"): 6,
        ("stripe_events", "thank_you_email_already_sent"): 7,
        # Held back by the message window or --no_messages: not sent, so not written.
        ("stripe_events", "thank_you_email_not_sent"): 10,
        ("stripe_events", "records_read"): 8,
        ("other", "rows_written_x"): 9,
    }
    assert written_by_destination(counters) == {
        "bigquery:acquisitions": 2,
        "dynamodb:supporter_product_data": 5,
        "postgres:contributions": 4,
        "sent:thank_you_email": 6,
        "warehouse:contributions": 3,
    }


def test_summary_json_separates_this_runs_rows_from_table_totals() -> None:
    summary = RunSummary(
        counters={"records_read": 3, "processed": 2, "skipped_duplicate": 1},
        table_rows={"contributions": 7},
        written={"warehouse:contributions": 2},
    )
    assert summary_json(summary, run_id="r1") == {
        "run_id": "r1",
        "records_read": 3,
        "processed": 2,
        "skipped": {"duplicate": 1},
        "dead_lettered": {},
        "accounted": 3,
        "balanced": True,
        "files_unreadable": 0,
        "succeeded": True,
        "event_types": {},
        "payments": {},
        "identities": {},
        "outputs_skipped": {},
        "warnings": {},
        "written_by_this_run": {"warehouse:contributions": 2},
        "table_totals": {"contributions": 7},
        "counters": {"processed": 2, "records_read": 3, "skipped_duplicate": 1},
    }
    assert summary_json(RunSummary(counters={}, table_rows={}))["table_totals"] is None


def test_render_lists_identity_outcomes_when_the_step_ran() -> None:
    counters = {
        **COUNTERS,
        "identity_found": 2,
        "identity_created": 1,
        "identity_unavailable": 1,
        "requests_to_identity_api": 6,
    }
    lines = render(RunSummary(counters=counters, table_rows={})).splitlines()
    start = lines.index("payments without identity, by outcome: 4")
    assert lines[start : start + 6] == [
        "payments without identity, by outcome: 4",
        "  created: 1",
        "  found: 2",
        "  unavailable: 1",
        "requests to the identity api: 6",
        "outputs skipped: 1",
    ]


def test_render_lists_completions_from_stripe_only_when_the_step_ran() -> None:
    counters = {**COUNTERS, "charges_completed_from_stripe": 2, "charge_retrievals_failed": 1}
    lines = render(RunSummary(counters=counters, table_rows={})).splitlines()
    start = lines.index("charges without checkout session: 0")
    assert lines[start + 1 : start + 3] == [
        "charges completed from stripe: 2",
        "charge retrievals failed: 1",
    ]
    assert "charge retrievals failed" not in render(RunSummary(counters=COUNTERS, table_rows={}))
