"""No input stops a run: each DoFn of the core turns an unexpected exception into a
dead letter, and a payment's records go out all together or not at all.

A failing function is injected in place of the pure rule a DoFn calls (the
FnApiRunner and the DirectRunner run in this process, so a patched module
global is what the DoFn calls); the other payment must come out untouched.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from pipelines.summary import counters_of
from schemas.records import DeadLetter
from tests import builders as b
from transforms.core import process
from transforms.core.process import DEAD_LETTERS, BuildRecordsFn, ProcessStripeEvents
from transforms.domain.events import StripeEvent
from transforms.domain.payment import Payment

BAD = "pi_bad"
SOURCE = f"payment_intent:{BAD}"
# A message that quotes the input, as Python's own exceptions do.
MESSAGE = "no rule for 'reader@example.com' in \"Ada Reader\""
REDACTED_MESSAGE = "no rule for '[redacted]' in '[redacted]'"


def _raise() -> None:
    raise RuntimeError(MESSAGE)


#: Where `_raise` raises, as the dead letter's error names it.
WHERE = (
    "RuntimeError at tests/transforms/core/test_catch_all.py:"
    f"{_raise.__code__.co_firstlineno + 1} in _raise"
)


def payment_events(payment_intent: str, suffix: str) -> list[StripeEvent]:
    session = b.session_object(
        session_id=f"cs_{suffix}", payment_intent=payment_intent, metadata={"identityId": suffix}
    )
    charge = b.charge_object(charge_id=f"ch_{suffix}", payment_intent=payment_intent)
    return [
        b.event(f"evt_s{suffix}", "checkout.session.completed", session, source=f"t@{suffix}s"),
        b.event(f"evt_c{suffix}", "charge.succeeded", charge, created=b.T0 - 1),
    ]


EVENTS = payment_events("pi_good", "1") + payment_events(BAD, "2")

_COLLECTED: dict[str, list[Any]] = {}


def _collect(values: list[Any], name: str) -> None:
    _COLLECTED.setdefault(name, []).extend(values)


def run(events: list[StripeEvent]) -> tuple[dict[str, list[Any]], dict[str, int]]:
    """(outputs by name, counters) of the backfill's path of the core on `events`."""
    _COLLECTED.clear()
    pipeline = beam.Pipeline(runner=FnApiRunner())
    out = (
        pipeline
        | beam.Create(events)
        | beam.Map(lambda e: TimestampedValue(e, e.created))
        | ProcessStripeEvents()
    )
    for name in ("contributions", "thank_you_emails", "soft_opt_ins", "dead_letters"):
        _ = (
            getattr(out, name)
            | f"Collect{name}" >> beam.combiners.ToList()
            | f"Keep{name}" >> beam.Map(_collect, name)
        )
    result = pipeline.run()
    result.wait_until_finish()
    return dict(_COLLECTED), counters_of(result)


def failing_for_bad(original: Callable[..., Any], bad: Callable[..., bool]) -> Callable[..., Any]:
    def replacement(*args: Any, **kwargs: Any) -> Any:
        if bad(*args):
            _raise()
        return original(*args, **kwargs)

    return replacement


def letter_of(outputs: dict[str, list[Any]]) -> tuple[str, str, str, str, str | None, str]:
    (letter,) = outputs["dead_letters"]
    return letter.step, letter.reason, letter.error, letter.source, letter.event_id, letter.raw


def test_a_failing_classify_is_one_dead_letter_and_the_rest_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        process,
        "classify",
        failing_for_bad(process.classify, lambda event: event.id == "evt_s2"),
    )

    outputs, counters = run(EVENTS)

    step, reason, error, source, event_id, raw = letter_of(outputs)
    assert (step, reason, error, source, event_id) == (
        "classify",
        "unexpected_error",
        f"{WHERE}: {REDACTED_MESSAGE}",
        "t@2s",
        "evt_s2",
    )
    assert json.loads(raw)["data"]["object"]["id"] == "cs_2"
    assert [c.payment_id for c in outputs["contributions"]] == ["ch_1"]
    assert counters["dead_lettered_unexpected_error"] == 1
    # The failed session's charge is processed, and completes no payment.
    assert (counters["processed"], counters["charges_without_checkout_session"]) == (3, 1)


def test_a_failing_fold_dead_letters_every_copy_in_the_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def bad_group(values: list[Any], *_: Any) -> bool:
        return any(getattr(v, "payment_intent_id", None) == BAD for v in values)

    monkeypatch.setattr(process, "fold_payment", failing_for_bad(process.fold_payment, bad_group))

    outputs, counters = run(EVENTS + [EVENTS[2]])  # a redelivered copy of the bad session

    step, reason, error, source, event_id, raw = letter_of(outputs)
    assert (step, reason, error, source, event_id) == (
        "fold_payment",
        "unexpected_error",
        f"{WHERE}: {REDACTED_MESSAGE}",
        SOURCE,
        "evt_c2",
    )
    assert json.loads(raw) == {"key": f"payment_intent:{BAD}", "events": ["evt_c2", "evt_s2"]}
    assert [c.payment_id for c in outputs["contributions"]] == ["ch_1"]
    # Three records read for the group (one a copy): all three are dead-lettered.
    assert (counters["dead_lettered_unexpected_error"], counters["processed"]) == (3, 2)


