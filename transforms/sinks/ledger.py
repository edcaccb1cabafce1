"""One claim -> send -> mark ledger for every effect a service cannot de-duplicate itself.

SQS standard queues and EventBridge accept a repeat as a new message; SQS
FIFO forgets a deduplication id after five minutes. So every effect that
must happen once per payment (a thank-you email, a soft opt-in, a bus
event, a contributions-store message) is recorded in one DynamoDB table
(key `messageKey` = `effect_key(kind, payment_id)`, e.g.
`acquisition_event#ch_1`), and `SendExactlyOnceFn` sends through a
`Transport`:

1. **claim**: `PutItem` with `attribute_not_exists(messageKey)` writes
   `state=sending, claimedAt=now`, once, never refreshed.
2. **send** in batches (`Transport.batches`). If the claim existed already:
   `sent` -> skip (`already_sent`); `sending` -> a crash, a bundle retry or a
   concurrent duplicate left it, so the earlier attempt may have reached the
   service. A de-duplicating transport (FIFO) sends again while the claim is
   younger than `resend_window` (below FIFO's 5 minutes), where the
   deduplication id absorbs the repeat; any other transport, and any older
   claim, makes it an `outcome_unknown` dead letter for an operator instead
   of a possible duplicate. The same holds for a send whose answer was lost
   (connection closed or read timeout after the request left): a
   de-duplicating transport retries, the others dead-letter it as
   `outcome_unknown`. Refused calls (throttling, 5xx, entries the service
   says it did not take) are retried with backoff: nothing was applied.
3. **mark**: `UpdateItem` sets `state=sent, sentAt`. A crash between send
   and mark is case 2's `sending`.

A `rejected`, `retries_exhausted` or `outcome_unknown` letter keeps the
claim: its error ends with that claim's `claimedAt` (`claim_note`), so that
`pipelines.redrive` acts on exactly that claim. Nothing was sent for the
first two, and the re-drive releases it (`release_claim`: a conditional
delete of a `sending` item with that `claimedAt`) and sends the message
once; it resolves the letter only when the item then says `sent`
(`ledger_item`), so a message the re-drive did not send keeps its letter.
For `outcome_unknown` only the operator who checked the target can tell:
arrived, the re-drive marks that claim sent (`confirm_sent`, as
conditional); did not, it releases it as above.

So each effect happens at most once, and an effect that did not provably
happen is a dead letter, never silence: exactly once whenever the service
answers. FIFO's deduplication id only narrows the crash window.

Before any of that, a message outside the run's `MessageWindow`
(`--messages_max_age_hours`, `--no_messages`) is not sent and leaves no
claim, so a later run with a wider window may still send it: it is counted
as `output_skipped_message_too_old` (or `output_skipped_no_messages`), an
output skipped, not a record (the summary's accounting identity counts
records), and `<kind>_not_sent` per kind.

The ledger also holds plain facts (`record_fact`, `has_fact`): the
contributions-store sink records there that a charge is fully refunded, so
the refund message can follow the payment's message whichever comes first.
Entries keep no personal data (key, kind, payment id, state, times) and no
TTL: a replay may come from any point of the archive.
"""

from __future__ import annotations

import enum
import logging
import random
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

import apache_beam as beam
import botocore.exceptions
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp

from schemas.records import DeadLetter
from transforms.core import metrics
from transforms.core.metrics import NAMESPACE
from transforms.domain.events import make_dead_letter
from transforms.infrastructure import (
    Backoff,
    call_with_retries,
    check_table_key,
    describe_error,
    dynamodb_client,
    error_code,
    is_retryable,
    naming_flag,
)
from transforms.sinks.common import Buffered
from transforms.sinks.contract import SEND_ALL, Flag, MessageWindow, SinkConfig

_LOG = logging.getLogger(__name__)

LEDGER_KEY_SCHEMA = (("messageKey", "HASH"),)
SENDING = "sending"
SENT = "sent"
RECORDED = "recorded"

