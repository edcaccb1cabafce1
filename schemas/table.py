"""The small vocabulary every record type in `schemas.records` is written in.

A record type is a frozen dataclass; its fields are the columns. Python types
map to warehouse types (see `schemas.generate`):

    str -> STRING, int -> INT64, bool -> BOOL, Decimal -> NUMERIC,
    datetime -> TIMESTAMP (UTC), date -> DATE, X | None -> NULLABLE,
    tuple[X, ...] -> REPEATED, a nested dataclass -> RECORD.

Table-level facts (natural key, partitioning, clustering) sit in a `TABLE`
class attribute, so a record type is the one place a table is defined.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Table:
    """How a record type is stored.

    `key` is the natural key every writer upserts on, which is what makes a
    replay or a re-run backfill harmless. `partition_by` names a TIMESTAMP
    or DATE column that BigQuery partitions by day.
    """

    name: str
    description: str
    key: tuple[str, ...]
    partition_by: str | None = None
    cluster_by: tuple[str, ...] = ()


def column(description: str, **kwargs: Any) -> Any:
    """A dataclass field carrying the column description used by every schema."""
    return dataclasses.field(metadata={"description": description}, **kwargs)


def step_name(table: str) -> str:
    """The step label for a table's part of a writer: 'thank_you_emails' -> 'ThankYouEmails'.

    Labels are an interface (renaming one breaks an in-place update of a
    running job), so every writer derives them here.
    """
    return "".join(part.capitalize() for part in table.split("_"))
