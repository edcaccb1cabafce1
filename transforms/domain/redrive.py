"""How a dead letter is re-driven: which input it needs, and which payment it belongs to.

The kinds of letter, told apart by `source`, `step` and `reason`:

- a *record* letter (steps `read`, `decode`, `classify`): one archive record
  (`<file>@<offset>`) or one Kinesis record (`kinesis:<stream>/<shard>/<sequence>`).
  Its input is its `raw` text when that is the record's text and the warehouse
  kept it whole (DuckDB, steps read and decode), else the record read again
  from its source (BigQuery letters are redacted; a classify letter keeps a
  summary of the decoded event, not the record);
- a *payment* letter (step `join_payment`, source `payment_intent:<pi>`,
  e.g. `charge_missing`, `payment_not_settled`): a summary of several events,
  not an input. It is re-driven by reading the archive again (`--source`) and
  keeping every event of that PaymentIntent, so the payment is decided with
  all its events, as a backfill over its days would;
- a *writer's* letter (steps `write_*`: a row a store refused or could not
  take): its raw is the record the core built (its repr, or its redacted JSON
  in BigQuery), which names the record's PaymentIntent. It is re-driven as a
  payment letter: the payment is built again from its events and every
  writer upserts, so the rows the store did take are not doubled. A writer's
  letter naming no PaymentIntent (the supporter item `Stripe - <charge id>`)
  names its charge: the charge's events in the archive name the PaymentIntent
  (`charge_payment_intent`), and the letter is re-driven as that payment's;
- a sender's letter (`send_<kind>`) whose message was provably not sent
  (`rejected`, `retries_exhausted`, `ledger_error`) names its target and
  charge (`<target>/<charge id>`): it is re-driven as its charge's payment,
  after the claim its failure left is released, and is resolved only once
  the ledger holds its message (`sender_kind`#charge) sent;
- a sender's `outcome_unknown` letter (`Kind.OUTCOME_UNKNOWN`) names its
  target and charge too, but its message may have gone: only an operator
  who checked the target can say (`Delivery`). Delivered: its claim is
  marked sent and nothing is re-driven; not delivered: it is re-driven as
  a not-sent letter. Without the operator's word it is left pending.

Pure functions, no IO.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

from schemas.records import DeadLetter
from transforms.domain.events import StripeEvent

#: `DeadLetter.source` prefix of payment letters (`transforms.domain.fold.unsettled_dead_letter`).
PAYMENT_SOURCE_PREFIX = "payment_intent:"
#: Step prefix of the writers' letters (`write_warehouse`, `write_bigquery`, ...).
WRITE_STEP_PREFIX = "write_"
#: A PaymentIntent id inside a writer letter's raw record.
_PAYMENT_INTENT_ID = re.compile(r"\bpi_[A-Za-z0-9]+")
#: A charge id (`ch_`, or `py_` for bank debits) inside a writer letter's source or raw record.
_CHARGE_ID = re.compile(r"\b(?:ch|py)_[A-Za-z0-9]+")
#: Step prefix of the senders' letters (`send_thank_you_email`, ...).
SEND_STEP_PREFIX = "send_"
#: Senders' reasons for which nothing was sent (`transforms.sinks.ledger`).
NOT_SENT_REASONS = frozenset({"rejected", "retries_exhausted", "ledger_error"})
#: The sender's reason for a message that may or may not have reached its target.
OUTCOME_UNKNOWN_REASON = "outcome_unknown"
#: Steps whose letters stand for one source record.
RECORD_STEPS = frozenset({"read", "decode", "classify"})
#: Steps whose letters keep the record's own text as `raw` (classify keeps a summary of the
#: decoded event, which is no longer a record: it is always read again from its source).
RAW_IS_RECORD_STEPS = frozenset({"read", "decode"})


class Kind(Enum):
    RECORD = "record"
    PAYMENT = "payment"
    OUTCOME_UNKNOWN = "outcome_unknown"
    NOT_REDRIVABLE = "not_redrivable"


class Delivery(Enum):
    """What the operator found at the target of an `outcome_unknown` letter's message."""

    DELIVERED = "delivered"
    NOT_DELIVERED = "not_delivered"


