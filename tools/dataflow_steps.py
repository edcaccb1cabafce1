"""Translate a job for Dataflow offline and list its step names, the job's update interface.

Dataflow updates a running streaming job in place only if every step of the
old graph maps by name onto the new one, so a renamed label is a breaking
change. This builds a job's graph with `DataflowRunner` in dry-run mode, which
translates the pipeline exactly as a submission would (Dataflow overrides,
Runner v2 portable proto, the `--setup_file` sdist) and stops before any
network call: no credentials, no staging, no job created.

    .venv/bin/python -m tools.dataflow_steps --job backfill                 # print the steps
    .venv/bin/python -m tools.dataflow_steps --job backfill --write_golden  # deliberate rename
    git diff tests/pipelines/golden/

`tests/pipelines/test_dataflow.py` compares the steps with the golden file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.runner import PipelineState

from pipelines.flags import FlagParser

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = PROJECT_ROOT / "tests" / "pipelines" / "golden"

# Placeholders: a dry run checks that they are well formed and never contacts them.
# --sdk_location is left at its default: the SDK comes from the worker container,
# so nothing is downloaded. --setup_file is built into an sdist in a temporary
# folder (`python -m build`, or `setup.py sdist` without it), offline as well.
DRY_RUN_ARGS: tuple[str, ...] = (
    "--runner=DataflowRunner",
    "--project=test-project",
    "--region=europe-west1",
    "--temp_location=gs://test-bucket/tmp",
    f"--setup_file={PROJECT_ROOT / 'setup.py'}",
    "--dry_run=True",
    "--no_auth",
)


@dataclass(frozen=True)
class Job:
    """A pipeline module exposing `build(pipeline, options)` and the flags it is translated with."""

    module: str
    args: tuple[str, ...] = ()

    def builder(self) -> Callable[[beam.Pipeline, PipelineOptions], None]:
        build: Callable[[beam.Pipeline, PipelineOptions], None]
        build = importlib.import_module(self.module).build
        return build


#: Job name -> how to build it. A job joins the check with one line here and a golden file.
JOBS: dict[str, Job] = {
    "backfill": Job("pipelines.backfill"),
    "streaming": Job("pipelines.streaming", ("--streaming", "--kinesis_stream=stripe-events")),
}


@dataclass(frozen=True)
class Translation:
    """What the dry run produced: the final state and the job graph Dataflow would receive."""

    state: str
    proto: beam_runner_api_pb2.Pipeline

    def step_names(self) -> list[str]:
        """Every transform's full name, depth first in the order the job applies them.

        Includes what Beam expands inside the job's own labels (a DoFn's class
        name, a Reshuffle's parts): Dataflow maps those by name on an update too.
        """
        transforms = self.proto.components.transforms
        names: list[str] = []

        def visit(transform_id: str) -> None:
            transform = transforms[transform_id]
            names.append(transform.unique_name)
            for child in transform.subtransforms:
                visit(child)

        for root_id in self.proto.root_transform_ids:
            # The root is Beam's unnamed wrapper around the whole graph, not a step.
            for child in transforms[root_id].subtransforms:
                visit(child)
        return names


def dry_run_options(extra_args: Sequence[str] = ()) -> PipelineOptions:
    """Options for an offline DataflowRunner translation; later flags win."""
    return PipelineOptions([*DRY_RUN_ARGS, *extra_args])


def translate(job_name: str) -> Translation:
    """Builds the job and runs DataflowRunner's dry run on it; raises if translation fails."""
    job = JOBS[job_name]
    options = dry_run_options(job.args)
    pipeline = beam.Pipeline(options=options)
    job.builder()(pipeline, options)
    result = pipeline.run()
    # Only DataflowRunner's dry run attaches the translated job to its result.
    dataflow_job = getattr(result, "job", None)
    if dataflow_job is None:
        raise RuntimeError(f"{job_name}: the dry run returned no Dataflow job")
    return Translation(state=str(result.state), proto=dataflow_job.proto_pipeline)


def golden_path(job_name: str) -> Path:
    """`tests/pipelines/golden/<job>_steps.txt`."""
    return GOLDEN_DIR / f"{job_name}_steps.txt"


def golden_text(steps: Sequence[str]) -> str:
    return "".join(f"{step}\n" for step in steps)


def main(argv: Sequence[str] | None = None) -> int:
    parser = FlagParser(
        prog="python -m tools.dataflow_steps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--job", required=True, choices=sorted(JOBS), help="The job to translate.")
    parser.add_argument(
        "--write_golden",
        action="store_true",
        help="Rewrite the job's golden step list instead of printing it. Only after a "
        "deliberate rename: it breaks in-place updates of the running streaming job.",
    )
    args = parser.parse_args(argv)
    translation = translate(args.job)
    if translation.state != PipelineState.DONE:
        print(f"{args.job}: the dry run ended in {translation.state}", file=sys.stderr)
        return 1
    text = golden_text(translation.step_names())
    if not args.write_golden:
        print(text, end="")
        return 0
    path = golden_path(args.job)
    path.parent.mkdir(parents=True, exist_ok=True)
    changed = not path.exists() or path.read_text() != text
    path.write_text(text)
    print(f"{'updated' if changed else 'unchanged'} {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
