"""Minor units to exact major units: the exponent table, scale and rejections."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from transforms.domain.money import MoneyError, currency_exponent, format_amount, to_major_units


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("JPY", 0),
        ("KRW", 0),
        ("XOF", 0),
        ("GBP", 2),
        ("USD", 2),
        ("EUR", 2),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("ISK", 2),
        ("HUF", 2),
        ("TWD", 2),
        ("jpy", 0),
        ("kwd", 3),
        ("gbp", 2),
    ],
    ids=lambda value: str(value),
)
def test_currency_exponent(currency: str, exponent: int) -> None:
    assert currency_exponent(currency) == exponent


@pytest.mark.parametrize(
    ("amount_minor", "currency", "expected"),
    [
        (500, "JPY", "500"),
        (500, "GBP", "5.00"),
        (5230, "KWD", "5.230"),
        (5230, "BHD", "5.230"),
        (50000, "ISK", "500.00"),
        (150000, "HUF", "1500.00"),
        (10000, "TWD", "100.00"),
        (500, "gbp", "5.00"),
        (500, "jpy", "500"),
        (5230, "kwd", "5.230"),
        (0, "GBP", "0.00"),
        (1, "GBP", "0.01"),
        (99999999, "USD", "999999.99"),
        (-500, "GBP", "-5.00"),
    ],
    ids=[
        "jpy-zero-decimal",
        "gbp-two-decimal",
        "kwd-three-decimal",
        "bhd-three-decimal",
        "isk-sent-as-two-decimal",
        "huf-two-decimal-in-api",
        "twd-two-decimal-in-api",
        "lower-case-gbp",
        "lower-case-jpy",
        "lower-case-kwd",
        "zero-keeps-scale",
        "one-penny",
        "stripe-maximum",
        "negative",
    ],
)
def test_to_major_units_is_exact_and_keeps_scale(
    amount_minor: int, currency: str, expected: str
) -> None:
    result = to_major_units(amount_minor, currency)

    assert result == Decimal(expected)
    # Equal Decimals can differ in scale (5 == 5.00); the scale is part of the contract.
    assert str(result) == expected
    assert result.as_tuple() == Decimal(expected).as_tuple()


def test_to_major_units_never_divides_by_100_blindly() -> None:
    assert [to_major_units(500, c) for c in ("JPY", "GBP", "KWD")] == [
        Decimal("500"),
        Decimal("5.00"),
        Decimal("0.500"),
    ]


@pytest.mark.parametrize(
    ("amount_minor", "currency"),
    [
        (5.0, "GBP"),
        (True, "GBP"),
        (False, "GBP"),
        ("500", "GBP"),
        (None, "GBP"),
        (Decimal("500"), "GBP"),
        (500, "GB"),
        (500, "GBPX"),
        (500, ""),
        (500, "G1P"),
        (500, 826),
        (500, None),
    ],
    ids=[
        "float-amount",
        "bool-true-amount",
        "bool-false-amount",
        "string-amount",
        "none-amount",
        "decimal-amount",
        "two-letter-code",
        "four-letter-code",
        "empty-code",
        "digit-in-code",
        "numeric-code",
        "none-code",
    ],
)
def test_to_major_units_rejects(amount_minor: Any, currency: Any) -> None:
    with pytest.raises(MoneyError):
        to_major_units(amount_minor, currency)


def test_money_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^amount must be an integer of minor units, got 5\.0$"):
        to_major_units(5.0, "GBP")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^not an ISO 4217 currency code: 'GB'$"):
        to_major_units(500, "GB")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("5.00"), "GBP", "5.00"),
        (Decimal("5"), "GBP", "5.00"),
        (Decimal("5.5"), "USD", "5.50"),
        (Decimal("500"), "JPY", "500"),
        (Decimal("5.23"), "KWD", "5.230"),
        (Decimal("5.230"), "kwd", "5.230"),
        (Decimal("1500.00"), "HUF", "1500.00"),
        (Decimal("0E-2"), "GBP", "0.00"),
    ],
    ids=[
        "gbp-scaled",
        "gbp-unscaled-padded",
        "usd-one-decimal-padded",
        "jpy-no-decimals",
        "kwd-padded-to-three",
        "kwd-lower-case",
        "huf-two-decimals",
        "zero",
    ],
)
def test_format_amount(amount: Decimal, currency: str, expected: str) -> None:
    assert format_amount(amount, currency) == expected


@pytest.mark.parametrize(
    ("amount_minor", "currency", "expected"),
    [(500, "GBP", "5.00"), (500, "JPY", "500"), (5230, "KWD", "5.230")],
    ids=["gbp", "jpy", "kwd"],
)
def test_format_amount_round_trips_to_major_units(
    amount_minor: int, currency: str, expected: str
) -> None:
    assert format_amount(to_major_units(amount_minor, currency), currency) == expected
