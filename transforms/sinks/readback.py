"""Read back what each store holds, as `transforms.domain.reconcile.Holding`s.

For `pipelines.reconcile`: the same readers serve the stores a job wrote and
the scratch DuckDB warehouse the archive is backfilled into, so both sides
of a comparison are read by one query.

- `open_warehouse(spec)`: a DuckDB file (read only) or `bigquery:P.D`, as a
  `Query`; `warehouse_holdings` reads `contributions_current` (paid and
  refunded payments: amount, amount refunded).
- `store_holdings`: the contributions store's `contributions_store` table,
  in Postgres (`postgres_query`) or in a DuckDB warehouse (`Refunded` ->
  the whole amount refunded: the store knows no partial refunds).
- `supporter_holdings`: the DynamoDB supporter table (`Stripe - <charge id>`
  items), scanned.
- `ledger_states`: the message ledger's state of each (kind, payment id),
  by batched gets.

Payments are selected by `created` in `[start, end)` (either bound
optional) and by `livemode` when the deployment serves one mode. Only ids,
days, currencies and amounts are read: no personal column is selected.
Every failure to reach a store is a `ConfigurationError` with one line that
names the store, never a password.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import botocore.exceptions
import duckdb
import psycopg

from transforms.domain.reconcile import Holding
from transforms.infrastructure import ConfigurationError, aws_client_config, describe_error
from transforms.sinks.bigquery import bigquery_dataset
from transforms.sinks.dynamodb import SUPPORTER_TABLE
from transforms.sinks.postgres import DsnMask, connection_parameters

#: One SQL statement in, its rows out.
Query = Callable[[str], list[tuple[Any, ...]]]

_PAID = "('Paid', 'Refunded')"
_REFUNDED = "Refunded"
_SUBSCRIPTION_PREFIX = "Stripe - "
#: The project's bounded waits; botocore's standard retries, six attempts as before (these
#: reads page through whole tables, so a throttled page is worth more tries).
_AWS_CONFIG = aws_client_config(max_attempts=6)
_BATCH_GET_KEYS = 100
_BATCH_GET_ROUNDS = 20


def duckdb_query(path: str) -> Query:
    """Statements on a DuckDB file opened read only, in UTC."""

    def run(sql: str) -> list[tuple[Any, ...]]:
        try:
            with duckdb.connect(path, read_only=True) as connection:
                connection.execute("SET TimeZone = 'UTC'")
                return connection.execute(sql).fetchall()
        except duckdb.Error as error:
            raise ConfigurationError(f"warehouse {path}: {error}") from None

    return run


def bigquery_query(project: str, dataset: str) -> Query:
    """Statements on a BigQuery dataset (its default dataset), application default credentials."""
    from google.api_core import exceptions as google_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import bigquery

    def run(sql: str) -> list[tuple[Any, ...]]:
        try:
            client = bigquery.Client(project=project)
            config = bigquery.QueryJobConfig(default_dataset=f"{project}.{dataset}")
            try:
                return [tuple(row.values()) for row in client.query(sql, job_config=config)]
            finally:
                client.close()
        except (google_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError) as error:
            message = str(error).splitlines()[0]
            raise ConfigurationError(f"warehouse bigquery:{project}.{dataset}: {message}") from None

    return run


def open_warehouse(spec: str) -> tuple[Query, str]:
    """(`Query`, dialect) of `--warehouse`: a DuckDB file or `bigquery:PROJECT.DATASET`."""
    if spec.startswith("bigquery:"):
        project, dataset = bigquery_dataset(spec)
        return bigquery_query(project, dataset), "bigquery"
    return duckdb_query(spec), "duckdb"


def postgres_query(dsn: str) -> Query:
    """Statements on the Postgres contributions store, in UTC, with bounded connection waits."""

    def run(sql: str) -> list[tuple[Any, ...]]:
        try:
            params = connection_parameters(dsn, connect_timeout=10)
            with psycopg.connect(dsn, options="-c TimeZone=UTC", **params) as connection:
                return connection.execute(sql.encode()).fetchall()
        except psycopg.Error as error:
            message = DsnMask(dsn)(str(error).strip().splitlines()[0])
            raise ConfigurationError(f"--contributions_store: {message}") from None

    return run


def _timestamp(moment: datetime, dialect: str) -> str:
    keyword = "TIMESTAMP" if dialect == "bigquery" else "TIMESTAMPTZ"
    return f"{keyword} '{moment.astimezone(UTC).isoformat(sep=' ')}'"


def selection(
    dialect: str,
    *,
    start: datetime | None,
    end: datetime | None,
    livemode: bool | None,
    column: str = "created",
) -> str:
    """The SQL condition of the reconciled payments (TRUE when unbounded)."""
    conditions = ["TRUE"]
    if start is not None:
        conditions.append(f"{column} >= {_timestamp(start, dialect)}")
    if end is not None:
        conditions.append(f"{column} < {_timestamp(end, dialect)}")
    if livemode is not None:
        conditions.append(f"livemode = {'TRUE' if livemode else 'FALSE'}")
    return " AND ".join(conditions)


def utc_day(moment: datetime) -> date:
    """The UTC day of a time (a time without zone is UTC, as every store writes it)."""
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(UTC).date()


def warehouse_holdings(query: Query, where: str) -> dict[str, Holding]:
    """Paid and refunded payments of `contributions_current` matching `where`."""
    rows = query(
        "SELECT payment_id, created, currency, amount, amount_refunded FROM contributions_current "
        f"WHERE status IN {_PAID} AND {where}"
    )
    return {
        row[0]: Holding(row[0], utc_day(row[1]), row[2], Decimal(row[3]), Decimal(row[4]))
        for row in rows
    }


def store_holdings(query: Query, where: str) -> dict[str, Holding]:
    """Payments of a `contributions_store` table matching `where`."""
    rows = query(
        "SELECT payment_id, created, currency, amount, payment_status FROM contributions_store "
        f"WHERE {where}"
    )
    return {
        row[0]: Holding(
            row[0],
            utc_day(row[1]),
            row[2],
            Decimal(row[3]),
            Decimal(row[3]) if row[4] == _REFUNDED else Decimal(0),
        )
        for row in rows
    }


def _aws_client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_AWS_CONFIG)


def supporter_holdings(
    table: str, *, start: datetime | None, end: datetime | None
) -> dict[str, Holding]:
    """Every `Stripe - <charge id>` item of the supporter table, keyed by charge id.

    An item has only its payment's date (`contractEffectiveDate`): it is in
    range when that whole UTC day is, so an item of a partly covered first or
    last day that the archive lacks is not called extra.
    """
    client = _aws_client("dynamodb")
    try:
        pages = client.get_paginator("scan").paginate(
            TableName=table,
            ProjectionExpression=(
                "subscriptionName, contractEffectiveDate, contributionAmount, contributionCurrency"
            ),
            FilterExpression="begins_with(subscriptionName, :prefix)",
            ExpressionAttributeValues={":prefix": {"S": _SUBSCRIPTION_PREFIX}},
        )
        items = [item for page in pages for item in page["Items"]]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise ConfigurationError(
            f"{SUPPORTER_TABLE.option} {table}: {describe_error(error)}"
        ) from None
    finally:
        client.close()
    holdings = {}
    for item in items:
        payment_id = item["subscriptionName"]["S"].removeprefix(_SUBSCRIPTION_PREFIX)
        day = date.fromisoformat(item["contractEffectiveDate"]["S"])
        holdings[payment_id] = Holding(
            payment_id,
            day,
            item["contributionCurrency"]["S"],
            Decimal(item["contributionAmount"]["N"]),
            in_range=_whole_day_in_range(day, start, end),
        )
    return holdings


def _whole_day_in_range(day: date, start: datetime | None, end: datetime | None) -> bool:
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return (start is None or midnight >= start) and (
        end is None or midnight + timedelta(days=1) <= end
    )


def ledger_states(table: str, keys: Iterable[str]) -> dict[str, str]:
    """{messageKey: state} of the ledger entries among `keys` (absent keys are left out)."""
    wanted = sorted(set(keys))
    client = _aws_client("dynamodb")
    states: dict[str, str] = {}
    try:
        for first in range(0, len(wanted), _BATCH_GET_KEYS):
            batch = wanted[first : first + _BATCH_GET_KEYS]
            states.update(_batch_get(client, table, batch))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise ConfigurationError(
            f"--sent_messages_table {table}: {describe_error(error)}"
        ) from None
    finally:
        client.close()
    return states


def _batch_get(client: Any, table: str, keys: Sequence[str]) -> dict[str, str]:
    request: dict[str, Any] = {
        table: {
            "Keys": [{"messageKey": {"S": key}} for key in keys],
            "ConsistentRead": True,
            "ProjectionExpression": "messageKey, #state",
            "ExpressionAttributeNames": {"#state": "state"},
        }
    }
    states = {}
    for _ in range(_BATCH_GET_ROUNDS):
        answer = client.batch_get_item(RequestItems=request)
        for item in answer["Responses"].get(table, []):
            states[item["messageKey"]["S"]] = item["state"]["S"]
        request = answer.get("UnprocessedKeys") or {}
        if not request:
            return states
    raise ConfigurationError(
        f"--sent_messages_table {table}: keys still unprocessed after {_BATCH_GET_ROUNDS} rounds"
    )
