"""The Stripe payload fields the pipeline reads, as declarative schemas.

Every field that decoding (`transforms.sources.decode`) or classifying
(`transforms.domain.facts`) reads is declared here once, with its type and
range, as a `msgspec.Struct`; `check(value, schema, path)` converts a decoded
JSON object into its Struct in one C call, or raises `PayloadError` naming the
first field that breaks a rule (`data.object.currency: ...`). Fields the
pipeline does not read are ignored, so the three API versions in
`/work/shared/stripe-fixtures/` (2022-07-18 with `charges.data`, 2024-06-20 with
`latest_charge`, 2025-03-31.basil) all pass, and so does any field Stripe adds.

The rules, beyond "the JSON type Stripe documents":

- amounts are integers of minor units, 0 to `MAX_AMOUNT` (Stripe's limit for
  one charge: eight digits); `true`, floats and strings are not amounts;
- currencies are the lower-case ISO 4217 codes Stripe accepts (`CURRENCIES`);
- times (epoch seconds) lie in [2010-01-01, 2100-01-01) UTC;
- ids are non-empty strings with the prefix of their object (`evt_`, `cs_`,
  `pi_`, `ch_`/`py_`, `re_`/`pyr_`, `dp_`/`du_`), or the expanded object;
- `livemode` is a JSON boolean; metadata is an object of strings (or null);
- a charge's `amount_refunded` never exceeds its `amount`.

Messages name the field and the rule, and quote a value only for enums
(a currency code), never personal data.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

#: Stripe's maximum for one payment, in minor units (eight digits).
MAX_AMOUNT = 99_999_999
#: 2010-01-01T00:00:00Z and 2100-01-01T00:00:00Z: no Stripe event lies outside.
EARLIEST = 1_262_304_000
LATEST = 4_102_444_800

Amount = Annotated[int, Meta(ge=0, le=MAX_AMOUNT)]
Epoch = Annotated[int, Meta(ge=EARLIEST, lt=LATEST)]
NonEmpty = Annotated[str, Meta(min_length=1)]
#: ISO 3166-1 alpha-2, as Stripe sends it (upper case; lower case is tolerated).
Country = Annotated[str, Meta(pattern="^[A-Za-z]{2}$")]


EventId = Annotated[str, Meta(pattern="^evt_[A-Za-z0-9_]+$")]
SessionId = Annotated[str, Meta(pattern="^cs_[A-Za-z0-9_]+$")]
PaymentIntentId = Annotated[str, Meta(pattern="^pi_[A-Za-z0-9_]+$")]
#: Card charges are `ch_`; bank debits and other non-card methods are `py_`.
ChargeId = Annotated[str, Meta(pattern="^(?:ch|py)_[A-Za-z0-9_]+$")]
RefundId = Annotated[str, Meta(pattern="^(?:re|pyr)_[A-Za-z0-9_]+$")]
DisputeId = Annotated[str, Meta(pattern="^(?:dp|du)_[A-Za-z0-9_]+$")]

#: Stripe's presentment currencies (ISO 4217, lower case as on the wire),
#: with HRK kept for archives from before Croatia adopted the euro.
CURRENCIES = frozenset(
    """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd
    bwp byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp
    gbp gel gip gmd gnf gtq gyd hkd hnl hrk htg huf idr ils inr isk jmd jod jpy kes kgs
    khr kmf krw kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mru mur mvr
    mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd
    rub rwf sar sbd scr sek sgd shp sle sll sos srd std stn svc szl thb tjs tnd top try
    ttd twd tzs uah ugx usd uyu uzs ves vnd vuv wst xaf xcd xcg xof xpf yer zar zmw
    """.split()  # noqa: SIM905 (a table to read, not a list to count commas in)
)
if TYPE_CHECKING:
    Currency = str
else:
    # msgspec checks a Literal in C; mypy cannot read one built at run time.
    Currency = Literal[tuple(sorted(CURRENCIES))]


class PayloadError(ValueError):
    """A payload field that breaks its schema; `field` is its dotted path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Schema(Struct):
    """Base of every schema: unknown fields are ignored, not kept."""


class EventHead(_Schema):
    """A snapshot event's own fields (`data` is checked by `decode` and `classify`)."""

    id: EventId
    type: NonEmpty
    created: Epoch
    livemode: bool
    api_version: str | None = None


