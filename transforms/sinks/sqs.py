"""Send thank-you emails and soft opt-ins to their SQS queues, exactly once per payment.

`SendMessages(queue_url, kind, ledger_table)` takes a `PCollection` of
`ThankYouEmail` or `SoftOptIn` (anything with `payment_id` and `message`, the
exact JSON body), bounded or unbounded, and returns `SendResult`:

- `sent`: payment ids whose message SQS accepted in this run (tag `SENT_TAG`);
- `already_sent`: payment ids the ledger records as sent before, or repeated
  within a bundle, so nothing was sent (tag `ALREADY_SENT_TAG`);
- `dead_letters`: a `DeadLetter` (step `send_<kind>`, `raw` the message body,
  so it can be re-driven) for every message not sent: `rejected` by SQS or
  DynamoDB, `retries_exhausted`, `ledger_error`, or `outcome_unknown` (below).

Every input element ends on exactly one output. Counters (namespace
`stripe_events`): `<kind>_sent`, `<kind>_already_sent`, `<kind>_dead_lettered`,
`<kind>_ledger_mark_failed`.

Delivery guarantee: **exactly once per payment** (with the ledger), across
redeliveries, bundle retries, restarts and replays days later; a crash can
only turn a message into an `outcome_unknown` dead letter, never a duplicate.

Design, and why both mechanisms. A FIFO queue's `MessageDeduplicationId`
(here a hash of `kind#payment_id`, with `MessageGroupId` the payment id)
makes SQS accept-and-drop a repeat, but only for five minutes after the
first send; a backfill or an EventBridge replay days later would send again.
So a conditional ledger in DynamoDB (`ledger_table`, key `messageKey` =
`kind#payment_id`) records each message's state:

1. **claim**: `PutItem` with `attribute_not_exists(messageKey)` writes
   `state=sending, claimedAt=now`. The claim is written once and never
   refreshed, so every send of a payment happens after its `claimedAt`.
2. **send** only while the claim is fresh: `now - claimedAt < stale_after`
   (default 4 minutes, below the 5-minute window, the minute left over for
   clock skew), checked again before every retry. If the claim exists
   already: `state=sent` -> skip (`already_sent`); `sending` and fresh -> a
   crash or a concurrent duplicate left it, send again: every send of that
   payment lies within `stale_after` of the first, inside FIFO's window, so
   the deduplication id absorbs the repeat; `sending` and stale -> whether the
   earlier attempt reached SQS cannot be known, so it becomes an
   `outcome_unknown` dead letter for an operator rather than a possible
   duplicate.
3. **mark**: `UpdateItem` sets `state=sent, sentAt`. A crash between send and
   mark is case 2's fresh `sending`.

Without a ledger (`ledger_table=None`) the guarantee is exactly once only
within FIFO's five minutes: fit for tests, not for replays. The ledger keeps
no personal data (key, kind, payment id, state, times) and no TTL: a replay
may come from any point of the archive.

Messages are buffered per bundle and sent with `SendMessageBatch`, 10 per
call; failed entries that SQS marks as not the sender's fault, and throttled,
transient or connection failures of whole calls, are retried with
exponential backoff and full jitter (`transforms.infrastructure.Backoff`), as are
the ledger's calls. botocore's own retries are off.

Start-up (`check_message_queue`, `check_ledger_table`, run in
`DoFn.setup()`): the queue must exist and be FIFO, the ledger table must
exist with key `messageKey` HASH; otherwise `ConfigurationError`. Both
are infrastructure, never created by the job. Logs carry payment ids,
counts and error codes, never message bodies (they hold email addresses).

Run the tests with `.venv/bin/pytest tests/transforms/sinks/test_sqs.py`.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple, Protocol

import apache_beam as beam
import boto3
import botocore.exceptions
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from schemas.records import DeadLetter, SoftOptIn, ThankYouEmail
from transforms.core.metrics import NAMESPACE
from transforms.domain.events import make_dead_letter
from transforms.infrastructure import (
    CLIENT_CONFIG,
    DEFAULT_BACKOFF,
    Backoff,
    ConfigurationError,
    call_with_retries,
    check_table_key,
    describe_error,
    dynamodb_client,
    error_code,
    is_retryable,
)
from transforms.sinks.common import Buffered, WriteInBatches
from transforms.sinks.contract import Flag, Sink, SinkConfig

_LOG = logging.getLogger(__name__)

THANK_YOU_EMAIL = "thank_you_email"
SOFT_OPT_IN = "soft_opt_in"

SENT_TAG = "sent"
ALREADY_SENT_TAG = "already_sent"
DEAD_LETTERS_TAG = "dead_letters"

REJECTED = "rejected"
RETRIES_EXHAUSTED = "retries_exhausted"
LEDGER_ERROR = "ledger_error"
OUTCOME_UNKNOWN = "outcome_unknown"

#: SendMessageBatch takes at most 10 entries.
SEND_BATCH_SIZE = 10
#: How long SQS FIFO remembers a deduplication id.
FIFO_DEDUPLICATION_WINDOW = timedelta(minutes=5)
DEFAULT_STALE_AFTER = timedelta(minutes=4)

LEDGER_KEY_SCHEMA = (("messageKey", "HASH"),)
SENDING = "sending"
SENT = "sent"

_KIND = re.compile(r"^[a-z][a-z_]*$")
_MISSING_QUEUE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)


class Message(Protocol):
    """What `SendMessages` needs of a record: `ThankYouEmail` and `SoftOptIn` have it."""

    @property
    def payment_id(self) -> str: ...

    @property
    def message(self) -> str: ...


def message_key(kind: str, payment_id: str) -> str:
    """The ledger key of a payment's message of one kind."""
    return f"{kind}#{payment_id}"


