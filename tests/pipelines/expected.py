"""What the warehouse must hold for a generated archive, derived from the generator's truth.

The truth (`Truth.to_json()` or `truth.json`) says what each simulated payment
is; the expected rows are derived here with DOMAIN.md's rules, independently
of the pipeline, so every job that reads the same events is checked the same
way. Each `expected_*` function returns rows in the order of the matching
`*_SQL` query.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from schemas.generate import table_of
from schemas.records import ALL_RECORD_TYPES

EXPONENTS = {"JPY": 0, "KWD": 3}
MALFORMED_REASONS = {
    "truncated_json": "invalid_json",
    "not_json": "invalid_json",
    "not_an_envelope": "not_an_event",
    "detail_without_id": "invalid_event",
}

CONTRIBUTIONS_SQL = (
    "SELECT payment_id, payment_intent_id, checkout_session_id, status, amount,"
    " amount_refunded, currency, country_code, identity_id, disputed, livemode, account"
    " FROM contributions ORDER BY payment_id"
)
#: The same columns of the view that folds refunds and disputes in: what the truth says.
CURRENT_CONTRIBUTIONS_SQL = CONTRIBUTIONS_SQL.replace(
    " FROM contributions ", " FROM contributions_current "
)
ACQUISITIONS_SQL = (
    "SELECT payment_id, amount, currency, country_code, identity_id, livemode, account,"
    " product, payment_provider, reader_type FROM acquisitions ORDER BY payment_id"
)
CONTRIBUTIONS_STORE_SQL = (
    "SELECT payment_id, payment_status, amount, currency FROM contributions_store"
    " ORDER BY payment_id"
)
SUPPORTER_ITEMS_SQL = (
    "SELECT identity_id, subscription_name, contribution_amount, contribution_currency"
    " FROM supporter_product_data ORDER BY ALL"
)
THANK_YOU_EMAILS_SQL = "SELECT payment_id, message FROM thank_you_emails ORDER BY 1"
SOFT_OPT_INS_SQL = "SELECT payment_id, message FROM soft_opt_ins ORDER BY 1"


def major(amount_minor: int, currency: str) -> Decimal:
    exponent = EXPONENTS.get(currency, 2)
    return (Decimal(amount_minor) / (10**exponent)).quantize(Decimal(1).scaleb(-9))


def rows(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def snapshot(warehouse: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted."""
    return {
        table_of(t).name: rows(warehouse, f"SELECT * FROM {table_of(t).name} ORDER BY ALL")
        for t in ALL_RECORD_TYPES
    }


def expected_country(payment: dict[str, Any]) -> str:
    return payment["card_country"] or payment["address_country"] or "GB"


def live_only(truth: dict[str, Any]) -> dict[str, Any]:
    """The truth as a live deployment (`--stripe_mode live`) sees it: live payments only."""
    return {**truth, "payments": [p for p in truth["payments"] if p["livemode"]]}


def paid_payments(truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Payments with a charge that did not fail (refunded ones included)."""
    return [p for p in truth["payments"] if p["charge_id"] and p["status"] != "Failed"]


def expected_contributions(truth: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
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


def expected_acquisitions(truth: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            p["charge_id"],
            major(p["amount_minor"], p["currency"]),
            p["currency"],
            expected_country(p),
            p["identity_id"],
            p["livemode"],
            p["account"],
            "CONTRIBUTION",
            "STRIPE",
            "Direct",
        )
        for p in paid_payments(truth)
    )


def expected_contributions_store(truth: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (p["charge_id"], p["status"], major(p["amount_minor"], p["currency"]), p["currency"])
        for p in paid_payments(truth)
    )


def expected_supporter_items(truth: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            p["identity_id"],
            f"Stripe - {p['charge_id']}",
            major(p["amount_minor"], p["currency"]),
            p["currency"],
        )
        for p in paid_payments(truth)
        if p["identity_id"]
    )


def expected_messages(truth: dict[str, Any]) -> list[tuple[str, str]]:
    """(charge id, identity id) of each thank-you email and soft opt-in."""
    return sorted(
        (p["charge_id"], p["identity_id"]) for p in paid_payments(truth) if p["identity_id"]
    )


def email_identities(warehouse: Path) -> list[tuple[str, str]]:
    return [
        (pid, json.loads(m)["IdentityUserId"]) for pid, m in rows(warehouse, THANK_YOU_EMAILS_SQL)
    ]


def opt_in_identities(warehouse: Path) -> list[tuple[str, str]]:
    return [(pid, json.loads(m)["identityId"]) for pid, m in rows(warehouse, SOFT_OPT_INS_SQL)]


def missing_charge_payment_intents(truth: dict[str, Any]) -> list[str]:
    return sorted(p["payment_intent_id"] for p in truth["payments"] if not p["charge_id"])


def expected_dead_letter_reasons(truth: dict[str, Any]) -> Counter[str]:
    """Malformed records by decode reason, and a `charge_missing` per payment without a charge."""
    expected = Counter[str]()
    for kind, count in truth["counts"]["malformed"].items():
        expected[MALFORMED_REASONS[kind]] += count
    expected["charge_missing"] = len(missing_charge_payment_intents(truth))
    return expected
