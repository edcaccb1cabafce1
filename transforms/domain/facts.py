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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas import stripe as payload
from schemas.records import PaymentAdjustment
from transforms.domain.events import StripeEvent
from transforms.domain.money import to_major_units

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


#: Dead-letter reasons of `classify`: the object of the event's type breaks its
#: schema (`schemas.stripe`) or a rule; the error names the field.
INVALID_SESSION = "invalid_session"
INVALID_CHARGE = "invalid_charge"
INVALID_PAYMENT_INTENT = "invalid_payment_intent"
INVALID_REFUND = "invalid_refund"
INVALID_DISPUTE = "invalid_dispute"
CLASSIFY_REASONS = (
    INVALID_SESSION,
    INVALID_CHARGE,
    INVALID_PAYMENT_INTENT,
    INVALID_REFUND,
    INVALID_DISPUTE,
)


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


def _checked(
    value: Any, schema: type[payload.S], reason: str, path: str = "data.object"
) -> payload.S:
    """`value` as its payload schema, or the ClassifyError (`reason`) naming the field."""
    try:
        return payload.check(value, schema, path)
    except payload.PayloadError as error:
        raise ClassifyError(reason, str(error)) from None


def _missing(reason: str, field: str) -> ClassifyError:
    return ClassifyError(reason, f"data.object.{field}: missing")


def _session_fact(meta: EventMeta, obj: Mapping[str, Any]) -> Fact:
    session = _checked(obj, payload.Session, INVALID_SESSION)
    if session.mode != "payment":
        return Skip(meta, f"session_mode_{session.mode or 'unknown'}")
    if session.payment_status == "no_payment_required":
        return Skip(meta, "no_payment_required")
    if meta.event_type == SESSION_ASYNC_SUCCEEDED:
        outcome = ASYNC_SUCCEEDED
    elif meta.event_type == SESSION_ASYNC_FAILED:
        outcome = ASYNC_FAILED
    else:
        outcome = PAID if session.payment_status == "paid" else PENDING
    payment_intent_id = _ref_id(session.payment_intent)
    if payment_intent_id is None:
        raise _missing(INVALID_SESSION, "payment_intent")
    if session.amount_total is None:
        raise _missing(INVALID_SESSION, "amount_total")
    if session.currency is None:
        raise _missing(INVALID_SESSION, "currency")
    details = session.customer_details or payload.Customer()
    address = details.address or payload.Address()
    consent = session.consent or payload.Consent()
    return SessionFact(
        meta=meta,
        payment_intent_id=payment_intent_id,
        session_id=session.id,
        outcome=outcome,
        amount_minor=session.amount_total,
        currency=session.currency.upper(),
        customer=CustomerDetails(
            email=_str_or_none(details.email),
            name=_str_or_none(details.name),
            country=_upper_or_none(address.country),
            postal_code=_str_or_none(address.postal_code),
            state=_str_or_none(address.state),
        ),
        metadata={k: v for k, v in (session.metadata or {}).items() if v is not None},
        client_reference_id=_str_or_none(session.client_reference_id),
        consent_promotions=_str_or_none(consent.promotions),
        payment_method_types=tuple(session.payment_method_types or ()),
        custom_text_fields=_custom_text_fields(session.custom_fields or ()),
    )


def _custom_text_fields(fields: Iterable[payload.CustomField]) -> tuple[tuple[str, str], ...]:
    """Checkout's `custom_fields` of type text that the reader filled in."""
    out: list[tuple[str, str]] = []
    for custom in fields:
        if custom.type != "text" or custom.key is None or custom.text is None:
            continue
        value = custom.text.value
        if value is not None and value.strip():
            out.append((custom.key, value.strip()))
    return tuple(out)


def _charge(obj: Mapping[str, Any], reason: str) -> payload.Charge:
    """The charge object, whose refunds never exceed its amount."""
    charge = _checked(obj, payload.Charge, reason)
    _check_refunded(charge, reason, "data.object")
    return charge


