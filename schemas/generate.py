"""Warehouse schemas generated from the record types in `schemas.records`.

One function per target, each taking a record type (a frozen dataclass with a
`TABLE` class attribute):

    bigquery_schema(cls)          -> list[dict]  the JSON schema `bq mk --schema` accepts
    bigquery_time_partitioning(cls) -> dict | None  {"type": "DAY", "field": ...}
    bigquery_clustering(cls)      -> dict | None  {"fields": [...]}
    bigquery_table_parameters(cls) -> dict  both of the above, for WriteToBigQuery's
                                            `additional_bq_parameters`
    postgres_ddl(cls)             -> str   CREATE TABLE IF NOT EXISTS + COMMENT ON
    duckdb_ddl(cls)               -> str   CREATE TABLE IF NOT EXISTS + COMMENT ON
    arrow_schema(cls)             -> pa.Schema

Type mapping (`X | None` is NULLABLE, otherwise REQUIRED; `tuple[X, ...]` is
REPEATED and never null, an empty tuple being an empty array):

    python     BigQuery   Postgres         DuckDB          Arrow
    str        STRING     TEXT             VARCHAR         string
    int        INT64      BIGINT           BIGINT          int64
    bool       BOOL       BOOLEAN          BOOLEAN         bool
    Decimal    NUMERIC    NUMERIC(38, 9)   DECIMAL(38, 9)  decimal128(38, 9)
    datetime   TIMESTAMP  TIMESTAMPTZ      TIMESTAMPTZ     timestamp[us, tz=UTC]
    date       DATE       DATE             DATE            date32
    dataclass  RECORD     JSONB            STRUCT(...)     struct
    tuple      REPEATED   <scalar>[] / JSONB  <type>[]     list (non-null items)

Postgres keeps repeated scalars as native arrays but stores nested records
(single or repeated) as JSONB, encoded like `schemas.rows.to_bigquery_json_row`
(NUMERIC as a string, TIMESTAMP as ISO with Z). Composite types would need a
`CREATE TYPE` per record kept in step with every table, a migration burden the
few nested columns (A/B tests, query parameters, print options) do not repay.

Every generator fails loudly with a TypeError naming the field when a type is
outside this vocabulary, and checks that the `TABLE` key, partition and
clustering columns exist and suit their role. `tests/schemas/golden/` pins the
output; `python -m tools.update_golden` rewrites it after a deliberate change.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from schemas.table import Table

#: BigQuery NUMERIC: 38 digits of which 9 after the point; every target uses it.
NUMERIC_PRECISION = 38
NUMERIC_SCALE = 9


class Kind(enum.Enum):
    """The warehouse type of a column (its BigQuery name is the value)."""

    STRING = "STRING"
    INT64 = "INT64"
    BOOL = "BOOL"
    NUMERIC = "NUMERIC"
    TIMESTAMP = "TIMESTAMP"
    DATE = "DATE"
    RECORD = "RECORD"


class Mode(enum.Enum):
    """BigQuery column mode; REPEATED columns are never null."""

    REQUIRED = "REQUIRED"
    NULLABLE = "NULLABLE"
    REPEATED = "REPEATED"


# Exact classes only: bool is an int and datetime is a date, so a lookup by
# identity keeps `bool` from becoming INT64.
_SCALAR_KINDS: dict[Any, Kind] = {
    str: Kind.STRING,
    int: Kind.INT64,
    bool: Kind.BOOL,
    Decimal: Kind.NUMERIC,
    datetime: Kind.TIMESTAMP,
    date: Kind.DATE,
}


@dataclass(frozen=True)
class Column:
    """One column of a record type, resolved from its annotation.

    `record` is the nested dataclass when `kind` is RECORD, else None.
    """

    name: str
    kind: Kind
    mode: Mode
    description: str
    record: type | None = None

    @property
    def fields(self) -> tuple[Column, ...]:
        """The nested columns of a RECORD column; empty otherwise."""
        return columns(self.record) if self.record is not None else ()


@functools.cache
def columns(cls: type) -> tuple[Column, ...]:
    """The columns of a dataclass, in declaration order (cached per class).

    Raises TypeError naming the field when an annotation is outside the
    vocabulary in the module docstring, or when a field has no description.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass record type")
    hints = typing.get_type_hints(cls)
    return tuple(_column(cls, field, hints[field.name]) for field in dataclasses.fields(cls))


