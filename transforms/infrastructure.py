"""What sources and sinks share: the configuration error, the retry policy, AWS plumbing.

Sources and sinks both import this module and never each other. Nothing
here knows a record type.

- `InfrastructureError`: a service failed after its retries (the job exits 3
  with its one-line message); `ConfigurationError`, one of them: a stream,
  table or queue the job needs is missing or not as expected (raised by the
  pre-launch checks and in `DoFn.setup()`).
- `Backoff` and `call_with_retries`: the writers' retry policy (full-jitter
  exponential backoff) for AWS calls; their clients (`CLIENT_CONFIG`) make
  one attempt per call so that the policy is applied once. Every other client
  (`RETRYING_CLIENT_CONFIG`) uses botocore's standard retry mode. Both have
  bounded connect and read timeouts.
- `error_code`, `is_retryable` (botocore's standard-mode rules), `describe_error`:
  what an AWS failure is.
- `dynamodb_client`, `check_table_key`: DynamoDB clients and key checks.
- `naming_flag`: a pre-launch check's `ConfigurationError` starts with the flag to fix.
- `describe_request_error`: a Google client's failure in one line that stays the same.
- `use_aws_role`, `WebIdentityRole`, `metadata_token_source`: AWS credentials
  for workers outside AWS (Dataflow): every boto3 session of the process
  assumes one IAM role with a Google-signed identity token.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.retries.standard


class InfrastructureError(RuntimeError):
    """A service the job needs (a store, a queue, a table, the warehouse) failed or refused,
    after any retries: the job ends with this one-line message and exit code 3."""


class ConfigurationError(InfrastructureError):
    """A source's or sink's infrastructure (stream, table, queue) is missing or not as the job
    expects; the job stops before launch with this message."""


@dataclass(frozen=True)
class Backoff:
    """Retry policy: at most `max_attempts` attempts, full-jitter exponential delays.

    The delay before attempt n+1 (n >= 1) is uniform in
    [0, min(max_delay, initial_delay * 2 ** (n - 1))] seconds.
    """

    max_attempts: int = 8
    initial_delay: float = 0.1
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("need 0 <= initial_delay <= max_delay")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return rng.uniform(0.0, min(self.max_delay, self.initial_delay * 2 ** (attempt - 1)))


#: Every AWS call is bounded: a closed port or a silent endpoint fails in seconds.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
#: Attempts of a call botocore retries by itself (`RETRYING_CLIENT_CONFIG`).
AWS_ATTEMPTS = 3


def aws_client_config(max_attempts: int) -> botocore.config.Config:
    """botocore's standard retry mode (its list of throttling and transient errors, its
    backoff) with `max_attempts` attempts per call, and bounded connect and read timeouts."""
    return botocore.config.Config(
        # `total_max_attempts` counts the first attempt; botocore's `max_attempts` does not.
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
    )


def standard_retries_by_default(environ: MutableMapping[str, str] = os.environ) -> None:
    """botocore's standard retry mode for the clients made without a Config of ours.

    Beam's own S3 client (the archive's reads, after the pre-launch check) is made
    with no `botocore.config.Config`, so botocore takes its retry mode and attempts
    from the environment, `legacy` and 5 by default. Unless the environment already
    says otherwise, it gets what every client of ours has: `standard`, `AWS_ATTEMPTS`
    attempts in all. (Its timeouts stay botocore's, 60 s: no variable sets them.)
    """
    environ.setdefault("AWS_RETRY_MODE", "standard")
    environ.setdefault("AWS_MAX_ATTEMPTS", str(AWS_ATTEMPTS))


#: For the writers, whose own loops retry per `Backoff` (and the ledger decides whether a
#: send whose answer was lost may be repeated): botocore tries each call once.
CLIENT_CONFIG = aws_client_config(max_attempts=1)
#: For calls nothing else retries (pre-launch checks, the Kinesis source, the tools).
RETRYING_CLIENT_CONFIG = aws_client_config(max_attempts=AWS_ATTEMPTS)


DEFAULT_BACKOFF = Backoff()

# What botocore's standard retry mode retries: transient errors (its codes, HTTP 500, 502,
# 503, 504, connection errors and timeouts) and throttling (its codes, HTTP 429).
_STANDARD_MODE_CHECKS = (
    botocore.retries.standard.TransientRetryableChecker(),
    botocore.retries.standard.ThrottledRetryableChecker(),
    botocore.retries.standard.ThrottlingStatusCodeChecker(),
)


@dataclass(frozen=True)
class _Status:
    """The part of an HTTP response botocore's retry checks read."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


def error_code(error: Exception) -> str:
    """A short code for an AWS call failure: the service's code or the exception class."""
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code") or "ClientError")
    return type(error).__name__


def is_retryable(error: Exception) -> bool:
    """True when botocore's standard retry mode would retry `error`: throttling,
    server-side transient failures, connection errors and timeouts."""
    if isinstance(error, botocore.exceptions.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        context = botocore.retries.standard.RetryContext(
            attempt_number=1,
            parsed_response=error.response,
            http_response=_Status(status) if isinstance(status, int) else None,
        )
    else:
        context = botocore.retries.standard.RetryContext(attempt_number=1, caught_exception=error)
    return any(check.is_retryable(context) for check in _STANDARD_MODE_CHECKS)


def call_with_retries(call: Callable[[], Any], backoff: Backoff, rng: random.Random) -> Any:
    """`call()`, retried on retryable errors per `backoff`; the last error is raised."""
    attempt = 1
    while True:
        try:
            return call()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            if attempt >= backoff.max_attempts or not is_retryable(error):
                raise
            time.sleep(backoff.delay(attempt, rng))
            attempt += 1


def dynamodb_client() -> Any:
    """A DynamoDB client from the standard AWS chain, without botocore retries."""
    return boto3.session.Session().client("dynamodb", config=CLIENT_CONFIG)


def check_table_key(
    table_name: str, key_schema: Sequence[tuple[str, str]], client: Any | None = None
) -> None:
    """Raise `ConfigurationError` unless `table_name` exists with exactly `key_schema`.

    `key_schema` is ((attribute, "HASH"), (attribute, "RANGE")?) in order.
    """
    client = client or boto3.session.Session().client("dynamodb", config=RETRYING_CLIENT_CONFIG)
    expected = ", ".join(f"{name} {kind}" for name, kind in key_schema)
    try:
        table = client.describe_table(TableName=table_name)["Table"]
    except botocore.exceptions.ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            raise ConfigurationError(
                f"the DynamoDB table {table_name!r} does not exist; the job does not create it: "
                f"check the name, region and endpoint, or create it with key ({expected})"
            ) from None
        raise
    found = tuple(
        (key["AttributeName"], key["KeyType"])
        for key in sorted(table["KeySchema"], key=lambda key: key["KeyType"] != "HASH")
    )
    if found != tuple(key_schema):
        shown = ", ".join(f"{name} {kind}" for name, kind in found)
        raise ConfigurationError(
            f"the DynamoDB table {table_name!r} has key ({shown}); the job needs ({expected}): "
            "give a table with that key"
        )


@contextlib.contextmanager
def naming_flag(option: str) -> Iterator[None]:
    """A `ConfigurationError` raised inside starts with `<option>: `: the line names what to fix.

    For the pre-launch checks; on a worker the same checks have no flag to name.
    """
    try:
        yield
    except ConfigurationError as error:
        raise ConfigurationError(f"{option}: {error}") from None


def describe_error(error: Exception) -> str:
    """'<code>: <service message>' for a dead letter's error column."""
    if isinstance(error, botocore.exceptions.ClientError):
        message = error.response.get("Error", {}).get("Message", "")
        return f"{error_code(error)}: {message}"
    return f"{type(error).__name__}: {error}"


def describe_request_error(error: Exception) -> str:
    """A Google client's failure in one line: its type and, for an unanswered request, where to.

    A connection error's own text holds object addresses, different on every run.
    """
    request = getattr(error, "request", None)
    url = getattr(request, "url", None)
    if url:
        parts = urllib.parse.urlsplit(str(url))
        return f"{type(error).__name__} from {parts.scheme}://{parts.netloc}"
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


#: Google's metadata server on every Compute Engine (so Dataflow) VM: an OpenID Connect
#: identity token of the VM's service account, signed by Google, for the given audience.
METADATA_IDENTITY_URL = (
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity"
)
#: What the identity token's `aud` says; the role's trust policy checks it (`oaud`).
DEFAULT_WEB_IDENTITY_AUDIENCE = "sts.amazonaws.com"
#: Google identity tokens live one hour; rewritten this often, the file is never stale.
TOKEN_REFRESH_INTERVAL_S = 600.0
#: Credentials botocore would use before a web identity role: with a role they are refused.
STATIC_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")

_LOGGER = logging.getLogger(__name__)

TokenSource = Callable[[], str]


def metadata_token_source(
    audience: str = DEFAULT_WEB_IDENTITY_AUDIENCE, url: str = METADATA_IDENTITY_URL
) -> TokenSource:
    """A function returning a fresh Google-signed identity token from the metadata server.

    `url` is the metadata server's identity endpoint (tests give a local one).
    """
    query = urllib.parse.urlencode({"audience": audience, "format": "full"})
    request = urllib.request.Request(f"{url}?{query}", headers={"Metadata-Flavor": "Google"})

    def fetch() -> str:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                token = response.read().decode("ascii", errors="replace").strip()
        except OSError as error:  # URLError, HTTPError, timeouts
            raise ConfigurationError(
                f"could not get an identity token from {url}: {error} (outside Google Cloud, "
                "leave --aws_role_arn out and use the standard AWS credentials)"
            ) from None
        if token.count(".") != 2:
            raise ConfigurationError(f"the identity endpoint {url} did not return a JWT")
        return token

    return fetch


class WebIdentityRole:
    """Every boto3 session the process makes once `start()`ed assumes `role_arn`.

    botocore's own web identity provider does the work: with
    `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE` set, each session's
    credentials are `DeferredRefreshableCredentials` that call STS
    `AssumeRoleWithWebIdentity` with the file's token on first use and again
    before they expire (15 minutes before, by botocore's rule). The
    environment rather than an explicit credentials object because clients
    the project does not construct, Beam's S3 filesystem above all, make
    their own `boto3.session.Session()`; the environment reaches them all.

    The token file (private to the user, replaced atomically) is rewritten
    every `refresh_interval_s` by a daemon thread from `token_source`, so
    whenever botocore reads it the token is far from its one-hour expiry.
    No secret is in flags or logs: the token lives in that file only, and
    the AWS credentials only in botocore's memory.
    """

    def __init__(
        self,
        role_arn: str,
        token_source: TokenSource,
        *,
        refresh_interval_s: float = TOKEN_REFRESH_INTERVAL_S,
        session_name: str | None = None,
    ) -> None:
        if not role_arn.startswith("arn:") or ":role/" not in role_arn:
            raise ConfigurationError(f"not an IAM role ARN: {role_arn!r}")
        self.role_arn = role_arn
        self._token_source = token_source
        self._refresh_interval_s = refresh_interval_s
        host = "".join(c if c.isalnum() or c in "-_.@=," else "-" for c in socket.gethostname())
        self.session_name = (session_name or f"stripe-pipeline-{host}")[:64]
        self._directory = Path(tempfile.mkdtemp(prefix="aws-web-identity-"))
        self.token_file = self._directory / "token"
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshes = 0

    def refresh_token(self) -> None:
        """Writes a fresh token to the token file (atomically: botocore may be reading it)."""
        token = self._token_source()
        partial = self._directory / "token.partial"
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(token)
        os.replace(partial, self.token_file)
        self.refreshes += 1

    def start(self) -> None:
        """Writes the first token, points the environment at it, starts refreshing.

        Raises `ConfigurationError` when static credentials are configured too,
        since botocore would silently prefer them to the role.
        """
        static = [name for name in STATIC_CREDENTIAL_VARIABLES if os.environ.get(name)]
        if static:
            raise ConfigurationError(
                f"--aws_role_arn is given but {', '.join(static)} is set, which AWS clients "
                "would use instead of the role: unset it"
            )
        self.refresh_token()
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ["AWS_ROLE_ARN"] = self.role_arn
        os.environ["AWS_WEB_IDENTITY_TOKEN_FILE"] = str(self.token_file)
        os.environ["AWS_ROLE_SESSION_NAME"] = self.session_name
        self._thread = threading.Thread(
            target=self._keep_fresh, name="aws-web-identity-token", daemon=True
        )
        self._thread.start()

    def _keep_fresh(self) -> None:
        delay = self._refresh_interval_s
        while not self._stopped.wait(delay):
            try:
                self.refresh_token()
                delay = self._refresh_interval_s
            except Exception as error:  # noqa: BLE001 - the next attempt may succeed
                # The token in the file stays valid for most of an hour; try again soon.
                _LOGGER.warning("could not refresh the AWS web identity token: %s", error)
                delay = min(60.0, self._refresh_interval_s)

    def stop(self) -> None:
        """Stops refreshing and removes the role from the environment and the token file."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        for name in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME"):
            os.environ.pop(name, None)
        for path in (self.token_file, self._directory / "token.partial"):
            path.unlink(missing_ok=True)
        self._directory.rmdir()


_ACTIVE_ROLE: WebIdentityRole | None = None
_ROLE_LOCK = threading.Lock()


def use_aws_role(role_arn: str, token_source: TokenSource) -> WebIdentityRole:
    """Starts `WebIdentityRole(role_arn, token_source)` for this process, once.

    Idempotent for the same role (the first token source stays); another
    role in the same process is a `ConfigurationError`.
    """
    global _ACTIVE_ROLE
    with _ROLE_LOCK:
        if _ACTIVE_ROLE is not None:
            if _ACTIVE_ROLE.role_arn != role_arn:
                raise ConfigurationError(
                    f"this process already assumes {_ACTIVE_ROLE.role_arn}, not {role_arn}"
                )
            return _ACTIVE_ROLE
        role = WebIdentityRole(role_arn, token_source)
        role.start()
        _ACTIVE_ROLE = role
        return role


def stop_aws_role() -> None:
    """Undoes `use_aws_role` (for tests and for a launcher that runs several jobs)."""
    global _ACTIVE_ROLE
    with _ROLE_LOCK:
        if _ACTIVE_ROLE is not None:
            _ACTIVE_ROLE.stop()
            _ACTIVE_ROLE = None
