"""Reading the stores back for the reconcile: both warehouses, DynamoDB items, the ledger."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime
from decimal import Decimal

import boto3
import pytest

from tests.fixtures.moto_server import MotoServer
from tests.fixtures.sinks import LEDGER_KEY, SUPPORTER_KEY, create_table, unique
from tests.fixtures.warehouses import Warehouses
from transforms.domain.reconcile import Holding
from transforms.infrastructure import ConfigurationError
from transforms.sinks.readback import (
    ledger_states,
    open_warehouse,
    selection,
    supporter_holdings,
    warehouse_holdings,
)

START = datetime(2025, 3, 1, 6, tzinfo=UTC)
END = datetime(2025, 3, 1, 18, tzinfo=UTC)


def test_both_warehouses_give_the_same_holdings_of_the_range(both_warehouses: Warehouses) -> None:
    holdings = {}
    for spec in (str(both_warehouses.duckdb_path), both_warehouses.bigquery_spec):
        query, dialect = open_warehouse(spec)
        where = selection(dialect, start=START, end=END, livemode=True)
        holdings[dialect] = warehouse_holdings(query, where)
    expected = both_warehouses.duckdb(
        "SELECT payment_id, currency, amount, amount_refunded FROM contributions_current "
        "WHERE status IN ('Paid', 'Refunded') AND livemode "
        "AND created >= TIMESTAMPTZ '2025-03-01 06:00:00+00' "
        "AND created < TIMESTAMPTZ '2025-03-01 18:00:00+00'"
    )
    assert expected
    assert holdings["duckdb"] == {
        payment_id: Holding(payment_id, date(2025, 3, 1), currency, amount, refunded)
        for payment_id, currency, amount, refunded in expected
    }
    assert holdings["bigquery"] == holdings["duckdb"]


def test_a_missing_bigquery_dataset_is_one_line(both_warehouses: Warehouses) -> None:
    query, _ = open_warehouse(f"bigquery:{both_warehouses.project}.no_such_dataset")
    with pytest.raises(ConfigurationError, match=r"^warehouse bigquery:[^\n]*no_such_dataset: "):
        warehouse_holdings(query, "TRUE")


def _put_supporter_item(table: str, identity: str, charge: str, day: str, amount: str) -> None:
    with contextlib.closing(boto3.session.Session().client("dynamodb")) as client:
        client.put_item(
            TableName=table,
            Item={
                "identityId": {"S": identity},
                "subscriptionName": {"S": f"Stripe - {charge}"},
                "contractEffectiveDate": {"S": day},
                "contributionAmount": {"N": amount},
                "contributionCurrency": {"S": "GBP"},
            },
        )


def test_supporter_items_are_in_range_only_on_whole_days(moto_server: MotoServer) -> None:
    table = create_table(SUPPORTER_KEY, unique("SupporterProductData"))
    _put_supporter_item(table, "1", "ch_a", "2025-03-01", "5.00")
    _put_supporter_item(table, "1", "ch_b", "2025-03-02", "7.5")
    _put_supporter_item(table, "2", "ch_c", "2025-03-03", "1")
    with contextlib.closing(boto3.session.Session().client("dynamodb")) as client:
        # Not a contribution of ours: another product's item in the same table.
        client.put_item(
            TableName=table,
            Item={"identityId": {"S": "2"}, "subscriptionName": {"S": "A-S000001"}},
        )
    found = supporter_holdings(
        table, start=datetime(2025, 3, 1, 12, tzinfo=UTC), end=datetime(2025, 3, 3, tzinfo=UTC)
    )
    assert found == {
        "ch_a": Holding("ch_a", date(2025, 3, 1), "GBP", Decimal("5.00"), in_range=False),
        "ch_b": Holding("ch_b", date(2025, 3, 2), "GBP", Decimal("7.5")),
        "ch_c": Holding("ch_c", date(2025, 3, 3), "GBP", Decimal(1), in_range=False),
    }


def test_ledger_states_of_many_keys(moto_server: MotoServer) -> None:
    table = create_table(LEDGER_KEY, unique("sent-messages"))
    with contextlib.closing(boto3.session.Session().client("dynamodb")) as client:
        for number in range(150):
            state = "sent" if number % 3 else "sending"
            client.put_item(
                TableName=table,
                Item={"messageKey": {"S": f"thank_you_email#ch_{number}"}, "state": {"S": state}},
            )
    keys = [f"thank_you_email#ch_{number}" for number in range(0, 250, 2)]
    assert ledger_states(table, keys) == {
        f"thank_you_email#ch_{n}": "sent" if n % 3 else "sending" for n in range(0, 150, 2)
    }


def test_a_missing_ledger_table_is_one_line(moto_server: MotoServer) -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"^--sent_messages_table no-such-table: ResourceNotFoundException: ",
    ):
        ledger_states("no-such-table", ["thank_you_email#ch_1"])
