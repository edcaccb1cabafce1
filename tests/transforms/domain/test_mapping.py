"""`build_records`: one settled Payment to the records the downstream systems read."""

from __future__ import annotations

import calendar
import json
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

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
from tests.builders import ACCOUNT_UK, T0, event, session_object
from transforms.domain.facts import SessionFact, classify
from transforms.domain.mapping import (
    PaymentRecords,
    build_records,
    campaign_codes,
    clean_subdivision,
    contribution_id,
    term_end,
)
from transforms.domain.payment import Payment

# Computed independently: uuid.uuid5(uuid.UUID('6f1f6c2e-...-2a4e8f0c1b35'), 'ch_1').
CONTRIBUTION_ID_CH_1 = "e0cd70fa-7672-550c-8efd-f030dbd04d31"
T0_DATETIME = datetime(2024, 12, 5, 23, 0, tzinfo=UTC)
NO_IDENTITY_SKIPS = ("supporter_item_no_identity", "email_no_identity", "soft_opt_in_no_identity")
FULL_METADATA = {
    "identityId": "1001",
    "referrerUrl": "https://www.theguardian.com/world/2024/dec/05/story",
    "componentId": "contributions-epic",
    "componentType": "ACQUISITIONS_EPIC",
    "source": "GUARDIAN_WEB",
    "campaignCode": "a, b",
    "abTests": '[{"name":"epicTest","variant":"control"},{"name":"amounts","variant":"v2"}]',
    "pageviewId": "pv_1",
    "referrerPageviewId": "rpv_1",
    "browserId": "br_1",
    "labels": "one-off, epic",
    "queryParameters": '{"utm_source":"epic","utm_campaign":"dec"}',
}


