"""Which payers need an identity, and a resolved identity reaching every record."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.builders import ACCOUNT_UK, T0, event, session_object
from transforms.domain.facts import SessionFact, classify
from transforms.domain.identity import (
    IdentityOutcome,
    guest_registration,
    is_valid_email,
    needs_identity,
    skipped_outcome,
    with_identity,
)
from transforms.domain.mapping import build_records
from transforms.domain.payment import Payment

GUEST_EMAIL = "guest.reader@example.com"
RESOLVED = "200000001"


def guest_payment(
    *,
    status: str = "Paid",
    charge_id: str = "ch_1",
    livemode: bool = True,
    email: str | None = GUEST_EMAIL,
    metadata: dict[str, str] | None = None,
    **session: Any,
) -> Payment:
    """A settled payment whose session names no identity (unless `metadata` or `session` do)."""
    fact = classify(
        event(
            f"evt_{charge_id}",
            "checkout.session.completed",
            session_object(
                session_id=f"cs_{charge_id}",
                payment_intent=f"pi_{charge_id}",
                metadata=metadata or {},
                email=email,
                **session,
            ),
            livemode=livemode,
        )
    )
    assert isinstance(fact, SessionFact)
    return Payment(
        session=fact,
        status=status,
        settled_at=T0,
        charge_id=charge_id,
        card_country="GB",
        payment_method="card",
        account=ACCOUNT_UK,
    )


@pytest.mark.parametrize(
    "address",
    ["reader1@example.com", "a.b+tag@sub.example.co.uk", "o'neil@example.ie", "x@xn--bcher-kva.de"],
)
def test_valid_emails(address: str) -> None:
    assert is_valid_email(address)


@pytest.mark.parametrize(
    "address",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("reader.example.com", id="no-at"),
        pytest.param("a@b@example.com", id="two-ats"),
        pytest.param("@example.com", id="no-local-part"),
        pytest.param("reader@", id="no-domain"),
        pytest.param("reader@localhost", id="undotted-domain"),
        pytest.param("reader@example..com", id="empty-label"),
        pytest.param("reader@-example.com", id="label-starts-with-hyphen"),
        pytest.param("read er@example.com", id="space"),
        pytest.param(" reader@example.com", id="leading-space"),
        pytest.param("reader\n@example.com", id="newline"),
        pytest.param(".reader@example.com", id="leading-dot"),
        pytest.param("re..ader@example.com", id="double-dot"),
        pytest.param("r" * 65 + "@example.com", id="local-part-too-long"),
        pytest.param("r@" + "e" * 63 + "." + "x" * 200 + ".com", id="address-too-long"),
    ],
)
def test_invalid_emails(address: str | None) -> None:
    assert not is_valid_email(address)


@pytest.mark.parametrize(
    ("changes", "needed"),
    [
        pytest.param({}, True, id="paid-guest"),
        pytest.param({"metadata": {"identityId": "1001"}}, False, id="identity-in-metadata"),
        pytest.param({"client_reference_id": "1002"}, False, id="identity-in-reference"),
        pytest.param({"status": "Failed"}, False, id="failed-payment"),
    ],
)
def test_only_paid_payments_without_identity_need_one(
    changes: dict[str, Any], needed: bool
) -> None:
    assert needs_identity(guest_payment(**changes)) is needed


@pytest.mark.parametrize(
    ("changes", "outcome"),
    [
        pytest.param({}, None, id="looked-up"),
        pytest.param({"email": None}, IdentityOutcome.SKIPPED_NO_VALID_EMAIL, id="no-email"),
        pytest.param(
            {"email": "not-an-email"}, IdentityOutcome.SKIPPED_NO_VALID_EMAIL, id="bad-email"
        ),
        pytest.param({"livemode": False}, IdentityOutcome.SKIPPED_TEST_MODE, id="test-mode"),
    ],
)
def test_which_payments_are_not_looked_up(
    changes: dict[str, Any], outcome: IdentityOutcome | None
) -> None:
    assert skipped_outcome(guest_payment(**changes)) is outcome
    assert skipped_outcome(guest_payment(**changes), "live") is outcome


@pytest.mark.parametrize(
    ("livemode", "stripe_mode", "outcome"),
    [
        pytest.param(False, "test", None, id="test-payment-test-stage-looked-up"),
        pytest.param(False, "live", IdentityOutcome.SKIPPED_TEST_MODE, id="test-payment-live"),
        pytest.param(False, "all", IdentityOutcome.SKIPPED_TEST_MODE, id="test-payment-all"),
        pytest.param(True, "test", None, id="live-payment-test-stage"),
    ],
)
def test_a_test_stage_looks_up_test_payments_in_its_own_identity_api(
    livemode: bool, stripe_mode: str, outcome: IdentityOutcome | None
) -> None:
    assert skipped_outcome(guest_payment(livemode=livemode), stripe_mode) is outcome


def test_a_resolved_identity_reaches_every_record() -> None:
    records = build_records(with_identity(guest_payment(), RESOLVED))

    assert records.skipped == ()
    assert records.contribution.identity_id == RESOLVED
    assert records.acquisition is not None and records.acquisition.identity_id == RESOLVED
    store = records.contribution_store
    assert store is not None and (store.identity_id, store.email) == (RESOLVED, GUEST_EMAIL)
    supporter = records.supporter
    assert supporter is not None
    assert (supporter.identity_id, supporter.subscription_name) == (RESOLVED, "Stripe - ch_1")
    assert records.thank_you_email is not None
    email = json.loads(records.thank_you_email.message)
    assert (email["IdentityUserId"], email["To"]["Address"]) == (RESOLVED, GUEST_EMAIL)
    assert records.soft_opt_in is not None
    assert json.loads(records.soft_opt_in.message)["identityId"] == RESOLVED


def test_a_guest_left_without_identity_is_built_as_today() -> None:
    payment = guest_payment()
    assert with_identity(payment, None) is payment
    records = build_records(payment)
    assert records.contribution.identity_id is None
    assert records.skipped == (
        "supporter_item_no_identity",
        "email_no_identity",
        "soft_opt_in_no_identity",
    )
    assert (records.supporter, records.thank_you_email, records.soft_opt_in) == (None, None, None)


def test_the_sessions_identity_wins_over_a_resolved_one() -> None:
    payment = with_identity(guest_payment(metadata={"identityId": "1001"}), RESOLVED)
    assert build_records(payment).contribution.identity_id == "1001"


def test_guest_registration_body() -> None:
    assert guest_registration(GUEST_EMAIL) == {
        "primaryEmailAddress": GUEST_EMAIL,
        "publicFields": {"displayName": "guest.reader"},
    }
