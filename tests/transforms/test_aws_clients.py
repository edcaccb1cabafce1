"""Every boto3 client the project makes has bounded timeouts: `aws_client_config`'s.

A scan of the code (each `.client(...)` call on a boto3 session and any
`boto3.client`/`boto3.resource` shortcut) and, for the clients made at run
time, a record of the configuration of every client a backfill into every
AWS sink creates. Beam's own S3 filesystem client is not ours (it takes no
config); the backfill lists `--source` with its own bounded client first.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from apache_beam.io.aws.clients.s3 import boto3_client as beam_s3_client

from pipelines import backfill
from pipelines.launch import parse_options
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.sinks import DuckDBWarehouse, provision_sinks
from tools.generate_archive import generate, write_archive
from transforms.infrastructure import (
    AWS_ATTEMPTS,
    CLIENT_CONFIG,
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    RETRYING_CLIENT_CONFIG,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "transforms", "tools", "bench", "schemas")
#: The shared configurations, as a module may import them.
SHARED = {"CLIENT_CONFIG", "RETRYING_CLIENT_CONFIG"}


def _modules() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _configs_made_by_aws_client_config(tree: ast.Module) -> set[str]:
    """Module-level names bound to `aws_client_config(...)`, and the shared ones imported."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "transforms.infrastructure":
            names |= {alias.asname or alias.name for alias in node.names if alias.name in SHARED}
        elif isinstance(node, ast.Assign | ast.AnnAssign) and _is_aws_client_config(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names


def _is_aws_client_config(node: ast.expr | None) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "aws_client_config"
    )


def unbounded_clients(source: str) -> list[int]:
    """The lines of `source` that make a boto3 client without `aws_client_config`'s config."""
    tree = ast.parse(source)
    bounded = _configs_made_by_aws_client_config(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr not in ("client", "resource"):
            continue
        receiver = ast.unparse(node.func.value)
        shortcut = receiver == "boto3"
        if not shortcut and "Session(" not in receiver:
            continue
        config = next((k.value for k in node.keywords if k.arg == "config"), None)
        ok = _is_aws_client_config(config) or (
            isinstance(config, ast.Name) and config.id in bounded
        )
        # The shortcuts use boto3's default session, shared and configured behind our back.
        if shortcut or not ok:
            found.append(node.lineno)
    return sorted(found)


def test_every_boto3_client_in_the_code_uses_aws_client_config() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _modules()
        for line in unbounded_clients(path.read_text())
    ]
    assert found == []


def test_the_scan_finds_each_client_made_otherwise() -> None:
    source = (
        "import boto3\n"
        "from transforms.infrastructure import CLIENT_CONFIG, aws_client_config\n"
        "LOCAL = aws_client_config(4)\n"
        "OTHER = botocore.config.Config(read_timeout=600)\n"
        "a = boto3.session.Session().client('s3', config=CLIENT_CONFIG)\n"
        "b = boto3.session.Session().client('s3', config=LOCAL)\n"
        "c = boto3.session.Session().client('s3', config=aws_client_config(2))\n"
        "d = boto3.session.Session().client('s3')\n"
        "e = boto3.session.Session().resource('s3', config=OTHER)\n"
        "f = boto3.client('s3', config=CLIENT_CONFIG)\n"
    )
    assert unbounded_clients(source) == [8, 9, 10]


@pytest.fixture
def client_configs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """(service, config) of every client a boto3 session makes while the test runs."""
    made: list[tuple[str, Any]] = []
    real = boto3.session.Session.client

    def recording(self: boto3.session.Session, service: str, *args: Any, **kwargs: Any) -> Any:
        made.append((service, kwargs.get("config")))
        return real(self, service, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", recording)
    return made


def _bounded(config: Any) -> bool:
    return (
        isinstance(config, botocore.config.Config)
        and (config.connect_timeout, config.read_timeout) == (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
        and config.retries is not None
        and config.retries.get("mode") == "standard"
    )


def test_the_shared_configs_are_bounded() -> None:
    assert _bounded(CLIENT_CONFIG) and _bounded(RETRYING_CLIENT_CONFIG)
    assert CLIENT_CONFIG.retries == {"mode": "standard", "total_max_attempts": 1}
    assert not _bounded(botocore.config.Config())


def test_every_client_a_backfill_into_every_aws_sink_makes_is_bounded(
    moto_server: MotoServer,
    postgres_server: PostgresServer,
    tmp_path: Path,
    client_configs: list[tuple[str, Any]],
) -> None:
    archive = tmp_path / "archive"
    write_archive(generate(payments=6, seed=11), archive)
    sinks = provision_sinks(postgres_server, DuckDBWarehouse(tmp_path / "w.duckdb"))
    client_configs.clear()  # the provisioning's own clients are the test's

    flags = [*sinks.flags(), "--cloudwatch_namespace", "Stripe/Test"]
    assert backfill.run(["--source", str(archive), *flags]) == 0

    assert {service for service, _ in client_configs} == {
        "cloudwatch", "dynamodb", "events", "sqs"
    }  # fmt: skip
    assert [service for service, config in client_configs if not _bounded(config)] == []


@pytest.mark.parametrize(
    ("environment", "retries"),
    [
        ({}, {"mode": "standard", "total_max_attempts": AWS_ATTEMPTS}),
        (
            {"AWS_RETRY_MODE": "adaptive", "AWS_MAX_ATTEMPTS": "7"},
            {"mode": "adaptive", "total_max_attempts": 7},
        ),
    ],
    ids=["standard-by-default", "the-environment-decides"],
)
def test_beams_own_s3_client_retries_in_standard_mode_unless_told_otherwise(
    environment: dict[str, str], retries: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
        # Set, then removed: the test's end restores the variable as it was before.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    options = parse_options(
        ["--source", "s3://archive/stripe/", "--s3_region_name", "eu-west-1"],
        backfill.OPTION_CLASSES,
        prog="p",
        description="",
    )

    # The client Beam's S3 filesystem reads the archive with; it is made with no Config.
    client = beam_s3_client.Client(options).client

    assert client.meta.config.retries == retries
    expected_attempts = environment.get("AWS_MAX_ATTEMPTS", str(AWS_ATTEMPTS))
    assert os.environ["AWS_MAX_ATTEMPTS"] == expected_attempts
