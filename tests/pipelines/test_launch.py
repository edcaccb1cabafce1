"""What both jobs share at launch: flags nobody defines are refused with the closest one."""

from __future__ import annotations

from types import ModuleType

import pytest

from pipelines import backfill, streaming
from pipelines.launch import known_flags, unknown_flags


@pytest.mark.parametrize(
    ("job", "argv", "message"),
    [
        (
            backfill,
            ["--warehose", "x.duckdb"],
            "unrecognized flag --warehose (did you mean --warehouse?)",
        ),
        (backfill, ["--sorce=/tmp/a"], "unrecognized flag --sorce (did you mean --source?)"),
        (
            streaming,
            ["--kinesis_steam", "s"],
            "unrecognized flag --kinesis_steam (did you mean --kinesis_stream?)",
        ),
        (backfill, ["--zzzzzz"], "unrecognized flag --zzzzzz\n"),
    ],
    ids=["backfill-typo", "typo-with-equals", "streaming-typo", "nothing-close"],
)
def test_an_unknown_flag_exits_2_naming_the_closest_known_one(
    job: ModuleType, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        job.run(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: {message}" if message.endswith("\n") else f"error: {message}\n")


def test_beams_own_flags_and_their_values_are_known() -> None:
    known = known_flags()
    argv = ["--runner", "DataflowRunner", "--project", "p", "--region=europe-west1",
            "--temp_location", "gs://b/tmp", "--setup_file", "./setup.py", "--dry_run=True",
            "--no_auth", "--experiments=use_runner_v2", "--streaming"]  # fmt: skip
    assert unknown_flags(argv, known) == []
    assert unknown_flags(["p", "--", "--project"], known) == []
