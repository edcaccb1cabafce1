"""Generate realistic Stripe -> EventBridge -> Firehose archives, with the truth about them.

Simulates one-off contributions paid on Stripe-hosted Checkout pages across three
Stripe accounts (UK, AU, US) and writes what the S3 archive would hold: EventBridge
envelopes around Stripe snapshot events, batched into Firehose objects, plus an
``exports/`` folder of bare events as exported from the Stripe API. Everything is a
pure function of ``(payments, seed, start, hours)``: the same arguments give the same
bytes, so tests and benchmarks can pin outputs.

Modules, in the order the data flows: ``plan`` (scenarios, ids, timelines and
deliveries), ``render`` (the envelope and event bytes for each API version),
``archive`` (``generate`` and the records in arrival order), ``firehose`` (objects,
keys, the export file), ``truth`` (truth.json) and ``cli``; ``model`` holds the values
they share.

Library use::

    archive = generate(payments=300, seed=7)
    summary = write_archive(archive, Path("out/archive"))   # also writes out/truth.json
    for data in archive.envelopes():                         # arrival order, for Kinesis
        ...

Command line (every flag has ``--help``)::

    python -m tools.generate_archive --out out/archive --payments 28000 --seed 1

Layout written under ``--out`` (the Firehose prefix)::

    YYYY/MM/dd/HH/<stream>-1-YYYY-MM-dd-HH-mm-ss-<uuid>[.gz]   Firehose objects
    exports/stripe-events-export-YYYY-MM-dd.jsonl              bare events, one per line

The hour folder and the timestamp in the name are the arrival time (UTC) of the oldest
record in the object. Objects hold records either concatenated with no delimiter or
each followed by a newline; most are gzip. Malformed records are only ever written
into newline-delimited objects, one per line, so that a reader which resynchronises
at the next newline counts each exactly once (a truncated record followed directly by
another record would make the count depend on the reader).

``truth.json`` goes *next to* the Firehose prefix, not inside it: by default
``<parent of --out>/truth.json`` (``--truth`` overrides). Its format is
``Truth.to_json()``: ``generator`` (the arguments), ``payments`` (one object per
intended contribution, see ``PaymentTruth``), ``counts`` (records, deliveries by
kind, malformed records by kind, distinct events by type, exports) and ``archive``
(objects written, by delimiting style and compression).

The committed sample was made with::

    .venv/bin/python -m tools.generate_archive --out sample/archive --payments 320 \
        --seed 20250301 --start 2025-03-01T00:00:00Z --hours 6 --buffer_seconds 900

Realism notes: charges of Bacs and SEPA debits get ``py_`` ids, as Stripe issues them;
subscription sessions are emitted without their invoice's charge/payment intent
events so that every ``charge.*`` event in the archive belongs to a payment in the
truth.
"""

from tools.generate_archive.archive import Archive, generate
from tools.generate_archive.cli import main
from tools.generate_archive.firehose import WriteSummary, write_archive
from tools.generate_archive.model import (
    ACCOUNTS,
    API_VERSIONS,
    BASIL_SINCE,
    CURRENCY_EXPONENTS,
    DEFAULT_START,
    DEFAULT_STREAM,
    DELIVERY_KINDS,
    LATEST_CHARGE_SINCE,
    MALFORMED_KINDS,
    ArrivedRecord,
    StripeAccount,
)
from tools.generate_archive.plan import REQUIRED_SCENARIOS
from tools.generate_archive.truth import PaymentTruth, Truth, write_truth

__all__ = [
    "ACCOUNTS",
    "API_VERSIONS",
    "BASIL_SINCE",
    "CURRENCY_EXPONENTS",
    "DEFAULT_START",
    "DEFAULT_STREAM",
    "DELIVERY_KINDS",
    "LATEST_CHARGE_SINCE",
    "MALFORMED_KINDS",
    "REQUIRED_SCENARIOS",
    "Archive",
    "ArrivedRecord",
    "PaymentTruth",
    "StripeAccount",
    "Truth",
    "WriteSummary",
    "generate",
    "main",
    "write_archive",
    "write_truth",
]
