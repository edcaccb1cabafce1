"""Write `SupporterProductData` items to the DynamoDB supporter data store.

`WriteSupporterItems(table_name)` takes a `PCollection[SupporterProductData]`
(bounded or unbounded) and returns `WriteSupporterResult`:

- `written`: the `subscription_name` of every item the table now holds
  (tag `WRITTEN_TAG`);
- `dead_letters`: a `DeadLetter` (step `write_supporter_item`) for every item
  that could not be written: invalid against its schema (`invalid_row`),
  rejected by DynamoDB (`rejected`), or still failing after all retries
  (`retries_exhausted`). `raw` is the item as JSON, so it can be re-driven.

Every input element ends on exactly one of the two outputs.

Delivery guarantee: **effectively once**. Each item is written with an
`UpdateItem` keyed by (`identityId`, `subscriptionName`) that sets every
attribute to a value that depends only on the payment, so a redelivered,
replayed or retried item rewrites the same values and a repeat is harmless.
Attributes other systems may add to the item are left alone.

Items are buffered per bundle and written in batches of `batch_size`; the
items of a batch that fail with an error botocore's standard retry mode
would retry (`is_retryable`: throttling, HTTP 429/500/502/503/504, connection
errors and timeouts) are retried together, up to `max_attempts` attempts,
after an exponential backoff with full jitter (`Backoff`). The client makes
one attempt per call (`CLIENT_CONFIG`, with bounded timeouts) so that this is
the only retry policy. Other errors are not retried.

The table is infrastructure: the job never creates it. `check_supporter_table`
runs in `DoFn.setup()` and stops the job with `ConfigurationError` when
the table is missing or its key schema is not (`identityId` HASH,
`subscriptionName` RANGE).

Credentials, region and endpoint come from the standard AWS chain (boto3's
default session; `AWS_ENDPOINT_URL` for local servers). Logs and counters
carry counts, table names and error codes only: never item values.

Run the tests with `.venv/bin/pytest tests/transforms/sinks/test_dynamodb.py`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import apache_beam as beam
import botocore.config
import botocore.exceptions
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from schemas.records import DeadLetter, SupporterProductData
from schemas.rows import to_bigquery_json_row
from transforms.core.metrics import NAMESPACE
from transforms.domain.events import make_dead_letter
from transforms.infrastructure import (
    DEFAULT_BACKOFF,
    Backoff,
    check_table_key,
    describe_error,
    dynamodb_client,
    is_retryable,
    naming_flag,
)
from transforms.sinks.common import Buffered, WriteInBatches, invalid_row
from transforms.sinks.contract import Flag, Sink, SinkConfig

_LOG = logging.getLogger(__name__)

WRITE_SUPPORTER_STEP = "write_supporter_item"
WRITTEN_TAG = "written"
DEAD_LETTERS_TAG = "dead_letters"

REJECTED = "rejected"
RETRIES_EXHAUSTED = "retries_exhausted"

#: The key schema the supporter table must have: (attribute, key type).
SUPPORTER_KEY_SCHEMA = (("identityId", "HASH"), ("subscriptionName", "RANGE"))


def check_supporter_table(table_name: str, client: Any | None = None) -> None:
    """Raise `ConfigurationError` unless the supporter table is usable.

    It must exist with key (`identityId` HASH, `subscriptionName` RANGE).
    """
    check_table_key(table_name, SUPPORTER_KEY_SCHEMA, client)


def supporter_item_key(item: SupporterProductData) -> dict[str, dict[str, str]]:
    """The DynamoDB key of the item."""
    return {
        "identityId": {"S": item.identity_id},
        "subscriptionName": {"S": item.subscription_name},
    }


def supporter_item_attributes(item: SupporterProductData) -> dict[str, dict[str, str]]:
    """The non-key attributes of the item, as DynamoDB attribute values.

    Dates are ISO `YYYY-MM-DD` strings; `expiryDate` (the table's TTL) and
    `contributionAmount` are numbers (exact decimal text, never a float).
    """
    return {
        "productRatePlanId": {"S": item.product_rate_plan_id},
        "productRatePlanName": {"S": item.product_rate_plan_name},
        "contractEffectiveDate": {"S": item.contract_effective_date.isoformat()},
        "termEndDate": {"S": item.term_end_date.isoformat()},
        "expiryDate": {"N": str(item.expiry_date)},
        "contributionAmount": {"N": format(item.contribution_amount, "f")},
        "contributionCurrency": {"S": item.contribution_currency},
    }


def supporter_update_request(table_name: str, item: SupporterProductData) -> dict[str, Any]:
    """The keyword arguments of the `UpdateItem` that writes the item."""
    attributes = supporter_item_attributes(item)
    names = {f"#a{index}": name for index, name in enumerate(attributes)}
    values = {f":v{index}": value for index, value in enumerate(attributes.values())}
    assignments = ", ".join(f"#a{index} = :v{index}" for index in range(len(attributes)))
    return {
        "TableName": table_name,
        "Key": supporter_item_key(item),
        "UpdateExpression": f"SET {assignments}",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


class WriteSupporterResult(NamedTuple):
    """The outputs of `WriteSupporterItems` (a NamedTuple so Beam records the names)."""

    written: beam.PCollection[str]
    dead_letters: beam.PCollection[DeadLetter]


_Buffered = Buffered[SupporterProductData]


class _WriteSupporterItemsFn(WriteInBatches):
    """Buffers items per bundle and writes them in batches with retries."""

    def __init__(self, table_name: str, batch_size: int, backoff: Backoff) -> None:
        super().__init__(batch_size)
        self._table_name = table_name
        self._backoff = backoff
        self._client: Any = None
        self._rng = random.Random()
        self._written = Metrics.counter(NAMESPACE, "supporter_items_written")
        self._retried = Metrics.counter(NAMESPACE, "supporter_item_retries")
        self._dead_lettered = Metrics.counter(NAMESPACE, "supporter_items_dead_lettered")

    def setup(self) -> None:
        self._client = dynamodb_client()
        check_supporter_table(self._table_name, self._client)

    def teardown(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def write_batch(self, batch: list[_Buffered]) -> Iterator[TaggedOutput]:
        pending: list[_Buffered] = []
        for entry in batch:
            letter = invalid_row(
                entry.element,
                step=WRITE_SUPPORTER_STEP,
                source=self._source(entry),
                raw=_raw(entry),
            )
            if letter is None:
                pending.append(entry)
            else:
                yield self._emit_dead_letter(entry, letter)
        attempt = 1
        while pending:
            failed: list[tuple[_Buffered, Exception]] = []
            for entry in pending:
                try:
                    self._client.update_item(
                        **supporter_update_request(self._table_name, entry.element)
                    )
                except (
                    botocore.exceptions.ClientError,
                    botocore.exceptions.BotoCoreError,
                ) as error:
                    if is_retryable(error):
                        failed.append((entry, error))
                    else:
                        yield self._dead_letter(entry, REJECTED, describe_error(error))
                else:
                    self._written.inc()
                    yield entry.output(WRITTEN_TAG, entry.element.subscription_name)
            if not failed:
                break
            if attempt >= self._backoff.max_attempts:
                for entry, last_error in failed:
                    yield self._dead_letter(entry, RETRIES_EXHAUSTED, describe_error(last_error))
                break
            self._retried.inc(len(failed))
            time.sleep(self._backoff.delay(attempt, self._rng))
            attempt += 1
            pending = [entry for entry, _ in failed]

    def _source(self, entry: _Buffered) -> str:
        return f"dynamodb:{self._table_name}/{entry.element.subscription_name}"

    def _dead_letter(self, entry: _Buffered, reason: str, error: str) -> TaggedOutput:
        letter = make_dead_letter(
            step=WRITE_SUPPORTER_STEP,
            reason=reason,
            error=error,
            raw=_raw(entry),
            source=self._source(entry),
        )
        return self._emit_dead_letter(entry, letter)

    def _emit_dead_letter(self, entry: _Buffered, letter: DeadLetter) -> TaggedOutput:
        self._dead_lettered.inc()
        _LOG.warning(
            "Dead-lettering a supporter item for table %s: %s", self._table_name, letter.reason
        )
        return entry.output(DEAD_LETTERS_TAG, letter)


def _raw(entry: _Buffered) -> str:
    """The item as JSON, so that it can be re-driven."""
    return json.dumps(to_bigquery_json_row(entry.element), sort_keys=True)


class WriteSupporterItems(
    beam.PTransform[beam.PCollection[SupporterProductData], WriteSupporterResult]
):
    """`PCollection[SupporterProductData]` -> `WriteSupporterResult(written, dead_letters)`.

    See the module docstring for the contract and the delivery guarantee.
    `batch_size` and `backoff` tune the writes and never change the result.
    """

    def __init__(
        self, table_name: str, *, batch_size: int = 25, backoff: Backoff = DEFAULT_BACKOFF
    ) -> None:
        super().__init__()
        if not table_name:
            raise ValueError("table_name is required")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._table_name = table_name
        self._batch_size = batch_size
        self._backoff = backoff

    def expand(self, items: beam.PCollection[SupporterProductData]) -> WriteSupporterResult:
        outputs = items | "WriteItems" >> beam.ParDo(
            _WriteSupporterItemsFn(self._table_name, self._batch_size, self._backoff)
        ).with_outputs(DEAD_LETTERS_TAG, WRITTEN_TAG)
        return WriteSupporterResult(
            written=outputs[WRITTEN_TAG], dead_letters=outputs[DEAD_LETTERS_TAG]
        )


SUPPORTER_TABLE = Flag(
    "supporter_table",
    "DynamoDB SupporterProductData table name (keys identityId, "
    "subscriptionName). Default: the warehouse.",
)


def _write(config: SinkConfig, pcolls: Mapping[type, beam.PCollection]) -> beam.PCollection:
    supporter = pcolls[SupporterProductData] | "WriteSupporterItems" >> WriteSupporterItems(
        str(config[SUPPORTER_TABLE.name])
    )
    return supporter.dead_letters


def _check(config: SinkConfig) -> None:
    with naming_flag(SUPPORTER_TABLE.option):
        check_supporter_table(str(config[SUPPORTER_TABLE.name]))


SINK = Sink(
    name="supporter_items",
    flags=(SUPPORTER_TABLE,),
    write=_write,
    takes=(SupporterProductData,),
    check=_check,
)


__all__ = [
    "WriteSupporterItems",
    "WriteSupporterResult",
    "check_supporter_table",
    "supporter_update_request",
]
