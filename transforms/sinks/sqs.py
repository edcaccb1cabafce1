"""Send messages (thank-you emails, soft opt-ins, store messages) to SQS, exactly once per payment.

`SendMessages(queue_url, kind, ledger_table)` takes a `PCollection` of
anything with `payment_id` and `message` (the exact JSON body), bounded or
unbounded, and returns `SendResult`:

- `sent`: payment ids whose message SQS accepted in this run (tag `SENT_TAG`);
- `already_sent`: payment ids the ledger records as sent before, or repeated
  within a bundle, so nothing was sent (tag `ALREADY_SENT_TAG`);
- `dead_letters`: a `DeadLetter` (step `send_<kind>`, `raw` the message body,
  so it can be re-driven) for every message not sent: `rejected` by SQS or
  DynamoDB, `retries_exhausted`, `ledger_error`, or `outcome_unknown`.

Every input element ends on exactly one output, but for those outside the
run's `window` (`transforms.sinks.contract.MessageWindow`: too old, or
`--no_messages`), which are counted and not sent. Counters (namespace
`stripe_events`): `<kind>_sent`, `<kind>_already_sent`, `<kind>_dead_lettered`,
`<kind>_ledger_mark_failed`.

Delivery guarantee: **exactly once per payment** with the ledger
(`transforms.sinks.ledger`: claim -> send -> mark, key `kind#payment_id`),
on standard and FIFO queues alike. What the queue kind changes: a FIFO
queue's `MessageDeduplicationId` (a hash of `kind#payment_id`, with
`MessageGroupId` the payment id) absorbs a repeat for five minutes, so a
message whose earlier attempt may have gone out (a lost answer, a crash
before the mark) is sent again within `stale_after` of its claim; on a
standard queue such a message becomes an `outcome_unknown` dead letter
instead, since a repeat would be delivered twice. `message_attributes`
(e.g. the contributions store's `keyId`) go on every message as String
attributes.

Messages are buffered per bundle and sent with `SendMessageBatch`, 10 per
call; entries SQS marks as not the sender's fault, and throttled, transient
or refused calls, are retried with exponential backoff and full jitter
(`transforms.infrastructure.Backoff`), as are the ledger's calls. botocore's
own retries are off.

Start-up (`check_message_queue`, `check_ledger_table`, run in
`DoFn.setup()`): the queue must exist (standard or FIFO: the check says
which), the ledger table must exist with key `messageKey` HASH; otherwise
`ConfigurationError`. Both are infrastructure, never created by the job.
Logs carry payment ids, counts and error codes, never message bodies (they
hold email addresses).

Run the tests with `.venv/bin/pytest tests/transforms/sinks/test_sqs.py`.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import apache_beam as beam
import boto3
import botocore.exceptions

from schemas.records import SoftOptIn, ThankYouEmail
from transforms.infrastructure import (
    CLIENT_CONFIG,
    DEFAULT_BACKOFF,
    RETRYING_CLIENT_CONFIG,
    Backoff,
    ConfigurationError,
    error_code,
    naming_flag,
)
from transforms.sinks.contract import SEND_ALL, Flag, MessageWindow, Sink, SinkConfig
from transforms.sinks.ledger import (
    ALREADY_SENT_TAG,
    DEAD_LETTERS_TAG,
    DEFAULT_RESEND_WINDOW,
    FIFO_DEDUPLICATION_WINDOW,
    LEDGER_ERROR,
    LEDGER_KEY_SCHEMA,
    OUTCOME_UNKNOWN,
    REJECTED,
    RETRIES_EXHAUSTED,
    SENDING,
    SENT,
    SENT_MESSAGES_TABLE,
    SENT_TAG,
    BatchOutcome,
    Entry,
    Message,
    SendExactlyOnceFn,
    SendResult,
    check_kind,
    check_ledger,
    check_ledger_given,
    check_ledger_table,
    effect_key,
    send_exactly_once,
)

__all__ = [
    "ALREADY_SENT_TAG",
    "DEAD_LETTERS_TAG",
    "FIFO",
    "FIFO_DEDUPLICATION_WINDOW",
    "LEDGER_ERROR",
    "LEDGER_KEY_SCHEMA",
    "OUTCOME_UNKNOWN",
    "REJECTED",
    "RETRIES_EXHAUSTED",
    "SENDING",
    "SENT",
    "SENT_MESSAGES_TABLE",
    "SENT_TAG",
    "STANDARD",
    "Message",
    "SendMessages",
    "SendResult",
    "check_ledger_table",
    "check_message_queue",
    "deduplication_id",
    "message_key",
]

THANK_YOU_EMAIL = "thank_you_email"
SOFT_OPT_IN = "soft_opt_in"

#: SendMessageBatch takes at most 10 entries.
SEND_BATCH_SIZE = 10
DEFAULT_STALE_AFTER = DEFAULT_RESEND_WINDOW

FIFO = "FIFO"
STANDARD = "standard"

_MISSING_QUEUE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)


def message_key(kind: str, payment_id: str) -> str:
    """The ledger key of a payment's message of one kind."""
    return effect_key(kind, payment_id)


