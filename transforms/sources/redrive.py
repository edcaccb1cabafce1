"""Read a record letter's input again: its kept raw text, or its archive or Kinesis record.

    reread_records(letters, from_raw=False)   # -> Reread(records, unreadable)

`from_raw` is for warehouses that keep `raw` whole (DuckDB). Each
`SourceRecord` keeps the letter's `source` and `time` as its source and
arrival, so a record that fails again in the same way gets a letter with the
same `dead_letter_id` (`transforms.domain.events.make_dead_letter`), which the
warehouse writer upserts over the old one. A letter whose input cannot be had
(the file is gone or no record starts at the offset, the Kinesis record is
past retention, or a source that names neither) is returned in `unreadable`,
never dropped. Errors that say nothing about the input (network,
permissions) propagate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from schemas.records import DeadLetter
from transforms.domain.events import SourceRecord
from transforms.domain.redrive import payment_intent_of, raw_is_record
from transforms.sources.archive import parse_archive_source, read_record_at
from transforms.sources.decode import DecodeError, decode_record
from transforms.sources.kinesis.client import kinesis_client, parse_kinesis_source, record_at


@dataclass(frozen=True)
class Reread:
    """The records read again, each with its letter, and the letters whose input is gone."""

    records: tuple[tuple[DeadLetter, SourceRecord], ...]
    unreadable: tuple[DeadLetter, ...]


def reread_records(
    letters: Iterable[DeadLetter],
    *,
    from_raw: bool,
    kinesis: Callable[[], Any] = kinesis_client,
) -> Reread:
    """Each record letter's input: its `raw` when `from_raw` and that raw is the record's
    text (`transforms.domain.redrive.raw_is_record`), else read from its source."""
    records: list[tuple[DeadLetter, SourceRecord]] = []
    unreadable: list[DeadLetter] = []
    client: Any = None
    for letter in letters:
        if from_raw and raw_is_record(letter):
            data: bytes | None = letter.raw.encode("utf-8")
        elif (archive := parse_archive_source(letter.source)) is not None:
            data = read_record_at(*archive)
        elif (position := parse_kinesis_source(letter.source)) is not None:
            client = client or kinesis()
            found = record_at(client, *position)
            data = None if found is None else found.data
        else:
            data = None
        if data is None:
            unreadable.append(letter)
        else:
            records.append(
                (letter, SourceRecord(data=data, source=letter.source, arrival=letter.time))
            )
    return Reread(records=tuple(records), unreadable=tuple(unreadable))


def payment_intents_of(records: Iterable[SourceRecord]) -> frozenset[str]:
    """The PaymentIntents the records that decode are about, to re-read their other events."""
    found = set()
    for record in records:
        try:
            intent = payment_intent_of(decode_record(record))
        except DecodeError:
            continue
        if intent is not None:
            found.add(intent)
    return frozenset(found)
