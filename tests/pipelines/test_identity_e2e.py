"""Both jobs with `--identity_api_url` against a local Identity API, row by row.

A generated archive of 120 payments holds a dozen live guests (paid, no
identity in the session, each with an email of their own) and a test-mode
one. The local API (`tests/fixtures/identity_api.py`) knows one guest
already and is scripted per email: two 500s before answering, a create whose
answer is lost, an `Email in use` race, a lookup slower than the timeout,
and one guest whose lookups fail three times (unavailable: a guest still).
Every other guest gets a new account. The expected rows are the truth's,
with each guest's identity replaced by the one the API holds for their
email; the expected counters and requests follow from the script.

The backfill runs twice against one API: the second run finds every
identity and creates nothing. The streaming job reads the same events from
Kinesis (moto) against a fresh API; a backfill of the same archive after it
(a replay) creates nothing either and writes the same rows.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines import backfill, streaming
from pipelines.options import IDENTITY_API_TOKEN_ENV
from tests.fixtures.identity_api import (
    ERROR_500,
    HANG,
    LOSE_RESPONSE,
    RACE,
    IdentityApi,
    running_identity_api,
)
from tests.fixtures.moto_server import MotoServer
from tests.pipelines.expected import (
    ACQUISITIONS_SQL,
    CURRENT_CONTRIBUTIONS_SQL,
    SUPPORTER_ITEMS_SQL,
    email_identities,
    expected_acquisitions,
    expected_contributions,
    expected_messages,
    expected_supporter_items,
    live_only,
    opt_in_identities,
    rows,
    snapshot,
)
from tools.generate_archive import Archive, generate, write_archive
from tools.put_on_kinesis import create_stream, kinesis_client, put_records

PAYMENTS = 120
SEED = 11
#: A short timeout and retry delay keep the slow and failing lookups quick.
#: The Identity API is a production effect: the run serves the live stage, which
#: skips the test-mode guest before the identity step (`other_stripe_mode`).
IDENTITY_FLAGS = [
    "--identity_timeout_s", "0.3", "--identity_retry_delay_s", "0.01", "--stripe_mode", "live",
]  # fmt: skip
STORE_IDENTITIES_SQL = "SELECT payment_id, identity_id FROM contributions_store ORDER BY 1"


@dataclass(frozen=True)
class Plan:
    """The archive, its guests and the part each plays in the API's script."""

    archive: Archive
    folder: Path
    truth: dict[str, Any]
    emails: dict[str, str]  # PaymentIntent id -> email
    guests: tuple[str, ...]  # emails of live paid guests, by charge id
    test_mode_guests: int
    existing: str
    failing_twice: str
    lost_create: str
    race: str
    slow: str
    down: str

    @property
    def found(self) -> set[str]:
        return {self.existing, self.lost_create, self.race}

    @property
    def created(self) -> set[str]:
        return set(self.guests) - self.found - {self.down}

    def script(self, api: IdentityApi) -> None:
        api.add_user(self.existing)
        api.script(self.failing_twice, "GET", ERROR_500, ERROR_500)
        api.script(self.lost_create, "POST", LOSE_RESPONSE)
        api.script(self.race, "POST", RACE)
        api.script(self.slow, "GET", HANG)
        api.script(self.down, "GET", ERROR_500, ERROR_500, ERROR_500)

    def first_run_requests(self) -> int:
        special = {
            self.existing: 1,  # GET
            self.failing_twice: 4,  # GET 500, GET 500, GET, POST
            self.lost_create: 3,  # GET, POST (lost), GET
            self.race: 3,  # GET, POST (Email in use), GET
            self.slow: 3,  # GET (timed out), GET, POST
            self.down: 3,  # GET 500 three times
        }
        return sum(special.get(email, 2) for email in self.guests)

    def resolved_truth(self, api: IdentityApi) -> dict[str, Any]:
        """The truth with each guest's identity as the API holds it (none for `down`)."""
        payments = []
        for payment in self.truth["payments"]:
            email = self.emails[payment["payment_intent_id"]]
            if email in self.guests and email != self.down:
                payment = {**payment, "identity_id": api.users[email]}
            payments.append(payment)
        return {**self.truth, "payments": payments}


