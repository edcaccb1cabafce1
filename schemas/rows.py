"""Records to rows, and the check every writer runs before writing one.

    to_row(record)                -> dict   plain Python values for Arrow and DuckDB
    to_columns(type, records)     -> list   the same values, column by column
    to_bigquery_json_row(record)  -> dict   JSON-serialisable, for BigQuery (and JSONB)
    natural_key(record)           -> tuple  the values of `TABLE.key`
    validate(record)              -> None   raises RowValidationError(column, message)

These run per element on the hot path, so everything that depends only on the
record type (column names, converters, checks) is compiled once per class and
cached; a flat record becomes a row with one `attrgetter` call and a `zip`.

Error messages name the column and the rule broken, never the value, so they
can be logged and stored without leaking personal data.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from schemas.generate import NUMERIC_PRECISION, NUMERIC_SCALE, Column, Kind, Mode, columns

_MAX_INTEGER_DIGITS = NUMERIC_PRECISION - NUMERIC_SCALE
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

Converter = Callable[[Any], Any]


class RowValidationError(ValueError):
    """A record does not fit its table's schema.

    `column` is the column's path (`amount`, `ab_tests[1].name`); `message`
    says which rule it breaks, without the offending value.
    """

    def __init__(self, column: str, message: str) -> None:
        super().__init__(f"{column}: {message}")
        self.column = column
        self.message = message


@dataclass(frozen=True)
class _Plan:
    """Everything per class the hot-path functions need, computed once."""

    names: tuple[str, ...]
    getter: Callable[[Any], tuple[Any, ...]]
    # Only the columns whose value needs converting; the rest are copied as is.
    row_converters: tuple[tuple[str, Converter], ...]
    json_converters: tuple[tuple[str, Converter], ...]
    checks: tuple[tuple[str, Callable[[Any, str], None]], ...]
    # True only when the whole record is surely valid (`_surely_valid_function`).
    surely_valid: Callable[[Any], bool]
    key_getter: Callable[[Any], tuple[Any, ...]] | None


def _tuple_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    # attrgetter returns a bare value for one name; rows and keys want a tuple.
    if len(names) == 1:
        (name,) = names
        return lambda record: (getattr(record, name),)
    return operator.attrgetter(*names)


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    """The cached plan of a record type (a dict lookup after the first call)."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _build_plan(cls)
    return plan


def _build_plan(cls: type) -> _Plan:
    cols = columns(cls)
    names = tuple(c.name for c in cols)
    table = getattr(cls, "TABLE", None)
    row_converters = []
    json_converters = []
    for column in cols:
        row = _row_converter(column)
        if row is not None:
            row_converters.append((column.name, row))
        json = _json_converter(column)
        if json is not None:
            json_converters.append((column.name, json))
    return _Plan(
        names=names,
        getter=_tuple_getter(names),
        row_converters=tuple(row_converters),
        json_converters=tuple(json_converters),
        checks=tuple((c.name, _check(c)) for c in cols),
        surely_valid=_surely_valid_function(cls, cols),
        key_getter=_tuple_getter(tuple(table.key)) if table is not None else None,
    )


def _convert(plan: _Plan, converters: tuple[tuple[str, Converter], ...], record: Any) -> dict:
    row = dict(zip(plan.names, plan.getter(record), strict=True))
    for name, convert in converters:
        value = row[name]
        if value is not None:
            row[name] = convert(value)
    return row


# --- to_row -----------------------------------------------------------------


def _row_converter(column: Column) -> Converter | None:
    if column.kind is Kind.RECORD:
        nested = _nested(column, json=False)
        if column.mode is Mode.REPEATED:
            return lambda items: [nested(item) for item in items]
        return nested
    if column.mode is Mode.REPEATED:
        return list
    return None


def _nested(column: Column, *, json: bool) -> Converter:
    assert column.record is not None
    plan = _plan(column.record)
    converters = plan.json_converters if json else plan.row_converters
    return lambda record: _convert(plan, converters, record)


