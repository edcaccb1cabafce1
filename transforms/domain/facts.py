"""What one Stripe event means for a one-off contribution: a typed fact.

`classify(event)` is pure and total: every event becomes exactly one of

- `SessionFact`: a Checkout Session in payment mode completed or settled;
- `ChargeFact`: a charge or PaymentIntent outcome for a PaymentIntent;
- `PaymentAdjustment`: a refund or a dispute (a final record, no state);
- `Skip`: not ours (other modes, other types, thin events, ...), with a reason;

or raises `ClassifyError` when the event claims to be ours but cannot be
read (it then becomes a dead letter). Facts keep only what the later steps
need, so the shuffles that follow move small values, not whole payloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.records import PaymentAdjustment
from transforms.domain.events import StripeEvent
from transforms.domain.money import MoneyError, to_major_units

SESSION_COMPLETED = "checkout.session.completed"
SESSION_ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
SESSION_ASYNC_FAILED = "checkout.session.async_payment_failed"
CHARGE_SUCCEEDED = "charge.succeeded"
CHARGE_FAILED = "charge.failed"
CHARGE_REFUNDED = "charge.refunded"
PAYMENT_INTENT_SUCCEEDED = "payment_intent.succeeded"
PAYMENT_INTENT_FAILED = "payment_intent.payment_failed"
DISPUTE_EVENTS = frozenset(
    {
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
    }
)
# A destination may send charge.refunded (the charge, with its cumulative
# amount_refunded), the refund objects' own events, or both: each becomes an
# adjustment, and the reconciliation rule counts the same money once.
REFUND_OBJECT_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
#: Only a succeeded refund has moved money back; a pending one will be seen
#: again (refund.updated) when it succeeds.
REFUND_SUCCEEDED = "succeeded"

# Session outcomes, in the words of the event that settled the payment.
PAID = "paid"
PENDING = "pending"
ASYNC_SUCCEEDED = "async_succeeded"
ASYNC_FAILED = "async_failed"


class ClassifyError(ValueError):
    """An event of a type we handle whose payload cannot be read."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class EventMeta:
    """The event-level facts every output record carries."""

    event_id: str
    event_type: str
    created: int
    livemode: bool
    account: str | None


@dataclass(frozen=True)
class CustomerDetails:
    """Checkout's `customer_details`; personal data, kept out of analytics."""

    email: str | None
    name: str | None
    country: str | None
    postal_code: str | None
    state: str | None


@dataclass(frozen=True)
class SessionFact:
    """A Checkout Session (mode=payment) that completed or settled."""

    meta: EventMeta
    payment_intent_id: str
    session_id: str
    outcome: str
    amount_minor: int
    currency: str
    customer: CustomerDetails
    metadata: Mapping[str, str]
    client_reference_id: str | None
    consent_promotions: str | None
    payment_method_types: tuple[str, ...]
    #: (key, value) of each filled-in text custom field of the page; personal data.
    custom_text_fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ChargeFact:
    """What a charge or PaymentIntent event says about a PaymentIntent's charge.

    `has_charge_object` is True only when the event carried the charge itself
    (charge.*, or a pre-2022-11-15 PaymentIntent's `charges.data`): only then
    is `card_country` as good as it will get.
    """

    meta: EventMeta
    payment_intent_id: str
    charge_id: str | None
    succeeded: bool
    has_charge_object: bool
    card_country: str | None
    payment_method: str | None
    charge_created: int | None = None


@dataclass(frozen=True)
class Skip:
    """An event that is not ours; counted by reason, never an error."""

    meta: EventMeta
    reason: str


Fact = SessionFact | ChargeFact | PaymentAdjustment | Skip

#: Which Stripe mode a deployment serves: live payments (PROD), test payments
#: (CODE), or both (the local warehouse, where `livemode` tells them apart).
LIVE_MODE = "live"
TEST_MODE = "test"
ALL_MODES = "all"
STRIPE_MODES = (LIVE_MODE, TEST_MODE, ALL_MODES)
OTHER_STRIPE_MODE = "other_stripe_mode"


