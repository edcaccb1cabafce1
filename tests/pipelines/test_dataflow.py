"""Every job translates for Dataflow offline, and its step names match the pinned list.

DataflowRunner's dry run (`tools.dataflow_steps`) builds the job Dataflow
would receive without credentials or network. The step names are the job's
update interface: Dataflow updates a running streaming job in place only when
every old step maps by name onto the new graph.
"""

from __future__ import annotations

import pytest
from apache_beam.runners.runner import PipelineState

from tools.dataflow_steps import JOBS, golden_path, golden_text, translate

REGENERATE = ".venv/bin/python -m tools.dataflow_steps --job {job} --write-golden"


@pytest.mark.parametrize("job", sorted(JOBS))
def test_job_translates_for_dataflow_with_pinned_step_names(job: str) -> None:
    translation = translate(job)

    assert translation.state == PipelineState.DONE
    expected = golden_path(job).read_text()
    actual = golden_text(translation.step_names())
    assert actual == expected, (
        f"The {job} job's Dataflow step names differ from {golden_path(job).name}. "
        "Step labels are an interface: renaming or removing a step breaks "
        "an in-place update (--update) of a running streaming job, which then has to be "
        "drained and restarted. If the change is deliberate, regenerate the list with "
        f"`{REGENERATE.format(job=job)}`, review `git diff tests/pipelines/golden/` and say "
        "in the commit how the running job is replaced (drain, or --transform_name_mapping)."
    )
