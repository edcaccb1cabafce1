"""What the writers share: their retry policy, bundle-buffer outputs and rejected records."""

from __future__ import annotations

import random
from dataclasses import dataclass

from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from schemas.records import DeadLetter
from transforms.events import make_dead_letter


@dataclass(frozen=True)
class Backoff:
    """Retry policy: at most `max_attempts` attempts, full-jitter exponential delays.

    The delay before attempt n+1 (n >= 1) is uniform in
    [0, min(max_delay, initial_delay * 2 ** (n - 1))] seconds.
    """

    max_attempts: int = 8
    initial_delay: float = 0.1
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("need 0 <= initial_delay <= max_delay")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return rng.uniform(0.0, min(self.max_delay, self.initial_delay * 2 ** (attempt - 1)))


def buffered_output(
    tag: str, value: object, timestamp: Timestamp, window: BoundedWindow
) -> TaggedOutput:
    """A tagged output for an element buffered in a bundle.

    Writers that buffer per bundle emit from finish_bundle too, where Beam
    knows no input element, so each output carries its input's timestamp
    and window explicitly.
    """
    return TaggedOutput(tag, WindowedValue(value, timestamp, (window,)))


def rejected_record(
    record: object,
    *,
    step: str,
    reason: str,
    error: str,
    source: str,
    event_id: str | None = None,
) -> DeadLetter:
    """The dead letter of a record a writer could not write.

    Its raw text is the record's dataclass repr, which is deterministic, so a
    replay upserts the same letter.
    """
    return make_dead_letter(
        step=step, reason=reason, error=error, raw=repr(record), source=source, event_id=event_id
    )