def _check_refunded(charge: payload.Charge, reason: str, path: str) -> None:
    refunded, amount = charge.amount_refunded, charge.amount
    if refunded is not None and amount is not None and refunded > amount:
        raise ClassifyError(reason, f"{path}.amount_refunded: exceeds the charge's amount")


def _charge_fact(meta: EventMeta, obj: Mapping[str, Any], *, succeeded: bool) -> Fact:
    charge = _charge(obj, INVALID_CHARGE)
    payment_intent_id = _ref_id(charge.payment_intent)
    if not payment_intent_id:
        return Skip(meta, "charge_without_payment_intent")
    return ChargeFact(
        meta=meta,
        payment_intent_id=payment_intent_id,
        charge_id=charge.id,
        succeeded=succeeded,
        has_charge_object=True,
        card_country=_card_country(charge),
        payment_method=_payment_method_type(charge),
        charge_created=charge.created,
    )


def _payment_intent_fact(meta: EventMeta, obj: Mapping[str, Any], *, succeeded: bool) -> Fact:
    intent = _checked(obj, payload.PaymentIntent, INVALID_PAYMENT_INTENT)
    # Before API version 2022-11-15 the charges came embedded as a list;
    # since then only the id of the latest one (expandable) is given.
    latest = intent.latest_charge
    charge = latest if isinstance(latest, payload.Charge) else None
    embedded = intent.charges.data if intent.charges is not None else []
    for index, each in enumerate(embedded if charge is None else [charge]):
        where = "data.object." + (f"charges.data[{index}]" if charge is None else "latest_charge")
        _check_refunded(each, INVALID_PAYMENT_INTENT, where)
    error = intent.last_payment_error
    error_charge = _ref_id(error.charge) if error is not None else None
    if charge is None and embedded:
        # The failed attempt is the one the error names; otherwise Stripe lists
        # newest first, so take the first attempt that matches the event.
        wanted = "succeeded" if succeeded else "failed"
        failing = None if succeeded else error_charge
        charge = next(
            (c for c in embedded if failing and c.id == failing),
            next((c for c in embedded if c.status == wanted), embedded[0]),
        )
    if charge is not None:
        charge_id: str | None = charge.id
    elif not succeeded:
        charge_id = error_charge or _ref_id(latest)
    else:
        charge_id = _ref_id(latest)
    return ChargeFact(
        meta=meta,
        payment_intent_id=intent.id,
        charge_id=charge_id,
        succeeded=succeeded,
        has_charge_object=charge is not None,
        card_country=_card_country(charge) if charge else None,
        payment_method=_payment_method_type(charge) if charge else None,
        charge_created=charge.created if charge else None,
    )


def classify_payment_intent(meta: EventMeta, obj: Mapping[str, Any], *, succeeded: bool) -> Fact:
    """A PaymentIntent object's charge fact, as its outcome event gives it.

    Also read for a PaymentIntent retrieved from Stripe
    (`transforms.domain.completion`), so both give the same fact.
    """
    return _payment_intent_fact(meta, obj, succeeded=succeeded)


