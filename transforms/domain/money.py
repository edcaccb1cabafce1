"""Stripe amounts: integers in a currency's minor unit, to exact decimals.

Stripe's currency list: zero-decimal currencies take the amount as is,
three-decimal currencies divide by 1,000, everything else by 100. ISK is
zero-decimal in real life but Stripe's API carries it as a two-decimal
amount (ending in 00), and HUF and TWD are two-decimal in the API though
paid out in whole units, so all three divide by 100 here.
"""

from __future__ import annotations

from decimal import Decimal

ZERO_DECIMAL_CURRENCIES = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL_CURRENCIES = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])


class MoneyError(ValueError):
    """An amount or currency that cannot be converted exactly."""


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point of `currency`'s amounts in Stripe's API."""
    code = currency.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def to_major_units(amount_minor: int, currency: str) -> Decimal:
    """`amount_minor` in `currency`'s minor unit as an exact Decimal in major units.

    The result keeps the currency's scale (GBP 500 -> Decimal('5.00')), so it
    prints the way it is displayed and compares exactly.
    """
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise MoneyError(f"amount must be an integer of minor units, got {amount_minor!r}")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise MoneyError(f"not an ISO 4217 currency code: {currency!r}")
    return Decimal(amount_minor).scaleb(-currency_exponent(currency))


def format_amount(amount: Decimal, currency: str) -> str:
    """The amount as a string with exactly the currency's decimals ('5.00', '500')."""
    exponent = currency_exponent(currency)
    return f"{amount:.{exponent}f}"
