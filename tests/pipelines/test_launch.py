"""What both jobs share at launch: flags nobody defines are refused with the closest one."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TypeOptions
from apache_beam.runners.runner import PipelineResult

from pipelines import backfill, reconcile, redrive, streaming
from pipelines.flags import unknown_flags
from pipelines.history import start_run
from pipelines.launch import (
    JobOptions,
    beam_leftovers,
    known_flags,
    parse_options,
    record_submitted,
)
from pipelines.options import SinkOptions
from transforms.sinks.run_history import recent_runs


def _usage_error(
    run: Callable[[list[str]], object], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> str:
    """What `run(argv)` writes on stderr; it must stop with exit 2, a usage error."""
    with pytest.raises(SystemExit) as raised:
        run(argv)
    assert raised.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("job", "argv", "message"),
    [
        (
            backfill,
            ["--warehose", "x.duckdb"],
            "unrecognized flag --warehose (did you mean --warehouse?)",
        ),
        (backfill, ["--sorce=/tmp/a"], "unrecognized flag --sorce (did you mean --source?)"),
        (
            streaming,
            ["--kinesis_steam", "s"],
            "unrecognized flag --kinesis_steam (did you mean --kinesis_stream?)",
        ),
        (backfill, ["--zzzzzz"], "unrecognized flag --zzzzzz\n"),
    ],
    ids=["backfill-typo", "typo-with-equals", "streaming-typo", "nothing-close"],
)
def test_an_unknown_flag_exits_2_naming_the_closest_known_one(
    job: ModuleType, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(job.run, argv, capsys)
    assert err.endswith(f"error: {message}" if message.endswith("\n") else f"error: {message}\n")


@pytest.mark.parametrize(
    ("job", "argv", "flag", "meant"),
    [
        (backfill, ["--no_messag"], "--no_messag", "--no_messages"),
        (backfill, ["--sourc", "/nonexistent"], "--sourc", "--source"),
        (backfill, ["--stripe_mod", "test"], "--stripe_mod", "--stripe_mode"),
        (backfill, ["--warehouse=w.duckdb", "--allow_empt"], "--allow_empt", "--allow_empty"),
        (backfill, ["--runne", "DataflowRunner"], "--runne", "--runner"),
        (backfill, ["--s3_secret_access_k", "X"], "--s3_secret_access_k", "--s3_secret_access_key"),
        (backfill, ["-sourc", "/nonexistent"], "-sourc", "--source"),
        (streaming, ["--kinesis_str", "s"], "--kinesis_str", "--kinesis_stream"),
        (streaming, ["--stream=true"], "--stream", "--streaming"),
        (redrive, ["--warehous", "w.duckdb"], "--warehous", "--warehouse"),
        (redrive, ["--dry_ru"], "--dry_ru", "--dry_run"),
        (reconcile, ["--sourc", "/nonexistent"], "--sourc", "--source"),
    ],
    ids=[
        "backfill-switch",
        "backfill-source",
        "backfill-value",
        "after-a-good-flag",
        "beams-flag",
        "beams-secret-flag",
        "single-dash",
        "streaming",
        "streaming-beams-switch",
        "redrive",
        "redrive-dry-run",
        "reconcile",
    ],
)
def test_an_abbreviated_flag_is_refused_with_exit_2_naming_the_flag_meant(
    job: ModuleType,
    argv: list[str],
    flag: str,
    meant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Beam takes no abbreviation: one our parser took would be dropped, and the run go on.
    monkeypatch.chdir(tmp_path)
    err = _usage_error(job.run, argv, capsys)
    assert err.splitlines()[-1] == (
        f"{job.PROG}: error: unrecognized flag {flag} (did you mean {meant}?)"
    )
    assert list(tmp_path.iterdir()) == []


def test_beams_own_flags_and_their_values_are_known() -> None:
    known = known_flags()
    argv = ["--runner", "DataflowRunner", "--project", "p", "--region=europe-west1",
            "--temp_location", "gs://b/tmp", "--setup_file", "./setup.py", "--dry_run=True",
            "--no_auth", "--experiments=use_runner_v2", "--streaming"]  # fmt: skip
    assert unknown_flags(argv, known) == []
    assert unknown_flags(["p", "--", "--project"], known) == []


@pytest.mark.parametrize(
    ("argv", "left"),
    [
        (["sample/archive"], "sample/archive"),
        (["--source", "a", "b"], "b"),
        (["--warehouse=w.duckdb", "--", "--no_messages"], "-- --no_messages"),
        (["--streaming", "true"], "true"),
    ],
    ids=["source-without-its-flag", "second-value", "after-double-dash", "value-of-a-switch"],
)
def test_an_argument_beam_would_discard_exits_2(
    argv: list[str],
    left: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _usage_error(backfill.run, argv, capsys).splitlines()[-1] == (
        f"{backfill.PROG}: error: unrecognized arguments: {left} (the jobs take only flags)"
    )
    assert list(tmp_path.iterdir()) == []


def test_beam_keeps_its_flags_switches_and_values() -> None:
    argv = ["--runner", "DataflowRunner", "--project", "p", "--region=europe-west1",
            "--streaming", "--no_auth", "--experiments=a", "--experiments", "b",
            "--s3_secret_access_key", "k", "--dry_run=True", "--save_main_session"]  # fmt: skip
    assert beam_leftovers(argv) == []


def backfill_options(argv: list[str]) -> PipelineOptions:
    return parse_options(argv, backfill.OPTION_CLASSES, prog="p", description="")


def test_job_options_make_each_view_once_and_share_its_values() -> None:
    options = backfill_options(["--warehouse", "a.duckdb", "--runner", "DirectRunner"])
    assert isinstance(options, JobOptions)
    sinks = options.view_as(SinkOptions)
    assert options.view_as(SinkOptions) is sinks
    assert sinks.warehouse == "a.duckdb"

    options.view_as(StandardOptions).runner = "FnApiRunner"

    # A view made the way Beam makes it, anew, holds the value set through the reused one.
    assert PipelineOptions.view_as(options, StandardOptions).runner == "FnApiRunner"
    assert options.get_all_options()["runner"] == "FnApiRunner"


def test_job_options_are_pickled_and_copied_without_their_views() -> None:
    options = backfill_options(["--warehouse", "a.duckdb"])
    options.view_as(TypeOptions)
    for again in (pickle.loads(pickle.dumps(options)), copy.deepcopy(options)):
        assert type(again) is JobOptions
        assert "_views" not in again.__dict__
        assert again.get_all_options() == options.get_all_options()
        assert again.view_as(SinkOptions).warehouse == "a.duckdb"


def graph_of(options: PipelineOptions) -> dict[str, Any]:
    """Each step of the backfill's graph: its kind, inputs and outputs, and each output's coder."""
    pipeline = beam.Pipeline(options=options)
    backfill.build(pipeline, options)
    proto = pipeline.to_runner_api()
    collections = proto.components.pcollections
    return {
        step.unique_name: (
            step.spec.urn,
            sorted(step.inputs.values()),
            sorted((tag, collections[name].coder_id) for tag, name in step.outputs.items()),
        )
        for step in proto.components.transforms.values()
    }


def test_the_backfill_builds_the_same_graph_with_job_options_as_with_beams(
    tmp_path: Path,
) -> None:
    argv = ["--warehouse", str(tmp_path / "w.duckdb"), "--shuffle_dir", str(tmp_path)]

    reused = graph_of(backfill_options(argv))

    assert len(reused) > 50
    assert reused == graph_of(PipelineOptions(argv))


@pytest.mark.parametrize(
    ("flags", "recorded"),
    [
        (["--dry_run=True"], []),
        ([], [(None, None, None, None)]),
    ],
    ids=["dry-run-submits-nothing", "another-runner-has-no-job-id"],
)
def test_a_submission_without_a_dataflow_job(
    flags: list[str],
    recorded: list[tuple[object, ...]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    warehouse = tmp_path / "w.duckdb"
    options = PipelineOptions(["--runner", "PortableRunner", "--warehouse", str(warehouse), *flags])
    run = start_run(
        "streaming", ["--runner", "PortableRunner"], runner="PortableRunner", source="s"
    )

    record_submitted(
        run, options.view_as(SinkOptions).sink_config(), PipelineResult("RUNNING"), options
    )

    runs = recent_runs(str(warehouse), 5) if warehouse.exists() else []
    assert [(r.dataflow_job_id, r.exit_code, r.ended_at, r.records_read) for r in runs] == recorded
    assert [r.run_id for r in runs] == [run.run_id] * len(recorded)
    expected = [f"run {run.run_id} recorded in pipeline_runs of {warehouse}"] if recorded else []
    assert capsys.readouterr().err.splitlines() == expected
