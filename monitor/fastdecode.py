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

Decoded events stay msgspec structs (:class:`FastPrediction`): turning them into dicts would cost
as much again as decoding. They read like the schema's dicts (``ev["features"]``, ``ev.get(...)``,
``in``, iteration; ``collections.abc.Mapping``), so every consumer of events takes them; the
hot paths in :mod:`monitor.streams` and :mod:`monitor.pipeline` read their attributes directly.
:func:`as_event` gives the plain dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias, cast

import msgspec
from msgspec import UNSET, Meta, UnsetType
from pydantic import TypeAdapter

from monitor.events import Event, PredictionEvent


class _Record(msgspec.Struct, gc=False):
    """Read access as to the schema's dict: fields left out of the JSON (``UNSET``) are absent."""

    def __getitem__(self, key: str) -> Any:
        value = getattr(self, key, UNSET) if type(key) is str else UNSET
        if value is UNSET:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when the JSON left it out."""
        value = getattr(self, key, UNSET) if type(key) is str else UNSET
        return default if value is UNSET else value

    def __contains__(self, key: object) -> bool:
        return type(key) is str and getattr(self, key, UNSET) is not UNSET

    def keys(self) -> list[str]:
        """The fields present, in schema order."""
        return [k for k in self.__struct_fields__ if getattr(self, k) is not UNSET]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def values(self) -> list[Any]:
        """The values present, in schema order."""
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        """``(field, value)`` of the fields present, in schema order."""
        return [(k, getattr(self, k)) for k in self.keys()]


class FastOutput(_Record, forbid_unknown_fields=True, gc=False):
    """A ``prediction`` object as decoded by the fast path."""

    score: float | UnsetType | None = UNSET
    label: str | bool | int | UnsetType | None = UNSET
    probabilities: dict[str, float] | UnsetType = UNSET


class FastPrediction(_Record, forbid_unknown_fields=True, gc=False):
    """A valid prediction event as decoded by the fast path (read it as the schema's dict)."""

    event_id: str
    model: str
    model_version: str
    timestamp: datetime | int
    # msgspec tries bool before float for JSON true/false and keeps strings as strings, as the
    # schema's strict left-to-right union does; JSON integers become floats.
    features: dict[str, float | str | bool | None]
    prediction: float | FastOutput
    latency_ms: Annotated[float, Meta(ge=0)] | UnsetType | None = UNSET
    versions: dict[str, str] | UnsetType = UNSET
    trace: dict[str, str] | UnsetType = UNSET
    type: Literal["prediction"] | UnsetType = UNSET


Mapping.register(_Record)

#: An event as the pipeline takes it: a schema dict, or a fast-decoded prediction.
AnyEvent: TypeAlias = Event | FastPrediction


class _Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    events: list[FastPrediction]


_ONE = msgspec.json.Decoder(FastPrediction)
_MANY = msgspec.json.Decoder(_Envelope)
_TIMESTAMP = TypeAdapter(datetime)
_BUILTIN = (datetime,)


def as_event(event: FastPrediction | PredictionEvent) -> PredictionEvent:
    """The schema's plain dict of a fast-decoded event (a dict is returned as it is)."""
    if type(event) is FastPrediction:
        return cast(PredictionEvent, msgspec.to_builtins(event, builtin_types=_BUILTIN))
    return cast(PredictionEvent, event)


def _fixed(value: FastPrediction) -> FastPrediction:
    if type(value.timestamp) is int:
        value.timestamp = _TIMESTAMP.validate_python(value.timestamp)
    return value


def decode_prediction(raw: bytes) -> FastPrediction | None:
    """One prediction event from its JSON bytes, or ``None`` when pydantic must decide.

    >>> ev = decode_prediction(b'{"event_id": "e", "model": "m", "model_version": "v", '
    ...     b'"timestamp": 1767225600000, "features": {"x": 1, "c": "DE"}, "prediction": 0.5}')
    >>> ev["features"], ev["timestamp"].isoformat(), "latency_ms" in ev
    ({'x': 1.0, 'c': 'DE'}, '2026-01-01T00:00:00+00:00', False)
    >>> decode_prediction(b'{"event_id": "e", "label": 1}') is None
    True
    """
    try:
        value = _ONE.decode(raw)
    except (msgspec.DecodeError, ValueError):
        return None
    return _fixed(value)


def decode_predictions(lines: Iterable[bytes]) -> list[FastPrediction | None]:
    """:func:`decode_prediction` of every line."""
    out: list[FastPrediction | None] = []
    append = out.append
    decode = _ONE.decode
    for raw in lines:
        try:
            value = decode(raw)
        except (msgspec.DecodeError, ValueError):
            append(None)
            continue
        if type(value.timestamp) is int:
            value.timestamp = _TIMESTAMP.validate_python(value.timestamp)
        append(value)
    return out


def decode_envelope(raw: bytes) -> list[FastPrediction] | None:
    """The events of a batch envelope ``{"events": [...]}`` of valid predictions, or ``None``
    when any element (or the envelope) needs pydantic's judgement."""
    try:
        value = _MANY.decode(raw)
    except (msgspec.DecodeError, ValueError):
        return None
    events = value.events
    for ev in events:
        if type(ev.timestamp) is int:
            _fixed(ev)
    return events


def decode_message(raw: bytes) -> list[FastPrediction] | None:
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
