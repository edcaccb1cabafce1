"""Generated schemas are pinned by golden files; rows and validation follow the schema."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar

import duckdb
import pyarrow as pa
import pytest

from schemas import rows
from schemas.generate import (
    arrow_schema,
    bigquery_clustering,
    bigquery_schema,
    bigquery_table_parameters,
    bigquery_time_partitioning,
    duckdb_ddl,
    postgres_ddl,
    table_of,
)
from schemas.records import (
    SCHEMA_RECORD_TYPES,
    AbTest,
    Acquisition,
    Contribution,
    DeadLetter,
    PrintOptions,
    QueryParameter,
    SupporterProductData,
)
from schemas.rows import (
    RowValidationError,
    natural_key,
    to_bigquery_json_row,
    to_columns,
    to_row,
    validate,
)
from schemas.table import Table, column
from tools.update_golden import TARGETS, golden_path

CREATED = datetime(2025, 3, 5, 14, 30, 1, 123456, tzinfo=UTC)
# Values a type checker would refuse, for the checks that must catch them at run time.
NONE: Any = None
NOT_A_TUPLE: Any = ["a"]

# --- golden files ---------------------------------------------------------------


@pytest.mark.parametrize("suffix", list(TARGETS))
@pytest.mark.parametrize("record_type", SCHEMA_RECORD_TYPES, ids=lambda t: table_of(t).name)
def test_generated_schema_matches_golden_file(record_type: type, suffix: str) -> None:
    path = golden_path(record_type, suffix)
    generated = TARGETS[suffix](record_type)
    expected = path.read_text() if path.exists() else None
    assert generated == expected, (
        f"{path.name} differs from the generated schema; if the change is deliberate, "
        "run `.venv/bin/python -m tools.update_golden` and review `git diff tests/schemas/golden`"
    )


@pytest.mark.parametrize("record_type", SCHEMA_RECORD_TYPES, ids=lambda t: table_of(t).name)
def test_duckdb_ddl_runs_twice_and_reads_staged_arrow(record_type: type) -> None:
    connection = duckdb.connect(":memory:")
    connection.execute(duckdb_ddl(record_type))
    connection.execute(duckdb_ddl(record_type))  # IF NOT EXISTS: a re-run is harmless
    empty = arrow_schema(record_type).empty_table()  # noqa: F841 (read by DuckDB by name)
    connection.execute(f'INSERT INTO "{table_of(record_type).name}" SELECT * FROM empty')
    assert connection.execute(
        f'SELECT count(*) FROM "{table_of(record_type).name}"'
    ).fetchone() == (0,)


def test_bigquery_partitioning_and_clustering() -> None:
    assert bigquery_time_partitioning(Contribution) == {"type": "DAY", "field": "created"}
    assert bigquery_clustering(Contribution) == {"fields": ["currency", "country_code"]}
    assert bigquery_time_partitioning(SupporterProductData) is None
    assert bigquery_clustering(SupporterProductData) is None
    assert bigquery_table_parameters(DeadLetter) == {
        "timePartitioning": {"type": "DAY", "field": "time"},
        "clustering": {"fields": ["step", "reason"]},
    }


def test_nested_and_repeated_columns_map_to_every_target() -> None:
    by_name = {field["name"]: field for field in bigquery_schema(Acquisition)}
    assert by_name["ab_tests"]["mode"] == "REPEATED"
    assert [f["name"] for f in by_name["ab_tests"]["fields"]] == ["name", "variant"]
    assert by_name["print_options"]["mode"] == "NULLABLE"
    assert arrow_schema(Acquisition).field("amount").type == pa.decimal128(38, 9)
    assert '"ab_tests" JSONB NOT NULL' in postgres_ddl(Acquisition)
    assert '"campaign_codes" TEXT[] NOT NULL' in postgres_ddl(Acquisition)


@dataclass(frozen=True)
class _FloatRecord:
    TABLE: ClassVar[Table] = Table(name="bad", description="bad", key=("id",))
    id: str = column("id")
    ratio: float = column("a float, which has no exact warehouse type")


@dataclass(frozen=True)
class _OptionalTupleRecord:
    TABLE: ClassVar[Table] = Table(name="bad2", description="bad", key=("id",))
    id: str = column("id")
    tags: tuple[str, ...] | None = column("nullable repeated")


@dataclass(frozen=True)
class _NullableKeyRecord:
    TABLE: ClassVar[Table] = Table(name="bad3", description="bad", key=("id",))
    id: str | None = column("id")


@pytest.mark.parametrize(
    ("record_type", "message"),
    [
        pytest.param(_FloatRecord, "_FloatRecord.ratio: unsupported type", id="float"),
        pytest.param(_OptionalTupleRecord, "_OptionalTupleRecord.tags", id="optional-tuple"),
        pytest.param(_NullableKeyRecord, "'id' must be a required scalar", id="nullable-key"),
    ],
)
@pytest.mark.parametrize(
    "generate", [bigquery_schema, postgres_ddl, duckdb_ddl, arrow_schema], ids=lambda f: f.__name__
)
def test_unsupported_type_fails_loudly_naming_the_field(
    record_type: type, message: str, generate: Any
) -> None:
    with pytest.raises(TypeError, match=message):
        generate(record_type)


# --- rows -------------------------------------------------------------------------


def _contribution(**changes: Any) -> Contribution:
    base = Contribution(
        payment_id="ch_1",
        payment_intent_id="pi_1",
        checkout_session_id="cs_1",
        contribution_id="c0ffee00-0000-5000-8000-000000000001",
        status="Paid",
        amount=Decimal("5.00"),
        amount_refunded=Decimal("0"),
        currency="GBP",
        country_code="GB",
        country_source="card",
        payment_method="card",
        identity_id=None,
        disputed=False,
        livemode=False,
        account="ed_test_1",
        created=CREATED,
    )
    return dataclasses.replace(base, **changes)


def _acquisition() -> Acquisition:
    return Acquisition(
        event_timestamp=CREATED,
        product="CONTRIBUTION",
        amount=Decimal("12.345"),
        country_code="GB",
        currency="GBP",
        component_id=None,
        component_type=None,
        campaign_codes=("c1", "c2"),
        source=None,
        referrer_url=None,
        ab_tests=(AbTest(name="t", variant="v"),),
        payment_frequency="ONE_OFF",
        payment_provider="STRIPE_HOSTED_CHECKOUT",
        print_options=PrintOptions(product="p", delivery_country_code="GB"),
        browser_id=None,
        identity_id="42",
        page_view_id=None,
        referrer_page_view_id=None,
        labels=(),
        promo_code=None,
        reused_existing_payment_method=False,
        reader_type="Direct",
        acquisition_type="Purchase",
        zuora_subscription_number=None,
        contribution_id="uuid",
        payment_id="ch_1",
        query_parameters=(QueryParameter(key="k", value="v"),),
        platform="SUPPORT",
        livemode=False,
        account=None,
    )


def test_to_row_keeps_python_values_and_nests_dicts() -> None:
    row = to_row(_acquisition())
    assert list(row) == [f.name for f in dataclasses.fields(Acquisition)]
    assert row["amount"] == Decimal("12.345")
    assert row["event_timestamp"] is CREATED
    assert row["campaign_codes"] == ["c1", "c2"]
    assert row["labels"] == []
    assert row["ab_tests"] == [{"name": "t", "variant": "v"}]
    assert row["print_options"] == {"product": "p", "delivery_country_code": "GB"}
    assert row["query_parameters"] == [{"key": "k", "value": "v"}]
    assert row["component_id"] is None
    pa.RecordBatch.from_pylist([row], schema=arrow_schema(Acquisition))


def test_to_columns_is_to_row_column_by_column() -> None:
    records = [
        _acquisition(),
        dataclasses.replace(_acquisition(), ab_tests=(), print_options=None, labels=("l",)),
    ]
    rows = [to_row(record) for record in records]
    names = [f.name for f in dataclasses.fields(Acquisition)]
    assert to_columns(Acquisition, records) == [[row[name] for row in rows] for name in names]
    assert to_columns(Acquisition, []) == [[] for _ in names]
    schema = arrow_schema(Acquisition)
    arrays = [
        pa.array(values, type=field.type)
        for values, field in zip(to_columns(Acquisition, records), schema, strict=True)
    ]
    assert pa.RecordBatch.from_arrays(arrays, schema=schema).equals(
        pa.RecordBatch.from_pylist(rows, schema=schema)
    )


def test_to_bigquery_json_row_is_json_with_exact_decimals() -> None:
    plus_one = timezone(timedelta(hours=1))
    row = to_bigquery_json_row(_contribution(created=datetime(2025, 3, 5, 15, 0, tzinfo=plus_one)))
    assert row["amount"] == "5.00"
    assert row["amount_refunded"] == "0"
    assert row["created"] == "2025-03-05T14:00:00.000000Z"
    acquisition = to_bigquery_json_row(_acquisition())
    assert acquisition["amount"] == "12.345"
    assert acquisition["ab_tests"] == [{"name": "t", "variant": "v"}]
    supporter = SupporterProductData(
        identity_id="42",
        subscription_name="Stripe - ch_1",
        product_rate_plan_id="single_contribution",
        product_rate_plan_name="Single Contribution",
        contract_effective_date=date(2025, 3, 5),
        term_end_date=date(2033, 3, 12),
        expiry_date=1994371200,
        contribution_amount=Decimal("1E+2"),
        contribution_currency="GBP",
        payment_id="ch_1",
        livemode=True,
        account=None,
    )
    json_row = to_bigquery_json_row(supporter)
    assert json_row["contract_effective_date"] == "2025-03-05"
    assert json_row["contribution_amount"] == "100"
    json.dumps(json_row)
    json.dumps(acquisition)


def test_natural_key() -> None:
    assert natural_key(_contribution()) == ("ch_1",)
    assert natural_key(
        SupporterProductData(
            identity_id="42",
            subscription_name="Stripe - ch_1",
            product_rate_plan_id="x",
            product_rate_plan_name="x",
            contract_effective_date=date(2025, 1, 1),
            term_end_date=date(2025, 1, 1),
            expiry_date=0,
            contribution_amount=Decimal(1),
            contribution_currency="GBP",
            payment_id="ch_1",
            livemode=True,
            account=None,
        )
    ) == ("42", "Stripe - ch_1")


@pytest.mark.parametrize(
    ("record", "column", "message"),
    [
        pytest.param(_contribution(), None, None, id="good-row"),
        pytest.param(_acquisition(), None, None, id="good-nested-row"),
        pytest.param(
            _contribution(amount=Decimal("1.500000000000")), None, None, id="trailing-zeros-fit"
        ),
        pytest.param(
            _contribution(amount=Decimal("9" * 29 + ".999999999")), None, None, id="numeric-max"
        ),
        pytest.param(_contribution(currency=None), "currency", "is required", id="none-required"),
        pytest.param(
            _contribution(amount=Decimal("1" + "0" * 29)),
            "amount",
            "at most 29 digits before the point, got 30",
            id="numeric-overflow",
        ),
        pytest.param(
            _contribution(amount_refunded=Decimal("0.0000000001")),
            "amount_refunded",
            "at most 9 digits after the point, got 10",
            id="too-many-decimals",
        ),
        pytest.param(_contribution(amount=Decimal("NaN")), "amount", "finite", id="numeric-nan"),
        pytest.param(
            _contribution(amount=Decimal("sNaN")), "amount", "finite", id="numeric-signaling-nan"
        ),
        pytest.param(_contribution(amount=5.0), "amount", "expected Decimal", id="float-amount"),
        pytest.param(_contribution(status=1), "status", "expected str", id="int-in-string"),
        pytest.param(
            _contribution(identity_id="10\ud800"),
            "identity_id",
            "not Unicode text",
            id="lone-surrogate",
        ),
        pytest.param(_contribution(identity_id="Zoë 1001"), None, None, id="non-ascii-text"),
        pytest.param(_contribution(disputed=0), "disputed", "expected bool", id="int-in-bool"),
        pytest.param(
            _contribution(created=datetime(2025, 1, 1)), "created", "timezone-aware", id="naive"
        ),
        pytest.param(
            dataclasses.replace(_acquisition(), ab_tests=(AbTest(name="t", variant=NONE),)),
            "ab_tests[0].variant",
            "is required",
            id="nested-none",
        ),
        pytest.param(
            dataclasses.replace(_acquisition(), labels=NOT_A_TUPLE),
            "labels",
            "expected a tuple",
            id="list-not-tuple",
        ),
        pytest.param(
            dataclasses.replace(_acquisition(), labels=("a", NONE)),
            "labels[1]",
            "must not be null",
            id="null-in-repeated",
        ),
    ],
)
def test_validate(record: Any, column: str | None, message: str | None) -> None:
    if column is None:
        validate(record)
        return
    with pytest.raises(RowValidationError, match=message) as raised:
        validate(record)
    assert raised.value.column == column


def test_validate_judges_each_amount_by_value_however_often_it_is_seen() -> None:
    # Fitting amounts are remembered by value; one that does not fit never is.
    too_large = Decimal("1" + "0" * 29)
    for _ in range(3):
        validate(_contribution(amount=Decimal("12.50")))
        validate(_contribution(amount=Decimal("12.500000000")))
        with pytest.raises(RowValidationError, match="at most 29 digits before the point"):
            validate(_contribution(amount=too_large))


def test_a_record_found_valid_is_remembered_an_invalid_one_never() -> None:
    good, bad = _contribution(), _contribution(status=1)
    for _ in range(2):
        validate(good)
        with pytest.raises(RowValidationError, match="expected str"):
            validate(bad)
    assert rows._RECENTLY_VALID.get(id(good)) is good
    assert id(bad) not in rows._RECENTLY_VALID
    for index in range(2 * rows._RECENTLY_VALID_MAX):
        validate(_contribution(payment_id=f"ch_{index}"))
    assert len(rows._RECENTLY_VALID) <= rows._RECENTLY_VALID_MAX


def test_validate_rejects_datetime_in_date_and_bool_in_int() -> None:
    good = SupporterProductData(
        identity_id="42",
        subscription_name="Stripe - ch_1",
        product_rate_plan_id="x",
        product_rate_plan_name="x",
        contract_effective_date=date(2025, 1, 1),
        term_end_date=date(2025, 1, 1),
        expiry_date=0,
        contribution_amount=Decimal(1),
        contribution_currency="GBP",
        payment_id="ch_1",
        livemode=True,
        account=None,
    )
    validate(good)
    with pytest.raises(RowValidationError, match="expected date"):
        validate(dataclasses.replace(good, term_end_date=CREATED))
    with pytest.raises(RowValidationError, match="expected int"):
        validate(dataclasses.replace(good, expiry_date=True))
    with pytest.raises(RowValidationError, match="INT64 out of range"):
        validate(dataclasses.replace(good, expiry_date=2**63))
