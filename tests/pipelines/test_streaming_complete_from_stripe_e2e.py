"""The streaming job with `--complete_from_stripe` on a stream missing some payments' charge events.

The gapped records (`tests.pipelines.test_complete_from_stripe_e2e`: the full
archive without the charge and PaymentIntent outcome events of four paid
payments) go on a Kinesis stream (moto), and the job reads it, bounded by
`--idle_timeout_s`, with the local stand-in for Stripe's PaymentIntents API
serving those payments. It writes exactly the rows the backfill writes from
the full archive.

Event time: as in `tests/pipelines/test_streaming.py`, the archive starts a
day from now, so no timer fires before the read ends and the retrievals
happen when the watermark then passes every charge deadline. That a
retrieval happens at the deadline on a live stream, and that a charge event
after it changes nothing, is the TestStream test's
(`tests/transforms/core/test_core_completion.py`).
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines import streaming
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.stripe_payment_intents import (
    API_KEY,
    StripePaymentIntentsApi,
    stripe_payment_intents_api,
)
from tests.pipelines.expected import rows, snapshot
from tests.pipelines.test_complete_from_stripe_e2e import (
    GAPS,
    charge_missing,
    run_backfill,
    with_gaps,
    without_run_columns,
)
from tools.generate_archive import write_archive
from tools.put_on_kinesis import create_stream, kinesis_client, put_records
from transforms.services.stripe_charges import KEY_CHECK_ID

__all__ = ["stripe_payment_intents_api"]

IDLE_TIMEOUT_S = 3
#: The dead letters' columns both jobs fill alike: not where and when a record was
#: read, nor the error (the flag's retrievals add why they failed).
LETTER_COLUMNS = "step, reason, raw, event_id"


def test_the_gapped_payments_are_completed_as_the_backfill_of_the_full_archive_has_them(
    moto_server: MotoServer,
    stripe_payment_intents_api: StripePaymentIntentsApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    planned = with_gaps(start)
    write_archive(planned.full, tmp_path / "full" / "archive")
    full = tmp_path / "full.duckdb"
    run_backfill(tmp_path / "full", full, tmp_path / "full.txt")
    api = stripe_payment_intents_api
    api.intents.update(planned.intents)
    api.charges.update(planned.charges)
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    stream = f"stripe-events-{uuid.uuid4().hex[:8]}"
    client = kinesis_client()
    create_stream(client, stream, 1)
    put_records(client, stream, planned.gapped.envelopes(include_malformed=True))
    warehouse = tmp_path / "streaming.duckdb"

    with (tmp_path / "streaming.txt").open("w") as out, contextlib.redirect_stdout(out):
        code = streaming.run(
            [
                "--kinesis_stream",
                stream,
                "--idle_timeout_s",
                str(IDLE_TIMEOUT_S),
                "--warehouse",
                str(warehouse),
                "--complete_from_stripe",
                "--stripe_api_base",
                api.url,
            ]
        )

    assert code == 0
    assert without_run_columns(snapshot(warehouse)) == without_run_columns(snapshot(full))
    letters = f"SELECT {LETTER_COLUMNS} FROM dead_letters ORDER BY ALL"
    assert rows(warehouse, letters) == rows(full, letters)
    # The full archive's own charge_missing payment is not Stripe's either: it stays a letter.
    full_letters = [source for source, _ in charge_missing(full)]
    assert [source for source, _ in charge_missing(warehouse)] == full_letters
    assert [error for _, error in charge_missing(warehouse)] == [
        "no charge id by the deadline; Stripe retrieval: not_found: "
        f"Stripe has no PaymentIntent {source.removeprefix('payment_intent:')}"
        for source in full_letters
    ]
    # One key check before launch, then one retrieval per charge_missing payment.
    retrieved = sorted(path.rsplit("/", 1)[1] for path, _ in api.requests)
    expected = [
        KEY_CHECK_ID,
        *planned.gaps,
        *(s.removeprefix("payment_intent:") for s in full_letters),
    ]
    assert retrieved == sorted(expected)
    summary = (tmp_path / "streaming.txt").read_text().splitlines()
    assert f"charges completed from stripe: {GAPS}" in summary
    assert f"charge retrievals failed: {len(full_letters)}" in summary
    assert summary[-1].endswith(": holds")


def test_a_key_stripe_refuses_stops_the_streaming_job_before_launch(
    stripe_payment_intents_api: StripePaymentIntentsApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "rk_test_refusedrefused")
    warehouse = tmp_path / "out" / "w.duckdb"
    flags = ["--complete_from_stripe", "--stripe_api_base", stripe_payment_intents_api.url]

    code = streaming.run(["--kinesis_stream", "s", "--warehouse", str(warehouse), *flags])

    assert code == 3
    assert capsys.readouterr().err == (
        "python -m pipelines.streaming: error: --complete_from_stripe: "
        "Stripe refused the key in STRIPE_API_KEY for PaymentIntents\n"
    )
    # Only the key check: the stream is not looked at, nothing is written.
    assert [path for path, _ in stripe_payment_intents_api.requests] == [
        f"/v1/payment_intents/{KEY_CHECK_ID}"
    ]
    assert not warehouse.parent.exists()
