"""The backfill end to end on generated archives, checked row by row against the generator's truth.

The truth says what each simulated payment is (ids, amount, currency,
countries, identity, refunds, dispute, account); the expected rows are
derived from it here with DOMAIN.md's rules, independently of the pipeline.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines import backfill
from schemas.generate import table_of
from schemas.records import ALL_RECORD_TYPES
from tools.generate_archive import generate, write_archive

EXPONENTS = {"JPY": 0, "KWD": 3}
MALFORMED_REASONS = {
    "truncated_json": "invalid_json",
    "not_json": "invalid_json",
    "not_an_envelope": "not_an_event",
    "detail_without_id": "invalid_event",
}
SAMPLE = Path(__file__).resolve().parents[2] / "sample"


def major(amount_minor: int, currency: str) -> Decimal:
    exponent = EXPONENTS.get(currency, 2)
    return (Decimal(amount_minor) / (10**exponent)).quantize(Decimal(1).scaleb(-9))


def rows(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def snapshot(warehouse: Path) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table_of(t).name: rows(warehouse, f"SELECT * FROM {table_of(t).name} ORDER BY ALL")
        for t in ALL_RECORD_TYPES
    }


@pytest.fixture(scope="module", params=["generated", "sample"])
def archive(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `archive/` and `truth.json`."""
    if request.param == "sample":
        return SAMPLE
    root = tmp_path_factory.mktemp("generated")
    generated = generate(payments=150, seed=11, start=datetime(2025, 5, 1, tzinfo=UTC))
    write_archive(generated, root / "archive")
    return root


@pytest.fixture(scope="module")
def runs(
    archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], list[str], list[dict[str, list[tuple[Any, ...]]]]]:
    """The backfill run twice into one warehouse: (warehouse, truth, outputs, snapshots)."""
    warehouse = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    outputs, snapshots = [], []
    for _ in range(2):
        capture = tmp_path_factory.mktemp("stdout") / "summary.txt"
        with capture.open("w") as out, contextlib.redirect_stdout(out):
            code = backfill.run(
                ["--source", str(archive / "archive"), "--warehouse", str(warehouse)]
            )
        assert code == 0
        outputs.append(capture.read_text())
        snapshots.append(snapshot(warehouse))
    truth = json.loads((archive / "truth.json").read_text())
    return warehouse, truth, outputs, snapshots


def expected_country(payment: dict[str, Any]) -> str:
    return payment["card_country"] or payment["address_country"] or "GB"


def test_contributions_match_the_truth_row_by_row(runs: Any) -> None:
    warehouse, truth, _, _ = runs
    expected = sorted(
        (
            p["charge_id"],
            p["payment_intent_id"],
            p["checkout_session_id"],
            p["status"],
            major(p["amount_minor"], p["currency"]),
            major(p["refunded_total_minor"], p["currency"]),
            p["currency"],
            expected_country(p),
            p["identity_id"],
            p["disputed"],
            p["livemode"],
            p["account"],
        )
        for p in truth["payments"]
        if p["charge_id"]
    )
    actual = rows(
        warehouse,
        "SELECT payment_id, payment_intent_id, checkout_session_id, status, amount,"
        " amount_refunded, currency, country_code, identity_id, disputed, livemode, account"
        " FROM contributions ORDER BY payment_id",
    )
    assert actual == expected


def test_paid_payments_have_one_row_in_each_output(runs: Any) -> None:
    warehouse, truth, _, _ = runs
    paid = [p for p in truth["payments"] if p["charge_id"] and p["status"] != "Failed"]
    with_identity = [p for p in paid if p["identity_id"]]

    assert rows(
        warehouse,
        "SELECT payment_id, amount, currency, country_code, identity_id, livemode, account,"
        " product, payment_provider, reader_type FROM acquisitions ORDER BY payment_id",
    ) == sorted(
        (
            p["charge_id"],
            major(p["amount_minor"], p["currency"]),
            p["currency"],
            expected_country(p),
            p["identity_id"],
            p["livemode"],
            p["account"],
            "CONTRIBUTION",
            "STRIPE_HOSTED_CHECKOUT",
            "Direct",
        )
        for p in paid
    )
    assert rows(
        warehouse,
        "SELECT payment_id, payment_status, amount, currency FROM contributions_store"
        " ORDER BY payment_id",
    ) == sorted(
        (p["charge_id"], p["status"], major(p["amount_minor"], p["currency"]), p["currency"])
        for p in paid
    )
    assert rows(
        warehouse,
        "SELECT identity_id, subscription_name, contribution_amount, contribution_currency"
        " FROM supporter_product_data ORDER BY ALL",
    ) == sorted(
        (
            p["identity_id"],
            f"Stripe - {p['charge_id']}",
            major(p["amount_minor"], p["currency"]),
            p["currency"],
        )
        for p in with_identity
    )
    expected_messages = sorted((p["charge_id"], p["identity_id"]) for p in with_identity)
    emails = rows(warehouse, "SELECT payment_id, message FROM thank_you_emails ORDER BY 1")
    assert [(pid, json.loads(m)["IdentityUserId"]) for pid, m in emails] == expected_messages
    opt_ins = rows(warehouse, "SELECT payment_id, message FROM soft_opt_ins ORDER BY 1")
    assert [(pid, json.loads(m)["identityId"]) for pid, m in opt_ins] == expected_messages


def test_no_personal_data_in_analytics_tables(runs: Any) -> None:
    warehouse, _, _, _ = runs
    for table in ("contributions", "acquisitions"):
        columns = {r[0] for r in rows(warehouse, f"DESCRIBE {table}")}
        assert columns.isdisjoint({"email", "name", "postal_code", "state"}), table
        dump = json.dumps(rows(warehouse, f"SELECT * FROM {table}"), default=str)
        assert "@example" not in dump


def test_dead_letters_hold_malformed_records_and_missing_charges(runs: Any) -> None:
    warehouse, truth, _, _ = runs
    expected = Counter[str]()
    for kind, count in truth["counts"]["malformed"].items():
        expected[MALFORMED_REASONS[kind]] += count
    missing = [p["payment_intent_id"] for p in truth["payments"] if not p["charge_id"]]
    expected["charge_missing"] = len(missing)
    reasons = Counter(r[0] for r in rows(warehouse, "SELECT reason FROM dead_letters"))
    assert reasons == expected
    assert rows(
        warehouse, "SELECT source FROM dead_letters WHERE reason = 'charge_missing' ORDER BY 1"
    ) == [(f"payment_intent:{pi}",) for pi in sorted(missing)]
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


def test_running_twice_leaves_exactly_the_same_rows(runs: Any) -> None:
    _, _, _, snapshots = runs
    first, second = snapshots
    assert first == second
    assert {name: len(table) for name, table in first.items()} == {
        name: len(table) for name, table in second.items()
    }