def to_row(record: Any) -> dict[str, Any]:
    """The record as a dict keyed by column name, in column order.

    Nested records become dicts and tuples lists; Decimal, datetime and date
    stay as they are (what `pyarrow.RecordBatch.from_pylist` and DuckDB take).
    """
    plan = _plan(type(record))
    return _convert(plan, plan.row_converters, record)


def to_columns(record_type: type, records: Sequence[Any]) -> list[list[Any]]:
    """The records' values column by column, in column order: `to_row`'s values,
    transposed (what `pyarrow.array` takes per column, without a dict per row).

    Every record must be of `record_type`.
    """
    plan = _plan(record_type)
    columns_ = [list(values) for values in zip(*map(plan.getter, records), strict=True)]
    if not columns_:
        return [[] for _ in plan.names]
    index = {name: position for position, name in enumerate(plan.names)}
    for name, convert in plan.row_converters:
        column = columns_[index[name]]
        columns_[index[name]] = [None if value is None else convert(value) for value in column]
    return columns_


# --- to_bigquery_json_row ---------------------------------------------------


def _numeric_json(value: Decimal) -> str:
    # Fixed-point text: BigQuery parses NUMERIC from a string exactly, and "f"
    # never produces an exponent (Decimal("1E+2") -> "100").
    return format(value, "f")


def _timestamp_json(value: datetime) -> str:
    utc = value.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def _date_json(value: date) -> str:
    return value.isoformat()


_JSON_SCALARS: dict[Kind, Converter] = {
    Kind.NUMERIC: _numeric_json,
    Kind.TIMESTAMP: _timestamp_json,
    Kind.DATE: _date_json,
}


def _json_converter(column: Column) -> Converter | None:
    item: Converter | None
    if column.kind is Kind.RECORD:
        item = _nested(column, json=True)
    else:
        item = _JSON_SCALARS.get(column.kind)
    if column.mode is Mode.REPEATED:
        if item is None:
            return list
        convert_item = item
        return lambda items: [convert_item(i) for i in items]
    return item


def to_bigquery_json_row(record: Any) -> dict[str, Any]:
    """The record as a JSON-serialisable dict for BigQuery.

    NUMERIC becomes a fixed-point string, TIMESTAMP an ISO string in UTC with
    microseconds and `Z`, DATE `YYYY-MM-DD`; nested records dicts, tuples lists.
    """
    plan = _plan(type(record))
    return _convert(plan, plan.json_converters, record)


# --- natural_key ------------------------------------------------------------


def natural_key(record: Any) -> tuple[Any, ...]:
    """The values of the record type's `TABLE.key`, in key order."""
    getter = _plan(type(record)).key_getter
    if getter is None:
        raise TypeError(f"{type(record).__name__} has no TABLE, hence no natural key")
    return getter(record)


# --- validate ---------------------------------------------------------------


def _numeric_error(value: Decimal) -> str | None:
    """Why a Decimal does not fit NUMERIC(38, 9), or None when it does.

    Judged on the value, not its spelling: Decimal("1.500000000000") is 1.5
    and fits, as Arrow and BigQuery would store it without loss.
    """
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return "NUMERIC must be finite (not NaN or Infinity)"
    if -NUMERIC_SCALE <= exponent <= 0 and len(digits) <= _MAX_INTEGER_DIGITS:
        return None  # the common case: at most 9 decimals and few digits
    n = len(digits)
    while n > 1 and exponent < 0 and digits[n - 1] == 0:
        n -= 1
        exponent += 1
    if n == 1 and digits[0] == 0:
        return None
    fraction_digits = -exponent if exponent < 0 else 0
    if fraction_digits > NUMERIC_SCALE:
        return (
            f"NUMERIC allows at most {NUMERIC_SCALE} digits after the point, got {fraction_digits}"
        )
    integer_digits = n + exponent
    if integer_digits > _MAX_INTEGER_DIGITS:
        return (
            f"NUMERIC allows at most {_MAX_INTEGER_DIGITS} digits before the point, "
            f"got {integer_digits}"
        )
    return None


