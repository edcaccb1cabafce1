"""A submitted Dataflow job's state and counters from the Jobs API, and the run row they make.

    jobs = DataflowJobs("https://dataflow.googleapis.com")
    status = jobs.look_up(SubmittedJob(job_id, project, region))
    refreshed_record(run, status, now)    # the run's newer row, or None: nothing changed

The client is the one Beam submits jobs with (`google.cloud.dataflow`, the
v1b3 Jobs and Metrics services) on its REST transport, so `endpoint` is a
base URL like Beam's `--dataflow_endpoint` and may be a local stand-in. The
credentials are Application Default Credentials (`google.auth.default`:
`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's login, a VM's service account),
never a flag. Each look-up is one `projects.locations.jobs.get` and, once
the job is in a terminal state, one `projects.locations.jobs.getMetrics`,
without retries: a refresh that fails changes nothing and can be run again.

The counters are read as the Dataflow runner reads them (`user_counters`:
the `user` metrics, committed values where the service has them, per step)
and summed as a local run's summary sums them (`pipelines.summary.summary_of`). A terminal
state maps onto the jobs' exit codes (`TERMINAL_STATES`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import google.auth
import google.auth.exceptions
import requests
from apache_beam.metrics.execution import MetricKey, MetricResult
from apache_beam.metrics.metricbase import MetricName
from google.api_core import client_options as client_options_lib
from google.api_core import exceptions as api_exceptions
from google.cloud import dataflow

from pipelines.history import SubmittedJob
from pipelines.launch import EXIT_DONE, EXIT_INFRASTRUCTURE, EXIT_UNACCOUNTED
from pipelines.summary import RunSummary, summary_of
from schemas.records import PipelineRun, TableRows
from transforms.infrastructure import InfrastructureError

DEFAULT_ENDPOINT = "https://dataflow.googleapis.com"
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
_TIMEOUT_S = 60.0

#: The counters decide: 0 when every record read is accounted for (the summary's rule), else 1.
_BY_COUNTERS = None
#: Dataflow's terminal job states -> exit code (None: by the counters, as a local run).
#: DONE (a bounded job finished) and DRAINED (a streaming job stopped after finishing what
#: it had read) are judged by their counters like a local run; UPDATED means the job was
#: replaced in place by a successor that took over its state, so nothing was lost (0);
#: CANCELLED abandons what was in flight (1, records unaccounted for); FAILED is 3.
TERMINAL_STATES: dict[str, int | None] = {
    "JOB_STATE_DONE": _BY_COUNTERS,
    "JOB_STATE_DRAINED": _BY_COUNTERS,
    "JOB_STATE_UPDATED": EXIT_DONE,
    "JOB_STATE_CANCELLED": EXIT_UNACCOUNTED,
    "JOB_STATE_FAILED": EXIT_INFRASTRUCTURE,
}
#: Non-terminal states in which the job is already working (or winding down).
ACTIVE_STATES = frozenset(
    {
        "JOB_STATE_RUNNING",
        "JOB_STATE_DRAINING",
        "JOB_STATE_CANCELLING",
        "JOB_STATE_RESOURCE_CLEANING_UP",
    }
)


@dataclass(frozen=True)
class JobStatus:
    """What the Jobs API said of a job: its state, when it entered it, and its counters."""

    state: str
    state_time: datetime | None
    #: The job's counters (empty until the job is in a terminal state).
    counters: tuple[MetricResult, ...] = ()


def exit_code_for(state: str, summary: RunSummary) -> int:
    """The exit code of a job that ended in `state` (a key of `TERMINAL_STATES`)."""
    code = TERMINAL_STATES[state]
    if code is not None:
        return code
    return EXIT_DONE if summary.succeeded else EXIT_UNACCOUNTED


def refreshed_record(run: PipelineRun, status: JobStatus, now: datetime) -> PipelineRun | None:
    """The run's newer row after a look-up; None when its state has not changed.

    A job still going gets its state only (end, exit code and counts stay
    null); a job in a terminal state gets its end (when it entered that
    state; the look-up's time if the API gave none), its exit code and the
    counts of its counters.
    """
    if status.state == run.dataflow_state:
        return None
    if status.state not in TERMINAL_STATES:
        return dataclasses.replace(run, dataflow_state=status.state, recorded_at=now)
    summary = summary_of(status.counters)
    return dataclasses.replace(
        run,
        ended_at=status.state_time or now,
        exit_code=exit_code_for(status.state, summary),
        records_read=summary.records_read,
        processed=summary.processed,
        skipped=sum(summary.skipped.values()),
        dead_lettered=sum(summary.dead_lettered.values()),
        rows_written=tuple(TableRows(name, rows) for name, rows in summary.written.items()),
        dataflow_state=status.state,
        recorded_at=now,
    )


def submitted_job(run: PipelineRun) -> SubmittedJob | None:
    """Where the run's Dataflow job is looked up; None for a run without one."""
    if not run.dataflow_job_id:
        return None
    return SubmittedJob(run.dataflow_job_id, run.dataflow_project or "", run.dataflow_region or "")


class DataflowJobs:
    """The Dataflow Jobs API at `endpoint`, with Application Default Credentials.

    Every failure (no credentials, the API unreachable or refusing) is an
    `InfrastructureError` with a one-line message.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout_s: float = _TIMEOUT_S) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._timeout_s = timeout_s
        try:
            credentials, _ = google.auth.default(scopes=list(_SCOPES))
        except google.auth.exceptions.DefaultCredentialsError as error:
            raise InfrastructureError(
                "no Google Cloud credentials for the Dataflow Jobs API: set up Application "
                f"Default Credentials (GOOGLE_APPLICATION_CREDENTIALS or gcloud): {error}"
            ) from error
        options = client_options_lib.ClientOptions(api_endpoint=self._endpoint)
        self._jobs = dataflow.JobsV1Beta3Client(
            credentials=credentials, client_options=options, transport="rest"
        )
        self._metrics = dataflow.MetricsV1Beta3Client(
            credentials=credentials, client_options=options, transport="rest"
        )

    def look_up(self, job: SubmittedJob) -> JobStatus:
        """The job's state, and its counters once it is in a terminal state."""
        try:
            found = self._jobs.get_job(
                dataflow.GetJobRequest(
                    project_id=job.project, location=job.region, job_id=job.job_id
                ),
                timeout=self._timeout_s,
            )
            state = dataflow.JobState(found.current_state).name
            counters: tuple[MetricResult, ...] = ()
            if state in TERMINAL_STATES:
                counters = self._counters(job)
        except (api_exceptions.GoogleAPIError, google.auth.exceptions.GoogleAuthError) as error:
            raise InfrastructureError(self._failure(job, error)) from error
        except requests.exceptions.RequestException as error:
            raise InfrastructureError(
                f"the Dataflow Jobs API at {self._endpoint} is unreachable"
                f" ({type(error).__name__}): job {job.job_id} not looked up"
            ) from error
        return JobStatus(state=state, state_time=_utc(found.current_state_time), counters=counters)

    def _counters(self, job: SubmittedJob) -> tuple[MetricResult, ...]:
        found = self._metrics.get_job_metrics(
            dataflow.GetJobMetricsRequest(
                project_id=job.project, location=job.region, job_id=job.job_id
            ),
            timeout=self._timeout_s,
        )
        return user_counters(found.metrics)

    def _failure(self, job: SubmittedJob, error: Exception) -> str:
        if isinstance(error, api_exceptions.GoogleAPICallError):
            return (
                f"the Dataflow Jobs API at {self._endpoint} answered {error.code} for job "
                f"{job.job_id} in {job.project}/{job.region}: {error.message}"
            )
        return f"the Dataflow Jobs API at {self._endpoint} failed for job {job.job_id}: " + (
            f"{type(error).__name__}: {error}"
        )


def user_counters(updates: Iterable[Any]) -> tuple[MetricResult, ...]:
    """The user counters among a job's MetricUpdates, one result per step, namespace and name.

    As Beam's `DataflowMetrics` reads them: origin `user`, the namespace and
    step in the name's context, the committed value in the update without
    `tentative`, the attempted one in the update with `tentative: "true"`.
    The step is kept as Dataflow names it (s1, s2, ...): without the job's
    graph it cannot be translated, and `DataflowMetrics` would then merge
    one counter's steps into one result where they must be summed.
    """
    values: dict[tuple[str, str, str], dict[str, int]] = {}
    for update in updates:
        name, scalar = update.name, update.scalar
        # Not a service metric, nor a distribution (no scalar); bool is not a count.
        if name.origin != "user" or not isinstance(scalar, int | float) or isinstance(scalar, bool):
            continue
        context = dict(name.context)
        key = (context.get("step", ""), context.get("namespace", ""), name.name)
        kind = "attempted" if context.get("tentative") == "true" else "committed"
        values.setdefault(key, {})[kind] = int(scalar)
    return tuple(
        MetricResult(
            MetricKey(step, MetricName(namespace, name)),
            committed=value.get("committed"),
            attempted=value.get("attempted", value.get("committed")),
        )
        for (step, namespace, name), value in values.items()
    )


def _utc(moment: datetime | None) -> datetime | None:
    """A plain UTC datetime (the client's timestamps are a subclass carrying nanoseconds)."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, UTC
    )
