"""A Dataflow launch that cannot work ends in seconds, one line naming the flag, never a hang.

Beam's `beam.Pipeline(options)` calls Google Cloud on Dataflow (credentials,
the staging bucket) with retries lasting minutes, so every flag, then the
infrastructure, is checked before it is constructed (`pipelines.launch`,
`pipelines.google_cloud`). Runs the jobs in-process (and once as the command an
operator types) against a closed port, the GCS emulator of `bigquery_emulator`
and a missing credentials file: nothing here reaches the internet.

The README's and the job docstrings' complete job commands pass the same
flag checks (`check_flags`), offline.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import HTTPServer
from pathlib import Path
from typing import ClassVar

import google.auth
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineRunner
from google.api_core.exceptions import NotFound
from google.auth import _default as google_auth_default
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import RefreshError
from google.cloud import bigquery

from pipelines import backfill, streaming
from pipelines.google_cloud import check_google_cloud
from pipelines.launch import check_flags, launch_checked, parse_options
from tests.fixtures.bigquery import BigQueryEmulator
from tests.fixtures.http_server import JsonApiHandler, closed_port, serving
from tests.fixtures.unreachable import timed
from transforms.infrastructure import InfrastructureError
from transforms.sinks.bigquery import check_dataset

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BACKFILL = "python -m pipelines.backfill: error: "
#: A launch on Dataflow with valid placeholders, not a dry run: Beam would contact Google.
DATAFLOW = [
    "--runner=DataflowRunner",
    "--project=test-project",
    "--region=europe-west1",
    "--temp_location=gs://test-bucket/tmp",
]
#: The BigQuery warehouse and a sink for every record type with personal data.
PRODUCTION_SINKS = [
    "--warehouse=bigquery:test-project.contributions",
    "--stripe_mode=live",
    "--acquisitions_bus=acquisitions-bus",
    "--contributions_store_queue_url=https://sqs.eu-west-1.amazonaws.com/1/store",
    "--contributions_store_key_id=KEY_ID",
    "--supporter_table=SupporterProductData",
    "--emails_queue_url=https://sqs.eu-west-1.amazonaws.com/1/emails.fifo",
    "--opt_ins_queue_url=https://sqs.eu-west-1.amazonaws.com/1/opt-ins.fifo",
    "--sent_messages_table=contribution-messages-sent",
]
#: Well above a refused launch (about 2 s, most of it imports), far below Beam's retries
#: (the launch this replaces hung 112 s).
PROMPTLY_S = 20.0


def _anonymous(*args: object, **kwargs: object) -> tuple[AnonymousCredentials, str]:
    return AnonymousCredentials(), "test-project"


def _not_answering(emulator_host: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Anonymous credentials and the service behind `emulator_host` at a closed port (returned)."""
    port = closed_port()
    monkeypatch.setattr(google.auth, "default", _anonymous)
    monkeypatch.setenv(emulator_host, f"http://127.0.0.1:{port}")
    return port


