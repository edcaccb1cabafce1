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

Limits: a record is at most `MAX_RECORD_BYTES` (1 MiB, what Kinesis accepts),
a file decompresses to at most `MAX_OBJECT_BYTES` (128 MiB, Firehose's largest
buffer, plus one record); each has a dead-letter reason of its own.

Run the tests with `.venv/bin/pytest tests/transforms/sources/test_archive.py`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, NamedTuple

import apache_beam as beam
import boto3
import botocore.exceptions
import orjson
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from schemas.records import DeadLetter
from transforms.core import metrics
from transforms.domain.events import SourceRecord, StripeEvent, make_dead_letter
from transforms.infrastructure import (
    RETRYING_CLIENT_CONFIG,
    ConfigurationError,
    describe_error,
    error_code,
)
from transforms.sources.decode import (
    METRICS_NAMESPACE,
    DecodeEvents,
    DecodeResult,
    _DecodeRecordFn,  # private in name only: the streaming job's pinned steps name it
)
from transforms.sources.progress import PROGRESS, RECORDS_PER_UPDATE

#: Main output tag of the listing: the `FileMetadata` of each file to read.
FILES_TAG = "files"
#: Output tag of the listing's `DeadLetter`s (files refused without being opened).
REFUSED_TAG = "refused"
#: Main output tag of the file reader: the `SourceRecord`s split out of each file.
RECORDS_TAG = "records"
#: Output tag of the reader's `DeadLetter`s (files that could not be read to the end).
READ_DEAD_LETTERS_TAG = "read_dead_letters"

#: `DeadLetter.step` and `.reason` of a file that could not be read to its end.
READ_STEP = "read"
UNREADABLE_FILE = "unreadable_file"
#: `DeadLetter.reason`s (step `read`) of files the listing refuses to open: a
#: symbolic link that leads out of the source, and anything that is not a
#: regular file (FIFO, socket, device, a link to nothing), which could block
#: the read forever or is no archive object.
SYMLINK_OUTSIDE_SOURCE = "symlink_outside_source"
NOT_A_REGULAR_FILE = "not_a_regular_file"
#: `DeadLetter.reason` (step `read`) of a record over `MAX_RECORD_BYTES`.
RECORD_TOO_LARGE = "record_too_large"
#: `DeadLetter.reason` (step `read`) of a file that decompresses past `MAX_OBJECT_BYTES`.
OBJECT_TOO_LARGE = "object_too_large"

#: The size limit of one record, in bytes of the decompressed stream: 1 MiB,
#: the largest record a Kinesis stream accepts (Firehose's own limit, 1,000 KiB,
#: is just below). EventBridge caps an event at 256 KB, so what Stripe sends is
#: far smaller; the margin is for records put on the stream by other producers
#: (replays, `tools.put_on_kinesis`), which only Kinesis bounds. A value longer
#: than this cannot have come through either service: it is one dead letter,
#: `record_too_large`, whatever its length, and reading goes on after its end.
MAX_RECORD_BYTES = 1 << 20
#: How much of a record over the limit its dead letter keeps as `raw` (the
#: envelope's head, with its ids); the whole record stays at `<file>@<offset>`.
TOO_LARGE_RAW_BYTES = 4 << 10
#: The size limit of one file (object), decompressed: Firehose delivers an
#: object when its buffer of incoming records reaches its size, 128 MiB at most,
#: and the record that fills it may run past by up to one record. Beyond this a
#: file is not an archive object (a gzip bomb inflates 300 MB of whitespace from
#: 308 KB): reading stops there, `object_too_large`.
MAX_OBJECT_BYTES = (128 << 20) + MAX_RECORD_BYTES

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


