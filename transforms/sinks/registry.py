"""Every sink the jobs know, in the order the router applies them: one line per sink."""

from __future__ import annotations

from transforms.sinks import (
    bigquery,
    cloudwatch,
    duckdb,
    dynamodb,
    eventbridge,
    postgres,
    sqs,
    store_queue,
)
from transforms.sinks.contract import Sink

SINKS: tuple[Sink, ...] = (
    duckdb.SINK,
    bigquery.SINK,
    postgres.SINK,
    store_queue.SINK,
    eventbridge.SINK,
    dynamodb.SINK,
    sqs.THANK_YOU_EMAILS,
    sqs.SOFT_OPT_INS,
    cloudwatch.SINK,
)


def sender_of(kind: str) -> Sink | None:
    """The sink that sends the ledger kind `kind` (its letters' step is `send_<kind>`), if any."""
    return next((sink for sink in SINKS if kind in sink.sends), None)