def identity_lines(found: int, created: int, test_mode: int, requests: int) -> list[str]:
    counts = {"created": created, "found": found, "skipped_test_mode": test_mode, "unavailable": 1}
    return [
        f"payments without identity, by outcome: {sum(counts.values())}",
        *(f"  {name}: {value}" for name, value in counts.items() if value),
        f"requests to the identity api: {requests}",
    ]


def summary_identity_lines(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("payments without identity"))
    end = next(n for n, line in enumerate(lines) if line.startswith("requests to the identity"))
    return lines[start : end + 1]


def make_plan(folder: Path, start: datetime) -> Plan:
    archive = generate(payments=PAYMENTS, seed=SEED, start=start)
    write_archive(archive, folder)
    truth = archive.truth.to_json()
    emails = archive.payer_emails()
    assert len(set(emails.values())) == len(emails)  # one payment per payer
    guests = [
        p
        for p in sorted(truth["payments"], key=lambda p: p["charge_id"] or "")
        if p["charge_id"] and p["status"] != "Failed" and p["identity_id"] is None
    ]
    live = tuple(emails[p["payment_intent_id"]] for p in guests if p["livemode"])
    assert len(live) >= 8
    return Plan(
        archive=archive,
        folder=folder,
        truth=live_only(truth),  # what a live run writes
        emails=emails,
        guests=live,
        # A live run never sees the test-mode guest (`other_stripe_mode`), so the identity
        # step counts none; `len(guests) - len(live)` of them are in the archive.
        test_mode_guests=0,
        existing=live[0],
        failing_twice=live[1],
        lost_create=live[2],
        race=live[3],
        slow=live[4],
        down=live[5],
    )


@contextlib.contextmanager
def scripted_api(plan: Plan) -> Iterator[IdentityApi]:
    with running_identity_api() as api, pytest.MonkeyPatch.context() as patch:
        patch.setenv(IDENTITY_API_TOKEN_ENV, api.token)
        plan.script(api)
        yield api


def run_backfill(plan: Plan, api: IdentityApi, warehouse: Path, capture: Path) -> str:
    with capture.open("w") as out, contextlib.redirect_stdout(out):
        code = backfill.run(
            [
                "--source",
                str(plan.folder),
                "--warehouse",
                str(warehouse),
                "--identity_api_url",
                api.url,
                *IDENTITY_FLAGS,
            ]
        )
    assert code == 0
    return capture.read_text()


@dataclass(frozen=True)
class BackfillRuns:
    plan: Plan
    api: IdentityApi
    warehouse: Path
    outputs: tuple[str, str]
    snapshots: tuple[dict[str, Any], dict[str, Any]]
    created_after_first: tuple[str, ...]


@pytest.fixture(scope="module")
def backfills(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackfillRuns]:
    root = tmp_path_factory.mktemp("identity-backfill")
    plan = make_plan(root / "archive", datetime(2025, 5, 1, tzinfo=UTC))
    warehouse = root / "warehouse.duckdb"
    with scripted_api(plan) as api:
        first = run_backfill(plan, api, warehouse, root / "first.txt")
        created = tuple(api.created)
        first_snapshot = snapshot(warehouse)
        api.script(plan.down, "GET", ERROR_500, ERROR_500, ERROR_500)  # still down
        second = run_backfill(plan, api, warehouse, root / "second.txt")
        yield BackfillRuns(
            plan, api, warehouse, (first, second), (first_snapshot, snapshot(warehouse)), created
        )


def assert_rows_carry_the_identities(warehouse: Path, plan: Plan, api: IdentityApi) -> None:
    truth = plan.resolved_truth(api)
    assert rows(warehouse, CURRENT_CONTRIBUTIONS_SQL) == expected_contributions(truth)
    assert rows(warehouse, ACQUISITIONS_SQL) == expected_acquisitions(truth)
    assert rows(warehouse, SUPPORTER_ITEMS_SQL) == expected_supporter_items(truth)
    assert email_identities(warehouse) == expected_messages(truth)
    assert opt_in_identities(warehouse) == expected_messages(truth)
    paid = {p["charge_id"]: p["identity_id"] for p in truth["payments"] if p["status"] != "Failed"}
    assert rows(warehouse, STORE_IDENTITIES_SQL) == sorted(
        (charge, identity) for charge, identity in paid.items() if charge
    )


