"""The backfill with `--complete_from_stripe` on an archive missing some payments' charge events.

The gapped archive is the full one without the charge and PaymentIntent
outcome events of a few paid payments (their sessions, refunds and disputes
stay). A local stand-in for Stripe's PaymentIntents API serves those
payments' PaymentIntents and charges as the removed events carried them.
With the flag the backfill writes exactly the full archive's rows; without
it those payments are `charge_missing` letters, which a re-drive with the
flag completes alike.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipelines import backfill, redrive
from tests.fixtures.stripe_payment_intents import (
    API_KEY,
    StripePaymentIntentsApi,
    stripe_payment_intents_api,
)
from tests.pipelines.expected import rows, snapshot
from tools.generate_archive import generate, write_archive
from tools.generate_archive.archive import Archive
from tools.generate_archive.model import ArrivedRecord
from transforms.domain import facts
from transforms.services.stripe_charges import KEY_CHECK_ID

__all__ = ["stripe_payment_intents_api"]

#: The events that carry a payment's charge: what the gapped archive lacks.
CHARGE_EVENTS = frozenset(
    {
        facts.CHARGE_SUCCEEDED,
        facts.CHARGE_FAILED,
        facts.PAYMENT_INTENT_SUCCEEDED,
        facts.PAYMENT_INTENT_FAILED,
    }
)
#: Payments with only these features are card payments paid at the first attempt.
PLAIN = frozenset({"card", "guest", "bad_ab_tests", "identity_in_client_reference_id"})
GAPS = 4


def stripe_event(data: bytes) -> dict[str, Any]:
    """The Stripe event of an EventBridge envelope or of a bare export line."""
    document = json.loads(data)
    return document.get("detail", document)


def payment_intent_of(event: dict[str, Any]) -> str | None:
    if event.get("type") not in CHARGE_EVENTS:
        return None
    obj = event["data"]["object"]
    return str(obj["id"] if obj.get("object") == "payment_intent" else obj.get("payment_intent"))


@dataclass(frozen=True)
class GappedArchive(Archive):
    """The archive without the charge events of the `gaps` PaymentIntents."""

    gaps: frozenset[str] = frozenset()

    def records(self) -> Iterator[ArrivedRecord]:
        for record in super().records():
            if record.malformed or payment_intent_of(stripe_event(record.data)) not in self.gaps:
                yield record

    def exports(self) -> list[bytes]:
        return [
            line
            for line in super().exports()
            if payment_intent_of(stripe_event(line)) not in self.gaps
        ]


@dataclass(frozen=True)
class Archives:
    full: Path
    gapped: Path
    gaps: frozenset[str]
    #: The removed events' PaymentIntents and charges, by id, as Stripe serves them.
    intents: dict[str, dict[str, Any]]
    charges: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Gaps:
    """A generated archive, the same without the charge events of `gaps`, and what Stripe
    serves for those PaymentIntents."""

    full: Archive
    gapped: GappedArchive
    gaps: frozenset[str]
    intents: dict[str, dict[str, Any]]
    charges: dict[str, dict[str, Any]]


def with_gaps(start: datetime) -> Gaps:
    """40 payments from `start`, GAPS of them (paid by card at the first attempt) gapped."""
    full = generate(payments=40, seed=19, start=start)
    plain = [
        p
        for p in full.truth.payments
        if p.status == "Paid" and p.charge_id and set(p.features) <= PLAIN
    ]
    # Card countries the address does not give, which only a charge object can tell, and
    # an API version whose PaymentIntents embed their charges (`charges.data`).
    other_card_country = [p for p in plain if p.card_country != p.address_country][: GAPS - 1]
    embedded_charges = [p for p in plain if p.api_version < "2022-11-15"][:1]
    gaps = frozenset(p.payment_intent_id for p in [*other_card_country, *embedded_charges])
    assert len(gaps) == GAPS
    intents: dict[str, dict[str, Any]] = {}
    charges: dict[str, dict[str, Any]] = {}
    for record in full.records():
        if record.malformed:
            continue
        event = stripe_event(record.data)
        if payment_intent_of(event) in gaps:
            obj = event["data"]["object"]
            (intents if obj["object"] == "payment_intent" else charges)[obj["id"]] = obj
    assert sorted(intents) == sorted(gaps)
    gapped = GappedArchive(seed=full.seed, truth=full.truth, items=full.items, gaps=gaps)
    return Gaps(full, gapped, gaps, intents, charges)


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Archives:
    planned = with_gaps(datetime(2025, 5, 1, tzinfo=UTC))
    root = tmp_path_factory.mktemp("archives")
    write_archive(planned.full, root / "full" / "archive")
    write_archive(planned.gapped, root / "gapped" / "archive")
    return Archives(root / "full", root / "gapped", planned.gaps, planned.intents, planned.charges)


def run_backfill(archive: Path, warehouse: Path, capture: Path, *flags: str) -> str:
    with capture.open("w") as out, contextlib.redirect_stdout(out):
        code = backfill.run(
            ["--source", str(archive / "archive"), "--warehouse", str(warehouse), *flags]
        )
    assert code == 0
    return capture.read_text()


def charge_missing(warehouse: Path) -> list[tuple[Any, ...]]:
    return rows(
        warehouse,
        "SELECT source, error FROM dead_letters WHERE reason = 'charge_missing' ORDER BY 1",
    )


def without_run_columns(tables: dict[str, list[tuple[Any, ...]]]) -> dict[str, Any]:
    """Every table but the dead letters (whose errors differ) and the run history."""
    return {
        name: table
        for name, table in tables.items()
        if name not in ("dead_letters", "pipeline_runs")
    }


@pytest.fixture
def serving_the_gaps(
    archives: Archives,
    stripe_payment_intents_api: StripePaymentIntentsApi,
    monkeypatch: pytest.MonkeyPatch,
) -> StripePaymentIntentsApi:
    """The stand-in serving the gapped payments' PaymentIntents and charges, the key set."""
    api = stripe_payment_intents_api
    api.intents.update(archives.intents)
    api.charges.update(archives.charges)
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    return api


