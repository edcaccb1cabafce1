"""Flags are taken only as spelt: no abbreviation, and a flag nobody defines names the closest."""

from __future__ import annotations

import pytest

from pipelines.flags import FlagParser, closest_flag, unknown_flags, unrecognized_message

KNOWN = frozenset({"--source", "--since", "--no_messages", "--stripe_mode", "--s3_region"})


@pytest.mark.parametrize(
    ("flag", "closest"),
    [
        ("--sourc", "--source"),
        ("--no_messag", "--no_messages"),
        ("--sinc", "--since"),
        ("--si", "--since"),
        ("--stripe", "--stripe_mode"),
        ("--sorce", "--source"),
        ("--stripe_moed", "--stripe_mode"),
        ("--zzzzzz", None),
    ],
    ids=[
        "abbreviation",
        "abbreviated-switch",
        "abbreviation-of-one-of-two",
        "short-abbreviation",
        "abbreviation-at-a-word",
        "typo",
        "transposed",
        "nothing-close",
    ],
)
def test_the_closest_flag_is_the_one_abbreviated_else_one_spelt_alike(
    flag: str, closest: str | None
) -> None:
    assert closest_flag(flag, KNOWN) == closest


def test_unknown_flags_are_the_arguments_argparse_takes_for_flags() -> None:
    args = ["--sourc", "/nowhere", "--stripe_mod=test", "-sinc", "x", "-5", "-", "--since"]
    assert unknown_flags([*args, "--a b", "--", "--zz"], KNOWN) == [
        ("--sourc", "--source"),
        ("--stripe_mod", "--stripe_mode"),
        ("-sinc", "--since"),
    ]


def test_the_message_names_the_first_unknown_flag_or_nothing() -> None:
    assert (
        unrecognized_message(["x", "--no_mess", "--zz"], KNOWN)
        == "unrecognized flag --no_mess (did you mean --no_messages?)"
    )
    assert unrecognized_message(["--zzzzzz"], KNOWN) == "unrecognized flag --zzzzzz"
    assert unrecognized_message(["x", "--source"], KNOWN) is None


def parser(sql: str = "?") -> FlagParser:
    flags = FlagParser(prog="tool", allow_abbrev=True, passed_on={"--runner"})
    flags.add_argument("--source")
    flags.add_argument("--no_messages", action="store_true")
    flags.add_argument("sql", nargs=sql)
    return flags


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sourc", "/nowhere"], "unrecognized flag --sourc (did you mean --source?)"),
        (["--sourc=/nowhere"], "unrecognized flag --sourc (did you mean --source?)"),
        (["--no_messag"], "unrecognized flag --no_messag (did you mean --no_messages?)"),
        (["-sourc", "/nowhere"], "unrecognized flag -sourc (did you mean --source?)"),
        (["--zzzzzz"], "unrecognized flag --zzzzzz"),
        (["a", "b"], "unrecognized arguments: b"),
    ],
    ids=["abbreviation", "with-equals", "switch", "single-dash", "nothing-close", "extra-argument"],
)
def test_the_parser_refuses_an_abbreviation_with_exit_2_and_the_flag_meant(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"tool: error: {message}"


def test_an_abbreviation_is_reported_before_a_missing_argument(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser(sql="+").parse_args(["--sourc", "/nowhere"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "tool: error: unrecognized flag --sourc (did you mean --source?)"
    )


def test_flags_passed_on_are_left_over_and_refused_by_parse_args(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parsed, rest = parser().parse_known_args(["--runner=R", "--source", "/a"])
    assert (parsed.source, rest) == ("/a", ["--runner=R"])
    with pytest.raises(SystemExit) as exited:
        parser().parse_known_args(["--runne", "R"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "tool: error: unrecognized flag --runne (did you mean --runner?)"
    )
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["--runner=R"])
    assert exited.value.code == 2
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == "tool: error: unrecognized arguments: --runner=R"
    )


def test_the_parser_takes_flags_spelt_in_full() -> None:
    parsed = parser().parse_args(["--source=/a", "--no_messages", "SELECT 1"])
    assert vars(parsed) == {"source": "/a", "no_messages": True, "sql": "SELECT 1"}
    assert parser().flags == frozenset({"-h", "--help", "--source", "--no_messages"})
