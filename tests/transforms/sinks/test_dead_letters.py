"""Tests of transforms.sinks.dead_letters.Selection: the WHERE clause each criterion makes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from transforms.sinks.dead_letters import Selection

SINCE = datetime(2024, 12, 5, 23, 0, tzinfo=UTC)
UNTIL = datetime(2024, 12, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("selection", "where", "parameters"),
    [
        pytest.param(Selection(), "TRUE AND redriven_at IS NULL", {}, id="any-pending"),
        pytest.param(Selection(include_redriven=True), "TRUE", {}, id="any-at-all"),
        pytest.param(
            Selection(steps=("classify", "decode")),
            "TRUE AND step IN ($step0, $step1) AND redriven_at IS NULL",
            {"step0": "classify", "step1": "decode"},
            id="steps",
        ),
        pytest.param(
            Selection(reasons=("charge_missing",)),
            "TRUE AND reason IN ($reason0) AND redriven_at IS NULL",
            {"reason0": "charge_missing"},
            id="reasons",
        ),
        pytest.param(
            Selection(ids=("a1", "b2")),
            "TRUE AND dead_letter_id IN ($id0, $id1) AND redriven_at IS NULL",
            {"id0": "a1", "id1": "b2"},
            id="ids",
        ),
        pytest.param(
            Selection(since=SINCE),
            "TRUE AND time >= $since AND redriven_at IS NULL",
            {"since": SINCE},
            id="since",
        ),
        pytest.param(
            Selection(until=UNTIL),
            "TRUE AND time < $until AND redriven_at IS NULL",
            {"until": UNTIL},
            id="until",
        ),
        pytest.param(
            Selection(
                steps=("classify",),
                reasons=("invalid_event",),
                ids=("a1",),
                since=SINCE,
                until=UNTIL,
                include_redriven=True,
            ),
            "TRUE AND step IN ($step0) AND reason IN ($reason0) AND dead_letter_id IN ($id0)"
            " AND time >= $since AND time < $until",
            {"step0": "classify", "reason0": "invalid_event", "id0": "a1", "since": SINCE,
             "until": UNTIL},
            id="every-criterion",
        ),
    ],
)  # fmt: skip
def test_where_has_one_condition_per_criterion(
    selection: Selection, where: str, parameters: dict[str, Any]
) -> None:
    assert selection.where(lambda name: f"${name}") == (where, parameters)


def test_where_spells_parameters_the_dialects_way() -> None:
    assert Selection(ids=("a1",), since=SINCE).where(lambda name: f"@{name}") == (
        "TRUE AND dead_letter_id IN (@id0) AND time >= @since AND redriven_at IS NULL",
        {"id0": "a1", "since": SINCE},
    )