class ThinEventHead(_Schema):
    """A v2 thin event's fields; `created` is ISO 8601, its range checked after parsing."""

    id: EventId
    type: NonEmpty
    created: str
    livemode: bool
    api_version: str | None = None


class Address(_Schema):
    country: Country | None = None
    postal_code: str | None = None
    state: str | None = None


class Customer(_Schema):
    email: str | None = None
    name: str | None = None
    address: Address | None = None


class Consent(_Schema):
    promotions: str | None = None


class TextValue(_Schema):
    value: str | None = None


class CustomField(_Schema):
    key: str | None = None
    type: str | None = None
    text: TextValue | None = None


class PaymentIntentRef(_Schema):
    id: PaymentIntentId


class ChargeRef(_Schema):
    id: ChargeId


class Session(_Schema):
    """`checkout.session.*`'s `data.object`."""

    id: SessionId
    mode: str | None = None
    payment_status: str | None = None
    payment_intent: PaymentIntentId | PaymentIntentRef | None = None
    amount_total: Amount | None = None
    currency: Currency | None = None
    customer_details: Customer | None = None
    metadata: dict[str, str | None] | None = None
    client_reference_id: str | None = None
    consent: Consent | None = None
    payment_method_types: list[str] | None = None
    custom_fields: list[CustomField] | None = None


class Card(_Schema):
    country: Country | None = None


class PaymentMethodDetails(_Schema):
    type: str | None = None
    card: Card | None = None


class Charge(_Schema):
    """`charge.*`'s `data.object`, and a PaymentIntent's embedded charges."""

    id: ChargeId
    payment_intent: PaymentIntentId | PaymentIntentRef | None = None
    status: str | None = None
    created: Epoch | None = None
    amount: Amount | None = None
    amount_refunded: Amount | None = None
    currency: Currency | None = None
    refunded: bool | None = None
    payment_method_details: PaymentMethodDetails | None = None


class ChargeList(_Schema):
    data: list[Charge] = []


class PaymentError(_Schema):
    charge: ChargeId | ChargeRef | None = None


class PaymentIntent(_Schema):
    """`payment_intent.*`'s `data.object`: `charges` before 2022-11-15, `latest_charge` since."""

    id: PaymentIntentId
    latest_charge: ChargeId | Charge | None = None
    charges: ChargeList | None = None
    last_payment_error: PaymentError | None = None


class PreviousCharge(_Schema):
    """charge.refunded's `data.previous_attributes`: the total refunded before."""

    amount_refunded: Amount | None = None


class Refund(_Schema):
    """`refund.*`'s `data.object`."""

    id: RefundId
    charge: ChargeId | ChargeRef | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    status: str | None = None
    created: Epoch | None = None


class Dispute(_Schema):
    """`charge.dispute.*`'s `data.object`."""

    id: DisputeId | None = None
    charge: ChargeId | ChargeRef | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    status: str | None = None


S = TypeVar("S", bound=_Schema)


def check(value: Any, schema: type[S], path: str) -> S:
    """`value` (decoded JSON) as `schema`, or `PayloadError` naming the field under `path`."""
    try:
        return msgspec.convert(value, schema)
    except msgspec.ValidationError as error:
        raise payload_error(str(error), path, value) from None


def payload_error(message: str, path: str, value: Any = None) -> PayloadError:
    """msgspec's "<rule> - at `$.a[0].b`" as a `PayloadError` on `<path>.a[0].b`.

    msgspec names a bad dict value `[...]`; the only dicts here are metadata
    (strings, or null), so the key is found again in `value`: the first whose
    value is neither.
    """
    rule, _, where = message.rpartition(" - at `$")
    if not rule:
        rule, where = message, "`"
    where = where[:-1]
    if where.endswith("[...]"):
        where = where[: -len("[...]")] + _bad_key(value, where[: -len("[...]")])
    field = path + where
    if rule.startswith("Object missing required field `"):
        field += "." + rule.split("`")[1]
        rule = "missing"
    return PayloadError(field.lstrip("."), rule[:1].lower() + rule[1:])


_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _bad_key(value: Any, where: str) -> str:
    """`.key` of the first non-string value of the dict at `where` in `value`, else `[...]`."""
    for name, index in _SEGMENT.findall(where):
        try:
            value = value[name] if name else value[int(index)]
        except (KeyError, IndexError, TypeError):
            return "[...]"
    if isinstance(value, dict):
        for key, item in value.items():
            if item is not None and not isinstance(item, str):
                return f".{key}"
    return "[...]"
