"""Get-or-create against a local Identity API (`tests/fixtures/identity_api.py`), then as a step.

Every scenario asserts the outcome, the exact requests the server saw and
the waits between attempts (recorded, not slept).
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from tests.fixtures.identity_api import (
    ERROR_500,
    FIRST_ID,
    HANG,
    LOSE_RESPONSE,
    RACE,
    TOKEN,
    IdentityApi,
    Seen,
)
from tests.transforms.domain.test_identity import guest_payment
from transforms.core import metrics
from transforms.domain.identity import IdentityOutcome
from transforms.domain.payment import Payment
from transforms.services.identity import (
    IdentityClient,
    Resolution,
    ResolveIdentities,
    check_api_url,
)

EMAIL = "guest@example.com"
FIRST = str(FIRST_ID)


def client(api: IdentityApi, waits: list[float], **options: Any) -> IdentityClient:
    options.setdefault("timeout", timedelta(seconds=2))
    return IdentityClient(api.url, api.token, sleep=waits.append, **options)


def get(email: str = EMAIL) -> Seen:
    return Seen("GET", "/user", email, True)


def post(email: str = EMAIL) -> Seen:
    return Seen("POST", "/guest", email, True)


def test_an_existing_reader_is_found_with_one_get(identity_api: IdentityApi) -> None:
    identity = identity_api.add_user(EMAIL)
    waits: list[float] = []

    resolution = client(identity_api, waits).get_or_create(EMAIL)

    assert resolution == Resolution(IdentityOutcome.FOUND, identity, 1)
    assert identity_api.requests == [get()]
    assert (identity_api.created, identity_api.violations, waits) == ([], [], [])


def test_an_unknown_reader_gets_a_guest_account(identity_api: IdentityApi) -> None:
    waits: list[float] = []

    resolution = client(identity_api, waits).get_or_create(EMAIL)

    assert resolution == Resolution(IdentityOutcome.CREATED, FIRST, 2)
    assert identity_api.requests == [get(), post()]
    assert (identity_api.created, identity_api.violations, waits) == ([EMAIL], [], [])


def test_email_in_use_on_create_means_get_again(identity_api: IdentityApi) -> None:
    identity_api.script(EMAIL, "POST", RACE)
    waits: list[float] = []

    resolution = client(identity_api, waits).get_or_create(EMAIL)

    # Another party registered the email between our GET and our POST.
    assert resolution == Resolution(IdentityOutcome.FOUND, FIRST, 3)
    assert identity_api.requests == [get(), post(), get()]
    assert (identity_api.created, identity_api.violations, waits) == ([], [], [])


def test_500s_then_success(identity_api: IdentityApi) -> None:
    identity = identity_api.add_user(EMAIL)
    identity_api.script(EMAIL, "GET", ERROR_500, ERROR_500)
    waits: list[float] = []

    resolution = client(identity_api, waits).get_or_create(EMAIL)

    assert resolution == Resolution(IdentityOutcome.FOUND, identity, 3)
    assert identity_api.requests == [get(), get(), get()]
    assert waits == [0.5, 0.5]


def test_a_create_whose_answer_is_lost_is_found_by_the_next_attempt(
    identity_api: IdentityApi,
) -> None:
    identity_api.script(EMAIL, "POST", LOSE_RESPONSE)
    waits: list[float] = []

    resolution = client(identity_api, waits).get_or_create(EMAIL)

    assert resolution == Resolution(IdentityOutcome.FOUND, FIRST, 3)
    assert identity_api.requests == [get(), post(), get()]
    assert identity_api.created == [EMAIL]
    assert waits == [0.5]


def test_a_response_slower_than_the_timeout_is_retried(identity_api: IdentityApi) -> None:
    identity = identity_api.add_user(EMAIL)
    identity_api.script(EMAIL, "GET", HANG)
    waits: list[float] = []

    resolution = client(identity_api, waits, timeout=timedelta(milliseconds=200)).get_or_create(
        EMAIL
    )

    assert resolution == Resolution(IdentityOutcome.FOUND, identity, 2)
    assert identity_api.requests == [get(), get()]
    assert waits == [0.5]


def test_after_the_last_attempt_the_identity_is_unavailable(identity_api: IdentityApi) -> None:
    identity_api.script(EMAIL, "GET", *[ERROR_500] * 3)
    waits: list[float] = []

    resolution = client(identity_api, waits, retry_delay=timedelta(seconds=1)).get_or_create(EMAIL)

    assert resolution == Resolution(IdentityOutcome.UNAVAILABLE, None, 3, "GET /user: HTTP 500")
    assert waits == [1.0, 1.0]


def test_a_refused_token_is_not_retried(identity_api: IdentityApi) -> None:
    waits: list[float] = []
    wrong = IdentityClient(identity_api.url, "wrong-token", sleep=waits.append)

    resolution = wrong.get_or_create(EMAIL)

    assert resolution == Resolution(
        IdentityOutcome.UNAVAILABLE, None, 1, "GET /user: HTTP 403, not the API's answer"
    )
    assert identity_api.requests == [Seen("GET", "/user", EMAIL, False)]
    assert waits == []


def test_no_server_is_retried_then_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    closed = IdentityClient(f"http://127.0.0.1:{port}", TOKEN, sleep=waits.append)

    resolution = closed.get_or_create(EMAIL)

    assert resolution == Resolution(
        IdentityOutcome.UNAVAILABLE, None, 3, "GET /user: ConnectionRefusedError"
    )
    assert waits == [0.5, 0.5]


def test_requests_in_flight_are_capped_per_worker(identity_api: IdentityApi) -> None:
    emails = [f"reader{n}@example.com" for n in range(6)]
    for email in emails:
        identity_api.add_user(email)
    # Each request waits until two are in flight: with a cap of 2, never more.
    identity_api.hold_until_in_flight(2)
    # Two clients of one URL in one process share the cap, as a worker's DoFns do.
    clients = [client(identity_api, [], max_concurrent=2) for _ in range(2)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(
            pool.map(lambda n: clients[n % 2].get_or_create(emails[n]).outcome, range(6))
        )

    assert outcomes == [IdentityOutcome.FOUND] * 6
    assert identity_api.max_in_flight == 2


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://idapi.example.com", "not an http(s) URL"),
        ("http://idapi.example.com", "must be https (http only for this machine)"),
        (
            "https://idapi.example.com?x=1",
            "must be a plain endpoint without query, fragment or user",
        ),
        (
            "https://user@idapi.example.com",
            "must be a plain endpoint without query, fragment or user",
        ),
    ],
    ids=["not-http", "http-over-a-network", "query", "user"],
)
def test_api_url_checks(url: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        check_api_url(url)
    assert str(error.value) == f"{message}: {url!r}"


def test_api_url_is_kept_without_trailing_slash() -> None:
    assert check_api_url("https://idapi.example.com/v1/") == "https://idapi.example.com/v1"


def test_the_token_is_in_no_repr_or_display_data(identity_api: IdentityApi) -> None:
    step = ResolveIdentities(identity_api.url, TOKEN)
    shown = [repr(step), repr(client(identity_api, [])), str(step.display_data())]
    assert all(TOKEN not in text for text in shown)


def run_step(
    api: IdentityApi,
    payments: list[Payment],
    expected: list[tuple[str, str | None, int]],
    stripe_mode: str = "live",
) -> dict[str, int]:
    """Runs the step on the FnApiRunner, asserts (charge id, identity, timestamp) per payment
    and returns the counters."""
    pipeline = beam.Pipeline(runner=FnApiRunner())
    resolved = (
        pipeline
        | beam.Create([TimestampedValue(p, 1000 + n) for n, p in enumerate(payments)])
        | ResolveIdentities(
            api.url, api.token, retry_delay=timedelta(milliseconds=10), stripe_mode=stripe_mode
        )
        | beam.Map(
            lambda p, ts=beam.DoFn.TimestampParam: (
                p.charge_id,
                p.identity_id or p.session.metadata.get("identityId"),
                int(ts),
            )
        )
    )
    assert_that(resolved, equal_to(expected))
    result = pipeline.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))["counters"]
    return {c.key.metric.name: c.committed for c in found}


def test_a_test_stage_gets_identities_for_test_payments_from_its_identity_api(
    identity_api: IdentityApi,
) -> None:
    payments = [guest_payment(charge_id="ch_t", email="tester@example.com", livemode=False)]

    counters = run_step(identity_api, payments, [("ch_t", str(FIRST_ID), 1000)], "test")

    assert identity_api.requests == [get("tester@example.com"), post("tester@example.com")]
    assert counters["identity_created"] == 1
    assert "identity_skipped_test_mode" not in counters


def test_the_step_looks_each_email_up_once_and_never_sends_a_bad_one(
    identity_api: IdentityApi,
) -> None:
    known = identity_api.add_user("known@example.com")
    payments = [
        guest_payment(charge_id="ch_a1", email="known@example.com"),
        guest_payment(charge_id="ch_a2", email="known@example.com"),
        guest_payment(charge_id="ch_b", email="new@example.com"),
        guest_payment(charge_id="ch_c", metadata={"identityId": "1001"}),
        guest_payment(charge_id="ch_d", email=None),
        guest_payment(charge_id="ch_e", email="not-an-email"),
        guest_payment(charge_id="ch_f", email="test@example.com", livemode=False),
        guest_payment(charge_id="ch_g", email="down@example.com"),
        replace(guest_payment(charge_id="ch_h", email="failed@example.com"), status="Failed"),
    ]
    identity_api.script("down@example.com", "GET", *[ERROR_500] * 3)

    new = str(FIRST_ID + 1)
    counters = run_step(
        identity_api,
        payments,
        [
            ("ch_a1", known, 1000),
            ("ch_a2", known, 1001),
            ("ch_b", new, 1002),
            ("ch_c", "1001", 1003),
            ("ch_d", None, 1004),
            ("ch_e", None, 1005),
            ("ch_f", None, 1006),
            ("ch_g", None, 1007),
            ("ch_h", None, 1008),
        ],
    )

    assert sorted(identity_api.requests, key=repr) == sorted(
        [get("known@example.com"), get("new@example.com"), post("new@example.com")]
        + [get("down@example.com")] * 3,
        key=repr,
    )
    assert identity_api.violations == []
    assert {name: v for name, v in counters.items() if "identity" in name} == {
        "identity_found": 2,
        "identity_created": 1,
        "identity_unavailable": 1,
        "identity_skipped_no_valid_email": 2,
        "identity_skipped_test_mode": 1,
        "requests_to_identity_api": 6,
    }
