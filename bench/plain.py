"""The whole backfill in one plain Python process: the bench's independent baseline.

    python -m bench.plain --archive ARCHIVE_FOLDER --warehouse OUT.duckdb

Same archive in, the same nine DuckDB tables out as `python -m
pipelines.backfill --source ARCHIVE_FOLDER --warehouse OUT.duckdb` (no time
range, test mode included, the default one-hour charge wait), written
independently of the project's code: no Beam, and none of `transforms/`.
It reads only `schemas/` (to create the same tables with the same Arrow
types) and follows the rules of README.md and DOMAIN.md:

1. read every file under the folder (gzip by its magic bytes, concatenated
   members too), split it into JSON values (delimited by whitespace or
   concatenated), parse each once with orjson; an undecodable stretch ends at
   the next newline or at the next `{` that starts a whole record;
2. decode envelopes, bare snapshot events and thin events, classify each
   event (session, charge or PaymentIntent outcome, charge.refunded, refund
   object, dispute, skip), dead-letter what cannot be read;
3. keep one copy per event id (one that names its account wins), join a
   PaymentIntent's facts once the input has ended (every deadline passed; a
   failed payment is its latest failed attempt), build every record (the
   acquisitions bus event's JSON too), fold refunds into the store's status
   (`contributions` keeps each payment as paid, as the warehouse does);
4. keep one row per natural key (the greatest, as the warehouse's upsert
   does: refund.created and refund.updated of one refund are one row) and
   write each table with one Arrow insert.

It holds every fact in memory, so its memory grows with the archive: it is
the speed to aim at, not a design. Prints `records read: N` and the rows
per table. It exists so that the bench can compare the backfill with the
fastest honest plain-Python job; it is not a second pipeline to run.
"""

from __future__ import annotations

import gc
import sys

if __name__ == "__main__":
    # As the backfill does when started as a script: no collections while the
    # imports run, then what they made is frozen out of the collector's view.
    gc.disable()

import hashlib
import json
import os
import re
import uuid
import zlib
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from pipelines.flags import FlagParser
from schemas.generate import arrow_schema, columns, duckdb_ddl, table_of
from schemas.records import (
    ALL_RECORD_TYPES,
    Acquisition,
    AcquisitionEvent,
    Contribution,
    ContributionStoreRecord,
    DeadLetter,
    PaymentAdjustment,
    SoftOptIn,
    SupporterProductData,
    ThankYouEmail,
)

