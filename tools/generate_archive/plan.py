"""Planning: each payment's scenario, ids, amounts, timeline and deliveries.

Everything the truth needs is fixed here, drawing from one rng in plan order, so that
the same arguments always give the same plan.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from tools.generate_archive.model import (
    ACCOUNT_WEIGHTS,
    ACCOUNTS,
    API_VERSIONS,
    DECLINED_ATTEMPT,
    LATEST_CHARGE_SINCE,
    MALFORMED_KINDS,
    Item,
    PaymentPlan,
    PlannedEvent,
    latency_ms,
    pick_amount,
    round_step,
    token,
    weighted,
)

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
    "declined_then_debit",
    "charge_never_arrives",
    "only_payment_intent",
    "guest",
    "identity_in_client_reference_id",
    "test_mode",
    "bad_ab_tests",
    "export_duplicate",
)
_FORCED_PER_SCENARIO = 3


_CARD_COUNTRIES = ("GB", "US", "AU", "IE", "DE", "FR", "NZ", "CA", "JP", "KW", "NL")


_UNRELATED_TYPES = (
    "customer.created",
    "customer.updated",
    "invoice.paid",
    "payout.paid",
    "balance.available",
    "product.updated",
    "price.created",
)


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
    # Some readers try a card that is declined before they pay by a bank debit.
    declined_first = rng.random() < 0.3

    flows = {name for name, _ in _FLOWS}
    outcomes = {name for name, _ in _OUTCOMES}
    if forced in flows:
        flow = forced
    elif forced == "declined_then_debit":
        # The bug this pattern exposes is a debit failing after the decline.
        flow = "async_failure"
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
    if flow in ("async_success", "async_success_two_days", "async_failure") and (
        declined_first or forced == "declined_then_debit"
    ):
        scen.add("declined_then_debit")
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


def plan_payment(rng: random.Random, index: int, t0: int, forced: str | None) -> Item:
    """Decide one payment's scenario, ids, amounts and every delivery's arrival."""
    scen = _choose_scenarios(rng, forced)
    is_async = bool(scen & {"async_success", "async_failure"})
    livemode = "test_mode" not in scen
    if is_async:
        account = ACCOUNTS[0]
        method = rng.choice(("bacs_debit", "sepa_debit"))
        currency = "gbp" if method == "bacs_debit" else "eur"
    else:
        account = rng.choices(ACCOUNTS, weights=ACCOUNT_WEIGHTS)[0]
        method = "card"
        currency = weighted(rng, account.currencies)
    if "only_payment_intent" in scen:
        api_version = rng.choice([v for v in API_VERSIONS if v >= LATEST_CHARGE_SINCE])
    else:
        api_version = rng.choice(API_VERSIONS)
    amount = pick_amount(rng, currency)
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
    cs_id = f"cs_{mode_tag}_a1{token(rng, 56)}"
    pi_id = "pi_3" + token(rng, 23)
    # Stripe gives charges of debit methods py_ ids.
    ch_id = ("ch_3" if method == "card" else "py_3") + token(rng, 23)
    declined_id = declined_country = None
    if "declined_then_debit" in scen:
        declined_id = "ch_3" + token(rng, 23)
        declined_country = rng.choice(_CARD_COUNTRIES)

    refunds: list[tuple[str, int]] = []
    step = round_step(currency)
    if "full_refund" in scen:
        refunds.append(("re_3" + token(rng, 23), amount))
    elif "partial_refund" in scen or "partial_then_full_refund" in scen:
        part = max(step, (amount * rng.randint(20, 70) // 100) // step * step)
        refunds.append(("re_3" + token(rng, 23), part))
        if "partial_then_full_refund" in scen:
            refunds.append(("re_3" + token(rng, 23), amount - part))
    dispute_id = "dp_1" + token(rng, 23) if "dispute" in scen else None
    dispute_outcome = rng.choice(("won", "lost")) if dispute_id else None

    item = Item(index, "payment", t0, account, livemode, api_version)
    plan = PaymentPlan(
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
        declined_charge_id=declined_id,
        declined_card_country=declined_country,
    )
    item.payment = plan

    # Timeline: seconds since the session was created (t0).
    tc = t0 + rng.randint(30, 600)  # the reader completes the page
    if declined_id is not None:
        # Room for the declined attempt: no record of an item precedes its t0.
        tc = max(tc, t0 + 120)
    ev = item.events

    def add(type_: str, created: int, step_: int = 0) -> PlannedEvent:
        e = PlannedEvent(type_, created, step_)
        ev.append(e)
        return e

    charge_side: list[PlannedEvent] = []
    if declined_id is None:
        payment_events: list[PlannedEvent] = [add("payment_intent.created", tc - 2)]
    else:
        # The card is declined on the page; the reader then chooses the debit.
        payment_events = [add("payment_intent.created", tc - 90)]
        charge_side.append(add("charge.failed", tc - 60, DECLINED_ATTEMPT))
        charge_side.append(add("payment_intent.payment_failed", tc - 60, DECLINED_ATTEMPT))
    session_side: list[PlannedEvent] = []
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

    refund_events: list[PlannedEvent] = []
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
        e.deliveries.append((e.created * 1000 + latency_ms(rng), "original"))

    def delay(events: Iterable[PlannedEvent], lo_s: int, hi_s: int) -> None:
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


def plan_noise(rng: random.Random, index: int, t0: int, kind: str) -> Item:
    account = rng.choices(ACCOUNTS, weights=ACCOUNT_WEIGHTS)[0]
    item = Item(index, kind, t0, account, rng.random() > 0.05, rng.choice(API_VERSIONS))
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
            PlannedEvent(
                type_, created, deliveries=[(created * 1000 + latency_ms(rng), "original")]
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


def plan_items(rng: random.Random, payments: int, t_start: int, span: int) -> list[Item]:
    """Every item of an archive (payments, noise, malformed records) ordered by start.

    `span` is the seconds over which sessions start from `t_start`. The noise and the
    malformed records are in proportion to `payments`.
    """
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

    items: list[Item] = []
    for index, (t0, kind, forced_scenario) in enumerate(plans):
        if kind == "payment":
            items.append(plan_payment(rng, index, t0, forced_scenario))
        else:
            items.append(plan_noise(rng, index, t0, kind))
    items.sort(key=lambda it: (it.t0, it.index))
    return items
