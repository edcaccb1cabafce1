"""What both jobs share at launch: flags nobody defines are refused with the closest one."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from pipelines import backfill, streaming
from pipelines.history import start_run
from pipelines.launch import known_flags, record_submitted, unknown_flags
from pipelines.options import SinkOptions
from transforms.sinks.run_history import recent_runs


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
    with pytest.raises(SystemExit) as raised:
        job.run(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: {message}" if message.endswith("\n") else f"error: {message}\n")


def test_beams_own_flags_and_their_values_are_known() -> None:
    known = known_flags()
    argv = ["--runner", "DataflowRunner", "--project", "p", "--region=europe-west1",
            "--temp_location", "gs://b/tmp", "--setup_file", "./setup.py", "--dry_run=True",
            "--no_auth", "--experiments=use_runner_v2", "--streaming"]  # fmt: skip
    assert unknown_flags(argv, known) == []
    assert unknown_flags(["p", "--", "--project"], known) == []


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