CHARGE_WAIT_SECONDS = 3600
CONTRIBUTION_NAMESPACE = uuid.UUID("6f1f6c2e-3b0a-5b8e-9d7c-2a4e8f0c1b35")
ZERO_DECIMAL = frozenset(
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
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
EDITIONS = {"GBP": "uk", "USD": "us", "AUD": "au"}
# The email's `payment method`: cards and wallets, bank debits, Stripe's own names, else words.
CARDS = frozenset(
    [
        "card",
        "card_present",
        "kr_card",
        "link",
        "apple_pay",
        "google_pay",
        "samsung_pay",
        "amazon_pay",
        "revolut_pay",
        "cashapp",
        "mobilepay",
    ]
)
DEBITS = frozenset(
    [
        "bacs_debit",
        "sepa_debit",
        "au_becs_debit",
        "nz_bank_account",
        "us_bank_account",
        "acss_debit",
    ]
)
METHOD_NAMES = {
    "affirm": "Affirm",
    "afterpay_clearpay": "Afterpay / Clearpay",
    "alipay": "Alipay",
    "alma": "Alma",
    "bancontact": "Bancontact",
    "blik": "BLIK",
    "boleto": "Boleto",
    "customer_balance": "bank transfer",
    "eps": "EPS",
    "fpx": "FPX",
    "giropay": "giropay",
    "grabpay": "GrabPay",
    "ideal": "iDEAL",
    "kakao_pay": "Kakao Pay",
    "klarna": "Klarna",
    "konbini": "Konbini",
    "multibanco": "Multibanco",
    "naver_pay": "Naver Pay",
    "oxxo": "OXXO",
    "p24": "Przelewy24",
    "pay_by_bank": "Pay by Bank",
    "payco": "PAYCO",
    "paynow": "PayNow",
    "paypal": "PayPal",
    "pix": "Pix",
    "promptpay": "PromptPay",
    "satispay": "Satispay",
    "sofort": "Sofort",
    "swish": "Swish",
    "twint": "TWINT",
    "wechat_pay": "WeChat Pay",
    "zip": "Zip",
}
PLATFORMS = {"iosnativeapp": "IOS_NATIVE_APP", "androidnativeapp": "ANDROID_NATIVE_APP"}
#: The backfill's default --acquisition_payment_provider.
PAYMENT_PROVIDER = "STRIPE"
SESSION_TYPES = {
    "checkout.session.completed": None,
    "checkout.session.async_payment_succeeded": "async_succeeded",
    "checkout.session.async_payment_failed": "async_failed",
}
DISPUTES = frozenset(
    "charge.dispute." + s
    for s in ("created", "updated", "closed", "funds_withdrawn", "funds_reinstated")
)
REFUND_OBJECTS = frozenset(
    ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")
)
PARTNER = re.compile(r"^aws\.partner/stripe\.com/(ed_[A-Za-z0-9_]+)$")
WHITESPACE = re.compile(rb"[ \t\r\n]*")
# Where a record may end: a closing brace before the next one (or the end).
RECORD_END = re.compile(rb"\}(?=[ \t\r\n]*\{|[ \t\r\n]*\Z|[ \t\r]*\n)")
MAX_RECORD = 1 << 20
GZIP = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
_stdlib = json.JSONDecoder()


class Reject(Exception):
    """A record or event that becomes a dead letter: (step, reason, message)."""

    def __init__(self, step: str, reason: str, message: str, event_id: str | None = None):
        super().__init__(message)
        self.step, self.reason, self.message, self.event_id = step, reason, message, event_id


# --------------------------------------------------------------------- reading


def decompress(data: bytes) -> bytes:
    if not data.startswith(GZIP):
        return data
    out = []
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out.append(inflater.decompress(data))
        if not inflater.eof:
            raise EOFError("gzip stream ends before its end marker")
        data = inflater.unused_data
    return b"".join(out)


def split(buf: bytes) -> Iterator[tuple[int, bytes, Any]]:
    """(offset, bytes, parsed value or None) for every value or undecodable stretch in `buf`."""
    pos = len(BOM) if buf.startswith(BOM) else 0
    size = len(buf)
    while True:
        pos = WHITESPACE.match(buf, pos).end()  # type: ignore[union-attr]
        if pos >= size:
            return
        span = _fast_value(buf, pos) if buf[pos] == 0x7B else None  # "{"
        if span is None:
            span = _slow_value(buf, pos)
        yield span[0], span[1], span[2]
        pos = span[3]


def _fast_value(buf: bytes, pos: int) -> tuple[int, bytes, Any, int] | None:
    """The object at `pos`, parsed, if one of the next few closing braces ends it."""
    found = RECORD_END.search(buf, pos)
    for _ in range(4):
        if found is None or found.end() - pos > MAX_RECORD:
            return None
        data = buf[pos : found.end()]
        try:
            return pos, data, orjson.loads(data), found.end()
        except orjson.JSONDecodeError:
            found = RECORD_END.search(buf, found.end())
    return None


def _slow_value(buf: bytes, pos: int) -> tuple[int, bytes, Any, int]:
    """The value at `pos` found the exact way (stdlib, on latin-1 text), or an undecodable stretch.

    The value is left unparsed (None): `parse` decodes it, and dead-letters it
    if it is not UTF-8 or not JSON.
    """
    text = buf.decode("latin-1")
    try:
        _, end = _stdlib.raw_decode(text, pos)
        if end - pos > MAX_RECORD:
            end = _resynchronise(text, pos)
    except (ValueError, RecursionError):
        end = _resynchronise(text, pos)
    return pos, buf[pos:end], None, end


def _resynchronise(text: str, pos: int) -> int:
    stop = min(pos + MAX_RECORD, len(text))
    newline = text.find("\n", pos + 1, stop)
    if newline != -1:
        stop = newline
    candidate = text.find("{", pos + 1, stop)
    while candidate != -1:
        try:
            value, value_end = _stdlib.raw_decode(text, candidate)
        except (ValueError, RecursionError):
            candidate = text.find("{", candidate + 1, stop)
            continue
        if isinstance(value, dict) and (
            "detail-type" in value or value.get("object") in ("event", "v2.core.event")
        ):
            return candidate
        candidate = text.find("{", value_end, stop)
    return stop


def parse(data: bytes, value: Any) -> Any:
    """The JSON document of a record (already parsed when the fast split could)."""
    if value is not None:
        return value
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Reject("decode", "invalid_json", f"not UTF-8 at byte {error.start}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise Reject("decode", "invalid_json", f"not JSON: {error}") from None


# -------------------------------------------------------------------- decoding


def iso_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def evt_id(event: dict) -> str | None:
    value = event.get("id")
    return value if isinstance(value, str) and EVT_ID.fullmatch(value) else None


EVT_ID = re.compile(r"evt_[A-Za-z0-9_]+")
JSON_TYPES = {bool: "bool", int: "int", float: "float", str: "str", list: "array", dict: "object"}


def id_error(event: dict) -> str:
    """Why an event's `id` is refused, in the words the backfill's letters use."""
    if "id" not in event:
        return "missing"
    value = event["id"]
    if not isinstance(value, str):
        return f"expected `str`, got `{JSON_TYPES.get(type(value), 'null')}`"
    return "expected `str` matching regex '^evt_[A-Za-z0-9_]+$'"


def decode(document: Any) -> tuple[dict, str | None, datetime | None, bool]:
    """(Stripe event, account, arrival, thin) of a parsed record."""
    if not isinstance(document, dict):
        raise Reject("decode", "not_an_event", f"JSON {type(document).__name__}, not an object")
    account = arrival = None
    if "detail-type" in document or ("detail" in document and "source" in document):
        event = document.get("detail")
        if not isinstance(event, dict):
            raise Reject("decode", "invalid_event", "envelope without an object `detail`")
        source = document.get("source")
        match = PARTNER.match(source) if isinstance(source, str) else None
        account = match.group(1) if match else None
        arrival = iso_time(document.get("time"))
        if event.get("object") not in ("event", "v2.core.event"):
            raise Reject(
                "decode", "invalid_event", "envelope `detail` is not a Stripe event", evt_id(event)
            )
    else:
        event = document
        if event.get("object") not in ("event", "v2.core.event"):
            raise Reject(
                "decode", "not_an_event", "neither an EventBridge envelope nor a Stripe event"
            )
    event_id = evt_id(event)
    if event_id is None:
        raise Reject("decode", "invalid_event", f"id: {id_error(event)}")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise Reject("decode", "invalid_event", "`type` missing", event_id)
    if event["object"] == "v2.core.event":
        if iso_time(event.get("created")) is None:
            raise Reject("decode", "invalid_event", "`created` is not an ISO timestamp", event_id)
        return event, account, arrival, True
    created = event.get("created")
    if type(created) is not int:
        raise Reject("decode", "invalid_event", "`created` is not an integer", event_id)
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise Reject("decode", "invalid_event", "`data.object` is not an object", event_id)
    return event, account, arrival, False


# ----------------------------------------------------------------- classifying


def exponent(currency: str) -> int:
    code = currency.upper()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def major(amount: Any, currency: Any) -> Decimal:
    if type(amount) is not int:
        raise Reject(
            "classify",
            "invalid_amount",
            f"amount must be an integer of minor units, got {amount!r}",
        )
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise Reject("classify", "invalid_amount", f"not an ISO 4217 currency code: {currency!r}")
    return Decimal(amount).scaleb(-exponent(currency))


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def upper(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


def some_id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def method_and_country(charge: dict) -> tuple[str | None, str | None]:
    details = charge.get("payment_method_details") or {}
    return text(details.get("type")), upper((details.get("card") or {}).get("country"))


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# A fact is a tuple; its first item says which kind.
SESSION, CHARGE, ADJUSTMENT, SKIP = range(4)
# Indexes into a session fact and a charge fact (after kind, pi, event id, created, account).
S_OUTCOME, S_ID, S_AMOUNT, S_CURRENCY, S_METADATA, S_CLIENT_REF = 6, 7, 8, 9, 10, 11
C_SUCCEEDED, C_ID, C_HAS_OBJECT, C_COUNTRY, C_METHOD, C_CREATED = 5, 6, 7, 8, 9, 10


def classify(event: dict, account: str | None, thin: bool) -> tuple:
    """(SESSION | CHARGE, pi, ...) / (ADJUSTMENT, row) / (SKIP, reason)."""
    if thin:
        return (SKIP, "thin_event")
    kind = event["type"]
    obj = event["data"]["object"]
    created = event["created"]
    livemode = event.get("livemode") is True
    if kind in SESSION_TYPES:
        if obj.get("mode") != "payment":
            return (SKIP, f"session_mode_{obj.get('mode') or 'unknown'}")
        status = obj.get("payment_status")
        if status == "no_payment_required":
            return (SKIP, "no_payment_required")
        outcome = SESSION_TYPES[kind] or ("paid" if status == "paid" else "pending")
        pi = some_id(obj.get("payment_intent"))
        session_id = obj.get("id")
        if not pi or not isinstance(session_id, str):
            raise Reject("classify", "invalid_session", "session has no id or payment_intent")
        amount, currency = obj.get("amount_total"), obj.get("currency")
        if not isinstance(amount, int) or not isinstance(currency, str):
            raise Reject("classify", "invalid_session", "session has no amount_total or currency")
        major(amount, currency)
        details = obj.get("customer_details") or {}
        address = details.get("address") or {}
        metadata = obj.get("metadata") or {}
        return (
            SESSION,
            pi,
            event["id"],
            created,
            account,
            livemode,
            outcome,
            session_id,
            amount,
            currency.upper(),
            {str(k): str(v) for k, v in metadata.items() if v is not None},
            text(obj.get("client_reference_id")),
            text((obj.get("consent") or {}).get("promotions")),
            tuple(str(t) for t in obj.get("payment_method_types") or ()),
            text(details.get("email")),
            text(details.get("name")),
            upper(address.get("country")),
            text(address.get("postal_code")),
            text(address.get("state")),
        )
    if kind in ("charge.succeeded", "charge.failed"):
        pi = some_id(obj.get("payment_intent"))
        if not pi:
            return (SKIP, "charge_without_payment_intent")
        if not isinstance(obj.get("id"), str):
            raise Reject("classify", "invalid_charge", "charge has no id")
        method, country = method_and_country(obj)
        return (
            CHARGE, pi, event["id"], created, account, kind == "charge.succeeded", obj["id"],
            True, country, method, int_or_none(obj.get("created")),
        )  # fmt: skip
    if kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        pi = obj.get("id")
        if not isinstance(pi, str):
            raise Reject("classify", "invalid_payment_intent", "payment intent has no id")
        succeeded = kind == "payment_intent.succeeded"
        latest = obj.get("latest_charge")
        charge = latest if isinstance(latest, dict) else None
        embedded = (obj.get("charges") or {}).get("data") or []
        error = obj.get("last_payment_error") or {}
        if charge is None and embedded:
            # A failure names its failing charge; else the first attempt of the event's outcome.
            failing = None if succeeded else some_id(error.get("charge"))
            charge = next((c for c in embedded if failing and c.get("id") == failing), None)
            if charge is None:
                wanted = "succeeded" if succeeded else "failed"
                charge = next((c for c in embedded if c.get("status") == wanted), embedded[0])
        if charge is None and not succeeded:
            charge_id = some_id(error.get("charge")) or some_id(latest)
        else:
            charge_id = some_id(charge.get("id") if charge else latest)
        if charge is None:
            return (CHARGE, pi, event["id"], created, account, succeeded, charge_id, False,
                    None, None, None)  # fmt: skip
        method, country = method_and_country(charge)
        return (
            CHARGE, pi, event["id"], created, account, succeeded, charge_id, True, country,
            method, int_or_none(charge.get("created")),
        )  # fmt: skip
    if kind == "charge.refunded":
        charge_id, refunded, currency = (
            obj.get("id"),
            obj.get("amount_refunded"),
            obj.get("currency"),
        )
        if not (
            isinstance(charge_id, str) and isinstance(refunded, int) and isinstance(currency, str)
        ):
            raise Reject(
                "classify",
                "invalid_refund",
                "charge.refunded lacks id, amount_refunded or currency",
            )
        before = (event["data"].get("previous_attributes") or {}).get("amount_refunded")
        delta = refunded - before if isinstance(before, int) else refunded
        amount = major(delta, currency)
        flag = obj.get("refunded")
        if isinstance(flag, bool):
            fully = flag
        else:
            charged = obj.get("amount")
            fully = isinstance(charged, int) and refunded >= charged
        row: tuple[Any, ...] = (
            event["id"], charge_id, "refund", kind, amount, major(refunded, currency), fully,
            currency.upper(), None, None, livemode, account, datetime.fromtimestamp(created, UTC),
        )  # fmt: skip
        return (ADJUSTMENT, row)
    if kind in DISPUTES:
        charge_id, amount, currency = (
            some_id(obj.get("charge")),
            obj.get("amount"),
            obj.get("currency"),
        )
        if not charge_id or not isinstance(amount, int) or not isinstance(currency, str):
            raise Reject("classify", "invalid_dispute", "dispute lacks charge, amount or currency")
        row = (
            event["id"], charge_id, "dispute", kind, major(amount, currency), None, None,
            currency.upper(), text(obj.get("id")), text(obj.get("status")), livemode, account,
            datetime.fromtimestamp(created, UTC),
        )  # fmt: skip
        return (ADJUSTMENT, row)
    if kind in REFUND_OBJECTS:
        # One refund, keyed by its own id; only a succeeded one has moved money.
        refund_id, charge_id = obj.get("id"), some_id(obj.get("charge"))
        amount, currency = obj.get("amount"), obj.get("currency")
        if not (
            isinstance(refund_id, str)
            and charge_id
            and isinstance(amount, int)
            and isinstance(currency, str)
        ):
            raise Reject(
                "classify", "invalid_refund", "refund lacks id, charge, amount or currency"
            )
        status = obj.get("status")
        if status != "succeeded":
            return (SKIP, f"refund_{status or 'without_status'}")
        at = obj.get("created")
        row = (
            refund_id, charge_id, "refund", kind, major(amount, currency), None, None,
            currency.upper(), None, None, livemode, account,
            datetime.fromtimestamp(at if isinstance(at, int) else created, UTC),
        )  # fmt: skip
        return (ADJUSTMENT, row)
    return (SKIP, "not_a_payment_event")


# ------------------------------------------------------------------- records


def letter_row(
    step: str,
    reason: str,
    error: str,
    raw: str,
    source: str,
    event_id: str | None,
    at: datetime | None,
) -> tuple:
    digest = hashlib.sha256(f"{step}\x1f{source}\x1f{raw}".encode()).hexdigest()[:32]
    # A new letter is pending: no re-drive resolved it (redriven_at, redrive_run_id).
    return (digest, step, reason, error, raw, source, event_id, at, None, None)


def split_list(value: str | None) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()] if value else []


def ab_tests(value: str | None) -> list[dict]:
    if not value:
        return []
    try:
        return [{"name": str(t["name"]), "variant": str(t["variant"])} for t in json.loads(value)]
    except (ValueError, TypeError, KeyError):
        return []


def query_parameters(value: str | None) -> list[dict]:
    if not value:
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        return []
    if not isinstance(parsed, dict):
        return []
    return [
        {"key": str(k), "value": v if isinstance(v, str) else json.dumps(v)}
        for k, v in parsed.items()
    ]


def consent(metadata: dict, promotions: str | None) -> bool | None:
    explicit = (metadata.get("similarProductsConsent") or "").strip().lower()
    if explicit in ("true", "false"):
        return explicit == "true"
    if promotions in ("opt_in", "opt_out"):
        return promotions == "opt_in"
    return None


def term_end(start: date) -> date:
    try:
        later = start.replace(year=start.year + 8)
    except ValueError:
        later = start.replace(year=start.year + 8, day=28)
    return later + timedelta(weeks=1)


def method_label(method: str | None) -> str:
    if method is None or method in CARDS:
        return "credit / debit card"
    if method in DEBITS:
        return "direct debit"
    return METHOD_NAMES.get(method, method.replace("_", " "))


def subdivision(value: str | None) -> str | None:
    """Letters, digits and spaces only, trimmed."""
    if not value:
        return None
    kept = "".join(
        c for c in value if c not in "\r\n" and (c.isalpha() or c.isdecimal() or c.isspace())
    )
    return kept.strip() or None


def dumps(value: Any) -> bytes:
    """Compact JSON, non-ASCII kept; the standard library for what orjson refuses (surrogates)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogatepass"
        )


class Tables:
    """Rows per table, as tuples in column order."""

    def __init__(self) -> None:
        self.rows: dict[type, list[tuple]] = {t: [] for t in ALL_RECORD_TYPES}

    def payment(self, settled: tuple, charge: tuple, accounts: list[str | None]) -> None:
        (_, pi, _, created, _, livemode, outcome, session_id, amount_minor, currency, metadata,
         client_reference, promotions, method_types, email, _name, address_country, postal,
         state) = settled  # fmt: skip
        charge_id, card_country, method = charge[C_ID], charge[C_COUNTRY], charge[C_METHOD]
        if not method and len(method_types) == 1:
            method = method_types[0]
        account = next((a for a in accounts if a), None)
        status = "Failed" if outcome == "async_failed" else "Paid"
        when = datetime.fromtimestamp(created, UTC)
        exp = exponent(currency)
        amount = Decimal(amount_minor).scaleb(-exp)
        identity = metadata.get("identityId") or client_reference
        if card_country:
            country, country_source = card_country, "card"
        elif address_country:
            country, country_source = address_country, "address"
        else:
            country, country_source = "GB", "default"
        cid = str(uuid.uuid5(CONTRIBUTION_NAMESPACE, charge_id))
        self.rows[Contribution].append(
            (charge_id, pi, session_id, cid, status, amount, Decimal(0).scaleb(-exp), currency,
             country, country_source, method, identity, False, livemode, account, when)
        )  # fmt: skip
        if status != "Paid":
            return
        get = metadata.get
        tests = ab_tests(get("abTests"))
        campaign = get("campaignCode")
        platform = get("platform")
        self.rows[Acquisition].append(
            (when, "CONTRIBUTION", amount, country, currency, get("componentId"),
             get("componentType"), [campaign] if campaign else [], get("source"),
             get("referrerUrl"), tests, "ONE_OFF", PAYMENT_PROVIDER, None,
             get("browserId"), identity, get("pageviewId"), get("referrerPageviewId"),
             split_list(get("labels")), None, False, "Direct", "Purchase", None, cid, charge_id,
             (parameters := query_parameters(get("queryParameters"))),
             PLATFORMS.get(platform.lower(), platform) if platform else "SUPPORT", livemode,
             account)
        )  # fmt: skip
        opted = consent(metadata, promotions)
        # The bus event's Detail, field for field; the amount as an exact JSON number.
        head = dumps({"eventTimeStamp": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                      "product": "CONTRIBUTION"})  # fmt: skip
        tail = dumps(
            {"country": country, "currency": currency, "componentId": get("componentId"),
             "componentType": get("componentType"), "campaignCode": campaign or None,
             "source": get("source"), "referrerUrl": get("referrerUrl"), "abTests": tests,
             "paymentFrequency": "ONE_OFF", "paymentProvider": PAYMENT_PROVIDER,
             "printOptions": None, "browserId": get("browserId"), "identityId": identity,
             "pageViewId": get("pageviewId"), "referrerPageViewId": get("referrerPageviewId"),
             "labels": split_list(get("labels")), "promoCode": None,
             "reusedExistingPaymentMethod": False, "readerType": "Direct",
             "acquisitionType": "Purchase", "zuoraSubscriptionNumber": None,
             "contributionId": cid, "paymentId": charge_id,
             "queryParameters": [{"name": p["key"], "value": p["value"]} for p in parameters],
             "platform": platform or None, "postalCode": postal, "state": state, "email": email,
             "similarProductsConsent": opted, "paypalTransactionId": None}
        )  # fmt: skip
        detail = b"".join((head[:-1], b',"amount":', f"{amount:f}".encode(), b",", tail[1:]))
        self.rows[AcquisitionEvent].append(
            (charge_id, detail.decode("utf-8", "surrogatepass"), livemode, account, when)
        )
        # The store and the supporter item date a payment by its charge.
        charged = datetime.fromtimestamp(charge[C_CREATED] or created, UTC)
        self.rows[ContributionStoreRecord].append(
            ("Stripe", status, charge_id, identity, email, charged, currency, amount, country,
             subdivision(state), postal, cid, livemode, account)
        )  # fmt: skip
        if identity is None:
            return
        start = charged.date()
        end = term_end(start)
        expiry = int(datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC).timestamp())
        self.rows[SupporterProductData].append(
            (identity, f"Stripe - {charge_id}", "single_contribution", "Single Contribution",
             start, end, expiry, amount, currency, charge_id, livemode, account)
        )  # fmt: skip
        opt_in = {
            "subscriptionId": cid,
            "identityId": identity,
            "eventType": "Acquisition",
            "productName": "CONTRIBUTION",
            "printProduct": None,
            "previousProductName": None,
            "userConsentsOverrides": {"similarGuardianProducts": opted},
        }
        self.rows[SoftOptIn].append((charge_id, dumps(opt_in).decode(), livemode, account, when))
        if email is None:
            return
        paid = when.date()
        body = {
            "To": {
                "Address": email,
                "SubscriberKey": email,
                "ContactAttributes": {
                    "SubscriberAttributes": {
                        "EmailAddress": email,
                        "edition": EDITIONS.get(currency, "international"),
                        "payment method": method_label(method),
                        "currency": currency,
                        "amount": f"{amount:.2f}",
                        "first_name": None,
                        "date_of_payment": f"{paid.day} {paid:%B %Y}",
                    }
                },
            },
            "DataExtensionName": "contribution-thank-you",
            "IdentityUserId": identity,
        }
        self.rows[ThankYouEmail].append(
            (charge_id, dumps(body).decode("utf-8", "surrogatepass"), livemode, account, when)
        )

    def reconcile(self) -> None:
        """Refunds into the store's payment status (contributions stay as paid).

        Refunded = the greater of the greatest cumulative total of its
        charge.refunded rows and the sum of its refund objects' amounts.
        """
        totals: dict[str, Decimal] = {}
        objects: dict[str, Decimal] = {}
        for row in self.rows[PaymentAdjustment]:
            if row[2] != "refund":
                continue
            if row[5] is None:
                objects[row[1]] = objects.get(row[1], 0) + row[4]
            else:
                totals[row[1]] = max(totals.get(row[1], row[5]), row[5])
        if not totals and not objects:
            return
        store = self.rows[ContributionStoreRecord]
        for index, row in enumerate(store):
            charge_id = row[2]
            if charge_id not in totals and charge_id not in objects:
                continue
            refunded = max(totals.get(charge_id, 0), objects.get(charge_id, 0))
            if row[1] == "Paid" and refunded > 0 and refunded >= row[7]:
                store[index] = row[:1] + ("Refunded",) + row[2:]

    def write(self, path: Path) -> dict[str, int]:
        for leftover in (path, path.with_name(path.name + ".wal")):
            leftover.unlink(missing_ok=True)
        written = {}
        with duckdb.connect(str(path)) as connection:
            for record_type, rows in self.rows.items():
                schema = arrow_schema(record_type)
                names = [c.name for c in columns(record_type)]
                rows = one_per_key(rows, [names.index(k) for k in table_of(record_type).key])
                batch = pa.Table.from_arrays(
                    [
                        pa.array([row[i] for row in rows], type=schema.field(i).type)
                        for i in range(len(names))
                    ],
                    schema=schema,
                )
                connection.execute(duckdb_ddl(record_type))
                table = table_of(record_type).name
                quoted = ", ".join(f'"{n}"' for n in names)
                connection.register("batch", batch)
                connection.execute(f'INSERT INTO "{table}" ({quoted}) SELECT {quoted} FROM batch')
                connection.unregister("batch")
                written[table] = len(rows)
        return written


def one_per_key(rows: list[tuple], key: list[int]) -> list[tuple]:
    """One row per natural key, as the warehouse upserts: the greatest, nulls lowest."""
    kept: dict[tuple, tuple] = {}
    for row in rows:
        k = tuple(row[i] for i in key)
        other = kept.get(k)
        if other is None or ranked(row) > ranked(other):
            kept[k] = row
    return list(kept.values()) if len(kept) < len(rows) else rows


def ranked(row: tuple) -> tuple:
    return tuple((v is not None, v) for v in row)


# ----------------------------------------------------------------------- job


def files(folder: Path) -> list[str]:
    found: list[str] = []
    for directory, _, names in os.walk(folder):
        found.extend(os.path.join(directory, name) for name in names)
    return sorted(found)


def run(archive: Path, warehouse: Path) -> tuple[int, dict[str, int]]:
    """Reads `archive`, writes `warehouse`; (records read, rows per table)."""
    tables = Tables()
    letters = tables.rows[DeadLetter]
    adjustments: dict[str, tuple[Any, ...]] = {}
    payment_facts: dict[str, dict[str, tuple]] = {}
    records = 0
    for path in files(archive):
        with open(path, "rb") as raw:
            buf = decompress(raw.read())
        for offset, data, value in split(buf):
            records += 1
            source = f"{path}@{offset}"
            try:
                document = parse(data, value)
                event, account, arrival, thin = decode(document)
            except Reject as error:
                raw_text = data.decode("utf-8", errors="replace")
                letters.append(
                    letter_row(error.step, error.reason, error.message, raw_text, source,
                               error.event_id, None)
                )  # fmt: skip
                continue
            try:
                fact = classify(event, account, thin)
            except Reject as error:
                raw_text = json.dumps(
                    {"id": event["id"], "type": event["type"],
                     "data": {"object": event["data"]["object"]}},
                    sort_keys=True,
                )  # fmt: skip
                letters.append(
                    letter_row(error.step, error.reason, error.message, raw_text, source,
                               event["id"], arrival)
                )  # fmt: skip
                continue
            kind = fact[0]
            if kind == ADJUSTMENT:
                # One copy per event id: one that names its account wins.
                row = fact[1]
                rank = (row[11] is None, repr(row))
                kept = adjustments.get(event["id"])
                if kept is None or rank < kept[:2]:
                    adjustments[event["id"]] = (*rank, row)
            elif kind != SKIP:
                copies = payment_facts.setdefault(fact[1], {})
                kept = copies.get(fact[2])
                if kept is None or (kept[4] is None and fact[4] is not None):
                    copies[fact[2]] = fact
    tables.rows[PaymentAdjustment] = [kept[2] for kept in adjustments.values()]
    for pi, copies in payment_facts.items():
        join(tables, pi, [copies[e] for e in sorted(copies)])
    tables.reconcile()
    return records, tables.write(warehouse)


def join(tables: Tables, pi: str, facts: list[tuple]) -> None:
    """One PaymentIntent once the input has ended: a payment, a dead letter or nothing."""
    sessions = [f for f in facts if f[0] == SESSION]
    charges = [f for f in facts if f[0] == CHARGE]
    settled = min(
        (s for s in sessions if s[S_OUTCOME] in ("async_succeeded", "async_failed")),
        key=lambda s: (s[3], s[2]),
        default=None,
    ) or min(
        (s for s in sessions if s[S_OUTCOME] == "paid"), key=lambda s: (s[3], s[2]), default=None
    )
    accounts = [f[4] for f in sessions] + [f[4] for f in charges]
    if settled is not None:
        succeeded = settled[S_OUTCOME] != "async_failed"
        deadline = settled[3] + CHARGE_WAIT_SECONDS
        relevant = sorted(
            (c for c in charges if c[C_SUCCEEDED] == succeeded and c[3] <= deadline),
            key=lambda c: (c[3], c[2]),
        )
        if not succeeded:
            relevant = latest_attempt(sessions, relevant)
        charge = next((c for c in relevant if c[C_HAS_OBJECT] and c[C_ID]), None) or next(
            (c for c in relevant if c[C_ID]), None
        )
        if charge is not None:
            tables.payment(settled, charge, [settled[4], charge[4], *accounts])
            return
        reason, error = "charge_missing", "no charge id by the deadline"
    elif sessions:
        settled = min(sessions, key=lambda s: s[2])
        reason, error = "payment_not_settled", "no settlement before timeout"
    else:
        return  # charges without a session
    raw = json.dumps(
        {
            "payment_intent": pi,
            "checkout_session": settled[S_ID],
            "amount_minor": settled[S_AMOUNT],
            "currency": settled[S_CURRENCY],
            "events": sorted(f[2] for f in facts),
        },
        sort_keys=True,
    )
    tables.rows[DeadLetter].append(
        letter_row("join_payment", reason, error, raw, f"payment_intent:{pi}", settled[2], None)
    )


def latest_attempt(sessions: list[tuple], failed: list[tuple]) -> list[tuple]:
    """The failed charge facts of the attempt that failed the payment (sorted by time).

    Attempts before the session completed, and card attempts (confirmed on the
    page), were declines on the page; the latest remaining charge id is the attempt.
    """
    completions = [s[3] for s in sessions if s[S_OUTCOME] == "pending"]
    if completions:
        completed = min(completions)
        failed = [c for c in failed if c[3] >= completed]
    failed = [c for c in failed if c[C_METHOD] != "card"]
    named = [c for c in failed if c[C_ID]]
    if not named:
        return failed
    attempt = named[-1][C_ID]
    return [c for c in failed if c[C_ID] == attempt]


def main(argv: Sequence[str] | None = None) -> int:
    parser = FlagParser(
        prog="python -m bench.plain", description=(__doc__ or "").split("\n\n", 1)[0]
    )
    parser.add_argument("--archive", type=Path, required=True, help="The archive folder to read.")
    parser.add_argument(
        "--warehouse", type=Path, required=True, help="The DuckDB file to (re)create."
    )
    args = parser.parse_args(argv)
    records, written = run(args.archive, args.warehouse)
    print(f"records read: {records}")
    print(f"rows per table: {sum(written.values())}")
    for table, count in written.items():
        print(f"  {table}: {count}")
    return 0


if __name__ == "__main__":
    gc.freeze()
    gc.enable()
    sys.exit(main())
