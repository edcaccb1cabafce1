"""The disk shuffle's encoding of facts: every value comes back equal, and smaller."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest

from tests.builders import (
    charge_fact,
    dispute_adjustment,
    intent_fact,
    refund_adjustment,
    refund_object_adjustment,
    session_fact,
)
from transforms.core.fact_codec import decode_fact, encode_fact


def test_every_kind_of_value_comes_back_equal() -> None:
    values: list[Any] = [
        session_fact(metadata={"identityId": "id_1", "abTests": "[]"}, account=None),
        charge_fact(),
        intent_fact(event_type="payment_intent.payment_failed"),
        refund_adjustment("ch_1", "5.00"),
        refund_object_adjustment("ch_1", "2.50"),
        dispute_adjustment("ch_1"),
        "session_mode_subscription",
        ("a", "tuple"),
        (None, 1),
        None,
    ]
    for value in values:
        decoded = decode_fact(encode_fact(value))
        assert decoded == value
        assert type(decoded) is type(value)
        # The fold's best-copy tie-break reads the repr.
        assert repr(decoded) == repr(value)


def test_nested_records_are_rebuilt_with_their_own_types() -> None:
    fact = session_fact(custom_fields={"given": "Ann"})
    decoded = decode_fact(encode_fact(fact))
    assert decoded.meta == fact.meta and type(decoded.meta) is type(fact.meta)
    assert decoded.customer == fact.customer and type(decoded.customer) is type(fact.customer)
    assert decoded.custom_text_fields == (("given", "Ann"),)


def test_a_fact_is_smaller_than_its_pickle() -> None:
    for fact in (session_fact(), charge_fact(), refund_adjustment("ch_1", "5.00")):
        assert len(encode_fact(fact)) < len(pickle.dumps(fact, protocol=pickle.HIGHEST_PROTOCOL))


def test_a_field_added_to_a_fact_travels_too() -> None:
    fact = charge_fact()
    changed = dataclasses.replace(fact, charge_created=1_700_000_000)
    assert decode_fact(encode_fact(changed)).charge_created == 1_700_000_000


@pytest.mark.parametrize("data", [b"", b"not a pickle"])
def test_bytes_it_did_not_write_raise(data: bytes) -> None:
    with pytest.raises(pickle.UnpicklingError if data else EOFError):
        decode_fact(data)
