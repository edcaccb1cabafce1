"""Fuzz the boundary through the real backfill: mutated records never stop a run or touch a row.

Hypothesis (seeded: `derandomize=True`, no example database; bounded: two
examples, no shrinking and no per-example deadline since each example is a
whole pipeline run) draws
batches of mutated records: one field the pipeline reads, of one of the
event shapes it handles (session, charge, legacy PaymentIntent,
charge.refunded, refund, dispute), set to a value of a wrong type or out of
range (wrong JSON types, lone surrogates, NaN, negative, too large,
non-ISO currencies, times outside 2010-2100, ids without their prefix).
Every mutant has ids of its own, so it can only touch its own payment.

Each batch is written next to a small generated archive and the backfill runs
once on it with the FnApiRunner; the same archive without mutants runs once
for the whole test. Then: the run exits 0 and its accounting identity holds;
every mutant is exactly one dead letter at `decode` or `classify`, found by
its source (`<file>@<offset>`); and every table but `dead_letters` holds
exactly the rows of the run without mutants.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipelines import backfill
from schemas import stripe as payload
from tests import builders as b
from tests.pipelines.expected import rows, snapshot
from tests.schemas.test_stripe import verdict
from tools.generate_archive import generate, write_archive

TEXT = [7, True, [], {}, float("nan"), "\ud800x"]
OBJECT = ["x", 7, True, [], 1.5, "\udfff"]
LIST = ["card", 7, {}, True]
AMOUNT = [-1, 10**30, 2**63, payload.MAX_AMOUNT + 1, "500", 5.5, True]
CURRENCY = ["ßab", "äöü", "xyz", "GBP", "", 826]
EPOCH = [0, -1, 10**12, 10**20, 253402300800, "1733439600", 1.7e9, True]
LIVEMODE = ["true", 1, 0, None]
FLAG = ["true", 1, 0]
COUNTRY = ["GBR", "", 5, "ß1"]
EVENT_ID = ["", "ch_1", 7, None]
EVENT_TYPE = [7, "", None, []]
SESSION_ID = ["", "pi_1", 7, None]
PAYMENT_INTENT_ID = ["", "cs_1", 7, None]
CHARGE_ID = ["", "pi_1", 7, None]
REFUND_ID = ["", "ch_1", 7, None]
DISPUTE_ID = ["", "ch_1", 7]
# An optional reference: an id of the wrong kind, or an expanded object without one.
PAYMENT_INTENT_REF = ["", "ch_1", 7, True, {"id": 7}]
CHARGE_REF = ["", "pi_1", 7, True, {"id": "re_1"}]


def session(i: int) -> dict[str, Any]:
    obj = b.session_object(
        session_id=f"cs_m{i}",
        payment_intent=f"pi_m{i}",
        metadata={"identityId": f"9{i}", "campaignCode": "FUZZ"},
        client_reference_id=f"9{i}",
        state="CA",
        promotions="opt_in",
        custom_fields={"firstName": "Ada"},
    )
    return b.stripe_event_document(f"evt_m{i}", "checkout.session.completed", obj)


def charge(i: int) -> dict[str, Any]:
    obj = {**b.charge_object(charge_id=f"ch_m{i}", payment_intent=f"pi_m{i}"), "created": b.T0}
    return b.stripe_event_document(f"evt_m{i}", "charge.succeeded", obj)


def intent(i: int) -> dict[str, Any]:
    embedded = b.charge_object(charge_id=f"ch_m{i}", payment_intent=f"pi_m{i}", status="failed")
    obj = b.payment_intent_object(
        payment_intent_id=f"pi_m{i}",
        legacy_charges=[embedded],
        last_payment_error_charge=f"ch_m{i}",
    )
    return b.stripe_event_document(f"evt_m{i}", "payment_intent.payment_failed", obj)


def refunded(i: int) -> dict[str, Any]:
    obj = b.charge_object(charge_id=f"ch_m{i}", payment_intent=f"pi_m{i}", amount_refunded=200)
    document = b.stripe_event_document(f"evt_m{i}", "charge.refunded", obj)
    document["data"]["previous_attributes"] = {"amount_refunded": 100}
    return document


def refund(i: int) -> dict[str, Any]:
    obj = {
        "id": f"re_m{i}",
        "object": "refund",
        "charge": f"ch_m{i}",
        "amount": 200,
        "currency": "gbp",
        "status": "succeeded",
        "created": b.T0,
    }
    return b.stripe_event_document(f"evt_m{i}", "refund.created", obj)


def dispute(i: int) -> dict[str, Any]:
    obj = b.dispute_object(dispute_id=f"dp_m{i}", charge=f"ch_m{i}")
    return b.stripe_event_document(f"evt_m{i}", "charge.dispute.created", obj)


Template = Callable[[int], dict[str, Any]]
EVENT_FIELDS = [("id", EVENT_ID), ("type", EVENT_TYPE), ("created", EPOCH), ("livemode", LIVEMODE)]
FIELDS: dict[Template, list[tuple[str, list[Any]]]] = {
    session: [
        *EVENT_FIELDS,
        ("data.object.id", SESSION_ID),
        ("data.object.mode", TEXT),
        ("data.object.payment_status", TEXT),
        ("data.object.payment_intent", PAYMENT_INTENT_REF),
        ("data.object.amount_total", AMOUNT),
        ("data.object.currency", CURRENCY),
        ("data.object.customer_details", OBJECT),
        ("data.object.customer_details.email", TEXT),
        ("data.object.customer_details.name", TEXT),
        ("data.object.customer_details.address", OBJECT),
        ("data.object.customer_details.address.country", COUNTRY),
        ("data.object.customer_details.address.postal_code", TEXT),
        ("data.object.customer_details.address.state", TEXT),
        ("data.object.metadata", OBJECT),
        ("data.object.metadata.identityId", TEXT),
        ("data.object.metadata.campaignCode", TEXT),
        ("data.object.client_reference_id", TEXT),
        ("data.object.consent", OBJECT),
        ("data.object.consent.promotions", TEXT),
        ("data.object.payment_method_types", LIST),
        ("data.object.custom_fields", LIST),
    ],
    charge: [
        *EVENT_FIELDS,
        ("data.object.id", CHARGE_ID),
        ("data.object.payment_intent", PAYMENT_INTENT_REF),
        ("data.object.created", EPOCH),
        ("data.object.amount", AMOUNT),
        ("data.object.amount_refunded", AMOUNT),
        ("data.object.currency", CURRENCY),
        ("data.object.status", TEXT),
        ("data.object.refunded", FLAG),
        ("data.object.payment_method_details", OBJECT),
        ("data.object.payment_method_details.type", TEXT),
        ("data.object.payment_method_details.card", OBJECT),
        ("data.object.payment_method_details.card.country", COUNTRY),
    ],
    intent: [
        ("data.object.id", PAYMENT_INTENT_ID),
        ("data.object.charges", OBJECT),
        ("data.object.charges.data", LIST),
        ("data.object.latest_charge", CHARGE_REF),
        ("data.object.last_payment_error", OBJECT),
        ("data.object.last_payment_error.charge", CHARGE_REF),
    ],
    refunded: [
        ("data.object.id", CHARGE_ID),
        ("data.object.amount_refunded", AMOUNT),
        ("data.object.currency", CURRENCY),
        ("data.previous_attributes", OBJECT),
        ("data.previous_attributes.amount_refunded", AMOUNT),
    ],
    refund: [
        ("data.object.id", REFUND_ID),
        ("data.object.charge", CHARGE_REF),
        ("data.object.amount", AMOUNT),
        ("data.object.currency", CURRENCY),
        ("data.object.status", TEXT),
        ("data.object.created", EPOCH),
    ],
    dispute: [
        ("data.object.id", DISPUTE_ID),
        ("data.object.charge", CHARGE_REF),
        ("data.object.amount", AMOUNT),
        ("data.object.currency", CURRENCY),
        ("data.object.status", TEXT),
    ],
}


@dataclass(frozen=True)
class Mutation:
    template: Template
    path: str
    value: Any

    def record(self, i: int) -> bytes:
        """The EventBridge record of mutant `i`: the template's event with the field set."""
        document = copy.deepcopy(self.template(i))
        *parents, last = self.path.split(".")
        target = document
        for name in parents:
            target = target[name]
        target[last] = self.value
        envelope = b.eventbridge_envelope(
            document, envelope_id=f"m-{i}", account=b.ACCOUNT_UK, time="2024-12-05T23:00:01Z"
        )
        return json.dumps(envelope).encode()


