"""Read a `charge_missing` payment's charge from Stripe: one PaymentIntent retrieval.

    retriever = ChargeRetriever(api_key, api_base)
    retriever.charge_fact(payment_intent_id)  -> ChargeFact, or raises RetrievalError
    retriever.check_key()                     # before launch: InfrastructureError unless accepted

`GET /v1/payment_intents/{id}?expand[]=latest_charge` through the `stripe`
library (its API base pointed elsewhere for tests and proxies), with a timeout
per request and the library's own bounded retries on network errors, 409s
and 5xx answers. What it reads is turned into a charge fact by the pure
`transforms.domain.completion.charge_fact_of`, the same reading as the
PaymentIntent's outcome event.

Every failure is a `RetrievalError` whose `reason` and message say why
(`not_found`, `key_refused`, `unreachable`, `stripe_error`, or the
completion's reasons); the key is never in one, and no personal data is.
"""

from __future__ import annotations

from typing import Any

from transforms.domain import completion
from transforms.domain.facts import ChargeFact
from transforms.infrastructure import InfrastructureError

API_KEY_ENV = "STRIPE_API_KEY"
DEFAULT_API_BASE = "https://api.stripe.com"
#: Seconds before one HTTP call to Stripe is given up (then retried by the library).
REQUEST_TIMEOUT_S = 10.0
NETWORK_RETRIES = 2
EXPAND = ["latest_charge"]
#: The PaymentIntent the key check asks for: not an id Stripe gives.
KEY_CHECK_ID = "pi_key_check"

NOT_FOUND = "not_found"
KEY_REFUSED = "key_refused"
UNREACHABLE = "unreachable"
STRIPE_ERROR = "stripe_error"


class RetrievalError(Exception):
    """The PaymentIntent could not be read, or gives no charge: the letter stays."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ChargeRetriever:
    """One client per worker; `charge_fact` makes one retrieval per call."""

    def __init__(self, api_key: str, api_base: str = DEFAULT_API_BASE) -> None:
        # Imported here, by the runs that read from Stripe: the library (with
        # httpx, which it brings) costs every other run 20 ms of start-up.
        import stripe

        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            max_network_retries=NETWORK_RETRIES,
            http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT_S),
        )

    def payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        """The PaymentIntent as plain JSON, its latest charge expanded."""
        import stripe  # loaded by __init__

        try:
            intent = self._client.v1.payment_intents.retrieve(
                payment_intent_id, params={"expand": EXPAND}
            )
        except stripe.InvalidRequestError as error:
            if error.http_status == 404:
                raise RetrievalError(
                    NOT_FOUND, f"Stripe has no PaymentIntent {payment_intent_id}"
                ) from None
            raise RetrievalError(STRIPE_ERROR, f"Stripe answered {error.http_status}") from None
        except (stripe.AuthenticationError, stripe.PermissionError):
            raise RetrievalError(
                KEY_REFUSED, f"Stripe refused the key in {API_KEY_ENV} for PaymentIntents"
            ) from None
        except stripe.APIConnectionError:
            raise RetrievalError(
                UNREACHABLE,
                f"Stripe could not be reached after {NETWORK_RETRIES} retries (network error)",
            ) from None
        except stripe.StripeError as error:
            raise RetrievalError(STRIPE_ERROR, f"Stripe answered {error.http_status}") from None
        return intent.to_dict()

    def check_key(self) -> None:
        """Before launch: Stripe accepts the key for PaymentIntents, else InfrastructureError.

        Retrieves a PaymentIntent no account has: Stripe's 404 for it proves
        the key was accepted with read access to PaymentIntents.
        """
        try:
            self.payment_intent(KEY_CHECK_ID)
        except RetrievalError as error:
            if error.reason != NOT_FOUND:
                raise InfrastructureError(f"--complete_from_stripe: {error}") from None

    def charge_fact(self, payment_intent_id: str, account: str | None = None) -> ChargeFact:
        """The charge fact of the PaymentIntent, as its outcome event would have given it."""
        intent = self.payment_intent(payment_intent_id)
        if intent.get("id") != payment_intent_id:
            raise RetrievalError(STRIPE_ERROR, "Stripe answered with another PaymentIntent")
        try:
            return completion.charge_fact_of(intent, account=account)
        except completion.CompletionError as error:
            raise RetrievalError(error.reason, str(error)) from None