def _column(cls: type, field: dataclasses.Field[Any], hint: Any) -> Column:
    where = f"{cls.__name__}.{field.name}"
    description = field.metadata.get("description")
    if not description:
        raise TypeError(f"{where}: no description; declare it with schemas.table.column()")
    mode = Mode.REQUIRED
    args = typing.get_args(hint)
    if _is_union(hint):
        non_none = [arg for arg in args if arg is not type(None)]
        if len(non_none) != 1 or len(args) != 2:
            raise TypeError(f"{where}: unsupported union {hint!r}; only `X | None` is allowed")
        hint = non_none[0]
        mode = Mode.NULLABLE
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{where}: unsupported tuple {hint!r}; use tuple[X, ...]")
        if mode is Mode.NULLABLE:
            # BigQuery has no nullable arrays; an empty tuple already says "none".
            raise TypeError(f"{where}: tuple[X, ...] | None is unsupported; use an empty tuple")
        hint = args[0]
        mode = Mode.REPEATED
        if _is_union(hint):
            raise TypeError(f"{where}: repeated items cannot be nullable ({hint!r})")
    kind = _SCALAR_KINDS.get(hint)
    if kind is not None:
        return Column(field.name, kind, mode, description)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        columns(hint)  # resolve now so a bad nested type names its own field
        return Column(field.name, Kind.RECORD, mode, description, record=hint)
    raise TypeError(f"{where}: unsupported type {hint!r}")


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


@functools.cache
def table_of(cls: type) -> Table:
    """The `TABLE` of a record type, after checking it against the columns.

    Raises TypeError when `TABLE` is missing, a key column is absent, nullable,
    repeated or a RECORD, the partition column is not a single TIMESTAMP/DATE,
    or a clustering column is absent, repeated or a RECORD.
    """
    table = getattr(cls, "TABLE", None)
    if not isinstance(table, Table):
        raise TypeError(f"{cls!r} has no TABLE: Table class attribute")
    by_name = {column.name: column for column in columns(cls)}
    if not table.key:
        raise TypeError(f"{cls.__name__}.TABLE.key is empty")
    for name in table.key:
        column = by_name.get(name)
        if column is None or column.mode is not Mode.REQUIRED or column.kind is Kind.RECORD:
            raise TypeError(f"{cls.__name__}.TABLE.key: {name!r} must be a required scalar column")
    if table.partition_by is not None:
        column = by_name.get(table.partition_by)
        if (
            column is None
            or column.mode is Mode.REPEATED
            or column.kind not in (Kind.TIMESTAMP, Kind.DATE)
        ):
            raise TypeError(
                f"{cls.__name__}.TABLE.partition_by: {table.partition_by!r} "
                "must be a TIMESTAMP or DATE column"
            )
    if len(table.cluster_by) > 4:
        raise TypeError(f"{cls.__name__}.TABLE.cluster_by: BigQuery allows at most 4 columns")
    for name in table.cluster_by:
        column = by_name.get(name)
        if column is None or column.mode is Mode.REPEATED or column.kind is Kind.RECORD:
            raise TypeError(
                f"{cls.__name__}.TABLE.cluster_by: {name!r} must be a non-repeated scalar column"
            )
    return table


def _quote(identifier: str) -> str:
    """A double-quoted SQL identifier (Postgres and DuckDB), so `time` is safe."""
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- BigQuery ---------------------------------------------------------------


def bigquery_schema(cls: type) -> list[dict[str, Any]]:
    """The BigQuery JSON schema of a record type, as `bq mk --schema` reads it."""
    table_of(cls)
    return _bigquery_fields(columns(cls))


def _bigquery_fields(cols: tuple[Column, ...]) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = []
    for column in cols:
        field: dict[str, Any] = {
            "name": column.name,
            "type": column.kind.value,
            "mode": column.mode.value,
            "description": column.description,
        }
        if column.kind is Kind.RECORD:
            field["fields"] = _bigquery_fields(column.fields)
        fields.append(field)
    return fields


def bigquery_time_partitioning(cls: type) -> dict[str, str] | None:
    """Day partitioning on `TABLE.partition_by` (BigQuery TimePartitioning JSON), or None."""
    table = table_of(cls)
    if table.partition_by is None:
        return None
    return {"type": "DAY", "field": table.partition_by}


def bigquery_clustering(cls: type) -> dict[str, list[str]] | None:
    """Clustering on `TABLE.cluster_by` (BigQuery Clustering JSON), or None."""
    table = table_of(cls)
    if not table.cluster_by:
        return None
    return {"fields": list(table.cluster_by)}


def bigquery_table_parameters(cls: type) -> dict[str, Any]:
    """`timePartitioning` and `clustering` for WriteToBigQuery's `additional_bq_parameters`."""
    parameters: dict[str, Any] = {}
    partitioning = bigquery_time_partitioning(cls)
    if partitioning is not None:
        parameters["timePartitioning"] = partitioning
    clustering = bigquery_clustering(cls)
    if clustering is not None:
        parameters["clustering"] = clustering
    return parameters


# --- Postgres and DuckDB ----------------------------------------------------

