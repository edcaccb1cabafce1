"""Small builders for tests: realistic shapes, explicit values.

The event builders return a `StripeEvent` as the decoding step would, with
only the fields the pipeline reads plus what Stripe always sends (amounts in
minor units, times in epoch seconds). The record builders give the writer
tests one valid record of each kind to vary with `changes`.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas.records import (
    AbTest,
    Acquisition,
    Contribution,
    ContributionStoreRecord,
    PaymentAdjustment,
    PipelineRun,
    QueryParameter,
    SupporterProductData,
    TableRows,
)
from transforms.domain.events import StripeEvent
from transforms.domain.facts import ChargeFact, SessionFact, classify

T0 = 1_733_439_600  # 2024-12-05T23:00:00Z
ACCOUNT_UK = "ed_61RkUK0000000000000000"
MODERN_API = "2024-06-20"
LEGACY_API = "2022-08-01"


def event(
    event_id: str,
    event_type: str,
    data_object: dict[str, Any],
    *,
    created: int = T0,
    livemode: bool = True,
    account: str | None = ACCOUNT_UK,
    api_version: str = MODERN_API,
    previous_attributes: dict[str, Any] | None = None,
    source: str = "test@0",
) -> StripeEvent:
    return StripeEvent(
        id=event_id,
        type=event_type,
        created=created,
        livemode=livemode,
        api_version=api_version,
        account=account,
        data_object=data_object,
        previous_attributes=previous_attributes,
        source=source,
        arrival=None,
    )


#: The AWS account EventBridge names in every test envelope.
AWS_ACCOUNT_ID = "123456789012"


def stripe_event_document(
    event_id: str,
    event_type: str,
    data_object: Any,
    *,
    created: Any = T0,
    livemode: bool = True,
    api_version: str = MODERN_API,
    **overrides: Any,
) -> dict[str, Any]:
    """A Stripe event as the API returns it and EventBridge carries it in `detail`.

    `overrides` replace top-level fields (or add them), so a test can break one.
    """
    document: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": {"object": data_object},
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    document.update(overrides)
    return document


def eventbridge_envelope(
    detail: Any,
    *,
    envelope_id: str,
    account: str,
    time: str,
    detail_type: str | None = None,
    resources: list[str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The EventBridge envelope of a Stripe partner event source around `detail`.

    `account` is the Stripe account the source names; `detail_type` defaults
    to the detail's `type`; `overrides` replace top-level fields (or add them,
    e.g. a replay's `replay-name`).
    """
    document: dict[str, Any] = {
        "version": "0",
        "id": envelope_id,
        "detail-type": detail_type if detail_type is not None else detail["type"],
        "source": f"aws.partner/stripe.com/{account}",
        "account": AWS_ACCOUNT_ID,
        "time": time,
        "region": "eu-west-1",
        "resources": resources if resources is not None else [],
        "detail": detail,
    }
    document.update(overrides)
    return document


def envelope_time(moment: datetime) -> str:
    """An envelope's `time`: UTC, to the second, with a `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def session_object(
    *,
    session_id: str = "cs_1",
    payment_intent: str | None = "pi_1",
    payment_status: str = "paid",
    mode: str = "payment",
    amount_total: int = 500,
    currency: str = "gbp",
    metadata: dict[str, str] | None = None,
    client_reference_id: str | None = None,
    email: str | None = "reader1@example.com",
    name: str | None = "Ada Reader",
    country: str | None = "GB",
    postal_code: str | None = "N1 9GU",
    state: str | None = None,
    promotions: str | None = None,
    payment_method_types: tuple[str, ...] = ("card",),
    custom_fields: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Checkout Session; `custom_fields` are text fields, {key: what the reader typed}."""
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": mode,
        "payment_intent": payment_intent,
        "payment_status": payment_status,
        "status": "complete",
        "amount_total": amount_total,
        "currency": currency,
        "metadata": metadata if metadata is not None else {"identityId": "1001"},
        "client_reference_id": client_reference_id,
        "customer_details": {
            "email": email,
            "name": name,
            "address": {"country": country, "postal_code": postal_code, "state": state},
        },
        "consent": {"promotions": promotions} if promotions else None,
        "payment_method_types": list(payment_method_types),
        "custom_fields": [
            {
                "key": key,
                "label": {"custom": key, "type": "custom"},
                "optional": True,
                "text": {"maximum_length": None, "minimum_length": None, "value": value},
                "type": "text",
            }
            for key, value in (custom_fields or {}).items()
        ],
    }


def charge_object(
    *,
    charge_id: str = "ch_1",
    payment_intent: str | None = "pi_1",
    amount: int = 500,
    currency: str = "gbp",
    card_country: str | None = "US",
    method: str = "card",
    amount_refunded: int = 0,
    status: str = "succeeded",
) -> dict[str, Any]:
    details: dict[str, Any] = {"type": method}
    if method == "card":
        details["card"] = {"brand": "visa", "country": card_country, "last4": "4242"}
    return {
        "id": charge_id,
        "object": "charge",
        "payment_intent": payment_intent,
        "amount": amount,
        "amount_refunded": amount_refunded,
        "currency": currency,
        "status": status,
        "refunded": amount_refunded >= amount,
        "payment_method_details": details,
        "billing_details": {"address": {"country": "GB"}},
    }


