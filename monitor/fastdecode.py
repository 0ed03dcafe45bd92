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

A pipeline's :class:`FastDecoder` also compiles the feature schema of each model version it
monitors (:class:`FeatureSchema`) into a decoder of its own: the features become a struct with
one attribute per feature whose type the decoder checked (a number or null for a numeric
feature, a category of the reference's kind or null for a categorical one), so a window of
such events needs no per-value type checks (``detectors.columns.row_columns``). An event
that differs in any way (a feature absent, added or of another kind) is decoded by the general
decoder instead, and its window takes the general path that counts those problems.

Decoded events stay msgspec structs (:class:`FastPrediction`): turning them into dicts would cost
as much again as decoding. They read like the schema's dicts (``ev["features"]``, ``ev.get(...)``,
``in``, iteration; ``collections.abc.Mapping``), so every consumer of events takes them; the
hot paths in :mod:`monitor.streams` and :mod:`monitor.pipeline` read their attributes directly.
:func:`as_event` gives the plain dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, TypeAlias, cast

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
        return [self[k] for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        """``(field, value)`` of the fields present, in schema order."""
        return [(k, self[k]) for k in self.keys()]


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


class FastFeatures(_Record, gc=False):
    """The features of an event decoded with a :class:`FeatureSchema`: attribute ``f<j>`` holds
    feature ``names[j]`` (attribute names never clash with a feature's name)."""

    names: ClassVar[tuple[str, ...]] = ()
    attrs: ClassVar[dict[str, str]] = {}

    def __getitem__(self, key: str) -> Any:
        attr = self.attrs.get(key) if type(key) is str else None
        if attr is None:
            raise KeyError(key)
        return getattr(self, attr)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of feature ``key``, or ``default`` when the schema has no such feature."""
        attr = self.attrs.get(key) if type(key) is str else None
        return default if attr is None else getattr(self, attr)

    def __contains__(self, key: object) -> bool:
        return type(key) is str and key in self.attrs

    def keys(self) -> list[str]:
        """The feature names, in schema order (every one is present)."""
        return list(self.names)


@dataclass(frozen=True, slots=True)
class FeatureSchema:
    """The feature schema of a model version compiled into a decoder.

    ``numeric`` and ``categorical`` list ``(feature, attribute)`` pairs of :attr:`features`,
    in the order of its fields (numeric ones first: ``msgspec.structs.astuple`` of a decoded
    struct gives the values in that order); every feature is required, numeric ones hold a
    float or ``None`` and categorical ones a value of their kind (``str`` or ``bool``) or
    ``None``; no other feature is allowed.
    """

    numeric: tuple[tuple[str, str], ...]
    categorical: tuple[tuple[str, str], ...]
    features: type[FastFeatures]
    one: msgspec.json.Decoder[FastPrediction]
    many: msgspec.json.Decoder[_Envelope]


def compile_schema(
    numeric: Sequence[str], categorical: Sequence[tuple[str, Any]], name: str = "Schema"
) -> FeatureSchema:
    """A :class:`FeatureSchema` for ``numeric`` features and ``(feature, kind)`` categorical ones
    (kind ``str``, ``bool`` or a ``Literal`` of the strings allowed).

    >>> s = compile_schema(["amount"], [("country", str)])
    >>> ev = s.one.decode(b'{"event_id": "e", "model": "m", "model_version": "v", "timestamp": 0,'
    ...     b' "features": {"country": "DE", "amount": 3}, "prediction": 1}')
    >>> ev["features"]["amount"], ev.features.f1, dict(ev["features"])
    (3.0, 'DE', {'amount': 3.0, 'country': 'DE'})
    >>> s.one.decode(b'{"event_id": "e", "model": "m", "model_version": "v", "timestamp": 0,'
    ...     b' "features": {"country": 3, "amount": 3}, "prediction": 1}')
    Traceback (most recent call last):
    msgspec.ValidationError: Expected `str | null`, got `int` - at `$.features.country`
    """
    names = [*numeric, *(f for f, _ in categorical)]
    kinds: list[Any] = [float | None] * len(numeric) + [k | None for _, k in categorical]
    attrs = {f: f"f{j}" for j, f in enumerate(names)}
    features = msgspec.defstruct(
        f"{name}Features",
        [(attrs[f], kind) for f, kind in zip(names, kinds, strict=True)],
        bases=(FastFeatures,),
        rename={a: f for f, a in attrs.items()},
        forbid_unknown_fields=True,
        gc=False,
        namespace={"names": tuple(names), "attrs": attrs},
        module=__name__,
    )
    prediction = msgspec.defstruct(
        f"{name}Prediction",
        [("features", features)],
        bases=(FastPrediction,),
        forbid_unknown_fields=True,
        gc=False,
        module=__name__,
    )
    envelope = msgspec.defstruct(
        f"{name}Envelope",
        [("events", list[prediction])],  # type: ignore[valid-type]
        bases=(_Envelope,),
        forbid_unknown_fields=True,
        gc=False,
        module=__name__,
    )
    return FeatureSchema(
        tuple((f, attrs[f]) for f in numeric),
        tuple((f, attrs[f]) for f, _ in categorical),
        cast(type[FastFeatures], features),
        msgspec.json.Decoder(prediction),
        msgspec.json.Decoder(envelope),
    )


_ONE = msgspec.json.Decoder(FastPrediction)
_MANY = msgspec.json.Decoder(_Envelope)
_TIMESTAMP = TypeAdapter(datetime)
_BUILTIN = (datetime,)


def as_event(event: FastPrediction | PredictionEvent) -> PredictionEvent:
    """The schema's plain dict of a fast-decoded event (a dict is returned as it is)."""
    if isinstance(event, FastPrediction):
        return cast(PredictionEvent, msgspec.to_builtins(event, builtin_types=_BUILTIN))
    return event


def _fixed(value: FastPrediction) -> FastPrediction:
    if type(value.timestamp) is int:
        value.timestamp = _TIMESTAMP.validate_python(value.timestamp)
    return value


_ERRORS = (msgspec.DecodeError, ValueError)


class FastDecoder:
    """Decodes prediction events with the compiled schemas first, then the general decoder.

    :meth:`compile` adds a model version's schema (at most :attr:`MAX_SCHEMAS`; identical
    schemas share one). A line no schema takes costs a failed attempt per schema, up to where
    it differs (usually within its features), before the general decoder takes it.
    """

    MAX_SCHEMAS = 4

    def __init__(self) -> None:
        self._schemas: dict[tuple[Any, ...], FeatureSchema] = {}
        self._one: list[Any] = [_ONE.decode]
        self._many: list[Any] = [_MANY.decode]

    def compile(
        self, numeric: Sequence[str], categorical: Sequence[tuple[str, Any]]
    ) -> FeatureSchema | None:
        """The schema of these features (compiled once), or ``None`` beyond the limit."""
        key = (tuple(numeric), tuple(categorical))
        schema = self._schemas.get(key)
        if schema is None:
            if len(self._schemas) >= self.MAX_SCHEMAS:
                return None
            schema = compile_schema(numeric, categorical, f"Schema{len(self._schemas)}")
            self._schemas[key] = schema
            typed = list(self._schemas.values())
            self._one = [s.one.decode for s in typed] + [_ONE.decode]
            self._many = [s.many.decode for s in typed] + [_MANY.decode]
        return schema

    def _decode(self, decoders: list[Any], raw: bytes) -> Any:
        for decode in decoders:
            try:
                return decode(raw)
            except _ERRORS:
                continue
        return None

    def prediction(self, raw: bytes) -> FastPrediction | None:
        """One prediction event from its JSON bytes, or ``None`` when pydantic must decide."""
        value = self._decode(self._one, raw)
        return None if value is None else _fixed(value)

    def lines(self, lines: Iterable[bytes]) -> list[FastPrediction | None]:
        """:meth:`prediction` of every line."""
        out: list[FastPrediction | None] = []
        append = out.append
        first, rest = self._one[0], self._one[1:]
        slow = self._decode
        for raw in lines:
            try:
                value = first(raw)
            except _ERRORS:
                value = slow(rest, raw)
                if value is None:
                    append(None)
                    continue
            if type(value.timestamp) is int:
                value.timestamp = _TIMESTAMP.validate_python(value.timestamp)
            append(value)
        return out

    def envelope(self, raw: bytes) -> list[FastPrediction] | None:
        """The events of a batch envelope ``{"events": [...]}`` of valid predictions, or
        ``None`` when any element (or the envelope) needs pydantic's judgement."""
        value = self._decode(self._many, raw)
        if value is None:
            return None
        events: list[FastPrediction] = value.events
        for ev in events:
            if type(ev.timestamp) is int:
                _fixed(ev)
        return events

    def messages(self, raws: Sequence[bytes], max_bytes: int) -> list[list[FastPrediction] | None]:
        """:meth:`message` of every Kafka message value (``None`` also for a value over
        ``max_bytes``); the single events of a batch are decoded in one :meth:`lines` loop."""
        out: list[list[FastPrediction] | None] = [None] * len(raws)
        at: list[int] = []
        singles: list[bytes] = []
        for i, raw in enumerate(raws):
            if len(raw) > max_bytes:
                continue
            if raw[:9] == b'{"events"':
                out[i] = self.envelope(raw)
            else:
                at.append(i)
                singles.append(raw)
        for i, event in zip(at, self.lines(singles), strict=True):
            if event is not None:
                out[i] = [event]
        return out

    def message(self, raw: bytes) -> list[FastPrediction] | None:
        """The events of one Kafka message (a single prediction or an envelope of
        predictions), or ``None`` when pydantic must decide (see
        :func:`monitor.events.parse_message`)."""
        if raw[:9] == b'{"events"':
            return self.envelope(raw)
        event = self.prediction(raw)
        return None if event is None else [event]


#: The general decoder alone (no compiled schema).
_GENERAL = FastDecoder()


def decode_prediction(raw: bytes) -> FastPrediction | None:
    """One prediction event from its JSON bytes, or ``None`` when pydantic must decide.

    >>> ev = decode_prediction(b'{"event_id": "e", "model": "m", "model_version": "v", '
    ...     b'"timestamp": 1767225600000, "features": {"x": 1, "c": "DE"}, "prediction": 0.5}')
    >>> ev["features"], ev["timestamp"].isoformat(), "latency_ms" in ev
    ({'x': 1.0, 'c': 'DE'}, '2026-01-01T00:00:00+00:00', False)
    >>> decode_prediction(b'{"event_id": "e", "label": 1}') is None
    True
    """
    return _GENERAL.prediction(raw)


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
    return _GENERAL.message(raw)
