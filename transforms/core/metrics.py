"""The pipeline's counters: one namespace, names built in one place.

Every record read ends in exactly one of `processed`, `skipped_<reason>`
(duplicates are `skipped_duplicate`) or `dead_lettered_<reason>`, which is
what lets the jobs print and check read = processed + skipped + dead-lettered.
"""

from __future__ import annotations

from functools import cache

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import Metrics as _Metrics

NAMESPACE = "stripe_events"

RECORDS_READ = "records_read"
PROCESSED = "processed"
SKIPPED_PREFIX = "skipped_"
DEAD_LETTERED_PREFIX = "dead_lettered_"
EVENT_TYPE_PREFIX = "event_type:"
PAYMENTS_PREFIX = "payments_"
OUTPUT_SKIPPED_PREFIX = "output_skipped_"
WARNING_PREFIX = "warning_"
# Informational: facts that reached a payment already completed (e.g. a
# payment_intent.succeeded after the charge), and charges no session claimed.
FACTS_AFTER_COMPLETION = "facts_after_completion"
CHARGES_WITHOUT_SESSION = "charges_without_checkout_session"
#: `charge_missing` payments completed by one PaymentIntent retrieval, and those it could not.
CHARGES_COMPLETED_FROM_STRIPE = "charges_completed_from_stripe"
CHARGE_RETRIEVALS_FAILED = "charge_retrievals_failed"
# Payments that needed an identity, by `transforms.domain.identity.IdentityOutcome`
# (identity_found, identity_created, ...), and the HTTP requests made for them.
IDENTITY_PREFIX = "identity_"
IDENTITY_API_REQUESTS = "requests_to_identity_api"
# Files, not records: a file that could not be read to its end (its records
# before the failure are read; the rest are unknown), so the run failed.
FILES_UNREADABLE = "files_unreadable"
# Files, not records: a file that decompresses past the object size limit
# (its records before the limit are read; the rest are not), so the run failed.
FILES_TOO_LARGE = "files_too_large"
# Files, not records: files the listing would not open (a link out of the
# source, a FIFO...), by reason; never read, so the run failed.
FILES_REFUSED_PREFIX = "files_refused_"


@cache
def counter(name: str) -> _Metrics.DelegatingCounter:
    return Metrics.counter(NAMESPACE, name)


def inc(name: str, value: int = 1) -> None:
    counter(name).inc(value)
