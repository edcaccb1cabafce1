"""Both jobs' sink flags: combinations, start-up checks of the infrastructure, the store's DSN.

The start-up checks run against a real moto server (`check_sinks`); the DSN
tests run the backfill over a tiny generated archive, against the embedded
Postgres server or an address where nothing listens.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from pipelines import backfill, streaming
from pipelines.launch import check_sinks
from pipelines.options import CONTRIBUTIONS_STORE_ENV, SinkOptions
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.sinks import (
    LEDGER_KEY,
    SUPPORTER_KEY,
    create_queue,
    create_table,
    store_rows,
    unique,
)
from tests.pipelines.expected import (
    CONTRIBUTIONS_STORE_SQL,
    expected_contributions_store,
    live_only,
)
from tools.generate_archive import generate, write_archive
from transforms.sinks.contract import MessageWindow, SinkConfig, flags_of
from transforms.sinks.registry import SINKS

Job = Callable[[list[str]], int]
JOBS = [pytest.param(backfill.run, id="backfill"), pytest.param(streaming.run, id="streaming")]
LEDGER_NEEDED = (
    "{flag} need --sent_messages_table: neither "
    "EventBridge, CloudWatch nor a standard queue de-duplicates, the ledger makes them "
    "exactly once"
)


def error_line(job: Job, message: str) -> str:
    """The one line a job prints on stderr for an expected failure."""
    return f"python -m {job.__module__}: error: {message}\n"


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A generated archive of a few payments (folder, truth)."""
    archive = generate(payments=6, seed=11)
    folder = tmp_path_factory.mktemp("tiny") / "archive"
    write_archive(archive, folder)
    return folder, archive.truth.to_json()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize("queue_flag", ["--emails_queue_url", "--opt_ins_queue_url"])
