"""Personal data out of dead letters bound for the analytics warehouse.

A dead letter keeps its raw input so an operator can see what failed. In
BigQuery, which analysts query, that input must not carry personal data: the
raw record can always be fetched again from where `source` says it is (the
S3 archive or the Kinesis stream). `redact_personal_data` replaces, in JSON
text and in record reprs, the values of the fields that hold emails, names,
addresses and phone numbers, and any email address left anywhere else.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from schemas.records import DeadLetter

REDACTED = "[redacted]"

# Keys whose values are personal data, in Stripe objects, our records and
# the email message body. Compared lower-cased.
PERSONAL_KEYS = frozenset(
    {
        "address",
        "billing_details",
        "shipping",
        "shipping_details",
        "customer_details",
        "email",
        "customer_email",
        "receipt_email",
        "emailaddress",
        "subscriberkey",
        "name",
        "first_name",
        "last_name",
        "phone",
        "postal_code",
        "country_subdivision_code",
        "state",
        "line1",
        "line2",
        "city",
    }
)

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_KEYS = "|".join(sorted(PERSONAL_KEYS))
# key='value' or key="value" in a dataclass repr.
_REPR_FIELD = re.compile(r"\b(" + _KEYS + r")=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")
# "key": "value" in JSON text too broken to parse (e.g. a truncated record).
_JSON_FIELD = re.compile(r'"(' + _KEYS + r')"\s*:\s*"(?:[^"\\]|\\.)*(?:"|$)', re.IGNORECASE)


def redact_personal_data(raw: str) -> str:
    """`raw` with personal values replaced by `[redacted]`; the rest unchanged."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        text = _REPR_FIELD.sub(lambda m: f"{m.group(1)}='{REDACTED}'", raw)
        text = _JSON_FIELD.sub(lambda m: f'"{m.group(1)}": "{REDACTED}"', text)
        return _EMAIL.sub(REDACTED, text)
    return _EMAIL.sub(REDACTED, json.dumps(_redact(parsed), sort_keys=True))


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: REDACTED if key.lower() in PERSONAL_KEYS and item is not None else _redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact(item) for item in value]
    return value


def redacted(letter: DeadLetter) -> DeadLetter:
    """The dead letter with personal data removed from `raw` and `error`.

    `dead_letter_id` is kept: it identifies the failure, not the text.
    """
    return replace(
        letter,
        raw=redact_personal_data(letter.raw),
        error=_EMAIL.sub(REDACTED, letter.error),
    )
