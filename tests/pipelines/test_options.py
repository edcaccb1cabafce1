"""Option checks: the backfill's shuffle choice, the core's and the Identity API flags.

The backfill groups on disk on local runners and with the runner's shuffle
elsewhere; `--identity_api_url` needs the token in the environment and an
https endpoint, and is refused before anything is read or written; the core
refuses a charge wait past the settlement timeout, naming the flags; `--complete_from_stripe`
needs the key in the environment, in every job.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines import backfill, streaming
from pipelines.options import (
    IDENTITY_API_TOKEN_ENV,
    STRIPE_API_KEY_ENV,
    BackfillOptions,
    CoreOptions,
    IdentityOptions,
)

TMP = tempfile.gettempdir()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], TMP),
        (["--runner", "FnApiRunner"], TMP),
        (["--runner", "DirectRunner"], TMP),
        (["--runner", "DataflowRunner"], None),
        (["--shuffle", "runner"], None),
        (["--shuffle", "disk"], TMP),
    ],
    ids=["no-runner", "fn-api", "direct", "dataflow", "runner-chosen", "disk-chosen"],
)
def test_auto_groups_on_disk_only_on_local_runners(argv: list[str], expected: str | None) -> None:
    options = PipelineOptions(argv)
    runner = options.view_as(StandardOptions).runner

    assert options.view_as(BackfillOptions).disk_shuffle_dir(runner) == expected


def test_the_shuffle_folder_can_be_chosen(tmp_path: Path) -> None:
    options = PipelineOptions(["--shuffle_dir", str(tmp_path)])

    assert options.view_as(BackfillOptions).disk_shuffle_dir(None) == str(tmp_path)


def test_grouping_on_disk_is_refused_on_a_remote_runner() -> None:
    options = PipelineOptions(["--shuffle", "disk", "--runner", "DataflowRunner"])

    with pytest.raises(ValueError, match="--shuffle disk needs a local runner") as raised:
        options.view_as(BackfillOptions).disk_shuffle_dir("DataflowRunner")
    assert str(raised.value) == (
        "--shuffle disk needs a local runner, whose workers share --shuffle_dir; "
        "DataflowRunner workers do not: use --shuffle runner"
    )


JOBS = [pytest.param(backfill.run, id="backfill"), pytest.param(streaming.run, id="streaming")]


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize(
    ("url", "token", "message"),
    [
        pytest.param(
            "https://idapi.example.com",
            None,
            "--identity_api_url needs the IDENTITY_API_TOKEN environment variable",
            id="no-token",
        ),
        pytest.param(
            "http://idapi.example.com",
            "t0ken",
            "--identity_api_url must be https (http only for this machine): "
            "'http://idapi.example.com'",
            id="http-over-a-network",
        ),
    ],
)
def test_identity_flags_are_checked_before_launch(
    job: Callable[[list[str]], int],
    url: str,
    token: str | None,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if token is None:
        monkeypatch.delenv(IDENTITY_API_TOKEN_ENV, raising=False)
    else:
        monkeypatch.setenv(IDENTITY_API_TOKEN_ENV, token)
    warehouse = tmp_path / "out" / "w.duckdb"
    argv = ["--kinesis_stream", "s", "--identity_api_url", url, "--warehouse", str(warehouse)]

    assert job([*argv, "--stripe_mode", "live"]) == 2

    err = capsys.readouterr().err
    assert err.endswith(f": error: {message}\n")
    assert not warehouse.parent.exists()


def test_the_identity_step_is_off_without_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IDENTITY_API_TOKEN_ENV, "t0ken")
    assert PipelineOptions([]).view_as(IdentityOptions).identity_resolver() is None


@pytest.mark.parametrize("mode", ["live", "test"])
def test_the_identity_step_takes_its_flags(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IDENTITY_API_TOKEN_ENV, " t0ken\n")
    argv = ["--identity_api_url", "https://idapi.example.com/", "--identity_max_concurrent", "2"]

    step = PipelineOptions([*argv, "--stripe_mode", mode]).view_as(IdentityOptions)
    resolver = step.identity_resolver()

    assert resolver is not None
    assert resolver.display_data() == {
        "api_url": "https://idapi.example.com",
        "max_concurrent": 2,
        "stripe_mode": mode,
    }


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize("mode", [None, "all"], ids=["no-mode", "mode-all"])
def test_the_identity_api_is_a_production_effect_that_needs_a_stage(
    job: Callable[[list[str]], int],
    mode: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(IDENTITY_API_TOKEN_ENV, "t0ken")
    warehouse = tmp_path / "out" / "w.duckdb"
    argv = ["--kinesis_stream", "s", "--identity_api_url", "https://idapi.example.com"]
    stage = [] if mode is None else ["--stripe_mode", mode]

    assert job([*argv, *stage, "--warehouse", str(warehouse)]) == 2

    assert capsys.readouterr().err.endswith(
        "error: --stripe_mode live or --stripe_mode test is required with production sinks "
        "(--identity_api_url): a deployment serves one stage, and test payments must not "
        "reach live resources\n"
    )
    assert not warehouse.parent.exists()


@pytest.mark.parametrize("job", JOBS)
def test_help_lists_the_identity_flags(
    job: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        job(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--identity_api_url", "--identity_timeout_s", "--identity_max_concurrent"):
        assert flag in help_text
    assert IDENTITY_API_TOKEN_ENV in help_text


@pytest.mark.parametrize("job", JOBS)
def test_the_core_refuses_a_charge_wait_past_the_timeout_naming_the_flags(
    job: Callable[[list[str]], int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--charge_wait_minutes", "1440", "--settlement_timeout_days", "1"]
    argv = [*flags, "--kinesis_stream", "s", "--warehouse", str(tmp_path / "w.duckdb")]

    assert job(argv) == 2
    assert capsys.readouterr().err.endswith(
        "error: --charge_wait_minutes must be shorter than --settlement_timeout_days\n"
    )


@pytest.mark.parametrize(
    ("job", "prog"),
    [
        pytest.param(backfill.run, backfill.PROG, id="backfill"),
        pytest.param(streaming.run, streaming.PROG, id="streaming"),
    ],
)
def test_completing_from_stripe_needs_the_key_in_the_environment(
    job: Callable[[list[str]], int],
    prog: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(STRIPE_API_KEY_ENV, raising=False)
    warehouse = tmp_path / "out" / "w.duckdb"
    argv = ["--kinesis_stream", "s", "--complete_from_stripe", "--warehouse", str(warehouse)]

    assert job(argv) == 2

    assert capsys.readouterr().err == (
        f"{prog}: error: --complete_from_stripe needs the STRIPE_API_KEY environment variable\n"
    )
    assert not warehouse.parent.exists()


def test_the_completion_step_is_off_without_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STRIPE_API_KEY_ENV, "rk_test_secretsecret")

    assert PipelineOptions([]).view_as(CoreOptions).charge_completer() is None


def test_the_stripe_api_base_must_be_an_http_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STRIPE_API_KEY_ENV, "rk_test_secretsecret")
    argv = ["--complete_from_stripe", "--stripe_api_base", "api.stripe.com"]

    with pytest.raises(ValueError) as raised:
        PipelineOptions(argv).view_as(CoreOptions).charge_completer()
    assert str(raised.value) == "--stripe_api_base must be an http(s):// address"