def test_a_queue_without_the_ledger_exits_2_with_the_reason(
    job: Job, queue_flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = tmp_path / "out" / "w.duckdb"
    argv = [queue_flag, "https://sqs.eu-west-1.amazonaws.com/1/q.fifo"]
    assert job([*argv, "--warehouse", str(warehouse)]) == 2
    assert capsys.readouterr().err == error_line(job, LEDGER_NEEDED.format(flag=queue_flag))
    assert not warehouse.parent.exists()


#: (flags, stderr lines before the error, error) for infrastructure that is missing or of the
#: wrong kind, built from freshly provisioned moto resources.
Case = Callable[[], tuple[list[str], list[str], str]]


def _missing_supporter_table() -> tuple[list[str], list[str], str]:
    return (
        ["--supporter_table", "absent-supporters"],
        [],
        "--supporter_table: the DynamoDB table 'absent-supporters' does not exist; the job "
        "does not create it: check the name, region and endpoint, or create it with key "
        "(identityId HASH, subscriptionName RANGE)",
    )


def _mis_keyed_supporter_table() -> tuple[list[str], list[str], str]:
    table = create_table(SUPPORTER_KEY[:1])
    return (
        ["--supporter_table", table],
        [],
        f"--supporter_table: the DynamoDB table {table!r} has key (identityId HASH); the job "
        "needs (identityId HASH, subscriptionName RANGE): give a table with that key",
    )


def _missing_queue() -> tuple[list[str], list[str], str]:
    queue = create_queue().replace("messages-", "absent-")
    return (
        ["--opt_ins_queue_url", queue, "--sent_messages_table", create_table(LEDGER_KEY)],
        [],
        f"--opt_ins_queue_url: the SQS queue {queue} does not exist; the job does not create "
        "it: check the URL, region and endpoint, or create the queue (standard or FIFO)",
    )


def _missing_store_queue() -> tuple[list[str], list[str], str]:
    queue = create_queue().replace("messages-", "absent-")
    flags = ["--contributions_store_queue_url", queue, "--contributions_store_key_id", "k"]
    return (
        [*flags, "--sent_messages_table", create_table(LEDGER_KEY)],
        [],
        f"--contributions_store_queue_url: the SQS queue {queue} does not exist; the job does "
        "not create it: check the URL, region and endpoint, or create the queue (standard or "
        "FIFO)",
    )


def _missing_bus() -> tuple[list[str], list[str], str]:
    return (
        ["--acquisitions_bus", "absent-bus", "--sent_messages_table", create_table(LEDGER_KEY)],
        [],
        "--acquisitions_bus: the EventBridge bus 'absent-bus' does not exist; the job does not "
        "create it: check the name, region and endpoint, or create the bus",
    )


def _missing_ledger() -> tuple[list[str], list[str], str]:
    queue = create_queue()
    return (
        ["--emails_queue_url", queue, "--sent_messages_table", "absent-ledger"],
        # The queue is checked, and found, before its ledger.
        [f"SQS queue {queue}: FIFO"],
        "--sent_messages_table: the DynamoDB table 'absent-ledger' does not exist; the job "
        "does not create it: check the name, region and endpoint, or create it with key "
        "(messageKey HASH)",
    )


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(_missing_supporter_table, id="missing-supporter-table"),
        pytest.param(_mis_keyed_supporter_table, id="mis-keyed-supporter-table"),
        pytest.param(_missing_bus, id="missing-bus"),
        pytest.param(_missing_queue, id="missing-queue"),
        pytest.param(_missing_store_queue, id="missing-store-queue"),
        pytest.param(_missing_ledger, id="missing-ledger"),
    ],
)
def test_missing_or_wrong_infrastructure_stops_before_launch(
    job: Job,
    case: Case,
    moto_server: MotoServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags, before, error = case()
    warehouse = tmp_path / "out" / "w.duckdb"
    # The stream does not exist: the sinks are checked before the source.
    flags += ["--kinesis_stream", "absent-stream", "--stripe_mode", "test"]
    assert job([*flags, "--warehouse", str(warehouse)]) == 3
    assert capsys.readouterr().err == "".join(f"{line}\n" for line in before) + error_line(
        job, error
    )
    assert not warehouse.parent.exists()


def test_the_check_accepts_standard_and_fifo_queues_and_says_which(
    moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    standard, fifo = create_queue(fifo=False), create_queue()
    check_sinks(
        SinkConfig(
            {
                "warehouse": "w.duckdb",
                "emails_queue_url": standard,
                "opt_ins_queue_url": fifo,
                "sent_messages_table": create_table(LEDGER_KEY),
            },
            sinks=SINKS,
        )
    )
    assert capsys.readouterr().err == f"SQS queue {standard}: standard\nSQS queue {fifo}: FIFO\n"


PRODUCTION_SINK_FLAGS = [
    pytest.param(["--supporter_table", "t"], "--supporter_table", id="supporter-table"),
    pytest.param(
        ["--acquisitions_bus", "b", "--sent_messages_table", "l"], "--acquisitions_bus", id="bus"
    ),
    pytest.param(
        ["--cloudwatch_namespace", "ns", "--sent_messages_table", "l"],
        "--cloudwatch_namespace",
        id="cloudwatch",
    ),
]


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize(("flags", "named"), PRODUCTION_SINK_FLAGS)
@pytest.mark.parametrize("mode", [None, "all"], ids=["no-mode", "mode-all"])
def test_production_sinks_need_a_live_or_test_stage(
    job: Job,
    flags: list[str],
    named: str,
    mode: str | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    warehouse = tmp_path / "out" / "w.duckdb"
    stage = [] if mode is None else ["--stripe_mode", mode]
    assert job([*flags, *stage, "--warehouse", str(warehouse)]) == 2
    assert capsys.readouterr().err == error_line(
        job,
        f"--stripe_mode live or --stripe_mode test is required with production sinks "
        f"({named}): a deployment serves one stage, and test payments must not reach live "
        "resources",
    )
    assert not warehouse.parent.exists()


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        pytest.param(
            ["--contributions_store_queue_url", "q", "--contributions_store", "host=h"],
            "--contributions_store and --contributions_store_queue_url both take "
            "contributions_store: give one",
            id="store-queue-and-dsn",
        ),
        pytest.param(
            ["--contributions_store_queue_url", "q", "--sent_messages_table", "l"],
            "--contributions_store_queue_url needs --contributions_store_key_id",
            id="store-queue-without-key-id",
        ),
        pytest.param(
            ["--acquisitions_bus", "b", "--cloudwatch_namespace", "payment-api"],
            "--acquisitions_bus, --cloudwatch_namespace need --sent_messages_table: neither "
            "EventBridge, CloudWatch nor a standard queue de-duplicates, the ledger makes them "
            "exactly once",
            id="bus-and-metrics-without-ledger",
        ),
    ],
)
def test_store_queue_and_bus_flag_combinations(flags: list[str], error: str) -> None:
    with pytest.raises(ValueError) as raised:
        SinkOptions(flags).sink_config()
    assert str(raised.value) == error


def test_the_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONTRIBUTIONS_STORE_ENV, "host=from-env")
    from_env = SinkOptions([]).sink_config()
    from_flag = SinkOptions(["--contributions_store", "host=from-flag"]).sink_config()
    monkeypatch.delenv(CONTRIBUTIONS_STORE_ENV)
    neither = SinkOptions([]).sink_config()

    assert (from_env["contributions_store"], from_flag["contributions_store"]) == (
        "host=from-env",
        "host=from-flag",
    )
    assert neither["contributions_store"] is None