def deduplication_id(kind: str, payment_id: str) -> str:
    """The FIFO MessageDeduplicationId: fixed per (kind, payment), within SQS's 128 chars."""
    return hashlib.sha256(message_key(kind, payment_id).encode()).hexdigest()


def check_message_queue(queue_url: str, client: Any | None = None) -> None:
    """Raise `ConfigurationError` unless `queue_url` is an existing FIFO queue."""
    client = client or boto3.session.Session().client("sqs", config=CLIENT_CONFIG)
    try:
        attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["FifoQueue"])
    except botocore.exceptions.ClientError as error:
        if error_code(error) in _MISSING_QUEUE_CODES:
            raise ConfigurationError(
                f"SQS queue {queue_url} does not exist; the job does not create it"
            ) from None
        raise
    if attributes.get("Attributes", {}).get("FifoQueue") != "true":
        raise ConfigurationError(
            f"SQS queue {queue_url} is a standard queue; SendMessages needs a FIFO queue "
            "(name ending .fifo) so that its deduplication id absorbs resends"
        )


def check_ledger_table(table_name: str, client: Any | None = None) -> None:
    """Raise `ConfigurationError` unless the ledger table exists with key `messageKey` HASH."""
    check_table_key(table_name, LEDGER_KEY_SCHEMA, client)


class SendResult(NamedTuple):
    """The outputs of `SendMessages` (a NamedTuple so Beam records the names)."""

    sent: beam.PCollection[str]
    already_sent: beam.PCollection[str]
    dead_letters: beam.PCollection[DeadLetter]


class _LedgerVanishedError(Exception):
    """The ledger entry that refused a claim was gone when read back."""


class _Claim(enum.Enum):
    SEND = "send"
    ALREADY_SENT = "already_sent"
    STALE = "stale"


@dataclass
class _Entry(Buffered[Message]):
    claimed_at: float = 0.0


