"""An archive: its plan and truth, and its records rendered lazily in arrival order."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from tools.generate_archive.model import DEFAULT_START, ArrivedRecord, Item, reader_email
from tools.generate_archive.plan import plan_items
from tools.generate_archive.render import Renderer
from tools.generate_archive.truth import Truth, truth_of


@dataclass(frozen=True)
class Archive:
    """A planned archive: the truth now, the records lazily and always the same.

    `records()` renders and yields every Firehose record in arrival order; memory is
    bounded by the records in flight (those whose arrival is later than the start of
    the item being rendered), not by the archive's size. It can be called many times.
    """

    seed: int
    truth: Truth
    items: tuple[Item, ...]

    def records(self) -> Iterator[ArrivedRecord]:
        """Every record (envelopes and malformed ones), ordered by arrival then plan order."""
        heap: list[tuple[int, int, ArrivedRecord]] = []
        seq = 0
        for item in self.items:
            # Every record of this and later items arrives after item.t0.
            horizon = item.t0 * 1000
            while heap and heap[0][0] < horizon:
                yield heapq.heappop(heap)[2]
            recs, _ = Renderer(item, self.seed).records()
            for rec in recs:
                heapq.heappush(heap, (rec.arrival_ms, seq, rec))
                seq += 1
        while heap:
            yield heapq.heappop(heap)[2]

    def envelopes(self, include_malformed: bool = True) -> Iterator[bytes]:
        """The records' bytes in arrival order, e.g. for a Kinesis producer."""
        for rec in self.records():
            if include_malformed or not rec.malformed:
                yield rec.data

    def payer_emails(self) -> dict[str, str]:
        """{PaymentIntent id: the email its Checkout Session carries}, for every payment.

        Not in the truth (which holds no personal data): tests of the identity
        step need it to know what the Identity API is asked.
        """
        return {
            item.payment.pi_id: reader_email(item.payment.reader)
            for item in self.items
            if item.payment is not None
        }

    def exports(self) -> list[bytes]:
        """Lines of the Stripe API export (bare events), ordered by creation."""
        lines: list[tuple[int, int, bytes]] = []
        for item in self.items:
            if any(e.export for e in item.events):
                _, exports = Renderer(item, self.seed).records()
                lines.extend((created, item.index, data) for created, data in exports)
        return [data for _, _, data in sorted(lines)]


def generate(
    payments: int,
    seed: int,
    start: datetime = DEFAULT_START,
    hours: float = 24.0,
) -> Archive:
    """Plan an archive of `payments` contributions created over `hours` from `start`.

    Also plans the noise around them (expired, subscription and setup sessions,
    unrelated and thin events) and malformed records, in proportion to `payments`.
    Deterministic: equal arguments give equal truth and equal record bytes. Events of a
    payment may arrive long after `start + hours` (late refunds, disputes, replays).
    """
    if payments < 1:
        raise ValueError("payments must be at least 1")
    if hours <= 0:
        raise ValueError("hours must be positive")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(seed)
    t_start = int(start.timestamp())
    span = int(hours * 3600)

    items = plan_items(rng, payments, t_start, span)
    return Archive(
        seed=seed,
        truth=truth_of(items, payments, seed, start, hours),
        items=tuple(items),
    )
