"""The generator's vocabulary: accounts, API versions, records and the plan of an item.

Planning (`plan`) fills `Item`s and `PaymentPlan`s; rendering (`render`) turns them
into `ArrivedRecord`s. The small random helpers live here because both use them.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

DEFAULT_START = datetime(2025, 3, 1, tzinfo=UTC)
DEFAULT_STREAM = "stripe-events-archive"
AWS_ACCOUNT = "123456789012"
AWS_REGION = "eu-west-1"

#: API versions the event destinations are pinned to, oldest first. Real destinations
#: pin one version each; spreading versions per payment makes every shape appear under
#: every account.
API_VERSIONS: tuple[str, ...] = (
    "2020-08-27",
    "2022-08-01",
    "2022-11-15",
    "2023-08-16",
    "2023-10-16",
    "2024-04-10",
    "2024-06-20",
    "2024-09-30.acacia",
    "2025-01-27.acacia",
    "2025-03-31.basil",
)
#: From this version a PaymentIntent carries `latest_charge` instead of a `charges` list.
LATEST_CHARGE_SINCE = "2022-11-15"
#: From this version a Charge no longer carries `invoice`.
BASIL_SINCE = "2025-03-31.basil"

#: Exponent of each currency the generator uses (Stripe: KWD is three-decimal and
#: amounts must end in 0; JPY is zero-decimal).
CURRENCY_EXPONENTS: dict[str, int] = {"gbp": 2, "usd": 2, "aud": 2, "eur": 2, "jpy": 0, "kwd": 3}

MALFORMED_KINDS: tuple[str, ...] = (
    "truncated_json",
    "not_json",
    "not_an_envelope",
    "detail_without_id",
)
DELIVERY_KINDS: tuple[str, ...] = ("original", "redelivery", "replay", "firehose_duplicate")
#: `PlannedEvent.step` of the events of a declined card attempt (other events: 0,
#: refunds: their index).
DECLINED_ATTEMPT = -1


@dataclass(frozen=True)
class StripeAccount:
    """One Stripe account and the EventBridge partner sources it delivers through."""

    name: str
    country: str
    live_source: str
    test_source: str
    #: (currency, weight) for card payments.
    currencies: tuple[tuple[str, float], ...]


ACCOUNTS: tuple[StripeAccount, ...] = (
    StripeAccount(
        "uk",
        "GB",
        "ed_61SFakeUkLiveDestinati0nA1",
        "ed_test_61SFakeUkTestDestinat1onB2",
        (("gbp", 0.86), ("eur", 0.06), ("usd", 0.04), ("jpy", 0.02), ("kwd", 0.02)),
    ),
    StripeAccount(
        "au",
        "AU",
        "ed_61SFakeAuLiveDestinati0nC3",
        "ed_test_61SFakeAuTestDestinat1onD4",
        (("aud", 0.9), ("usd", 0.06), ("jpy", 0.02), ("kwd", 0.02)),
    ),
    StripeAccount(
        "us",
        "US",
        "ed_61SFakeUsLiveDestinati0nE5",
        "ed_test_61SFakeUsTestDestinat1onF6",
        (("usd", 0.92), ("eur", 0.04), ("jpy", 0.02), ("kwd", 0.02)),
    ),
)
ACCOUNT_WEIGHTS = (0.6, 0.15, 0.25)


_ALPHABET = string.digits + string.ascii_letters


AMOUNTS_MAJOR_2DP = (300, 500, 737, 1000, 1234, 1500, 2000, 2500, 5000, 10000, 15000)
_AMOUNTS_JPY = (300, 500, 1000, 1500, 3000, 5000, 10000)
_AMOUNTS_KWD = (1000, 1250, 2500, 5000, 12340, 20000)


@dataclass(frozen=True)
class ArrivedRecord:
    """One Firehose/Kinesis record: its bytes (no delimiter) and arrival time.

    `kind` is a delivery kind (`DELIVERY_KINDS`) for envelopes, or a malformed kind
    (`MALFORMED_KINDS`).
    """

    arrival_ms: int
    data: bytes
    kind: str

    @property
    def malformed(self) -> bool:
        return self.kind in MALFORMED_KINDS


@dataclass(slots=True)
class PlannedEvent:
    """One Stripe event of an item: its type, creation second and its deliveries."""

    type: str
    created: int
    step: int = 0
    deliveries: list[tuple[int, str]] = field(default_factory=list)
    export: bool = False


@dataclass(slots=True)
class Item:
    """Something that puts records on the stream: a payment, a noise source or junk.

    Planning fixes everything the truth needs (ids, amounts, times, deliveries);
    rendering fills cosmetic fields from an rng seeded by the item, so that an item
    renders the same bytes every time and independently of the others.
    """

    index: int
    kind: str  # payment | expired | subscription | setup | unrelated | thin | <malformed kind>
    t0: int  # epoch seconds; no record of the item arrives earlier
    account: StripeAccount
    livemode: bool
    api_version: str
    events: list[PlannedEvent] = field(default_factory=list)
    payment: PaymentPlan | None = None

    @property
    def source(self) -> str:
        return self.account.live_source if self.livemode else self.account.test_source


@dataclass(slots=True)
class PaymentPlan:
    flow: str
    method: str
    currency: str
    amount: int
    card_country: str | None
    address_country: str | None
    identity_id: str | None
    identity_source: str | None
    cs_id: str
    pi_id: str
    ch_id: str
    refunds: list[tuple[str, int]]  # (re_ id, amount)
    dispute_id: str | None
    dispute_outcome: str | None
    features: list[str]
    bad_ab_tests: bool
    reader: int
    #: A card declined on the page before the debit that settles the payment.
    declined_charge_id: str | None = None
    declined_card_country: str | None = None


def reader_email(reader: int) -> str:
    """The email address a simulated reader pays with."""
    return f"reader{reader}@example.com"


def token(rng: random.Random, n: int) -> str:
    bits = rng.getrandbits(6 * n)
    return "".join(_ALPHABET[(bits >> (6 * i)) % 62] for i in range(n))


def random_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(int(epoch_s), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def latency_ms(rng: random.Random) -> int:
    return rng.randint(150, 2500)


def round_step(currency: str) -> int:
    # Stripe requires three-decimal amounts to end in 0.
    return 10 if CURRENCY_EXPONENTS[currency] == 3 else 1


def pick_amount(rng: random.Random, currency: str) -> int:
    if currency == "jpy":
        return rng.choice(_AMOUNTS_JPY)
    if currency == "kwd":
        return rng.choice(_AMOUNTS_KWD)
    return rng.choice(AMOUNTS_MAJOR_2DP)


def weighted(rng: random.Random, pairs: Sequence[tuple[str, float]]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]
