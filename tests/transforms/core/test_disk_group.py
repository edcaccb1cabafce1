"""GroupByKeyOnDisk: the same groups as GroupByKey, from sorted runs on disk."""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import FixedWindows

from tests.builders import T0, charge_fact, session_fact
from tests.transforms.core.test_leftovers import dead_pid
from transforms.core.disk_group import GroupByKeyOnDisk, grouped, merge_runs, read_run, write_run
from transforms.core.fact_codec import decode_fact, encode_fact
from transforms.core.leftovers import run_tag


def pairs_of(run: Path) -> list[tuple[str, Any]]:
    with run.open("rb") as file:
        return [(key, pickle.loads(blob)) for key, blob in read_run(file)]


def write_pairs(path: Path, pairs: list[tuple[str, Any]]) -> str:
    write_run(str(path), [(key, pickle.dumps(value)) for key, value in sorted(pairs)])
    return str(path)


def test_a_run_reads_back_what_was_written_across_chunks(tmp_path: Path) -> None:
    pairs = [(f"k{index:05d}", {"n": index}) for index in range(2_500)]

    write_pairs(tmp_path / "a.run", pairs)

    assert pairs_of(tmp_path / "a.run") == pairs


def test_an_empty_run_reads_back_empty(tmp_path: Path) -> None:
    write_run(str(tmp_path / "a.run"), [])

    assert pairs_of(tmp_path / "a.run") == []


@pytest.mark.parametrize(
    ("runs", "fan_in", "left"),
    [(1, 2, 1), (2, 2, 2), (3, 2, 2), (5, 2, 2), (9, 3, 3), (4, 64, 4)],
    ids=["one", "two-at-fan-in", "three", "five-two-passes", "nine-by-three", "under-fan-in"],
)
def test_merge_passes_leave_at_most_fan_in_runs_in_key_order(
    tmp_path: Path, runs: int, fan_in: int, left: int
) -> None:
    every_pair = []
    paths = []
    for run in range(runs):
        pairs = [(f"key{(run * 7 + step) % 11:02d}", (run, step)) for step in range(6)]
        every_pair.extend(pairs)
        paths.append(write_pairs(tmp_path / f"{run}.run", pairs))

    final = merge_runs(paths, str(tmp_path), fan_in)

    assert len(final) == left
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(path) for path in final)
    merged = [pair for path in final for pair in pairs_of(Path(path))]
    assert sorted(merged) == sorted(every_pair)
    for path in final:
        keys = [key for key, _ in pairs_of(Path(path))]
        assert keys == sorted(keys)


def test_grouped_yields_each_key_once_with_all_its_values(tmp_path: Path) -> None:
    first = write_pairs(tmp_path / "1.run", [("a", 1), ("c", 2), ("c", 3)])
    second = write_pairs(tmp_path / "2.run", [("b", 4), ("c", 5), ("d", 6)])

    with contextlib.ExitStack() as stack:
        groups = [(key, sorted(values)) for key, values in grouped([first, second], stack)]

    assert groups == [("a", [1]), ("b", [4]), ("c", [2, 3, 5]), ("d", [6])]


@pytest.mark.parametrize("fan_in", [2, 64], ids=["many-passes", "one-pass"])
def test_groups_equal_group_by_key_and_leave_no_file(tmp_path: Path, fan_in: int) -> None:
    # A value has a dict and a set: not comparable, so only keys may be sorted.
    elements = [(f"payment_intent:pi_{n % 37:03d}", {"n": n, "tags": {n % 3}}) for n in range(600)]
    expected: dict[str, list[dict[str, Any]]] = {}
    for key, value in elements:
        expected.setdefault(key, []).append(value)

    with beam.Pipeline(runner=FnApiRunner()) as p:
        groups = (
            p
            | beam.Create(elements)
            # ~100 bytes per run: dozens of runs, so several merge passes at fan-in 2.
            | GroupByKeyOnDisk(str(tmp_path), run_bytes=100, fan_in=fan_in)
            | beam.MapTuple(lambda key, values: (key, sorted(values, key=lambda v: v["n"])))
        )
        assert_that(groups, equal_to(sorted(expected.items())))

    assert list(tmp_path.iterdir()) == []