class _SendMessagesFn(WriteInBatches):
    """Buffers messages per bundle; claims, sends in batches of 10, marks."""

    entry_type = _Entry

    def __init__(
        self,
        queue_url: str,
        kind: str,
        ledger_table: str | None,
        backoff: Backoff,
        stale_after: timedelta,
    ) -> None:
        super().__init__(SEND_BATCH_SIZE)
        self._queue_url = queue_url
        self._queue_name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        self._kind = kind
        self._step = f"send_{kind}"
        self._ledger_table = ledger_table
        self._backoff = backoff
        self._stale_after = stale_after.total_seconds()
        self._sqs: Any = None
        self._dynamodb: Any = None
        self._rng = random.Random()
        self._sent = Metrics.counter(NAMESPACE, f"{kind}_sent")
        self._already_sent = Metrics.counter(NAMESPACE, f"{kind}_already_sent")
        self._dead_lettered = Metrics.counter(NAMESPACE, f"{kind}_dead_lettered")
        self._mark_failed = Metrics.counter(NAMESPACE, f"{kind}_ledger_mark_failed")

    def setup(self) -> None:
        self._sqs = boto3.session.Session().client("sqs", config=CLIENT_CONFIG)
        check_message_queue(self._queue_url, self._sqs)
        if self._ledger_table is not None:
            self._dynamodb = dynamodb_client()
            check_ledger_table(self._ledger_table, self._dynamodb)

    def teardown(self) -> None:
        for client in (self._sqs, self._dynamodb):
            if client is not None:
                client.close()
        self._sqs = self._dynamodb = None

    def write_batch(self, batch: list[_Entry]) -> Iterator[TaggedOutput]:
        to_send: list[_Entry] = []
        seen: set[str] = set()
        for entry in batch:
            payment_id = entry.element.payment_id
            if payment_id in seen:
                yield self._skip(entry)
                continue
            seen.add(payment_id)
            if self._ledger_table is None:
                to_send.append(entry)
                continue
            try:
                claim, entry.claimed_at = self._claim(payment_id)
            except (
                botocore.exceptions.ClientError,
                botocore.exceptions.BotoCoreError,
                _LedgerVanishedError,
            ) as error:
                yield self._dead_letter(entry, LEDGER_ERROR, describe_error(error))
                continue
            if claim is _Claim.SEND:
                to_send.append(entry)
            elif claim is _Claim.ALREADY_SENT:
                yield self._skip(entry)
            else:
                yield self._dead_letter(entry, OUTCOME_UNKNOWN, self._unknown_error())
        for start in range(0, len(to_send), SEND_BATCH_SIZE):
            yield from self._send(to_send[start : start + SEND_BATCH_SIZE])

    def _claim(self, payment_id: str) -> tuple[_Claim, float]:
        key = message_key(self._kind, payment_id)
        now = time.time()
        try:
            call_with_retries(
                lambda: self._dynamodb.put_item(
                    TableName=self._ledger_table,
                    Item={
                        "messageKey": {"S": key},
                        "kind": {"S": self._kind},
                        "paymentId": {"S": payment_id},
                        "state": {"S": SENDING},
                        "claimedAt": {"N": repr(now)},
                    },
                    ConditionExpression="attribute_not_exists(messageKey)",
                ),
                self._backoff,
                self._rng,
            )
            return _Claim.SEND, now
        except botocore.exceptions.ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
        item = call_with_retries(
            lambda: self._dynamodb.get_item(
                TableName=self._ledger_table, Key={"messageKey": {"S": key}}, ConsistentRead=True
            ),
            self._backoff,
            self._rng,
        ).get("Item")
        if item is None:
            raise _LedgerVanishedError("ledger entry deleted while being claimed")
        claimed_at = float(item["claimedAt"]["N"])
        if item["state"]["S"] == SENT:
            return _Claim.ALREADY_SENT, claimed_at
        if self._fresh(claimed_at):
            return _Claim.SEND, claimed_at
        return _Claim.STALE, claimed_at

    def _fresh(self, claimed_at: float) -> bool:
        return self._ledger_table is None or time.time() - claimed_at < self._stale_after

    def _send(self, batch: Sequence[_Entry]) -> Iterator[TaggedOutput]:
        pending = dict(enumerate(batch))
        last_error: dict[int, str] = {}
        attempt = 1
        while pending:
            for index in [i for i, entry in pending.items() if not self._fresh(entry.claimed_at)]:
                yield self._dead_letter(pending.pop(index), OUTCOME_UNKNOWN, self._unknown_error())
            if not pending:
                return
            try:
                response = self._sqs.send_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[self._batch_entry(index, entry) for index, entry in pending.items()],
                )
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
                if not is_retryable(error):
                    for entry in pending.values():
                        yield self._dead_letter(entry, REJECTED, describe_error(error))
                    return
                last_error = dict.fromkeys(pending, describe_error(error))
            else:
                last_error = {}
                for success in response.get("Successful", []):
                    yield from self._mark_sent(pending.pop(int(success["Id"])))
                for failure in response.get("Failed", []):
                    index = int(failure["Id"])
                    reason = f"{failure.get('Code')}: {failure.get('Message', '')}"
                    if failure.get("SenderFault"):
                        yield self._dead_letter(pending.pop(index), REJECTED, reason)
                    else:
                        last_error[index] = reason
            if not pending:
                return
            if attempt >= self._backoff.max_attempts:
                for index, entry in pending.items():
                    yield self._dead_letter(entry, RETRIES_EXHAUSTED, last_error[index])
                return
            time.sleep(self._backoff.delay(attempt, self._rng))
            attempt += 1

    def _batch_entry(self, index: int, entry: _Entry) -> dict[str, str]:
        payment_id = entry.element.payment_id
        return {
            "Id": str(index),
            "MessageBody": entry.element.message,
            "MessageGroupId": payment_id,
            "MessageDeduplicationId": deduplication_id(self._kind, payment_id),
        }

    def _mark_sent(self, entry: _Entry) -> Iterator[TaggedOutput]:
        payment_id = entry.element.payment_id
        if self._ledger_table is not None:
            try:
                call_with_retries(
                    lambda: self._dynamodb.update_item(
                        TableName=self._ledger_table,
                        Key={"messageKey": {"S": message_key(self._kind, payment_id)}},
                        UpdateExpression="SET #state = :sent, sentAt = :now",
                        ExpressionAttributeNames={"#state": "state"},
                        ExpressionAttributeValues={
                            ":sent": {"S": SENT},
                            ":now": {"N": repr(time.time())},
                        },
                    ),
                    self._backoff,
                    self._rng,
                )
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
                # The message is out: a replay now dead-letters it as outcome_unknown
                # rather than sending it twice.
                self._mark_failed.inc()
                _LOG.warning(
                    "Sent %s for payment %s but could not mark it in %s: %s",
                    self._kind,
                    payment_id,
                    self._ledger_table,
                    error_code(error),
                )
        self._sent.inc()
        yield entry.output(SENT_TAG, payment_id)

    def _skip(self, entry: _Entry) -> TaggedOutput:
        self._already_sent.inc()
        return entry.output(ALREADY_SENT_TAG, entry.element.payment_id)

    def _unknown_error(self) -> str:
        return (
            f"claimed in {self._ledger_table} more than {self._stale_after:.0f}s ago and never "
            "marked sent: the earlier attempt may or may not have reached SQS; check "
            "before re-driving"
        )

    def _dead_letter(self, entry: _Entry, reason: str, error: str) -> TaggedOutput:
        payment_id = entry.element.payment_id
        self._dead_lettered.inc()
        _LOG.warning("Dead-lettering %s for payment %s: %s", self._kind, payment_id, reason)
        return entry.output(
            DEAD_LETTERS_TAG,
            make_dead_letter(
                step=self._step,
                reason=reason,
                error=error,
                raw=entry.element.message,
                source=f"sqs:{self._queue_name}/{payment_id}",
            ),
        )


