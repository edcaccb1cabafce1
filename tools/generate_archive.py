"""Generate realistic Stripe -> EventBridge -> Firehose archives, with the truth about them.

Simulates one-off contributions paid on Stripe-hosted Checkout pages across three
Stripe accounts (UK, AU, US) and writes what the S3 archive would hold: EventBridge
envelopes around Stripe snapshot events, batched into Firehose objects, plus an
``exports/`` folder of bare events as exported from the Stripe API. Everything is a
pure function of ``(payments, seed, start, hours)``: the same arguments give the same
bytes, so tests and benchmarks can pin outputs.

Library use::

    archive = generate(payments=300, seed=7)
    summary = write_archive(archive, Path("out/archive"))   # also writes out/truth.json
    for data in archive.envelopes():                         # arrival order, for Kinesis
        ...

Command line (every flag has ``--help``)::

    python -m tools.generate_archive --out out/archive --payments 28000 --seed 1

Layout written under ``--out`` (the Firehose prefix)::

    YYYY/MM/dd/HH/<stream>-1-YYYY-MM-dd-HH-mm-ss-<uuid>[.gz]   Firehose objects
    exports/stripe-events-export-YYYY-MM-dd.jsonl              bare events, one per line

The hour folder and the timestamp in the name are the arrival time (UTC) of the oldest
record in the object. Objects hold records either concatenated with no delimiter or
each followed by a newline; most are gzip. Malformed records are only ever written
into newline-delimited objects, one per line, so that a reader which resynchronises
at the next newline counts each exactly once (a truncated record followed directly by
another record would make the count depend on the reader).

``truth.json`` goes *next to* the Firehose prefix, not inside it: by default
``<parent of --out>/truth.json`` (``--truth`` overrides). Its format is
``Truth.to_json()``: ``generator`` (the arguments), ``payments`` (one object per
intended contribution, see ``PaymentTruth``), ``counts`` (records, deliveries by
kind, malformed records by kind, distinct events by type, exports) and ``archive``
(objects written, by delimiting style and compression).

The committed sample was made with::

    .venv/bin/python -m tools.generate_archive --out sample/archive --payments 320 \
        --seed 20250301 --start 2025-03-01T00:00:00Z --hours 6 --buffer-seconds 900

Realism notes: charges of Bacs and SEPA debits get ``py_`` ids, as Stripe issues them;
subscription sessions are emitted without their invoice's charge/payment intent
events so that every ``charge.*`` event in the archive belongs to a payment in the
truth.
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import json
import random
import string
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_START = datetime(2025, 3, 1, tzinfo=UTC)
DEFAULT_STREAM = "stripe-events-archive"
AWS_ACCOUNT = "123456789012"
AWS_REGION = "eu-west-1"

#: API versions the event destinations are pinned to, oldest first. Real destinations
#: pin one version each; spreading versions per payment makes every shape appear under
#: every account.
API_VERSIONS: tuple[str, ...] = (
    "2020-08-27",
    "2022-08-01",
    "2022-11-15",
    "2023-08-16",
    "2023-10-16",
    "2024-04-10",
    "2024-06-20",
    "2024-09-30.acacia",
    "2025-01-27.acacia",
    "2025-03-31.basil",
)
#: From this version a PaymentIntent carries `latest_charge` instead of a `charges` list.
LATEST_CHARGE_SINCE = "2022-11-15"
#: From this version a Charge no longer carries `invoice`.
BASIL_SINCE = "2025-03-31.basil"

#: Exponent of each currency the generator uses (Stripe: KWD is three-decimal and
#: amounts must end in 0; JPY is zero-decimal).
CURRENCY_EXPONENTS: dict[str, int] = {"gbp": 2, "usd": 2, "aud": 2, "eur": 2, "jpy": 0, "kwd": 3}

MALFORMED_KINDS: tuple[str, ...] = (
    "truncated_json",
    "not_json",
    "not_an_envelope",
    "detail_without_id",
)
DELIVERY_KINDS: tuple[str, ...] = ("original", "redelivery", "replay", "firehose_duplicate")


@dataclass(frozen=True)
class StripeAccount:
    """One Stripe account and the EventBridge partner sources it delivers through."""

    name: str
    country: str
    live_source: str
    test_source: str
    #: (currency, weight) for card payments.
    currencies: tuple[tuple[str, float], ...]


ACCOUNTS: tuple[StripeAccount, ...] = (
    StripeAccount(
        "uk",
        "GB",
        "ed_61SFakeUkLiveDestinati0nA1",
        "ed_test_61SFakeUkTestDestinat1onB2",
        (("gbp", 0.86), ("eur", 0.06), ("usd", 0.04), ("jpy", 0.02), ("kwd", 0.02)),
    ),
    StripeAccount(
        "au",
        "AU",
        "ed_61SFakeAuLiveDestinati0nC3",
        "ed_test_61SFakeAuTestDestinat1onD4",
        (("aud", 0.9), ("usd", 0.06), ("jpy", 0.02), ("kwd", 0.02)),
    ),
    StripeAccount(
        "us",
        "US",
        "ed_61SFakeUsLiveDestinati0nE5",
        "ed_test_61SFakeUsTestDestinat1onF6",
        (("usd", 0.92), ("eur", 0.04), ("jpy", 0.02), ("kwd", 0.02)),
    ),
)
_ACCOUNT_WEIGHTS = (0.6, 0.15, 0.25)

#: Scenarios forced a few times into every archive large enough, so that a small
#: sample still exercises each of them.
REQUIRED_SCENARIOS: tuple[str, ...] = (
    "card",
    "charge_before_session",
    "session_before_charge",
    "redelivery",
    "replay",
    "firehose_duplicate",
    "refund_before_payment",
    "partial_refund",
    "full_refund",
    "partial_then_full_refund",
    "late_refund",
    "dispute",
    "async_success",
    "async_success_two_days",
    "async_failure",
    "charge_never_arrives",
    "only_payment_intent",
    "guest",
    "identity_in_client_reference_id",
    "test_mode",
    "bad_ab_tests",
    "export_duplicate",
)
_FORCED_PER_SCENARIO = 3

_ALPHABET = string.digits + string.ascii_letters
_CARD_COUNTRIES = ("GB", "US", "AU", "IE", "DE", "FR", "NZ", "CA", "JP", "KW", "NL")
_FIRST_NAMES = ("Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo")
_AMOUNTS_MAJOR_2DP = (300, 500, 737, 1000, 1234, 1500, 2000, 2500, 5000, 10000, 15000)
_AMOUNTS_JPY = (300, 500, 1000, 1500, 3000, 5000, 10000)
_AMOUNTS_KWD = (1000, 1250, 2500, 5000, 12340, 20000)
_UNRELATED_TYPES = (
    "customer.created",
    "customer.updated",
    "invoice.paid",
    "payout.paid",
    "balance.available",
    "product.updated",
    "price.created",
)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class PaymentTruth:
    """What the generator intended for one contribution: inputs and scenario, not outputs.

    `charge_id` is None when no event ever names the charge; `card_country` is None when
    no charge object (with `payment_method_details`) ever arrives. `status` is Paid,
    Failed or Refunded (Refunded only when `refunded_total_minor == amount_minor`).
    `currency` is upper case; amounts are integers in the currency's minor unit.
    """

    checkout_session_id: str
    payment_intent_id: str
    charge_id: str | None
    status: str
    amount_minor: int
    currency: str
    payment_method: str
    card_country: str | None
    address_country: str | None
    identity_id: str | None
    identity_source: str | None
    livemode: bool
    account: str
    account_name: str
    api_version: str
    refunded_total_minor: int
    refunds_minor: tuple[int, ...]
    disputed: bool
    dispute_outcome: str | None
    session_created: str
    features: tuple[str, ...]


@dataclass(frozen=True)
class Truth:
    """Everything the generator knows about an archive; `to_json()` is truth.json."""

    generator: dict[str, Any]
    payments: tuple[PaymentTruth, ...]
    counts: dict[str, Any]

    def to_json(self, archive_summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JSON-ready dict; `archive_summary` (from `write_archive`) is added if given."""
        out: dict[str, Any] = {
            "generator": self.generator,
            "counts": self.counts,
            "payments": [
                {**p.__dict__, "refunds_minor": list(p.refunds_minor), "features": list(p.features)}
                for p in self.payments
            ],
        }
        if archive_summary is not None:
            out["archive"] = archive_summary
        return out