SENT_TAG = "sent"
ALREADY_SENT_TAG = "already_sent"
DEAD_LETTERS_TAG = "dead_letters"

REJECTED = "rejected"
RETRIES_EXHAUSTED = "retries_exhausted"
LEDGER_ERROR = "ledger_error"
OUTCOME_UNKNOWN = "outcome_unknown"

#: How long SQS FIFO remembers a deduplication id.
FIFO_DEDUPLICATION_WINDOW = timedelta(minutes=5)
DEFAULT_RESEND_WINDOW = timedelta(minutes=4)

_KIND = re.compile(r"^[a-z][a-z_]*$")
#: The claim a rejected or exhausted send left, at the end of its letter's error.
_CLAIM_NOTE = re.compile(r"; claim left: claimedAt=(?P<at>[0-9.e+-]+)$")
#: The request left and its answer did not come back: it may have been applied.
_AMBIGUOUS = (botocore.exceptions.ConnectionClosedError, botocore.exceptions.ReadTimeoutError)


def effect_key(kind: str, payment_id: str) -> str:
    """The ledger key of one effect of a payment: `kind#payment_id`."""
    return f"{kind}#{payment_id}"


def check_kind(kind: str) -> str:
    if not _KIND.match(kind):
        raise ValueError(f"kind must be lower_snake_case, got {kind!r}")
    return kind


def check_ledger_table(table_name: str, client: Any | None = None) -> None:
    """Raise `ConfigurationError` unless the ledger table exists with key `messageKey` HASH."""
    check_table_key(table_name, LEDGER_KEY_SCHEMA, client)


SENT_MESSAGES_TABLE = Flag(
    "sent_messages_table",
    "DynamoDB table (key messageKey) recording every effect sent that its service cannot "
    "de-duplicate (messages, bus events, metric data), so that a replay days later sends "
    "nothing again. Required with any queue, the bus or CloudWatch.",
)


def check_ledger_given(config: SinkConfig) -> None:
    """ValueError naming every selected sink's flag that needs `--sent_messages_table`."""
    if config[SENT_MESSAGES_TABLE.name]:
        return
    needing = [
        sink.flags[0].option for sink in config.selected if SENT_MESSAGES_TABLE in sink.flags
    ]
    raise ValueError(
        f"{', '.join(needing)} need {SENT_MESSAGES_TABLE.option}: neither EventBridge, "
        "CloudWatch nor a standard queue de-duplicates, the ledger makes them exactly once"
    )


def check_ledger(config: SinkConfig) -> None:
    """The pre-launch check of the ledger table (`check_ledger_table`)."""
    with naming_flag(SENT_MESSAGES_TABLE.option):
        check_ledger_table(str(config[SENT_MESSAGES_TABLE.name]))


def claim_note(claimed_at: float) -> str:
    """What a letter's error says of the claim its failed send left (`left_claim` reads it)."""
    return f"; claim left: claimedAt={claimed_at!r}"


def left_claim(error: str) -> float | None:
    """The `claimedAt` of the claim a letter's error says its send left, else None."""
    found = _CLAIM_NOTE.search(error)
    return float(found.group("at")) if found else None


def ledger_item(client: Any, table: str, kind: str, payment_id: str) -> tuple[str, float] | None:
    """(state, claimedAt) of the ledger item of (kind, payment id), None when there is none."""
    key = {"messageKey": {"S": effect_key(kind, payment_id)}}
    found = client.get_item(TableName=table, Key=key, ConsistentRead=True)
    item = found.get("Item")
    if item is None:
        return None
    return item["state"]["S"], float(item["claimedAt"]["N"])


