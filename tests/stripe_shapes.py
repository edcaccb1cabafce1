"""Stripe events built from Stripe's own example objects (tests/fixtures/stripe/).

Each builder loads one object of a revision's OpenAPI fixtures and changes only
what a scenario needs (ids, amounts, statuses, payment method details), so the
rest of the payload keeps Stripe's documented shape for that API version.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from tests.builders import ACCOUNT_UK, event
from transforms.domain.events import StripeEvent

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"
#: Fixture revision -> the API version its objects are shaped for.
LEGACY_2022 = "openapi-12a5f47a"
LATEST_CHARGE_2024 = "openapi-4651b9c5"
BASIL_2025 = "openapi-1ef159c3"
API_VERSIONS = {
    LEGACY_2022: "2022-07-18",
    LATEST_CHARGE_2024: "2024-06-20",
    BASIL_2025: "2025-03-31.basil",
}


@cache
def _load(revision: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / revision / f"{name}.json").read_text())
    return loaded


def fixture(revision: str, name: str, **changes: Any) -> dict[str, Any]:
    """A fresh copy of Stripe's example `name` object at `revision`, with `changes`."""
    return {**copy.deepcopy(_load(revision, name)), **changes}


def card_details(country: str) -> dict[str, Any]:
    return {
        "card": {
            "brand": "visa",
            "checks": {"address_line1_check": None, "cvc_check": "pass"},
            "country": country,
            "exp_month": 8,
            "exp_year": 2030,
            "fingerprint": "AOB934RVNwzk6xtn",
            "funding": "credit",
            "last4": "0002",
            "network": "visa",
            "wallet": None,
        },
        "type": "card",
    }


#: `payment_method_details` of the bank debits, as Stripe documents each.
DEBIT_DETAILS: dict[str, dict[str, Any]] = {
    "bacs_debit": {
        "bacs_debit": {
            "fingerprint": "UkSG0HfCGxxrja1H",
            "last4": "2345",
            "mandate": "mandate_1PgbHPB7WZ01zgkW",
            "sort_code": "108800",
        },
        "type": "bacs_debit",
    },
    "sepa_debit": {
        "sepa_debit": {
            "bank_code": "37040044",
            "branch_code": None,
            "country": "DE",
            "fingerprint": "vifs0Ho7vwRn1Miu",
            "last4": "3000",
            "mandate": "mandate_1PgbQyB7WZ01zgkW",
        },
        "type": "sepa_debit",
    },
    "us_bank_account": {
        "us_bank_account": {
            "account_holder_type": "individual",
            "account_type": "checking",
            "bank_name": "STRIPE TEST BANK",
            "fingerprint": "FFDMA0xfhBjWSZLu",
            "last4": "6789",
            "payment_reference": None,
            "routing_number": "110000000",
        },
        "type": "us_bank_account",
    },
}


class Scenario:
    """One PaymentIntent's events at one fixture revision, in the order they are added."""

    def __init__(
        self,
        revision: str,
        *,
        payment_intent: str,
        session: str,
        amount: int,
        currency: str,
        account: str = ACCOUNT_UK,
    ) -> None:
        self.revision = revision
        self.api_version = API_VERSIONS[revision]
        self.payment_intent = payment_intent
        self.session_id = session
        self.amount = amount
        self.currency = currency
        self.account = account
        self.events: list[StripeEvent] = []
        self._charges: dict[str, dict[str, Any]] = {}

    def _add(self, event_type: str, obj: dict[str, Any], created: int) -> StripeEvent:
        built = event(
            f"evt_{len(self.events) + 1:02d}_{self.payment_intent[-6:]}",
            event_type,
            obj,
            created=created,
            account=self.account,
            api_version=self.api_version,
            source=f"test@{len(self.events)}",
        )
        self.events.append(built)
        return built

    def charge(
        self, event_type: str, charge_id: str, details: dict[str, Any], status: str, created: int
    ) -> StripeEvent:
        failed = status == "failed"
        obj = fixture(
            self.revision,
            "charge",
            id=charge_id,
            amount=self.amount,
            amount_captured=0 if failed or status == "pending" else self.amount,
            currency=self.currency,
            created=created,
            captured=not failed,
            paid=status == "succeeded",
            status=status,
            payment_intent=self.payment_intent,
            payment_method_details=details,
            failure_code=("card_declined" if details["type"] == "card" else "debit_not_authorized")
            if failed
            else None,
        )
        obj["refunds"]["url"] = f"/v1/charges/{charge_id}/refunds"
        self._charges[charge_id] = obj
        return self._add(event_type, obj, created)

    def payment_intent_event(
        self, event_type: str, latest_charge: str, status: str, created: int
    ) -> StripeEvent:
        failed = event_type == "payment_intent.payment_failed"
        obj = fixture(
            self.revision,
            "payment_intent",
            id=self.payment_intent,
            amount=self.amount,
            amount_received=0 if failed else self.amount,
            currency=self.currency,
            status=status,
            last_payment_error={"charge": latest_charge, "code": "payment_failed", "type": "x"}
            if failed
            else None,
        )
        if "charges" in obj:
            # Before 2022-11-15 the PaymentIntent lists its charges, newest first.
            attempts = [self._charges[c] for c in reversed(self._charges)]
            obj["charges"] = {**obj["charges"], "data": attempts, "total_count": len(attempts)}
            obj["charges"]["url"] = f"/v1/charges?payment_intent={self.payment_intent}"
        else:
            obj["latest_charge"] = latest_charge
        return self._add(event_type, obj, created)

    def session_event(
        self,
        event_type: str,
        created: int,
        *,
        payment_status: str,
        country: str,
        methods: tuple[str, ...],
        name: str = "Nagy Zsófia",
        custom_fields: tuple[tuple[str, str], ...] = (),
    ) -> StripeEvent:
        obj = fixture(
            self.revision,
            "checkout.session",
            id=self.session_id,
            amount_subtotal=self.amount,
            amount_total=self.amount,
            currency=self.currency,
            mode="payment",
            payment_intent=self.payment_intent,
            payment_method_types=list(methods),
            payment_status=payment_status,
            status="complete",
            metadata={"identityId": "200100300", "componentId": "ACQUISITIONS_EPIC"},
            customer_details={
                "address": {
                    "city": None,
                    "country": country,
                    "line1": None,
                    "line2": None,
                    "postal_code": None,
                    "state": None,
                },
                "email": "reader@example.com",
                "name": name,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            },
        )
        if custom_fields:
            obj["custom_fields"] = [
                {
                    "key": key,
                    "label": {"custom": "Given name", "type": "custom"},
                    "optional": True,
                    "text": {"maximum_length": None, "minimum_length": None, "value": value},
                    "type": "text",
                }
                for key, value in custom_fields
            ]
        return self._add(event_type, obj, created)

    def refund(
        self, event_type: str, refund_id: str, charge_id: str, amount: int, created: int
    ) -> StripeEvent:
        obj = fixture(
            self.revision,
            "refund",
            id=refund_id,
            amount=amount,
            charge=charge_id,
            currency=self.currency,
            created=created,
            payment_intent=self.payment_intent,
            status="succeeded",
        )
        return self._add(event_type, obj, created)
