"""Before a Dataflow launch: the launcher's Google Cloud credentials and its `--temp_location`.

Beam looks at both while it constructs the pipeline (`beam.Pipeline(options)`),
with retries that last minutes: five attempts to find credentials, then each
Cloud Storage call retried for up to 120 s; and when neither `--temp_location`
nor `--staging_location` is a valid `gs://` folder it looks for (and would
create) a default bucket. With no network a launch hung about two minutes,
then ended in a traceback. Checked here first, each once and with bounded
timeouts, a launch that cannot work ends in seconds with one line naming the
flag; when these pass, Beam's own calls answer at once.

- `check_temp_location` (usage, ValueError, no network): on Dataflow a
  valid `--project` (Beam's rules) and `gs://BUCKET/FOLDER` are required.
- `check_google_cloud` (infrastructure, `InfrastructureError`): credentials
  (unless `--no_auth`), then the bucket is readable with them. Skipped in a
  dry run (`--dry_run=True`), which contacts nothing.

Only Dataflow runners are checked: other remote runners stage elsewhere.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

from transforms.infrastructure import (
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    InfrastructureError,
    describe_request_error,
)

DATAFLOW_RUNNERS = frozenset({"DataflowRunner", "TestDataflowRunner"})
CREDENTIALS_FIX = (
    "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
    "to a service account key file"
)


def is_dataflow(runner: str | None) -> bool:
    """True for `--runner DataflowRunner` (by name or by its module path)."""
    return runner is not None and runner.rsplit(".", 1)[-1] in DATAFLOW_RUNNERS


def _staging_flag(options: PipelineOptions) -> str | None:
    """The flag of the folder Beam will stage to: `temp_location`, else `staging_location`."""
    cloud = options.view_as(GoogleCloudOptions)
    validator = PipelineOptionsValidator(options, None)
    for name in ("temp_location", "staging_location"):
        if getattr(cloud, name) and not validator.validate_gcs_path(cloud, name):
            return name
    return None


def _is_service(cloud: GoogleCloudOptions) -> bool:
    """Whether the job goes to the Dataflow service: Beam's rule, which takes an endpoint
    on localhost (a local stand-in) for something else."""
    endpoint = cloud.dataflow_endpoint
    return endpoint is None or not urlparse(endpoint).netloc.startswith("localhost")


def check_temp_location(options: PipelineOptions) -> None:
    """ValueError unless a Dataflow launch has `--project` and a valid `gs://` folder."""
    runner = options.view_as(StandardOptions).runner
    if not is_dataflow(runner):
        return
    cloud = options.view_as(GoogleCloudOptions)
    if not cloud.project:
        raise ValueError(f"--runner {runner} needs --project, the Google Cloud project to run in")
    # Beam's own checks of --project and --job_name, which need no network; Beam makes
    # them only for the service, not for a `--dataflow_endpoint` on localhost.
    errors = (
        PipelineOptionsValidator(options, None).validate_cloud_options(cloud)
        if _is_service(cloud)
        else []
    )
    if errors:
        raise ValueError(f"--runner {runner}: {' '.join(errors)}")
    if _staging_flag(options) is not None:
        return
    if not cloud.temp_location:
        raise ValueError(
            f"--runner {runner} needs --temp_location gs://BUCKET/FOLDER, where the job "
            "stages its files and the BigQuery load files"
        )
    raise ValueError(
        f"--temp_location {cloud.temp_location} is not a Cloud Storage folder: give "
        "gs://BUCKET/FOLDER, BUCKET 3 to 63 lowercase letters, digits, '-', '_' or '.'"
    )


def check_google_cloud(options: PipelineOptions) -> None:
    """`InfrastructureError` unless a Dataflow launch has credentials and can read its bucket."""
    runner = options.view_as(StandardOptions).runner
    if not is_dataflow(runner) or options.view_as(TestOptions).dry_run:
        return
    cloud = options.view_as(GoogleCloudOptions)
    credentials = None if cloud.no_auth else google_credentials(cloud.gcp_oauth_scopes)
    flag = _staging_flag(options)
    if flag is None:  # check_temp_location has refused the launch already
        return
    check_bucket(f"--{flag}", getattr(cloud, flag), cloud.project, credentials)


def google_credentials(scopes: list[str] | None = None) -> Any:
    """Application default credentials, looked up once, no retries; else `InfrastructureError`."""
    import google.auth
    from google.auth import exceptions as auth_exceptions

    try:
        credentials, _ = google.auth.default(scopes=scopes)
    except auth_exceptions.GoogleAuthError as error:
        found = str(error).split(". ", 1)[0].rstrip(".")
        raise InfrastructureError(
            f"no Google Cloud credentials for the launch ({found}): {CREDENTIALS_FIX}"
        ) from None
    return credentials


def check_bucket(flag: str, location: str, project: str | None, credentials: Any) -> None:
    """`InfrastructureError` naming `flag` unless the bucket of `location` answers, readable.

    One request, no retries, bounded connect and read timeouts. `credentials`
    None: anonymous, as Beam is with `--no_auth`.
    """
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import storage  # type: ignore[attr-defined]  # untyped package

    bucket = location.removeprefix("gs://").split("/", 1)[0]
    where = f"{flag} {location}"
    try:
        if credentials is None:
            client = storage.Client.create_anonymous_client()
        else:
            client = storage.Client(project=project, credentials=credentials)
        try:
            client.get_bucket(bucket, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), retry=None)
        finally:
            client.close()
    except api_exceptions.NotFound:
        raise InfrastructureError(
            f"{where}: bucket {bucket} does not exist: create it or correct the flag"
        ) from None
    except api_exceptions.Forbidden:
        raise InfrastructureError(
            f"{where}: these credentials may not read bucket {bucket}: grant them "
            "roles/storage.objectAdmin on it, or give a bucket they may use"
        ) from None
    except (
        api_exceptions.GoogleAPIError,
        auth_exceptions.GoogleAuthError,
        requests.RequestException,
    ) as error:
        raise InfrastructureError(
            f"{where}: Cloud Storage did not answer: {describe_request_error(error)}: check "
            "the network, the credentials and STORAGE_EMULATOR_HOST"
        ) from None
