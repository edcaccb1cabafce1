"""Personal data removed from dead letters bound for BigQuery."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from schemas.records import DeadLetter
from transforms.domain.redact import redact_personal_data, redacted

ENVELOPE = {
    "id": "env-1",
    "detail": {
        "id": "evt_1",
        "data": {
            "object": {
                "customer_details": {"email": "ada@example.com", "name": "Ada Reader"},
                "metadata": {"identityId": "1001"},
                "amount_total": 500,
            }
        },
    },
}
EMAIL_BODY = {
    "To": {
        "Address": "ada@example.com",
        "SubscriberKey": "ada@example.com",
        "ContactAttributes": {
            "SubscriberAttributes": {
                "EmailAddress": "ada@example.com",
                "edition": "uk",
                "first_name": "Ada",
            }
        },
    },
    "IdentityUserId": "1001",
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            json.dumps(ENVELOPE),
            json.dumps(
                {
                    "detail": {
                        "data": {
                            "object": {
                                "amount_total": 500,
                                "customer_details": "[redacted]",
                                "metadata": {"identityId": "1001"},
                            }
                        },
                        "id": "evt_1",
                    },
                    "id": "env-1",
                },
                sort_keys=True,
            ),
        ),
        (
            json.dumps(EMAIL_BODY),
            json.dumps(
                {
                    "IdentityUserId": "1001",
                    "To": {
                        "Address": "[redacted]",
                        "ContactAttributes": {
                            "SubscriberAttributes": {
                                "EmailAddress": "[redacted]",
                                "edition": "uk",
                                "first_name": "[redacted]",
                            }
                        },
                        "SubscriberKey": "[redacted]",
                    },
                },
                sort_keys=True,
            ),
        ),
        (
            "ContributionStoreRecord(payment_id='ch_1', email='ada@example.com', "
            "postal_code='N1 9GU', country_subdivision_code=None, amount=Decimal('1E+35'))",
            "ContributionStoreRecord(payment_id='ch_1', email='[redacted]', "
            "postal_code='[redacted]', country_subdivision_code=None, amount=Decimal('1E+35'))",
        ),
        (
            '{"detail":{"data":{"object":{"customer_details":{"email":"ada@example.com",'
            '"name":"Ada Reader","address":{"postal_code":"N1 9',
            '{"detail":{"data":{"object":{"customer_details":{"email": "[redacted]",'
            '"name": "[redacted]","address":{"postal_code": "[redacted]"',
        ),
        ("garbage mentioning ada@example.com", "garbage mentioning [redacted]"),
        ('{"id": "evt_2", "type": "invoice.paid"}', '{"id": "evt_2", "type": "invoice.paid"}'),
    ],
    ids=[
        "envelope",
        "email-message-body",
        "record-repr",
        "truncated-json",
        "free-text-email",
        "nothing-personal",
    ],
)
def test_redact_personal_data(raw: str, expected: str) -> None:
    assert redact_personal_data(raw) == expected


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
        error="email [redacted] rejected",
        raw="X(email='[redacted]')",
        source="s3://archive/2025/03/01/00/f.gz@120",
        event_id="evt_1",
        time=datetime(2025, 3, 1, tzinfo=UTC),
    )