def deduplication_id(kind: str, payment_id: str) -> str:
    """The FIFO MessageDeduplicationId: fixed per (kind, payment), within SQS's 128 chars."""
    return hashlib.sha256(message_key(kind, payment_id).encode()).hexdigest()


def check_message_queue(queue_url: str, client: Any | None = None) -> str:
    """`FIFO` or `STANDARD`: the kind of the existing queue; `ConfigurationError` if missing."""
    client = client or boto3.session.Session().client("sqs", config=RETRYING_CLIENT_CONFIG)
    try:
        attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["FifoQueue"])
    except botocore.exceptions.ClientError as error:
        if error_code(error) in _MISSING_QUEUE_CODES:
            raise ConfigurationError(
                f"the SQS queue {queue_url} does not exist; the job does not create it: check "
                "the URL, region and endpoint, or create the queue (standard or FIFO)"
            ) from None
        raise
    return FIFO if attributes.get("Attributes", {}).get("FifoQueue") == "true" else STANDARD


class _SqsTransport:
    """SendMessageBatch to one queue, standard or FIFO (found at setup)."""

    def __init__(self, queue_url: str, message_attributes: Mapping[str, str]) -> None:
        self._queue_url = queue_url
        self._attributes = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in message_attributes.items()
        }
        self.target = "sqs:" + queue_url.rstrip("/").rsplit("/", 1)[-1]
        self.deduplicates = False
        self._client: Any = None

    def setup(self) -> None:
        self._client = boto3.session.Session().client("sqs", config=CLIENT_CONFIG)
        self.deduplicates = check_message_queue(self._queue_url, self._client) == FIFO

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    def batches(self, entries: Sequence[Entry]) -> Iterator[list[Entry]]:
        for start in range(0, len(entries), SEND_BATCH_SIZE):
            yield list(entries[start : start + SEND_BATCH_SIZE])

    def send(self, kind: str, batch: Sequence[Entry]) -> BatchOutcome:
        response = self._client.send_message_batch(
            QueueUrl=self._queue_url,
            Entries=[self._entry(kind, index, entry) for index, entry in enumerate(batch)],
        )
        outcome = BatchOutcome(
            sent=[int(success["Id"]) for success in response.get("Successful", [])]
        )
        for failure in response.get("Failed", []):
            reason = f"{failure.get('Code')}: {failure.get('Message', '')}"
            if failure.get("SenderFault"):
                outcome.rejected[int(failure["Id"])] = reason
            else:
                outcome.retry[int(failure["Id"])] = reason
        return outcome

    def _entry(self, kind: str, index: int, entry: Entry) -> dict[str, Any]:
        payment_id = entry.record.payment_id
        sent: dict[str, Any] = {"Id": str(index), "MessageBody": entry.record.message}
        if self._attributes:
            sent["MessageAttributes"] = self._attributes
        if self.deduplicates:
            sent["MessageGroupId"] = payment_id
            sent["MessageDeduplicationId"] = deduplication_id(kind, payment_id)
        return sent


