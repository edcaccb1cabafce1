"""The Flex Template: metadata generated from the jobs' options, its schema, the entry point.

gcloud and docker cannot run here; what can be checked offline is: each
committed `infra/dataflow/<job>-metadata.json` lists every flag of its job
with the help text `--help` prints, validates against the metadata schema,
and the entry point submits the job named by FLEX_TEMPLATE_JOB with switch
parameters (`--flag=true`) turned into what argparse takes.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pipelines import flex_template
from pipelines.flex_template import (
    JOB_VARIABLE,
    JOBS,
    job_parser,
    main,
    normalise,
    switch_flags,
)
from tools.flex_metadata import METADATA_DIR, help_text, metadata_path, rendered

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _committed(job: str) -> dict[str, Any]:
    return dict(json.loads(metadata_path(job).read_text()))


@pytest.mark.parametrize("job", sorted(JOBS))
def test_the_committed_metadata_is_what_the_options_generate(job: str) -> None:
    assert metadata_path(job).read_text() == rendered(job), (
        f"{metadata_path(job).name} is stale: run .venv/bin/python -m tools.flex_metadata --write"
    )


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_flag_is_a_parameter_with_its_help_text(job: str) -> None:
    parser = job_parser(JOBS[job][0])
    flags = {action.dest: help_text(action, parser) for action in parser._actions}
    parameters = {p["name"]: p["helpText"] for p in _committed(job)["parameters"]}

    assert sorted(flags) == sorted(parameters)
    assert {name: text for name, text in flags.items() if parameters[name] != text} == {}
    assert "aws_role_arn" in parameters


@pytest.mark.parametrize("job", sorted(JOBS))
def test_the_metadata_is_valid_and_its_regexes_accept_the_defaults(job: str) -> None:
    schema = json.loads((METADATA_DIR / "metadata.schema.json").read_text())
    document = _committed(job)

    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    assert document["streaming"] is (job == "streaming")
    required = [p["name"] for p in document["parameters"] if not p["isOptional"]]
    assert required == (["kinesis_stream"] if job == "streaming" else [])
    parser = job_parser(JOBS[job][0])
    defaults = {action.dest: action.default for action in parser._actions}
    for entry in document["parameters"]:
        for pattern in entry.get("regexes", []):
            default = defaults[entry["name"]]
            if default is None:
                continue  # Not given, the parameter is not passed (--stripe_mode's default).
            text = str(default).lower() if isinstance(default, bool) else str(default)
            assert re.fullmatch(pattern, text), (entry["name"], pattern)


def test_the_metadata_schema_refuses_a_parameter_without_help() -> None:
    schema = json.loads((METADATA_DIR / "metadata.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError, match="'helpText' is a required property"):
        jsonschema.validate({"name": "x", "parameters": [{"name": "a", "label": "A"}]}, schema)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--a_switch=true", "--warehouse=w"], ["--a_switch", "--warehouse=w"]),
        (["--a_switch=False", "--warehouse=w"], ["--warehouse=w"]),
        (["--a_switch"], ["--a_switch"]),
        (["--warehouse=a=b"], ["--warehouse=a=b"]),
    ],
    ids=["true", "false", "bare", "value-with-equals"],
)
def test_switch_parameters_become_flags(argv: list[str], expected: list[str]) -> None:
    assert normalise(argv, frozenset({"--a_switch"})) == expected


@pytest.mark.parametrize(
    ("job", "switches"),
    [
        ("backfill", {"--allow_empty", "--complete_from_stripe", "--no_messages"}),
        ("streaming", {"--complete_from_stripe", "--no_messages"}),
    ],
)
def test_the_jobs_switches_are_the_ones_the_launcher_normalises(
    job: str, switches: set[str]
) -> None:
    assert switch_flags(JOBS[job][0]) == frozenset(switches)


def test_a_switch_with_another_value_is_refused() -> None:
    with pytest.raises(ValueError, match="^--a_switch takes true or false, got 'yes'$"):
        normalise(["--a_switch=yes"], frozenset({"--a_switch"}))


def test_the_entry_point_refuses_a_switch_with_another_value_as_usage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(JOB_VARIABLE, "backfill")

    assert main(["--no_messages=yes"]) == 2

    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "",
        "python -m pipelines.flex_template: error: --no_messages takes true or false, got 'yes'\n",
    )


def test_the_entry_point_submits_the_named_job_without_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[list[str], bool]] = []

    def fake_run(argv: list[str], *, wait: bool = True) -> int:
        calls.append((argv, wait))
        return 0

    monkeypatch.setitem(JOBS, "backfill", (JOBS["backfill"][0], fake_run))
    monkeypatch.setenv(flex_template.JOB_VARIABLE, "backfill")

    assert flex_template.main(["--stripe_mode=live", "--source=s3://b/p/"]) == 0
    assert calls == [(["--stripe_mode=live", "--source=s3://b/p/"], False)]


def test_an_unknown_job_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(flex_template.JOB_VARIABLE, "nightly")
    assert flex_template.main([]) == 2
    assert capsys.readouterr().err == (
        "FLEX_TEMPLATE_JOB must be one of backfill, streaming, got 'nightly'\n"
    )


def test_the_dockerfile_copies_what_exists_and_runs_the_entry_point() -> None:
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.MULTILINE)
    sources = [source for line in copied for source in line.split()]
    assert [s for s in sources if not (PROJECT_ROOT / s).exists()] == []
    assert "ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipelines/flex_template.py" in text
    assert "RUN pip install --no-cache-dir -r requirements.lock" in text


def test_the_lock_pins_every_package_exactly() -> None:
    lines = [
        line
        for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines
    assert [
        line for line in lines if not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^\s=]+", line)
    ] == []
    names = {re.split(r"[=\[]", line, maxsplit=1)[0].lower() for line in lines}
    assert {"apache-beam", "boto3", "duckdb", "google-cloud-bigquery", "psycopg"} <= names
    assert "apache-beam==2.77.0" in lines


def test_the_metadata_tool_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    from tools import flex_metadata

    with pytest.raises(SystemExit) as exited:
        flex_metadata.main(["--help"])
    assert exited.value.code == 0
    assert "--check" in capsys.readouterr().out
    assert isinstance(job_parser(JOBS["streaming"][0]), argparse.ArgumentParser)