_POSTGRES_TYPES: dict[Kind, str] = {
    Kind.STRING: "TEXT",
    Kind.INT64: "BIGINT",
    Kind.BOOL: "BOOLEAN",
    Kind.NUMERIC: f"NUMERIC({NUMERIC_PRECISION}, {NUMERIC_SCALE})",
    Kind.TIMESTAMP: "TIMESTAMPTZ",
    Kind.DATE: "DATE",
    Kind.RECORD: "JSONB",
}

_DUCKDB_TYPES: dict[Kind, str] = {
    Kind.STRING: "VARCHAR",
    Kind.INT64: "BIGINT",
    Kind.BOOL: "BOOLEAN",
    Kind.NUMERIC: f"DECIMAL({NUMERIC_PRECISION}, {NUMERIC_SCALE})",
    Kind.TIMESTAMP: "TIMESTAMPTZ",
    Kind.DATE: "DATE",
}


def _postgres_type(column: Column) -> str:
    base = _POSTGRES_TYPES[column.kind]
    if column.mode is Mode.REPEATED and column.kind is not Kind.RECORD:
        return base + "[]"
    return base  # a repeated RECORD is one JSONB array


def duckdb_type(column: Column) -> str:
    """The column's DuckDB type (STRUCT for a record, `[]` for a repeated column)."""
    if column.kind is Kind.RECORD:
        inner = ", ".join(f"{_quote(f.name)} {duckdb_type(f)}" for f in column.fields)
        base = f"STRUCT({inner})"
    else:
        base = _DUCKDB_TYPES[column.kind]
    return base + "[]" if column.mode is Mode.REPEATED else base


def _create_table(cls: type, type_of: typing.Callable[[Column], str], *, primary_key: bool) -> str:
    table = table_of(cls)
    name = _quote(table.name)
    lines = []
    for column in columns(cls):
        # A repeated column is never null: an empty array says "none".
        not_null = " NOT NULL" if column.mode is not Mode.NULLABLE else ""
        lines.append(f"    {_quote(column.name)} {type_of(column)}{not_null}")
    if primary_key:
        lines.append(f"    PRIMARY KEY ({', '.join(_quote(k) for k in table.key)})")
    body = ",\n".join(lines)
    statements = [f"CREATE TABLE IF NOT EXISTS {name} (\n{body}\n);"]
    statements.append(f"COMMENT ON TABLE {name} IS {_literal(table.description)};")
    statements.extend(
        f"COMMENT ON COLUMN {name}.{_quote(c.name)} IS {_literal(c.description)};"
        for c in columns(cls)
    )
    return "\n".join(statements) + "\n"


def postgres_ddl(cls: type) -> str:
    """`CREATE TABLE IF NOT EXISTS` (primary key = `TABLE.key`) and column comments.

    Safe to run repeatedly; it never alters an existing table.
    """
    return _create_table(cls, _postgres_type, primary_key=True)


def duckdb_ddl(cls: type) -> str:
    """`CREATE TABLE IF NOT EXISTS` and column comments; no primary key.

    DuckDB keeps a primary key's index in memory, pinned, so it would grow
    with the table and defeat the warehouse's memory limit; the warehouse
    writer keeps `TABLE.key` unique itself (delete, then insert, per load).
    Nested records are STRUCTs, repeated columns LISTs. Safe to run repeatedly.
    """
    return _create_table(cls, duckdb_type, primary_key=False)


# --- Arrow ------------------------------------------------------------------

_ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.STRING: pa.string(),
    Kind.INT64: pa.int64(),
    Kind.BOOL: pa.bool_(),
    Kind.NUMERIC: pa.decimal128(NUMERIC_PRECISION, NUMERIC_SCALE),
    Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    Kind.DATE: pa.date32(),
}


def _arrow_field(column: Column) -> pa.Field:
    if column.kind is Kind.RECORD:
        item_type: pa.DataType = pa.struct([_arrow_field(f) for f in column.fields])
    else:
        item_type = _ARROW_TYPES[column.kind]
    if column.mode is Mode.REPEATED:
        data_type: pa.DataType = pa.list_(pa.field("item", item_type, nullable=False))
    else:
        data_type = item_type
    return pa.field(
        column.name,
        data_type,
        nullable=column.mode is Mode.NULLABLE,
        metadata={"description": column.description},
    )


def arrow_schema(cls: type) -> pa.Schema:
    """The Arrow schema of a record type; Parquet files staged with it load into DuckDB as is."""
    table = table_of(cls)
    return pa.schema(
        [_arrow_field(column) for column in columns(cls)],
        metadata={"table": table.name, "description": table.description},
    )


def arrow_schema_text(cls: type) -> str:
    """`arrow_schema(cls)` printed in full, metadata included (the golden-file form)."""
    text = arrow_schema(cls).to_string(
        truncate_metadata=False, show_field_metadata=True, show_schema_metadata=True
    )
    return text + "\n"
