"""The sink contract: a sink added to the registry is checked and routed, unedited router.

A fake sink (`ELSEWHERE`) is registered next to the real ones, as a new module
would be: the launcher's `check_sinks` runs its check and `WriteOutputs`
gives it the record types it takes and reads, sends its dead letters to the
warehouse and keeps what it takes out of the warehouse.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apache_beam as beam
import duckdb
import pytest
from apache_beam.pvalue import PCollection
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline

from pipelines.launch import check_sinks
from schemas.records import Acquisition, Contribution, ContributionStoreRecord, PaymentAdjustment
from tests.builders import acquisition_record, contribution_record, refund_adjustment
from transforms.domain.events import make_dead_letter
from transforms.infrastructure import ConfigurationError
from transforms.sinks.contract import (
    MESSAGE_TOO_OLD,
    NO_MESSAGES,
    SEND_ALL,
    Flag,
    MessageWindow,
    Sink,
    SinkConfig,
    flags_of,
)
from transforms.sinks.registry import SINKS, sender_of
from transforms.sinks.router import WriteOutputs

ELSEWHERE_FLAG = Flag("elsewhere", "Where acquisitions go instead. Default: the warehouse.")
#: What the fake sink saw: ("check", target) and ("write", record type names).
CALLS: list[tuple[str, Any]] = []


def _check_elsewhere(config: SinkConfig) -> None:
    CALLS.append(("check", config[ELSEWHERE_FLAG.name]))
    if config[ELSEWHERE_FLAG.name] == "missing":
        raise ConfigurationError("elsewhere 'missing' does not exist")


def _write_elsewhere(config: SinkConfig, pcolls: Mapping[type, PCollection]) -> PCollection:
    CALLS.append(("write", sorted(t.__name__ for t in pcolls)))
    target = str(config[ELSEWHERE_FLAG.name])
    return pcolls[Acquisition] | "WriteElsewhere" >> beam.Map(
        lambda record: make_dead_letter(
            step="write_elsewhere",
            reason="refused",
            error="the fake sink refuses everything",
            raw=record.payment_id,
            source=f"elsewhere:{target}/{record.payment_id}",
        )
    )


ELSEWHERE = Sink(
    name="elsewhere",
    flags=(ELSEWHERE_FLAG,),
    write=_write_elsewhere,
    takes=(Acquisition,),
    reads=(PaymentAdjustment,),
    check=_check_elsewhere,
)
STORE_QUEUE = Sink(
    name="store_queue",
    flags=(Flag("store_queue_url", "Another sink for the contributions store."),),
    write=_write_elsewhere,
    takes=(ContributionStoreRecord,),
)


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


def _query(path: str, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(path, read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_a_registered_sink_is_checked_before_launch() -> None:
    sinks = (*SINKS, ELSEWHERE)
    check_sinks(SinkConfig({"elsewhere": "target-1"}, sinks=sinks))
    with pytest.raises(ConfigurationError, match="^elsewhere 'missing' does not exist$"):
        check_sinks(SinkConfig({"elsewhere": "missing"}, sinks=sinks))
    check_sinks(SinkConfig({}, sinks=sinks))  # not selected: not checked

    assert CALLS == [("check", "target-1"), ("check", "missing")]


def test_a_registered_sink_is_routed_its_records_and_its_dead_letters_reach_the_warehouse(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "w.duckdb")
    config = SinkConfig({"warehouse": path, "elsewhere": "target-1"}, sinks=(*SINKS, ELSEWHERE))
    records = {
        Contribution: [contribution_record("ch_1")],
        Acquisition: [acquisition_record("ch_1"), acquisition_record("ch_2")],
        PaymentAdjustment: [refund_adjustment("ch_1", "4.00")],
    }

    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        pcolls = {
            record_type: pipeline | f"Create{record_type.__name__}" >> beam.Create(items)
            for record_type, items in records.items()
        }
        _ = pcolls | "WriteOutputs" >> WriteOutputs(config)

    assert CALLS == [("write", ["Acquisition", "PaymentAdjustment"])]
    # Taken: not in the warehouse. Read: in the warehouse as well.
    assert _query(path, "SELECT payment_id FROM acquisitions") == []
    assert _query(path, "SELECT adjustment_id FROM payment_adjustments") == [("evt_r1",)]
    assert _query(path, "SELECT payment_id, amount_refunded FROM contributions_current") == [
        ("ch_1", 4)
    ]
    assert _query(path, "SELECT step, reason, source FROM dead_letters ORDER BY source") == [
        ("write_elsewhere", "refused", "elsewhere:target-1/ch_1"),
        ("write_elsewhere", "refused", "elsewhere:target-1/ch_2"),
    ]


@pytest.mark.parametrize(
    ("values", "sinks", "error"),
    [
        pytest.param(
            {
                "warehouse": "bigquery:p.d",
                "supporter_table": "supporters",
                "emails_queue_url": "https://q.fifo",
                "sent_messages_table": "ledger",
            },
            SINKS,
            "a BigQuery warehouse holds no personal data, so acquisition_events, "
            "contributions_store, soft_opt_ins need sinks of their own: missing "
            "--acquisitions_bus, --contributions_store or --contributions_store_queue_url, "
            "--opt_ins_queue_url",
            id="bigquery-without-operational-sinks",
        ),
        pytest.param(
            {"warehouse": "bigquery:p.d"},
            (*SINKS, STORE_QUEUE),
            "a BigQuery warehouse holds no personal data, so acquisition_events, "
            "contributions_store, supporter_product_data, thank_you_emails, soft_opt_ins need "
            "sinks of their own: missing --acquisitions_bus, --contributions_store or "
            "--contributions_store_queue_url or --store_queue_url, --supporter_table, "
            "--emails_queue_url, --opt_ins_queue_url",
            id="bigquery-names-every-sink-that-could-take-a-record",
        ),
        pytest.param(
            {"warehouse": "bigquery:project"},
            SINKS,
            "--warehouse 'bigquery:project': expected bigquery:PROJECT.DATASET",
            id="bigquery-without-dataset",
        ),
        pytest.param(
            {"contributions_store": "host=db", "store_queue_url": "https://q"},
            (*SINKS, STORE_QUEUE),
            "--contributions_store and --store_queue_url both take contributions_store: give one",
            id="two-sinks-for-one-record-type",
        ),
        pytest.param(
            {"opt_ins_queue_url": "https://q.fifo"},
            SINKS,
            "--opt_ins_queue_url need --sent_messages_table: neither EventBridge, CloudWatch "
            "nor a standard queue de-duplicates, the ledger makes them exactly once",
            id="queue-without-ledger",
        ),
        pytest.param({"nowhere": "x"}, SINKS, "no sink has the flags nowhere", id="unknown-flag"),
    ],
)
def test_a_bad_combination_of_flags_is_refused_naming_the_flags(
    values: dict[str, str], sinks: tuple[Sink, ...], error: str
) -> None:
    with pytest.raises(ValueError) as raised:
        SinkConfig(values, sinks=sinks)
    assert str(raised.value) == error


def test_two_sinks_cannot_declare_one_flag_differently() -> None:
    other_flag = Flag("elsewhere", "Something else.")
    other = Sink(name="other", flags=(other_flag,), write=_write_elsewhere)

    with pytest.raises(ValueError) as raised:
        flags_of((ELSEWHERE, other))
    assert str(raised.value) == "--elsewhere is declared twice, differently (other)"


def test_a_secret_flag_is_never_shown() -> None:
    config = SinkConfig({"contributions_store": "postgresql://u:S3cr3t@db/store"}, sinks=SINKS)

    assert "S3cr3t" not in repr(config)
    assert "contributions_store=<set>" in repr(config)
    assert config["contributions_store"] == "postgresql://u:S3cr3t@db/store"


def test_a_flag_left_out_takes_its_default() -> None:
    config = SinkConfig({}, sinks=SINKS)

    assert config["warehouse"] == "out/warehouse.duckdb"
    assert [sink.name for sink in config.selected] == ["duckdb"]


NOT_BEFORE = datetime(2025, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("window", "created", "reason"),
    [
        pytest.param(SEND_ALL, NOT_BEFORE - timedelta(days=900), None, id="send-all"),
        pytest.param(MessageWindow(not_before=NOT_BEFORE), NOT_BEFORE, None, id="at-the-cutoff"),
        pytest.param(
            MessageWindow(not_before=NOT_BEFORE),
            NOT_BEFORE - timedelta(seconds=1),
            MESSAGE_TOO_OLD,
            id="just-before",
        ),
        pytest.param(MessageWindow(not_before=NOT_BEFORE), None, None, id="no-time-follows"),
        pytest.param(MessageWindow(send=False), NOT_BEFORE, NO_MESSAGES, id="no-messages"),
        pytest.param(MessageWindow(send=False), None, NO_MESSAGES, id="no-messages-no-time"),
    ],
)
def test_the_message_window_skips_old_messages_or_all(
    window: MessageWindow, created: datetime | None, reason: str | None
) -> None:
    assert window.skip_reason(created) == reason


def test_a_window_is_measured_back_from_the_run_start() -> None:
    window = MessageWindow.measured_from(NOT_BEFORE, timedelta(hours=72))
    assert window == MessageWindow(send=True, not_before=datetime(2025, 2, 26, 12, tzinfo=UTC))


@pytest.mark.parametrize(
    ("kind", "flag", "windowed"),
    [
        ("thank_you_email", "--emails_queue_url", True),
        ("soft_opt_in", "--opt_ins_queue_url", True),
        ("acquisition_event", "--acquisitions_bus", True),
        ("contribution_store", "--contributions_store_queue_url", True),
        ("contribution_refund", "--contributions_store_queue_url", True),
        ("payment_success_metric", "--cloudwatch_namespace", False),
        ("post_payment_error_metric", "--cloudwatch_namespace", False),
    ],
)
def test_each_senders_kind_names_the_sink_and_flag_a_redrive_of_its_letters_needs(
    kind: str, flag: str, windowed: bool
) -> None:
    sink = sender_of(kind)
    assert sink is not None
    assert (sink.flags[0].option, sink.follows_message_window) == (flag, windowed)


def test_no_two_sinks_send_one_kind_and_a_kind_no_sink_sends_has_no_sender() -> None:
    kinds = [kind for sink in SINKS for kind in sink.sends]
    assert len(kinds) == len(set(kinds)) == 7
    assert sender_of("refund_due") is None  # a fact the store queue records, not a message