def test_completed_payments_have_the_full_archives_rows_and_no_letters(
    archives: Archives, serving_the_gaps: StripePaymentIntentsApi, tmp_path: Path
) -> None:
    api = serving_the_gaps

    full = tmp_path / "full.duckdb"
    run_backfill(archives.full, full, tmp_path / "full.txt")
    completed = tmp_path / "completed.duckdb"
    summary = run_backfill(
        archives.gapped,
        completed,
        tmp_path / "completed.txt",
        "--complete_from_stripe",
        "--stripe_api_base",
        api.url,
    )

    assert without_run_columns(snapshot(completed)) == without_run_columns(snapshot(full))
    # The full archive's own charge_missing payment is not Stripe's either: it stays a letter.
    full_letters = charge_missing(full)
    assert [source for source, _ in charge_missing(completed)] == [s for s, _ in full_letters]
    assert all(
        error.endswith(f"Stripe retrieval: not_found: Stripe has no PaymentIntent {s[15:]}")
        for s, error in charge_missing(completed)
    )
    retrieved = sorted(path.rsplit("/", 1)[1] for path, _ in api.requests)
    # One key check before launch, then one retrieval per charge_missing payment.
    assert retrieved == sorted([KEY_CHECK_ID, *archives.gaps, *(s[15:] for s, _ in full_letters)])
    assert all(query == {"expand[0]": ["latest_charge"]} for _, query in api.requests)
    assert f"charges completed from stripe: {GAPS}" in summary
    assert f"charge retrievals failed: {len(full_letters)}" in summary


def test_a_key_stripe_refuses_stops_the_backfill_before_launch(
    archives: Archives,
    stripe_payment_intents_api: StripePaymentIntentsApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "rk_test_refusedrefused")
    argv = ["--source", str(archives.gapped / "archive"), "--warehouse"]
    flags = ["--complete_from_stripe", "--stripe_api_base", stripe_payment_intents_api.url]

    assert backfill.run([*argv, str(tmp_path / "w.duckdb"), *flags]) == 3

    assert capsys.readouterr().err == (
        "python -m pipelines.backfill: error: --complete_from_stripe: "
        "Stripe refused the key in STRIPE_API_KEY for PaymentIntents\n"
    )
    assert [path for path, _ in stripe_payment_intents_api.requests] == [
        f"/v1/payment_intents/{KEY_CHECK_ID}"
    ]


def test_without_the_flag_the_gapped_payments_are_charge_missing_letters(
    archives: Archives, tmp_path: Path
) -> None:
    full = tmp_path / "full.duckdb"
    run_backfill(archives.full, full, tmp_path / "full.txt")
    gapped = tmp_path / "gapped.duckdb"
    run_backfill(archives.gapped, gapped, tmp_path / "gapped.txt")

    expected = sorted(
        [source for source, _ in charge_missing(full)]
        + [f"payment_intent:{pi}" for pi in archives.gaps]
    )
    assert [source for source, _ in charge_missing(gapped)] == expected
    paid = "SELECT count(*) FROM contributions WHERE payment_intent_id IN ({})".format(
        ", ".join(f"'{pi}'" for pi in sorted(archives.gaps))
    )
    assert rows(full, paid) == [(GAPS,)]
    assert rows(gapped, paid) == [(0,)]


def test_redriving_the_letters_with_the_flag_completes_them_as_the_full_archive(
    archives: Archives, serving_the_gaps: StripePaymentIntentsApi, tmp_path: Path
) -> None:
    api = serving_the_gaps
    full = tmp_path / "full.duckdb"
    run_backfill(archives.full, full, tmp_path / "full.txt")
    warehouse = tmp_path / "gapped.duckdb"
    run_backfill(archives.gapped, warehouse, tmp_path / "gapped.txt")
    sources = ", ".join(f"'payment_intent:{pi}'" for pi in sorted(archives.gaps))
    ids = [
        str(letter_id)
        for (letter_id,) in rows(
            warehouse, f"SELECT dead_letter_id FROM dead_letters WHERE source IN ({sources})"
        )
    ]
    assert len(ids) == GAPS

    with (tmp_path / "redrive.txt").open("w") as out, contextlib.redirect_stdout(out):
        code = redrive.run(
            [
                "--warehouse",
                str(warehouse),
                "--source",
                str(archives.gapped / "archive"),
                "--ids",
                ",".join(ids),
                "--complete_from_stripe",
                "--stripe_api_base",
                api.url,
            ]
        )

    assert code == 0
    retrieved = sorted(path.rsplit("/", 1)[1] for path, _ in api.requests)
    assert retrieved == sorted([KEY_CHECK_ID, *archives.gaps])
    completed = without_run_columns(snapshot(warehouse))
    assert completed == without_run_columns(snapshot(full))
    assert rows(
        warehouse,
        f"SELECT count(*) FROM dead_letters WHERE source IN ({sources}) AND redriven_at IS NULL",
    ) == [(0,)]
