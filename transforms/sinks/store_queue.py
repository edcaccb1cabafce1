"""Feed the contributions store through its queue, exactly once per effect.

`SendToContributionsStore(queue_url, key_id, ledger_table)` takes
`{ContributionStoreRecord: PCollection, PaymentAdjustment: PCollection}`
(bounded or unbounded) and returns `StoreQueueResult(dead_letters)`. On the
queue (standard or FIFO), every message carrying `key_id` as its `keyId`
String attribute:

- `{"newContributionData": ...}` once per paid payment (ledger kind
  `contribution_store`);
- `{"refundedPaymentId": "ch_..."}` once per charge that becomes fully
  refunded (kind `contribution_refund`), and only after that charge's
  `newContributionData`, since the store's writer can only refund a row it
  has.

Where "becomes fully refunded" is decided, exactly once: a refund adjustment
(`fully_refunded`, read from `charge.refunded`) and the payment's own
message arrive separately and in any order, across runs too. Both sides go
through the ledger: the refund side records the fact `refund_due#ch_...`
and then reads whether `contribution_store#ch_...` is marked sent; the
payment side marks its message sent and then reads whether the refund is
due. Each writes before it reads, with consistent reads, so at least one
side sees the other and emits the refund message; when both do, the
ledger's claim on `contribution_refund#ch_...` sends it once. A refund of a
charge whose payment never reaches the store waits (counted as
`contribution_refund_awaiting_payment`), as it should: there is no row to
refund. Partial refunds and disputes change nothing in the store, as today.

Only `charge.refunded` decides "fully refunded" (Stripe's `refunded` flag on
the charge). A refund object (`refund.created`/`refund.updated`, an
adjustment with `fully_refunded` None) knows one refund, not whether the
charge is now whole refunded, so it sends nothing: a destination that
delivers only refund objects gets no `refundedPaymentId` (the warehouse and
the Postgres store still fold its refunds in). Each such adjustment is
counted as `contribution_refund_undecided_refund_object`: a count above 0
with no `contribution_refund` sent names that case; subscribe the
destination to `charge.refunded` (the README says so).

Only messages inside the run's `window` (`transforms.sinks.contract.MessageWindow`)
are sent: a payment's by its `created`, a refund's by the refund event's
(`charge.refunded`), so a backfill does not replay what the store got long
ago; a refund found due once its payment's message went out follows that
recent payment. A refund outside the window is still recorded as due.

Dead letters: those of both senders (`send_contribution_store`,
`send_contribution_refund`) and `ledger_error`s of the refund decision
(step `decide_contribution_refund`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import apache_beam as beam
import botocore.exceptions
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput

from schemas.records import ContributionStoreRecord, DeadLetter, PaymentAdjustment
from transforms.core.metrics import NAMESPACE
from transforms.domain.events import make_dead_letter
from transforms.domain.store_messages import new_contribution_message, refunded_payment_message
from transforms.infrastructure import (
    DEFAULT_BACKOFF,
    Backoff,
    describe_error,
    dynamodb_client,
    naming_flag,
)
from transforms.sinks.contract import SEND_ALL, Flag, MessageWindow, Sink, SinkConfig
from transforms.sinks.ledger import (
    LEDGER_ERROR,
    SENT_MESSAGES_TABLE,
    Ledger,
    check_ledger,
    check_ledger_given,
    check_ledger_table,
)
from transforms.sinks.sqs import SendMessages, check_queue

NEW_CONTRIBUTION = "contribution_store"
REFUND = "contribution_refund"
REFUND_DUE = "refund_due"
KEY_ID_ATTRIBUTE = "keyId"
_DECIDE_STEP = "decide_contribution_refund"


@dataclass(frozen=True)
class StoreMessage:
    """One message for the store's queue; `created`: what the window measures, if known."""

    payment_id: str
    message: str
    created: datetime | None = None


class StoreQueueResult(NamedTuple):
    dead_letters: PCollection[DeadLetter]