def _refund(
    meta: EventMeta, obj: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> PaymentAdjustment:
    charge = _charge(obj, INVALID_REFUND)
    refunded, currency = charge.amount_refunded, charge.currency
    if refunded is None:
        raise _missing(INVALID_REFUND, "amount_refunded")
    if currency is None:
        raise _missing(INVALID_REFUND, "currency")
    before = _checked(
        previous or {}, payload.PreviousCharge, INVALID_REFUND, "data.previous_attributes"
    ).amount_refunded
    if before is not None and before > refunded:
        raise ClassifyError(
            INVALID_REFUND,
            "data.previous_attributes.amount_refunded: exceeds data.object.amount_refunded",
        )
    # Without previous_attributes this is the charge's first refund.
    delta = refunded - before if before is not None else refunded
    return PaymentAdjustment(
        adjustment_id=meta.event_id,
        payment_id=charge.id,
        kind="refund",
        event_type=meta.event_type,
        amount=to_major_units(delta, currency),
        amount_refunded_total=to_major_units(refunded, currency),
        fully_refunded=_fully_refunded(charge, refunded),
        currency=currency.upper(),
        dispute_id=None,
        dispute_status=None,
        livemode=meta.livemode,
        account=meta.account,
        created=epoch_to_datetime(meta.created),
    )


def _refund_object(meta: EventMeta, obj: Mapping[str, Any]) -> Fact:
    """A refund object's event: one refund of `amount`, keyed by the refund's id.

    The adjustment's id is the refund id, not the event id, so that
    refund.created and refund.updated of one refund are one row (and the
    rule's sum counts each refund once). `amount_refunded_total` and
    `fully_refunded` stay None: a refund object knows neither the charge's
    cumulative total nor whether the charge is now fully refunded (only
    charge.refunded decides that; see `transforms.sinks.store_queue`).
    """
    refund = _checked(obj, payload.Refund, INVALID_REFUND)
    charge_id, amount, currency = _charged(refund, INVALID_REFUND)
    if refund.status != REFUND_SUCCEEDED:
        return Skip(meta, f"refund_{refund.status or 'without_status'}")
    return PaymentAdjustment(
        adjustment_id=refund.id,
        payment_id=charge_id,
        kind="refund",
        event_type=meta.event_type,
        amount=to_major_units(amount, currency),
        amount_refunded_total=None,
        fully_refunded=None,
        currency=currency.upper(),
        dispute_id=None,
        dispute_status=None,
        livemode=meta.livemode,
        account=meta.account,
        created=epoch_to_datetime(refund.created or meta.created),
    )


def _fully_refunded(charge: payload.Charge, refunded: int) -> bool:
    """Whether the whole charge is refunded: Stripe's `refunded` flag, else the amounts."""
    if charge.refunded is not None:
        return charge.refunded
    return charge.amount is not None and refunded >= charge.amount


def _dispute(meta: EventMeta, obj: Mapping[str, Any]) -> PaymentAdjustment:
    dispute = _checked(obj, payload.Dispute, INVALID_DISPUTE)
    charge_id, amount, currency = _charged(dispute, INVALID_DISPUTE)
    return PaymentAdjustment(
        adjustment_id=meta.event_id,
        payment_id=charge_id,
        kind="dispute",
        event_type=meta.event_type,
        amount=to_major_units(amount, currency),
        amount_refunded_total=None,
        fully_refunded=None,
        currency=currency.upper(),
        dispute_id=dispute.id,
        dispute_status=_str_or_none(dispute.status),
        livemode=meta.livemode,
        account=meta.account,
        created=epoch_to_datetime(meta.created),
    )


def epoch_to_datetime(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _charged(adjustment: payload.Refund | payload.Dispute, reason: str) -> tuple[str, int, str]:
    """The charge id, amount and currency a refund or dispute must name (else `reason`)."""
    charge_id = _ref_id(adjustment.charge)
    if charge_id is None:
        raise _missing(reason, "charge")
    if adjustment.amount is None:
        raise _missing(reason, "amount")
    if adjustment.currency is None:
        raise _missing(reason, "currency")
    return charge_id, adjustment.amount, adjustment.currency


def _ref_id(
    value: str | payload.PaymentIntentRef | payload.ChargeRef | payload.Charge | None,
) -> str | None:
    """An id from a field that is either the id or the expanded object (schema-checked)."""
    if value is None or isinstance(value, str):
        return value
    return value.id


def _card_country(charge: payload.Charge) -> str | None:
    details = charge.payment_method_details
    card = details.card if details is not None else None
    return _upper_or_none(card.country) if card is not None else None


def _payment_method_type(charge: payload.Charge) -> str | None:
    details = charge.payment_method_details
    return _str_or_none(details.type) if details is not None else None


def _str_or_none(value: str | None) -> str | None:
    return value or None


def _upper_or_none(value: str | None) -> str | None:
    return value.upper() if value else None
