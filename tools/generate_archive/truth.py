"""The truth about an archive: what was intended for each payment, and the counts.

`truth_of` reads the plan only (never the rendered bytes), so the truth is known
before a record is rendered; `write_truth` writes truth.json.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tools.generate_archive.model import (
    DELIVERY_KINDS,
    LATEST_CHARGE_SINCE,
    MALFORMED_KINDS,
    Item,
    iso_utc,
)


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


def truth_of(
    items: Sequence[Item], payments: int, seed: int, start: datetime, hours: float
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
                session_created=iso_utc(item.t0),
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