def epoch(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return calendar.timegm((year, month, day, hour, minute, second))


def payment(
    *,
    status: str = "Paid",
    settled_at: int = T0,
    card_country: str | None = "US",
    payment_method: str | None = "card",
    charge_id: str = "ch_1",
    event_type: str = "checkout.session.completed",
    **session: Any,
) -> Payment:
    fact = classify(event("evt_s", event_type, session_object(**session), created=settled_at))
    assert isinstance(fact, SessionFact)
    return Payment(
        session=fact,
        status=status,
        settled_at=settled_at,
        charge_id=charge_id,
        card_country=card_country,
        payment_method=payment_method,
        account=ACCOUNT_UK,
    )


def contribution(**changes: Any) -> Contribution:
    """The contribution of the default payment (GBP 5.00, card from US, identity 1001)."""
    return replace(
        Contribution(
            payment_id="ch_1",
            payment_intent_id="pi_1",
            checkout_session_id="cs_1",
            contribution_id=CONTRIBUTION_ID_CH_1,
            status="Paid",
            amount=Decimal("5.00"),
            amount_refunded=Decimal("0.00"),
            currency="GBP",
            country_code="US",
            country_source="card",
            payment_method="card",
            identity_id="1001",
            disputed=False,
            livemode=True,
            account=ACCOUNT_UK,
            created=T0_DATETIME,
        ),
        **changes,
    )


def acquisition(**changes: Any) -> Acquisition:
    """The acquisition of the default payment with no attribution metadata."""
    return replace(
        Acquisition(
            event_timestamp=T0_DATETIME,
            product="CONTRIBUTION",
            amount=Decimal("5.00"),
            country_code="US",
            currency="GBP",
            component_id=None,
            component_type=None,
            campaign_codes=(),
            source=None,
            referrer_url=None,
            ab_tests=(),
            payment_frequency="ONE_OFF",
            payment_provider="STRIPE",
            print_options=None,
            browser_id=None,
            identity_id="1001",
            page_view_id=None,
            referrer_page_view_id=None,
            labels=(),
            promo_code=None,
            reused_existing_payment_method=False,
            reader_type="Direct",
            acquisition_type="Purchase",
            zuora_subscription_number=None,
            contribution_id=CONTRIBUTION_ID_CH_1,
            payment_id="ch_1",
            query_parameters=(),
            platform="SUPPORT",
            livemode=True,
            account=ACCOUNT_UK,
        ),
        **changes,
    )


def store_record(**changes: Any) -> ContributionStoreRecord:
    return replace(
        ContributionStoreRecord(
            payment_provider="Stripe",
            payment_status="Paid",
            payment_id="ch_1",
            identity_id="1001",
            email="reader1@example.com",
            created=T0_DATETIME,
            currency="GBP",
            amount=Decimal("5.00"),
            country_code="US",
            country_subdivision_code=None,
            postal_code="N1 9GU",
            contribution_id=CONTRIBUTION_ID_CH_1,
            livemode=True,
            account=ACCOUNT_UK,
        ),
        **changes,
    )


def opt_in_body(identity: str = "1001", consent: bool | None = None) -> dict[str, Any]:
    return {
        "subscriptionId": CONTRIBUTION_ID_CH_1,
        "identityId": identity,
        "eventType": "Acquisition",
        "productName": "CONTRIBUTION",
        "printProduct": None,
        "previousProductName": None,
        "userConsentsOverrides": {"similarGuardianProducts": consent},
    }


def email_body(
    *,
    edition: str = "uk",
    method: str = "credit / debit card",
    currency: str = "GBP",
    amount: str = "5.00",
    first_name: str | None = None,
    date_of_payment: str = "5 December 2024",
    identity: str = "1001",
) -> dict[str, Any]:
    return {
        "To": {
            "Address": "reader1@example.com",
            "SubscriberKey": "reader1@example.com",
            "ContactAttributes": {
                "SubscriberAttributes": {
                    "EmailAddress": "reader1@example.com",
                    "edition": edition,
                    "payment method": method,
                    "currency": currency,
                    "amount": amount,
                    "first_name": first_name,
                    "date_of_payment": date_of_payment,
                }
            },
        },
        "DataExtensionName": "contribution-thank-you",
        "IdentityUserId": identity,
    }


def message_of(record: ThankYouEmail | SoftOptIn | None) -> dict[str, Any]:
    assert record is not None
    body: dict[str, Any] = json.loads(record.message)
    return body


def test_full_card_payment_with_complete_metadata() -> None:
    records = build_records(payment(metadata=FULL_METADATA, state="London"))

    assert records == PaymentRecords(
        contribution=Contribution(
            payment_id="ch_1",
            payment_intent_id="pi_1",
            checkout_session_id="cs_1",
            contribution_id=CONTRIBUTION_ID_CH_1,
            status="Paid",
            amount=Decimal("5.00"),
            amount_refunded=Decimal("0.00"),
            currency="GBP",
            country_code="US",
            country_source="card",
            payment_method="card",
            identity_id="1001",
            disputed=False,
            livemode=True,
            account=ACCOUNT_UK,
            created=T0_DATETIME,
        ),
        acquisition=Acquisition(
            event_timestamp=T0_DATETIME,
            product="CONTRIBUTION",
            amount=Decimal("5.00"),
            country_code="US",
            currency="GBP",
            component_id="contributions-epic",
            component_type="ACQUISITIONS_EPIC",
            campaign_codes=("a, b",),
            source="GUARDIAN_WEB",
            referrer_url="https://www.theguardian.com/world/2024/dec/05/story",
            ab_tests=(
                AbTest(name="epicTest", variant="control"),
                AbTest(name="amounts", variant="v2"),
            ),
            payment_frequency="ONE_OFF",
            payment_provider="STRIPE",
            print_options=None,
            browser_id="br_1",
            identity_id="1001",
            page_view_id="pv_1",
            referrer_page_view_id="rpv_1",
            labels=("one-off", "epic"),
            promo_code=None,
            reused_existing_payment_method=False,
            reader_type="Direct",
            acquisition_type="Purchase",
            zuora_subscription_number=None,
            contribution_id=CONTRIBUTION_ID_CH_1,
            payment_id="ch_1",
            query_parameters=(
                QueryParameter(key="utm_source", value="epic"),
                QueryParameter(key="utm_campaign", value="dec"),
            ),
            platform="SUPPORT",
            livemode=True,
            account=ACCOUNT_UK,
        ),
        acquisition_event=AcquisitionEvent(
            payment_id="ch_1",
            message=(
                '{"eventTimeStamp":"2024-12-05T23:00:00.000Z","product":"CONTRIBUTION","amount":5.00,'
                '"country":"US","currency":"GBP","componentId":"contributions-epic",'
                '"componentType":"ACQUISITIONS_EPIC","campaignCode":"a, b","source":"GUARDIAN_WEB",'
                '"referrerUrl":"https://www.theguardian.com/world/2024/dec/05/story",'
                '"abTests":[{"name":"epicTest","variant":"control"},{"name":"amounts",'
                '"variant":"v2"}],"paymentFrequency":"ONE_OFF","paymentProvider":"STRIPE",'
                '"printOptions":null,"browserId":"br_1","identityId":"1001","pageViewId":"pv_1",'
                '"referrerPageViewId":"rpv_1","labels":["one-off","epic"],"promoCode":null,'
                '"reusedExistingPaymentMethod":false,"readerType":"Direct",'
                '"acquisitionType":"Purchase","zuoraSubscriptionNumber":null,'
                '"contributionId":"e0cd70fa-7672-550c-8efd-f030dbd04d31","paymentId":"ch_1",'
                '"queryParameters":[{"name":"utm_source","value":"epic"},{"name":"utm_campaign",'
                '"value":"dec"}],"platform":null,"postalCode":"N1 9GU","state":"London",'
                '"email":"reader1@example.com","similarProductsConsent":null,'
                '"paypalTransactionId":null}'
            ),
            livemode=True,
            account=ACCOUNT_UK,
            created=T0_DATETIME,
        ),
        contribution_store=ContributionStoreRecord(
            payment_provider="Stripe",
            payment_status="Paid",
            payment_id="ch_1",
            identity_id="1001",
            email="reader1@example.com",
            created=T0_DATETIME,
            currency="GBP",
            amount=Decimal("5.00"),
            country_code="US",
            country_subdivision_code="London",
            postal_code="N1 9GU",
            contribution_id=CONTRIBUTION_ID_CH_1,
            livemode=True,
            account=ACCOUNT_UK,
        ),
        supporter=SupporterProductData(
            identity_id="1001",
            subscription_name="Stripe - ch_1",
            product_rate_plan_id="single_contribution",
            product_rate_plan_name="Single Contribution",
            contract_effective_date=date(2024, 12, 5),
            term_end_date=date(2032, 12, 12),
            expiry_date=1_986_508_800,  # 2032-12-13T00:00:00Z
            contribution_amount=Decimal("5.00"),
            contribution_currency="GBP",
            payment_id="ch_1",
            livemode=True,
            account=ACCOUNT_UK,
        ),
        thank_you_email=ThankYouEmail(
            payment_id="ch_1",
            message=(
                '{"To":{"Address":"reader1@example.com","SubscriberKey":"reader1@example.com",'
                '"ContactAttributes":{"SubscriberAttributes":{'
                '"EmailAddress":"reader1@example.com","edition":"uk",'
                '"payment method":"credit / debit card","currency":"GBP","amount":"5.00",'
                '"first_name":null,"date_of_payment":"5 December 2024"}}},'
                '"DataExtensionName":"contribution-thank-you","IdentityUserId":"1001"}'
            ),
            livemode=True,
            account=ACCOUNT_UK,
            created=T0_DATETIME,
        ),
        soft_opt_in=SoftOptIn(
            payment_id="ch_1",
            message=(
                '{"subscriptionId":"e0cd70fa-7672-550c-8efd-f030dbd04d31","identityId":"1001",'
                '"eventType":"Acquisition","productName":"CONTRIBUTION","printProduct":null,'
                '"previousProductName":null,'
                '"userConsentsOverrides":{"similarGuardianProducts":null}}'
            ),
            livemode=True,
            account=ACCOUNT_UK,
            created=T0_DATETIME,
        ),
        skipped=(),
        warnings=(),
    )
    assert str(records.contribution.amount) == "5.00"
    assert message_of(records.thank_you_email) == email_body()
    assert message_of(records.soft_opt_in) == opt_in_body()


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        (None, "SUPPORT"),
        ("", "SUPPORT"),
        ("IOS_NATIVE", "IOS_NATIVE"),
        ("iosnativeapp", "IOS_NATIVE_APP"),
        ("AndroidNativeApp", "ANDROID_NATIVE_APP"),
    ],
    ids=["missing", "empty", "given", "ios-app", "android-app-any-case"],
)
def test_platform_defaults_to_support(platform: str | None, expected: str) -> None:
    metadata = {"identityId": "1001"} | ({} if platform is None else {"platform": platform})

    records = build_records(payment(metadata=metadata))

    assert records.acquisition == acquisition(platform=expected)


