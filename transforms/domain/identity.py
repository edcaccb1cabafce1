"""Which payers need an identity, and what the Identity API's answer does to a payment.

Today's payment API gets or creates an identity (a guest account) by email
for every payment, so that guests too get their thank-you email, supporter
item and soft opt-in. The pipeline does the same for a paid payment whose
session names no identity; the calls themselves are IO and live in
`transforms.services.identity`. Pure rules only here:

- `needs_identity(payment)`: a paid payment whose session named no identity;
- `skipped_outcome(payment, stripe_mode)`: why such a payment is not looked
  up: a test-mode payment unless the run serves the test stage (a
  `--stripe_mode test` deployment is given the CODE Identity API; any other
  run's is production's, and creating a guest account sends the reader an
  email), or a missing or malformed email (`is_valid_email`), which never
  reaches the API;
- `IdentityOutcome`: found, created, unavailable (the API could not answer
  after its retries: the payer keeps going as a guest, as today), or skipped;
  each is a counter (`identity_<outcome>`), never a column;
- `with_identity(payment, identity_id)`: the payment carrying the identity,
  from which every record is then built;
- `guest_registration(email)`: the body of the guest account request.
"""

from __future__ import annotations

import re
from dataclasses import replace
from enum import Enum
from typing import Any

from transforms.domain.facts import LIVE_MODE, TEST_MODE
from transforms.domain.mapping import identity_id
from transforms.domain.payment import PAID_STATUS, Payment

#: RFC 5321's limits: 64 characters before the @, 254 in all.
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254
#: One @, no whitespace or control characters, a dotted domain of letters,
#: digits and hyphens (IDNs arrive from Checkout in their ASCII form).
_LOCAL_PART = re.compile(r"[^\s@\x00-\x1f\x7f]+")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")


class IdentityOutcome(Enum):
    """What happened to the identity of one payment that had none."""

    FOUND = "found"
    CREATED = "created"
    UNAVAILABLE = "unavailable"
    SKIPPED_NO_VALID_EMAIL = "skipped_no_valid_email"
    SKIPPED_TEST_MODE = "skipped_test_mode"


def is_valid_email(address: str | None) -> bool:
    """True for an address worth sending to the Identity API (see `_LOCAL_PART`)."""
    if not address or len(address) > MAX_ADDRESS or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    if len(local) > MAX_LOCAL_PART or not _LOCAL_PART.fullmatch(local):
        return False
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    labels = domain.split(".")
    return len(labels) >= 2 and all(_DOMAIN_LABEL.fullmatch(label) for label in labels)


def needs_identity(payment: Payment) -> bool:
    """A paid payment whose session named no identity."""
    return payment.status == PAID_STATUS and identity_id(payment) is None


def skipped_outcome(payment: Payment, stripe_mode: str = LIVE_MODE) -> IdentityOutcome | None:
    """Why a payment that needs an identity is not looked up, or None to look it up.

    `stripe_mode` is the run's (`--stripe_mode`): only a `test` run, whose
    Identity API is the CODE one, looks up test-mode payments.
    """
    if not payment.session.meta.livemode and stripe_mode != TEST_MODE:
        return IdentityOutcome.SKIPPED_TEST_MODE
    if not is_valid_email(payment.session.customer.email):
        return IdentityOutcome.SKIPPED_NO_VALID_EMAIL
    return None


def with_identity(payment: Payment, identity: str | None) -> Payment:
    """The payment carrying the identity the API gave it (unchanged for a guest)."""
    if identity is None:
        return payment
    return replace(payment, identity_id=identity)


def guest_registration(email: str) -> dict[str, Any]:
    """The guest account request for `email` (a valid one): display name = the part before @."""
    return {"primaryEmailAddress": email, "publicFields": {"displayName": email.split("@")[0]}}
