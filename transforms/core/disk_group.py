"""GroupByKeyOnDisk: a GroupByKey for bounded input whose memory does not grow with it.

    pairs | "GroupByPayment" >> GroupByKeyOnDisk("/tmp")  # (str, V) -> (str, [V, ...])

Why it exists: the local FnApiRunner keeps the whole input of a GroupByKey in
memory until the stage after it runs, so a local backfill's memory grew with
the archive. Dataflow's shuffle spills to disk by itself; this transform is for
the local runners, whose workers share one filesystem.

How it works (an external merge sort):

1. WriteSortedRuns, fused with the step before it: each bundle encodes the
   values it receives (`encode`, default pickle) and, every `run_bytes` of
   them, sorts its pairs by key and writes them to a run file
   `<directory>/group-<tag>/<uuid>.run`. Only the file's path leaves the
   bundle.
2. GatherRuns: the paths of every bundle meet in one list.
3. MergeRuns: merges the runs by key (in passes of at most `fan_in` files, so
   open files stay bounded), yields one `(key, [values])` per key in key order,
   then deletes the folder.

Memory: one bundle's run buffer, one chunk of `_CHUNK_PAIRS` pairs per open
run and the values of one key, whatever the input size. Disk: about the
encoded size of the input (twice during an intermediate pass); for the
backfill's facts, about 360 bytes per value pickled, 210 with the fact codec.

Contract: bounded input in the global window (ValueError at construction
otherwise); keys are `str` (TypeError otherwise, since keys of different types
do not sort); values must be picklable, or whatever `encode` takes (`decode`
must give them back equal; the backfill passes `transforms.core.fact_codec`).
Output: `(key, list of values)` once per distinct key, the values in no
particular order, in the global window.
Delivery: as GroupByKey within one run. A retried bundle's first runs are never
read (their paths were never emitted) and go with the folder.

Leftovers: `<tag>` names the launching process (`transforms.core.leftovers`);
a killed run never deletes its folder, so each new `GroupByKeyOnDisk` removes,
when the pipeline is built, the `group-<tag>` folders in `directory` whose
process is gone, and never a live run's.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import pickle
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any, BinaryIO

import apache_beam as beam
from apache_beam.pvalue import PCollection
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from transforms.core.leftovers import remove_stale, run_tag

#: Pickled value bytes a bundle buffers before it writes a sorted run.
DEFAULT_RUN_BYTES = 32 * 1024 * 1024
#: Run files merged at once; more runs are merged in several passes.
DEFAULT_FAN_IN = 64
# Pairs pickled together in a run file: fewer, larger pickle calls, but a
# merge holds one chunk per open run, so not too many.
_CHUNK_PAIRS = 200
_RUN_SUFFIX = ".run"
_FOLDER_PREFIX = "group-"

_Pair = tuple[str, bytes]
_first = itemgetter(0)
Encode = Callable[[Any], bytes]
Decode = Callable[[bytes], Any]


def _pickled(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def write_run(path: str, pairs: Iterable[_Pair]) -> None:
    """Writes `(key, pickled value)` pairs, already in key order, as one run file."""
    remaining = iter(pairs)
    with open(path, "wb") as run:
        while chunk := list(itertools.islice(remaining, _CHUNK_PAIRS)):
            pickle.dump(chunk, run, protocol=pickle.HIGHEST_PROTOCOL)


def read_run(run: BinaryIO) -> Iterator[_Pair]:
    """The pairs of one run file, in the order written."""
    while True:
        try:
            chunk = pickle.load(run)
        except EOFError:
            return
        yield from chunk


def merged_pairs(paths: Sequence[str], stack: contextlib.ExitStack) -> Iterator[_Pair]:
    """The pairs of every run, in key order (files closed with `stack`)."""
    files = [stack.enter_context(open(path, "rb")) for path in paths]  # noqa: SIM115 (stack closes)
    runs = [read_run(file) for file in files]
    return heapq.merge(*runs, key=_first)


def merge_runs(paths: Sequence[str], folder: str, fan_in: int) -> list[str]:
    """Merges runs in passes until at most `fan_in` remain; returns their paths.

    Each pass replaces every `fan_in` runs by one, so no pass opens more than
    `fan_in` files; the merged inputs are deleted as soon as they are merged.
    """
    if fan_in < 2:
        raise ValueError(f"fan_in must be at least 2, got {fan_in}")
    remaining = list(paths)
    while len(remaining) > fan_in:
        merged = []
        for start in range(0, len(remaining), fan_in):
            batch = remaining[start : start + fan_in]
            path = os.path.join(folder, uuid.uuid4().hex + _RUN_SUFFIX)
            with contextlib.ExitStack() as stack:
                write_run(path, merged_pairs(batch, stack))
            for done in batch:
                os.remove(done)
            merged.append(path)
        remaining = merged
    return remaining


def grouped(
    paths: Sequence[str], stack: contextlib.ExitStack, decode: Decode = pickle.loads
) -> Iterator[tuple[str, list[Any]]]:
    """(key, [values]) for every key of the runs, in key order."""
    for key, pairs in itertools.groupby(merged_pairs(paths, stack), key=_first):
        yield key, [decode(blob) for _, blob in pairs]


class _WriteSortedRunsFn(beam.DoFn):
    """(str, value) -> nothing per element; at the end of each bundle, its run paths."""

    def __init__(self, folder: str, run_bytes: int, encode: Encode) -> None:
        self._folder = folder
        self._run_bytes = run_bytes
        self._encode = encode
        self._pairs: list[_Pair] = []
        self._buffered = 0
        self._runs: list[str] = []

    def setup(self) -> None:
        os.makedirs(self._folder, exist_ok=True)

    def start_bundle(self) -> None:
        self._pairs = []
        self._buffered = 0
        self._runs = []

    def process(self, element: tuple[str, Any]) -> None:
        key, value = element
        if not isinstance(key, str):
            raise TypeError(f"GroupByKeyOnDisk needs str keys, got {type(key).__name__}")
        blob = self._encode(value)
        self._pairs.append((key, blob))
        self._buffered += len(blob) + len(key)
        if self._buffered >= self._run_bytes:
            self._write()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if self._pairs:
            self._write()
        for path in self._runs:
            yield WindowedValue(path, GlobalWindow().max_timestamp(), (GlobalWindow(),))
        self._runs = []

    def _write(self) -> None:
        # Stable sort on the key only: values need not be comparable.
        self._pairs.sort(key=_first)
        path = os.path.join(self._folder, uuid.uuid4().hex + _RUN_SUFFIX)
        write_run(path, self._pairs)
        self._runs.append(path)
        self._pairs = []
        self._buffered = 0


class _MergeRunsFn(beam.DoFn):
    """[run path] -> (key, [values]) per key, in key order; then removes the folder."""

    def __init__(self, folder: str, fan_in: int, decode: Decode) -> None:
        self._folder = folder
        self._fan_in = fan_in
        self._decode = decode

    def process(self, paths: list[str]) -> Iterator[tuple[str, list[Any]]]:
        if paths:
            final = merge_runs(sorted(paths), self._folder, self._fan_in)
            with contextlib.ExitStack() as stack:
                yield from grouped(final, stack, self._decode)
        # Every bundle that wrote runs has finished (their paths are all here),
        # so whatever is left in the folder is a retried bundle's orphan.
        shutil.rmtree(self._folder, ignore_errors=True)


class GroupByKeyOnDisk(beam.PTransform):
    """PCollection[(str, V)] (bounded, global window) -> PCollection[(str, list[V])].

    `directory`: where a `group-<tag>` folder of run files is made and, once
    merged, removed; every worker must see the same filesystem. Folders of
    killed runs there are removed when the pipeline is built (see the module
    doc).
    `run_bytes`, `fan_in`: memory and open-file bounds (see the module doc).
    `encode`, `decode`: how a value is stored in a run file and read back
    (default: pickle).
    """

    def __init__(
        self,
        directory: str,
        *,
        run_bytes: int = DEFAULT_RUN_BYTES,
        fan_in: int = DEFAULT_FAN_IN,
        encode: Encode = _pickled,
        decode: Decode = pickle.loads,
    ) -> None:
        super().__init__()
        if run_bytes < 1:
            raise ValueError(f"run_bytes must be positive, got {run_bytes}")
        if fan_in < 2:
            raise ValueError(f"fan_in must be at least 2, got {fan_in}")
        self._directory = directory
        self._run_bytes = run_bytes
        self._fan_in = fan_in
        self._encode = encode
        self._decode = decode

    def expand(self, pairs: PCollection) -> PCollection:
        if not pairs.is_bounded:
            raise ValueError("GroupByKeyOnDisk needs a bounded input; use GroupByKey")
        if not isinstance(pairs.windowing.windowfn, GlobalWindows):
            raise ValueError("GroupByKeyOnDisk needs the global window; use GroupByKey")
        remove_stale(self._directory, _FOLDER_PREFIX)
        folder = os.path.join(self._directory, _FOLDER_PREFIX + run_tag())
        return (
            pairs
            | "WriteSortedRuns"
            >> beam.ParDo(_WriteSortedRunsFn(folder, self._run_bytes, self._encode))
            | "GatherRuns" >> beam.combiners.ToList()
            | "MergeRuns" >> beam.ParDo(_MergeRunsFn(folder, self._fan_in, self._decode))
        )