def test_a_failing_build_is_one_dead_letter_and_no_record_of_the_payment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        process,
        "build_records",
        failing_for_bad(process.build_records, lambda p: p.session.payment_intent_id == BAD),
    )

    outputs, counters = run(EVENTS)

    step, reason, error, source, event_id, raw = letter_of(outputs)
    assert (step, reason, error, source, event_id) == (
        "build_records",
        "unexpected_error",
        f"{WHERE}: {REDACTED_MESSAGE}",
        SOURCE,
        "evt_s2",
    )
    assert json.loads(raw) == {
        "amount_minor": 500,
        "charge": "ch_2",
        "checkout_session": "cs_2",
        "currency": "GBP",
        "event": "evt_s2",
        "payment_intent": BAD,
        "status": "Paid",
    }
    assert [c.payment_id for c in outputs["contributions"]] == ["ch_1"]
    assert [e.payment_id for e in outputs["thank_you_emails"]] == ["ch_1"]
    # Counted once: as a dead letter, no longer as paid.
    assert (counters["payments_paid"], counters["payments_dead_lettered_unexpected_error"]) == (
        1,
        1,
    )


def test_a_failing_join_on_the_stream_is_a_dead_letter_and_the_rest_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        process,
        "join_fact",
        failing_for_bad(process.join_fact, lambda state, fact, *_: fact.payment_intent_id == BAD),
    )
    stream = EventStream().advance_watermark_to(Timestamp(b.T0 - 10))
    stream = stream.add_elements([TimestampedValue(e, e.created) for e in EVENTS])
    stream = stream.advance_watermark_to_infinity()
    _COLLECTED.clear()
    with beam.Pipeline(
        runner=BundleBasedDirectRunner(), options=PipelineOptions(streaming=True)
    ) as pipeline:
        out = pipeline | stream | ProcessStripeEvents()
        for name in ("contributions", "dead_letters"):
            _ = out_of(out, name) | f"Keep{name}" >> beam.Map(lambda v, n: _collect([v], n), name)

    letters = sorted(
        (d.step, d.reason, d.error, d.source, d.event_id) for d in _COLLECTED["dead_letters"]
    )
    assert letters == [
        ("join_payment", "unexpected_error", f"{WHERE}: {REDACTED_MESSAGE}", SOURCE, "evt_c2"),
        ("join_payment", "unexpected_error", f"{WHERE}: {REDACTED_MESSAGE}", SOURCE, "evt_s2"),
    ]
    assert [c.payment_id for c in _COLLECTED["contributions"]] == ["ch_1"]


def out_of(outputs: Any, name: str) -> Any:
    return getattr(outputs, name)


def test_a_payment_with_one_invalid_record_emits_none_of_them() -> None:
    """The issue's example: amount_total 10**40 was refused by four tables while
    the email and the soft opt-in still went out."""
    good = run_build(paid_payment())
    assert len(good) == 7  # a contribution and six tagged records

    (letter,) = run_build(paid_payment(amount_minor=10**40))

    assert letter.tag == DEAD_LETTERS
    assert isinstance(letter.value, DeadLetter)
    assert (letter.value.step, letter.value.reason, letter.value.error) == (
        "build_records",
        "invalid_record",
        "contributions.amount: NUMERIC allows at most 29 digits before the point, got 39",
    )
    assert json.loads(letter.value.raw)["amount_minor"] == 10**40


def test_an_identity_that_no_table_can_store_stops_every_record_of_the_payment() -> None:
    """An identity id from the Identity API holding half a UTF-16 pair fails at Parquet
    staging; it is refused before anything of the payment goes out."""
    guest = dataclasses.replace(paid_payment(metadata={}), identity_id="1001\ud800")

    (letter,) = run_build(guest)

    assert letter.tag == DEAD_LETTERS
    assert (letter.value.reason, letter.value.error) == (
        "invalid_record",
        "contributions.identity_id: not Unicode text (a lone surrogate)",
    )


def paid_payment(metadata: dict[str, str] | None = None, **session: Any) -> Payment:
    fact = b.session_fact(metadata=metadata)
    return Payment(
        session=dataclasses.replace(fact, **session),
        status="Paid",
        settled_at=b.T0,
        charge_id="ch_1",
        card_country="US",
        payment_method="card",
        account=b.ACCOUNT_UK,
    )


def run_build(payment: Payment) -> list[Any]:
    # Outside a pipeline Beam's counters count nothing, and the DoFn runs as is.
    return list(BuildRecordsFn("STRIPE").process(payment))