def kind_of(letter: DeadLetter) -> Kind:
    """Which kind of letter this is (see the module docstring)."""
    if letter.source.startswith(PAYMENT_SOURCE_PREFIX):
        return Kind.PAYMENT
    if letter.step in RECORD_STEPS:
        return Kind.RECORD
    if letter.step.startswith(WRITE_STEP_PREFIX) and (
        _PAYMENT_INTENT_ID.search(letter.raw) or charge_id_of_letter(letter)
    ):
        return Kind.PAYMENT
    if _is_not_sent(letter) and charge_id_of_letter(letter):
        return Kind.PAYMENT
    if _is_outcome_unknown(letter) and charge_id_of_letter(letter):
        return Kind.OUTCOME_UNKNOWN
    return Kind.NOT_REDRIVABLE


def raw_is_record(letter: DeadLetter) -> bool:
    """Whether the letter's `raw` is the record's text as read (before any redaction)."""
    return letter.step in RAW_IS_RECORD_STEPS


def payment_intent_of_letter(letter: DeadLetter) -> str | None:
    """The PaymentIntent a payment letter (or a writer's letter) names, None for other letters."""
    if letter.source.startswith(PAYMENT_SOURCE_PREFIX):
        return letter.source[len(PAYMENT_SOURCE_PREFIX) :] or None
    if letter.step.startswith(WRITE_STEP_PREFIX):
        found = _PAYMENT_INTENT_ID.search(letter.raw)
        return found.group(0) if found else None
    return None


def charge_id_of_letter(letter: DeadLetter) -> str | None:
    """The charge a writer's letter that names no PaymentIntent is about, or a sender's
    letter whose message was not sent (`NOT_SENT_REASONS`) or may have been
    (`OUTCOME_UNKNOWN_REASON`); else None.

    A writer's `source` names it first (`dynamodb:<table>/Stripe - <charge id>`,
    kept whole in BigQuery), else its raw record (the supporter item's
    `payment_id`); a sender's `source` is `<target>/<charge id>`.
    """
    if _is_not_sent(letter) or _is_outcome_unknown(letter):
        # `<target>/<charge id>`: the target (a queue URL, a bus) may hold anything before.
        last = letter.source.rpartition("/")[2]
        return last if _CHARGE_ID.fullmatch(last) else None
    if not letter.step.startswith(WRITE_STEP_PREFIX) or _PAYMENT_INTENT_ID.search(letter.raw):
        return None
    found = _CHARGE_ID.search(letter.source) or _CHARGE_ID.search(letter.raw)
    return found.group(0) if found else None


def _is_not_sent(letter: DeadLetter) -> bool:
    return letter.step.startswith(SEND_STEP_PREFIX) and letter.reason in NOT_SENT_REASONS


def _is_outcome_unknown(letter: DeadLetter) -> bool:
    return letter.step.startswith(SEND_STEP_PREFIX) and letter.reason == OUTCOME_UNKNOWN_REASON


def sender_kind(letter: DeadLetter) -> str | None:
    """The message kind (`send_<kind>`) of a sender's letter whose message was not sent or
    whose outcome is unknown; None for other letters."""
    if _is_not_sent(letter) or _is_outcome_unknown(letter):
        return letter.step[len(SEND_STEP_PREFIX) :]
    return None


def charge_payment_intent(event: StripeEvent) -> tuple[str, str] | None:
    """(charge id, PaymentIntent id) when the event names both: a charge's events,
    and a refund's or a dispute's (their `charge`); None otherwise."""
    obj = event.data_object
    charge = _id(obj.get("id")) if obj.get("object") == "charge" else _id(obj.get("charge"))
    intent = payment_intent_of(event)
    if charge is None or intent is None:
        return None
    return charge, intent


def payment_intent_of(event: StripeEvent) -> str | None:
    """The PaymentIntent an event is about: a session's, a charge's, a refund's, its own.

    None when the event names none (a setup-mode session, an unrelated type).
    """
    obj = event.data_object
    if obj.get("object") == "payment_intent":
        return _id(obj.get("id"))
    return _id(obj.get("payment_intent"))


def _id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping):
        return _id(value.get("id"))
    return None


def describe(letter: DeadLetter) -> str:
    """One line naming the letter for an operator: id, step, reason, source; no raw text."""
    return f"{letter.dead_letter_id} {letter.step}/{letter.reason} {letter.source}"
