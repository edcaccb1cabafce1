"""Applies `--aws_region` and `--aws_role_arn` in every Beam worker process, before any AWS client.

The Dataflow runner lists the module of every `BeamPlugin` subclass imported
at submission in `--beam_plugins`, and each worker's SDK harness imports
those modules at start, right after `FileSystems.set_options` has received
the job's options: importing this module there starts the role
(`transforms.infrastructure.use_aws_role`) for that process, so Beam's S3
filesystem, the Kinesis reader and every sink's clients all use it. On the
launching machine, and so on local runners, `pipelines.launch` starts it
before the pre-launch checks, and the import finds no options here and does
nothing.

Why a plugin rather than a call in each DoFn's `setup()`: the archive is
listed and opened by Beam's own `fileio` transforms, which the project does
not write; a plugin reaches them too, with no extra pipeline step.
"""

from __future__ import annotations

import os

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils.plugin import BeamPlugin

from pipelines.options import AwsOptions
from transforms.infrastructure import use_aws_role


class AssumeAwsRoleOnWorkers(BeamPlugin):
    """Marker: its module is imported by every worker (see the module docstring)."""


def start_role(options: PipelineOptions | None) -> bool:
    """Sets `--aws_region` and starts `--aws_role_arn` for this process, if given.

    True if a role was started.
    """
    if options is None:
        return False
    aws = options.view_as(AwsOptions)
    if aws.aws_region:
        os.environ["AWS_DEFAULT_REGION"] = aws.aws_region
    if not aws.aws_role_arn:
        return False
    use_aws_role(aws.aws_role_arn, aws.token_source())
    return True


# Beam keeps the worker's options there; no public accessor exists.
start_role(getattr(FileSystems, "_pipeline_options", None))