def confirm_sent(
    client: Any, table: str, kind: str, payment_id: str, claimed_at: float, confirmed_by: str
) -> bool:
    """Marks the ledger item of (kind, payment id) `sent` only while it is still the claim made
    at `claimed_at` (`sending`, or already `sent` under that same claim: nothing to write);
    False when it is not (claimed again since, or gone). `confirmed_by` names who said the
    message arrived (a re-drive's run id), kept on the item."""
    try:
        client.update_item(
            TableName=table,
            Key={"messageKey": {"S": effect_key(kind, payment_id)}},
            UpdateExpression="SET #state = :sent, sentAt = :now, confirmedBy = :by",
            ConditionExpression="#state = :sending AND claimedAt = :at",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":sent": {"S": SENT},
                ":sending": {"S": SENDING},
                ":at": {"N": repr(claimed_at)},
                ":now": {"N": repr(time.time())},
                ":by": {"S": confirmed_by},
            },
        )
    except botocore.exceptions.ClientError as error:
        if error_code(error) != "ConditionalCheckFailedException":
            raise
        # A run that died after marking it leaves the letter pending: a second confirmation
        # of the same claim must still resolve it.
        return ledger_item(client, table, kind, payment_id) == (SENT, claimed_at)
    return True


def release_claim(client: Any, table: str, kind: str, payment_id: str, claimed_at: float) -> bool:
    """Deletes the ledger item of (kind, payment id) only while it is still the claim made at
    `claimed_at` in state `sending`; False when it is not (sent, or claimed again since)."""
    try:
        client.delete_item(
            TableName=table,
            Key={"messageKey": {"S": effect_key(kind, payment_id)}},
            ConditionExpression="#state = :sending AND claimedAt = :at",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":sending": {"S": SENDING}, ":at": {"N": repr(claimed_at)}},
        )
    except botocore.exceptions.ClientError as error:
        if error_code(error) == "ConditionalCheckFailedException":
            return False
        raise
    return True


class Message(Protocol):
    """What the sender needs of a record: the payment it belongs to and the exact body."""

    @property
    def payment_id(self) -> str: ...

    @property
    def message(self) -> str: ...


class Claim(enum.Enum):
    NEW = "new"
    SENDING = "sending"
    SENT = "sent"


class LedgerVanishedError(Exception):
    """The ledger entry that refused a claim was gone when read back."""


class Ledger:
    """The DynamoDB calls of the ledger, each retried per `backoff`."""

    def __init__(self, client: Any, table: str, backoff: Backoff, rng: random.Random) -> None:
        self._client = client
        self._table = table
        self._backoff = backoff
        self._rng = rng

    @property
    def table(self) -> str:
        return self._table

    def _call(self, call: Any) -> Any:
        return call_with_retries(call, self._backoff, self._rng)

    def claim(self, kind: str, payment_id: str) -> tuple[Claim, float]:
        """Claims the effect; (what was there before, when it was first claimed)."""
        key = effect_key(kind, payment_id)
        now = time.time()
        # Tells our own claim, retried after a lost answer, from someone else's.
        token = uuid.uuid4().hex
        try:
            self._call(
                lambda: self._client.put_item(
                    TableName=self._table,
                    Item={
                        "messageKey": {"S": key},
                        "kind": {"S": kind},
                        "paymentId": {"S": payment_id},
                        "state": {"S": SENDING},
                        "claimedAt": {"N": repr(now)},
                        "claimToken": {"S": token},
                    },
                    ConditionExpression="attribute_not_exists(messageKey)",
                )
            )
            return Claim.NEW, now
        except botocore.exceptions.ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
        item = self._get(key)
        if item is None:
            raise LedgerVanishedError("ledger entry deleted while being claimed")
        claimed_at = float(item["claimedAt"]["N"])
        if item.get("claimToken", {}).get("S") == token and item["state"]["S"] == SENDING:
            return Claim.NEW, claimed_at
        return (Claim.SENT if item["state"]["S"] == SENT else Claim.SENDING), claimed_at

    def mark_sent(self, kind: str, payment_id: str) -> None:
        self._call(
            lambda: self._client.update_item(
                TableName=self._table,
                Key={"messageKey": {"S": effect_key(kind, payment_id)}},
                UpdateExpression="SET #state = :sent, sentAt = :now",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":sent": {"S": SENT},
                    ":now": {"N": repr(time.time())},
                },
            )
        )

    def is_sent(self, kind: str, payment_id: str) -> bool:
        item = self._get(effect_key(kind, payment_id))
        return item is not None and item["state"]["S"] == SENT

    def record_fact(self, kind: str, payment_id: str) -> None:
        """Records that something is true of a payment (idempotent)."""
        self._call(
            lambda: self._client.put_item(
                TableName=self._table,
                Item={
                    "messageKey": {"S": effect_key(kind, payment_id)},
                    "kind": {"S": kind},
                    "paymentId": {"S": payment_id},
                    "state": {"S": RECORDED},
                    "claimedAt": {"N": repr(time.time())},
                },
            )
        )

    def has_fact(self, kind: str, payment_id: str) -> bool:
        return self._get(effect_key(kind, payment_id)) is not None

    def _get(self, key: str) -> dict[str, Any] | None:
        found = self._call(
            lambda: self._client.get_item(
                TableName=self._table, Key={"messageKey": {"S": key}}, ConsistentRead=True
            )
        )
        item: dict[str, Any] | None = found.get("Item")
        return item


