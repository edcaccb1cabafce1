"""What validating the boundary costs: CPU microseconds per record, decode and classify.

    python -m bench.boundary                       # 2,000 payments (about 14,000 records)
    python -m bench.boundary --payments 500 --repeats 5

Generates an archive in memory (`tools.generate_archive`), then times, on the
same records, best of `--repeats` passes each (process CPU time):

- decode: `decode_record` of every record (JSON, envelope, the event's own
  fields checked against `schemas.stripe.EventHead`);
- classify: `classify` of every decoded event (its object checked against
  its schema, then the fact built);
- schemas: the `schemas.stripe` checks alone (`EventHead` of every event, and
  the object's schema of every event of a type we handle), when the code has them.

Run it on another checkout to compare, e.g. before the schemas existed:
`cd /tmp && PYTHONPATH=/path/to/other/checkout python /path/to/this/bench/boundary.py`
(run as a script, so that the other checkout's `transforms` come first on the
path). Prints one line per figure; nothing is written.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pipelines.flags import FlagParser
from tools.generate_archive import generate
from transforms.domain.events import SourceRecord, StripeEvent
from transforms.domain.facts import ClassifyError, classify
from transforms.sources.decode import DecodeError, decode_record


def best_of(repeats: int, work: Callable[[], int]) -> tuple[float, int]:
    """(least CPU seconds of `repeats` runs of `work`, what `work` returned)."""
    best, count = float("inf"), 0
    for _ in range(repeats):
        started = time.process_time()
        count = work()
        best = min(best, time.process_time() - started)
    return best, count


def decode_all(records: Iterable[SourceRecord]) -> int:
    count = 0
    for record in records:
        with contextlib.suppress(DecodeError):
            decode_record(record)
        count += 1
    return count


def classify_all(events: Iterable[StripeEvent]) -> int:
    count = 0
    for event in events:
        with contextlib.suppress(ClassifyError):
            classify(event)
        count += 1
    return count


def schema_checks(events: list[StripeEvent]) -> Callable[[], int] | None:
    """The schemas' checks alone over `events`, or None on code without `schemas.stripe`."""
    from transforms.domain import facts

    if not hasattr(facts, "payload"):
        return None
    import msgspec

    from schemas import stripe

    by_type: dict[str, Any] = {
        "checkout.session.completed": stripe.Session,
        "checkout.session.async_payment_succeeded": stripe.Session,
        "checkout.session.async_payment_failed": stripe.Session,
        "charge.succeeded": stripe.Charge,
        "charge.failed": stripe.Charge,
        "charge.refunded": stripe.Charge,
        "payment_intent.succeeded": stripe.PaymentIntent,
        "payment_intent.payment_failed": stripe.PaymentIntent,
        "refund.created": stripe.Refund,
        "refund.updated": stripe.Refund,
        "charge.dispute.created": stripe.Dispute,
    }
    heads = [
        {"id": e.id, "type": e.type, "created": e.created, "livemode": e.livemode} for e in events
    ]
    objects = [(e.data_object, by_type[e.type]) for e in events if e.type in by_type]

    def work() -> int:
        for head in heads:
            msgspec.convert(head, stripe.EventHead)
        for obj, schema in objects:
            with contextlib.suppress(msgspec.ValidationError):
                msgspec.convert(obj, schema)
        return len(heads)

    return work


def main(argv: list[str] | None = None) -> None:
    parser = FlagParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=2000, help="payments in the archive")
    parser.add_argument("--seed", type=int, default=7, help="the generator's seed")
    parser.add_argument("--repeats", type=int, default=3, help="passes per figure; best counts")
    args = parser.parse_args(argv)

    archive = generate(
        payments=args.payments, seed=args.seed, start=datetime(2025, 3, 1, tzinfo=UTC)
    )
    records = [SourceRecord(r.data, f"bench@{i}") for i, r in enumerate(archive.records())]
    events = []
    for record in records:
        try:
            events.append(decode_record(record))
        except DecodeError:
            continue

    figures = [
        ("decode", *best_of(args.repeats, lambda: decode_all(records))),
        ("classify", *best_of(args.repeats, lambda: classify_all(events))),
    ]
    checks = schema_checks(events)
    if checks is not None:
        figures.append(("schemas alone", *best_of(args.repeats, checks)))
    print(f"records: {len(records)}, events: {len(events)}")
    for name, seconds, count in figures:
        print(f"{name}: {seconds * 1e6 / count:.2f} CPU µs per record ({count} records)")


if __name__ == "__main__":
    main()