@pytest.mark.parametrize(
    ("card_country", "address_country", "expected_code", "expected_source"),
    [
        ("US", "GB", "US", "card"),
        ("US", None, "US", "card"),
        (None, "fr", "FR", "address"),
        (None, None, "GB", "default"),
    ],
    ids=["card-wins", "card-only", "address-fallback", "gb-default"],
)
def test_country_falls_back_from_card_to_address_to_gb(
    card_country: str | None,
    address_country: str | None,
    expected_code: str,
    expected_source: str,
) -> None:
    records = build_records(payment(card_country=card_country, country=address_country))

    assert (records.contribution, records.acquisition, records.contribution_store) == (
        contribution(country_code=expected_code, country_source=expected_source),
        acquisition(country_code=expected_code),
        store_record(country_code=expected_code),
    )


@pytest.mark.parametrize(
    ("metadata", "client_reference_id", "expected"),
    [
        ({"identityId": "1001"}, None, "1001"),
        ({}, "2002", "2002"),
        ({"identityId": "1001"}, "2002", "1001"),
        ({"identityId": ""}, "2002", "2002"),
    ],
    ids=["metadata", "client-reference-id", "metadata-wins", "empty-metadata-falls-back"],
)
def test_identity_from_metadata_then_client_reference_id(
    metadata: dict[str, str], client_reference_id: str | None, expected: str
) -> None:
    records = build_records(payment(metadata=metadata, client_reference_id=client_reference_id))

    assert records.contribution == contribution(identity_id=expected)
    assert records.acquisition == acquisition(identity_id=expected)
    assert records.contribution_store == store_record(identity_id=expected)
    assert records.supporter is not None
    assert (records.supporter.identity_id, records.skipped, records.warnings) == (expected, (), ())
    assert message_of(records.thank_you_email) == email_body(identity=expected)
    assert message_of(records.soft_opt_in) == opt_in_body(identity=expected)