# Values already found to fit NUMERIC: whether one fits depends on its value,
# not its spelling (`_numeric_error`), and equal Decimals hash alike, so a few
# thousand amounts answer most rows with one lookup instead of `as_tuple()`.
_FITTING_NUMERICS: set[Decimal] = set()
_MAX_FITTING_NUMERICS = 4096


def _numeric_fits(value: Decimal) -> bool:
    """Whether a finite Decimal fits NUMERIC(38, 9), remembered for the next rows."""
    if _numeric_error(value) is not None:
        return False
    if len(_FITTING_NUMERICS) < _MAX_FITTING_NUMERICS:
        _FITTING_NUMERICS.add(value)
    return True


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _scalar_error(kind: Kind, value: Any) -> str | None:
    """Why `value` is not a valid `kind`, or None."""
    if kind is Kind.STRING:
        if not isinstance(value, str):
            return f"expected str, got {type(value).__name__}"
        # Parquet, BigQuery and Postgres all refuse a lone surrogate (half a UTF-16 pair).
        return None if _is_text(value) else "not Unicode text (a lone surrogate)"
    if kind is Kind.NUMERIC:
        if not isinstance(value, Decimal):
            return f"expected Decimal, got {type(value).__name__}"
        return _numeric_error(value)
    if kind is Kind.TIMESTAMP:
        if not isinstance(value, datetime):
            return f"expected datetime, got {type(value).__name__}"
        if value.utcoffset() is None:
            return "TIMESTAMP needs a timezone-aware datetime (UTC)"
        return None
    if kind is Kind.BOOL:
        return None if isinstance(value, bool) else f"expected bool, got {type(value).__name__}"
    if kind is Kind.INT64:
        # bool is an int subclass; True in an INT64 column is a bug upstream.
        if not isinstance(value, int) or isinstance(value, bool):
            return f"expected int, got {type(value).__name__}"
        if not _INT64_MIN <= value <= _INT64_MAX:
            return "INT64 out of range"
        return None
    if kind is Kind.DATE:
        # datetime is a date subclass; a DATE column wants the calendar day only.
        if not isinstance(value, date) or isinstance(value, datetime):
            return f"expected date, got {type(value).__name__}"
        return None
    raise AssertionError(kind)


def _check(column: Column) -> Callable[[Any, str], None]:
    """A function(value, path) raising RowValidationError when value breaks the column."""
    kind = column.kind
    record_type = column.record

    def check_item(value: Any, path: str) -> None:
        if value is None:
            raise RowValidationError(path, "must not be null")
        if record_type is not None:
            if not isinstance(value, record_type):
                raise RowValidationError(
                    path, f"expected {record_type.__name__}, got {type(value).__name__}"
                )
            _validate(value, path + ".")
            return
        error = _scalar_error(kind, value)
        if error is not None:
            raise RowValidationError(path, error)

    if column.mode is Mode.REPEATED:

        def check_repeated(value: Any, path: str) -> None:
            if not isinstance(value, tuple):
                raise RowValidationError(
                    path, f"expected a tuple (empty for none), got {type(value).__name__}"
                )
            for index, item in enumerate(value):
                check_item(item, f"{path}[{index}]")

        return check_repeated

    if column.mode is Mode.NULLABLE:

        def check_nullable(value: Any, path: str) -> None:
            if value is not None:
                check_item(value, path)

        return check_nullable

    def check_required(value: Any, path: str) -> None:
        if value is None:
            raise RowValidationError(path, "is required but is None")
        check_item(value, path)

    return check_required


def _surely_valid_function(cls: type, cols: tuple[Column, ...]) -> Callable[[Any], bool]:
    """One compiled predicate per record type, True only for records `_validate` accepts.

    False says nothing: the full check then runs and names the problem. The
    predicate is generated as one expression of exact type tests per column
    (`_fast_expression`) and compiled once, so a valid row costs one call,
    not one call per column: this runs for every record every writer takes.
    """
    names = tuple(c.name for c in cols)
    namespace: dict[str, Any] = {
        "_getter": _tuple_getter(names),
        "_is_text": _is_text,
        "_FITTING_NUMERICS": _FITTING_NUMERICS,
        "_numeric_fits": _numeric_fits,
        "Decimal": Decimal,
        "datetime": datetime,
        "date": date,
        "UTC": UTC,
    }
    values = [f"v{index}" for index in range(len(cols))]
    tests = [
        _fast_expression(column, value, namespace)
        for column, value in zip(cols, values, strict=True)
    ]
    body = " and ".join(f"({test})" for test in tests) or "True"
    source = (
        f"def surely_valid(record):\n"
        f"    {', '.join(values)}, = _getter(record)\n"
        f"    return {body}\n"
    )
    exec(compile(source, f"<surely_valid {cls.__name__}>", "exec"), namespace)  # noqa: S102
    return namespace["surely_valid"]


