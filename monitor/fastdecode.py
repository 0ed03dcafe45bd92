"""The hot path's decoder: valid prediction events at a third of pydantic's cost.

The wire schema is :class:`monitor.events.PredictionEvent` (pydantic), which also decides every
rejection reason. Validating one 25-feature event with pydantic costs about as much as
``json.loads`` of its line, which alone is more than the 10 µs per event that 100,000 events/s
allows. This module mirrors the prediction schema for `msgspec <https://jcristharif.com/msgspec/>`_,
whose decoder validates while it parses, with no intermediate objects.

The mirror is *narrower* than the schema, never wider: whatever it refuses goes to
:func:`monitor.events.parse_event`, which accepts it or gives the reason. Refused here and left to
pydantic are, among others: unknown top-level or ``prediction`` fields (pydantic keeps them and
the pipeline counts them), ``NaN``/``Infinity`` tokens and numbers beyond float range (features may
carry them and data quality counts them), float or string epoch timestamps, and feature, feature
event and label events. Whatever it accepts, pydantic accepts with an equal result: integer epoch
timestamps are converted by pydantic's own datetime validator, and JSON cannot express a
non-finite number that msgspec would decode, so the finiteness constraints hold by construction.
One difference is left: digits of a timestamp below the microsecond are rounded here and cut by
pydantic, so the two may differ by 1 µs.
``tests/test_fastdecode.py`` checks the equality on generated events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Literal, cast

import msgspec
from msgspec import UNSET, Meta, UnsetType
from pydantic import TypeAdapter

from monitor.events import PredictionEvent


class _Output(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    score: float | UnsetType | None = UNSET
    label: str | bool | int | UnsetType | None = UNSET
    probabilities: dict[str, float] | UnsetType = UNSET


class _Prediction(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    event_id: str
    model: str
    model_version: str
    timestamp: datetime | int
    # msgspec tries bool before float for JSON true/false and keeps strings as strings, as the
    # schema's strict left-to-right union does; JSON integers become floats.
    features: dict[str, float | str | bool | None]
    prediction: float | _Output
    latency_ms: Annotated[float, Meta(ge=0)] | UnsetType | None = UNSET
    versions: dict[str, str] | UnsetType = UNSET
    trace: dict[str, str] | UnsetType = UNSET
    type: Literal["prediction"] | UnsetType = UNSET


class _Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    events: list[_Prediction]


_ONE = msgspec.json.Decoder(_Prediction)
_MANY = msgspec.json.Decoder(_Envelope)
_TIMESTAMP = TypeAdapter(datetime)
_BUILTIN = (datetime,)
_to_builtins = msgspec.to_builtins


def _event(value: _Prediction) -> PredictionEvent:
    if type(value.timestamp) is int:
        value.timestamp = _TIMESTAMP.validate_python(value.timestamp)
    return cast(PredictionEvent, _to_builtins(value, builtin_types=_BUILTIN))


def decode_prediction(raw: bytes) -> PredictionEvent | None:
    """One prediction event from its JSON bytes, or ``None`` when pydantic must decide.

    >>> ev = decode_prediction(b'{"event_id": "e", "model": "m", "model_version": "v", '
    ...     b'"timestamp": 1767225600000, "features": {"x": 1, "c": "DE"}, "prediction": 0.5}')
    >>> ev["features"], ev["timestamp"].isoformat()
    ({'x': 1.0, 'c': 'DE'}, '2026-01-01T00:00:00+00:00')
    >>> decode_prediction(b'{"event_id": "e", "label": 1}') is None
    True
    """
    try:
        value = _ONE.decode(raw)
    except (msgspec.DecodeError, ValueError):
        return None
    return _event(value)


def decode_predictions(lines: Iterable[bytes]) -> list[PredictionEvent | None]:
    """:func:`decode_prediction` of every line."""
    out: list[PredictionEvent | None] = []
    append = out.append
    decode = _ONE.decode
    builtins = _to_builtins
    for raw in lines:
        try:
            value = decode(raw)
        except (msgspec.DecodeError, ValueError):
            append(None)
            continue
        if type(value.timestamp) is int:
            value.timestamp = _TIMESTAMP.validate_python(value.timestamp)
        append(cast(PredictionEvent, builtins(value, builtin_types=_BUILTIN)))
    return out


def decode_envelope(raw: bytes) -> list[PredictionEvent] | None:
    """The events of a batch envelope ``{"events": [...]}`` of valid predictions, or ``None``
    when any element (or the envelope) needs pydantic's judgement."""
    try:
        value = _MANY.decode(raw)
    except (msgspec.DecodeError, ValueError):
        return None
    return [_event(v) for v in value.events]


def decode_message(raw: bytes) -> list[PredictionEvent] | None:
    """The events of one Kafka message (a single prediction or an envelope of predictions),
    or ``None`` when pydantic must decide (see :func:`monitor.events.parse_message`).

    >>> one = (b'{"event_id": "e", "model": "m", "model_version": "v", "timestamp": 0, '
    ...     b'"features": {}, "prediction": 1}')
    >>> [e["event_id"] for e in decode_message(b'{"events": [' + one + b',' + one + b']}')]
    ['e', 'e']
    >>> decode_message(b'{"events": [' + one + b', 7]}') is None
    True
    """
    if raw[:9] == b'{"events"':
        return decode_envelope(raw)
    event = decode_prediction(raw)
    return None if event is None else [event]