@pytest.fixture
def missing_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real credentials lookup, pointed at a key file that does not exist; no emulators.

    (`bigquery_emulator`, once started, makes every lookup anonymous for the session.)
    """
    missing = tmp_path / "absent-key.json"
    monkeypatch.setattr(google.auth, "default", google_auth_default.default)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))
    for name in ("BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    return missing


def test_a_duckdb_warehouse_on_dataflow_is_refused_at_once_as_typed(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pipelines.backfill", "--runner", "DataflowRunner"]
    command += ["--project", "p", "--region", "r", "--temp_location", "gs://b/t"]
    command += ["--warehouse", "out/x.duckdb"]

    began = time.monotonic()
    # The timeout fails the test where the launch used to wait for Google Cloud.
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=PROMPTLY_S * 3, check=False
    )
    elapsed = time.monotonic() - began

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"{BACKFILL}--warehouse out/x.duckdb is a DuckDB file, which DataflowRunner workers "
        "would write on their own disks and lose: give --warehouse bigquery:PROJECT.DATASET "
        "and the production sinks\n"
    )
    assert elapsed < PROMPTLY_S


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        pytest.param(
            ["--runner=DataflowRunner", "--temp_location=gs://test-bucket/tmp"],
            "--runner DataflowRunner needs --project, the Google Cloud project to run in",
            id="no-project",
        ),
        pytest.param(
            ["--runner=DataflowRunner", "--project=P", "--temp_location=gs://test-bucket/tmp"],
            "--runner DataflowRunner: Invalid Project ID (P). Please make sure you specified "
            "the Project ID, not project description.",
            id="invalid-project",
        ),
        pytest.param(
            ["--runner=DataflowRunner", "--project=test-project"],
            "--runner DataflowRunner needs --temp_location gs://BUCKET/FOLDER, where the job "
            "stages its files and the BigQuery load files",
            id="no-temp-location",
        ),
        pytest.param(
            ["--runner=DataflowRunner", "--project=test-project", "--temp_location=gs://B/tmp"],
            "--temp_location gs://B/tmp is not a Cloud Storage folder: give gs://BUCKET/FOLDER, "
            "BUCKET 3 to 63 lowercase letters, digits, '-', '_' or '.'",
            id="invalid-bucket",
        ),
    ],
)
def test_dataflow_flags_are_refused_before_anything_is_contacted(
    flags: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, elapsed = timed(backfill.run, [*flags, *PRODUCTION_SINKS])

    assert code == 2
    assert capsys.readouterr().err == f"{BACKFILL}{line}\n"
    assert elapsed < PROMPTLY_S


def test_without_credentials_the_launch_stops_in_one_line(
    missing_credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = missing_credentials
    code, elapsed = timed(backfill.run, [*DATAFLOW, *PRODUCTION_SINKS])

    assert code == 3
    assert capsys.readouterr().err == (
        f"{BACKFILL}no Google Cloud credentials for the launch (File {missing} was not "
        "found): run `gcloud auth application-default login`, or set "
        "GOOGLE_APPLICATION_CREDENTIALS to a service account key file\n"
    )
    assert elapsed < PROMPTLY_S


@pytest.mark.parametrize("job", [backfill.run, streaming.run], ids=["backfill", "streaming"])
def test_cloud_storage_not_answering_stops_the_launch_in_seconds(
    job: Callable[[list[str]], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = _not_answering("STORAGE_EMULATOR_HOST", monkeypatch)
    flags = [*DATAFLOW, *PRODUCTION_SINKS, "--kinesis_stream=stripe-events"]
    if job is streaming.run:
        flags.append("--streaming")
    else:
        flags.remove("--kinesis_stream=stripe-events")

    code, elapsed = timed(job, flags)

    assert code == 3
    assert capsys.readouterr().err == (
        f"python -m {job.__module__}: error: --temp_location gs://test-bucket/tmp: Cloud "
        f"Storage did not answer: ConnectionError from http://127.0.0.1:{port}: check the "
        "network, the credentials and STORAGE_EMULATOR_HOST\n"
    )
    assert elapsed < PROMPTLY_S


def test_a_missing_bucket_stops_the_launch(
    bigquery_emulator: BigQueryEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [*DATAFLOW, "--temp_location=gs://absent-bucket/tmp", *PRODUCTION_SINKS]

    assert backfill.run(flags) == 3
    assert capsys.readouterr().err == (
        f"{BACKFILL}--temp_location gs://absent-bucket/tmp: bucket absent-bucket does not "
        "exist: create it or correct the flag\n"
    )


def test_an_existing_bucket_passes_and_a_dry_run_contacts_nothing(
    bigquery_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    launch = [*DATAFLOW, f"--temp_location={bigquery_emulator.temp_location}"]
    check_google_cloud(PipelineOptions(launch))

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(InfrastructureError, match="Cloud Storage did not answer"):
        check_google_cloud(PipelineOptions(launch))
    check_google_cloud(PipelineOptions([*launch, "--dry_run=True"]))


#: `python -m pipelines.<job> <flags>` in a shell block of the README or a job's docstring.
_COMMAND = re.compile(r"(?:^|\s)\S*python -m (pipelines\.(?:backfill|streaming)) (.*)$")
_SHELL_BLOCK = re.compile(r"^```(?:sh|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)
JOB_MODULES = {"pipelines.backfill": backfill, "pipelines.streaming": streaming}


def job_commands() -> list[tuple[str, str, list[str]]]:
    """(where, job module, flags) of every complete job command (no `...`, no `<...>`)."""
    texts = [("README", block) for block in _SHELL_BLOCK.findall(README.read_text())]
    texts += [(name, module.__doc__ or "") for name, module in JOB_MODULES.items()]
    commands = []
    for where, text in texts:
        for line in re.sub(r"\\\n\s*", " ", text).splitlines():
            found = _COMMAND.search(line)
            if found and "..." not in line and "<" not in line:
                commands.append((where, found.group(1), shlex.split(found.group(2))))
    return commands


def test_the_readme_and_docstrings_show_a_complete_dataflow_command_of_each_job() -> None:
    dataflow = sorted(
        {(where, job) for where, job, flags in job_commands() if "DataflowRunner" in flags}
    )
    assert dataflow == [
        ("README", "pipelines.backfill"),
        ("README", "pipelines.streaming"),
        ("pipelines.backfill", "pipelines.backfill"),
        ("pipelines.streaming", "pipelines.streaming"),
    ]


@pytest.mark.parametrize(
    ("where", "job", "flags"),
    [pytest.param(*command, id=f"{command[0]}-{command[1]}") for command in job_commands()],
)
def test_every_complete_job_command_shown_passes_the_flag_checks(
    where: str, job: str, flags: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The secrets the commands take from the environment (`--complete_from_stripe`'s key).
    monkeypatch.setenv("STRIPE_API_KEY", "rk_test_readme")
    monkeypatch.delenv("CONTRIBUTIONS_STORE_DSN", raising=False)
    module = JOB_MODULES[job]
    options = parse_options(flags, module.OPTION_CLASSES, prog=module.PROG, description="")

    check_flags(options, module.plan)  # raises ValueError, the exit-2 line, when refused


class _RunnerRefusedByGoogle(PipelineRunner):
    """A runner whose set-up, run while the pipeline is constructed, raises `error`."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def default_pickle_library_override(self) -> str | None:
        raise self._error


