from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.builders import T0, charge_object
from tests.fixtures.stripe_payment_intents import (
    API_KEY,
    StripePaymentIntentsApi,
    stripe_payment_intents_api,
)
from tests.stripe_shapes import BASIL_2025, LEGACY_2022, fixture
from transforms.domain.completion import NOT_SETTLED, RETRIEVED
from transforms.infrastructure import InfrastructureError
from transforms.services.stripe_charges import (
    KEY_CHECK_ID,
    KEY_REFUSED,
    NETWORK_RETRIES,
    NOT_FOUND,
    STRIPE_ERROR,
    UNREACHABLE,
    ChargeRetriever,
    RetrievalError,
)

__all__ = ["stripe_payment_intents_api"]

CHARGED_AT = T0 + 5


def serve_paid(api: StripePaymentIntentsApi, intent_id: str = "pi_1", **intent: Any) -> None:
    charge = {**charge_object(payment_intent=intent_id, card_country="DE"), "created": CHARGED_AT}
    api.charges["ch_1"] = charge
    served = {"status": "succeeded", "latest_charge": "ch_1", **intent}
    api.intents[intent_id] = fixture(
        BASIL_2025, "payment_intent", id=intent_id, created=T0, livemode=False, **served
    )


def test_one_retrieval_expands_the_latest_charge_into_its_fact(
    stripe_payment_intents_api: StripePaymentIntentsApi,
) -> None:
    api = stripe_payment_intents_api
    serve_paid(api)

    fact = ChargeRetriever(API_KEY, api.url).charge_fact("pi_1", account="acct_1")

    assert api.requests == [("/v1/payment_intents/pi_1", {"expand[0]": ["latest_charge"]})]
    assert (fact.payment_intent_id, fact.charge_id, fact.succeeded) == ("pi_1", "ch_1", True)
    assert (fact.has_charge_object, fact.card_country, fact.payment_method) == (True, "DE", "card")
    assert (fact.meta.event_type, fact.meta.created, fact.meta.account) == (
        RETRIEVED,
        CHARGED_AT,
        "acct_1",
    )


def test_an_older_api_version_answering_with_charges_data_is_read(
    stripe_payment_intents_api: StripePaymentIntentsApi,
) -> None:
    api = stripe_payment_intents_api
    intent = fixture(LEGACY_2022, "payment_intent", id="pi_1", status="succeeded", created=T0)
    intent.pop("latest_charge", None)
    intent["charges"] = {"object": "list", "data": [charge_object(card_country="FR")]}
    api.intents["pi_1"] = intent

    fact = ChargeRetriever(API_KEY, api.url).charge_fact("pi_1")

    assert (fact.charge_id, fact.card_country) == ("ch_1", "FR")


def test_an_unknown_payment_intent_is_not_found(
    stripe_payment_intents_api: StripePaymentIntentsApi,
) -> None:
    with pytest.raises(RetrievalError) as raised:
        ChargeRetriever(API_KEY, stripe_payment_intents_api.url).charge_fact("pi_gone")

    assert (raised.value.reason, str(raised.value)) == (
        NOT_FOUND,
        "Stripe has no PaymentIntent pi_gone",
    )
    assert len(stripe_payment_intents_api.requests) == 1


def test_a_payment_intent_still_processing_has_no_charge_yet(
    stripe_payment_intents_api: StripePaymentIntentsApi,
) -> None:
    serve_paid(stripe_payment_intents_api, status="processing")

    with pytest.raises(RetrievalError) as raised:
        ChargeRetriever(API_KEY, stripe_payment_intents_api.url).charge_fact("pi_1")

    assert raised.value.reason == NOT_SETTLED
    assert str(raised.value) == f"{NOT_SETTLED}: status is processing"


def test_a_refused_key_says_so_without_the_key(
    stripe_payment_intents_api: StripePaymentIntentsApi,
) -> None:
    serve_paid(stripe_payment_intents_api)

    with pytest.raises(RetrievalError) as raised:
        ChargeRetriever("rk_test_wrongwrong", stripe_payment_intents_api.url).charge_fact("pi_1")

    assert raised.value.reason == KEY_REFUSED
    assert "rk_test" not in str(raised.value)
    assert len(stripe_payment_intents_api.requests) == 1


def test_5xx_answers_are_retried_a_bounded_number_of_times(
    stripe_payment_intents_api: StripePaymentIntentsApi,
) -> None:
    api = stripe_payment_intents_api
    serve_paid(api)
    api.failures["pi_1"] = NETWORK_RETRIES
    assert ChargeRetriever(API_KEY, api.url).charge_fact("pi_1").charge_id == "ch_1"
    assert len(api.requests) == NETWORK_RETRIES + 1

    api.requests.clear()
    api.failures["pi_1"] = NETWORK_RETRIES + 1
    with pytest.raises(RetrievalError) as raised:
        ChargeRetriever(API_KEY, api.url).charge_fact("pi_1")
    assert (raised.value.reason, str(raised.value)) == (STRIPE_ERROR, "Stripe answered 500")
    assert len(api.requests) == NETWORK_RETRIES + 1


def test_an_unreachable_api_is_unreachable() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(RetrievalError) as raised:
        ChargeRetriever(API_KEY, f"http://127.0.0.1:{port}").charge_fact("pi_1")

    assert raised.value.reason == UNREACHABLE


def test_the_key_check_accepts_a_key_stripe_answers_not_found_for(
    stripe_payment_intents_api: StripePaymentIntentsApi,
) -> None:
    ChargeRetriever(API_KEY, stripe_payment_intents_api.url).check_key()

    assert [path for path, _ in stripe_payment_intents_api.requests] == [
        f"/v1/payment_intents/{KEY_CHECK_ID}"
    ]


def test_the_key_check_refuses_a_key_stripe_refuses_without_printing_it(
    stripe_payment_intents_api: StripePaymentIntentsApi,
) -> None:
    with pytest.raises(InfrastructureError) as raised:
        ChargeRetriever("rk_test_wrongwrong", stripe_payment_intents_api.url).check_key()

    assert str(raised.value) == (
        "--complete_from_stripe: Stripe refused the key in STRIPE_API_KEY for PaymentIntents"
    )