def test_guest_gets_contribution_acquisition_and_store_only() -> None:
    records = build_records(payment(metadata={}, client_reference_id=None))

    assert records.acquisition_event is not None
    assert json.loads(records.acquisition_event.message)["identityId"] is None
    assert replace(records, acquisition_event=None) == PaymentRecords(
        contribution=contribution(identity_id=None),
        acquisition=acquisition(identity_id=None),
        acquisition_event=None,
        contribution_store=store_record(identity_id=None),
        supporter=None,
        thank_you_email=None,
        soft_opt_in=None,
        skipped=NO_IDENTITY_SKIPS,
        warnings=(),
    )


def test_identity_without_email_address_skips_only_the_email() -> None:
    records = build_records(payment(email=None))

    assert (records.thank_you_email, records.skipped) == (None, ("email_no_address",))
    assert records.contribution_store == store_record(email=None)
    assert records.supporter is not None
    assert records.supporter.identity_id == "1001"
    assert message_of(records.soft_opt_in) == opt_in_body()


@pytest.mark.parametrize(
    "ab_tests",
    [
        "not json",
        '{"name":"epicTest","variant":"control"}',
        '[{"name":"epicTest"}]',
        "[1]",
        "null",
        '"epicTest"',
    ],
    ids=["not-json", "object-not-array", "missing-variant", "array-of-numbers", "null", "string"],
)
def test_unreadable_ab_tests_become_empty_with_a_warning(ab_tests: str) -> None:
    records = build_records(payment(metadata={"identityId": "1001", "abTests": ab_tests}))

    assert (records.acquisition, records.warnings, records.skipped) == (
        acquisition(ab_tests=()),
        ("ab_tests_unreadable",),
        (),
    )
    assert records.contribution == contribution()


