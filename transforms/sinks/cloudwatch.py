"""Count what today's alarms watch in CloudWatch: payment successes and post-payment errors.

`CountPaymentMetrics(namespace, ledger_table)` takes
`{Contribution: PCollection, DeadLetter: PCollection}` and returns
`MetricsResult(dead_letters)`:

- `payment-success`, value 1, per paid contribution (ledger kind
  `payment_success_metric`, keyed by charge id);
- `post-payment-tasks-error`, value 1, per dead letter (kind
  `post_payment_error_metric`, keyed by the dead letter's deterministic id),

each with the dimension `payment-provider` = `Stripe`, as the payment API
puts them today. PutMetricData de-duplicates nothing, so each datum goes
through the ledger (`transforms.sinks.ledger`) like any other effect: a
replay or a re-run backfill counts nothing again, and a call whose answer
was lost becomes an `outcome_unknown` dead letter (step
`send_<kind>`), not a second count. Those dead letters go to the warehouse
and are not counted themselves. The datum's time is the call's, as today:
a backfill of payments never seen before counts them when it runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
import boto3
from apache_beam.pvalue import PCollection

from schemas.records import Contribution, DeadLetter
from transforms.domain.payment import PAID_STATUS
from transforms.infrastructure import CLIENT_CONFIG, DEFAULT_BACKOFF, Backoff
from transforms.sinks.contract import Flag, Sink, SinkConfig
from transforms.sinks.ledger import (
    SENT_MESSAGES_TABLE,
    BatchOutcome,
    Entry,
    SendExactlyOnceFn,
    check_ledger,
    check_ledger_given,
    send_exactly_once,
)

PAYMENT_SUCCESS = "payment-success"
POST_PAYMENT_ERROR = "post-payment-tasks-error"
PAYMENT_PROVIDER_DIMENSION = ("payment-provider", "Stripe")
#: The ledger kinds of the two counts (their letters' steps are `send_<kind>`).
PAYMENT_SUCCESS_KIND = "payment_success_metric"
POST_PAYMENT_ERROR_KIND = "post_payment_error_metric"
#: PutMetricData takes up to 1,000 datums; small batches keep a failed call cheap.
BATCH_SIZE = 20


@dataclass(frozen=True)
class MetricDatum:
    """One count: `payment_id` keys it in the ledger, `message` is the metric name."""

    payment_id: str
    message: str


class MetricsResult(NamedTuple):
    dead_letters: PCollection[DeadLetter]


class _CloudWatchTransport:
    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self.target = f"cloudwatch:{namespace}"
        self.deduplicates = False
        self._client: Any = None

    def setup(self) -> None:
        self._client = boto3.session.Session().client("cloudwatch", config=CLIENT_CONFIG)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    def batches(self, entries: Sequence[Entry]) -> Iterator[list[Entry]]:
        for start in range(0, len(entries), BATCH_SIZE):
            yield list(entries[start : start + BATCH_SIZE])

    def send(self, kind: str, batch: Sequence[Entry]) -> BatchOutcome:
        name, value = PAYMENT_PROVIDER_DIMENSION
        self._client.put_metric_data(
            Namespace=self._namespace,
            MetricData=[
                {
                    "MetricName": entry.record.message,
                    "Dimensions": [{"Name": name, "Value": value}],
                    "Value": 1.0,
                    "Unit": "Count",
                }
                for entry in batch
            ],
        )
        # All or nothing: an answer means every datum was taken.
        return BatchOutcome(sent=list(range(len(batch))))


class CountPaymentMetrics(beam.PTransform):
    """`{Contribution, DeadLetter: PCollection}` -> `MetricsResult`; see the module docstring."""

    def __init__(
        self, namespace: str, ledger_table: str | None, *, backoff: Backoff = DEFAULT_BACKOFF
    ) -> None:
        super().__init__()
        if not namespace:
            raise ValueError("namespace is required")
        self._namespace = namespace
        self._ledger_table = ledger_table
        self._backoff = backoff

    def _counter(self, kind: str) -> SendExactlyOnceFn:
        return SendExactlyOnceFn(
            _CloudWatchTransport(self._namespace), kind, self._ledger_table, self._backoff
        )

    def expand(self, inputs: dict[type, PCollection]) -> MetricsResult:
        successes = (
            inputs[Contribution]
            | "PaidOnly" >> beam.Filter(lambda c: c.status == PAID_STATUS)
            | "ToPaymentSuccess" >> beam.Map(lambda c: MetricDatum(c.payment_id, PAYMENT_SUCCESS))
        )
        errors = inputs[DeadLetter] | "ToPostPaymentError" >> beam.Map(
            lambda d: MetricDatum(d.dead_letter_id, POST_PAYMENT_ERROR)
        )
        counted = (
            send_exactly_once(
                successes, "CountPaymentSuccesses", self._counter(PAYMENT_SUCCESS_KIND)
            ),
            send_exactly_once(
                errors, "CountPostPaymentErrors", self._counter(POST_PAYMENT_ERROR_KIND)
            ),
        )
        dead_letters = tuple(c.dead_letters for c in counted) | "CollectMetricDeadLetters" >> (
            beam.Flatten()
        )
        return MetricsResult(dead_letters=dead_letters)


CLOUDWATCH_NAMESPACE = Flag(
    "cloudwatch_namespace",
    f"Optional CloudWatch namespace: a {PAYMENT_SUCCESS} count per paid payment and a "
    f"{POST_PAYMENT_ERROR} count per dead letter (dimension payment-provider=Stripe), as "
    "today's alarms watch, exactly once through --sent_messages_table.",
)


def _write(config: SinkConfig, pcolls: Mapping[type, PCollection]) -> PCollection:
    counted = dict(pcolls) | "CountPaymentMetrics" >> CountPaymentMetrics(
        str(config[CLOUDWATCH_NAMESPACE.name]), config[SENT_MESSAGES_TABLE.name]
    )
    return counted.dead_letters


#: Operational metrics: `--cloudwatch_namespace`. It counts every dead letter the
#: warehouse gets; its own dead letters go there too, uncounted.
SINK = Sink(
    name="cloudwatch",
    flags=(CLOUDWATCH_NAMESPACE, SENT_MESSAGES_TABLE),
    write=_write,
    reads=(Contribution,),
    check_flags=check_ledger_given,
    check=check_ledger,
    reads_dead_letters=True,
    sends=(PAYMENT_SUCCESS_KIND, POST_PAYMENT_ERROR_KIND),
    # A count is not a message: --no_messages and --messages_max_age_hours do not apply.
    follows_message_window=False,
)