def test_a_google_cloud_error_while_constructing_the_pipeline_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = PipelineOptions(["--warehouse", str(tmp_path / "w.duckdb")])
    refused = _RunnerRefusedByGoogle(RefreshError("invalid_grant: Token has been revoked."))

    assert launch_checked("prog", options, backfill.plan, runner=refused) == 3
    assert capsys.readouterr().err == (
        "prog: error: the pipeline could not be constructed: RefreshError: invalid_grant: "
        "Token has been revoked.\n"
    )


def test_any_other_error_while_constructing_the_pipeline_keeps_its_traceback(
    tmp_path: Path,
) -> None:
    options = PipelineOptions(["--warehouse", str(tmp_path / "w.duckdb")])

    broken = _RunnerRefusedByGoogle(KeyError("a bug"))

    with pytest.raises(KeyError, match="a bug"):
        launch_checked("prog", options, backfill.plan, runner=broken)


class _BigQueryStandIn(JsonApiHandler):
    """BigQuery's REST answers for a project that does not exist and one the caller may not use."""

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # noqa: N802  # http.server's name
        type(self).requests.append(self.path.split("?")[0])
        project = self.path.split("/")[4]
        if project == "denied-project":
            self._answer(403, _google_error(403, f"Access Denied: Project {project}"))
        elif self.path.split("?")[0].endswith("/datasets"):
            self._answer(404, _google_error(404, f"Not found: Project {project}"))
        else:
            self._answer(404, _google_error(404, f"Not found: Dataset {project}:contributions"))