def test_empty_ab_tests_array_is_not_a_warning() -> None:
    records = build_records(payment(metadata={"identityId": "1001", "abTests": "[]"}))

    assert (records.acquisition, records.warnings) == (acquisition(ab_tests=()), ())


@pytest.mark.parametrize(
    ("query_parameters", "expected", "warnings"),
    [
        (
            '{"utm_source":"epic","n":1,"flag":true,"nothing":null}',
            (
                QueryParameter(key="utm_source", value="epic"),
                QueryParameter(key="n", value="1"),
                QueryParameter(key="flag", value="true"),
                QueryParameter(key="nothing", value="null"),
            ),
            (),
        ),
        ("{}", (), ()),
        ('[["utm_source","epic"]]', (), ("query_parameters_unreadable",)),
        ("utm_source=epic", (), ("query_parameters_unreadable",)),
    ],
    ids=["object-with-non-string-values", "empty-object", "array", "not-json"],
)
def test_query_parameters(
    query_parameters: str, expected: tuple[QueryParameter, ...], warnings: tuple[str, ...]
) -> None:
    records = build_records(
        payment(metadata={"identityId": "1001", "queryParameters": query_parameters})
    )

    assert (records.acquisition, records.warnings) == (
        acquisition(query_parameters=expected),
        warnings,
    )


@pytest.mark.parametrize(
    ("campaign_code", "expected"),
    [
        ("a, b", ("a, b",)),
        ("single", ("single",)),
        (" a ,, b ,", (" a ,, b ,",)),
        ("", ()),
        (None, ()),
    ],
    ids=["two-codes-kept-as-sent", "one-code", "kept-verbatim", "empty", "missing"],
)
def test_campaign_codes_hold_the_code_as_sent(
    campaign_code: str | None, expected: tuple[str, ...]
) -> None:
    assert campaign_codes(campaign_code) == expected


@pytest.mark.parametrize(
    ("explicit", "promotions", "expected"),
    [
        ("true", "opt_out", True),
        ("false", "opt_in", False),
        ("true", None, True),
        ("false", None, False),
        (None, "opt_in", True),
        (None, "opt_out", False),
        (None, None, None),
        ("yes", "opt_in", True),
        (" TRUE ", "opt_out", True),
    ],
    ids=[
        "metadata-true-beats-opt-out",
        "metadata-false-beats-opt-in",
        "metadata-true",
        "metadata-false",
        "promotions-opt-in",
        "promotions-opt-out",
        "neither-is-null",
        "unreadable-metadata-falls-back",
        "metadata-case-and-spaces-ignored",
    ],
)
def test_soft_opt_in_consent_override(
    explicit: str | None, promotions: str | None, expected: bool | None
) -> None:
    metadata = {"identityId": "1001"}
    if explicit is not None:
        metadata["similarProductsConsent"] = explicit

    records = build_records(payment(metadata=metadata, promotions=promotions))

    assert records.soft_opt_in is not None
    assert message_of(records.soft_opt_in) == opt_in_body(consent=expected)
    assert (records.soft_opt_in.payment_id, records.soft_opt_in.created) == ("ch_1", T0_DATETIME)


@pytest.mark.parametrize(
    ("currency", "amount_minor", "edition", "code", "amount_text"),
    [
        ("gbp", 500, "uk", "GBP", "5.00"),
        ("usd", 1000, "us", "USD", "10.00"),
        ("aud", 2550, "au", "AUD", "25.50"),
        ("eur", 500, "international", "EUR", "5.00"),
        ("cad", 500, "international", "CAD", "5.00"),
        ("jpy", 500, "international", "JPY", "500.00"),
        ("kwd", 5230, "international", "KWD", "5.23"),
    ],
    ids=["gbp-uk", "usd-us", "aud-au", "eur-international", "cad", "jpy", "kwd"],
)
def test_email_edition_currency_and_amount(
    currency: str, amount_minor: int, edition: str, code: str, amount_text: str
) -> None:
    records = build_records(payment(currency=currency, amount_total=amount_minor))

    assert message_of(records.thank_you_email) == email_body(
        edition=edition, currency=code, amount=amount_text
    )


