"""Personal data out of dead letters bound for the analytics warehouse.

A dead letter keeps its raw input so an operator can see what failed. In
BigQuery, which analysts query, that input must not carry personal data: the
raw record can always be fetched again from where `source` says it is (the
S3 archive or the Kinesis stream).

Redaction keeps what is known to be harmless and replaces everything else:
an allow-list of field names whose values are ids, types, amounts,
currencies, times, statuses and flags (`ALLOWED_FIELDS`). A deny-list of
personal keys cannot keep up with Stripe's payloads (camelCase copies,
`custom_fields`, `account_holder_name`, free-text descriptions, ...), an
allow-list fails safe. The structure stays (keys, nesting, list lengths), so
an operator still sees which field was odd; a string value that is itself a
JSON document (a double-encoded envelope) is redacted inside. Kept strings
lose anything that looks like an email address, plain or URL-encoded. Raw
text that is not JSON (a truncated record, a record's repr) keeps only the
Stripe ids it mentions and, for a repr, its allowed fields. The result is
always valid JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from schemas.records import DeadLetter

REDACTED = "[redacted]"


def _normalised(name: str) -> str:
    """A field name compared without case or separators: `identityId` == `identity_id`."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


#: Fields whose values are not personal: ids, types, amounts, currencies, times,
#: statuses and flags of Stripe objects, EventBridge envelopes, our records and
#: message bodies; and the attribution keys of a session's metadata, apart from
#: the free-text ones (URLs and query parameters may carry an email).
ALLOWED_FIELDS = frozenset(
    _normalised(name)
    for name in (
        # EventBridge envelope and Stripe event
        "version", "id", "detail-type", "source", "account", "time", "region", "resources",
        "replay-name", "object", "api_version", "created", "livemode", "pending_webhooks",
        "idempotency_key", "type",
        # Stripe objects
        "amount", "amount_total", "amount_subtotal", "amount_refunded", "amount_received",
        "amount_captured", "amount_capturable", "currency", "status", "payment_status", "mode",
        "payment_intent", "latest_charge", "charge", "has_more", "payment_method",
        "payment_method_types", "country", "brand", "funding", "network", "reason",
        "failure_code", "outcome", "risk_level", "refunded", "captured", "paid", "disputed",
        "balance_transaction", "client_reference_id", "expires_at", "livemode", "locale",
        "submit_type", "customer",
        # session metadata (attribution)
        "identityId", "componentId", "componentType", "platform", "campaignCode", "abTests",
        "name_variant", "pageviewId", "referrerPageviewId", "browserId", "labels",
        "similarProductsConsent",
        # our records and dead letters
        "payment_id", "contribution_id", "identity_id", "event_id", "dead_letter_id",
        "checkout_session", "events", "amount_minor", "country_code", "payment_provider",
        "payment_frequency", "product", "event_timestamp", "event_time_stamp", "adjustment_id",
        "kind", "step", "subscription_name", "product_rate_plan_id", "contract_effective_date",
        "term_end_date", "expiry_date", "contribution_amount", "contribution_currency",
        # message bodies
        "DataExtensionName", "IdentityUserId", "edition", "payment method", "subscriptionId",
        "eventType", "productName", "date_of_payment",
    )
)  # fmt: skip

#: Stripe ids, kept from text that is not JSON so the letter can still be traced.
_STRIPE_ID = re.compile(r"\b(?:evt|ch|py|pi|cs|re|pyr|dp|du|cus|pm|src|ed)_[A-Za-z0-9_]{6,}\b")
_EMAIL = re.compile(
    r"[A-Za-z0-9._%+-]+(?:@|%40|%2540|\\u0040)[A-Za-z0-9.-]+\.[A-Za-z]{2,}", re.IGNORECASE
)
# field='value', field="value" or field=token in a dataclass repr.
_REPR_FIELD = re.compile(
    r"\b([A-Za-z_][A-Za-z0-9_]*)=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^,()\s]+(?:\([^()]*\))?)"
)
_REPR_NAME = re.compile(r"^\s*([A-Z][A-Za-z0-9_]*)\(")


def redact_personal_data(raw: str) -> str:
    """`raw` as JSON with every value outside `ALLOWED_FIELDS` replaced by `[redacted]`."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return _dump(_unparsed(raw))
    return _dump(_redact(parsed, allowed=False))


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _redact(value: Any, *, allowed: bool) -> Any:
    """`value` with the scalars under names outside the allow-list replaced.

    `allowed`: whether the field holding `value` is on the allow-list (list
    items inherit their field's verdict).
    """
    if isinstance(value, dict):
        return {
            str(key): _redact(item, allowed=_normalised(str(key)) in ALLOWED_FIELDS)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact(item, allowed=allowed) for item in value]
    if isinstance(value, str):
        nested = _json_document(value)
        if nested is not None:
            return _dump(_redact(nested, allowed=False))
        return _scrubbed(value) if allowed else REDACTED
    if value is None or allowed:
        return value
    return REDACTED


def _json_document(text: str) -> Any:
    """The object or array `text` encodes, or None when it is not one."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return None


def _scrubbed(text: str) -> str:
    return _EMAIL.sub(REDACTED, text)


def _unparsed(raw: str) -> dict[str, Any]:
    """What may be kept of text that is not JSON: its Stripe ids, and a repr's allowed fields."""
    kept: dict[str, Any] = {
        "unparsed": REDACTED,
        "stripe_ids": sorted(set(_STRIPE_ID.findall(raw))),
    }
    name = _REPR_NAME.match(raw)
    if name:
        kept["record"] = name.group(1)
        kept["fields"] = {
            field: _scrubbed(text.strip("'\""))
            for field, text in _REPR_FIELD.findall(raw)
            if _normalised(field) in ALLOWED_FIELDS
        }
    return kept


def redacted(letter: DeadLetter) -> DeadLetter:
    """The dead letter with personal data removed from `raw` and `error`.

    `dead_letter_id` is kept: it identifies the failure, not the text.
    """
    return replace(letter, raw=redact_personal_data(letter.raw), error=_scrubbed(letter.error))