def payment_intent_object(
    *,
    payment_intent_id: str = "pi_1",
    latest_charge: str | dict[str, Any] | None = "ch_1",
    legacy_charges: list[dict[str, Any]] | None = None,
    last_payment_error_charge: str | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": payment_intent_id, "object": "payment_intent", "amount": 500}
    if legacy_charges is not None:
        obj["charges"] = {"object": "list", "data": legacy_charges}
    else:
        obj["latest_charge"] = latest_charge
    if last_payment_error_charge:
        obj["last_payment_error"] = {"charge": last_payment_error_charge}
    return obj


def dispute_object(
    *,
    dispute_id: str = "dp_1",
    charge: str = "ch_1",
    amount: int = 500,
    currency: str = "gbp",
    status: str = "needs_response",
) -> dict[str, Any]:
    return {
        "id": dispute_id,
        "object": "dispute",
        "charge": charge,
        "amount": amount,
        "currency": currency,
        "status": status,
        "reason": "fraudulent",
    }


#: When the writer tests' records happened (microseconds, to check they survive).
RECORD_CREATED = datetime(2025, 3, 5, 14, 30, 1, 123456, tzinfo=UTC)


def session_fact(
    event_id: str = "evt_s",
    *,
    event_type: str = "checkout.session.completed",
    created: int = T0,
    account: str | None = ACCOUNT_UK,
    **session: Any,
) -> SessionFact:
    """The fact `classify` makes of a checkout session event built from `session`."""
    fact = classify(
        event(event_id, event_type, session_object(**session), created=created, account=account)
    )
    assert isinstance(fact, SessionFact)
    return fact


def charge_fact(
    event_id: str = "evt_c",
    *,
    event_type: str = "charge.succeeded",
    created: int = T0,
    account: str | None = ACCOUNT_UK,
    obj: dict[str, Any] | None = None,
) -> ChargeFact:
    """The fact `classify` makes of a charge event (or of `obj`, e.g. a PaymentIntent)."""
    fact = classify(
        event(event_id, event_type, obj or charge_object(), created=created, account=account)
    )
    assert isinstance(fact, ChargeFact)
    return fact


def intent_fact(
    event_id: str = "evt_pi",
    *,
    event_type: str = "payment_intent.succeeded",
    created: int = T0,
    account: str | None = ACCOUNT_UK,
    **intent: Any,
) -> ChargeFact:
    """The fact `classify` makes of a PaymentIntent event built from `intent`."""
    return charge_fact(
        event_id,
        event_type=event_type,
        created=created,
        account=account,
        obj=payment_intent_object(**intent),
    )


def refund_adjustment(
    payment_id: str,
    total: str,
    event: str = "evt_r1",
    *,
    livemode: bool = False,
    account: str = "ed_test_1",
    fully_refunded: bool = True,
) -> PaymentAdjustment:
    """A charge.refunded adjustment of GBP `total` (cumulative and this event's amount)."""
    return PaymentAdjustment(
        adjustment_id=event,
        payment_id=payment_id,
        kind="refund",
        event_type="charge.refunded",
        amount=Decimal(total),
        amount_refunded_total=Decimal(total),
        fully_refunded=fully_refunded,
        currency="GBP",
        dispute_id=None,
        dispute_status=None,
        livemode=livemode,
        account=account,
        created=RECORD_CREATED,
    )


def refund_object_adjustment(
    payment_id: str,
    amount: str,
    refund_id: str = "re_1",
    event_type: str = "refund.created",
    *,
    livemode: bool = False,
    account: str = "ed_test_1",
) -> PaymentAdjustment:
    """A refund object's adjustment: one refund of GBP `amount`, keyed by its refund id."""
    return PaymentAdjustment(
        adjustment_id=refund_id,
        payment_id=payment_id,
        kind="refund",
        event_type=event_type,
        amount=Decimal(amount),
        amount_refunded_total=None,
        fully_refunded=None,
        currency="GBP",
        dispute_id=None,
        dispute_status=None,
        livemode=livemode,
        account=account,
        created=RECORD_CREATED,
    )


def dispute_adjustment(
    payment_id: str,
    event: str = "evt_d1",
    *,
    livemode: bool = False,
    account: str = "ed_test_1",
) -> PaymentAdjustment:
    """A charge.dispute.created adjustment of GBP 10.00."""
    return PaymentAdjustment(
        adjustment_id=event,
        payment_id=payment_id,
        kind="dispute",
        event_type="charge.dispute.created",
        amount=Decimal("10.00"),
        amount_refunded_total=None,
        fully_refunded=None,
        currency="GBP",
        dispute_id="dp_1",
        dispute_status="needs_response",
        livemode=livemode,
        account=account,
        created=RECORD_CREATED,
    )


def supporter_item(identity_id: str, charge_id: str, amount: str = "5.00") -> SupporterProductData:
    """A SupporterProductData item of GBP `amount` for one reader and one charge."""
    return SupporterProductData(
        identity_id=identity_id,
        subscription_name=f"Stripe - {charge_id}",
        product_rate_plan_id="single_contribution",
        product_rate_plan_name="Single Contribution",
        contract_effective_date=date(2025, 3, 5),
        term_end_date=date(2033, 3, 12),
        expiry_date=1994371200,
        contribution_amount=Decimal(amount),
        contribution_currency="GBP",
        payment_id=charge_id,
        livemode=False,
        account="ed_test_1",
    )


def contribution_record(payment_id: str = "ch_1", **changes: Any) -> Contribution:
    """A paid GBP 10.00 card contribution of reader 42; `changes` replace fields."""
    record = Contribution(
        payment_id=payment_id,
        payment_intent_id="pi_" + payment_id,
        checkout_session_id="cs_" + payment_id,
        contribution_id="uuid-" + payment_id,
        status="Paid",
        amount=Decimal("10.00"),
        amount_refunded=Decimal("0"),
        currency="GBP",
        country_code="GB",
        country_source="card",
        payment_method="card",
        identity_id="42",
        disputed=False,
        livemode=False,
        account="ed_test_1",
        created=RECORD_CREATED,
    )
    return dataclasses.replace(record, **changes)


def store_record(payment_id: str = "ch_1", **changes: Any) -> ContributionStoreRecord:
    """The contributions-store row of `contribution_record`; `changes` replace fields."""
    record = ContributionStoreRecord(
        payment_provider="Stripe",
        payment_status="Paid",
        payment_id=payment_id,
        identity_id="42",
        email="reader@example.com",
        created=RECORD_CREATED,
        currency="GBP",
        amount=Decimal("10.00"),
        country_code="GB",
        country_subdivision_code=None,
        postal_code=None,
        contribution_id="uuid-" + payment_id,
        livemode=False,
        account="ed_test_1",
    )
    return dataclasses.replace(record, **changes)


def acquisition_record(payment_id: str = "ch_1", **changes: Any) -> Acquisition:
    """An acquisition with nested and repeated columns filled; `changes` replace fields."""
    record = Acquisition(
        event_timestamp=RECORD_CREATED,
        product="CONTRIBUTION",
        amount=Decimal("10.00"),
        country_code="GB",
        currency="GBP",
        component_id="c",
        component_type=None,
        campaign_codes=("a", "b"),
        source=None,
        referrer_url=None,
        ab_tests=(AbTest(name="t", variant="v"),),
        payment_frequency="ONE_OFF",
        payment_provider="STRIPE_HOSTED_CHECKOUT",
        print_options=None,
        browser_id=None,
        identity_id="42",
        page_view_id=None,
        referrer_page_view_id=None,
        labels=(),
        promo_code=None,
        reused_existing_payment_method=False,
        reader_type="Direct",
        acquisition_type="Purchase",
        zuora_subscription_number=None,
        contribution_id="uuid-" + payment_id,
        payment_id=payment_id,
        query_parameters=(QueryParameter(key="utm", value="x"),),
        platform="SUPPORT",
        livemode=False,
        account="ed_test_1",
    )
    return dataclasses.replace(record, **changes)


RUN_STARTED = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def pipeline_run(run_id: str, started: datetime, **changes: Any) -> PipelineRun:
    """A backfill that ended with exit code 0 after 61 s; `changes` replace fields."""
    run = PipelineRun(
        run_id=run_id,
        job="backfill",
        arguments=("--source", "sample/archive", "--start", "2025-03-01"),
        runner="FnApiRunner",
        source="sample/archive",
        range_start=datetime(2025, 3, 1, tzinfo=UTC),
        range_end=None,
        started_at=started,
        ended_at=started + timedelta(seconds=61),
        exit_code=0,
        records_read=2264,
        processed=1176,
        skipped=1080,
        dead_lettered=8,
        rows_written=(
            TableRows("sent:thank_you_email", 0),
            TableRows("warehouse:contributions", 314),
        ),
        code_version="0.1.0",
        git_commit="0170fb1",
        dataflow_job_id=None,
        dataflow_project=None,
        dataflow_region=None,
        dataflow_state=None,
        recorded_at=started + timedelta(seconds=61),
    )
    return dataclasses.replace(run, **changes)


def submitted_run(run_id: str, started: datetime, **changes: Any) -> PipelineRun:
    """`pipeline_run` as submitted to Dataflow and not waited for: nothing known of its end."""
    submitted = pipeline_run(
        run_id,
        started,
        runner="DataflowRunner",
        ended_at=None,
        exit_code=None,
        records_read=None,
        processed=None,
        skipped=None,
        dead_lettered=None,
        rows_written=(),
        dataflow_job_id="2026-01-02_03_04_05-1",
        dataflow_project="test-project",
        dataflow_region="europe-west1",
        recorded_at=started,
    )
    return dataclasses.replace(submitted, **changes)