mutations = st.sampled_from(
    [(template, path, values) for template, fields in FIELDS.items() for path, values in fields]
).flatmap(
    lambda field: st.builds(
        Mutation, st.just(field[0]), st.just(field[1]), st.sampled_from(field[2])
    )
)


def run_backfill(source: Path, warehouse: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = backfill.run(["--source", str(source), "--warehouse", str(warehouse)])
    assert code == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], int]:
    """(archive folder, the snapshot of its tables, records read) without mutants."""
    root = tmp_path_factory.mktemp("fuzz-good")
    archive = generate(payments=12, seed=41, start=datetime(2025, 4, 1, tzinfo=UTC), hours=2)
    write_archive(archive, root / "archive")
    summary = run_backfill(root / "archive", root / "warehouse.duckdb")
    read = int(summary.splitlines()[0].removeprefix("records read: "))
    return root / "archive", snapshot(root / "warehouse.duckdb"), read


@settings(
    max_examples=2,
    derandomize=True,
    database=None,
    deadline=None,
    # Each example is a pipeline run: shrinking a failure would take hundreds.
    # The failing batch is printed whole; its mutants' sources name the culprit.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(mutations, min_size=60, max_size=60))
def test_mutated_records_are_dead_letters_and_good_rows_are_unchanged(
    batch: list[Mutation], good: tuple[Path, dict[str, Any], int], tmp_path_factory: Any
) -> None:
    archive, expected, good_read = good
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(archive, root / "archive")
    mutants = root / "archive" / "mutants" / "mutants.jsonl"
    mutants.parent.mkdir()
    sources, offset = {}, 0
    with mutants.open("wb") as out:
        for i, mutation in enumerate(batch):
            data = mutation.record(i)
            sources[f"{mutants}@{offset}"] = (mutation.template.__name__, mutation.path)
            out.write(data + b"\n")
            offset += len(data) + 1
    warehouse = root / "warehouse.duckdb"

    summary = run_backfill(root / "archive", warehouse)

    read = good_read + len(batch)
    assert summary.splitlines()[0] == f"records read: {read}"
    assert summary.splitlines()[-1].startswith(f"read {read} = processed ")
    assert summary.splitlines()[-1].endswith(": holds")
    letters = rows(
        warehouse,
        f"SELECT source, step FROM dead_letters WHERE source LIKE '{mutants}@%' ORDER BY 1",
    )
    assert sorted(source for source, _ in letters) == sorted(sources), "one letter per mutant"
    assert {step for _, step in letters} <= {"decode", "classify"}
    actual = snapshot(warehouse)
    for table, table_rows in expected.items():
        if table != "dead_letters":
            assert actual[table] == table_rows, table
    others = [r for r in actual["dead_letters"] if not str(r[5]).startswith(f"{mutants}@")]
    assert relative(others, root / "archive") == relative(expected["dead_letters"], archive)


def relative(letters: list[tuple[Any, ...]], archive: Path) -> list[tuple[Any, ...]]:
    """Dead-letter rows with `source` relative to `archive`, without the id (a hash of it)."""
    return sorted((*r[1:5], str(r[5]).removeprefix(str(archive)), *r[6:]) for r in letters)


def test_every_mutation_the_fuzzer_can_draw_is_rejected_at_the_boundary() -> None:
    """The whole cross product, through the pure boundary: the pipeline runs above
    sample it, this proves no drawable mutant is a valid record."""
    drawn = [
        Mutation(template, path, value)
        for template, fields in FIELDS.items()
        for path, values in fields
        for value in values
    ]
    verdicts = {(m.template.__name__, m.path, repr(m.value)): verdict(m.record(0)) for m in drawn}

    accepted = {key: found for key, found in verdicts.items() if found[0] == "ok"}
    assert accepted == {}
    assert len(verdicts) == len(drawn) == 349
