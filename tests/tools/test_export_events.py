"""`tools.export_events` against a local Stripe Events API, then the backfill over what it wrote."""

from __future__ import annotations

import contextlib
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pytest

from pipelines import backfill
from tests.builders import T0, charge_object, payment_intent_object, session_object
from tests.fixtures.http_server import closed_port
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.stripe_api import API_KEY, StripeEventsApi, stripe_events_api
from tools import export_events

__all__ = ["stripe_events_api"]

SINCE = datetime.fromtimestamp(T0, UTC)
UNTIL = datetime.fromtimestamp(T0 + 86_400, UTC)
NOW = datetime.fromtimestamp(T0 + 2 * 86_400, UTC)
PAYMENTS = 90


def bare_event(
    event_id: str, event_type: str, created: int, data_object: dict[str, Any]
) -> dict[str, Any]:
    """A Stripe snapshot event as the Events API returns it."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": data_object},
        "livemode": True,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def payment_events(n: int) -> list[dict[str, Any]]:
    """Session, charge and PaymentIntent events of payment `n`, in the range."""
    created = T0 + 60 * n
    pi, charge, session = f"pi_{n:04d}", f"ch_{n:04d}", f"cs_{n:04d}"
    return [
        bare_event(
            f"evt_s{n:04d}",
            "checkout.session.completed",
            created,
            session_object(session_id=session, payment_intent=pi, amount_total=100 * n),
        ),
        bare_event(
            f"evt_c{n:04d}",
            "charge.succeeded",
            created + 1,
            charge_object(charge_id=charge, payment_intent=pi, amount=100 * n),
        ),
        bare_event(
            f"evt_p{n:04d}",
            "payment_intent.succeeded",
            created + 2,
            payment_intent_object(payment_intent_id=pi, latest_charge=charge),
        ),
    ]


@pytest.fixture
def served(stripe_events_api: StripeEventsApi) -> StripeEventsApi:
    """In range: 90 payments (270 events) and 10 events of a type the pipeline does not read;
    outside it: a payment a second before and one at the end (exclusive)."""
    for n in range(1, PAYMENTS + 1):
        stripe_events_api.events.extend(payment_events(n))
    stripe_events_api.events.extend(
        bare_event(
            f"evt_cus{n}", "customer.created", T0 + n, {"id": f"cus_{n}", "object": "customer"}
        )
        for n in range(10)
    )
    before = bare_event(
        "evt_early", "charge.succeeded", T0 - 1, charge_object(charge_id="ch_early")
    )
    at_end = bare_event(
        "evt_late", "charge.succeeded", T0 + 86_400, charge_object(charge_id="ch_late")
    )
    stripe_events_api.events.extend([before, at_end])
    return stripe_events_api


def export(api: StripeEventsApi, archive: Path | str, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = [
        "--since", SINCE.isoformat(), "--until", UNTIL.isoformat(),
        "--archive", str(archive), "--stripe_api_base", api.url, *extra,
    ]  # fmt: skip
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = export_events.main(argv, now=NOW)
    return code, out.getvalue(), err.getvalue()


def test_exports_the_ranges_pipeline_events_page_by_page_oldest_first(
    served: StripeEventsApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    code, out, err = export(served, tmp_path / "archive")

    path = (
        tmp_path / "archive" / "exports" / "stripe-events-20241205T230000Z-20241206T230000Z.jsonl"
    )
    assert (code, err) == (0, "")
    assert out == (
        f"exported 270 events created in [2024-12-05T23:00:00Z, 2024-12-06T23:00:00Z) to {path}\n"
    )
    expected = [event for n in range(1, PAYMENTS + 1) for event in payment_events(n)]
    assert [json.loads(line) for line in path.read_text().splitlines()] == expected
    assert sorted(p.name for p in (tmp_path / "archive" / "exports").iterdir()) == [path.name]
    # Three pages of 100, each continuing after the last id of the one before.
    assert [request.get("starting_after") for request in served.requests] == [
        None, ["evt_p0057"], ["evt_c0024"],
    ]  # fmt: skip
    first = served.requests[0]
    assert first["created[gte]"] == [str(T0)] and first["created[lt]"] == [str(T0 + 86_400)]
    assert first["limit"] == ["100"]
    asked = sorted(
        value for name, values in first.items() if name.startswith("types[") for value in values
    )
    assert asked == sorted(export_events.EXPORTED_TYPES)
    assert "charge.refunded" in asked and "checkout.session.completed" in asked


def test_a_rerun_over_the_same_range_replaces_the_file(
    served: StripeEventsApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    assert export(served, tmp_path)[0] == 0
    exports = tmp_path / "exports"
    first = {p.name: p.read_bytes() for p in exports.iterdir()}
    served.events.extend(payment_events(PAYMENTS + 1))
    assert export(served, tmp_path)[0] == 0
    second = {p.name: p.read_bytes() for p in exports.iterdir()}
    assert list(second) == list(first)
    (name,) = second
    assert second[name].count(b"\n") == 273
    assert second[name].startswith(first[name])


def test_the_backfill_reads_the_export_as_part_of_the_archive(
    served: StripeEventsApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    archive = tmp_path / "archive"
    assert export(served, archive)[0] == 0
    warehouse = tmp_path / "warehouse.duckdb"
    with contextlib.redirect_stdout(io.StringIO()) as summary:
        code = backfill.run(["--source", str(archive), "--warehouse", str(warehouse)])
    assert code == 0, summary.getvalue()
    with duckdb.connect(str(warehouse), read_only=True) as db:
        contributions = db.execute(
            "SELECT payment_id, status, amount, currency, country_code FROM contributions "
            "ORDER BY payment_id"
        ).fetchall()
    assert [(p, s, str(a), c, cc) for p, s, a, c, cc in contributions] == [
        (f"ch_{n:04d}", "Paid", f"{n}.000000000", "GBP", "US") for n in range(1, PAYMENTS + 1)
    ]
    assert "read 270 = processed 270 + skipped 0 + dead-lettered 0: holds" in summary.getvalue()


def test_a_refused_key_is_one_line_and_exit_3_without_the_key(
    served: StripeEventsApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "rk_test_wrongwrongwrong")
    code, out, err = export(served, tmp_path)
    assert (code, out) == (3, "")
    assert err == "python -m tools.export_events: error: Stripe refused the key in STRIPE_API_KEY\n"
    assert not (tmp_path / "exports").exists()


def test_an_unreachable_api_is_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.setattr(export_events, "NETWORK_RETRIES", 0)
    api = StripeEventsApi(url="http://127.0.0.1:9")  # the discard port: nothing listens
    code, out, err = export(api, tmp_path)
    assert (code, out) == (3, "")
    assert err == (
        "python -m tools.export_events: error: Stripe could not be reached after 0 retries "
        "(network error)\n"
    )


def test_without_a_key_it_says_where_the_key_comes_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    code, out, err = export(StripeEventsApi(url="http://127.0.0.1:9"), tmp_path)
    assert (code, out) == (2, "")
    assert err == (
        "python -m tools.export_events: error: set STRIPE_API_KEY to a Stripe secret or "
        "restricted key (never a flag)\n"
    )


def test_a_range_older_than_stripes_retention_is_noted(
    served: StripeEventsApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    out, err = io.StringIO(), io.StringIO()
    argv = ["--since", "2024-10-01", "--until", UNTIL.isoformat(), "--archive", str(tmp_path),
            "--stripe_api_base", served.url]  # fmt: skip
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert export_events.main(argv, now=NOW) == 0
    assert err.getvalue() == (
        "python -m tools.export_events: note: Stripe keeps events for 30 days; nothing before "
        "2024-11-07T23:00:00Z can be exported\n"
    )


def test_help_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit) as exit_:
        export_events.main(["--help"])
    assert exit_.value.code == 0
    assert "--since" in out.getvalue() and "STRIPE_API_KEY" in out.getvalue()
    assert list(tmp_path.iterdir()) == []


EXPORT_NAME = "stripe-events-20241205T230000Z-20241206T230000Z.jsonl"
EXPORT = "python -m tools.export_events: error: "


def test_exports_into_an_s3_archive_which_the_backfill_then_reads(
    served: StripeEventsApi,
    moto_server: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    s3 = boto3.session.Session().client("s3")
    s3.create_bucket(
        Bucket="export-archive",
        CreateBucketConfiguration={"LocationConstraint": moto_server.region},
    )

    code, out, err = export(served, "s3://export-archive/stripe/")

    path = f"s3://export-archive/stripe/exports/{EXPORT_NAME}"
    assert (code, err) == (0, "")
    assert out == (
        f"exported 270 events created in [2024-12-05T23:00:00Z, 2024-12-06T23:00:00Z) to {path}\n"
    )
    listed = s3.list_objects_v2(Bucket="export-archive")["Contents"]
    assert [item["Key"] for item in listed] == [f"stripe/exports/{EXPORT_NAME}"]
    body = s3.get_object(Bucket="export-archive", Key=f"stripe/exports/{EXPORT_NAME}")["Body"]
    expected = [event for n in range(1, PAYMENTS + 1) for event in payment_events(n)]
    assert [json.loads(line) for line in body.read().splitlines()] == expected

    warehouse = tmp_path / "warehouse.duckdb"
    argv = ["--source", "s3://export-archive/stripe/", "--start", SINCE.isoformat(),
            "--end", UNTIL.isoformat(), "--warehouse", str(warehouse)]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()) as summary:
        code = backfill.run(argv)
    assert code == 0, summary.getvalue()
    with duckdb.connect(str(warehouse), read_only=True) as db:
        contributions = db.execute(
            "SELECT payment_id, status, amount, currency FROM contributions ORDER BY payment_id"
        ).fetchall()
    assert [(p, s, str(a), c) for p, s, a, c in contributions] == [
        (f"ch_{n:04d}", "Paid", f"{n}.000000000", "GBP") for n in range(1, PAYMENTS + 1)
    ]
    assert "read 270 = processed 270 + skipped 0 + dead-lettered 0: holds" in summary.getvalue()


def test_a_missing_bucket_is_exit_3_before_stripe_is_asked(
    served: StripeEventsApi, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)

    code, out, err = export(served, "s3://no-such-export-bucket/stripe/")

    assert (code, out) == (3, "")
    assert err == (
        f"{EXPORT}--archive s3://no-such-export-bucket/stripe/: the S3 bucket "
        "'no-such-export-bucket' does not exist\n"
    )
    assert served.requests == []


def test_an_unreachable_s3_endpoint_is_exit_3_in_seconds(
    served: StripeEventsApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = closed_port()
    endpoint = f"http://127.0.0.1:{port}"

    began = time.monotonic()
    code, out, err = export(
        served, "s3://archive/stripe/", "--s3_endpoint_url", endpoint, "--s3_region_name",
        "eu-west-1",
    )  # fmt: skip
    elapsed = time.monotonic() - began

    assert (code, out) == (3, "")
    assert elapsed < 30
    assert err == (
        f"{EXPORT}--archive s3://archive/stripe/: EndpointConnectionError: Could not connect "
        f'to the endpoint URL: "{endpoint}/archive" (check --s3_endpoint_url or '
        "AWS_ENDPOINT_URL, the region and the credentials)\n"
    )
    assert served.requests == []


@pytest.mark.parametrize(
    "archive",
    ["gs://bucket/stripe/", "s3://", "s3:///stripe/"],
    ids=["gcs", "no-bucket", "empty-bucket"],
)
def test_an_archive_neither_local_nor_s3_is_a_usage_error(
    archive: str, served: StripeEventsApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.chdir(tmp_path)

    code, out, err = export(served, archive)

    assert (code, out) == (2, "")
    assert err == f"{EXPORT}--archive {archive}: give a local folder or s3://bucket/prefix\n"
    assert served.requests == [] and list(tmp_path.iterdir()) == []