def classify(event: StripeEvent, *, stripe_mode: str = ALL_MODES) -> Fact:
    """The one fact `event` contributes to one-off contributions.

    With `stripe_mode` `live` or `test`, an event of the other mode is a
    `Skip` (`other_stripe_mode`), whatever its type.
    """
    if stripe_mode not in STRIPE_MODES:
        raise ValueError(f"stripe_mode must be one of {STRIPE_MODES}, got {stripe_mode!r}")
    meta = EventMeta(
        event_id=event.id,
        event_type=event.type,
        created=event.created,
        livemode=event.livemode,
        account=event.account,
    )
    if event.thin:
        return Skip(meta, "thin_event")
    if stripe_mode != ALL_MODES and event.livemode != (stripe_mode == LIVE_MODE):
        return Skip(meta, OTHER_STRIPE_MODE)
    obj = event.data_object
    kind = event.type
    if kind in (SESSION_COMPLETED, SESSION_ASYNC_SUCCEEDED, SESSION_ASYNC_FAILED):
        return _session_fact(meta, obj)
    if kind in (CHARGE_SUCCEEDED, CHARGE_FAILED):
        return _charge_fact(meta, obj, succeeded=kind == CHARGE_SUCCEEDED)
    if kind in (PAYMENT_INTENT_SUCCEEDED, PAYMENT_INTENT_FAILED):
        return _payment_intent_fact(meta, obj, succeeded=kind == PAYMENT_INTENT_SUCCEEDED)
    if kind == CHARGE_REFUNDED:
        return _refund(meta, obj, event.previous_attributes)
    if kind in DISPUTE_EVENTS:
        return _dispute(meta, obj)
    if kind in REFUND_OBJECT_EVENTS:
        return _refund_object(meta, obj)
    return Skip(meta, "not_a_payment_event")


def _session_fact(meta: EventMeta, obj: Mapping[str, Any]) -> Fact:
    if obj.get("mode") != "payment":
        return Skip(meta, f"session_mode_{obj.get('mode') or 'unknown'}")
    payment_status = obj.get("payment_status")
    if payment_status == "no_payment_required":
        return Skip(meta, "no_payment_required")
    if meta.event_type == SESSION_ASYNC_SUCCEEDED:
        outcome = ASYNC_SUCCEEDED
    elif meta.event_type == SESSION_ASYNC_FAILED:
        outcome = ASYNC_FAILED
    else:
        outcome = PAID if payment_status == "paid" else PENDING
    payment_intent_id = _id_of(obj.get("payment_intent"))
    session_id = obj.get("id")
    if not payment_intent_id or not isinstance(session_id, str):
        raise ClassifyError("invalid_session", "session has no id or payment_intent")
    amount = obj.get("amount_total")
    currency = obj.get("currency")
    if not isinstance(amount, int) or not isinstance(currency, str):
        raise ClassifyError("invalid_session", "session has no amount_total or currency")
    try:
        to_major_units(amount, currency)
    except MoneyError as error:
        raise ClassifyError("invalid_amount", str(error)) from error
    details = obj.get("customer_details") or {}
    address = details.get("address") or {}
    metadata = obj.get("metadata") or {}
    consent = obj.get("consent") or {}
    return SessionFact(
        meta=meta,
        payment_intent_id=payment_intent_id,
        session_id=session_id,
        outcome=outcome,
        amount_minor=amount,
        currency=currency.upper(),
        customer=CustomerDetails(
            email=_str_or_none(details.get("email")),
            name=_str_or_none(details.get("name")),
            country=_upper_or_none(address.get("country")),
            postal_code=_str_or_none(address.get("postal_code")),
            state=_str_or_none(address.get("state")),
        ),
        metadata={str(k): str(v) for k, v in metadata.items() if v is not None},
        client_reference_id=_str_or_none(obj.get("client_reference_id")),
        consent_promotions=_str_or_none(consent.get("promotions")),
        payment_method_types=tuple(str(t) for t in obj.get("payment_method_types") or ()),
        custom_text_fields=_custom_text_fields(obj.get("custom_fields")),
    )