@dataclass(frozen=True)
class ArrivedRecord:
    """One Firehose/Kinesis record: its bytes (no delimiter) and arrival time.

    `kind` is a delivery kind (`DELIVERY_KINDS`) for envelopes, or a malformed kind
    (`MALFORMED_KINDS`).
    """

    arrival_ms: int
    data: bytes
    kind: str

    @property
    def malformed(self) -> bool:
        return self.kind in MALFORMED_KINDS


@dataclass(slots=True)
class _PlannedEvent:
    """One Stripe event of an item: its type, creation second and its deliveries."""

    type: str
    created: int
    step: int = 0
    deliveries: list[tuple[int, str]] = field(default_factory=list)
    export: bool = False


@dataclass(slots=True)
class _Item:
    """Something that puts records on the stream: a payment, a noise source or junk.

    Planning fixes everything the truth needs (ids, amounts, times, deliveries);
    rendering fills cosmetic fields from an rng seeded by the item, so that an item
    renders the same bytes every time and independently of the others.
    """

    index: int
    kind: str  # payment | expired | subscription | setup | unrelated | thin | <malformed kind>
    t0: int  # epoch seconds; no record of the item arrives earlier
    account: StripeAccount
    livemode: bool
    api_version: str
    events: list[_PlannedEvent] = field(default_factory=list)
    payment: _PaymentPlan | None = None

    @property
    def source(self) -> str:
        return self.account.live_source if self.livemode else self.account.test_source


@dataclass(slots=True)
class _PaymentPlan:
    flow: str
    method: str
    currency: str
    amount: int
    card_country: str | None
    address_country: str | None
    identity_id: str | None
    identity_source: str | None
    cs_id: str
    pi_id: str
    ch_id: str
    refunds: list[tuple[str, int]]  # (re_ id, amount)
    dispute_id: str | None
    dispute_outcome: str | None
    features: list[str]
    bad_ab_tests: bool
    reader: int


# --------------------------------------------------------------------------- helpers


def reader_email(reader: int) -> str:
    """The email address a simulated reader pays with."""
    return f"reader{reader}@example.com"