class SendMessages(beam.PTransform[beam.PCollection[Any], SendResult]):
    """`PCollection[ThankYouEmail | SoftOptIn]` -> `SendResult(sent, already_sent, dead_letters)`.

    `kind` names the message (`THANK_YOU_EMAIL`, `SOFT_OPT_IN`): it prefixes
    ledger keys and deduplication ids and names the dead-letter step
    `send_<kind>`. See the module docstring for the contract and the
    exactly-once design. `backoff` tunes retries and `stale_after` (below
    FIFO's 5 minutes) bounds how long a claim may be resent.
    """

    def __init__(
        self,
        queue_url: str,
        kind: str,
        ledger_table: str | None = None,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
    ) -> None:
        super().__init__()
        if not queue_url:
            raise ValueError("queue_url is required")
        if not _KIND.match(kind):
            raise ValueError(f"kind must be lower_snake_case, got {kind!r}")
        if ledger_table == "":
            raise ValueError("ledger_table must be a table name or None")
        if not timedelta(0) < stale_after < FIFO_DEDUPLICATION_WINDOW:
            raise ValueError("stale_after must be positive and below FIFO's 5-minute window")
        self._queue_url = queue_url
        self._kind = kind
        self._ledger_table = ledger_table
        self._backoff = backoff
        self._stale_after = stale_after

    def expand(self, messages: beam.PCollection[Any]) -> SendResult:
        outputs = messages | "SendBatches" >> beam.ParDo(
            _SendMessagesFn(
                self._queue_url, self._kind, self._ledger_table, self._backoff, self._stale_after
            )
        ).with_outputs(DEAD_LETTERS_TAG, SENT_TAG, ALREADY_SENT_TAG)
        return SendResult(
            sent=outputs[SENT_TAG],
            already_sent=outputs[ALREADY_SENT_TAG],
            dead_letters=outputs[DEAD_LETTERS_TAG],
        )


