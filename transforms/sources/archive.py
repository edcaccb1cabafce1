"""Read the Firehose archive of Stripe events (S3 or local) as decoded events.

`ReadArchive` is the backfill's read step: it lists the archive, prunes whole
Firehose hour folders that cannot hold events of the requested time range,
spreads the files across workers, splits each file into records, decodes them
with `transforms.sources.decode.DecodeEvents` and keeps the events created in the
range.

Paths go through Beam's `FileSystems`, so `source` may be a local folder, a
glob, or `s3://bucket/prefix`. S3 needs `apache-beam[aws]` (boto3). Beam's S3
client passes its `--s3_endpoint_url` pipeline option to boto3; when that
option is unset (the default) boto3 resolves the endpoint from the standard
AWS configuration (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the `endpoint_url`
of the config file) like every other AWS tool, and credentials and region from
the usual chain (`AWS_ACCESS_KEY_ID`, `AWS_DEFAULT_REGION`, ...). So an
S3-compatible server (MinIO, moto, ...) works with nothing but the
environment, and the transform itself needs no endpoint argument: on a
cluster whose workers do not share the launcher's environment, pass
`--s3_endpoint_url` (and friends) as pipeline options instead.

File format: gzip (recognised by its magic bytes, whatever the name; Firehose
writes `.gz`) or plain; records are JSON values either separated by
whitespace/newlines or concatenated with no delimiter (`{...}{...}`, Firehose's
default), or a mixture. Each record's `SourceRecord.source` is
`<file path>@<byte offset in the decompressed stream>`.

Run the tests with `.venv/bin/pytest tests/transforms/sources/test_archive.py`.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import BinaryIO, NamedTuple

import apache_beam as beam
import orjson
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from schemas.records import DeadLetter
from transforms.core import metrics
from transforms.domain.events import SourceRecord, StripeEvent, make_dead_letter
from transforms.sources.decode import METRICS_NAMESPACE, DecodeEvents, DecodeResult
from transforms.sources.progress import PROGRESS, RECORDS_PER_UPDATE

#: Main output tag of the file reader: the `SourceRecord`s split out of each file.
RECORDS_TAG = "records"
#: Output tag of the reader's `DeadLetter`s (files that could not be read to the end).
READ_DEAD_LETTERS_TAG = "read_dead_letters"

#: `DeadLetter.step` and `.reason` of a file that could not be read to its end.
READ_STEP = "read"
UNREADABLE_FILE = "unreadable_file"

#: Largest record the splitter waits for before calling a span undecodable.
#: EventBridge caps an event at 256 KiB; 4x leaves room for envelope growth.
MAX_RECORD_BYTES = 1 << 20

_READ_CHUNK_BYTES = 1 << 20
_FIRST_DECODE_WINDOW = 64 << 10
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = "\xef\xbb\xbf"  # as latin-1 text, see _Window
_JSON_WHITESPACE = re.compile(r"[ \t\r\n]*")
# Where an object may end: a closing brace followed by the next object, a
# newline or the end of the text. Only a guess, which orjson then confirms.
_OBJECT_END = re.compile(r"\}(?=[ \t\r\n]*\{|[ \t\r\n]*\Z|[ \t\r]*\n)")
# Guesses tried before the exact search (a `}{` inside a string is a wrong guess).
_FAST_GUESSES = 4
# Firehose's default layout `<prefix>YYYY/MM/dd/HH/<object>`; the last match wins
# because a custom prefix may itself contain digits.
_HOUR_FOLDER = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})(?=/)")
# Errors that mean the file's bytes are bad or gone; anything else (network,
# permissions) is left to fail the bundle so that the runner retries it.
_UNREADABLE_ERRORS = (zlib.error, EOFError, FileNotFoundError)


class _Span(NamedTuple):
    """A piece of a decompressed file: one JSON value, or an undecodable stretch."""

    offset: int
    data: bytes
    decodable: bool
    reaches_end: bool


class _Window:
    """A sliding view on a decompressed byte stream, as latin-1 text.

    Latin-1 maps each byte to one character, so text positions are byte
    offsets, and JSON's structural characters (all ASCII) keep their meaning:
    `json.JSONDecoder.raw_decode` finds record boundaries on it exactly as it
    would on the UTF-8 text. Values decoded from it are not used, only the
    boundaries; the record bytes are decoded properly later.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.text = ""
        self.base = 0
        self.at_eof = False

    @property
    def end(self) -> int:
        return self.base + len(self.text)

    def fill_to(self, position: int) -> None:
        """Read until the window reaches `position` (absolute) or the stream ends."""
        if self.end >= position or self.at_eof:
            return
        parts = [self.text]
        end = self.end
        while end < position:
            chunk = next(self._chunks, None)
            if chunk is None:
                self.at_eof = True
                break
            parts.append(chunk.decode("latin-1"))
            end += len(chunk)
        self.text = "".join(parts)

    def release_before(self, position: int) -> None:
        """Forget text before `position`; only in big steps, as each cut copies the rest."""
        if position - self.base >= _READ_CHUNK_BYTES:
            self.text = self.text[position - self.base :]
            self.base = position

    def data(self, start: int, stop: int) -> bytes:
        return self.text[start - self.base : stop - self.base].encode("latin-1")


