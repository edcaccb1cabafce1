"""The whole backfill in one plain Python process: the bench's independent baseline.

    python -m bench.plain --archive ARCHIVE_FOLDER --warehouse OUT.duckdb

Same archive in, the same eight DuckDB tables out as `python -m
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
   event (session, charge or PaymentIntent outcome, refund, dispute, skip),
   dead-letter what cannot be read;
3. keep one copy per event id (one that names its account wins), join a
   PaymentIntent's facts once the input has ended (every deadline passed),
   build every record, fold refunds and disputes into the payments;
4. write each table with one Arrow insert.

It holds every fact in memory, so its memory grows with the archive: it is
the speed to aim at, not a design. Prints `records read: N` and the rows
per table. It exists so that the bench can compare the backfill with the
fastest honest plain-Python job; it is not a second pipeline to run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
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

from schemas.generate import arrow_schema, columns, duckdb_ddl
from schemas.records import (
    Acquisition,
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
SYMBOLS = {"GBP": "£", "USD": "$", "AUD": "$", "CAD": "$", "NZD": "$", "EUR": "€"}
METHOD_NAMES = {
    "card": "credit / debit card",
    "bacs_debit": "direct debit",
    "sepa_debit": "direct debit",
}
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
    return value if isinstance(value, str) and value.startswith("evt_") else None


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
        raise Reject("decode", "invalid_event", "`id` missing or not an evt_ id")
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


# A fact is a tuple; its first item says which kind.
SESSION, CHARGE, ADJUSTMENT, SKIP = range(4)


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
        succeeded = kind == "charge.succeeded"
        return (
            CHARGE,
            pi,
            event["id"],
            created,
            account,
            succeeded,
            obj["id"],
            True,
            country,
            method,
        )
    if kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        pi = obj.get("id")
        if not isinstance(pi, str):
            raise Reject("classify", "invalid_payment_intent", "payment intent has no id")
        succeeded = kind == "payment_intent.succeeded"
        latest = obj.get("latest_charge")
        charge = latest if isinstance(latest, dict) else None
        embedded = (obj.get("charges") or {}).get("data") or []
        if charge is None and embedded:
            wanted = "succeeded" if succeeded else "failed"
            charge = next((c for c in embedded if c.get("status") == wanted), embedded[0])
        if charge is None and not succeeded:
            charge_id = some_id((obj.get("last_payment_error") or {}).get("charge")) or some_id(
                latest
            )
        else:
            charge_id = some_id(charge.get("id") if charge else latest)
        method, country = method_and_country(charge) if charge else (None, None)
        return (
            CHARGE,
            pi,
            event["id"],
            created,
            account,
            succeeded,
            charge_id,
            charge is not None,
            country,
            method,
        )
    when = datetime.fromtimestamp(created, UTC)
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
        row: tuple[Any, ...] = (
            event["id"], charge_id, "refund", kind, amount, major(refunded, currency),
            currency.upper(), None, None, livemode, account, when,
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
            event["id"], charge_id, "dispute", kind, major(amount, currency), None,
            currency.upper(), text(obj.get("id")), text(obj.get("status")), livemode, account, when,
        )  # fmt: skip
        return (ADJUSTMENT, row)
    if kind in REFUND_OBJECTS:
        return (SKIP, "refund_read_from_charge_refunded")
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
    return (digest, step, reason, error, raw, source, event_id, at)


def split_list(value: str | None) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()] if value else []


def ab_tests(value: str | None) -> tuple[list[dict], bool]:
    if not value:
        return [], False
    try:
        return [
            {"name": str(t["name"]), "variant": str(t["variant"])} for t in json.loads(value)
        ], False
    except (ValueError, TypeError, KeyError):
        return [], True


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


class Tables:
    """Rows per table, as tuples in column order."""

    def __init__(self) -> None:
        self.rows: dict[type, list[tuple]] = {
            t: []
            for t in (
                Contribution,
                Acquisition,
                PaymentAdjustment,
                ContributionStoreRecord,
                SupporterProductData,
                ThankYouEmail,
                SoftOptIn,
                DeadLetter,
            )
        }

    def payment(self, settled: tuple, charge: tuple, accounts: list[str | None]) -> None:
        (_, pi, _, created, _, livemode, outcome, session_id, amount_minor, currency, metadata,
         client_reference, promotions, method_types, email, name, address_country, postal,
         state) = settled  # fmt: skip
        charge_id, card_country, method = charge[6], charge[8], charge[9]
        if method is None and len(method_types) == 1:
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
        tests, _ = ab_tests(metadata.get("abTests"))
        get = metadata.get
        self.rows[Acquisition].append(
            (when, "CONTRIBUTION", amount, country, currency, get("componentId"),
             get("componentType"), split_list(get("campaignCode")), get("source"),
             get("referrerUrl"), tests, "ONE_OFF", "STRIPE_HOSTED_CHECKOUT", None,
             get("browserId"), identity, get("pageviewId"), get("referrerPageviewId"),
             split_list(get("labels")), None, False, "Direct", "Purchase", None, cid, charge_id,
             query_parameters(get("queryParameters")), get("platform") or "SUPPORT", livemode,
             account)
        )  # fmt: skip
        self.rows[ContributionStoreRecord].append(
            ("Stripe", status, charge_id, identity, email, when, currency, amount, country, state,
             postal, cid, livemode, account)
        )  # fmt: skip
        if identity is None:
            return
        start = when.date()
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
            "userConsentsOverrides": {"similarGuardianProducts": consent(metadata, promotions)},
        }
        self.rows[SoftOptIn].append(
            (charge_id, orjson.dumps(opt_in).decode(), livemode, account, when)
        )
        if email is None:
            return
        method = method or "card"
        first = name.split()[0] if name and name.split() else None
        body = {
            "To": {
                "Address": email,
                "SubscriberKey": email,
                "ContactAttributes": {
                    "SubscriberAttributes": {
                        "EmailAddress": email,
                        "edition": EDITIONS.get(currency, "international"),
                        "payment method": METHOD_NAMES.get(method, method),
                        "currency": SYMBOLS.get(currency, currency),
                        "amount": f"{amount:.{exp}f}",
                        "first_name": first,
                        "date_of_payment": f"{start.day} {start:%B %Y}",
                    }
                },
            },
            "DataExtensionName": "contribution-thank-you",
            "IdentityUserId": identity,
        }
        self.rows[ThankYouEmail].append(
            (charge_id, orjson.dumps(body).decode(), livemode, account, when)
        )

    def reconcile(self) -> None:
        """Refunds and disputes into the payments' current state."""
        refunded: dict[str, Decimal] = {}
        disputed: set[str] = set()
        for row in self.rows[PaymentAdjustment]:
            if row[2] == "refund":
                refunded[row[1]] = max(refunded.get(row[1], row[5]), row[5])
            else:
                disputed.add(row[1])
        if not refunded and not disputed:
            return
        contributions = self.rows[Contribution]
        for index, row in enumerate(contributions):
            charge_id = row[0]
            if charge_id not in refunded and charge_id not in disputed:
                continue
            status, amount, amount_refunded = row[4], row[5], row[6]
            total = max(amount_refunded, refunded.get(charge_id, amount_refunded))
            if status == "Paid" and total > 0 and total >= amount:
                status = "Refunded"
            contributions[index] = (
                row[:4] + (status, amount, total) + row[7:12] + (row[12] or charge_id in disputed,)
            ) + row[13:]
        store = self.rows[ContributionStoreRecord]
        for index, row in enumerate(store):
            total = refunded.get(row[2])
            if row[1] == "Paid" and total is not None and total > 0 and total >= row[7]:
                store[index] = row[:1] + ("Refunded",) + row[2:]

    def write(self, path: Path) -> dict[str, int]:
        for leftover in (path, path.with_name(path.name + ".wal")):
            leftover.unlink(missing_ok=True)
        written = {}
        with duckdb.connect(str(path)) as connection:
            for record_type, rows in self.rows.items():
                schema = arrow_schema(record_type)
                names = [c.name for c in columns(record_type)]
                batch = pa.Table.from_arrays(
                    [
                        pa.array([row[i] for row in rows], type=schema.field(i).type)
                        for i in range(len(names))
                    ],
                    schema=schema,
                )
                connection.execute(duckdb_ddl(record_type))
                table = record_type.TABLE.name  # type: ignore[attr-defined]
                quoted = ", ".join(f'"{n}"' for n in names)
                connection.register("batch", batch)
                connection.execute(f'INSERT INTO "{table}" ({quoted}) SELECT {quoted} FROM batch')
                connection.unregister("batch")
                written[table] = len(rows)
        return written


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
                row = fact[1]
                rank = (row[10] is None, repr(row))
                kept = adjustments.get(row[0])
                if kept is None or rank < kept[:2]:
                    adjustments[row[0]] = (*rank, row)
            elif kind != SKIP:
                copies = payment_facts.setdefault(fact[1], {})
                kept = copies.get(fact[2])
                # One copy per event id: one that names its account wins.
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
        (s for s in sessions if s[6] in ("async_succeeded", "async_failed")),
        key=lambda s: (s[3], s[2]),
        default=None,
    ) or min((s for s in sessions if s[6] == "paid"), key=lambda s: (s[3], s[2]), default=None)
    accounts = [f[4] for f in sessions] + [f[4] for f in charges]
    if settled is not None:
        succeeded = settled[6] != "async_failed"
        deadline = settled[3] + CHARGE_WAIT_SECONDS
        relevant = sorted(
            (c for c in charges if c[5] == succeeded and c[3] <= deadline),
            key=lambda c: (c[3], c[2]),
        )
        charge = next((c for c in relevant if c[7] and c[6]), None) or next(
            (c for c in relevant if c[6]), None
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
            "checkout_session": settled[7],
            "amount_minor": settled[8],
            "currency": settled[9],
            "events": sorted(f[2] for f in facts),
        },
        sort_keys=True,
    )
    tables.rows[DeadLetter].append(
        letter_row("join_payment", reason, error, raw, f"payment_intent:{pi}", settled[2], None)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
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
    sys.exit(main())
