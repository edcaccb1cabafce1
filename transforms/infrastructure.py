"""What sources and sinks share: the configuration error, the retry policy, AWS plumbing.

Sources and sinks both import this module and never each other. Nothing
here knows a record type.

- `ConfigurationError`: a stream, table or queue the job needs is missing or
  not as expected (raised by the pre-launch checks and in `DoFn.setup()`).
- `Backoff` and `call_with_retries`: the one retry policy (full-jitter
  exponential backoff) for AWS calls; botocore's own retries are off
  (`CLIENT_CONFIG`) so that the policy is applied once.
- `error_code`, `is_retryable`, `describe_error`: what an AWS failure is.
- `dynamodb_client`, `check_table_key`: DynamoDB clients and key checks.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions


class ConfigurationError(RuntimeError):
    """A source's or sink's infrastructure (stream, table, queue) is missing or not as the job
    expects; the job stops before launch with this message."""


@dataclass(frozen=True)
class Backoff:
    """Retry policy: at most `max_attempts` attempts, full-jitter exponential delays.

    The delay before attempt n+1 (n >= 1) is uniform in
    [0, min(max_delay, initial_delay * 2 ** (n - 1))] seconds.
    """

    max_attempts: int = 8
    initial_delay: float = 0.1
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("need 0 <= initial_delay <= max_delay")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return rng.uniform(0.0, min(self.max_delay, self.initial_delay * 2 ** (attempt - 1)))


#: Error codes worth retrying: throttling and server-side transient failures.
RETRYABLE_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
    }
)

#: botocore retries nothing: `Backoff` is the one retry policy.
CLIENT_CONFIG = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"})


DEFAULT_BACKOFF = Backoff()


def error_code(error: Exception) -> str:
    """A short code for an AWS call failure: the service's code or the exception class."""
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code") or "ClientError")
    return type(error).__name__


def is_retryable(error: Exception) -> bool:
    """True for throttling, server-side and connection failures, which may pass on retry."""
    if isinstance(error, botocore.exceptions.ClientError):
        if error_code(error) in RETRYABLE_ERROR_CODES:
            return True
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return isinstance(status, int) and status >= 500
    return isinstance(
        error,
        botocore.exceptions.ConnectionError
        | botocore.exceptions.HTTPClientError
        | botocore.exceptions.ReadTimeoutError,
    )


def call_with_retries(call: Callable[[], Any], backoff: Backoff, rng: random.Random) -> Any:
    """`call()`, retried on retryable errors per `backoff`; the last error is raised."""
    attempt = 1
    while True:
        try:
            return call()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            if attempt >= backoff.max_attempts or not is_retryable(error):
                raise
            time.sleep(backoff.delay(attempt, rng))
            attempt += 1


def dynamodb_client() -> Any:
    """A DynamoDB client from the standard AWS chain, without botocore retries."""
    return boto3.session.Session().client("dynamodb", config=CLIENT_CONFIG)


def check_table_key(
    table_name: str, key_schema: Sequence[tuple[str, str]], client: Any | None = None
) -> None:
    """Raise `ConfigurationError` unless `table_name` exists with exactly `key_schema`.

    `key_schema` is ((attribute, "HASH"), (attribute, "RANGE")?) in order.
    """
    client = client or dynamodb_client()
    expected = ", ".join(f"{name} {kind}" for name, kind in key_schema)
    try:
        table = client.describe_table(TableName=table_name)["Table"]
    except botocore.exceptions.ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            raise ConfigurationError(
                f"DynamoDB table {table_name!r} does not exist; the job does not create it: "
                f"provision it with key ({expected})"
            ) from None
        raise
    found = tuple(
        (key["AttributeName"], key["KeyType"])
        for key in sorted(table["KeySchema"], key=lambda key: key["KeyType"] != "HASH")
    )
    if found != tuple(key_schema):
        shown = ", ".join(f"{name} {kind}" for name, kind in found)
        raise ConfigurationError(
            f"DynamoDB table {table_name!r} has key ({shown}); expected ({expected})"
        )


def describe_error(error: Exception) -> str:
    """'<code>: <service message>' for a dead letter's error column."""
    if isinstance(error, botocore.exceptions.ClientError):
        message = error.response.get("Error", {}).get("Message", "")
        return f"{error_code(error)}: {message}"
    return f"{type(error).__name__}: {error}"