@pytest.mark.parametrize(
    ("settled_at", "expected"),
    [
        (epoch(2025, 3, 5, 10, 0), "5 March 2025"),
        (epoch(2025, 3, 5, 23, 59, 59), "5 March 2025"),
        (epoch(2025, 1, 1), "1 January 2025"),
        (epoch(2025, 12, 25), "25 December 2025"),
    ],
    ids=["no-zero-padding", "utc-end-of-day", "new-year", "two-digit-day"],
)
def test_email_date_of_payment(settled_at: int, expected: str) -> None:
    records = build_records(payment(settled_at=settled_at))

    assert message_of(records.thank_you_email) == email_body(date_of_payment=expected)


@pytest.mark.parametrize(
    ("name", "custom_fields", "configured", "expected"),
    [
        ("Ada Reader", {}, None, None),
        ("Nagy Zsófia", {"given_name": "Zsófia"}, None, None),
        ("Nagy Zsófia", {"given_name": "Zsófia"}, "given_name", "Zsófia"),
        ("佐藤 陽翔", {"given_name": " 陽翔 "}, "given_name", "陽翔"),
        ("Ada Reader", {"other": "Ada"}, "given_name", None),
        ("Ada Reader", {"given_name": "   "}, "given_name", None),
    ],
    ids=[
        "none-as-today",
        "field-not-configured",
        "configured-field",
        "configured-field-trimmed",
        "configured-field-absent",
        "configured-field-blank",
    ],
)
def test_email_first_name_only_from_a_configured_custom_field(
    name: str, custom_fields: dict[str, str], configured: str | None, expected: str | None
) -> None:
    records = build_records(
        payment(name=name, custom_fields=custom_fields), first_name_field=configured
    )

    assert message_of(records.thank_you_email) == email_body(first_name=expected)


@pytest.mark.parametrize(
    ("payment_method", "expected"),
    [
        ("card", "credit / debit card"),
        (None, "credit / debit card"),
        ("link", "credit / debit card"),
        ("apple_pay", "credit / debit card"),
        ("bacs_debit", "direct debit"),
        ("sepa_debit", "direct debit"),
        ("au_becs_debit", "direct debit"),
        ("us_bank_account", "direct debit"),
        ("ideal", "iDEAL"),
        ("paypal", "PayPal"),
        ("customer_balance", "bank transfer"),
        ("some_new_method", "some new method"),
    ],
    ids=[
        "card",
        "unknown-is-card",
        "link-wallet",
        "apple-pay-wallet",
        "bacs",
        "sepa",
        "becs",
        "ach",
        "ideal",
        "paypal",
        "bank-transfer",
        "new-type-in-words",
    ],
)
def test_email_payment_method(payment_method: str | None, expected: str) -> None:
    records = build_records(payment(payment_method=payment_method, card_country=None))

    assert message_of(records.thank_you_email) == email_body(method=expected)


@pytest.mark.parametrize(
    ("settled_at", "start", "end", "expiry"),
    [
        (T0, date(2024, 12, 5), date(2032, 12, 12), 1_986_508_800),
        (epoch(2024, 2, 29, 12), date(2024, 2, 29), date(2032, 3, 7), 1_962_316_800),
        (epoch(2025, 12, 31, 23, 59, 59), date(2025, 12, 31), date(2034, 1, 7), 2_020_291_200),
    ],
    ids=["t0", "leap-day-to-leap-year", "new-year-eve-crosses-year"],
)
def test_supporter_item_dates(settled_at: int, start: date, end: date, expiry: int) -> None:
    created = datetime.fromtimestamp(settled_at, tz=UTC)

    records = build_records(payment(settled_at=settled_at))

    assert records.supporter == SupporterProductData(
        identity_id="1001",
        subscription_name="Stripe - ch_1",
        product_rate_plan_id="single_contribution",
        product_rate_plan_name="Single Contribution",
        contract_effective_date=start,
        term_end_date=end,
        expiry_date=expiry,
        contribution_amount=Decimal("5.00"),
        contribution_currency="GBP",
        payment_id="ch_1",
        livemode=True,
        account=ACCOUNT_UK,
    )
    # The TTL is midnight UTC of the day after the term ends.
    assert expiry == calendar.timegm((end + timedelta(days=1)).timetuple())
    assert records.contribution == contribution(created=created)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (date(2024, 12, 5), date(2032, 12, 12)),
        (date(2024, 2, 29), date(2032, 3, 7)),
        (date(2092, 2, 29), date(2100, 3, 7)),
        (date(2023, 2, 28), date(2031, 3, 7)),
        (date(2025, 12, 28), date(2034, 1, 4)),
    ],
    ids=[
        "plain",
        "leap-day-into-leap-year",
        "leap-day-into-2100-becomes-28-feb",
        "28-feb",
        "week-crosses-year",
    ],
)
def test_term_end_is_eight_years_and_a_week(start: date, expected: date) -> None:
    assert term_end(start) == expected