def _google_error(code: int, message: str) -> dict[str, object]:
    status = "NOT_FOUND" if code == 404 else "PERMISSION_DENIED"
    return {"error": {"code": code, "message": message, "status": status}}


@pytest.fixture
def bigquery_stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """BIGQUERY_EMULATOR_HOST at `_BigQueryStandIn`, anonymous credentials; the paths asked."""
    _BigQueryStandIn.requests = []
    with serving(HTTPServer(("127.0.0.1", 0), _BigQueryStandIn)) as url:
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", url)
        monkeypatch.setattr(google.auth, "default", _anonymous)
        yield _BigQueryStandIn.requests


@pytest.mark.parametrize(
    ("project", "asked", "line"),
    [
        pytest.param(
            "absent-project",
            [
                "/bigquery/v2/projects/absent-project/datasets/contributions",
                "/bigquery/v2/projects/absent-project/datasets",
            ],
            "--warehouse bigquery:absent-project.contributions: project absent-project does not "
            "exist or these credentials cannot see it: correct the flag",
            id="absent-project",
        ),
        pytest.param(
            "denied-project",
            ["/bigquery/v2/projects/denied-project/datasets/contributions"],
            "--warehouse bigquery:denied-project.contributions: these credentials may not use "
            "BigQuery in project denied-project: grant them roles/bigquery.dataEditor and "
            "roles/bigquery.jobUser, or give another project",
            id="denied-project",
        ),
    ],
)
def test_a_bigquery_project_that_cannot_be_used_stops_the_job_before_launch(
    project: str,
    asked: list[str],
    line: str,
    bigquery_stand_in: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags = [*PRODUCTION_SINKS, f"--warehouse=bigquery:{project}.contributions"]

    assert backfill.run(flags) == 3
    assert capsys.readouterr().err == f"{BACKFILL}{line}\n"
    # One attempt per call: the check does not retry what the service refused.
    assert bigquery_stand_in == asked


def test_bigquery_not_answering_stops_the_job_in_seconds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _not_answering("BIGQUERY_EMULATOR_HOST", monkeypatch)

    code, elapsed = timed(streaming.run, [*PRODUCTION_SINKS, "--kinesis_stream=stripe-events"])

    assert code == 3
    assert capsys.readouterr().err == (
        "python -m pipelines.streaming: error: --warehouse bigquery:test-project.contributions: "
        f"BigQuery did not answer: ConnectionError from http://127.0.0.1:{port}: check the "
        "network, the credentials and BIGQUERY_EMULATOR_HOST\n"
    )
    assert elapsed < PROMPTLY_S


def test_without_credentials_a_bigquery_warehouse_stops_the_job(
    missing_credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = missing_credentials
    assert backfill.run(PRODUCTION_SINKS) == 3
    assert capsys.readouterr().err == (
        f"{BACKFILL}--warehouse bigquery:test-project.contributions: no Google Cloud "
        f"credentials (File {missing} was not found): run `gcloud auth application-default "
        "login`, or set GOOGLE_APPLICATION_CREDENTIALS\n"
    )


def test_a_served_project_passes_without_its_dataset_which_the_writer_creates(
    bigquery_emulator: BigQueryEmulator,
) -> None:
    dataset = f"launch_check_{uuid.uuid4().hex[:8]}"

    check_dataset(bigquery_emulator.project, dataset)

    client = bigquery.Client(project=bigquery_emulator.project)
    with pytest.raises(NotFound):  # the check created nothing
        client.get_dataset(f"{bigquery_emulator.project}.{dataset}")
    client.close()