def _custom_text_fields(fields: Any) -> tuple[tuple[str, str], ...]:
    """Checkout's `custom_fields` of type text that the reader filled in."""
    out: list[tuple[str, str]] = []
    for custom in fields if isinstance(fields, list) else ():
        if not isinstance(custom, Mapping) or custom.get("type") != "text":
            continue
        key = custom.get("key")
        value = (custom.get("text") or {}).get("value")
        if isinstance(key, str) and isinstance(value, str) and value.strip():
            out.append((key, value.strip()))
    return tuple(out)


def _charge_fact(meta: EventMeta, charge: Mapping[str, Any], *, succeeded: bool) -> Fact:
    payment_intent_id = _id_of(charge.get("payment_intent"))
    if not payment_intent_id:
        return Skip(meta, "charge_without_payment_intent")
    charge_id = charge.get("id")
    if not isinstance(charge_id, str):
        raise ClassifyError("invalid_charge", "charge has no id")
    return ChargeFact(
        meta=meta,
        payment_intent_id=payment_intent_id,
        charge_id=charge_id,
        succeeded=succeeded,
        has_charge_object=True,
        card_country=_card_country(charge),
        payment_method=_payment_method_type(charge),
        charge_created=_int_or_none(charge.get("created")),
    )


def _payment_intent_fact(meta: EventMeta, intent: Mapping[str, Any], *, succeeded: bool) -> Fact:
    payment_intent_id = intent.get("id")
    if not isinstance(payment_intent_id, str):
        raise ClassifyError("invalid_payment_intent", "payment intent has no id")
    # Before API version 2022-11-15 the charges came embedded as a list;
    # since then only the id of the latest one (expandable) is given.
    charge: Mapping[str, Any] | None = None
    latest = intent.get("latest_charge")
    if isinstance(latest, Mapping):
        charge = latest
    embedded = (intent.get("charges") or {}).get("data") or []
    error = intent.get("last_payment_error") or {}
    if charge is None and embedded:
        # The failed attempt is the one the error names; otherwise Stripe lists
        # newest first, so take the first attempt that matches the event.
        wanted = "succeeded" if succeeded else "failed"
        failing = None if succeeded else _id_of(error.get("charge"))
        charge = next(
            (c for c in embedded if failing and c.get("id") == failing),
            next((c for c in embedded if c.get("status") == wanted), embedded[0]),
        )
    if charge is None and not succeeded:
        charge_id = _id_of(error.get("charge")) or _id_of(latest)
    else:
        charge_id = _id_of(charge.get("id") if charge else latest)
    return ChargeFact(
        meta=meta,
        payment_intent_id=payment_intent_id,
        charge_id=charge_id,
        succeeded=succeeded,
        has_charge_object=charge is not None,
        card_country=_card_country(charge) if charge else None,
        payment_method=_payment_method_type(charge) if charge else None,
        charge_created=_int_or_none(charge.get("created")) if charge else None,
    )