def _token(rng: random.Random, n: int) -> str:
    bits = rng.getrandbits(6 * n)
    return "".join(_ALPHABET[(bits >> (6 * i)) % 62] for i in range(n))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(int(epoch_s), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _latency_ms(rng: random.Random) -> int:
    return rng.randint(150, 2500)


def _round_step(currency: str) -> int:
    # Stripe requires three-decimal amounts to end in 0.
    return 10 if CURRENCY_EXPONENTS[currency] == 3 else 1


def _pick_amount(rng: random.Random, currency: str) -> int:
    if currency == "jpy":
        return rng.choice(_AMOUNTS_JPY)
    if currency == "kwd":
        return rng.choice(_AMOUNTS_KWD)
    return rng.choice(_AMOUNTS_MAJOR_2DP)


def _weighted(rng: random.Random, pairs: Sequence[tuple[str, float]]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


# --------------------------------------------------------------------------- planning

_FLOWS = (
    ("async_success", 0.05),
    ("async_success_two_days", 0.02),
    ("async_failure", 0.02),
    ("charge_never_arrives", 0.015),
    ("only_payment_intent", 0.015),
)
_OUTCOMES = (
    ("partial_refund", 0.04),
    ("full_refund", 0.04),
    ("partial_then_full_refund", 0.01),
    ("dispute", 0.02),
)
_ADDONS = (
    ("redelivery", 0.05),
    ("replay", 0.02),
    ("firehose_duplicate", 0.02),
    ("guest", 0.1),
    ("identity_in_client_reference_id", 0.06),
    ("test_mode", 0.05),
    ("bad_ab_tests", 0.03),
    ("export_duplicate", 0.01),
)


def _pick_one(rng: random.Random, options: Sequence[tuple[str, float]]) -> str | None:
    x = rng.random()
    for name, p in options:
        if x < p:
            return name
        x -= p
    return None


def _choose_scenarios(rng: random.Random, forced: str | None) -> set[str]:
    """The scenario features of one payment; a forced one always survives.

    Features fall in groups: the flow (card, async, events missing), the outcome
    (refunds or a dispute, only for payments that settle with a charge), the arrival
    order, and independent add-ons. Random draws happen whatever is forced, so that
    forcing one payment does not shift the others' draws.
    """
    flow = _pick_one(rng, _FLOWS)
    outcome = _pick_one(rng, _OUTCOMES)
    order = _pick_one(rng, (("charge_before_session", 0.05), ("session_before_charge", 0.05)))
    timing = _pick_one(rng, (("late_refund", 0.02), ("refund_before_payment", 0.02)))
    addons = {name for name, p in _ADDONS if rng.random() < p}

    flows = {name for name, _ in _FLOWS}
    outcomes = {name for name, _ in _OUTCOMES}
    if forced in flows:
        flow = forced
    elif forced in outcomes | {
        "charge_before_session",
        "session_before_charge",
        "late_refund",
        "refund_before_payment",
        "card",
    }:
        flow = None
    if forced in outcomes:
        outcome = forced
    if forced in ("charge_before_session", "session_before_charge"):
        order = forced
    if forced in ("late_refund", "refund_before_payment"):
        timing = forced
    elif forced == "dispute":
        timing = None
    if forced in {name for name, _ in _ADDONS}:
        addons.add(forced)

    scen = set(addons)
    if flow is None:
        scen.add("card")
    else:
        scen.add(flow)
        if flow == "async_success_two_days":
            scen.add("async_success")
    settles_with_charge = flow is None or flow in ("async_success", "async_success_two_days")
    if timing and (outcome is None or outcome == "dispute"):
        outcome = "full_refund"
    if settles_with_charge and outcome:
        scen.add(outcome)
        if timing and (flow is None or timing == "late_refund"):
            scen.add(timing)
    # Reordering is about card events arriving around the session; the refund-first
    # scenario already holds the payment's events back.
    if flow is None and order and "refund_before_payment" not in scen:
        scen.add(order)
    if forced == "identity_in_client_reference_id":
        scen.discard("guest")
    elif "guest" in scen:
        scen.discard("identity_in_client_reference_id")
    return scen


def _plan_payment(rng: random.Random, index: int, t0: int, forced: str | None) -> _Item:
    """Decide one payment's scenario, ids, amounts and every delivery's arrival."""
    scen = _choose_scenarios(rng, forced)
    is_async = bool(scen & {"async_success", "async_failure"})
    livemode = "test_mode" not in scen
    if is_async:
        account = ACCOUNTS[0]
        method = rng.choice(("bacs_debit", "sepa_debit"))
        currency = "gbp" if method == "bacs_debit" else "eur"
    else:
        account = rng.choices(ACCOUNTS, weights=_ACCOUNT_WEIGHTS)[0]
        method = "card"
        currency = _weighted(rng, account.currencies)
    if "only_payment_intent" in scen:
        api_version = rng.choice([v for v in API_VERSIONS if v >= LATEST_CHARGE_SINCE])
    else:
        api_version = rng.choice(API_VERSIONS)
    amount = _pick_amount(rng, currency)
    card_country = (
        (account.country if rng.random() < 0.8 else rng.choice(_CARD_COUNTRIES))
        if method == "card"
        else None
    )
    address_country = (
        (card_country or account.country) if rng.random() < 0.85 else rng.choice(_CARD_COUNTRIES)
    )
    identity_id = None if "guest" in scen else str(rng.randint(100_000_000, 299_999_999))
    identity_source = (
        None
        if identity_id is None
        else ("client_reference_id" if "identity_in_client_reference_id" in scen else "metadata")
    )
    mode_tag = "live" if livemode else "test"
    cs_id = f"cs_{mode_tag}_a1{_token(rng, 56)}"
    pi_id = "pi_3" + _token(rng, 23)
    # Stripe gives charges of debit methods py_ ids.
    ch_id = ("ch_3" if method == "card" else "py_3") + _token(rng, 23)

    refunds: list[tuple[str, int]] = []
    step = _round_step(currency)
    if "full_refund" in scen:
        refunds.append(("re_3" + _token(rng, 23), amount))
    elif "partial_refund" in scen or "partial_then_full_refund" in scen:
        part = max(step, (amount * rng.randint(20, 70) // 100) // step * step)
        refunds.append(("re_3" + _token(rng, 23), part))
        if "partial_then_full_refund" in scen:
            refunds.append(("re_3" + _token(rng, 23), amount - part))
    dispute_id = "dp_1" + _token(rng, 23) if "dispute" in scen else None
    dispute_outcome = rng.choice(("won", "lost")) if dispute_id else None

    item = _Item(index, "payment", t0, account, livemode, api_version)
    plan = _PaymentPlan(
        flow="async" if is_async else "card",
        method=method,
        currency=currency,
        amount=amount,
        card_country=card_country,
        address_country=address_country,
        identity_id=identity_id,
        identity_source=identity_source,
        cs_id=cs_id,
        pi_id=pi_id,
        ch_id=ch_id,
        refunds=refunds,
        dispute_id=dispute_id,
        dispute_outcome=dispute_outcome,
        features=[],
        bad_ab_tests="bad_ab_tests" in scen,
        reader=rng.randint(1, 999_999),
    )
    item.payment = plan

    # Timeline: seconds since the session was created (t0).
    tc = t0 + rng.randint(30, 600)  # the reader completes the page
    ev = item.events

    def add(type_: str, created: int, step_: int = 0) -> _PlannedEvent:
        e = _PlannedEvent(type_, created, step_)
        ev.append(e)
        return e

    payment_events: list[_PlannedEvent] = [add("payment_intent.created", tc - 2)]
    charge_side: list[_PlannedEvent] = []
    session_side: list[_PlannedEvent] = []
    if is_async:
        charge_side.append(add("charge.pending", tc - 1))
        charge_side.append(add("payment_intent.processing", tc - 1))
        session_side.append(add("checkout.session.completed", tc))
        if "async_success_two_days" in scen:
            ts = tc + 2 * 86_400 + rng.randint(0, 3_600)
        else:
            ts = tc + rng.randint(3_600, 6 * 3_600)
        if "async_failure" in scen:
            charge_side.append(add("charge.failed", ts))
            charge_side.append(add("payment_intent.payment_failed", ts))
            session_side.append(add("checkout.session.async_payment_failed", ts + 1))
        else:
            charge_side.append(add("charge.succeeded", ts))
            charge_side.append(add("payment_intent.succeeded", ts))
            session_side.append(add("checkout.session.async_payment_succeeded", ts + 1))
        settled = ts
    else:
        if not scen & {"charge_never_arrives", "only_payment_intent"}:
            charge_side.append(add("charge.succeeded", tc - 1))
            # Stripe attaches the balance transaction to a card charge in a later update.
            charge_side.append(add("charge.updated", tc + rng.randint(2, 60)))
        if "charge_never_arrives" not in scen:
            charge_side.append(add("payment_intent.succeeded", tc - 1))
        session_side.append(add("checkout.session.completed", tc))
        settled = tc
    payment_events += charge_side + session_side

    refund_events: list[_PlannedEvent] = []
    if refunds:
        if "late_refund" in scen:
            tr = settled + rng.randint(2 * 86_400, 10 * 86_400)
        else:
            tr = settled + rng.randint(300, 1_800)
        for k in range(len(refunds)):
            refund_events.append(add("refund.created", tr, k))
            refund_events.append(add("charge.refunded", tr, k))
            tr += rng.randint(600, 86_400)
    if dispute_id:
        td = settled + rng.randint(86_400, 5 * 86_400)
        add("charge.dispute.created", td)
        add("charge.dispute.funds_withdrawn", td + 1)
        add("charge.dispute.updated", td + rng.randint(3_600, 86_400))
        tclose = td + rng.randint(2 * 86_400, 4 * 86_400)
        add("charge.dispute.closed", tclose)
        if dispute_outcome == "won":
            add("charge.dispute.funds_reinstated", tclose + 1)

    for e in ev:
        e.deliveries.append((e.created * 1000 + _latency_ms(rng), "original"))

    def delay(events: Iterable[_PlannedEvent], lo_s: int, hi_s: int) -> None:
        for e in events:
            arrival, kind = e.deliveries[0]
            e.deliveries[0] = (arrival + rng.randint(lo_s, hi_s) * 1000, kind)

    if "charge_before_session" in scen:
        delay(session_side, 300, 1_800)
    if "session_before_charge" in scen:
        delay(charge_side, 300, 1_800)
    if "refund_before_payment" in scen:
        # A delivery backlog holds the payment's events back while the refund goes through.
        latest_refund = max(e.deliveries[0][0] for e in refund_events)
        held = max(0, (latest_refund - min(e.deliveries[0][0] for e in payment_events)) // 1000)
        delay(payment_events, held + 60, held + 3 * 3_600)
    if "redelivery" in scen:
        for e in rng.sample(ev, k=min(len(ev), rng.randint(1, 2))):
            e.deliveries.append(
                (e.deliveries[0][0] + rng.randint(60, 6 * 3_600) * 1000, "redelivery")
            )
    if "replay" in scen:
        replay_at = max(e.deliveries[0][0] for e in ev) + rng.randint(3_600, 2 * 86_400) * 1000
        for e in rng.sample(ev, k=rng.randint(1, len(ev))):
            e.deliveries.append((replay_at + rng.randint(0, 5_000), "replay"))
    if "firehose_duplicate" in scen:
        e = rng.choice(ev)
        e.deliveries.append((e.deliveries[0][0] + rng.randint(0, 5_000), "firehose_duplicate"))
    if "export_duplicate" in scen:
        for e in rng.sample(payment_events, k=min(2, len(payment_events))):
            e.export = True

    ev.sort(key=lambda e: e.created)
    plan.features = sorted(scen)
    return item


def _plan_noise(rng: random.Random, index: int, t0: int, kind: str) -> _Item:
    account = rng.choices(ACCOUNTS, weights=_ACCOUNT_WEIGHTS)[0]
    item = _Item(index, kind, t0, account, rng.random() > 0.05, rng.choice(API_VERSIONS))
    if kind == "expired":
        types = [("checkout.session.expired", 86_400)]
    elif kind == "subscription":
        types = [
            ("customer.created", 60),
            ("checkout.session.completed", 62),
            ("customer.subscription.created", 61),
            ("invoice.paid", 63),
        ]
    elif kind == "setup":
        types = [
            ("setup_intent.created", 30),
            ("setup_intent.succeeded", 40),
            ("checkout.session.completed", 41),
        ]
    elif kind in ("unrelated", "export_only"):
        types = [(rng.choice(_UNRELATED_TYPES), 0)]
    elif kind == "thin":
        types = [
            (
                rng.choice(
                    ("v1.billing.meter.error_report_triggered", "v2.core.event_destination.ping")
                ),
                0,
            )
        ]
    else:  # malformed
        types = [(kind, 0)]
    for type_, offset in types:
        created = t0 + offset
        item.events.append(
            _PlannedEvent(
                type_, created, deliveries=[(created * 1000 + _latency_ms(rng), "original")]
            )
        )
    if kind == "export_only":
        item.events[0].deliveries.clear()
        item.events[0].export = True
    if kind == "unrelated" and rng.random() < 0.1:
        # Stripe redelivers noise as happily as payments.
        e = item.events[0]
        e.deliveries.append((e.deliveries[0][0] + rng.randint(60, 3_600) * 1000, "redelivery"))
    item.events.sort(key=lambda e: e.created)
    return item


# --------------------------------------------------------------------------- rendering


class _Renderer:
    """Builds the bytes of one item's records from its plan; stateless between items."""

    def __init__(self, item: _Item, seed: int) -> None:
        self.item = item
        self.rng = random.Random(seed * 1_000_003 + item.index)
        self.arn = f"arn:aws:events:{AWS_REGION}::event-source/aws.partner/stripe.com/"
        self.arn += item.source

    def records(self) -> tuple[list[ArrivedRecord], list[tuple[int, bytes]]]:
        """(stream records, export lines as (created, bytes)) of the item."""
        item = self.item
        if item.kind in MALFORMED_KINDS:
            e = item.events[0]
            arrival, _ = e.deliveries[0]
            return [ArrivedRecord(arrival, self._malformed(item.kind, arrival), item.kind)], []
        out: list[ArrivedRecord] = []
        exports: list[tuple[int, bytes]] = []
        details = self._payment_details() if item.payment else self._noise_details()
        for e, detail in zip(item.events, details, strict=True):
            detail_json = json.dumps(detail, separators=(",", ":"))
            first: bytes | None = None
            for arrival, kind in e.deliveries:
                if kind == "firehose_duplicate" and first is not None:
                    data = first
                else:
                    data = self._envelope(e.type, arrival, detail_json, kind)
                    first = first or data
                out.append(ArrivedRecord(arrival, data, kind))
            if e.export:
                exports.append((e.created, detail_json.encode()))
        return out, exports

    def _envelope(self, type_: str, arrival_ms: int, detail_json: str, kind: str) -> bytes:
        head: dict[str, Any] = {
            "version": "0",
            "id": _uuid(self.rng),
            "detail-type": type_,
            "source": "aws.partner/stripe.com/" + self.item.source,
            "account": AWS_ACCOUNT,
            "time": _iso(arrival_ms / 1000),
            "region": AWS_REGION,
            "resources": [self.arn],
        }
        if kind == "replay":
            head["replay-name"] = "stripe-replay-" + _iso(arrival_ms / 1000)[:10]
        text = json.dumps(head, separators=(",", ":"))
        return (text[:-1] + ',"detail":' + detail_json + "}").encode()

    def _event(
        self,
        type_: str,
        created: int,
        obj: dict[str, Any],
        previous: dict[str, Any] | None = None,
        from_api: bool = True,
    ) -> dict[str, Any]:
        rng = self.rng
        data: dict[str, Any] = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        return {
            "id": "evt_3" + _token(rng, 23),
            "object": "event",
            "api_version": self.item.api_version,
            "created": created,
            "data": data,
            "livemode": self.item.livemode,
            "pending_webhooks": rng.randint(1, 2),
            "request": {
                "id": "req_" + _token(rng, 14) if from_api else None,
                "idempotency_key": _uuid(rng) if from_api else None,
            },
            "type": type_,
        }

    # ---- payments

    def _payment_details(self) -> list[dict[str, Any]]:
        item = self.item
        p = item.payment
        assert p is not None
        rng = self.rng
        v = item.api_version
        pm_id = "pm_1" + _token(rng, 23)
        created0 = item.t0
        email = reader_email(p.reader)
        name = f"{rng.choice(_FIRST_NAMES)} Example" if rng.random() < 0.9 else None
        postal = rng.choice(("N1 9GU", "2000", "10001", "D02 X285", None))
        state = rng.choice((None, None, "NSW", "NY", "CA"))
        address = {
            "city": None,
            "country": p.address_country,
            "line1": None,
            "line2": None,
            "postal_code": postal,
            "state": state,
        }
        session = self._session(p, created0, email, name, address)
        charge = self._charge(p, pm_id, email, name, address)
        pi = self._payment_intent(p, pm_id)
        refunded = 0
        refund_objs: list[dict[str, Any]] = []
        dispute: dict[str, Any] | None = None
        out: list[dict[str, Any]] = []
        prev: dict[str, Any] | None
        for e in item.events:
            t = e.type
            if t == "payment_intent.created":
                pi.update(status="requires_payment_method", amount_received=0)
                out.append(self._event(t, e.created, self._pi_view(pi, v, None)))
            elif t in ("charge.pending", "charge.succeeded", "charge.failed"):
                charge["created"] = (
                    e.created if t == "charge.pending" else charge["created"] or e.created
                )
                status = t.split(".")[1]
                charge.update(
                    status=status,
                    paid=status == "succeeded",
                    captured=status != "failed",
                    amount_captured=p.amount if status != "failed" else 0,
                    balance_transaction="txn_3" + _token(rng, 23)
                    if status == "succeeded"
                    else None,
                )
                if status == "failed":
                    charge.update(
                        failure_code="debit_not_authorized",
                        failure_message="The customer has notified their bank that this payment "
                        "was unauthorized.",
                        outcome={
                            **charge["outcome"],
                            "network_status": "declined_by_network",
                            "type": "issuer_declined",
                            "reason": "debit_not_authorized",
                        },
                    )
                prev = (
                    {"status": "pending"} if p.flow == "async" and t != "charge.pending" else None
                )
                out.append(self._event(t, e.created, self._charge_view(charge, v), prev))
            elif t == "charge.updated":
                prev = {"balance_transaction": None}
                out.append(self._event(t, e.created, self._charge_view(charge, v), prev, False))
            elif t.startswith("payment_intent."):
                status = {
                    "payment_intent.processing": "processing",
                    "payment_intent.succeeded": "succeeded",
                    "payment_intent.payment_failed": "requires_payment_method",
                }[t]
                pi.update(status=status, amount_received=p.amount if status == "succeeded" else 0)
                if t == "payment_intent.payment_failed":
                    pi["last_payment_error"] = {
                        "charge": p.ch_id,
                        "code": "debit_not_authorized",
                        "message": charge["failure_message"],
                        "type": "card_error",
                    }
                out.append(self._event(t, e.created, self._pi_view(pi, v, charge)))
            elif t.startswith("checkout.session."):
                if t == "checkout.session.completed":
                    session["status"] = "complete"
                    session["payment_status"] = "unpaid" if p.flow == "async" else "paid"
                    prev = None
                else:
                    session["payment_status"] = "paid" if t.endswith("succeeded") else "unpaid"
                    prev = {"payment_status": "unpaid"} if t.endswith("succeeded") else None
                out.append(self._event(t, e.created, dict(session), prev))
            elif t == "refund.created":
                re_id, amt = p.refunds[e.step]
                refund_obj = {
                    "id": re_id,
                    "object": "refund",
                    "amount": amt,
                    "balance_transaction": "txn_3" + _token(rng, 23),
                    "charge": p.ch_id,
                    "created": e.created,
                    "currency": p.currency,
                    "destination_details": {"card": {"type": "refund"}, "type": "card"},
                    "metadata": {},
                    "payment_intent": p.pi_id,
                    "reason": "requested_by_customer",
                    "receipt_number": None,
                    "source_transfer_reversal": None,
                    "status": "succeeded",
                    "transfer_reversal": None,
                }
                refund_objs.append(refund_obj)
                out.append(self._event(t, e.created, refund_obj))
            elif t == "charge.refunded":
                _, amt = p.refunds[e.step]
                prev = {"amount_refunded": refunded}
                if v < LATEST_CHARGE_SINCE:
                    prev["refunds"] = self._list(
                        refund_objs[: e.step], f"/v1/charges/{p.ch_id}/refunds"
                    )
                refunded += amt
                charge["amount_refunded"] = refunded
                if refunded == p.amount:
                    charge["refunded"] = True
                    prev["refunded"] = False
                charge["refunds_so_far"] = refund_objs[: e.step + 1]
                out.append(self._event(t, e.created, self._charge_view(charge, v), prev))
            elif t.startswith("charge.dispute."):
                if dispute is None:
                    dispute = {
                        "id": p.dispute_id,
                        "object": "dispute",
                        "amount": p.amount,
                        "balance_transactions": [],
                        "charge": p.ch_id,
                        "created": e.created,
                        "currency": p.currency,
                        "evidence_details": {
                            "due_by": e.created + 7 * 86_400,
                            "has_evidence": False,
                            "past_due": False,
                            "submission_count": 0,
                        },
                        "is_charge_refundable": False,
                        "livemode": item.livemode,
                        "metadata": {},
                        "payment_intent": p.pi_id,
                        "reason": rng.choice(("fraudulent", "product_not_received", "general")),
                        "status": "needs_response",
                    }
                    charge["disputed"] = True
                prev = None
                if t == "charge.dispute.funds_withdrawn":
                    dispute["balance_transactions"] = [
                        {"id": "txn_3" + _token(rng, 23), "amount": -p.amount}
                    ]
                elif t == "charge.dispute.updated":
                    prev = {"status": dispute["status"]}
                    dispute["status"] = "under_review"
                    dispute["evidence_details"]["has_evidence"] = True
                elif t == "charge.dispute.closed":
                    prev = {"status": dispute["status"]}
                    dispute["status"] = p.dispute_outcome
                out.append(self._event(t, e.created, json.loads(json.dumps(dispute)), prev, False))
            else:  # pragma: no cover - the planner emits only the types above
                raise AssertionError(f"unplanned payment event type {t}")
        return out

    def _metadata(self, p: _PaymentPlan) -> dict[str, str]:
        rng = self.rng
        md: dict[str, str] = {}
        if p.identity_id and p.identity_source == "metadata":
            md["identityId"] = p.identity_id
        if rng.random() < 0.9:
            md["referrerUrl"] = (
                f"https://www.example.com/news/2025/mar/01/story-{rng.randint(1, 999)}"
            )
        if rng.random() < 0.9:
            md["componentId"] = rng.choice(("ACQUISITIONS_EPIC", "ACQUISITIONS_BANNER", "HEADER"))
            md["componentType"] = md["componentId"]
        if rng.random() < 0.9:
            md["source"] = rng.choice(("GUARDIAN_WEB", "GUARDIAN_APP_ANDROID", "GUARDIAN_APP_IOS"))
        if rng.random() < 0.7:
            md["platform"] = rng.choice(("SUPPORT", "DISCOVER"))
        if rng.random() < 0.8:
            codes = ["gdnwb_copts_memco_epic", "gdnwb_copts_banner", "email_spring"]
            md["campaignCode"] = (
                "gdnwb_copts_memco_epic, email_spring" if rng.random() < 0.15 else rng.choice(codes)
            )
        if p.bad_ab_tests:
            md["abTests"] = '[{"name":"epicTest","variant":'
        elif rng.random() < 0.8:
            tests = [{"name": "epicTest", "variant": rng.choice(("control", "v1"))}]
            if rng.random() < 0.3:
                tests.append({"name": "amountsTest", "variant": "v2"})
            md["abTests"] = json.dumps(tests, separators=(",", ":"))
        if rng.random() < 0.9:
            md["pageviewId"] = _token(rng, 20).lower()
            md["browserId"] = _token(rng, 24)
        if rng.random() < 0.5:
            md["referrerPageviewId"] = _token(rng, 20).lower()
        if rng.random() < 0.3:
            md["labels"] = rng.choice(("hosted-checkout", "hosted-checkout,one-off"))
        if rng.random() < 0.5:
            md["queryParameters"] = json.dumps({"INTCMP": "epic", "REFPVID": _token(rng, 10)})
        if rng.random() < 0.7:
            md["similarProductsConsent"] = rng.choice(("true", "false"))
        return md

    def _session(
        self, p: _PaymentPlan, created: int, email: str, name: str | None, address: dict[str, Any]
    ) -> dict[str, Any]:
        item = self.item
        rng = self.rng
        client_ref = p.identity_id if p.identity_source == "client_reference_id" else None
        if client_ref is None and p.identity_id and rng.random() < 0.3:
            client_ref = p.identity_id
        return {
            "id": p.cs_id,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": p.amount,
            "amount_total": p.amount,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": "required",
            "cancel_url": "https://support.example.com/contribute",
            "client_reference_id": client_ref,
            "consent": {
                "promotions": rng.choice(("opt_in", "opt_out", None)),
                "terms_of_service": None,
            },
            "consent_collection": {"promotions": "auto", "terms_of_service": "none"},
            "created": created,
            "currency": p.currency,
            "customer": None,
            "customer_creation": "if_required",
            "customer_details": {
                "address": address,
                "email": email,
                "name": name,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            },
            "customer_email": None,
            "expires_at": created + 86_400,
            "invoice": None,
            "livemode": item.livemode,
            "locale": "auto",
            "metadata": self._metadata(p),
            "mode": "payment",
            "payment_intent": p.pi_id,
            "payment_link": None,
            "payment_method_collection": "if_required",
            "payment_method_types": [p.method],
            "payment_status": "unpaid",
            "setup_intent": None,
            "shipping_address_collection": None,
            "status": "open",
            "submit_type": "donate",
            "subscription": None,
            "success_url": "https://support.example.com/thank-you?session_id={CHECKOUT_SESSION_ID}",
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "url": None,
        }

    def _charge(
        self, p: _PaymentPlan, pm_id: str, email: str, name: str | None, address: dict[str, Any]
    ) -> dict[str, Any]:
        rng = self.rng
        if p.method == "card":
            details: dict[str, Any] = {
                "card": {
                    "brand": rng.choice(("visa", "mastercard", "amex")),
                    "checks": {
                        "address_line1_check": None,
                        "address_postal_code_check": "pass",
                        "cvc_check": "pass",
                    },
                    "country": p.card_country,
                    "exp_month": rng.randint(1, 12),
                    "exp_year": rng.randint(2026, 2031),
                    "fingerprint": _token(rng, 16),
                    "funding": rng.choice(("credit", "debit")),
                    "last4": f"{rng.randint(0, 9999):04d}",
                    "network": "visa",
                    "three_d_secure": None,
                    "wallet": None,
                },
                "type": "card",
            }
        elif p.method == "bacs_debit":
            details = {
                "bacs_debit": {
                    "fingerprint": _token(rng, 16),
                    "last4": "2345",
                    "mandate": "mandate_1" + _token(rng, 23),
                    "sort_code": "108800",
                },
                "type": "bacs_debit",
            }
        else:
            details = {
                "sepa_debit": {
                    "bank_code": "37040044",
                    "branch_code": None,
                    "country": "DE",
                    "fingerprint": _token(rng, 16),
                    "last4": "3000",
                    "mandate": "mandate_1" + _token(rng, 23),
                },
                "type": "sepa_debit",
            }
        return {
            "id": p.ch_id,
            "object": "charge",
            "amount": p.amount,
            "amount_captured": p.amount,
            "amount_refunded": 0,
            "balance_transaction": None,
            "billing_details": {"address": address, "email": email, "name": name, "phone": None},
            "calculated_statement_descriptor": "EXAMPLE NEWS",
            "captured": True,
            "created": 0,
            "currency": p.currency,
            "customer": None,
            "description": None,
            "disputed": False,
            "failure_code": None,
            "failure_message": None,
            "invoice": None,
            "livemode": self.item.livemode,
            "metadata": {},
            "outcome": {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
            "paid": True,
            "payment_intent": p.pi_id,
            "payment_method": pm_id,
            "payment_method_details": details,
            "receipt_email": None,
            "receipt_url": "https://pay.stripe.com/receipts/payment/" + _token(rng, 40),
            "refunded": False,
            "refunds_so_far": [],
            "status": "pending",
        }

    def _charge_view(self, charge: dict[str, Any], version: str) -> dict[str, Any]:
        """The charge as the pinned API version shows it (a fresh dict)."""
        view = {k: v for k, v in charge.items() if k != "refunds_so_far"}
        if version >= BASIL_SINCE:
            del view["invoice"]
        if version < LATEST_CHARGE_SINCE:
            view["refunds"] = self._list(
                charge["refunds_so_far"], f"/v1/charges/{charge['id']}/refunds"
            )
        return view

    def _payment_intent(self, p: _PaymentPlan, pm_id: str) -> dict[str, Any]:
        return {
            "id": p.pi_id,
            "object": "payment_intent",
            "amount": p.amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "application": None,
            "canceled_at": None,
            "capture_method": "automatic",
            "client_secret": f"{p.pi_id}_secret_{_token(self.rng, 25)}",
            "confirmation_method": "automatic",
            "created": self.item.t0 + 1,
            "currency": p.currency,
            "customer": None,
            "description": None,
            "last_payment_error": None,
            "livemode": self.item.livemode,
            "metadata": {},
            "next_action": None,
            "payment_method": pm_id,
            "payment_method_types": [p.method],
            "receipt_email": None,
            "setup_future_usage": None,
            "status": "requires_payment_method",
        }

    def _pi_view(
        self, pi: dict[str, Any], version: str, charge: dict[str, Any] | None
    ) -> dict[str, Any]:
        view = dict(pi)
        # Before the payment is attempted there is no charge to point at.
        has_charge = charge is not None
        if version < LATEST_CHARGE_SINCE:
            data = [self._charge_view(charge, version)] if charge is not None and has_charge else []
            view["charges"] = self._list(data, f"/v1/charges?payment_intent={pi['id']}")
        else:
            view["latest_charge"] = (
                self.item.payment.ch_id if has_charge and self.item.payment else None
            )
        return view

    @staticmethod
    def _list(data: list[dict[str, Any]], url: str) -> dict[str, Any]:
        return {
            "object": "list",
            "data": list(data),
            "has_more": False,
            "total_count": len(data),
            "url": url,
        }

    # ---- noise and junk

    def _noise_details(self) -> list[dict[str, Any]]:
        item = self.item
        rng = self.rng
        out: list[dict[str, Any]] = []
        cus = "cus_" + _token(rng, 14)
        sub = "sub_1" + _token(rng, 23)
        inv = "in_1" + _token(rng, 23)
        seti = "seti_1" + _token(rng, 23)
        mode_tag = "live" if item.livemode else "test"
        currency = item.account.currencies[0][0]
        for e in item.events:
            t = e.type
            if item.kind == "thin":
                out.append(
                    {
                        "id": "evt_test_65" + _token(rng, 40)
                        if not item.livemode
                        else "evt_65" + _token(rng, 40),
                        "object": "v2.core.event",
                        "type": t,
                        "created": datetime.fromtimestamp(e.created, tz=UTC)
                        .isoformat(timespec="milliseconds")
                        .replace("+00:00", "Z"),
                        "livemode": item.livemode,
                        "context": None,
                        "related_object": {
                            "id": "mtr_" + _token(rng, 20),
                            "type": "billing.meter",
                            "url": "/v1/billing/meters/mtr_x",
                        },
                        "reason": None,
                    }
                )
                continue
            if t.startswith("checkout.session."):
                mode = {"subscription": "subscription", "setup": "setup"}.get(item.kind, "payment")
                amount = None if mode == "setup" else rng.choice(_AMOUNTS_MAJOR_2DP)
                obj: dict[str, Any] = {
                    "id": f"cs_{mode_tag}_b1{_token(rng, 56)}",
                    "object": "checkout.session",
                    "amount_subtotal": amount,
                    "amount_total": amount,
                    "client_reference_id": None,
                    "created": item.t0,
                    "currency": None if mode == "setup" else currency,
                    "customer": cus if mode != "payment" else None,
                    "customer_details": {
                        "address": {"country": item.account.country},
                        "email": f"reader{rng.randint(1, 999_999)}@example.com",
                        "name": None,
                    }
                    if mode != "setup"
                    else None,
                    "expires_at": item.t0 + 86_400,
                    "invoice": inv if mode == "subscription" else None,
                    "livemode": item.livemode,
                    "metadata": {"componentId": "ACQUISITIONS_EPIC"} if mode == "payment" else {},
                    "mode": mode,
                    "payment_intent": None,
                    "payment_method_types": ["card"],
                    "payment_status": {"subscription": "paid", "setup": "no_payment_required"}.get(
                        item.kind, "unpaid"
                    ),
                    "setup_intent": seti if mode == "setup" else None,
                    "status": "expired" if item.kind == "expired" else "complete",
                    "subscription": sub if mode == "subscription" else None,
                    "url": None,
                }
                out.append(self._event(t, e.created, obj, None, item.kind != "expired"))
                continue
            prefix = t.split(".")[0]
            objects: dict[str, dict[str, Any]] = {
                "customer": {
                    "id": cus,
                    "object": "customer",
                    "email": None,
                    "livemode": item.livemode,
                },
                "customer.subscription": {
                    "id": sub,
                    "object": "subscription",
                    "customer": cus,
                    "status": "active",
                },
                "invoice": {
                    "id": inv,
                    "object": "invoice",
                    "customer": cus,
                    "amount_paid": 500,
                    "currency": currency,
                    "status": "paid",
                    "subscription": sub,
                },
                "setup_intent": {"id": seti, "object": "setup_intent", "status": "succeeded"},
                "payout": {
                    "id": "po_1" + _token(rng, 23),
                    "object": "payout",
                    "amount": 123400,
                    "currency": currency,
                    "status": "paid",
                },
                "balance": {
                    "object": "balance",
                    "available": [{"amount": 98700, "currency": currency}],
                },
                "product": {
                    "id": "prod_" + _token(rng, 14),
                    "object": "product",
                    "name": "Support",
                },
                "price": {
                    "id": "price_1" + _token(rng, 23),
                    "object": "price",
                    "currency": currency,
                    "unit_amount": 500,
                },
            }
            obj = objects[t.rsplit(".", 1)[0] if t.startswith("customer.subscription") else prefix]
            prev = {"email": None} if t == "customer.updated" else None
            out.append(self._event(t, e.created, obj, prev, t.endswith("created")))
        return out

    def _malformed(self, kind: str, arrival_ms: int) -> bytes:
        rng = self.rng
        detail = {
            "id": "evt_3" + _token(rng, 23),
            "object": "event",
            "type": "charge.succeeded",
            "api_version": self.item.api_version,
            "created": arrival_ms // 1000 - 1,
            "data": {"object": {"id": "ch_3" + _token(rng, 23), "object": "charge"}},
            "livemode": self.item.livemode,
        }
        if kind == "detail_without_id":
            del detail["id"]
        data = self._envelope("charge.succeeded", arrival_ms, json.dumps(detail), "original")
        if kind == "truncated_json":
            return data[: rng.randint(20, len(data) - 10)]
        if kind == "not_json":
            return rng.choice(
                (
                    b"<html><body>502 Bad Gateway</body></html>",
                    b"\xff\xfe\x00garbage\x81\x82 not json at all",
                    b"ERROR: record dropped by transform",
                )
            )
        if kind == "not_an_envelope":
            return rng.choice((b'{"message":"healthcheck","ok":true}', b"[1,2,3]", b'"ping"'))
        return data


# --------------------------------------------------------------------------- archive


@dataclass(frozen=True)
class Archive:
    """A planned archive: the truth now, the records lazily and always the same.

    `records()` renders and yields every Firehose record in arrival order; memory is
    bounded by the records in flight (those whose arrival is later than the start of
    the item being rendered), not by the archive's size. It can be called many times.
    """

    seed: int
    truth: Truth
    items: tuple[_Item, ...]

    def records(self) -> Iterator[ArrivedRecord]:
        """Every record (envelopes and malformed ones), ordered by arrival then plan order."""
        heap: list[tuple[int, int, ArrivedRecord]] = []
        seq = 0
        for item in self.items:
            # Every record of this and later items arrives after item.t0.
            horizon = item.t0 * 1000
            while heap and heap[0][0] < horizon:
                yield heapq.heappop(heap)[2]
            recs, _ = _Renderer(item, self.seed).records()
            for rec in recs:
                heapq.heappush(heap, (rec.arrival_ms, seq, rec))
                seq += 1
        while heap:
            yield heapq.heappop(heap)[2]

    def envelopes(self, include_malformed: bool = True) -> Iterator[bytes]:
        """The records' bytes in arrival order, e.g. for a Kinesis producer."""
        for rec in self.records():
            if include_malformed or not rec.malformed:
                yield rec.data

    def payer_emails(self) -> dict[str, str]:
        """{PaymentIntent id: the email its Checkout Session carries}, for every payment.

        Not in the truth (which holds no personal data): tests of the identity
        step need it to know what the Identity API is asked.
        """
        return {
            item.payment.pi_id: reader_email(item.payment.reader)
            for item in self.items
            if item.payment is not None
        }

    def exports(self) -> list[bytes]:
        """Lines of the Stripe API export (bare events), ordered by creation."""
        lines: list[tuple[int, int, bytes]] = []
        for item in self.items:
            if any(e.export for e in item.events):
                _, exports = _Renderer(item, self.seed).records()
                lines.extend((created, item.index, data) for created, data in exports)
        return [data for _, _, data in sorted(lines)]


def generate(
    payments: int,
    seed: int,
    start: datetime = DEFAULT_START,
    hours: float = 24.0,
) -> Archive:
    """Plan an archive of `payments` contributions created over `hours` from `start`.

    Also plans the noise around them (expired, subscription and setup sessions,
    unrelated and thin events) and malformed records, in proportion to `payments`.
    Deterministic: equal arguments give equal truth and equal record bytes. Events of a
    payment may arrive long after `start + hours` (late refunds, disputes, replays).
    """
    if payments < 1:
        raise ValueError("payments must be at least 1")
    if hours <= 0:
        raise ValueError("hours must be positive")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(seed)
    t_start = int(start.timestamp())
    span = int(hours * 3600)

    forced: dict[int, str] = {}
    wanted = [s for s in REQUIRED_SCENARIOS for _ in range(_FORCED_PER_SCENARIO)]
    if payments >= len(wanted) * 2:
        for idx, scenario in zip(rng.sample(range(payments), len(wanted)), wanted, strict=True):
            forced[idx] = scenario

    # Plan every item, then order them by start; indices stay the plan order so that
    # each item's rendering rng does not depend on the others.
    plans: list[tuple[int, str, str | None]] = [
        (
            t_start + (i * span) // payments + rng.randrange(max(1, span // payments)),
            "payment",
            forced.get(i),
        )
        for i in range(payments)
    ]
    # Most Checkout sessions are abandoned and expire; `export_only` events are in the
    # API export but were never delivered to the stream.
    noise_rates = {
        "expired": 0.6,
        "subscription": 0.04,
        "setup": 0.02,
        "unrelated": 0.2,
        "thin": 0.01,
        "export_only": 0.005,
    }
    for kind, rate in noise_rates.items():
        for _ in range(max(2, round(payments * rate))):
            plans.append((t_start + rng.randrange(span), kind, None))
    malformed_each = max(2, payments // 500)
    for kind in MALFORMED_KINDS:
        for _ in range(malformed_each):
            plans.append((t_start + rng.randrange(span), kind, None))

    items: list[_Item] = []
    for index, (t0, kind, forced_scenario) in enumerate(plans):
        if kind == "payment":
            items.append(_plan_payment(rng, index, t0, forced_scenario))
        else:
            items.append(_plan_noise(rng, index, t0, kind))
    items.sort(key=lambda it: (it.t0, it.index))

    return Archive(
        seed=seed,
        truth=_truth(items, payments, seed, start, hours),
        items=tuple(items),
    )


def _truth(
    items: Sequence[_Item], payments: int, seed: int, start: datetime, hours: float
) -> Truth:
    out: list[PaymentTruth] = []
    deliveries: Counter[str] = Counter()
    malformed: Counter[str] = Counter()
    types: Counter[str] = Counter()
    features: Counter[str] = Counter()
    records = 0
    export_dups = 0
    export_only = 0
    for item in items:
        for e in item.events:
            records += len(e.deliveries)
            if e.export and not e.deliveries:
                export_only += 1
                continue
            export_dups += e.export
            if item.kind in MALFORMED_KINDS:
                malformed[item.kind] += 1
                continue
            types[e.type] += 1
            for _, kind in e.deliveries:
                deliveries[kind] += 1
        p = item.payment
        if p is None:
            continue
        features.update(p.features)
        refunded = sum(a for _, a in p.refunds)
        types_seen = {e.type for e in item.events}
        charge_known = bool(
            types_seen & {"charge.succeeded", "charge.failed", "charge.pending", "charge.refunded"}
        ) or ("payment_intent.succeeded" in types_seen)
        card_country_seen = (
            p.card_country
            if {"charge.succeeded"} & types_seen
            or ("payment_intent.succeeded" in types_seen and item.api_version < LATEST_CHARGE_SINCE)
            else None
        )
        if "async_failure" in p.features:
            status = "Failed"
        elif refunded == p.amount:
            status = "Refunded"
        else:
            status = "Paid"
        out.append(
            PaymentTruth(
                checkout_session_id=p.cs_id,
                payment_intent_id=p.pi_id,
                charge_id=p.ch_id if charge_known else None,
                status=status,
                amount_minor=p.amount,
                currency=p.currency.upper(),
                payment_method=p.method,
                card_country=card_country_seen,
                address_country=p.address_country,
                identity_id=p.identity_id,
                identity_source=p.identity_source,
                livemode=item.livemode,
                account=item.source,
                account_name=item.account.name,
                api_version=item.api_version,
                refunded_total_minor=refunded,
                refunds_minor=tuple(a for _, a in p.refunds),
                disputed=p.dispute_id is not None,
                dispute_outcome=p.dispute_outcome,
                session_created=_iso(item.t0),
                features=tuple(p.features),
            )
        )
    out.sort(key=lambda t: t.session_created)
    counts = {
        "payments": len(out),
        "records": records,
        "deliveries": {k: deliveries[k] for k in DELIVERY_KINDS},
        "malformed": {k: malformed[k] for k in MALFORMED_KINDS},
        "distinct_events": sum(types.values()),
        "events_by_type": dict(sorted(types.items())),
        "features": dict(sorted(features.items())),
        "exports": {
            "lines": export_dups + export_only,
            "duplicates_of_archive": export_dups,
            "only_in_exports": export_only,
        },
    }
    generator = {"payments": payments, "seed": seed, "start": start.isoformat(), "hours": hours}
    return Truth(generator=generator, payments=tuple(out), counts=counts)


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class WriteSummary:
    """What `write_archive` wrote: paths and object counts by style."""

    out_dir: Path
    truth_path: Path
    objects: int
    newline_objects: int
    concatenated_objects: int
    gzip_objects: int
    plain_objects: int
    records: int
    bytes_written: int

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("out_dir", "truth_path")}


def write_archive(
    archive: Archive,
    out_dir: Path,
    *,
    stream: str = DEFAULT_STREAM,
    truth_path: Path | None = None,
    buffer_seconds: int = 300,
    buffer_bytes: int = 4 * 1024 * 1024,
) -> WriteSummary:
    """Write the archive under `out_dir` as Firehose would, plus exports/ and truth.json.

    An object closes when its next record arrived `buffer_seconds` or more after its
    oldest record, or when it reaches `buffer_bytes` uncompressed (Firehose's buffering
    hints). Files are written as they close, so memory stays bounded. `truth_path`
    defaults to `out_dir.parent / "truth.json"`. Existing files are overwritten, other
    files in `out_dir` are left alone.
    """
    truth_path = truth_path or out_dir.parent / "truth.json"
    rng = random.Random(f"{archive.seed}:writer")
    counts: Counter[str] = Counter()
    batch: list[ArrivedRecord] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if not batch:
            return
        oldest = batch[0].arrival_ms // 1000
        stamp = datetime.fromtimestamp(oldest, tz=UTC)
        newline = rng.random() < 0.4 or any(r.malformed for r in batch)
        compressed = rng.random() < 0.85
        name = f"{stream}-1-{stamp:%Y-%m-%d-%H-%M-%S}-{_uuid(rng)}" + (".gz" if compressed else "")
        body = (
            b"".join(r.data + b"\n" for r in batch) if newline else b"".join(r.data for r in batch)
        )
        if compressed:
            body = gzip.compress(body, compresslevel=5, mtime=0)
        path = out_dir / f"{stamp:%Y/%m/%d/%H}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        counts["objects"] += 1
        counts["newline_objects" if newline else "concatenated_objects"] += 1
        counts["gzip_objects" if compressed else "plain_objects"] += 1
        counts["records"] += len(batch)
        counts["bytes_written"] += len(body)
        batch.clear()
        size = 0

    for rec in archive.records():
        if batch and (
            rec.arrival_ms - batch[0].arrival_ms >= buffer_seconds * 1000 or size >= buffer_bytes
        ):
            flush()
        batch.append(rec)
        size += len(rec.data)
    flush()

    exports = archive.exports()
    if exports:
        stamp = datetime.fromisoformat(archive.truth.generator["start"])
        export_path = out_dir / "exports" / f"stripe-events-export-{stamp:%Y-%m-%d}.jsonl"
        export_path.parent.mkdir(parents=True, exist_ok=True)
        export_path.write_bytes(b"".join(line + b"\n" for line in exports))

    summary = WriteSummary(
        out_dir=out_dir,
        truth_path=truth_path,
        objects=counts["objects"],
        newline_objects=counts["newline_objects"],
        concatenated_objects=counts["concatenated_objects"],
        gzip_objects=counts["gzip_objects"],
        plain_objects=counts["plain_objects"],
        records=counts["records"],
        bytes_written=counts["bytes_written"],
    )
    write_truth(archive.truth, truth_path, summary.as_json())
    return summary


def write_truth(truth: Truth, path: Path, archive_summary: dict[str, Any] | None = None) -> None:
    """Write `truth.to_json(archive_summary)` with one payment per line.

    One line per payment keeps the file diffable and small, and avoids building the
    whole document as one string for large archives.
    """
    doc = truth.to_json(archive_summary)
    payments = doc.pop("payments")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write("{\n")
        for key, value in doc.items():
            fh.write(f"{json.dumps(key)}: {json.dumps(value, sort_keys=False)},\n")
        fh.write('"payments": [\n')
        for i, payment in enumerate(payments):
            fh.write(json.dumps(payment, separators=(",", ":")))
            fh.write(",\n" if i < len(payments) - 1 else "\n")
        fh.write("]\n}\n")


# --------------------------------------------------------------------------- CLI


def _parse_start(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.generate_archive",
        description="Write a deterministic Stripe->EventBridge->Firehose archive and its truth.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="Firehose prefix to write into (objects under YYYY/MM/dd/HH/).",
    )
    parser.add_argument(
        "--payments",
        type=int,
        required=True,
        help="Number of one-off contributions to simulate (~7 events each).",
    )
    parser.add_argument(
        "--seed",
        type=int,
        required=True,
        help="Random seed; the same seed and arguments give the same bytes.",
    )
    parser.add_argument(
        "--start",
        type=_parse_start,
        default=DEFAULT_START,
        help="UTC start of the payments, ISO 8601 (default 2025-03-01T00:00:00Z).",
    )
    parser.add_argument(
        "--hours",
        type=float,
        default=24.0,
        help="Hours over which sessions are created (default 24).",
    )
    parser.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="Where to write truth.json (default: <parent of --out>/truth.json).",
    )
    parser.add_argument(
        "--buffer-seconds",
        type=int,
        default=300,
        help="Firehose buffering interval: an object spans at most this many "
        "seconds of arrivals (Firehose allows 0-900; default 300).",
    )
    parser.add_argument(
        "--stream",
        default=DEFAULT_STREAM,
        help=f"Firehose delivery stream name in object keys (default {DEFAULT_STREAM}).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    began = time.perf_counter()
    archive = generate(args.payments, args.seed, args.start, args.hours)
    summary = write_archive(
        archive,
        args.out,
        stream=args.stream,
        truth_path=args.truth,
        buffer_seconds=args.buffer_seconds,
    )
    elapsed = time.perf_counter() - began
    print(
        f"wrote {summary.records} records ({archive.truth.counts['distinct_events']} distinct "
        f"events) in {summary.objects} objects under {summary.out_dir}, truth at "
        f"{summary.truth_path}, in {elapsed:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
