"""The backfill groups on disk on local runners and with the runner's shuffle elsewhere."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.options import BackfillOptions

TMP = tempfile.gettempdir()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], TMP),
        (["--runner", "FnApiRunner"], TMP),
        (["--runner", "DirectRunner"], TMP),
        (["--runner", "DataflowRunner"], None),
        (["--shuffle", "runner"], None),
        (["--shuffle", "disk"], TMP),
    ],
    ids=["no-runner", "fn-api", "direct", "dataflow", "runner-chosen", "disk-chosen"],
)
def test_auto_groups_on_disk_only_on_local_runners(argv: list[str], expected: str | None) -> None:
    options = PipelineOptions(argv)
    runner = options.view_as(StandardOptions).runner

    assert options.view_as(BackfillOptions).disk_shuffle_dir(runner) == expected


def test_the_shuffle_folder_can_be_chosen(tmp_path: Path) -> None:
    options = PipelineOptions(["--shuffle_dir", str(tmp_path)])

    assert options.view_as(BackfillOptions).disk_shuffle_dir(None) == str(tmp_path)


def test_grouping_on_disk_is_refused_on_a_remote_runner() -> None:
    options = PipelineOptions(["--shuffle", "disk", "--runner", "DataflowRunner"])

    with pytest.raises(ValueError, match="--shuffle disk needs a local runner") as raised:
        options.view_as(BackfillOptions).disk_shuffle_dir("DataflowRunner")
    assert str(raised.value) == (
        "--shuffle disk needs a local runner, whose workers share --shuffle_dir; "
        "DataflowRunner workers do not: use --shuffle runner"
    )
