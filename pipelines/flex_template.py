"""The Dataflow Flex Template entry point: submits one job with the template's parameters.

The image (`Dockerfile`) holds both jobs; each template spec names its job in
the `FLEX_TEMPLATE_JOB` environment variable (`gcloud dataflow flex-template
build --env FLEX_TEMPLATE_JOB=streaming`, see the README), and the launcher
runs this file with every parameter as `--name=value`. It submits the job and
returns, as a launcher must: the streaming job runs until drained, the
backfill's summary is the Dataflow job's counters.

Flag parameters (`store_true`, e.g. the backfill's `--allow_empty`) arrive as
`--name=true` or `=false`, which argparse refuses; they are turned into the
bare flag, or left out, first.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import backfill, streaming

JOB_VARIABLE = "FLEX_TEMPLATE_JOB"
PROG = "python -m pipelines.flex_template"
#: Job name -> (its option classes, its run function).
JOBS: dict[str, tuple[Sequence[type[PipelineOptions]], Callable[..., int]]] = {
    "backfill": (backfill.OPTION_CLASSES, backfill.run),
    "streaming": (streaming.OPTION_CLASSES, streaming.run),
}


def job_parser(option_classes: Iterable[type[PipelineOptions]]) -> argparse.ArgumentParser:
    """An argparse parser holding exactly the job's own flags (Beam's are not included)."""
    parser = argparse.ArgumentParser(add_help=False)
    for option_class in option_classes:
        option_class._add_argparse_args(cast(Any, parser))
    return parser


def switch_flags(option_classes: Iterable[type[PipelineOptions]]) -> frozenset[str]:
    """The job's flags that take no value (`store_true`), as `--name`."""
    return frozenset(
        option
        for action in job_parser(option_classes)._actions
        if isinstance(action, argparse._StoreTrueAction)
        for option in action.option_strings
    )


def normalise(argv: Sequence[str], switches: frozenset[str]) -> list[str]:
    """`--switch=true` -> `--switch`, `--switch=false` -> nothing; other arguments unchanged.

    ValueError for a switch given another value.
    """
    result = []
    for argument in argv:
        name, equals, value = argument.partition("=")
        if equals and name in switches:
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{name} takes true or false, got {value!r}")
            if value.lower() == "true":
                result.append(name)
            continue
        result.append(argument)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    job = os.environ.get(JOB_VARIABLE, "")
    args = list(sys.argv[1:] if argv is None else argv)
    if job not in JOBS and ("--help" in args or "-h" in args):
        # The job's own --help lists its flags once the variable names it.
        print(
            f"usage: {JOB_VARIABLE}={{{','.join(sorted(JOBS))}}} python -m pipelines.flex_template "
            "[the job's flags]\n\nThe Flex Template launcher: submits the job the variable names "
            "without waiting; switches may be given as --switch=true|false. Set the variable and "
            "pass --help for the job's flags."
        )
        return 0
    if job not in JOBS:
        print(
            f"{JOB_VARIABLE} must be one of {', '.join(sorted(JOBS))}, got {job!r}", file=sys.stderr
        )
        return 2
    option_classes, run = JOBS[job]
    try:
        normalised = normalise(args, switch_flags(option_classes))
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    return run(normalised, wait=False)


if __name__ == "__main__":
    sys.exit(main())
