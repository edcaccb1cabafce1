"""Every job translates for Dataflow offline, and its step names match the pinned list.

DataflowRunner's dry run (`tools.dataflow_steps`) builds the job Dataflow
would receive without credentials or network. The step names are the job's
update interface: Dataflow updates a running streaming job in place only when
every old step maps by name onto the new graph.
"""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import SetupOptions
from apache_beam.runners.runner import PipelineState

from pipelines import streaming
from pipelines.options import AwsOptions
from tools.dataflow_steps import (
    JOBS,
    Translation,
    dry_run_options,
    golden_path,
    golden_text,
    translate,
)

ROLE_ARN = "arn:aws:iam::123456789012:role/stripe-pipeline-PROD"
REGENERATE = ".venv/bin/python -m tools.dataflow_steps --job {job} --write_golden"


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


def test_with_a_role_every_worker_is_told_to_assume_it_at_start() -> None:
    """Dataflow lists every BeamPlugin's module in --beam_plugins; workers import them at start."""
    options = dry_run_options(
        ["--streaming", "--kinesis_stream=stripe-events", f"--aws_role_arn={ROLE_ARN}"]
    )
    pipeline = beam.Pipeline(options=options)
    streaming.build(pipeline, options)

    result = pipeline.run()

    assert result.state == PipelineState.DONE
    submitted = result.job.options  # type: ignore[attr-defined]  # DataflowRunner's result
    assert (
        "pipelines.aws_role.AssumeAwsRoleOnWorkers" in submitted.view_as(SetupOptions).beam_plugins
    )
    assert submitted.view_as(AwsOptions).aws_role_arn == ROLE_ARN


#: What `--complete_from_stripe` adds to the streaming job: the completion step and the
#: Flatten of its payments with the join's.
COMPLETION_STEPS = [
    "ProcessStripeEvents/CompleteCharges",
    "ProcessStripeEvents/CompleteCharges/RetrieveCharges",
    "ProcessStripeEvents/CompleteCharges/RetrieveCharges/ParDo(CompleteFromStripeFn)",
    "ProcessStripeEvents/CollectPayments",
]


def test_completing_from_stripe_keeps_every_pinned_streaming_step_and_adds_four(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "rk_test_secretsecret")
    options = dry_run_options(
        ["--streaming", "--kinesis_stream=stripe-events", "--complete_from_stripe"]
    )
    pipeline = beam.Pipeline(options=options)
    streaming.build(pipeline, options)

    result = pipeline.run()

    assert result.state == PipelineState.DONE
    translation = Translation(str(result.state), result.job.proto_pipeline)  # type: ignore[attr-defined]
    steps = translation.step_names()
    golden = golden_path("streaming").read_text().splitlines()
    assert [step for step in steps if step not in COMPLETION_STEPS] == golden
    assert [step for step in steps if step in COMPLETION_STEPS] == COMPLETION_STEPS
