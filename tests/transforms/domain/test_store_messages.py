"""The contributions store queue's two message bodies, exactly as its writer reads them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.builders import store_record
from transforms.domain.store_messages import new_contribution_message, refunded_payment_message


def test_new_contribution_data_has_the_store_fields_in_order() -> None:
    record = store_record("ch_1", country_subdivision_code="CA", postal_code="N1 9GU")

    assert new_contribution_message(record) == (
        '{"newContributionData":{"paymentProvider":"Stripe","paymentStatus":"Paid",'
        '"paymentId":"ch_1","identityId":42,"email":"reader@example.com",'
        '"created":"2025-03-05T14:30:01","currency":"GBP","amount":10.00,"countryCode":"GB",'
        '"countrySubdivisionCode":"CA","contributionId":"uuid-ch_1"}}'
    )


@pytest.mark.parametrize(
    ("identity", "amount", "expected"),
    [
        ("0042", Decimal("500"), '"identityId":42,'),
        (None, Decimal("500"), '"identityId":null,'),
        ("guest-7", Decimal("500"), '"identityId":null,'),
        ("1", Decimal("5.230"), '"amount":5.230,'),
        ("1", Decimal("500"), '"amount":500,'),
    ],
    ids=["leading-zeros", "no-identity", "not-a-number", "three-decimals", "zero-decimals"],
)
def test_identity_is_a_number_and_amount_exact(
    identity: str | None, amount: Decimal, expected: str
) -> None:
    assert expected in new_contribution_message(store_record(identity_id=identity, amount=amount))


def test_refunded_payment_id() -> None:
    assert refunded_payment_message("ch_9") == '{"refundedPaymentId":"ch_9"}'