@dataclass
class Entry:
    """One message on its way: the record, where it sits in the pipeline, its claim."""

    record: Message
    timestamp: Timestamp
    window: BoundedWindow
    claimed_at: float = 0.0


@dataclass
class BatchOutcome:
    """What the service said about one batch, by position in it."""

    sent: list[int] = field(default_factory=list)
    retry: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)


class Transport(Protocol):
    """How one kind of service takes messages (SQS, EventBridge)."""

    #: Names the target in dead letters' `source` (`sqs:<queue>`, `events:<bus>`).
    target: str
    #: True when the service absorbs a repeat inside `resend_window` (SQS FIFO).
    deduplicates: bool

    def setup(self) -> None: ...

    def close(self) -> None: ...

    def batches(self, entries: Sequence[Entry]) -> Iterator[list[Entry]]: ...

    def send(self, kind: str, batch: Sequence[Entry]) -> BatchOutcome:
        """Sends one batch; raises botocore errors for whole-call failures."""
        ...


class SendResult(NamedTuple):
    """The outputs of a sender (a NamedTuple so Beam records the names)."""

    sent: beam.PCollection[str]
    already_sent: beam.PCollection[str]
    dead_letters: beam.PCollection[DeadLetter]


class SendExactlyOnceFn(beam.DoFn):
    """Buffers a bundle's messages; claims, sends through `transport`, marks.

    Main output: none. Tags: `SENT_TAG` and `ALREADY_SENT_TAG` (payment ids),
    `DEAD_LETTERS_TAG` (`DeadLetter`, step `send_<kind>`, `raw` the body).
    Counters `<kind>_sent`, `<kind>_already_sent`, `<kind>_dead_lettered`,
    `<kind>_ledger_mark_failed`, `<kind>_not_sent`. `ledger_table=None`
    (tests only) sends without claims.

    `window`: a record outside it (by its `created`, when it has one) goes to
    no output and is counted (`output_skipped_<reason>`); the default sends all.
    """

    def __init__(
        self,
        transport: Transport,
        kind: str,
        ledger_table: str | None,
        backoff: Backoff,
        resend_window: timedelta = DEFAULT_RESEND_WINDOW,
        buffer_size: int = 10,
        window: MessageWindow = SEND_ALL,
    ) -> None:
        if not timedelta(0) < resend_window < FIFO_DEDUPLICATION_WINDOW:
            raise ValueError("resend_window must be positive and below FIFO's 5-minute window")
        self._window = window
        self._transport = transport
        self._kind = check_kind(kind)
        self._step = f"send_{kind}"
        self._ledger_table = ledger_table
        self._backoff = backoff
        self._resend_window = resend_window.total_seconds()
        self._buffer_size = buffer_size
        self._ledger: Ledger | None = None
        self._dynamodb: Any = None
        self._rng = random.Random()
        self._buffer: list[Entry] = []
        self._sent = Metrics.counter(NAMESPACE, f"{kind}_sent")
        self._already_sent = Metrics.counter(NAMESPACE, f"{kind}_already_sent")
        self._dead_lettered = Metrics.counter(NAMESPACE, f"{kind}_dead_lettered")
        self._mark_failed = Metrics.counter(NAMESPACE, f"{kind}_ledger_mark_failed")
        self._not_sent = Metrics.counter(NAMESPACE, f"{kind}_not_sent")

    def setup(self) -> None:
        self._transport.setup()
        if self._ledger_table is not None:
            self._dynamodb = dynamodb_client()
            check_ledger_table(self._ledger_table, self._dynamodb)
            self._ledger = Ledger(self._dynamodb, self._ledger_table, self._backoff, self._rng)

    def teardown(self) -> None:
        self._transport.close()
        if self._dynamodb is not None:
            self._dynamodb.close()
        self._dynamodb = self._ledger = None

    def start_bundle(self) -> None:
        self._buffer = []

    def process(
        self,
        record: Message,
        timestamp: Timestamp = beam.DoFn.TimestampParam,  # type: ignore[assignment]
        window: BoundedWindow = beam.DoFn.WindowParam,  # type: ignore[assignment]
    ) -> Iterator[TaggedOutput]:
        if not self._window.sends_all:
            created: datetime | None = getattr(record, "created", None)
            reason = self._window.skip_reason(created)
            if reason is not None:
                metrics.inc(metrics.OUTPUT_SKIPPED_PREFIX + reason)
                self._not_sent.inc()
                return
        self._buffer.append(Entry(record, timestamp, window))
        if len(self._buffer) >= self._buffer_size:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[TaggedOutput]:
        yield from self._flush()

    def _flush(self) -> Iterator[TaggedOutput]:
        batch, self._buffer = self._buffer, []
        to_send: list[Entry] = []
        seen: set[str] = set()
        for entry in batch:
            payment_id = entry.record.payment_id
            if payment_id in seen:
                yield self._skip(entry)
                continue
            seen.add(payment_id)
            if self._ledger is None:
                entry.claimed_at = time.time()
                to_send.append(entry)
                continue
            try:
                claim, entry.claimed_at = self._ledger.claim(self._kind, payment_id)
            except (
                botocore.exceptions.ClientError,
                botocore.exceptions.BotoCoreError,
                LedgerVanishedError,
            ) as error:
                yield self._dead_letter(entry, LEDGER_ERROR, describe_error(error))
                continue
            if claim is Claim.SENT:
                yield self._skip(entry)
            elif claim is Claim.NEW or self._may_resend(entry):
                to_send.append(entry)
            else:
                yield self._dead_letter(entry, OUTCOME_UNKNOWN, self._unknown_error())
        for chunk in self._transport.batches(to_send):
            yield from self._send(chunk)

    def _may_resend(self, entry: Entry) -> bool:
        """Whether a message whose earlier attempt may have gone out can be sent (again)."""
        if self._ledger is None:
            return True
        fresh = time.time() - entry.claimed_at < self._resend_window
        return self._transport.deduplicates and fresh

    def _send(self, batch: Sequence[Entry]) -> Iterator[TaggedOutput]:
        pending = dict(enumerate(batch))
        last_error: dict[int, str] = {}
        attempt = 1
        maybe_sent: set[int] = set()
        while pending:
            for index in [i for i in maybe_sent if i in pending]:
                if not self._may_resend(pending[index]):
                    error = last_error.get(index, "no answer")
                    yield self._dead_letter(
                        pending.pop(index), OUTCOME_UNKNOWN, self._lost_error(error)
                    )
            if not pending:
                return
            order = list(pending)
            try:
                outcome = self._transport.send(self._kind, [pending[i] for i in order])
            except _AMBIGUOUS as error:
                maybe_sent.update(pending)
                last_error = dict.fromkeys(pending, describe_error(error))
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
                if not is_retryable(error):
                    for entry in pending.values():
                        yield self._dead_letter(entry, REJECTED, describe_error(error))
                    return
                last_error = dict.fromkeys(pending, describe_error(error))
            else:
                last_error = {}
                for position in outcome.sent:
                    yield from self._mark_sent(pending.pop(order[position]))
                for position, reason in outcome.rejected.items():
                    yield self._dead_letter(pending.pop(order[position]), REJECTED, reason)
                for position, reason in outcome.retry.items():
                    last_error[order[position]] = reason
            if not pending:
                return
            if any(i in maybe_sent for i in pending) and not self._transport.deduplicates:
                continue  # the loop's head dead-letters what cannot be resent
            if attempt >= self._backoff.max_attempts:
                for index, entry in pending.items():
                    reason = OUTCOME_UNKNOWN if index in maybe_sent else RETRIES_EXHAUSTED
                    yield self._dead_letter(entry, reason, last_error.get(index, "no answer"))
                return
            time.sleep(self._backoff.delay(attempt, self._rng))
            attempt += 1

    def _mark_sent(self, entry: Entry) -> Iterator[TaggedOutput]:
        payment_id = entry.record.payment_id
        if self._ledger is not None:
            try:
                self._ledger.mark_sent(self._kind, payment_id)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
                # The message is out: a replay now dead-letters it as outcome_unknown
                # rather than sending it twice.
                self._mark_failed.inc()
                _LOG.warning(
                    "Sent %s for payment %s but could not mark it in %s: %s",
                    self._kind,
                    payment_id,
                    self._ledger.table,
                    error_code(error),
                )
        self._sent.inc()
        yield _output(SENT_TAG, payment_id, entry)

    def _skip(self, entry: Entry) -> TaggedOutput:
        self._already_sent.inc()
        return _output(ALREADY_SENT_TAG, entry.record.payment_id, entry)

    def _unknown_error(self) -> str:
        return (
            f"claimed in {self._ledger_table} and never marked sent: the earlier attempt may "
            f"or may not have reached {self._transport.target}; check before re-driving"
        )

    def _lost_error(self, error: str) -> str:
        return (
            f"{error}: the request left but its answer was lost, so it may or may not have "
            f"reached {self._transport.target}, which would not absorb a repeat; check before "
            "re-driving"
        )

    def _dead_letter(self, entry: Entry, reason: str, error: str) -> TaggedOutput:
        payment_id = entry.record.payment_id
        if reason in (REJECTED, RETRIES_EXHAUSTED, OUTCOME_UNKNOWN) and self._ledger is not None:
            # The claim stays: a re-drive acts on exactly this one (releases it when nothing
            # was sent; for an unknown outcome, as the operator who checked the target says).
            error += claim_note(entry.claimed_at)
        self._dead_lettered.inc()
        _LOG.warning("Dead-lettering %s for payment %s: %s", self._kind, payment_id, reason)
        return _output(
            DEAD_LETTERS_TAG,
            make_dead_letter(
                step=self._step,
                reason=reason,
                error=error,
                raw=entry.record.message,
                source=f"{self._transport.target}/{payment_id}",
            ),
            entry,
        )


def _output(tag: str, value: object, entry: Entry) -> TaggedOutput:
    return Buffered(entry.record, entry.timestamp, entry.window).output(tag, value)


def send_exactly_once(
    messages: beam.PCollection[Any], label: str, fn: SendExactlyOnceFn
) -> SendResult:
    """Applies `fn` and names its outputs."""
    outputs = messages | label >> beam.ParDo(fn).with_outputs(
        DEAD_LETTERS_TAG, SENT_TAG, ALREADY_SENT_TAG
    )
    return SendResult(
        sent=outputs[SENT_TAG],
        already_sent=outputs[ALREADY_SENT_TAG],
        dead_letters=outputs[DEAD_LETTERS_TAG],
    )
