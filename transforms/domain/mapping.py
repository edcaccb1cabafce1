"""From a settled `Payment` to the records today's payment service writes.

`build_records` is pure: one payment in, at most one record of each kind out,
plus the names of the outputs it skipped and of the warnings it raised (the
DoFn turns both into counters). Formats follow DOMAIN.md section 2.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from schemas.records import (
    AbTest,
    Acquisition,
    AcquisitionEvent,
    Contribution,
    ContributionStoreRecord,
    QueryParameter,
    SoftOptIn,
    SupporterProductData,
    ThankYouEmail,
)
from transforms.domain.facts import epoch_to_datetime
from transforms.domain.money import to_major_units
from transforms.domain.payment import PAID_STATUS, Payment

#: contribution_id = uuid5(CONTRIBUTION_ID_NAMESPACE, charge id). Never change
#: it: every store keys on the ids derived from it.
CONTRIBUTION_ID_NAMESPACE = uuid.UUID("6f1f6c2e-3b0a-5b8e-9d7c-2a4e8f0c1b35")

DEFAULT_COUNTRY = "GB"
DEFAULT_PLATFORM = "SUPPORT"
#: What the acquisitions publisher's provider list accepts today; the precise
#: value, STRIPE_HOSTED_CHECKOUT, needs that list extended (see the README).
DEFAULT_PAYMENT_PROVIDER = "STRIPE"
PRECISE_PAYMENT_PROVIDER = "STRIPE_HOSTED_CHECKOUT"
#: The analytics table's platform names for the apps' own spellings.
PLATFORM_NAMES = {"iosnativeapp": "IOS_NATIVE_APP", "androidnativeapp": "ANDROID_NATIVE_APP"}
STORE_PAYMENT_PROVIDER = "Stripe"
THANK_YOU_DATA_EXTENSION = "contribution-thank-you"
EDITIONS = {"GBP": "uk", "USD": "us", "AUD": "au"}
CARD_LABEL = "credit / debit card"
DIRECT_DEBIT_LABEL = "direct debit"
#: Payment method types paid from a card or a wallet holding one.
CARD_TYPES = frozenset(
    {
        "card",
        "card_present",
        "kr_card",
        "link",
        "apple_pay",
        "google_pay",
        "samsung_pay",
        "amazon_pay",
        "revolut_pay",
        "cashapp",
        "mobilepay",
    }
)
#: Bank debits: Bacs (UK), SEPA, BECS (AU and NZ), ACH (US) and pre-authorised
#: debits (Canada).
DIRECT_DEBIT_TYPES = frozenset(
    {
        "bacs_debit",
        "sepa_debit",
        "au_becs_debit",
        "nz_bank_account",
        "us_bank_account",
        "acss_debit",
    }
)
#: Stripe's own names for the other payment method types.
PAYMENT_METHOD_LABELS = {
    "affirm": "Affirm",
    "afterpay_clearpay": "Afterpay / Clearpay",
    "alipay": "Alipay",
    "alma": "Alma",
    "bancontact": "Bancontact",
    "blik": "BLIK",
    "boleto": "Boleto",
    "customer_balance": "bank transfer",
    "eps": "EPS",
    "fpx": "FPX",
    "giropay": "giropay",
    "grabpay": "GrabPay",
    "ideal": "iDEAL",
    "kakao_pay": "Kakao Pay",
    "klarna": "Klarna",
    "konbini": "Konbini",
    "multibanco": "Multibanco",
    "naver_pay": "Naver Pay",
    "oxxo": "OXXO",
    "p24": "Przelewy24",
    "pay_by_bank": "Pay by Bank",
    "payco": "PAYCO",
    "paynow": "PayNow",
    "paypal": "PayPal",
    "pix": "Pix",
    "promptpay": "PromptPay",
    "satispay": "Satispay",
    "sofort": "Sofort",
    "swish": "Swish",
    "twint": "TWINT",
    "wechat_pay": "WeChat Pay",
    "zip": "Zip",
}


def payment_method_label(method: str | None) -> str:
    """The thank-you email's `payment method`: a reader's words, never a raw type.

    A type Stripe adds later reads as its words (`new_wallet` -> "new wallet").
    No type at all is a card: Checkout's default.
    """
    if method is None or method in CARD_TYPES:
        return CARD_LABEL
    if method in DIRECT_DEBIT_TYPES:
        return DIRECT_DEBIT_LABEL
    return PAYMENT_METHOD_LABELS.get(method, method.replace("_", " "))


@dataclass(frozen=True)
class PaymentRecords:
    """Everything one payment produces; None where that output does not apply."""

    contribution: Contribution
    acquisition: Acquisition | None
    acquisition_event: AcquisitionEvent | None
    contribution_store: ContributionStoreRecord | None
    supporter: SupporterProductData | None
    thank_you_email: ThankYouEmail | None
    soft_opt_in: SoftOptIn | None
    skipped: tuple[str, ...]
    warnings: tuple[str, ...]


def contribution_id(charge_id: str) -> str:
    return str(uuid.uuid5(CONTRIBUTION_ID_NAMESPACE, charge_id))


def identity_id(payment: Payment) -> str | None:
    """The reader's identity: metadata first, else the session's client_reference_id,
    else the one the Identity API gave the payment (`Payment.identity_id`)."""
    session = payment.session
    return session.metadata.get("identityId") or session.client_reference_id or payment.identity_id


def country(payment: Payment) -> tuple[str, str]:
    """(country code, where it came from): the card, else the address, else GB."""
    if payment.card_country:
        return payment.card_country, "card"
    if payment.session.customer.country:
        return payment.session.customer.country, "address"
    return DEFAULT_COUNTRY, "default"


def campaign_codes(value: str | None) -> tuple[str, ...]:
    """The session's campaign code as sent, as zero or one element (the analytics rule)."""
    return (value,) if value else ()


