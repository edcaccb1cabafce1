"""Get or create the identity of every paying guest, through the Identity API.

    payments | ResolveIdentities(api_url, token)  -> payments, bounded or not

A paid payment whose session named no identity (`transforms.domain.identity`)
gets one, as today's payment API does: GET `<api>/user?emailAddress=<email>`;
on `Not found`, POST `<api>/guest?accountVerificationEmail=true`; on
`Email in use` (someone created it meanwhile), GET again. Every other payment
passes through untouched, at once.

Safe under retries, because every attempt starts with the GET: a create that
succeeded but whose answer was lost (timeout, dropped connection) is found by
the next attempt, and a re-run or replay finds what the first run created.
Within a bundle the step is keyed by email, so one payer's payments make one
lookup. Bounded: a worker-wide cap on concurrent requests, a timeout per
request, at most `attempts` attempts `retry_delay` apart on 5xx answers and
connection failures. A payer whose identity cannot be had keeps going as a
guest (counted `identity_unavailable`, logged with the charge id) rather than
holding the payment back: the same choice today's system makes. Any other
answer (a 401 for a bad token, a body that is not the API's) is not retried.

The HTTP client is the standard library's `http.client` (one connection per
request, no proxy lookup), so the step adds no dependency. The token is sent
only in the `x-gu-id-client-access-token` header: it is never logged, shown
in display data, or put in an error message. Email addresses are never
logged either; counters are in `transforms.core.metrics`.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import PCollection
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from transforms.core import metrics
from transforms.domain.facts import LIVE_MODE, STRIPE_MODES
from transforms.domain.identity import (
    IdentityOutcome,
    guest_registration,
    needs_identity,
    skipped_outcome,
    with_identity,
)
from transforms.domain.payment import Payment

TOKEN_HEADER = "x-gu-id-client-access-token"
NOT_FOUND = "Not found"
EMAIL_IN_USE = "Email in use"

DEFAULT_TIMEOUT = timedelta(seconds=5)
#: Today's rule: 3 attempts, 500 ms apart, each starting with a GET.
DEFAULT_ATTEMPTS = 3
DEFAULT_RETRY_DELAY = timedelta(milliseconds=500)
DEFAULT_MAX_CONCURRENT = 4
#: Distinct emails a bundle holds before it looks them up: bounds the delay a
#: large bundle adds to its first payments, and the memory held.
DEFAULT_MAX_BUFFERED = 100

_LOG = logging.getLogger(__name__)


class _Retryable(Exception):
    """A 5xx answer or a connection failure (refused, reset, timed out): try again."""


class _Refused(Exception):
    """Any other answer the API should not have given: retrying would not help."""


@dataclass(frozen=True)
class Resolution:
    """The outcome for one email, the requests it took, and why it failed (no personal data)."""

    outcome: IdentityOutcome
    identity_id: str | None
    requests: int
    error: str | None = None


_GATES: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_GATES_LOCK = threading.Lock()


def worker_gate(api_url: str, max_concurrent: int) -> threading.BoundedSemaphore:
    """The semaphore every client of `api_url` in this process shares: the per-worker cap."""
    with _GATES_LOCK:
        return _GATES.setdefault(
            (api_url, max_concurrent), threading.BoundedSemaphore(max_concurrent)
        )


def check_api_url(api_url: str) -> str:
    """The URL without a trailing slash; ValueError unless https (http only on this machine).

    The token travels in a header, so it must not cross a network in clear.
    """
    parts = urllib.parse.urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {api_url!r}")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"must be https (http only for this machine): {api_url!r}")
    if parts.query or parts.fragment or parts.username:
        raise ValueError(f"must be a plain endpoint without query, fragment or user: {api_url!r}")
    return api_url.rstrip("/")


class IdentityClient:
    """Get-or-create by email against the Identity API; thread-safe (see the module docstring).

    `sleep` waits between attempts (a test passes a recorder).
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        timeout: timedelta = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_delay: timedelta = DEFAULT_RETRY_DELAY,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1 or max_concurrent < 1:
            raise ValueError("attempts and max_concurrent must be at least 1")
        self._url = check_api_url(api_url)
        parts = urllib.parse.urlsplit(self._url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = parts.path
        self._headers = {
            TOKEN_HEADER: f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": "stripe-contributions-pipeline",
        }
        self._timeout = timeout.total_seconds()
        self._attempts = attempts
        self._retry_delay = retry_delay.total_seconds()
        self._gate = worker_gate(self._url, max_concurrent)
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"IdentityClient({self._url})"

    def get_or_create(self, email: str) -> Resolution:
        """The identity of `email` (a valid address): found, created, or unavailable."""
        call = _Call(self)
        error: str | None = None
        for attempt in range(1, self._attempts + 1):
            if attempt > 1:
                self._sleep(self._retry_delay)
            try:
                found = call.get(email)
                if found is not None:
                    return call.resolved(IdentityOutcome.FOUND, found)
                created = call.create(email)
                if created is not None:
                    return call.resolved(IdentityOutcome.CREATED, created)
                found = call.get(email)
                if found is not None:
                    return call.resolved(IdentityOutcome.FOUND, found)
                error = f"{EMAIL_IN_USE} on create, then {NOT_FOUND}"
            except _Retryable as failure:
                error = str(failure)
            except _Refused as failure:
                return Resolution(IdentityOutcome.UNAVAILABLE, None, call.requests, str(failure))
        return Resolution(IdentityOutcome.UNAVAILABLE, None, call.requests, error)

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        """(HTTP status, parsed JSON body or None); _Retryable on 5xx and connection failures."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection_class = (
            http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        )
        with self._gate:
            connection = connection_class(self._host, self._port, timeout=self._timeout)
            try:
                connection.request(method, self._path + path, body=data, headers=headers)
                response = connection.getresponse()
                status, raw = response.status, response.read()
            except (OSError, http.client.HTTPException) as failure:
                # Timeouts, refused or reset connections, answers cut short.
                raise _Retryable(
                    f"{method} {path.split('?')[0]}: {type(failure).__name__}"
                ) from None
            finally:
                connection.close()
        if status >= 500:
            raise _Retryable(f"{method} {path.split('?')[0]}: HTTP {status}")
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None


class _Call:
    """One get-or-create: its requests, counted."""

    def __init__(self, client: IdentityClient) -> None:
        self._client = client
        self.requests = 0

    def resolved(self, outcome: IdentityOutcome, identity: str) -> Resolution:
        return Resolution(outcome, identity, self.requests)

    def get(self, email: str) -> str | None:
        """The user's id, or None when the API says `Not found`."""
        self.requests += 1
        query = urllib.parse.urlencode({"emailAddress": email})
        status, body = self._client.request("GET", f"/user?{query}", None)
        if _ok(body):
            user = body.get("user")
            return _identity_id(user.get("id") if isinstance(user, dict) else None, "GET /user")
        if NOT_FOUND in _error_messages(body):
            return None
        raise _Refused(f"GET /user: HTTP {status}, not the API's answer")

    def create(self, email: str) -> str | None:
        """The new guest's id, or None when the API says `Email in use`."""
        self.requests += 1
        body = guest_registration(email)
        status, answer = self._client.request("POST", "/guest?accountVerificationEmail=true", body)
        if _ok(answer):
            request = answer.get("guestRegistrationRequest")
            user_id = request.get("userId") if isinstance(request, dict) else None
            return _identity_id(user_id, "POST /guest")
        if EMAIL_IN_USE in _error_messages(answer):
            return None
        raise _Refused(f"POST /guest: HTTP {status}, not the API's answer")


def _ok(body: Any) -> bool:
    return isinstance(body, dict) and body.get("status") == "ok"


def _error_messages(body: Any) -> set[str]:
    if not isinstance(body, dict) or body.get("status") != "error":
        return set()
    errors = body.get("errors")
    if not isinstance(errors, list):
        return set()
    return {str(e.get("message")) for e in errors if isinstance(e, dict)}


def _identity_id(value: Any, what: str) -> str:
    """Identity ids are numbers, sent as strings or JSON numbers."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).isdigit():
        raise _Refused(f"{what}: answered ok without a numeric id")
    return str(value)


_Pending = tuple[Payment, Timestamp, BoundedWindow]


class _GetOrCreateIdentitiesFn(beam.DoFn):
    """Payment -> Payment; payments needing a lookup are held per bundle, keyed by email."""

    def __init__(self, api_url: str, token: str, options: dict[str, Any]) -> None:
        self._api_url = api_url
        self._token = token
        self._options = options
        self._max_buffered = int(options.pop("max_buffered"))
        self._stripe_mode = str(options.pop("stripe_mode"))
        self._client: IdentityClient | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[str, list[_Pending]] = {}

    def __repr__(self) -> str:
        return f"_GetOrCreateIdentitiesFn({self._api_url})"

    def setup(self) -> None:
        self._client = IdentityClient(self._api_url, self._token, **self._options)
        self._pool = ThreadPoolExecutor(
            max_workers=self._options["max_concurrent"], thread_name_prefix="identity"
        )

    def start_bundle(self) -> None:
        self._pending = {}

    def process(
        self,
        payment: Payment,
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> Iterator[object]:
        if not needs_identity(payment):
            yield payment
            return
        skipped = skipped_outcome(payment, self._stripe_mode)
        if skipped is not None:
            metrics.inc(metrics.IDENTITY_PREFIX + skipped.value)
            yield payment
            return
        email = payment.session.customer.email
        assert email is not None
        self._pending.setdefault(email, []).append((payment, timestamp, window))
        if len(self._pending) >= self._max_buffered:
            yield from self._look_up()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        yield from self._look_up()

    def _look_up(self) -> Iterator[WindowedValue]:
        """Resolves each held email (one get-or-create each, in parallel); emits the payments."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        assert self._client is not None and self._pool is not None
        resolutions = self._pool.map(self._client.get_or_create, list(pending))
        for held, resolution in zip(pending.values(), resolutions, strict=True):
            metrics.inc(metrics.IDENTITY_API_REQUESTS, resolution.requests)
            for payment, timestamp, window in held:
                metrics.inc(metrics.IDENTITY_PREFIX + resolution.outcome.value)
                if resolution.outcome is IdentityOutcome.UNAVAILABLE:
                    _LOG.warning(
                        "no identity for payment %s, which goes on as a guest: %s",
                        payment.charge_id,
                        resolution.error,
                    )
                resolved = with_identity(payment, resolution.identity_id)
                yield WindowedValue(resolved, timestamp, (window,))

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class ResolveIdentities(beam.PTransform):
    """PCollection[Payment] (bounded or not) -> PCollection[Payment], each payer with an identity.

    Injected into the core: `ProcessStripeEvents(resolve_identities=ResolveIdentities(...))`
    applies it to settled payments before their records are built. See the
    module docstring for the calls, retries and the guest fallback. Every input
    payment is output once per successful bundle, with its timestamp and window.
    `stripe_mode` is the run's: a `test` run (the CODE Identity API) looks up
    test-mode payments too; any other skips them (`skipped_test_mode`).
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        timeout: timedelta = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_delay: timedelta = DEFAULT_RETRY_DELAY,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        stripe_mode: str = LIVE_MODE,
    ) -> None:
        super().__init__()
        if stripe_mode not in STRIPE_MODES:
            raise ValueError(f"stripe_mode must be one of {STRIPE_MODES}, got {stripe_mode!r}")
        if not token:
            raise ValueError("the Identity API token is empty")
        if attempts < 1 or max_concurrent < 1 or max_buffered < 1:
            raise ValueError("attempts, max_concurrent and max_buffered must be at least 1")
        self._api_url = check_api_url(api_url)
        self._token = token
        self._options: dict[str, Any] = {
            "timeout": timeout,
            "attempts": attempts,
            "retry_delay": retry_delay,
            "max_concurrent": max_concurrent,
            "max_buffered": max_buffered,
            "stripe_mode": stripe_mode,
        }

    def __repr__(self) -> str:
        return f"ResolveIdentities({self._api_url})"

    def display_data(self) -> dict[str, Any]:
        return {
            "api_url": self._api_url,
            "max_concurrent": self._options["max_concurrent"],
            "stripe_mode": self._options["stripe_mode"],
        }

    def expand(self, payments: PCollection) -> PCollection:
        return payments | "GetOrCreateIdentities" >> beam.ParDo(
            _GetOrCreateIdentitiesFn(self._api_url, self._token, dict(self._options))
        )