SENT_MESSAGES_TABLE = Flag(
    "sent_messages_table",
    "DynamoDB table (key messageKey) recording sent messages, so that a replay "
    "days later sends nothing again. Required with either queue.",
)
EMAILS_QUEUE_URL = Flag(
    "emails_queue_url", "SQS FIFO queue URL for thank-you emails. Default: the warehouse."
)
OPT_INS_QUEUE_URL = Flag(
    "opt_ins_queue_url", "SQS FIFO queue URL for soft opt-ins. Default: the warehouse."
)
_QUEUE_FLAGS = (EMAILS_QUEUE_URL, OPT_INS_QUEUE_URL)


def _check_ledger_given(config: SinkConfig) -> None:
    if not config[SENT_MESSAGES_TABLE.name]:
        raise ValueError(
            f"{'/'.join(flag.option for flag in _QUEUE_FLAGS)} need "
            f"{SENT_MESSAGES_TABLE.option}: SQS FIFO deduplication alone forgets a message "
            "after 5 minutes"
        )


def _check_queues_and_ledger(config: SinkConfig) -> None:
    for flag in _QUEUE_FLAGS:
        queue_url = config[flag.name]
        if queue_url:
            check_message_queue(queue_url)
    check_ledger_table(str(config[SENT_MESSAGES_TABLE.name]))


def _message_sink(record_type: type, kind: str, queue: Flag, label: str) -> Sink:
    def write(config: SinkConfig, pcolls: Mapping[type, beam.PCollection]) -> beam.PCollection:
        sent = pcolls[record_type] | label >> SendMessages(
            str(config[queue.name]), kind, config[SENT_MESSAGES_TABLE.name]
        )
        return sent.dead_letters

    # Both message sinks share their checks, so each runs once for the two.
    return Sink(
        name=f"{kind}s",
        flags=(queue, SENT_MESSAGES_TABLE),
        write=write,
        takes=(record_type,),
        check_flags=_check_ledger_given,
        check=_check_queues_and_ledger,
    )


THANK_YOU_EMAILS = _message_sink(
    ThankYouEmail, THANK_YOU_EMAIL, EMAILS_QUEUE_URL, "SendThankYouEmails"
)
SOFT_OPT_INS = _message_sink(SoftOptIn, SOFT_OPT_IN, OPT_INS_QUEUE_URL, "SendSoftOptIns")
