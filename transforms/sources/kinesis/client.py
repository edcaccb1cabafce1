"""The Kinesis API calls of the source: ListShards, GetShardIterator, GetRecords.

Each call is a plain function of a boto3 Kinesis client, so tests pass a fake
client. `get_records` makes one GetRecords call on one shard and tells what
came back as a `Poll` (records, drained, caught up, throttled, iterator or
shard expired); the reader decides what to do about it and counts it.
Credentials, region and endpoint come only from the standard AWS chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
import botocore.exceptions

from transforms.domain.events import SourceRecord
from transforms.infrastructure import RETRYING_CLIENT_CONFIG, ConfigurationError, error_code
from transforms.sources.kinesis.shards import AT_TIMESTAMP, ShardInfo, ShardPosition

#: GetRecords returns at most this many records per call.
GET_RECORDS_LIMIT = 10_000


@dataclass(frozen=True)
class KinesisRecord:
    """One Kinesis record with everything GetRecords tells about it."""

    data: bytes
    stream: str
    shard_id: str
    sequence_number: str
    partition_key: str
    arrival: datetime

    @property
    def source(self) -> str:
        return f"kinesis:{self.stream}/{self.shard_id}/{self.sequence_number}"

    def to_source_record(self) -> SourceRecord:
        return SourceRecord(
            data=self.data,
            source=self.source,
            arrival=self.arrival,
            partition_key=self.partition_key,
        )


def stream_argument(stream: str) -> dict[str, str]:
    """How a request names the stream: by ARN or by name."""
    return {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}


def kinesis_client() -> Any:
    """A Kinesis client from boto3's default session, with bounded timeouts and retries."""
    # The default session reads credentials, region and endpoint from the
    # standard AWS configuration; nothing is passed explicitly on purpose.
    return boto3.session.Session().client("kinesis", config=RETRYING_CLIENT_CONFIG)


def check_stream(stream: str, client: Any | None = None) -> None:
    """Raise `ConfigurationError` unless the Kinesis stream `stream` (name or ARN) exists."""
    client = client or kinesis_client()
    try:
        client.describe_stream_summary(**stream_argument(stream))
    except botocore.exceptions.ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            raise ConfigurationError(
                f"--kinesis_stream: the Kinesis stream {stream!r} does not exist; the job does "
                "not create it: check the name, region and endpoint, or create the stream"
            ) from None
        raise


def list_shards(client: Any, stream: str) -> list[ShardInfo]:
    """Every shard ListShards returns for `stream`, following `NextToken`."""
    shards: list[ShardInfo] = []
    request: dict[str, Any] = stream_argument(stream)
    while True:
        response = client.list_shards(**request)
        shards.extend(ShardInfo.from_api(shard) for shard in response["Shards"])
        token = response.get("NextToken")
        if not token:
            return shards
        # With a token, ListShards refuses the stream name.
        request = {"NextToken": token}


def shard_iterator(client: Any, stream: str, position: ShardPosition) -> str:
    """A fresh iterator for `position`: after its last record, else at its start."""
    request: dict[str, Any] = {**stream_argument(stream), "ShardId": position.shard_id}
    if position.after_sequence is not None:
        request.update(
            ShardIteratorType="AFTER_SEQUENCE_NUMBER",
            StartingSequenceNumber=position.after_sequence,
        )
    elif position.start.kind == AT_TIMESTAMP:
        request.update(ShardIteratorType=AT_TIMESTAMP, Timestamp=position.start.timestamp)
    else:
        request.update(ShardIteratorType=position.start.kind)
    return str(client.get_shard_iterator(**request)["ShardIterator"])


@dataclass
class Poll:
    """What one GetRecords call on one shard told.

    `drained`: the shard is closed and read to its end (no
    `NextShardIterator`), or gone past retention (`shard_expired`).
    `caught_up`: no record and `MillisBehindLatest` 0. `throttled`:
    ProvisionedThroughputExceededException. `iterator_expired`:
    ExpiredIteratorException (the iterator is re-created at the next call).
    """

    records: list[Mapping[str, Any]]
    drained: bool = False
    caught_up: bool = False
    throttled: bool = False
    iterator_expired: bool = False
    shard_expired: bool = False


def get_records(
    client: Any, stream: str, position: ShardPosition, iterators: dict[str, str]
) -> Poll:
    """One GetRecords on one shard; keeps `iterators` pointing after what it returned."""
    shard_id = position.shard_id
    # GetRecords on a stream given by ARN must name it again; moto needs it too.
    arn_argument = {"StreamARN": stream} if stream.startswith("arn:") else {}
    try:
        iterator = iterators.get(shard_id) or shard_iterator(client, stream, position)
        iterators[shard_id] = iterator
        response = client.get_records(
            ShardIterator=iterator, Limit=GET_RECORDS_LIMIT, **arn_argument
        )
    except client.exceptions.ProvisionedThroughputExceededException:
        return Poll(records=[], throttled=True)
    except client.exceptions.ExpiredIteratorException:
        # Re-created at the next poll, after the last record claimed.
        iterators.pop(shard_id, None)
        return Poll(records=[], iterator_expired=True)
    except client.exceptions.ResourceNotFoundException:
        # Only a shard past retention (a restart from an old checkpoint) is
        # gone while its stream exists; its records are gone with it. A
        # deleted stream fails the listing that follows instead.
        iterators.pop(shard_id, None)
        return Poll(records=[], drained=True, shard_expired=True)
    records = list(response.get("Records", []))
    next_iterator = response.get("NextShardIterator")
    if next_iterator is None:
        iterators.pop(shard_id, None)
        return Poll(records=records, drained=True)
    iterators[shard_id] = next_iterator
    caught_up = not records and response.get("MillisBehindLatest", 0) == 0
    return Poll(records=records, caught_up=caught_up)


def parse_kinesis_source(source: str) -> tuple[str, str, str] | None:
    """`kinesis:<stream>/<shard id>/<sequence>` -> (stream, shard id, sequence), else None.

    A stream given by ARN contains a `/` itself, so the last two parts are split off.
    """
    if not source.startswith("kinesis:"):
        return None
    stream, _, rest = source[len("kinesis:") :].rpartition("/")
    stream, _, shard_id = stream.rpartition("/")
    if not stream or not shard_id or not rest:
        return None
    return stream, shard_id, rest


def record_at(client: Any, stream: str, shard_id: str, sequence_number: str) -> SourceRecord | None:
    """The one record at `sequence_number` of the shard, None once it is past retention.

    GetShardIterator AT_SEQUENCE_NUMBER, then GetRecords with a limit of 1.
    """
    arn_argument = {"StreamARN": stream} if stream.startswith("arn:") else {}
    try:
        iterator = client.get_shard_iterator(
            **stream_argument(stream),
            ShardId=shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=sequence_number,
        )["ShardIterator"]
        response = client.get_records(ShardIterator=iterator, Limit=1, **arn_argument)
    except client.exceptions.ResourceNotFoundException:
        return None
    for record in response.get("Records", []):
        if record["SequenceNumber"] == sequence_number:
            return KinesisRecord(
                data=record["Data"],
                stream=stream,
                shard_id=shard_id,
                sequence_number=sequence_number,
                partition_key=record["PartitionKey"],
                arrival=record["ApproximateArrivalTimestamp"],
            ).to_source_record()
    return None