def analytics_platform(value: str | None) -> str:
    """The platform as `fact_acquisition_event` names it: SUPPORT when absent."""
    if not value:
        return DEFAULT_PLATFORM
    return PLATFORM_NAMES.get(value.lower(), value)


def clean_subdivision(value: str | None) -> str | None:
    """The state as the contributions store takes it: letters, digits and spaces only
    (line breaks dropped), trimmed; None when nothing is left."""
    kept = "".join(
        c for c in value or "" if c not in "\r\n" and (c.isalpha() or c.isdecimal() or c.isspace())
    )
    return kept.strip() or None


def split_list(value: str | None) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c')."""
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def parse_ab_tests(value: str | None) -> tuple[tuple[AbTest, ...], bool]:
    """The `abTests` metadata JSON as AbTests, and whether it was unreadable."""
    if not value:
        return (), False
    try:
        parsed = json.loads(value)
        return tuple(AbTest(name=str(t["name"]), variant=str(t["variant"])) for t in parsed), False
    except (ValueError, TypeError, KeyError):
        return (), True


def parse_query_parameters(value: str | None) -> tuple[tuple[QueryParameter, ...], bool]:
    """The `queryParameters` metadata JSON object as key/value pairs, and whether it was bad."""
    if not value:
        return (), False
    try:
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            return (), True
        return tuple(QueryParameter(key=str(k), value=_text(v)) for k, v in parsed.items()), False
    except ValueError:
        return (), True


def consent_override(payment: Payment) -> bool | None:
    """The reader's explicit choice at checkout, which overrides the default."""
    explicit = (payment.session.metadata.get("similarProductsConsent") or "").strip().lower()
    if explicit in ("true", "false"):
        return explicit == "true"
    promotions = payment.session.consent_promotions
    if promotions in ("opt_in", "opt_out"):
        return promotions == "opt_in"
    return None


def term_end(start: date) -> date:
    """start + 8 years + 1 week; 29 February becomes 28 February."""
    try:
        years_later = start.replace(year=start.year + 8)
    except ValueError:
        years_later = start.replace(year=start.year + 8, day=28)
    return years_later + timedelta(weeks=1)


def first_name(payment: Payment, custom_field: str | None) -> str | None:
    """The given name the page collected in the custom field `custom_field`, else None.

    Stripe has no given-name field (`customer_details.name` is the full name,
    family name first in many languages), and today's payment API sends none.
    """
    if custom_field is None:
        return None
    return dict(payment.session.custom_text_fields).get(custom_field)


def payment_date_text(day: date) -> str:
    """'5 March 2025', as the email template expects."""
    return f"{day.day} {day:%B %Y}"