def test_contribution_id_is_the_documented_uuid5_and_stable() -> None:
    namespace = uuid.UUID("6f1f6c2e-3b0a-5b8e-9d7c-2a4e8f0c1b35")

    assert contribution_id("ch_1") == CONTRIBUTION_ID_CH_1
    assert contribution_id("ch_1") == str(uuid.uuid5(namespace, "ch_1"))
    assert contribution_id("ch_1") == contribution_id("ch_1")
    assert contribution_id("ch_2") == str(uuid.uuid5(namespace, "ch_2"))
    assert contribution_id("ch_2") != CONTRIBUTION_ID_CH_1


def test_same_payment_builds_the_same_records() -> None:
    assert build_records(payment(metadata=FULL_METADATA)) == build_records(
        payment(metadata=FULL_METADATA)
    )


def test_failed_payment_builds_only_the_contribution() -> None:
    records = build_records(
        payment(
            status="Failed",
            event_type="checkout.session.async_payment_failed",
            payment_status="unpaid",
            card_country=None,
            payment_method="bacs_debit",
            charge_id="ch_bad",
            metadata=FULL_METADATA,
        )
    )

    assert records == PaymentRecords(
        contribution=Contribution(
            payment_id="ch_bad",
            payment_intent_id="pi_1",
            checkout_session_id="cs_1",
            contribution_id=str(
                uuid.uuid5(uuid.UUID("6f1f6c2e-3b0a-5b8e-9d7c-2a4e8f0c1b35"), "ch_bad")
            ),
            status="Failed",
            amount=Decimal("5.00"),
            amount_refunded=Decimal("0.00"),
            currency="GBP",
            country_code="GB",
            country_source="address",
            payment_method="bacs_debit",
            identity_id="1001",
            disputed=False,
            livemode=True,
            account=ACCOUNT_UK,
            created=T0_DATETIME,
        ),
        acquisition=None,
        acquisition_event=None,
        contribution_store=None,
        supporter=None,
        thank_you_email=None,
        soft_opt_in=None,
        skipped=(),
        warnings=(),
    )


def test_store_and_supporter_item_are_dated_by_the_charge() -> None:
    # The charge was created the evening before the session settled (UTC).
    charged = T0 - 3_600 * 5
    records = build_records(replace(payment(), charge_created=charged))

    charged_at = datetime.fromtimestamp(charged, tz=UTC)
    assert records.contribution_store == store_record(created=charged_at)
    assert records.supporter is not None
    assert records.supporter.contract_effective_date == charged_at.date()
    # The analytics records keep the settlement time.
    assert records.contribution.created == T0_DATETIME
    assert records.acquisition == acquisition()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("CA", "CA"),
        ("New South Wales", "New South Wales"),
        (" Île-de-France\n", "ÎledeFrance"),
        ("N.Y.", "NY"),
        ("--", None),
        (None, None),
    ],
    ids=["code", "spaces-kept", "accents-kept-punctuation-dropped", "dots", "nothing-left", "none"],
)
def test_subdivision_is_cleaned_as_the_store_expects(
    state: str | None, expected: str | None
) -> None:
    assert clean_subdivision(state) == expected
    records = build_records(payment(state=state))
    assert records.contribution_store == store_record(country_subdivision_code=expected)
