"""What flows from a source into the core: raw records and decoded Stripe events.

A source (the S3/local archive, Kinesis) emits `SourceRecord`s: the bytes of
one record and where they came from. `transforms.sources.decode` turns each into a
`StripeEvent` or a `DeadLetter`. The core only ever sees `StripeEvent`s.
"""

from __future__ import annotations

import hashlib
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.records import DeadLetter


@dataclass(frozen=True)
class SourceRecord:
    """One record as read, before any decoding.

    `source` says where it is, precisely enough to find it again:
    `<file>@<byte offset in the decompressed stream>` for the archive,
    `kinesis:<stream>/<shard id>/<sequence number>` for Kinesis.
    `arrival` is when the record reached AWS (Kinesis approximate arrival
    time); None when the source does not know it. `partition_key` is the
    Kinesis partition key, None for the archive.
    """

    data: bytes
    source: str
    arrival: datetime | None = None
    partition_key: str | None = None
    # What orjson made of `data` when the reader already parsed it (the archive
    # splitter checks a record's end that way); None when nobody has.
    parsed: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class StripeEvent:
    """A Stripe event, whether it came wrapped in an EventBridge envelope or bare.

    `data_object` and `previous_attributes` are the event's `data.object` and
    `data.previous_attributes` as decoded JSON; treat them as read-only.
    `account` is the EventBridge partner source id (`ed_...`), None for bare
    events. `thin` marks v2 thin events, which carry no snapshot.
    """

    id: str
    type: str
    created: int
    livemode: bool
    api_version: str | None
    account: str | None
    data_object: Mapping[str, Any]
    previous_attributes: Mapping[str, Any] | None
    source: str
    arrival: datetime | None
    thin: bool = False


def make_dead_letter(
    *,
    step: str,
    reason: str,
    error: str,
    raw: str,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
) -> DeadLetter:
    """A dead letter whose id depends only on what failed, so re-runs upsert it."""
    digest = hashlib.sha256("\x1f".join((step, source, raw)).encode()).hexdigest()[:32]
    return DeadLetter(
        dead_letter_id=digest,
        step=step,
        reason=reason,
        error=error,
        raw=raw,
        source=source,
        event_id=event_id,
        time=time,
    )


#: The reason of every dead letter made by a DoFn's catch-all.
UNEXPECTED_ERROR = "unexpected_error"
# Quoted text in an exception's message is usually a value from the input.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_EMAIL = re.compile(r"\S+@\S+")
_MAX_MESSAGE = 300


def exception_text(error: BaseException) -> str:
    """`Type at file:line in function: message`, safe to store and log.

    Quoted values and anything like an email address in the message become
    `[redacted]`: an exception's message often quotes the input, and the
    input may hold personal data (the dead letter's `raw` keeps the input).
    """
    message = _EMAIL.sub("[redacted]", _QUOTED.sub("'[redacted]'", str(error)))
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    frames = traceback.extract_tb(error.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" at {_short_path(last.filename)}:{last.lineno} in {last.name}"
    return f"{type(error).__name__}{where}: {message}"


_ROOTS = ("/transforms/", "/schemas/", "/pipelines/", "/tests/", "/apache_beam/")


def _short_path(filename: str) -> str:
    """The file from its package down (`transforms/core/process.py`), never a home folder."""
    found = [(filename.find(root), root) for root in _ROOTS if root in filename]
    if not found:
        return filename.rsplit("/", 1)[-1]
    start = min(found)[0]
    return filename[start + 1 :]


def unexpected_dead_letter(
    *,
    step: str,
    error: BaseException,
    raw: str,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
) -> DeadLetter:
    """The dead letter of an element a step failed on unexpectedly (a DoFn's catch-all)."""
    return make_dead_letter(
        step=step,
        reason=UNEXPECTED_ERROR,
        error=exception_text(error),
        raw=raw,
        source=source,
        event_id=event_id,
        time=time,
    )