def build_records(
    payment: Payment,
    *,
    payment_provider: str = DEFAULT_PAYMENT_PROVIDER,
    first_name_field: str | None = None,
) -> PaymentRecords:
    """The records of one settled payment (see the module docstring).

    `payment_provider` is the acquisition's `paymentProvider` (bus and table).
    `first_name_field` is the key of the Checkout custom text field that
    collects the reader's given name, if the page has one (see `first_name`).
    """
    session = payment.session
    created = epoch_to_datetime(payment.settled_at)
    # The store and the supporter item date a payment by its charge, as today.
    charged = epoch_to_datetime(payment.charge_created or payment.settled_at)
    amount = to_major_units(session.amount_minor, session.currency)
    identity = identity_id(payment)
    country_code, country_source = country(payment)
    cid = contribution_id(payment.charge_id)
    contribution = Contribution(
        payment_id=payment.charge_id,
        payment_intent_id=session.payment_intent_id,
        checkout_session_id=session.session_id,
        contribution_id=cid,
        status=payment.status,
        amount=amount,
        amount_refunded=to_major_units(0, session.currency),
        currency=session.currency,
        country_code=country_code,
        country_source=country_source,
        payment_method=payment.payment_method,
        identity_id=identity,
        disputed=False,
        livemode=session.meta.livemode,
        account=payment.account,
        created=created,
    )
    if payment.status != PAID_STATUS:
        return PaymentRecords(contribution, None, None, None, None, None, None, (), ())

    warnings: list[str] = []
    skipped: list[str] = []
    ab_tests, bad_ab_tests = parse_ab_tests(session.metadata.get("abTests"))
    if bad_ab_tests:
        warnings.append("ab_tests_unreadable")
    query_parameters, bad_query = parse_query_parameters(session.metadata.get("queryParameters"))
    if bad_query:
        warnings.append("query_parameters_unreadable")
    meta = session.metadata
    acquisition = Acquisition(
        event_timestamp=created,
        product="CONTRIBUTION",
        amount=amount,
        country_code=country_code,
        currency=session.currency,
        component_id=meta.get("componentId"),
        component_type=meta.get("componentType"),
        campaign_codes=campaign_codes(meta.get("campaignCode")),
        source=meta.get("source"),
        referrer_url=meta.get("referrerUrl"),
        ab_tests=ab_tests,
        payment_frequency="ONE_OFF",
        payment_provider=payment_provider,
        print_options=None,
        browser_id=meta.get("browserId"),
        identity_id=identity,
        page_view_id=meta.get("pageviewId"),
        referrer_page_view_id=meta.get("referrerPageviewId"),
        labels=split_list(meta.get("labels")),
        promo_code=None,
        reused_existing_payment_method=False,
        reader_type="Direct",
        acquisition_type="Purchase",
        zuora_subscription_number=None,
        contribution_id=cid,
        payment_id=payment.charge_id,
        query_parameters=query_parameters,
        platform=analytics_platform(meta.get("platform")),
        livemode=session.meta.livemode,
        account=payment.account,
    )
    store = ContributionStoreRecord(
        payment_provider=STORE_PAYMENT_PROVIDER,
        payment_status=payment.status,
        payment_id=payment.charge_id,
        identity_id=identity,
        email=session.customer.email,
        created=charged,
        currency=session.currency,
        amount=amount,
        country_code=country_code,
        country_subdivision_code=clean_subdivision(session.customer.state),
        postal_code=session.customer.postal_code,
        contribution_id=cid,
        livemode=session.meta.livemode,
        account=payment.account,
    )
    supporter = email = opt_in = None
    if identity is None:
        skipped += ["supporter_item_no_identity", "email_no_identity", "soft_opt_in_no_identity"]
    else:
        supporter = _supporter_item(payment, identity, charged, amount)
        opt_in = SoftOptIn(
            payment_id=payment.charge_id,
            message=_json(
                {
                    "subscriptionId": cid,
                    "identityId": identity,
                    "eventType": "Acquisition",
                    "productName": "CONTRIBUTION",
                    "printProduct": None,
                    "previousProductName": None,
                    "userConsentsOverrides": {"similarGuardianProducts": consent_override(payment)},
                }
            ),
            livemode=session.meta.livemode,
            account=payment.account,
            created=created,
        )
        if session.customer.email is None:
            skipped.append("email_no_address")
        else:
            email = _thank_you_email(payment, identity, created, amount, first_name_field)
    acquisition_event = AcquisitionEvent(
        payment_id=payment.charge_id,
        message=acquisition_detail(acquisition, payment, consent_override(payment)),
        livemode=session.meta.livemode,
        account=payment.account,
        created=created,
    )
    return PaymentRecords(
        contribution,
        acquisition,
        acquisition_event,
        store,
        supporter,
        email,
        opt_in,
        tuple(skipped),
        tuple(warnings),
    )