def test_values_go_through_the_given_encoding(tmp_path: Path) -> None:
    facts: list[Any] = [session_fact(f"evt_s{n}", created=T0 + n) for n in range(40)]
    facts += [charge_fact(f"evt_c{n}", created=T0 + n) for n in range(40)]
    elements = [(f"payment_intent:pi_{n % 7}", fact) for n, fact in enumerate(facts)]
    expected: dict[str, list[Any]] = {}
    for key, value in elements:
        expected.setdefault(key, []).append(value)

    with beam.Pipeline(runner=FnApiRunner()) as p:
        groups = (
            p
            | beam.Create(elements)
            # A marker byte: neither pickle alone nor the codec alone reads these bytes.
            | GroupByKeyOnDisk(
                str(tmp_path),
                run_bytes=2_000,
                encode=lambda value: b"X" + encode_fact(value),
                decode=lambda data: decode_fact(data[1:]) if data[:1] == b"X" else None,
            )
            | beam.MapTuple(
                lambda key, values: (key, sorted(values, key=lambda f: f.meta.event_id))
            )
        )
        assert_that(
            groups,
            equal_to(
                [(k, sorted(v, key=lambda f: f.meta.event_id)) for k, v in sorted(expected.items())]
            ),
        )

    assert list(tmp_path.iterdir()) == []


def test_empty_input_yields_nothing_and_leaves_no_file(tmp_path: Path) -> None:
    with beam.Pipeline(runner=FnApiRunner()) as p:
        groups = p | beam.Create([("k", 1)]) | beam.Filter(lambda _: False)
        assert_that(groups | GroupByKeyOnDisk(str(tmp_path)), equal_to([]))

    assert list(tmp_path.iterdir()) == []


def test_a_key_that_is_not_text_fails_the_run(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="GroupByKeyOnDisk needs str keys, got int"):  # noqa: SIM117
        with beam.Pipeline(runner=FnApiRunner()) as p:
            _ = p | beam.Create([(1, "a")]) | GroupByKeyOnDisk(str(tmp_path))


def test_windowed_input_is_refused_at_construction(tmp_path: Path) -> None:
    p = beam.Pipeline(runner=FnApiRunner())
    windowed = p | beam.Create([("k", 1)]) | beam.WindowInto(FixedWindows(60))

    with pytest.raises(ValueError, match="needs the global window"):
        _ = windowed | GroupByKeyOnDisk(str(tmp_path))


def test_unbounded_input_is_refused_at_construction(tmp_path: Path) -> None:
    p = BeamTestPipeline(options=PipelineOptions(streaming=True))
    unbounded = p | EventStream().add_elements([("k", 1)])

    with pytest.raises(ValueError, match="needs a bounded input"):
        _ = unbounded | GroupByKeyOnDisk(str(tmp_path))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"run_bytes": 0}, "run_bytes must be positive, got 0"),
        ({"fan_in": 1}, "fan_in must be at least 2, got 1"),
    ],
    ids=["run-bytes", "fan-in"],
)
def test_bad_bounds_are_refused(tmp_path: Path, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GroupByKeyOnDisk(str(tmp_path), **arguments)


def test_a_killed_runs_folder_is_removed_at_the_next_start_and_a_live_runs_kept(
    tmp_path: Path,
) -> None:
    killed = tmp_path / f"group-{run_tag(dead_pid())}"
    live = tmp_path / f"group-{run_tag(os.getppid())}"
    for folder in (killed, live):
        folder.mkdir()
        write_pairs(folder / "0123.run", [("k", 1)])

    with beam.Pipeline(runner=FnApiRunner()) as p:
        groups = p | beam.Create([("k", 2)]) | GroupByKeyOnDisk(str(tmp_path))
        assert_that(groups, equal_to([("k", [2])]))

    assert sorted(tmp_path.rglob("*")) == [live, live / "0123.run"]
