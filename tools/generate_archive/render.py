"""Rendering: the bytes of one item's EventBridge envelopes and Stripe events.

Stripe's objects are shaped by the item's pinned API version; cosmetic fields come
from an rng seeded by the item alone, so an item renders the same bytes every time.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tools.generate_archive.model import (
    AMOUNTS_MAJOR_2DP,
    AWS_ACCOUNT,
    AWS_REGION,
    BASIL_SINCE,
    DECLINED_ATTEMPT,
    LATEST_CHARGE_SINCE,
    MALFORMED_KINDS,
    ArrivedRecord,
    Item,
    PaymentPlan,
    iso_utc,
    random_uuid,
    reader_email,
    token,
)

_FIRST_NAMES = ("Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo")


class Renderer:
    """Builds the bytes of one item's records from its plan; stateless between items."""

    def __init__(self, item: Item, seed: int) -> None:
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
            "id": random_uuid(self.rng),
            "detail-type": type_,
            "source": "aws.partner/stripe.com/" + self.item.source,
            "account": AWS_ACCOUNT,
            "time": iso_utc(arrival_ms / 1000),
            "region": AWS_REGION,
            "resources": [self.arn],
        }
        if kind == "replay":
            head["replay-name"] = "stripe-replay-" + iso_utc(arrival_ms / 1000)[:10]
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
            "id": "evt_3" + token(rng, 23),
            "object": "event",
            "api_version": self.item.api_version,
            "created": created,
            "data": data,
            "livemode": self.item.livemode,
            "pending_webhooks": rng.randint(1, 2),
            "request": {
                "id": "req_" + token(rng, 14) if from_api else None,
                "idempotency_key": random_uuid(rng) if from_api else None,
            },
            "type": type_,
        }

    def _payment_details(self) -> list[dict[str, Any]]:
        item = self.item
        p = item.payment
        assert p is not None
        rng = self.rng
        v = item.api_version
        pm_id = "pm_1" + token(rng, 23)
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
        declined = self._declined_charge(p, email, name, address)
        # Every attempt the PaymentIntent lists, newest first, once it was made.
        attempts = [charge] if declined is None else [charge, declined]
        refunded = 0
        refund_objs: list[dict[str, Any]] = []
        dispute: dict[str, Any] | None = None
        out: list[dict[str, Any]] = []
        prev: dict[str, Any] | None
        for e in item.events:
            t = e.type
            if e.step == DECLINED_ATTEMPT and declined is not None:
                if t == "charge.failed":
                    declined["created"] = e.created
                    out.append(self._event(t, e.created, self._charge_view(declined, v)))
                else:
                    pi.update(
                        status="requires_payment_method",
                        amount_received=0,
                        last_payment_error={
                            "charge": declined["id"],
                            "code": "card_declined",
                            "decline_code": "generic_decline",
                            "message": declined["failure_message"],
                            "type": "card_error",
                        },
                    )
                    out.append(self._event(t, e.created, self._pi_view(pi, v, [declined])))
            elif t == "payment_intent.created":
                pi.update(status="requires_payment_method", amount_received=0)
                out.append(self._event(t, e.created, self._pi_view(pi, v, [])))
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
                    balance_transaction="txn_3" + token(rng, 23) if status == "succeeded" else None,
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
                if t == "payment_intent.processing":
                    # A new attempt clears the error of a declined one.
                    pi["last_payment_error"] = None
                if t == "payment_intent.payment_failed":
                    pi["last_payment_error"] = {
                        "charge": p.ch_id,
                        "code": "debit_not_authorized",
                        "message": charge["failure_message"],
                        "type": "card_error",
                    }
                out.append(self._event(t, e.created, self._pi_view(pi, v, attempts)))
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
                    "balance_transaction": "txn_3" + token(rng, 23),
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
                        {"id": "txn_3" + token(rng, 23), "amount": -p.amount}
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

    def _metadata(self, p: PaymentPlan) -> dict[str, str]:
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
            md["pageviewId"] = token(rng, 20).lower()
            md["browserId"] = token(rng, 24)
        if rng.random() < 0.5:
            md["referrerPageviewId"] = token(rng, 20).lower()
        if rng.random() < 0.3:
            md["labels"] = rng.choice(("hosted-checkout", "hosted-checkout,one-off"))
        if rng.random() < 0.5:
            md["queryParameters"] = json.dumps({"INTCMP": "epic", "REFPVID": token(rng, 10)})
        if rng.random() < 0.7:
            md["similarProductsConsent"] = rng.choice(("true", "false"))
        return md

    def _session(
        self, p: PaymentPlan, created: int, email: str, name: str | None, address: dict[str, Any]
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
        self, p: PaymentPlan, pm_id: str, email: str, name: str | None, address: dict[str, Any]
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
                    "fingerprint": token(rng, 16),
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
                    "fingerprint": token(rng, 16),
                    "last4": "2345",
                    "mandate": "mandate_1" + token(rng, 23),
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
                    "fingerprint": token(rng, 16),
                    "last4": "3000",
                    "mandate": "mandate_1" + token(rng, 23),
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
            "receipt_url": "https://pay.stripe.com/receipts/payment/" + token(rng, 40),
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

    def _payment_intent(self, p: PaymentPlan, pm_id: str) -> dict[str, Any]:
        return {
            "id": p.pi_id,
            "object": "payment_intent",
            "amount": p.amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "application": None,
            "canceled_at": None,
            "capture_method": "automatic",
            "client_secret": f"{p.pi_id}_secret_{token(self.rng, 25)}",
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
        self, pi: dict[str, Any], version: str, charges: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The PaymentIntent with its `charges` (newest first), as the version shows it.

        Before the payment is attempted there is no charge to point at.
        """
        view = dict(pi)
        if version < LATEST_CHARGE_SINCE:
            data = [self._charge_view(c, version) for c in charges]
            view["charges"] = self._list(data, f"/v1/charges?payment_intent={pi['id']}")
        else:
            view["latest_charge"] = charges[0]["id"] if charges else None
        return view

    def _declined_charge(
        self, p: PaymentPlan, email: str, name: str | None, address: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The card charge declined before the debit, if the plan has one."""
        if p.declined_charge_id is None:
            return None
        card = replace(
            p, method="card", ch_id=p.declined_charge_id, card_country=p.declined_card_country
        )
        charge = self._charge(card, "pm_1" + token(self.rng, 23), email, name, address)
        charge.update(
            status="failed",
            paid=False,
            captured=False,
            amount_captured=0,
            failure_code="card_declined",
            failure_message="Your card was declined.",
            outcome={
                **charge["outcome"],
                "network_status": "declined_by_network",
                "reason": "generic_decline",
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined",
            },
        )
        return charge

    @staticmethod
    def _list(data: list[dict[str, Any]], url: str) -> dict[str, Any]:
        return {
            "object": "list",
            "data": list(data),
            "has_more": False,
            "total_count": len(data),
            "url": url,
        }

    def _noise_details(self) -> list[dict[str, Any]]:
        item = self.item
        rng = self.rng
        out: list[dict[str, Any]] = []
        cus = "cus_" + token(rng, 14)
        sub = "sub_1" + token(rng, 23)
        inv = "in_1" + token(rng, 23)
        seti = "seti_1" + token(rng, 23)
        mode_tag = "live" if item.livemode else "test"
        currency = item.account.currencies[0][0]
        for e in item.events:
            t = e.type
            if item.kind == "thin":
                out.append(
                    {
                        "id": "evt_test_65" + token(rng, 40)
                        if not item.livemode
                        else "evt_65" + token(rng, 40),
                        "object": "v2.core.event",
                        "type": t,
                        "created": datetime.fromtimestamp(e.created, tz=UTC)
                        .isoformat(timespec="milliseconds")
                        .replace("+00:00", "Z"),
                        "livemode": item.livemode,
                        "context": None,
                        "related_object": {
                            "id": "mtr_" + token(rng, 20),
                            "type": "billing.meter",
                            "url": "/v1/billing/meters/mtr_x",
                        },
                        "reason": None,
                    }
                )
                continue
            if t.startswith("checkout.session."):
                mode = {"subscription": "subscription", "setup": "setup"}.get(item.kind, "payment")
                amount = None if mode == "setup" else rng.choice(AMOUNTS_MAJOR_2DP)
                obj: dict[str, Any] = {
                    "id": f"cs_{mode_tag}_b1{token(rng, 56)}",
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
                    "id": "po_1" + token(rng, 23),
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
                    "id": "prod_" + token(rng, 14),
                    "object": "product",
                    "name": "Support",
                },
                "price": {
                    "id": "price_1" + token(rng, 23),
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
            "id": "evt_3" + token(rng, 23),
            "object": "event",
            "type": "charge.succeeded",
            "api_version": self.item.api_version,
            "created": arrival_ms // 1000 - 1,
            "data": {"object": {"id": "ch_3" + token(rng, 23), "object": "charge"}},
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