def acquisition_detail(
    acquisition: Acquisition, payment: Payment, similar_products_consent: bool | None
) -> str:
    """The bus event's `Detail`: today's AcquisitionDataRow JSON, field for field.

    `amount` is an exact JSON number in major units (never through a float);
    options are null, lists never; `campaignCode` and `platform` are as the
    session sent them (the analytics table derives its own columns from them).
    """
    session = payment.session
    meta = session.metadata
    # One encoder call for the fields before the amount and one for those after
    # it: the same text as encoding field by field, without an encoder per value.
    head = _ENCODER.encode(
        {"eventTimeStamp": _iso_millis(acquisition.event_timestamp), "product": acquisition.product}
    )
    tail = _ENCODER.encode(
        {
            "country": acquisition.country_code,
            "currency": acquisition.currency,
            "componentId": acquisition.component_id,
            "componentType": acquisition.component_type,
            "campaignCode": meta.get("campaignCode") or None,
            "source": acquisition.source,
            "referrerUrl": acquisition.referrer_url,
            "abTests": [{"name": t.name, "variant": t.variant} for t in acquisition.ab_tests],
            "paymentFrequency": acquisition.payment_frequency,
            "paymentProvider": acquisition.payment_provider,
            "printOptions": None,
            "browserId": acquisition.browser_id,
            "identityId": acquisition.identity_id,
            "pageViewId": acquisition.page_view_id,
            "referrerPageViewId": acquisition.referrer_page_view_id,
            "labels": list(acquisition.labels),
            "promoCode": acquisition.promo_code,
            "reusedExistingPaymentMethod": acquisition.reused_existing_payment_method,
            "readerType": acquisition.reader_type,
            "acquisitionType": acquisition.acquisition_type,
            "zuoraSubscriptionNumber": acquisition.zuora_subscription_number,
            "contributionId": acquisition.contribution_id,
            "paymentId": acquisition.payment_id,
            "queryParameters": [
                {"name": q.key, "value": q.value} for q in acquisition.query_parameters
            ],
            "platform": meta.get("platform") or None,
            "postalCode": session.customer.postal_code,
            "state": session.customer.state,
            "email": session.customer.email,
            "similarProductsConsent": similar_products_consent,
            "paypalTransactionId": None,
        }
    )
    # JSON's number grammar takes a plain decimal: exact, no float on the way.
    amount = format(acquisition.amount, "f")
    return f'{head[:-1]},"amount":{amount},{tail[1:]}'


def _iso_millis(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as today's events carry (2025-03-01T10:00:00.000Z)."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _supporter_item(
    payment: Payment, identity: str, created: datetime, amount: Decimal
) -> SupporterProductData:
    start = created.date()
    end = term_end(start)
    expiry = datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC)
    return SupporterProductData(
        identity_id=identity,
        subscription_name=f"Stripe - {payment.charge_id}",
        product_rate_plan_id="single_contribution",
        product_rate_plan_name="Single Contribution",
        contract_effective_date=start,
        term_end_date=end,
        expiry_date=int(expiry.timestamp()),
        contribution_amount=amount,
        contribution_currency=payment.session.currency,
        payment_id=payment.charge_id,
        livemode=payment.session.meta.livemode,
        account=payment.account,
    )


def _thank_you_email(
    payment: Payment,
    identity: str,
    created: datetime,
    amount: Decimal,
    first_name_field: str | None,
) -> ThankYouEmail:
    session = payment.session
    address = session.customer.email
    body = {
        "To": {
            "Address": address,
            "SubscriberKey": address,
            "ContactAttributes": {
                "SubscriberAttributes": {
                    "EmailAddress": address,
                    "edition": EDITIONS.get(session.currency, "international"),
                    "payment method": payment_method_label(payment.payment_method),
                    "currency": session.currency,
                    "amount": f"{amount:.2f}",
                    "first_name": first_name(payment, first_name_field),
                    "date_of_payment": payment_date_text(created.date()),
                }
            },
        },
        "DataExtensionName": THANK_YOU_DATA_EXTENSION,
        "IdentityUserId": identity,
    }
    return ThankYouEmail(
        payment_id=payment.charge_id,
        message=_json(body),
        livemode=session.meta.livemode,
        account=payment.account,
        created=created,
    )


#: Compact JSON with non-ASCII kept, built once (json.dumps builds an encoder per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json(body: dict[str, Any]) -> str:
    return _ENCODER.encode(body)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
