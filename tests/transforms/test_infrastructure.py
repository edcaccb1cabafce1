"""AWS credentials by web identity: a Google-signed token in, the role's credentials out.

Against moto's STS on 127.0.0.1 (AssumeRoleWithWebIdentity, GetCallerIdentity)
with a fake token source, or the local stand-in for Google's metadata server.
botocore's own web identity provider does the assuming and the refreshing;
these tests check that every new boto3 session gets the role's credentials,
that a refresh asks STS again with the token file's current token, and that
static keys next to a role are refused.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import botocore.credentials
import pytest

from tests.fixtures.metadata_server import SERVICE_ACCOUNT_ID, MetadataServer
from tests.fixtures.moto_server import MotoServer
from transforms.infrastructure import (
    ConfigurationError,
    WebIdentityRole,
    metadata_token_source,
    stop_aws_role,
    use_aws_role,
)

ROLE_ARN = "arn:aws:iam::123456789012:role/stripe-pipeline-test"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class FakeTokens:
    """A token source: token-1, token-2, ... (moto's STS does not check them)."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.third = threading.Event()

    def __call__(self) -> str:
        token = f"header.token-{len(self.issued) + 1}.signature"
        self.issued.append(token)
        if len(self.issued) >= 3:
            self.third.set()
        return token


@pytest.fixture
def without_static_keys(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto on 127.0.0.1, with the fixture's static keys removed so a role can be used."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    yield
    stop_aws_role()
    for name in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME"):
        assert name not in os.environ


def _caller_arn(session: boto3.session.Session) -> str:
    client = session.client("sts")
    try:
        return str(client.get_caller_identity()["Arn"])
    finally:
        client.close()


def test_every_new_session_assumes_the_role_with_the_tokens(without_static_keys: None) -> None:
    tokens = FakeTokens()
    role = WebIdentityRole(ROLE_ARN, tokens, session_name="worker-1")
    role.start()
    try:
        first, second = boto3.session.Session(), boto3.session.Session()
        credentials = first.get_credentials()

        assert credentials is not None
        assert credentials.method == "assume-role-with-web-identity"
        assert (
            _caller_arn(first)
            == "arn:aws:sts::123456789012:assumed-role/stripe-pipeline-test/worker-1"
        )
        assert _caller_arn(second) == _caller_arn(first)
        assert tokens.issued == ["header.token-1.signature"]
        assert role.token_file.read_text() == "header.token-1.signature"
        assert stat.S_IMODE(role.token_file.stat().st_mode) == 0o600
    finally:
        role.stop()
    assert not role.token_file.exists()


def test_credentials_are_refreshed_before_expiry_with_the_current_token(
    without_static_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = FakeTokens()
    role = WebIdentityRole(ROLE_ARN, tokens)
    role.start()
    try:
        credentials = boto3.session.Session().get_credentials()
        assert credentials is not None
        before = credentials.get_frozen_credentials()
        expiry = credentials._expiry_time  # botocore's, set from STS's Expiration
        role.refresh_token()
        # Ten minutes before expiry, inside botocore's mandatory refresh window:
        # a client's next call must get new credentials first. Time moves for
        # both clocks botocore reads: the credentials' and its fetcher cache's.
        later = expiry - timedelta(minutes=10)
        credentials._time_fetcher = lambda: later
        monkeypatch.setattr(botocore.credentials, "_local_now", lambda: later)
        after = credentials.get_frozen_credentials()
    finally:
        role.stop()
    assert after.access_key != before.access_key
    assert after.secret_key != before.secret_key
    assert credentials._expiry_time > expiry
    assert tokens.issued == ["header.token-1.signature", "header.token-2.signature"]


def test_the_token_file_is_rewritten_in_the_background(without_static_keys: None) -> None:
    tokens = FakeTokens()
    role = WebIdentityRole(ROLE_ARN, tokens, refresh_interval_s=0.01)
    role.start()
    try:
        assert tokens.third.wait(timeout=10)
    finally:
        role.stop()
    assert role.refreshes >= 3
    assert tokens.issued[:3] == [f"header.token-{n}.signature" for n in (1, 2, 3)]


def test_static_keys_next_to_a_role_are_refused(moto_server: MotoServer) -> None:
    role = WebIdentityRole(ROLE_ARN, FakeTokens())
    with pytest.raises(ConfigurationError) as raised:
        role.start()
    assert str(raised.value) == (
        "--aws_role_arn is given but AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY is set, which AWS "
        "clients would use instead of the role: unset it"
    )
    assert "AWS_ROLE_ARN" not in os.environ


@pytest.mark.parametrize("arn", ["stripe-pipeline", "arn:aws:iam::123456789012:user/someone"])
def test_only_a_role_arn_is_accepted(arn: str) -> None:
    with pytest.raises(ConfigurationError, match="not an IAM role ARN"):
        WebIdentityRole(arn, FakeTokens())


def test_one_role_per_process(without_static_keys: None) -> None:
    tokens = FakeTokens()
    first = use_aws_role(ROLE_ARN, tokens)

    assert use_aws_role(ROLE_ARN, FakeTokens()) is first
    with pytest.raises(ConfigurationError, match="already assumes"):
        use_aws_role("arn:aws:iam::123456789012:role/another", tokens)


def test_the_metadata_server_is_asked_for_a_token_for_the_audience(
    metadata_server: MetadataServer,
) -> None:
    fetch = metadata_token_source("pipeline-audience", metadata_server.url)

    token = fetch()

    assert token == metadata_server.tokens[0]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert (claims["aud"], claims["azp"]) == ("pipeline-audience", SERVICE_ACCOUNT_ID)
    path, query, flavor = metadata_server.requests[0]
    assert path.endswith("/instance/service-accounts/default/identity")
    assert query == {"audience": ["pipeline-audience"], "format": ["full"]}
    assert flavor == "Google"


def test_an_answer_that_is_not_a_token_is_an_error(metadata_server: MetadataServer) -> None:
    metadata_server.body = "<html>not here</html>"
    with pytest.raises(ConfigurationError) as raised:
        metadata_token_source("a", metadata_server.url)()
    assert str(raised.value) == f"the identity endpoint {metadata_server.url} did not return a JWT"


WORKER_START = """
import json, os, sys
import boto3
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.worker.sdk_worker_main import _import_beam_plugins
FileSystems.set_options(PipelineOptions(sys.argv[1:]))
_import_beam_plugins(["pipelines.aws_role.AssumeAwsRoleOnWorkers"])
sts = boto3.session.Session().client("sts")
identity = sts.get_caller_identity()["Arn"]
print(json.dumps([os.environ["AWS_ROLE_ARN"], os.environ["AWS_DEFAULT_REGION"], identity]))
"""


def test_a_worker_assumes_the_role_when_beam_imports_its_plugins(
    moto_server: MotoServer, metadata_server: MetadataServer
) -> None:
    """What a Dataflow worker's SDK harness does at start, in a fresh process."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        and k != "AWS_DEFAULT_REGION"  # a Dataflow worker has none: --aws_region gives it
    }
    argv = [
        f"--aws_role_arn={ROLE_ARN}",
        f"--aws_identity_token_url={metadata_server.url}",
        "--aws_web_identity_audience=worker-audience",
        "--aws_region=eu-west-1",
    ]
    done = subprocess.run(
        [sys.executable, "-c", WORKER_START, *argv],
        env=environment,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    role_arn, region, caller = json.loads(done.stdout.splitlines()[-1])
    assert (role_arn, region) == (ROLE_ARN, "eu-west-1")
    assert caller.startswith("arn:aws:sts::123456789012:assumed-role/stripe-pipeline-test/")
    assert [query["audience"] for _, query, _ in metadata_server.requests] == [["worker-audience"]]


def test_no_metadata_server_is_a_one_line_error(metadata_server: MetadataServer) -> None:
    wrong_path = metadata_server.url.replace("/identity", "/nothing")
    with pytest.raises(ConfigurationError) as raised:
        metadata_token_source("a", wrong_path)()
    assert str(raised.value) == (
        f"could not get an identity token from {wrong_path}: HTTP Error 403: Forbidden "
        "(outside Google Cloud, leave --aws_role_arn out and use the standard AWS credentials)"
    )
