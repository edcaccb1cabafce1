"""The contributions store queue's messages, in the exact format its writer reads.

Two bodies (DOMAIN.md section 4): `{"newContributionData": {...}}` for a
paid payment and `{"refundedPaymentId": "ch_..."}` once its charge is fully
refunded. Pure functions of the store record; the sink decides when.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from schemas.records import ContributionStoreRecord


def new_contribution_message(record: ContributionStoreRecord) -> str:
    """`{"newContributionData": ContributionData}`: the store's fields, names and order.

    `created` is an ISO local date-time in UTC without a zone; `identityId`
    a JSON number (the store keeps a number; an identity that is not one is
    sent as null); `amount` an exact JSON number in major units.
    """
    created = record.created.astimezone(UTC).replace(tzinfo=None)
    data: list[tuple[str, Any]] = [
        ("paymentProvider", record.payment_provider),
        ("paymentStatus", record.payment_status),
        ("paymentId", record.payment_id),
        ("identityId", _number_or_none(record.identity_id)),
        ("email", record.email),
        ("created", created.isoformat(timespec="seconds")),
        ("currency", record.currency),
        ("amount", _Number(format(record.amount, "f"))),
        ("countryCode", record.country_code),
        ("countrySubdivisionCode", record.country_subdivision_code),
        ("contributionId", record.contribution_id),
    ]
    inner = ",".join(f"{_encode(key)}:{_encode(value)}" for key, value in data)
    return '{"newContributionData":{' + inner + "}}"


def refunded_payment_message(payment_id: str) -> str:
    """`{"refundedPaymentId": "ch_..."}`."""
    return _encode({"refundedPaymentId": payment_id})


class _Number(str):
    """A JSON number kept as its exact decimal text."""


def _number_or_none(value: str | None) -> _Number | None:
    return _Number(str(int(value))) if value and value.isascii() and value.isdigit() else None


def _encode(value: Any) -> str:
    if isinstance(value, _Number):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