def _fast_expression(column: Column, value: str, namespace: dict[str, Any]) -> str:
    """A Python expression over the variable `value`, True only if the column accepts it."""
    if column.mode is Mode.REPEATED:
        item = "item"  # a nested record's repeated columns are tested in its own function
        test = _fast_item_expression(column, item, namespace)
        # An empty tuple, the common case, builds no generator.
        return f"type({value}) is tuple and (not {value} or all(({test}) for {item} in {value}))"
    test = _fast_item_expression(column, value, namespace)
    if column.mode is Mode.NULLABLE:
        return f"{value} is None or ({test})"
    return test


def _fast_item_expression(column: Column, value: str, namespace: dict[str, Any]) -> str:
    # Exact types only: a subclass (bool for int, datetime for date) is left to the full check.
    kind = column.kind
    if kind is Kind.RECORD:
        assert column.record is not None
        nested = column.record
        name = f"_record_{nested.__name__}"
        namespace[name] = nested
        namespace[f"_valid_{nested.__name__}"] = _plan(nested).surely_valid
        return f"type({value}) is {name} and _valid_{nested.__name__}({value})"
    if kind is Kind.STRING:
        return f"type({value}) is str and ({value}.isascii() or _is_text({value}))"
    if kind is Kind.BOOL:
        return f"type({value}) is bool"
    if kind is Kind.DATE:
        return f"type({value}) is date"
    if kind is Kind.INT64:
        return f"type({value}) is int and {_INT64_MIN} <= {value} <= {_INT64_MAX}"
    if kind is Kind.NUMERIC:
        return (
            f"type({value}) is Decimal and {value}.is_finite() "
            f"and ({value} in _FITTING_NUMERICS or _numeric_fits({value}))"
        )
    if kind is Kind.TIMESTAMP:
        return f"type({value}) is datetime and {value}.tzinfo is UTC"
    raise AssertionError(kind)


def _surely_valid(record: Any) -> bool:
    return _plan(type(record)).surely_valid(record)


def _validate(record: Any, prefix: str) -> None:
    plan = _plan(type(record))
    for (name, check), value in zip(plan.checks, plan.getter(record), strict=True):
        check(value, prefix + name)


def validate(record: Any) -> None:
    """Check a record against its table schema before it is written anywhere.

    Required columns are not None; every value has its column's type (str,
    int within INT64 and not bool, bool, Decimal fitting NUMERIC(38, 9) with
    at most 29 integer and 9 fraction digits, timezone-aware datetime, date
    that is not a datetime, tuple of non-null items, nested record of the
    declared type). Raises RowValidationError naming the first bad column, or
    TypeError when the record's type is not a supported record type.
    """
    if _RECENTLY_VALID.get(id(record)) is record:
        return
    # The fast path answers for the valid rows; the full check explains the rest.
    if not _surely_valid(record):
        _validate(record, "")
    if len(_RECENTLY_VALID) >= _RECENTLY_VALID_MAX:
        _RECENTLY_VALID.clear()
    _RECENTLY_VALID[id(record)] = record


# The last records found valid, by identity. Records are frozen and hold only
# immutable values, so one found valid stays valid: the same object checked
# again (BuildRecords checks each record of a payment before emitting any, and
# its writer checks it again, in the same fused step) costs a lookup. Held here,
# an object's id cannot be reused while it is in the map; bounded, and cleared
# when full.
_RECENTLY_VALID: dict[int, Any] = {}
_RECENTLY_VALID_MAX = 256