def test_backfill_gives_every_live_guest_an_identity(backfills: BackfillRuns) -> None:
    plan, api = backfills.plan, backfills.api
    assert_rows_carry_the_identities(backfills.warehouse, plan, api)
    # Guests that were created got a new account each, once; the others none.
    assert sorted(backfills.created_after_first) == sorted(plan.created | {plan.lost_create})
    assert api.violations == []
    assert all(seen.authorised for seen in api.requests)
    # Only live guests' emails reached the API.
    assert {seen.email for seen in api.requests} == set(plan.guests)


def test_backfill_counts_each_outcome_and_request(backfills: BackfillRuns) -> None:
    plan = backfills.plan
    assert summary_identity_lines(backfills.outputs[0]) == identity_lines(
        found=3,
        created=len(plan.created),
        test_mode=plan.test_mode_guests,
        requests=plan.first_run_requests(),
    )
    assert backfills.outputs[0].splitlines()[-1].endswith(": holds")


def test_a_rerun_backfill_finds_every_identity_and_creates_nothing(
    backfills: BackfillRuns,
) -> None:
    plan = backfills.plan
    assert tuple(backfills.api.created) == backfills.created_after_first
    assert backfills.snapshots[1] == backfills.snapshots[0]
    reachable = len(plan.guests) - 1
    assert summary_identity_lines(backfills.outputs[1]) == identity_lines(
        found=reachable, created=0, test_mode=plan.test_mode_guests, requests=reachable + 3
    )


def test_the_token_is_never_printed(backfills: BackfillRuns) -> None:
    assert all(backfills.api.token not in output for output in backfills.outputs)


@dataclass(frozen=True)
class StreamingRun:
    plan: Plan
    api: IdentityApi
    warehouse: Path
    output: str
    created_by_stream: tuple[str, ...]
    replay_warehouse: Path
    replay_output: str


@pytest.fixture(scope="module")
def streamed(
    moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StreamingRun]:
    # A day ahead, so that no event-time timer fires before the read ends
    # (see tests/pipelines/test_streaming.py).
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    root = tmp_path_factory.mktemp("identity-streaming")
    plan = make_plan(root / "archive", start)
    stream = f"stripe-events-{uuid.uuid4().hex[:8]}"
    client = kinesis_client()
    create_stream(client, stream, 2)
    put_records(client, stream, list(plan.archive.envelopes(include_malformed=True)))
    warehouse = root / "streaming.duckdb"
    with scripted_api(plan) as api:
        capture = root / "streaming.txt"
        with capture.open("w") as out, contextlib.redirect_stdout(out):
            code = streaming.run(
                [
                    "--kinesis_stream",
                    stream,
                    "--idle_timeout_s",
                    "3",
                    "--warehouse",
                    str(warehouse),
                    "--identity_api_url",
                    api.url,
                    *IDENTITY_FLAGS,
                ]
            )
        assert code == 0
        created = tuple(api.created)
        api.script(plan.down, "GET", ERROR_500, ERROR_500, ERROR_500)
        replay = root / "replay.duckdb"
        replay_output = run_backfill(plan, api, replay, root / "replay.txt")
        yield StreamingRun(
            plan, api, warehouse, capture.read_text(), created, replay, replay_output
        )


def test_streaming_gives_every_live_guest_an_identity(streamed: StreamingRun) -> None:
    plan, api = streamed.plan, streamed.api
    assert_rows_carry_the_identities(streamed.warehouse, plan, api)
    assert sorted(streamed.created_by_stream) == sorted(plan.created | {plan.lost_create})
    assert api.violations == []
    assert summary_identity_lines(streamed.output) == identity_lines(
        found=3,
        created=len(plan.created),
        test_mode=plan.test_mode_guests,
        requests=plan.first_run_requests(),
    )


def test_a_replay_after_streaming_creates_nothing_and_writes_the_same_rows(
    streamed: StreamingRun,
) -> None:
    assert tuple(streamed.api.created) == streamed.created_by_stream
    streamed_tables = snapshot(streamed.warehouse)
    replayed = snapshot(streamed.replay_warehouse)
    for table in streamed_tables.keys() - {"dead_letters"}:
        assert streamed_tables[table] == replayed[table], table
    reachable = len(streamed.plan.guests) - 1
    assert summary_identity_lines(streamed.replay_output) == identity_lines(
        found=reachable,
        created=0,
        test_mode=streamed.plan.test_mode_guests,
        requests=reachable + 3,
    )
