"""Personal data removed from dead letters bound for BigQuery, by an allow-list."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.records import DeadLetter
from transforms.domain.redact import REDACTED, redact_personal_data, redacted

R = REDACTED

ENVELOPE = {
    "version": "0",
    "id": "env-1",
    "detail-type": "checkout.session.completed",
    "source": "aws.partner/stripe.com/ed_61RkUK0000000000000000",
    "time": "2025-03-01T10:00:00Z",
    "detail": {
        "id": "evt_1NVmq2LkdIwHu7ix",
        "type": "checkout.session.completed",
        "created": 1740823200,
        "livemode": True,
        "data": {
            "object": {
                "id": "cs_test_a1b2c3d4e5",
                "amount_total": 500,
                "currency": "gbp",
                "payment_intent": "pi_3MtwBwLkdIwHu7ix",
                "customer_details": {
                    "email": "ada@example.com",
                    "name": "Ada Reader",
                    "phone": None,
                    "address": {"country": "GB", "postal_code": "N1 9GU", "line1": "1 Road"},
                },
                "metadata": {
                    "identityId": "1001",
                    "referrerUrl": "https://www.example.com/?email=ada%40example.com",
                    "campaignCode": "SUMMER",
                },
                "custom_fields": [
                    {"key": "given", "text": {"value": "Ada"}, "type": "text"},
                ],
            }
        },
    },
}


def redact(value: Any) -> Any:
    return json.loads(redact_personal_data(json.dumps(value)))


def test_an_envelope_keeps_ids_types_amounts_times_and_loses_the_rest() -> None:
    assert redact(ENVELOPE) == {
        "version": "0",
        "id": "env-1",
        "detail-type": "checkout.session.completed",
        "source": "aws.partner/stripe.com/ed_61RkUK0000000000000000",
        "time": "2025-03-01T10:00:00Z",
        "detail": {
            "id": "evt_1NVmq2LkdIwHu7ix",
            "type": "checkout.session.completed",
            "created": 1740823200,
            "livemode": True,
            "data": {
                "object": {
                    "id": "cs_test_a1b2c3d4e5",
                    "amount_total": 500,
                    "currency": "gbp",
                    "payment_intent": "pi_3MtwBwLkdIwHu7ix",
                    "customer_details": {
                        "email": R,
                        "name": R,
                        "phone": None,
                        "address": {"country": "GB", "postal_code": R, "line1": R},
                    },
                    "metadata": {"identityId": "1001", "referrerUrl": R, "campaignCode": "SUMMER"},
                    "custom_fields": [{"key": R, "text": {"value": R}, "type": "text"}],
                }
            },
        },
    }


MESSAGE_BODY = {
    "To": {
        "Address": "ada@example.com",
        "ContactAttributes": {
            "SubscriberAttributes": {
                "edition": "uk",
                "first_name": "Ada",
                "payment method": "credit / debit card",
            }
        },
    },
    "IdentityUserId": "1001",
}
MESSAGE_BODY_REDACTED = {
    "To": {
        "Address": R,
        "ContactAttributes": {
            "SubscriberAttributes": {
                "edition": "uk",
                "first_name": R,
                "payment method": "credit / debit card",
            }
        },
    },
    "IdentityUserId": "1001",
}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {"firstName": "Ada", "lastName": "Lovelace", "postcode": "N1"},
            {"firstName": R, "lastName": R, "postcode": R},
        ),
        ({"fullName": "Ada Lovelace", "zip": "10001"}, {"fullName": R, "zip": R}),
        (
            {"phone_number": "+44 20 7946 0000", "phoneNumber": 442079460000},
            {"phone_number": R, "phoneNumber": R},
        ),
        (
            {"bacs_debit": {"account_holder_name": "A Lovelace", "last4": "2345"}},
            {"bacs_debit": {"account_holder_name": R, "last4": R}},
        ),
        ({"wallet": {"verified_name": "Ada L"}}, {"wallet": {"verified_name": R}}),
        ({"description": "Gift from Ada Lovelace, 1 Road"}, {"description": R}),
        (
            {"id": "ch_3Mtw ada%40example.com", "status": "ada%2540example.com"},
            {"id": f"ch_3Mtw {R}", "status": R},
        ),
        (
            {"identity_id": "1001", "event_id": "evt_1", "amount": "5.00"},
            {"identity_id": "1001", "event_id": "evt_1", "amount": "5.00"},
        ),
        (MESSAGE_BODY, MESSAGE_BODY_REDACTED),
        (
            {"abTests": [{"name": "test-1", "variant": "control"}], "labels": ["a", "b"]},
            {"abTests": [{"name": R, "variant": R}], "labels": ["a", "b"]},
        ),
    ],
    ids=[
        "camel-case-names-and-postcode",
        "full-name-and-zip",
        "phone-numbers",
        "account-holder-name",
        "verified-name",
        "free-text-description",
        "url-encoded-emails-in-kept-fields",
        "record-fields-kept",
        "email-message-body",
        "lists-inherit-their-field",
    ],
)
def test_only_allowed_fields_keep_their_values(
    payload: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert redact(payload) == expected


def test_a_double_encoded_envelope_is_redacted_inside() -> None:
    wrapped = {
        "id": "env-2",
        "detail": json.dumps({"id": "evt_2", "customer_email": "ada@example.com"}),
    }
    result = redact(wrapped)
    assert result["id"] == "env-2"
    assert json.loads(result["detail"]) == {"id": "evt_2", "customer_email": R}


def test_escaped_keys_are_read_as_the_keys_they_spell() -> None:
    raw = '{"\\u0065mail": "ada@example.com", "\\u0069d": "evt_3"}'
    assert json.loads(redact_personal_data(raw)) == {"email": R, "id": "evt_3"}


def test_an_internationalised_email_gives_valid_json() -> None:
    raw = json.dumps({"email": "zsófia.nagy@példa.hu", "type": "charge.failed"}, ensure_ascii=False)
    assert json.loads(redact_personal_data(raw)) == {"email": R, "type": "charge.failed"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            '{"detail":{"id":"evt_1NVmq2LkdIwHu7ix","data":{"object":{"customer_details":'
            '{"email":"ada@example.com","name":"Ada Reader","address":{"postal_code":"N1 9',
            {"unparsed": R, "stripe_ids": ["evt_1NVmq2LkdIwHu7ix"]},
        ),
        (
            "ContributionStoreRecord(payment_id='ch_3MtwBwLkdIwHu7ix', email='ada@example.com', "
            "postal_code='N1 9GU', country_subdivision_code=None, amount=Decimal('1E+35'))",
            {
                "unparsed": R,
                "stripe_ids": ["ch_3MtwBwLkdIwHu7ix"],
                "record": "ContributionStoreRecord",
                "fields": {"payment_id": "ch_3MtwBwLkdIwHu7ix", "amount": "Decimal('1E+35')"},
            },
        ),
        ("garbage mentioning ada@example.com", {"unparsed": R, "stripe_ids": []}),
    ],
    ids=["truncated-json", "record-repr", "free-text"],
)
def test_text_that_is_not_json_keeps_only_ids_and_allowed_repr_fields(
    raw: str, expected: dict[str, Any]
) -> None:
    assert json.loads(redact_personal_data(raw)) == expected


def test_redacted_keeps_the_dead_letter_identity_and_where_to_find_the_record() -> None:
    letter = DeadLetter(
        dead_letter_id="abc",
        step="write_contributions_store",
        reason="invalid_row",
        error="email ada@example.com rejected",
        raw="X(email='ada@example.com')",
        source="s3://archive/2025/03/01/00/f.gz@120",
        event_id="evt_1",
        time=datetime(2025, 3, 1, tzinfo=UTC),
    )
    assert redacted(letter) == DeadLetter(
        dead_letter_id="abc",
        step="write_contributions_store",
        reason="invalid_row",
        error=f"email {R} rejected",
        raw='{"fields": {}, "record": "X", "stripe_ids": [], "unparsed": "[redacted]"}',
        source="s3://archive/2025/03/01/00/f.gz@120",
        event_id="evt_1",
        time=datetime(2025, 3, 1, tzinfo=UTC),
    )
