"""The ported publisher rules reject what the acquisitions publisher rejects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.transforms.sinks.publisher_schema import publisher_errors
from tests.transforms.sinks.test_eventbridge import EVENTS


def _envelope(**changes: Any) -> dict[str, Any]:
    detail = json.loads(EVENTS[0].message) | changes
    return {"detail": detail}


def test_our_event_is_accepted() -> None:
    assert publisher_errors(_envelope()) == []


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        (
            {"paymentProvider": "STRIPE_HOSTED_CHECKOUT"},
            "paymentProvider: 'STRIPE_HOSTED_CHECKOUT'",
        ),
        ({"country": "XK"}, "country: 'XK'"),
        ({"currency": "XYZ"}, "currency: 'XYZ'"),
        ({"amount": "5.00"}, "amount: '5.00'"),
        ({"product": "ONE_OFF"}, "product: 'ONE_OFF'"),
        ({"paymentFrequency": "WEEKLY"}, "paymentFrequency: 'WEEKLY'"),
        ({"readerType": "Patron"}, "readerType: 'Patron'"),
        ({"reusedExistingPaymentMethod": None}, "reusedExistingPaymentMethod: None"),
        ({"labels": None}, "labels: None"),
        ({"abTests": [{"name": "t"}]}, "abTests: [{'name': 't'}]"),
        (
            {"queryParameters": [{"key": "a", "value": "b"}]},
            "queryParameters: [{'key': 'a', 'value': 'b'}]",
        ),
        ({"campaignCode": ["a"]}, "campaignCode: ['a']"),
        ({"eventTimeStamp": None}, "eventTimeStamp: None"),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else None,
)
def test_each_rule_rejects_what_the_publisher_rejects(changes: dict[str, Any], error: str) -> None:
    assert publisher_errors(_envelope(**changes)) == [error]


def test_nullish_fields_may_be_null_or_absent() -> None:
    envelope = _envelope(amount=None, paymentProvider=None, platform=None)
    del envelope["detail"]["promoCode"]
    assert publisher_errors(envelope) == []