_EVENT_ID = re.compile(rb'"id" ?: ?"(evt_[A-Za-z0-9_]+)"')
# Outside strings, the characters that open or close a value; inside, the ones that end a run.
_STRUCTURE = re.compile(r'["{}\[\]]')
_STRING_STOP = re.compile(r'["\\]')
# The JSON strings and object openings of a text, in order (a string cut by the
# end of the text runs to that end).
_STRINGS_AND_OBJECTS = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\Z)|\{')
# Where a value other than an object may end for the splitter to believe it
# ends there: it may be a stray character before a record (`"{"detail-type"...`).
_CLEAN_BOUNDARY = " \t\r\n{"


class _Span(NamedTuple):
    """A piece of a decompressed file: one JSON value, or an undecodable stretch.

    `length` is the bytes the span covers in the stream: `len(data)`, except
    for a record over the size limit (`too_large`), of which `data` holds only
    the first `TOO_LARGE_RAW_BYTES`.
    """

    offset: int
    data: bytes
    decodable: bool
    reaches_end: bool
    length: int
    too_large: bool = False
    parsed: Any = None  # orjson's document of `data`, when the fast way made one


class _Broken(NamedTuple):
    """The value at a position does not parse; its parse failed at `failed_at`."""

    failed_at: int


class _TooLarge(NamedTuple):
    """The value at a position runs past the record size limit."""


class _Window:
    """A sliding view on a decompressed byte stream, as latin-1 text.

    Latin-1 maps each byte to one character, so text positions are byte
    offsets, and JSON's structural characters (all ASCII) keep their meaning:
    `json.JSONDecoder.raw_decode` finds record boundaries on it exactly as it
    would on the UTF-8 text. Values decoded from it are not used, only the
    boundaries; the fast way (`_object_end`) parses a record's bytes, whose
    document decoding then takes instead of parsing them again.
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
    leading UTF-8 BOM) exactly once, in order, each in one span:

    - a decodable JSON value of at most `max_record_bytes`; a value that is not
      an object must be followed by whitespace, an object or the end (a stray
      `"` before a record would otherwise swallow the record's first key);
    - a value over `max_record_bytes` (`too_large=True`, `decodable=False`),
      whole: it ends at its closing bracket, found outside strings, or at the
      end of the stream if it never closes; `data` is its first
      `TOO_LARGE_RAW_BYTES`;
    - an undecodable stretch (`decodable=False`). It ends where the stream
      resynchronises: at the next position that starts a decodable JSON object
      that looks like a record (an envelope with `detail-type`, or an object
      whose `object` is `event` or `v2.core.event`) and is not nested in the
      part of the broken value that parsed (an envelope missing its last `}`
      is one stretch, its `detail` is not then read bare), or at the next
      newline, whichever comes first; a stretch with neither within
      `max_record_bytes` is cut there.

    Memory stays within about three `max_record_bytes` plus one read chunk,
    whatever the size of the stream or of its values.
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
        fast = _object_end(window, position, max_record_bytes)
        if fast is not None:
            end, data, parsed = fast
            yield _Span(position, data, True, False, end - position, parsed=parsed)
            position = end
            continue
        found = _decode_at(window, decoder, position, max_record_bytes)
        if isinstance(found, _TooLarge) and not window.text.startswith(
            ("{", "[", '"'), position - window.base
        ):
            # Only a number or a literal has no bracket to end at; as long as
            # that, it is garbage.
            found = _Broken(position + 1)
        if isinstance(found, int):
            end = found
            yield _Span(position, window.data(position, end), True, False, end - position)
        elif isinstance(found, _TooLarge):
            head = window.data(position, min(position + TOO_LARGE_RAW_BYTES, window.end))
            end = _value_end(window, position)
            head = head[: end - position]
            reaches_end = window.at_eof and end >= window.end
            yield _Span(position, head, False, reaches_end, end - position, too_large=True)
        else:
            end = _resynchronise(window, decoder, position, found.failed_at, max_record_bytes)
            reaches_end = window.at_eof and end >= window.end
            yield _Span(position, window.data(position, end), False, reaches_end, end - position)
        position = end


def _skip_whitespace(window: _Window, position: int) -> int:
    text = window.text
    start = position - window.base
    if start < len(text) and text[start] == "{":
        return position  # the common case: the next record follows at once
    while True:
        # Forget what was skipped as we go: a stream of nothing but whitespace
        # (a gzip bomb) must not pile up in the window.
        window.release_before(position)
        window.fill_to(position + 1)
        match = _JSON_WHITESPACE.match(window.text, position - window.base)
        assert match is not None  # the pattern matches the empty string
        position = window.base + match.end()
        if position < window.end or window.at_eof:
            return position


def _object_end(
    window: _Window, position: int, max_record_bytes: int
) -> tuple[int, bytes, Any] | None:
    """End of the object at `position`, its bytes and orjson's document of them,
    found fast, or None when the fast way cannot tell.

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
        if stop - start > max_record_bytes:
            return None
        try:
            # The bytes, not the latin-1 text: where they parse, the text does
            # too (JSON's structure is ASCII), and the document is the one
            # decoding needs, so each record is parsed once. Bytes that are
            # not UTF-8 go the exact way, which finds the same end.
            data = text[start:stop].encode("latin-1")
            document = orjson.loads(data)
        except orjson.JSONDecodeError:
            found = _OBJECT_END.search(text, stop)
            continue
        return window.base + stop, data, document
    return None


def _decode_at(
    window: _Window, decoder: json.JSONDecoder, position: int, max_record_bytes: int
) -> int | _Broken | _TooLarge:
    """End of the JSON value starting at `position`; or why there is none."""
    size = _FIRST_DECODE_WINDOW
    while True:
        window.fill_to(position + size)
        start = position - window.base
        try:
            _, end = decoder.raw_decode(window.text, start)
        except RecursionError:
            return _Broken(position + 1)
        except ValueError as error:
            failed_at = getattr(error, "pos", start + 1)
            # A value cut by the window's edge fails like a corrupt one, only
            # at the edge: more text, up to the size limit, tells them apart.
            if not _cut_by_edge(error, failed_at, len(window.text)):
                return _Broken(window.base + failed_at)
            if window.end - position > max_record_bytes:
                return _TooLarge()
            if window.at_eof:
                return _Broken(window.base + failed_at)
            size *= 2
            continue
        end += window.base
        if end - position > max_record_bytes:
            return _TooLarge()
        # A number ending at the window's edge may continue past it.
        if end < window.end or window.at_eof:
            if window.text.startswith("{", start) or _ends_cleanly(window, end):
                return end
            return _Broken(end)
        size *= 2


def _cut_by_edge(error: ValueError, failed_at: int, length: int) -> bool:
    """Whether a parse failed because the text ended (rather than on a wrong character)."""
    # A literal or number cut short fails at its start, a few characters back.
    return failed_at >= length - 16 or str(error).startswith("Unterminated string")


def _ends_cleanly(window: _Window, end: int) -> bool:
    window.fill_to(end + 1)
    return end >= window.end or window.text[end - window.base] in _CLEAN_BOUNDARY


def _value_end(window: _Window, position: int) -> int:
    """End of the value at `position` by its brackets, reading as far as it goes.

    For values over the size limit: strings and brackets are followed chunk by
    chunk and the window forgets what was read, so memory stays bounded; a
    value that never closes ends with the stream.
    """
    depth = 0
    in_string = False
    index = position
    while True:
        window.fill_to(index + 1)
        if index >= window.end:
            return window.end
        text, base = window.text, window.base
        i, length = index - base, len(window.text)
        while i < length:
            if in_string:
                stop = _STRING_STOP.search(text, i)
                if stop is None:
                    i = length
                elif stop.group() == "\\":
                    i = stop.end() + 1  # the escaped character, maybe in the next chunk
                else:
                    in_string, i = False, stop.end()
                    if depth == 0:
                        return base + i
            else:
                mark = _STRUCTURE.search(text, i)
                if mark is None:
                    i = length
                    continue
                char, i = mark.group(), mark.end()
                if char == '"':
                    in_string = True
                elif char in "{[":
                    depth += 1
                else:
                    depth -= 1
                    if depth <= 0:
                        return base + i
        index = base + i
        window.release_before(min(index, window.end))


def _resynchronise(
    window: _Window,
    decoder: json.JSONDecoder,
    position: int,
    failed_at: int,
    max_record_bytes: int,
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
    # The objects the broken value's parse went through are its own (an
    # envelope missing its last `}` holds a whole `detail`): no record starts
    # there. A `{` the parse read inside a string may: a record cut inside a
    # string runs into the next one, and a stray `"` opens a string on it.
    nested = _object_openings(text, start, min(failed_at - base, search_end))
    candidate = text.find("{", start + 1, search_end)
    while candidate != -1:
        if candidate in nested:
            candidate = text.find("{", candidate + 1, search_end)
            continue
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


def _object_openings(text: str, start: int, stop: int) -> set[int]:
    """Positions of the `{` outside strings in `text[start:stop]`, lexed from `start`."""
    return {
        token.start()
        for token in _STRINGS_AND_OBJECTS.finditer(text, start, max(start, stop))
        if token.group() == "{"
    }


def _looks_like_record(value: object) -> bool:
    return isinstance(value, dict) and (
        "detail-type" in value or value.get("object") in ("event", "v2.core.event")
    )


class ObjectTooLarge(Exception):
    """A file decompresses to more than the object size limit."""


class _ChunkReader:
    """Decompressed chunks of one file; stops at the first data error and keeps it.

    Recognises gzip by its magic bytes and decompresses in bounded steps, so a
    highly compressed object never inflates in one go; concatenated gzip
    members are read one after the other. Stops after `max_object_bytes`
    (`ObjectTooLarge`, kept like a data error).
    """

    def __init__(
        self, open_file: Callable[[], BinaryIO], max_object_bytes: int = MAX_OBJECT_BYTES
    ) -> None:
        self._open_file = open_file
        self._max_object_bytes = max_object_bytes
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            with self._open_file() as raw:
                yield from _bounded(_decompressed(raw), self._max_object_bytes)
        except (*_UNREADABLE_ERRORS, ObjectTooLarge) as error:
            self.error = error


def _bounded(chunks: Iterator[bytes], max_bytes: int) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            keep = len(chunk) - (total - max_bytes)
            if keep:
                yield chunk[:keep]
            raise ObjectTooLarge(f"decompresses to more than {max_bytes} bytes")
        yield chunk


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


def _may_hold_range(path: str, earliest: datetime | None, latest: datetime | None) -> bool:
    """Whether a file's Firehose hour meets the arrival window (a file without one always may)."""
    hour = _hour_of(path)
    return hour is None or not (
        (latest is not None and hour > latest)
        or (earliest is not None and hour + timedelta(hours=1) <= earliest)
    )


class _Refused(NamedTuple):
    path: str
    reason: str
    error: str


def _local_files(source: str) -> Iterator[FileMetadata | _Refused]:
    """The files of a local source, in a stable order: a folder (whatever its
    name holds: `[`, `*`, spaces...), a file, or else a glob (Beam's syntax).

    Symbolic links are followed only where they lead inside the source (its
    real folder); each real file and folder is listed once, however many links
    lead to it. Under a glob, a refused file is reported when the glob takes
    it, a refused link to a folder when the glob may take something below it.
    """
    if os.path.isdir(source):
        root, keep = source, None
    elif os.path.lexists(source):
        # A file named as the source: the operator's own choice, link or not.
        yield from _check_file(source, os.path.realpath(source), set())
        return
    elif any(char in source for char in "*?["):
        literal = re.match(r"[^[*?]*", source)
        assert literal is not None  # the pattern matches the empty string
        root = os.path.dirname(literal.group()) or "."
        keep = re.compile(FileSystem.translate_pattern(source))
        if not os.path.isdir(root):
            return
    else:
        return
    inside = os.path.realpath(root)
    for found in _walk(root, inside, {inside}, set()):
        taken = keep is None or keep.match(found.path) is not None
        # A folder never matches a glob of files; what is below it might.
        if taken or (
            isinstance(found, _Refused)
            and os.path.isdir(found.path)
            and _may_hold_matches(source, found.path)
        ):
            yield found


def _may_hold_matches(pattern: str, folder: str) -> bool:
    """Whether the glob `pattern` may match a path below `folder`, by path segments."""
    wanted, have = pattern.split("/"), folder.split("/")
    for index, segment in enumerate(have):
        if index >= len(wanted) - 1:
            return False
        if "**" in wanted[index]:
            return True
        if not fnmatch.fnmatchcase(segment, wanted[index]):
            return False
    return True


def _walk(
    folder: str, inside: str, folders: set[str], files: set[str]
) -> Iterator[FileMetadata | _Refused]:
    # Links last, so that a file reached both ways is listed under its own path.
    entries = sorted(os.scandir(folder), key=lambda entry: (entry.is_symlink(), entry.name))
    for entry in entries:
        path = entry.path
        real = os.path.realpath(path)
        if entry.is_symlink() and real != inside and not real.startswith(inside + os.sep):
            # Never opened, so its text cannot reach a dead letter.
            yield _Refused(path, SYMLINK_OUTSIDE_SOURCE, "a symbolic link out of the source")
            continue
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            yield _Refused(path, NOT_A_REGULAR_FILE, "a symbolic link to nothing")
            continue
        if stat.S_ISDIR(mode):
            if real not in folders:
                folders.add(real)
                yield from _walk(path, inside, folders, files)
        else:
            yield from _check_file(path, real, files)


def _check_file(path: str, real: str, files: set[str]) -> Iterator[FileMetadata | _Refused]:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        yield _Refused(path, NOT_A_REGULAR_FILE, "a symbolic link to nothing")
        return
    if not stat.S_ISREG(status.st_mode):
        kind = (
            "FIFO"
            if stat.S_ISFIFO(status.st_mode)
            else "socket"
            if stat.S_ISSOCK(status.st_mode)
            else "device"
            if stat.S_ISCHR(status.st_mode) or stat.S_ISBLK(status.st_mode)
            else "special file"
        )
        yield _Refused(path, NOT_A_REGULAR_FILE, f"a {kind}, not a regular file")
    elif real not in files:
        files.add(real)
        yield FileMetadata(path, status.st_size, status.st_mtime)


class _MatchAllFn(beam.DoFn):
    """Source -> `FileMetadata` of its files (main) and `DeadLetter`s of refused files.

    Local sources are listed by `_local_files`; others (`s3://...`) by Beam's
    `FileSystems.match`, a prefix meaning everything below it.
    """

    def __init__(self) -> None:
        self._refused = {
            reason: Metrics.counter(METRICS_NAMESPACE, metrics.FILES_REFUSED_PREFIX + reason)
            for reason in (SYMLINK_OUTSIDE_SOURCE, NOT_A_REGULAR_FILE)
        }

    def process(self, source: str) -> Iterator[FileMetadata | TaggedOutput]:
        if FileSystems.get_scheme(source) is not None:
            yield from FileSystems.match([_pattern(source)])[0].metadata_list
            return
        for found in _local_files(source):
            if isinstance(found, FileMetadata):
                yield found
                continue
            self._refused[found.reason].inc()
            yield TaggedOutput(
                REFUSED_TAG,
                make_dead_letter(
                    step=READ_STEP,
                    reason=found.reason,
                    error=f"not read: {found.error}",
                    raw="",
                    source=found.path,
                ),
            )


class _PruneHoursFn(beam.DoFn):
    """Drops files whose Firehose hour cannot hold records of the arrival window."""

    def __init__(self, earliest: datetime | None, latest: datetime | None) -> None:
        self._earliest = earliest
        self._latest = latest
        self._pruned = Metrics.counter(METRICS_NAMESPACE, "files_skipped_outside_time_range")

    def process(self, metadata: FileMetadata) -> Iterator[FileMetadata]:
        if not _may_hold_range(metadata.path, self._earliest, self._latest):
            self._pruned.inc()
            return
        PROGRESS.file_matched(metadata.size_in_bytes)
        yield metadata


class _ReadFileFn(beam.DoFn):
    """`ReadableFile` -> `SourceRecord`s (main) and read `DeadLetter`s (tagged).

    Holds at most one file's window (see `split_records`) at a time. A record
    over the size limit is dead-lettered here (`record_too_large`, counted as
    read and dead-lettered, as `DecodeEvents` counts the others), since only
    its head is kept.
    """

    def __init__(self, max_object_bytes: int) -> None:
        self._max_object_bytes = max_object_bytes
        self._files_read = Metrics.counter(METRICS_NAMESPACE, "files_read")
        self._unreadable = Metrics.counter(METRICS_NAMESPACE, metrics.FILES_UNREADABLE)
        self._too_large = Metrics.counter(METRICS_NAMESPACE, metrics.FILES_TOO_LARGE)
        self._records_read = Metrics.counter(METRICS_NAMESPACE, metrics.RECORDS_READ)
        self._records_too_large = Metrics.counter(
            METRICS_NAMESPACE, metrics.DEAD_LETTERED_PREFIX + RECORD_TOO_LARGE
        )

    def process(self, file: fileio.ReadableFile) -> Iterator[SourceRecord | TaggedOutput]:
        path = file.metadata.path
        self._files_read.inc()
        # Gzip is detected from the bytes, so Beam must not decompress by suffix.
        reader = _ChunkReader(
            lambda: file.open(compression_type=CompressionTypes.UNCOMPRESSED),
            self._max_object_bytes,
        )
        position = 0
        tail = b""
        uncounted = 0
        for span in split_records(reader):
            position = span.offset + span.length
            if reader.error is not None and not span.decodable and span.reaches_end:
                # The stretch cut short by the read error belongs with that error.
                position, tail = span.offset, span.data
                break
            if span.too_large:
                self._records_read.inc()
                self._records_too_large.inc()
                yield TaggedOutput(
                    READ_DEAD_LETTERS_TAG,
                    make_dead_letter(
                        step=READ_STEP,
                        reason=RECORD_TOO_LARGE,
                        error=f"{span.length} bytes, over the {MAX_RECORD_BYTES} byte limit"
                        f" (raw: the first {len(span.data)})",
                        raw=span.data.decode("utf-8", errors="replace"),
                        source=f"{path}@{span.offset}",
                        event_id=_first_event_id(span.data),
                    ),
                )
                uncounted += 1
                continue
            # Undecodable spans go on as records too: DecodeEvents dead-letters
            # them as invalid_json with their text, file and offset.
            yield SourceRecord(data=span.data, source=f"{path}@{span.offset}", parsed=span.parsed)
            uncounted += 1
            if uncounted >= RECORDS_PER_UPDATE:
                PROGRESS.records(uncounted)
                uncounted = 0
        PROGRESS.file_read(file.metadata.size_in_bytes, uncounted)
        if reader.error is not None:
            too_large = isinstance(reader.error, ObjectTooLarge)
            (self._too_large if too_large else self._unreadable).inc()
            yield TaggedOutput(
                READ_DEAD_LETTERS_TAG,
                make_dead_letter(
                    step=READ_STEP,
                    reason=OBJECT_TOO_LARGE if too_large else UNREADABLE_FILE,
                    error=f"{type(reader.error).__name__}: {reader.error}",
                    raw=tail.decode("utf-8", errors="replace"),
                    source=f"{path}@{position}",
                ),
            )


def _first_event_id(head: bytes) -> str | None:
    """The first Stripe event id a record's head names (a snapshot's or a `detail`'s)."""
    found = _EVENT_ID.search(head)
    return found.group(1).decode() if found else None


def parse_archive_source(source: str) -> tuple[str, int] | None:
    """`<file>@<offset>` (a `SourceRecord.source` of the archive) -> (file, offset), else None."""
    path, at, offset = source.rpartition("@")
    if not at or not path or not offset.isdigit() or path.startswith("kinesis:"):
        return None
    return path, int(offset)


def read_record_at(path: str, offset: int) -> bytes | None:
    """The bytes of the one record that starts at `offset` of the decompressed file.

    Reads the file again the way `ReadArchive` split it (`split_records`), up
    to the record, so the offset means what it meant in the dead letter.
    None when no record starts there or the file cannot be read to it (gone,
    corrupt); errors that say nothing about the file (network, permissions)
    propagate, as in `ReadArchive`.
    """
    reader = _ChunkReader(
        lambda: FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    )
    for span in split_records(reader):
        if span.offset == offset:
            return span.data
        if span.offset > offset:
            return None
    return None


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


class _ReadKeyedFactsFn(beam.DoFn):
    """`ReadableFile` -> `key_facts` of its events in the range (main) and every
    dead letter of reading, decoding and keying them (tagged `READ_DEAD_LETTERS_TAG`).

    ReadRecords, DecodeEvents, KeepCreatedInRange and the caller's `key_facts`
    in one step, by calling those steps' own DoFns in turn on each record: the
    same rules, counters and progress updates, with one Beam element per fact
    instead of one per record per step (Beam's per-element cost was about a
    third of the backfill's). No per-record event timestamps: only the bounded
    path uses it, which groups everything at once.
    """

    def __init__(
        self,
        max_object_bytes: int,
        start: datetime | None,
        end: datetime | None,
        key_facts: Callable[[StripeEvent], Iterable[object]],
    ) -> None:
        self._read = _ReadFileFn(max_object_bytes)
        self._decode = _DecodeRecordFn()
        self._keep = _KeepCreatedInRangeFn(start, end)
        self._key_facts = key_facts

    def process(self, file: fileio.ReadableFile) -> Iterator[object]:
        for record in self._read.process(file):
            if isinstance(record, TaggedOutput):
                yield record
                continue
            decoded = self._decode.decoded(record)
            if isinstance(decoded, DeadLetter):
                yield TaggedOutput(READ_DEAD_LETTERS_TAG, decoded)
                continue
            for event in self._keep.process(decoded):
                for keyed in self._key_facts(event):
                    if isinstance(keyed, TaggedOutput):
                        yield TaggedOutput(READ_DEAD_LETTERS_TAG, keyed.value)
                    else:
                        yield keyed


class _MatchFiles(beam.PTransform):
    """Lists the source with stable step labels: PBegin -> `FileMetadata` of the
    files to read (tag `FILES_TAG`) and `DeadLetter`s of refused ones (`REFUSED_TAG`).

    Not `fileio.MatchFiles`: that one starts from `beam.Create([pattern])`,
    whose inner step is named after a lambda's line in Beam's source, and its
    local listing neither enters linked folders nor tells a FIFO from a file,
    nor takes a folder named `arch[1]` literally.
    """

    def __init__(self, source: str) -> None:
        super().__init__()
        self._source = source

    def expand(self, begin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        source = self._source
        return (
            begin
            | "Start" >> beam.Impulse()
            | "ToPattern" >> beam.Map(lambda _: source)
            | "MatchAll" >> beam.ParDo(_MatchAllFn()).with_outputs(REFUSED_TAG, main=FILES_TAG)
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
    file, the offset where reading stopped and the unfinished text). Also of
    step `read`: `record_too_large` (one per record over `MAX_RECORD_BYTES`,
    raw its first `TOO_LARGE_RAW_BYTES`; a record, counted read and
    dead-lettered), `object_too_large` (a file that decompresses past
    `max_object_bytes`, `MAX_OBJECT_BYTES` by default: read up to there, then
    like `unreadable_file`), and, from the listing of a local source,
    `symlink_outside_source` and `not_a_regular_file` (never opened, so no
    text: the file's path is the `source`). Errors that say nothing about the
    file's bytes (network, permissions) fail the bundle instead, so the runner
    retries it; Beam's S3 client has already retried each request by then.

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
    prefix is read recursively (`<source>/**`). A local path that exists is a
    folder or file whatever characters its name holds (`arch[1]`); only one
    that does not is a glob. Locally, links are followed only where they lead
    inside the source's real folder, each real file is read once, and
    anything but a regular file is refused (see `dead_letters`). S3 endpoint and credentials
    come from the pipeline's S3 options or the standard AWS configuration
    (see the module docstring). Files are read one at a time per worker
    thread, each with bounded memory; a Reshuffle after listing spreads the
    files across workers.

    Progress: each file listed and each file read (with its records, in steps
    of `RECORDS_PER_UPDATE`) is added to `transforms.sources.progress.PROGRESS`,
    which the local launcher prints while the job runs.

    Counters (namespace `stripe_events`): `files_read`,
    `files_skipped_outside_time_range`, `files_unreadable`, `files_too_large`
    and `files_refused_<reason>` (files, not records: outside the records
    identity, and a failed run), `skipped_outside_time_range`,
    DecodeEvents' `records_read` and `dead_lettered_<reason>`, and the same
    two for records over the size limit (`dead_lettered_record_too_large`).

    `key_facts` (the backfill passes `ProcessStripeEvents.key_facts()`): when
    given, each event in the range goes through it inside the read step, and
    `events` holds its outputs, `(join key, fact)`, untimestamped, for
    `ProcessStripeEvents.of_keyed_facts()`; its dead letters (and counters)
    join the others. The same steps run, in one Beam step per file
    (`_ReadKeyedFactsFn`).
    """

    def __init__(
        self,
        source: str,
        start: datetime | None = None,
        end: datetime | None = None,
        arrival_margin_before: timedelta = timedelta(hours=1),
        arrival_margin_after: timedelta = timedelta(days=3),
        max_object_bytes: int = MAX_OBJECT_BYTES,
        key_facts: Callable[[StripeEvent], Iterable[object]] | None = None,
    ) -> None:
        super().__init__()
        self._key_facts = key_facts
        for name, bound in (("start", start), ("end", end)):
            if bound is not None and bound.utcoffset() is None:
                raise ValueError(f"ReadArchive: {name} must be timezone-aware, got {bound!r}")
        if start is not None and end is not None and start >= end:
            raise ValueError(f"ReadArchive: start {start} must be before end {end}")
        if arrival_margin_before < timedelta(0) or arrival_margin_after < timedelta(0):
            raise ValueError("ReadArchive: arrival margins must not be negative")
        self._max_object_bytes = max_object_bytes
        self._source = source
        self._start = start
        self._end = end
        self._earliest_arrival = None if start is None else start - arrival_margin_before
        self._latest_arrival = None if end is None else end + arrival_margin_after

    def expand(self, begin: beam.pvalue.PBegin) -> DecodeResult:
        listed = begin | "MatchArchiveFiles" >> _MatchFiles(self._source)
        files = (
            listed[FILES_TAG]
            | "PruneHoursOutsideRange"
            >> beam.ParDo(_PruneHoursFn(self._earliest_arrival, self._latest_arrival))
            # Listing happens on one worker; spread the files before the heavy reads.
            | "SpreadFiles" >> beam.Reshuffle()
            | "OpenFiles" >> fileio.ReadMatches()
        )
        if self._key_facts is not None:
            fused = files | "ReadKeyedFacts" >> beam.ParDo(
                _ReadKeyedFactsFn(self._max_object_bytes, self._start, self._end, self._key_facts)
            ).with_outputs(READ_DEAD_LETTERS_TAG, main=RECORDS_TAG)
            letters: beam.PCollection[DeadLetter] = (
                listed[REFUSED_TAG],
                fused[READ_DEAD_LETTERS_TAG],
            ) | "MergeDeadLetters" >> beam.Flatten()
            return DecodeResult(events=fused[RECORDS_TAG], dead_letters=letters)
        read = files | "ReadRecords" >> beam.ParDo(
            _ReadFileFn(self._max_object_bytes)
        ).with_outputs(READ_DEAD_LETTERS_TAG, main=RECORDS_TAG)
        decoded = read[RECORDS_TAG] | "DecodeEvents" >> DecodeEvents()
        events = decoded.events | "KeepCreatedInRange" >> beam.ParDo(
            _KeepCreatedInRangeFn(self._start, self._end)
        )
        dead_letters: beam.PCollection[DeadLetter] = (
            listed[REFUSED_TAG],
            read[READ_DEAD_LETTERS_TAG],
            decoded.dead_letters,
        ) | "MergeDeadLetters" >> beam.Flatten()
        return DecodeResult(events=events, dead_letters=dead_letters)


_ALLOW_EMPTY_HINT = "check --source and the range, or pass --allow_empty to run on nothing"


def check_archive(
    source: str,
    start: datetime | None = None,
    end: datetime | None = None,
    arrival_margin_before: timedelta = timedelta(hours=1),
    arrival_margin_after: timedelta = timedelta(days=3),
    *,
    allow_empty: bool = False,
    s3_client: Any | None = None,
) -> None:
    """Before launch: `source` exists and holds at least one file `ReadArchive` would read.

    Raises ValueError for an empty `source` (it would mean the whole
    filesystem), `ConfigurationError` for a folder, bucket or prefix that does
    not exist or cannot be listed, and, unless `allow_empty`, for one whose
    files all lie outside the range (by their Firehose hour folder, with the
    arrival margins, as `ReadArchive` prunes them). An S3 prefix is listed with
    `s3_client` (boto3; the backfill gives one with Beam's S3 options and
    bounded timeouts), stopping at the first file in range; a glob is matched
    by Beam's `FileSystems`, as the job will.
    """
    if not source.strip():
        raise ValueError("--source must not be empty: give a folder, a glob or s3://bucket/prefix")
    earliest = None if start is None else start - arrival_margin_before
    latest = None if end is None else end + arrival_margin_after
    glob = any(char in source for char in "*?[")
    if source.startswith("s3://") and not glob:
        found, in_range = _s3_files(source, earliest, latest, s3_client)
    else:
        local = FileSystems.get_scheme(source) is None
        if local and not os.path.lexists(source) and not glob:
            raise ConfigurationError(
                f"--source {source} does not exist: give the archive's folder, a glob or "
                "s3://bucket/prefix"
            )
        # Listed exactly as `ReadArchive` will list it (refused files do not count).
        listed = (
            _local_files(source)
            if local
            else iter(FileSystems.match([_pattern(source)])[0].metadata_list)
        )
        paths = [item.path for item in listed if isinstance(item, FileMetadata)]
        found = len(paths)
        in_range = sum(1 for path in paths if _may_hold_range(path, earliest, latest))
    if in_range or allow_empty:
        return
    if not found:
        raise ConfigurationError(f"--source {source} holds no files: {_ALLOW_EMPTY_HINT}")
    window = f"{earliest:%Y-%m-%dT%H}h" if earliest else "the start"
    window += f" to {latest:%Y-%m-%dT%H}h" if latest else " to the end"
    raise ConfigurationError(
        f"--source {source} holds {found} files but none filed from {window} "
        f"(--start/--end with the arrival margins): {_ALLOW_EMPTY_HINT}"
    )


def _s3_files(
    source: str, earliest: datetime | None, latest: datetime | None, client: Any | None
) -> tuple[int, int]:
    """(objects listed, objects in range) under an S3 prefix, stopping at the first in range."""
    bucket, _, prefix = source[len("s3://") :].partition("/")
    # As `_pattern`: a prefix is a folder, so `stripe` does not take in `stripe-old/`.
    prefix = prefix.rstrip("/") + "/" if prefix.rstrip("/") else ""
    client = client or archive_s3_client()
    found = 0
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                found += 1
                if _may_hold_range(f"s3://{bucket}/{item['Key']}", earliest, latest):
                    return found, 1
    except botocore.exceptions.ClientError as error:
        if error_code(error) == "NoSuchBucket":
            raise ConfigurationError(
                f"--source {source}: the S3 bucket {bucket!r} does not exist"
            ) from None
        raise ConfigurationError(
            f"--source {source} cannot be listed: {describe_error(error)}"
        ) from None
    except botocore.exceptions.BotoCoreError as error:
        raise ConfigurationError(
            f"--source {source} cannot be listed: {describe_error(error)} (check "
            "--s3_endpoint_url or AWS_ENDPOINT_URL, the region and the credentials)"
        ) from None
    return found, 0


def archive_s3_client(**arguments: Any) -> Any:
    """A boto3 S3 client with bounded timeouts and retries; `arguments` as `Session.client`'s."""
    return boto3.session.Session().client("s3", config=RETRYING_CLIENT_CONFIG, **arguments)