class SendMessages(beam.PTransform[beam.PCollection[Any], SendResult]):
    """`PCollection[Message]` -> `SendResult(sent, already_sent, dead_letters)`.

    `kind` names the message (`THANK_YOU_EMAIL`, `SOFT_OPT_IN`, ...): it
    prefixes ledger keys and deduplication ids and names the dead-letter step
    `send_<kind>`. See the module docstring for the contract. `backoff` tunes
    retries and `stale_after` (below FIFO's 5 minutes) bounds how long a
    claim may be resent to a FIFO queue. `window`: which messages are sent
    (by their `created`); the default sends all.
    """

    def __init__(
        self,
        queue_url: str,
        kind: str,
        ledger_table: str | None = None,
        *,
        message_attributes: Mapping[str, str] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        window: MessageWindow = SEND_ALL,
    ) -> None:
        super().__init__()
        if not queue_url:
            raise ValueError("queue_url is required")
        check_kind(kind)
        if ledger_table == "":
            raise ValueError("ledger_table must be a table name or None")
        if not timedelta(0) < stale_after < FIFO_DEDUPLICATION_WINDOW:
            raise ValueError("stale_after must be positive and below FIFO's 5-minute window")
        self._queue_url = queue_url
        self._kind = kind
        self._ledger_table = ledger_table
        self._attributes = dict(message_attributes or {})
        self._backoff = backoff
        self._stale_after = stale_after
        self._window = window

    def expand(self, messages: beam.PCollection[Any]) -> SendResult:
        fn = SendExactlyOnceFn(
            _SqsTransport(self._queue_url, self._attributes),
            self._kind,
            self._ledger_table,
            self._backoff,
            self._stale_after,
            window=self._window,
        )
        return send_exactly_once(messages, "SendBatches", fn)


EMAILS_QUEUE_URL = Flag(
    "emails_queue_url",
    "SQS queue URL (standard or FIFO) for thank-you emails. Default: the warehouse.",
)
OPT_INS_QUEUE_URL = Flag(
    "opt_ins_queue_url",
    "SQS queue URL (standard or FIFO) for soft opt-ins. Default: the warehouse.",
)


def check_queue(queue_url: str) -> None:
    """The pre-launch check of one queue: it exists; says on stderr which kind it is."""
    print(f"SQS queue {queue_url}: {check_message_queue(queue_url)}", file=sys.stderr)


def _message_sink(record_type: type, kind: str, queue: Flag, label: str) -> Sink:
    def write(config: SinkConfig, pcolls: Mapping[type, beam.PCollection]) -> beam.PCollection:
        sent = pcolls[record_type] | label >> SendMessages(
            str(config[queue.name]),
            kind,
            config[SENT_MESSAGES_TABLE.name],
            window=config.messages,
        )
        return sent.dead_letters

    def check(config: SinkConfig) -> None:
        with naming_flag(queue.option):
            check_queue(str(config[queue.name]))
        check_ledger(config)

    return Sink(
        name=f"{kind}s",
        flags=(queue, SENT_MESSAGES_TABLE),
        write=write,
        takes=(record_type,),
        check_flags=check_ledger_given,
        check=check,
        sends=(kind,),
    )


THANK_YOU_EMAILS = _message_sink(
    ThankYouEmail, THANK_YOU_EMAIL, EMAILS_QUEUE_URL, "SendThankYouEmails"
)
SOFT_OPT_INS = _message_sink(SoftOptIn, SOFT_OPT_IN, OPT_INS_QUEUE_URL, "SendSoftOptIns")
