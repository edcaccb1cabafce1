"""What the sinks share: outputs of elements buffered per bundle, and rejected records."""

from __future__ import annotations

from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from schemas.records import DeadLetter
from transforms.domain.events import make_dead_letter


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