def _refund(
    meta: EventMeta, charge: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> PaymentAdjustment:
    charge_id = charge.get("id")
    refunded = charge.get("amount_refunded")
    currency = charge.get("currency")
    if (
        not isinstance(charge_id, str)
        or not isinstance(refunded, int)
        or not isinstance(currency, str)
    ):
        raise ClassifyError(
            "invalid_refund", "charge.refunded lacks id, amount_refunded or currency"
        )
    before = (previous or {}).get("amount_refunded")
    # Without previous_attributes this is the charge's first refund.
    delta = refunded - before if isinstance(before, int) else refunded
    try:
        amount = to_major_units(delta, currency)
        total = to_major_units(refunded, currency)
    except MoneyError as error:
        raise ClassifyError("invalid_amount", str(error)) from error
    return PaymentAdjustment(
        adjustment_id=meta.event_id,
        payment_id=charge_id,
        kind="refund",
        event_type=meta.event_type,
        amount=amount,
        amount_refunded_total=total,
        fully_refunded=_fully_refunded(charge, refunded),
        currency=currency.upper(),
        dispute_id=None,
        dispute_status=None,
        livemode=meta.livemode,
        account=meta.account,
        created=epoch_to_datetime(meta.created),
    )


def _refund_object(meta: EventMeta, refund: Mapping[str, Any]) -> Fact:
    """A refund object's event: one refund of `amount`, keyed by the refund's id.

    The adjustment's id is the refund id, not the event id, so that
    refund.created and refund.updated of one refund are one row (and the
    rule's sum counts each refund once). `amount_refunded_total` and
    `fully_refunded` stay None: a refund object knows neither the charge's
    cumulative total nor whether the charge is now fully refunded (only
    charge.refunded decides that; see `transforms.sinks.store_queue`).
    """
    refund_id = refund.get("id")
    charge_id = _id_of(refund.get("charge"))
    amount = refund.get("amount")
    currency = refund.get("currency")
    if (
        not isinstance(refund_id, str)
        or not charge_id
        or not isinstance(amount, int)
        or not isinstance(currency, str)
    ):
        raise ClassifyError("invalid_refund", "refund lacks id, charge, amount or currency")
    if refund.get("status") != REFUND_SUCCEEDED:
        return Skip(meta, f"refund_{refund.get('status') or 'without_status'}")
    try:
        major = to_major_units(amount, currency)
    except MoneyError as error:
        raise ClassifyError("invalid_amount", str(error)) from error
    return PaymentAdjustment(
        adjustment_id=refund_id,
        payment_id=charge_id,
        kind="refund",
        event_type=meta.event_type,
        amount=major,
        amount_refunded_total=None,
        fully_refunded=None,
        currency=currency.upper(),
        dispute_id=None,
        dispute_status=None,
        livemode=meta.livemode,
        account=meta.account,
        created=epoch_to_datetime(_int_or(refund.get("created"), meta.created)),
    )


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) else default


def _fully_refunded(charge: Mapping[str, Any], refunded: int) -> bool:
    """Whether the whole charge is refunded: Stripe's `refunded` flag, else the amounts."""
    flag = charge.get("refunded")
    if isinstance(flag, bool):
        return flag
    amount = charge.get("amount")
    return isinstance(amount, int) and refunded >= amount


def _dispute(meta: EventMeta, dispute: Mapping[str, Any]) -> PaymentAdjustment:
    charge_id = _id_of(dispute.get("charge"))
    amount = dispute.get("amount")
    currency = dispute.get("currency")
    if not charge_id or not isinstance(amount, int) or not isinstance(currency, str):
        raise ClassifyError("invalid_dispute", "dispute lacks charge, amount or currency")
    try:
        major = to_major_units(amount, currency)
    except MoneyError as error:
        raise ClassifyError("invalid_amount", str(error)) from error
    return PaymentAdjustment(
        adjustment_id=meta.event_id,
        payment_id=charge_id,
        kind="dispute",
        event_type=meta.event_type,
        amount=major,
        amount_refunded_total=None,
        fully_refunded=None,
        currency=currency.upper(),
        dispute_id=_str_or_none(dispute.get("id")),
        dispute_status=_str_or_none(dispute.get("status")),
        livemode=meta.livemode,
        account=meta.account,
        created=epoch_to_datetime(meta.created),
    )


def epoch_to_datetime(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _id_of(value: Any) -> str | None:
    """An id from a field that is either the id or the expanded object."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _card_country(charge: Mapping[str, Any]) -> str | None:
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    return _upper_or_none(card.get("country"))


def _payment_method_type(charge: Mapping[str, Any]) -> str | None:
    return _str_or_none((charge.get("payment_method_details") or {}).get("type"))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _upper_or_none(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and value else None