def split_records(
    chunks: Iterable[bytes], max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[_Span]:
    """Split a decompressed stream into JSON values, delimited or concatenated.

    Yields every byte of the stream but the whitespace between values (and a
    leading UTF-8 BOM) exactly once, in order: each decodable JSON value as a
    span, and each undecodable stretch as one span with `decodable=False`. An
    undecodable stretch ends where the stream resynchronises: at the next
    position that starts a decodable JSON object that looks like a record (an
    envelope with `detail-type`, or an object whose `object` is `event` or
    `v2.core.event`), or at the next newline, whichever comes first; a stretch
    with neither within `max_record_bytes` is cut there. Memory stays within
    about three `max_record_bytes` plus one read chunk, whatever the size of
    the stream.
    """
    window = _Window(iter(chunks))
    decoder = json.JSONDecoder()
    position = 0
    window.fill_to(len(_UTF8_BOM))
    if window.text.startswith(_UTF8_BOM):
        position = len(_UTF8_BOM)
    while True:
        position = _skip_whitespace(window, position)
        if position >= window.end:
            return
        window.release_before(position)
        end = _object_end(window, position)
        if end is None:
            end = _decode_at(window, decoder, position, max_record_bytes)
        if end is not None:
            yield _Span(position, window.data(position, end), True, False)
        else:
            end = _resynchronise(window, decoder, position, max_record_bytes)
            reaches_end = window.at_eof and end >= window.end
            yield _Span(position, window.data(position, end), False, reaches_end)
        position = end


def _skip_whitespace(window: _Window, position: int) -> int:
    while True:
        window.fill_to(position + 1)
        match = _JSON_WHITESPACE.match(window.text, position - window.base)
        assert match is not None  # the pattern matches the empty string
        position = window.base + match.end()
        if position < window.end or window.at_eof:
            return position


def _object_end(window: _Window, position: int) -> int | None:
    """End of the object at `position`, found fast, or None when the fast way cannot tell.

    Guesses the end with `_OBJECT_END` and checks the guess with orjson, which
    parses several times faster than `raw_decode` scans. An object's end is
    its matching brace, so a guess that parses is the end `raw_decode` would
    find. orjson refuses NaN and Infinity, which then go the exact way, like
    anything that is not an object; the one thing it accepts that
    `raw_decode` does not is nesting between the interpreter's recursion
    limit (about 1,000 levels) and orjson's 1,024.
    """
    window.fill_to(position + _FIRST_DECODE_WINDOW)
    text = window.text
    start = position - window.base
    if not text.startswith("{", start):
        return None
    found = _OBJECT_END.search(text, start)
    for _ in range(_FAST_GUESSES):
        if found is None:
            return None
        stop = found.end()
        try:
            orjson.loads(text[start:stop])
        except orjson.JSONDecodeError:
            found = _OBJECT_END.search(text, stop)
            continue
        return window.base + stop
    return None


def _decode_at(
    window: _Window, decoder: json.JSONDecoder, position: int, max_record_bytes: int
) -> int | None:
    """End of the JSON value starting at `position`, or None if there is none."""
    size = _FIRST_DECODE_WINDOW
    while True:
        window.fill_to(position + size)
        try:
            _, end = decoder.raw_decode(window.text, position - window.base)
        except (ValueError, RecursionError):
            # A value cut by the window's edge fails like a corrupt one: only
            # more text, up to the record size limit, tells them apart.
            if window.at_eof or window.end - position >= max_record_bytes:
                return None
            size *= 2
            continue
        end += window.base
        # A number ending at the window's edge may continue past it.
        if end < window.end or window.at_eof or size >= max_record_bytes:
            return end
        size *= 2


def _resynchronise(
    window: _Window, decoder: json.JSONDecoder, position: int, max_record_bytes: int
) -> int:
    """Where reading resumes after an undecodable value starting at `position`."""
    limit = position + max_record_bytes
    # A record starting before `limit` must be whole in the window to be tried.
    window.fill_to(limit + max_record_bytes)
    text, base = window.text, window.base
    start = position - base
    search_end = min(limit, window.end) - base
    newline = text.find("\n", start + 1, search_end)
    if newline != -1:
        search_end = newline
    candidate = text.find("{", start + 1, search_end)
    while candidate != -1:
        # No check that the candidate is not nested in the broken record: that
        # only matters when a truncation keeps an envelope's whole `detail` (a
        # one-byte window, `detail` comes last), whereas refusing candidates
        # after a `:` would swallow the next record whenever the cut falls
        # after any key.
        try:
            value, value_end = decoder.raw_decode(text, candidate)
        except (ValueError, RecursionError):
            candidate = text.find("{", candidate + 1, search_end)
            continue
        if _looks_like_record(value):
            return base + candidate
        # A well-formed object that is not a record holds no record start.
        candidate = text.find("{", value_end, search_end)
    # The newline itself is whitespace, skipped before the next record.
    return base + search_end


def _looks_like_record(value: object) -> bool:
    return isinstance(value, dict) and (
        "detail-type" in value or value.get("object") in ("event", "v2.core.event")
    )


class _ChunkReader:
    """Decompressed chunks of one file; stops at the first data error and keeps it.

    Recognises gzip by its magic bytes and decompresses in bounded steps, so a
    highly compressed object never inflates in one go; concatenated gzip
    members are read one after the other.
    """

    def __init__(self, open_file: Callable[[], BinaryIO]) -> None:
        self._open_file = open_file
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            with self._open_file() as raw:
                yield from _decompressed(raw)
        except _UNREADABLE_ERRORS as error:
            self.error = error


def _decompressed(raw: BinaryIO) -> Iterator[bytes]:
    head = b""
    while len(head) < len(_GZIP_MAGIC):
        more = raw.read(_READ_CHUNK_BYTES)
        if not more:
            break
        head += more
    if not head.startswith(_GZIP_MAGIC):
        while head:
            yield head
            head = raw.read(_READ_CHUNK_BYTES)
        return
    pending = head
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    while True:
        if not pending:
            pending = raw.read(_READ_CHUNK_BYTES)
            if not pending:
                rest = inflater.flush()
                if rest:
                    yield rest
                if not inflater.eof:
                    raise EOFError("gzip stream ends before its end marker")
                return
        out = inflater.decompress(pending, _READ_CHUNK_BYTES)
        if out:
            yield out
        if inflater.eof:
            pending = inflater.unused_data
            if pending:
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                pending = raw.read(_READ_CHUNK_BYTES)
                if not pending:
                    return
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        else:
            pending = inflater.unconsumed_tail


def _hour_of(path: str) -> datetime | None:
    """The Firehose hour folder in `path` (UTC), None when the path has none."""
    matches = list(_HOUR_FOLDER.finditer(path))
    if not matches:
        return None
    year, month, day, hour = (int(part) for part in matches[-1].groups())
    try:
        return datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:
        return None


def _pattern(source: str) -> str:
    """A folder or prefix means everything below it; a glob is taken as is."""
    if any(char in source for char in "*?["):
        return source
    return source.rstrip("/") + "/**"


class _PruneHoursFn(beam.DoFn):
    """Drops files whose Firehose hour cannot hold records of the arrival window."""

    def __init__(self, earliest: datetime | None, latest: datetime | None) -> None:
        self._earliest = earliest
        self._latest = latest
        self._pruned = Metrics.counter(METRICS_NAMESPACE, "files_skipped_outside_time_range")

    def process(self, metadata: FileMetadata) -> Iterator[FileMetadata]:
        hour = _hour_of(metadata.path)
        if hour is not None and (
            (self._latest is not None and hour > self._latest)
            or (self._earliest is not None and hour + timedelta(hours=1) <= self._earliest)
        ):
            self._pruned.inc()
            return
        PROGRESS.file_matched(metadata.size_in_bytes)
        yield metadata


class _ReadFileFn(beam.DoFn):
    """`ReadableFile` -> `SourceRecord`s (main) and read `DeadLetter`s (tagged).

    Holds at most one file's window (see `split_records`) at a time.
    """

    def __init__(self) -> None:
        self._files_read = Metrics.counter(METRICS_NAMESPACE, "files_read")
        self._unreadable = Metrics.counter(METRICS_NAMESPACE, metrics.FILES_UNREADABLE)

    def process(self, file: fileio.ReadableFile) -> Iterator[SourceRecord | TaggedOutput]:
        path = file.metadata.path
        self._files_read.inc()
        # Gzip is detected from the bytes, so Beam must not decompress by suffix.
        reader = _ChunkReader(lambda: file.open(compression_type=CompressionTypes.UNCOMPRESSED))
        position = 0
        tail = b""
        uncounted = 0
        for span in split_records(reader):
            position = span.offset + len(span.data)
            if reader.error is not None and not span.decodable and span.reaches_end:
                # The stretch cut short by the read error belongs with that error.
                position, tail = span.offset, span.data
                break
            # Undecodable spans go on as records too: DecodeEvents dead-letters
            # them as invalid_json with their text, file and offset.
            yield SourceRecord(data=span.data, source=f"{path}@{span.offset}")
            uncounted += 1
            if uncounted == RECORDS_PER_UPDATE:
                PROGRESS.records(uncounted)
                uncounted = 0
        PROGRESS.file_read(file.metadata.size_in_bytes, uncounted)
        if reader.error is not None:
            self._unreadable.inc()
            yield TaggedOutput(
                READ_DEAD_LETTERS_TAG,
                make_dead_letter(
                    step=READ_STEP,
                    reason=UNREADABLE_FILE,
                    error=f"{type(reader.error).__name__}: {reader.error}",
                    raw=tail.decode("utf-8", errors="replace"),
                    source=f"{path}@{position}",
                ),
            )


class _KeepCreatedInRangeFn(beam.DoFn):
    def __init__(self, start: datetime | None, end: datetime | None) -> None:
        self._start = None if start is None else start.timestamp()
        self._end = None if end is None else end.timestamp()
        self._skipped = Metrics.counter(METRICS_NAMESPACE, "skipped_outside_time_range")

    def process(self, event: StripeEvent) -> Iterator[StripeEvent]:
        if (self._start is not None and event.created < self._start) or (
            self._end is not None and event.created >= self._end
        ):
            self._skipped.inc()
            return
        yield event


class _MatchFiles(beam.PTransform):
    """`fileio.MatchFiles` with stable step labels: PBegin -> FileMetadata.

    Beam's own starts from `beam.Create([pattern])`, whose inner step is named
    after a lambda's line in Beam's source (`FlatMap(<lambda at core.py:N>)`),
    so its label changed with the Beam version. Same matching rule: a pattern
    without a wildcard must match a file.
    """

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self._pattern = pattern

    def expand(self, begin: beam.pvalue.PBegin) -> beam.PCollection:
        pattern = self._pattern
        return (
            begin
            | "Start" >> beam.Impulse()
            | "ToPattern" >> beam.Map(lambda _: pattern)
            | "MatchAll" >> fileio.MatchAll(fileio.EmptyMatchTreatment.ALLOW_IF_WILDCARD)
        )


class ReadArchive(beam.PTransform[beam.pvalue.PBegin, DecodeResult]):
    """Pipeline begin -> `DecodeResult(events, dead_letters)`, both bounded.

    `events`: `StripeEvent`s created in `[start, end)` (half-open, so
    consecutive backfills over adjacent ranges neither overlap nor leave a
    gap; an unset bound is open), timestamped with `created` by
    `DecodeEvents`. Events outside the range are dropped and counted
    (`skipped_outside_time_range`). Duplicates in the archive are passed on:
    de-duplication is the core's job.

    `dead_letters`: `DeadLetter`s of step `decode` (a record that is not a
    Stripe event, including an undecodable stretch of a file, with its text
    and `<file>@<offset>`) and of step `read`, reason `unreadable_file` (a file
    that could not be read to its end, e.g. corrupt or truncated gzip: every
    record before the failure is still emitted, and the dead letter names the
    file, the offset where reading stopped and the unfinished text). Errors
    that say nothing about the file's bytes (network, permissions) fail the
    bundle instead, so the runner retries it; Beam's S3 client has already
    retried each request by then.

    Hour pruning: Firehose files its objects under `YYYY/MM/dd/HH/`, the hour
    the oldest record of the object *arrived* in Firehose, not the hour its
    events were created. An object keeps collecting records for its buffering
    interval (up to 15 minutes), so an event created just after `start` can
    sit under the hour before: `arrival_margin_before`. Events arrive after
    they are created, within seconds normally but up to days later when
    Stripe retries a failed delivery (it retries for up to three days):
    `arrival_margin_after`. So a file of hour H is read when [H, H+1h) meets
    [start - arrival_margin_before, end + arrival_margin_after]; files without
    a recognisable hour folder are always read. The exact `created` filter
    then applies to every event; the margins only decide which files are
    worth opening. Pruned files are counted
    (`files_skipped_outside_time_range`).

    `source`: a local folder, a glob, or `s3://bucket/prefix`; a folder or
    prefix is read recursively (`<source>/**`). S3 endpoint and credentials
    come from the pipeline's S3 options or the standard AWS configuration
    (see the module docstring). Files are read one at a time per worker
    thread, each with bounded memory; a Reshuffle after listing spreads the
    files across workers.

    Progress: each file listed and each file read (with its records, in steps
    of `RECORDS_PER_UPDATE`) is added to `transforms.sources.progress.PROGRESS`,
    which the local launcher prints while the job runs.

    Counters (namespace `stripe_events`): `files_read`,
    `files_skipped_outside_time_range`, `files_unreadable` (files, not records: outside
    the records identity, and a failed run),
    `skipped_outside_time_range`, and DecodeEvents' `records_read` and
    `dead_lettered_<reason>` (records are counted there only).
    """

    def __init__(
        self,
        source: str,
        start: datetime | None = None,
        end: datetime | None = None,
        arrival_margin_before: timedelta = timedelta(hours=1),
        arrival_margin_after: timedelta = timedelta(days=3),
    ) -> None:
        super().__init__()
        for name, bound in (("start", start), ("end", end)):
            if bound is not None and bound.utcoffset() is None:
                raise ValueError(f"ReadArchive: {name} must be timezone-aware, got {bound!r}")
        if start is not None and end is not None and start >= end:
            raise ValueError(f"ReadArchive: start {start} must be before end {end}")
        if arrival_margin_before < timedelta(0) or arrival_margin_after < timedelta(0):
            raise ValueError("ReadArchive: arrival margins must not be negative")
        self._pattern = _pattern(source)
        self._start = start
        self._end = end
        self._earliest_arrival = None if start is None else start - arrival_margin_before
        self._latest_arrival = None if end is None else end + arrival_margin_after

    def expand(self, begin: beam.pvalue.PBegin) -> DecodeResult:
        files = (
            begin
            | "MatchArchiveFiles" >> _MatchFiles(self._pattern)
            | "PruneHoursOutsideRange"
            >> beam.ParDo(_PruneHoursFn(self._earliest_arrival, self._latest_arrival))
            # Listing happens on one worker; spread the files before the heavy reads.
            | "SpreadFiles" >> beam.Reshuffle()
            | "OpenFiles" >> fileio.ReadMatches()
        )
        read = files | "ReadRecords" >> beam.ParDo(_ReadFileFn()).with_outputs(
            READ_DEAD_LETTERS_TAG, main=RECORDS_TAG
        )
        decoded = read[RECORDS_TAG] | "DecodeEvents" >> DecodeEvents()
        events = decoded.events | "KeepCreatedInRange" >> beam.ParDo(
            _KeepCreatedInRangeFn(self._start, self._end)
        )
        dead_letters: beam.PCollection[DeadLetter] = (
            read[READ_DEAD_LETTERS_TAG],
            decoded.dead_letters,
        ) | "MergeDeadLetters" >> beam.Flatten()
        return DecodeResult(events=events, dead_letters=dead_letters)