def test_the_store_dsn_comes_from_the_environment(
    tiny_archive: tuple[Path, dict],
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, truth = tiny_archive
    dsn = postgres_server.create_database()
    monkeypatch.setenv(CONTRIBUTIONS_STORE_ENV, dsn)
    warehouse = tmp_path / "w.duckdb"

    argv = ["--source", str(folder), "--warehouse", str(warehouse), "--stripe_mode", "live"]
    assert backfill.run(argv) == 0

    expected = expected_contributions_store(live_only(truth))
    assert store_rows(dsn, CONTRIBUTIONS_STORE_SQL) == expected
    # The store went to Postgres, not to the warehouse.
    assert "  contributions_store: 0" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("via", ["flag", "environment"])
def test_the_password_is_never_shown_even_when_the_store_is_unreachable(
    via: str,
    tiny_archive: tuple[Path, dict],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder, _ = tiny_archive
    port = _free_port()  # nothing listens there
    dsn = f"postgresql://postgres:S3cr3t%21pw%2342@127.0.0.1:{port}/postgres"
    flags = ["--source", str(folder), "--warehouse", str(tmp_path / "w.duckdb")]
    flags += ["--stripe_mode", "test"]
    if via == "flag":
        flags += ["--contributions_store", dsn]
    else:
        monkeypatch.setenv(CONTRIBUTIONS_STORE_ENV, dsn)
    caplog.set_level(logging.DEBUG)

    assert backfill.run(flags) == 3

    output = capfd.readouterr()
    logs = [record.getMessage() + (record.exc_text or "") for record in caplog.records]
    # The failure names the store as host:port/database, so it is this DSN that was used.
    assert output.err.startswith(
        "python -m pipelines.backfill: error: --contributions_store: cannot connect to the "
        f"contributions store at 127.0.0.1:{port}/postgres: OperationalError: "
    )
    assert output.err.count("\n") == 1
    for text in (output.out, output.err, *logs):
        assert "S3cr3t" not in text


def test_streaming_stops_before_launch_without_its_coordination_table(
    moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = unique("events")
    boto3.session.Session().client("kinesis").create_stream(StreamName=stream, ShardCount=1)
    code = streaming.run(
        [
            "--kinesis_stream",
            stream,
            "--kinesis_coordination_table",
            "no-such-coordination-table",
            "--idle_timeout_s",
            "1",
        ]
    )
    assert code == 3
    assert capsys.readouterr().err == error_line(
        streaming.run,
        "--kinesis_coordination_table: the DynamoDB table 'no-such-coordination-table' does "
        "not exist; the job does not create it: check the name, region and endpoint, or create "
        "it with key (shardKey HASH)",
    )


@pytest.mark.parametrize("job", JOBS)
def test_help_shows_every_registered_sinks_flags_with_their_help(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        job(["--help"])
    shown = " ".join(capsys.readouterr().out.split())

    assert exited.value.code == 0
    for flag in flags_of(SINKS).values():
        text = " ".join(flag.help.replace("%(default)s", str(flag.default)).split())
        assert f"{flag.option} {flag.name.upper()} {text}" in shown


def test_the_message_window_is_measured_from_one_launch_time() -> None:
    options = SinkOptions(["--messages_max_age_hours", "24"])
    first = options.sink_config().messages
    # The first reader fixed the time in the options, which travel to the workers.
    assert options.run_started_at is not None
    assert options.sink_config().messages == first
    started = datetime.fromisoformat(options.run_started_at)
    assert first == MessageWindow(send=True, not_before=started - timedelta(hours=24))


@pytest.mark.parametrize(
    ("flags", "window"),
    [
        pytest.param(
            ["--run_started_at", "2025-03-04T12:00:00Z"],
            MessageWindow(send=True, not_before=datetime(2025, 3, 1, 12, tzinfo=UTC)),
            id="default-72-hours",
        ),
        pytest.param(
            ["--run_started_at", "2025-03-04T12:00:00+01:00", "--messages_max_age_hours", "0.5"],
            MessageWindow(send=True, not_before=datetime(2025, 3, 4, 10, 30, tzinfo=UTC)),
            id="offset-and-half-an-hour",
        ),
        pytest.param(["--no_messages"], MessageWindow(send=False), id="no-messages"),
    ],
)
def test_message_flags_make_the_window(flags: list[str], window: MessageWindow) -> None:
    assert SinkOptions(flags).sink_config().messages == window


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        pytest.param(
            ["--messages_max_age_hours", "0"],
            "argument --messages_max_age_hours: must be greater than 0, got 0",
            id="zero-age",
        ),
        pytest.param(
            ["--run_started_at", "yesterday"],
            "argument --run_started_at: not an ISO 8601 date or time: 'yesterday' "
            "(e.g. 2024-12-05 or 2024-12-05T23:00:00Z)",
            id="bad-time",
        ),
    ],
)
def test_bad_message_flags_exit_2(
    flags: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        backfill.run(flags)
    assert exited.value.code == 2
    # argparse's usage, then its one error line.
    assert capsys.readouterr().err.splitlines(keepends=True)[-1] == error_line(backfill.run, error)