class _LedgerFn(beam.DoFn):
    def __init__(self, ledger_table: str, backoff: Backoff) -> None:
        self._ledger_table = ledger_table
        self._backoff = backoff
        self._client: Any = None
        self._ledger: Ledger | None = None

    def setup(self) -> None:
        self._client = dynamodb_client()
        check_ledger_table(self._ledger_table, self._client)
        self._ledger = Ledger(self._client, self._ledger_table, self._backoff, random.Random())

    def teardown(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._ledger = None

    def _letter(self, payment_id: str, error: Exception) -> TaggedOutput:
        return TaggedOutput(
            "dead_letters",
            make_dead_letter(
                step=_DECIDE_STEP,
                reason=LEDGER_ERROR,
                error=describe_error(error),
                raw=refunded_payment_message(payment_id),
                source=f"ledger:{self._ledger_table}/{payment_id}",
            ),
        )


class _RecordFullRefundsFn(_LedgerFn):
    """Full refund -> records it due; the refund message if the payment's message is out."""

    def __init__(self, ledger_table: str, backoff: Backoff) -> None:
        super().__init__(ledger_table, backoff)
        self._awaiting = Metrics.counter(NAMESPACE, f"{REFUND}_awaiting_payment")
        self._undecided = Metrics.counter(NAMESPACE, f"{REFUND}_undecided_refund_object")

    def process(self, adjustment: PaymentAdjustment) -> Iterator[Any]:
        if adjustment.kind == "refund" and adjustment.fully_refunded is None:
            # A refund object: only charge.refunded says whether the charge is whole refunded.
            self._undecided.inc()
            return
        if adjustment.kind != "refund" or not adjustment.fully_refunded:
            return
        assert self._ledger is not None
        payment_id = adjustment.payment_id
        try:
            self._ledger.record_fact(REFUND_DUE, payment_id)
            sent = self._ledger.is_sent(NEW_CONTRIBUTION, payment_id)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            yield self._letter(payment_id, error)
            return
        if sent:
            yield StoreMessage(payment_id, refunded_payment_message(payment_id), adjustment.created)
        else:
            self._awaiting.inc()


class _FindDueRefundsFn(_LedgerFn):
    """Payment id whose message is out -> the refund message if its refund is due."""

    def process(self, payment_id: str) -> Iterator[Any]:
        assert self._ledger is not None
        try:
            due = self._ledger.has_fact(REFUND_DUE, payment_id)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            yield self._letter(payment_id, error)
            return
        if due:
            yield StoreMessage(payment_id, refunded_payment_message(payment_id))


class SendToContributionsStore(beam.PTransform):
    """`{ContributionStoreRecord, PaymentAdjustment: PCollection}` -> `StoreQueueResult`."""

    def __init__(
        self,
        queue_url: str,
        key_id: str,
        ledger_table: str,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        window: MessageWindow = SEND_ALL,
    ) -> None:
        super().__init__()
        if not queue_url or not key_id or not ledger_table:
            raise ValueError("queue_url, key_id and ledger_table are required")
        self._queue_url = queue_url
        self._attributes = {KEY_ID_ATTRIBUTE: key_id}
        self._ledger_table = ledger_table
        self._backoff = backoff
        self._window = window

    def _sender(self, kind: str) -> SendMessages:
        return SendMessages(
            self._queue_url,
            kind,
            self._ledger_table,
            message_attributes=self._attributes,
            backoff=self._backoff,
            window=self._window,
        )

    def expand(self, inputs: dict[type, PCollection]) -> StoreQueueResult:
        new = (
            inputs[ContributionStoreRecord]
            | "ToNewContributionData"
            >> beam.Map(
                lambda r: StoreMessage(r.payment_id, new_contribution_message(r), r.created)
            )
            | "SendNewContributions" >> self._sender(NEW_CONTRIBUTION)
        )
        decided = inputs[PaymentAdjustment] | "RecordFullRefunds" >> beam.ParDo(
            _RecordFullRefundsFn(self._ledger_table, self._backoff)
        ).with_outputs("dead_letters", main="refunds")
        due = (new.sent, new.already_sent) | "CollectStoredPayments" >> beam.Flatten()
        found = due | "FindDueRefunds" >> beam.ParDo(
            _FindDueRefundsFn(self._ledger_table, self._backoff)
        ).with_outputs("dead_letters", main="refunds")
        refunds = (
            (decided["refunds"], found["refunds"])
            | "CollectRefunds" >> beam.Flatten()
            | "SendRefunds" >> self._sender(REFUND)
        )
        dead_letters = (
            new.dead_letters,
            decided["dead_letters"],
            found["dead_letters"],
            refunds.dead_letters,
        ) | "CollectStoreDeadLetters" >> beam.Flatten()
        return StoreQueueResult(dead_letters=dead_letters)


CONTRIBUTIONS_STORE_QUEUE_URL = Flag(
    "contributions_store_queue_url",
    "SQS queue (standard or FIFO) the contributions store's writer reads: "
    '{"newContributionData": ...} per paid payment, {"refundedPaymentId": "ch_..."} once a '
    "charge is fully refunded, exactly once through --sent_messages_table. The alternative "
    "to --contributions_store; not both.",
)
CONTRIBUTIONS_STORE_KEY_ID = Flag(
    "contributions_store_key_id",
    "Sent as the keyId String message attribute of every contributions store message. "
    "Required with --contributions_store_queue_url.",
)


def _check_flags(config: SinkConfig) -> None:
    if not config[CONTRIBUTIONS_STORE_KEY_ID.name]:
        raise ValueError(
            f"{CONTRIBUTIONS_STORE_QUEUE_URL.option} needs {CONTRIBUTIONS_STORE_KEY_ID.option}"
        )
    check_ledger_given(config)


def _check(config: SinkConfig) -> None:
    with naming_flag(CONTRIBUTIONS_STORE_QUEUE_URL.option):
        check_queue(str(config[CONTRIBUTIONS_STORE_QUEUE_URL.name]))
    check_ledger(config)


def _write(config: SinkConfig, pcolls: Mapping[type, PCollection]) -> PCollection:
    sent = dict(pcolls) | "SendToContributionsStore" >> SendToContributionsStore(
        str(config[CONTRIBUTIONS_STORE_QUEUE_URL.name]),
        str(config[CONTRIBUTIONS_STORE_KEY_ID.name]),
        str(config[SENT_MESSAGES_TABLE.name]),
        window=config.messages,
    )
    return sent.dead_letters


#: The contributions store fed through its queue; `--contributions_store` is the alternative.
SINK = Sink(
    name="contributions store queue",
    flags=(CONTRIBUTIONS_STORE_QUEUE_URL, CONTRIBUTIONS_STORE_KEY_ID, SENT_MESSAGES_TABLE),
    write=_write,
    takes=(ContributionStoreRecord,),
    reads=(PaymentAdjustment,),
    check_flags=_check_flags,
    check=_check,
    sends=(NEW_CONTRIBUTION, REFUND),
)
