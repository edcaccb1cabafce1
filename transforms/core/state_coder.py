"""How the streaming join stores a `PaymentState`: a version byte, then JSON.

`JoinPaymentsFn` keeps one `PaymentState` per PaymentIntent in Beam state for
up to the settlement timeout (weeks), so the stored bytes outlive the code
that wrote them: a pickle would name the classes' module paths (and break
when a module moves) and restore whatever fields the writer had. This coder
writes the fields by name instead:

- version 1 (`VERSION`): byte 0x01, then UTF-8 JSON of the state's fields
  (sessions and charges with their `meta` and `customer`, `completed`).
  Decoding takes the fields it knows by name, ignores the others (a newer
  writer's additions) and gives a missing field its default, if it has one.
- the previous layout (before `transforms/` was split into packages): a
  pickle of `transforms.payment.PaymentState` (Beam's `PickleCoder`, so the
  first byte is pickle's PROTO opcode 0x80). It is read without importing
  any class it names: only the payment classes are accepted, under their
  old or new module path, each read as its fields, then built as version 1
  is. A running job updated in place keeps its open payments.

The domain dataclasses stay Beam-free; this module is the only place that
knows their stored form. Bytes of any other shape raise ValueError.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
from collections.abc import Mapping
from typing import Any, TypeVar

from apache_beam.coders import Coder

from transforms.domain.facts import ChargeFact, CustomerDetails, EventMeta, SessionFact
from transforms.domain.payment import PaymentState

VERSION = 1
_PICKLE_PROTO = 0x80

_T = TypeVar("_T")

#: The classes a stored state may hold, by name: the previous layout's module
#: paths and today's.
_PICKLED_CLASSES = {
    (module, cls.__name__)
    for cls, modules in (
        (PaymentState, ("transforms.payment", "transforms.domain.payment")),
        (SessionFact, ("transforms.facts", "transforms.domain.facts")),
        (ChargeFact, ("transforms.facts", "transforms.domain.facts")),
        (EventMeta, ("transforms.facts", "transforms.domain.facts")),
        (CustomerDetails, ("transforms.facts", "transforms.domain.facts")),
    )
    for module in modules
}


def encode_state(state: PaymentState) -> bytes:
    """Version byte, then the state's fields as compact, key-sorted JSON."""
    fields = dataclasses.asdict(state)
    return bytes([VERSION]) + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def decode_state(encoded: bytes) -> PaymentState:
    """A state written by `encode_state` (any version so far) or by the previous layout."""
    if not encoded:
        raise ValueError("empty payment state")
    if encoded[0] == VERSION:
        fields = json.loads(encoded[1:].decode())
    elif encoded[0] == _PICKLE_PROTO:
        value = _RestrictedUnpickler(io.BytesIO(encoded)).load()
        if not (isinstance(value, _Pickled) and type(value).__name__ == "PaymentState"):
            raise ValueError(
                f"pickled payment state is a {type(value).__name__}, not a PaymentState"
            )
        fields = _fields_of(value)
    else:
        raise ValueError(f"unknown payment state version {encoded[0]}")
    return _payment_state(fields)


class PaymentStateCoder(Coder):
    """Beam coder of `PaymentState`: `encode_state` / `decode_state`."""

    def encode(self, value: PaymentState) -> bytes:
        return encode_state(value)

    def decode(self, encoded: bytes) -> PaymentState:
        return decode_state(encoded)

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self) -> type:
        return PaymentState


def _payment_state(fields: Mapping[str, Any]) -> PaymentState:
    return _build(
        PaymentState,
        fields,
        sessions=lambda items: tuple(_session(item) for item in items),
        charges=lambda items: tuple(_charge(item) for item in items),
    )


def _session(fields: Mapping[str, Any]) -> SessionFact:
    return _build(
        SessionFact,
        fields,
        meta=lambda meta: _build(EventMeta, meta),
        customer=lambda customer: _build(CustomerDetails, customer),
        metadata=dict,
        payment_method_types=tuple,
        custom_text_fields=lambda pairs: tuple((str(key), str(value)) for key, value in pairs),
    )


def _charge(fields: Mapping[str, Any]) -> ChargeFact:
    return _build(ChargeFact, fields, meta=lambda meta: _build(EventMeta, meta))


def _build(cls: type[_T], fields: Mapping[str, Any], **convert: Any) -> _T:
    """`cls` from the fields it knows; unknown ones are ignored, missing ones defaulted."""
    known = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    arguments = {
        name: convert[name](value) if name in convert else value
        for name, value in fields.items()
        if name in known
    }
    return cls(**arguments)


class _Pickled:
    """Stands in for a pickled payment class: keeps the fields it was given."""

    fields: dict[str, Any]

    def __setstate__(self, state: Any) -> None:
        # A frozen dataclass without __slots__ pickles its __dict__; with
        # slots, pickle gives (None, {slot: value}).
        if isinstance(state, tuple):
            merged: dict[str, Any] = {}
            for part in state:
                merged.update(part or {})
            state = merged
        self.fields = dict(state)


class _RestrictedUnpickler(pickle.Unpickler):
    """Reads only the payment classes, as `_Pickled` fields; refuses any other class."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLED_CLASSES:
            return type(name, (_Pickled,), {})
        raise ValueError(f"payment state names an unexpected class {module}.{name}")


def _fields_of(value: Any) -> Any:
    """A value read by `_RestrictedUnpickler` as plain JSON-like data."""
    if isinstance(value, _Pickled):
        return {name: _fields_of(field) for name, field in value.fields.items()}
    if isinstance(value, tuple | list):
        return [_fields_of(item) for item in value]
    if isinstance(value, dict):
        return {key: _fields_of(item) for key, item in value.items()}
    return value
