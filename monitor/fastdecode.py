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
monitors (:class:`FeatureSchema`) into a decoder of its own. msgspec decodes such an event but
its ``features``, which it leaves as raw JSON; the C extension ``monitor/_featcols.c`` then
reads the features of a whole envelope into one block (a float64 row per event for the numeric
features, null as NaN; a list per categorical feature) and gives each event a :class:`FastRow`
that points into it. It checks what a typed decoder would (every feature present once, a number
or null for a numeric feature, a category of the reference's kind or null for a categorical
one, nothing else) and converts numbers exactly, so a window of such events needs no per-value
type checks and no per-value Python object: its columns are copied out of the blocks
(:meth:`FeatureSchema.columns`). An event that differs in any way (a feature absent, added or of
another kind) makes its envelope go to the general decoder instead, and its window take the
general path that counts those problems.

Input is untrusted. msgspec finds each event's features by the JSON's structure, so no event
takes features from elsewhere; a repeated key keeps its last value, as pydantic does, and
``_featcols.scan`` checks the whole text for what pydantic refuses even in a dropped value
(UTF-8, nesting deeper than 200). An event over ``max_bytes`` is never decoded here. Nothing here
raises: what it cannot decode, pydantic decides, with the reason.

Decoded events stay msgspec structs (:class:`FastPrediction`): turning them into dicts would cost
as much again as decoding. They read like the schema's dicts (``ev["features"]``, ``ev.get(...)``,
``in``, iteration; ``collections.abc.Mapping``), so every consumer of events takes them; the
hot paths in :mod:`monitor.streams` and :mod:`monitor.pipeline` read their attributes directly.
:func:`as_event` gives the plain dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Annotated, Any, Literal, TypeAlias, cast, get_args, get_origin

import msgspec
import numpy as np
from msgspec import UNSET, Meta, UnsetType
from pydantic import TypeAdapter, ValidationError

from monitor.accelerator import Parser, attach, gather, scan
from monitor.events import Event, PredictionEvent
from monitor.fastrow import Block, FastRow, RowLayout, row_dicts

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "AnyEvent",
    "Block",  # Block, FastRow, RowLayout and row_dicts: from monitor.fastrow, their first home
    "FastDecoder",
    "FastOutput",
    "FastPrediction",
    "FastRow",
    "FeatureSchema",
    "RowLayout",
    "as_event",
    "compile_schema",
    "decode_message",
    "decode_prediction",
    "row_dicts",
]

# msgspec's errors for input it refuses; deep nesting raises RecursionError in its skipping of
# raw values (features), which pydantic refuses with its reason too.
_ERRORS = (msgspec.DecodeError, ValueError, RecursionError)

#: The deepest JSON nesting taken here: pydantic's parser refuses text nested deeper than 200
#: (msgspec, below Python's recursion limit, does not), so such text goes to pydantic.
MAX_DEPTH = 200
#: The default per-event size limit (``events.max_bytes``).
MAX_BYTES = 1 << 20


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


@dataclass(frozen=True, slots=True, eq=False)
class FeatureSchema:
    """The feature schema of a model version compiled into a decoder.

    ``numeric`` and ``categorical`` name the features; ``parser`` holds each categorical
    feature's kind (any string, ``bool``, or a closed set of strings). Every feature is
    required, numeric ones hold a number or null and categorical ones a value of their kind or
    null; no other feature is allowed. msgspec decodes an event (``one``) or an envelope
    (``many``) but its features, which it leaves raw: it finds each event's ``features`` value
    by the JSON's structure; the C parser then parses those values, and only those (:meth:`attach`).
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    layout: RowLayout
    one: msgspec.json.Decoder[FastPrediction]
    many: msgspec.json.Decoder[_Envelope]
    #: The C parser of these features (``monitor/_featcols.c``).
    parser: Parser

    def attach(self, events: list[FastPrediction]) -> list[int]:
        """Parse the raw features of ``events`` into one block and give every event its
        :class:`FastRow`; the indexes of the events whose features are not of this schema
        (their rows are unusable: such an event must be decoded otherwise)."""
        values, columns, failed = self.parser.parse(list(map(_A_FEATURES, events)))
        attach(events, (values, columns, self.layout), FastRow, "features")
        return failed

    def decode_one(self, raw: bytes) -> FastPrediction | None:
        """One event of this schema, or ``None``."""
        try:
            value = self.one.decode(raw)
        except _ERRORS:
            return None
        if scan(raw, len(raw), MAX_DEPTH) is None:  # see decode_scanned
            return None
        return None if self.attach([value]) else value

    def decode_many(self, raw: bytes, max_bytes: int = MAX_BYTES) -> list[FastPrediction] | None:
        """The events of an envelope of this schema's events, or ``None`` (also when an event
        spans more than ``max_bytes``)."""
        checked = scan(raw, max_bytes, MAX_DEPTH)
        return None if checked is None or checked else self.decode_scanned(raw)

    def decode_scanned(self, raw: bytes) -> list[FastPrediction] | None:
        """:meth:`decode_many` of an envelope that ``scan`` passed: its strings are UTF-8 and
        it nests no deeper than :data:`MAX_DEPTH`, as pydantic requires of the whole text.
        msgspec checks only the grammar of a raw value, and one it drops (a repeated
        ``features`` or ``events`` key: the last is kept, as pydantic keeps it) is never
        parsed again; the scan is what makes such a value one pydantic accepts too."""
        try:
            events = self.many.decode(raw).events
        except _ERRORS:
            return None
        return None if self.attach(events) else events

    def owns(self, features: object) -> bool:
        """Whether ``features`` were parsed by this schema."""
        return isinstance(features, FastRow) and features.block[2] is self.layout

    def columns(self, features: list[Any]) -> tuple[np.ndarray, tuple[list[Any], ...]] | None:
        """The numeric features of these rows as a (features, rows) float64 array (NaN for
        null) and the categorical ones as one list per feature; ``None`` unless every one of
        them was parsed by this schema."""
        out = gather(features, self.layout, len(self.numeric), len(self.categorical))
        if out is None:
            return None
        values, columns = out
        return np.frombuffer(values, np.float64).reshape(len(self.numeric), -1), columns


_A_FEATURES = attrgetter("features")


def compile_schema(
    numeric: Sequence[str], categorical: Sequence[tuple[str, Any]], name: str = "Schema"
) -> FeatureSchema:
    """A :class:`FeatureSchema` for ``numeric`` features and ``(feature, kind)`` categorical ones
    (kind ``str``, ``bool`` or a ``Literal`` of the strings allowed).

    >>> s = compile_schema(["amount"], [("country", str)])
    >>> ev = s.decode_one(b'{"event_id": "e", "model": "m", "model_version": "v", "timestamp": 0,'
    ...     b' "features": {"country": "DE", "amount": 3}, "prediction": 1}')
    >>> ev["features"]["amount"], ev["features"]["country"], dict(ev["features"])
    (3.0, 'DE', {'amount': 3.0, 'country': 'DE'})
    >>> s.decode_one(b'{"event_id": "e", "model": "m", "model_version": "v", "timestamp": 0,'
    ...     b' "features": {"country": 3, "amount": 3}, "prediction": 1}') is None
    True
    """
    kinds: list[Any] = []
    for feature, kind in categorical:
        if kind is str:
            kinds.append(None)
        elif kind is bool:
            kinds.append(bool)
        elif get_origin(kind) is Literal and all(type(v) is str for v in get_args(kind)):
            kinds.append(tuple(get_args(kind)))
        else:
            raise TypeError(f"feature {feature!r}: kind must be str, bool or a Literal of str")
    names = (*numeric, *(f for f, _ in categorical))
    where = {f: (False, j) for j, f in enumerate(numeric)}
    where.update({f: (True, j) for j, (f, _) in enumerate(categorical)})
    layout = RowLayout(names, where, len(numeric), len(categorical))
    prediction = msgspec.defstruct(
        f"{name}Prediction",
        [("features", msgspec.Raw)],
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
        tuple(numeric),
        tuple(f for f, _ in categorical),
        layout,
        msgspec.json.Decoder(prediction),
        msgspec.json.Decoder(envelope),
        Parser(tuple(numeric), tuple(f for f, _ in categorical), tuple(kinds)),
    )


_ONE = msgspec.json.Decoder(FastPrediction)
_MANY = msgspec.json.Decoder(_Envelope)
_TIMESTAMP = TypeAdapter(datetime)
_BUILTIN = (datetime,)


def _features_dict(value: Any) -> Any:
    if isinstance(value, FastRow):
        return value.as_dict()
    raise TypeError(f"cannot convert {type(value).__name__}")


def as_event(event: FastPrediction | PredictionEvent) -> PredictionEvent:
    """The schema's plain dict of a fast-decoded event (a dict is returned as it is)."""
    if isinstance(event, FastPrediction):
        return cast(
            PredictionEvent,
            msgspec.to_builtins(event, builtin_types=_BUILTIN, enc_hook=_features_dict),
        )
    return event


def _fixed(value: FastPrediction) -> FastPrediction | None:
    """The event with an integer timestamp converted as pydantic converts it; ``None`` when
    pydantic refuses it (beyond year 9999: pydantic then gives the reason)."""
    if type(value.timestamp) is int:
        try:
            value.timestamp = _TIMESTAMP.validate_python(value.timestamp)
        except ValidationError:
            return None
    return value


def _general_one(raw: bytes) -> FastPrediction | None:
    try:
        return _ONE.decode(raw)
    except _ERRORS:
        return None


def _general_many(raw: bytes) -> list[FastPrediction] | None:
    try:
        return _MANY.decode(raw).events
    except _ERRORS:
        return None


def _first_of(
    decoders: Sequence[Callable[[bytes], FastPrediction | None]], raw: bytes
) -> FastPrediction | None:
    for decode in decoders:
        value = decode(raw)
        if value is not None:
            return _fixed(value)
    return None


class FastDecoder:
    """Decodes prediction events with the compiled schemas first, then the general decoder.

    ``max_bytes`` is the per-event size limit (``events.max_bytes``): a single event longer,
    or an envelope with an event that spans more, is left to pydantic, which rejects it as
    ``too_large``. :meth:`compile` adds a model version's schema (at most
    :attr:`MAX_SCHEMAS`; identical schemas share one). A line no schema takes costs a failed
    attempt per schema, up to where it differs (usually within its features), before the
    general decoder takes it.

    Nothing here raises on any input: what it cannot decode is ``None`` (pydantic decides and
    gives the reason). An exception from a defect here is counted in :attr:`failures` and the
    input left to pydantic likewise, so that a bug costs speed, never a message.
    """

    MAX_SCHEMAS = 4

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        #: Unexpected exceptions caught (each input concerned was left to pydantic).
        self.failures = 0
        self._schemas: dict[tuple[Any, ...], FeatureSchema] = {}
        self._one: list[Callable[[bytes], FastPrediction | None]] = [_general_one]
        self._many: list[Callable[[bytes], list[FastPrediction] | None]] = [_general_many]

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
            self._one = [*(s.decode_one for s in typed), _general_one]
            self._many = [*(s.decode_scanned for s in typed), _general_many]
        return schema

    def prediction(self, raw: bytes) -> FastPrediction | None:
        """One prediction event from its JSON bytes, or ``None`` when pydantic must decide."""
        if len(raw) > self.max_bytes:
            return None
        try:
            return _first_of(self._one, raw)
        except Exception:  # a defect, not the input: pydantic decides
            self.failures += 1
            return None

    def lines(self, lines: Iterable[bytes]) -> list[FastPrediction | None]:
        """:meth:`prediction` of every line; with a compiled schema, its decoder takes the
        lines first and their features are parsed in one call."""
        lines = list(lines)
        if not self._schemas:
            return list(map(self.prediction, lines))
        try:
            return self._lines(lines)
        except Exception:  # a defect, not the input: each line on its own
            self.failures += 1
            return list(map(self.prediction, lines))

    def _lines(self, lines: list[bytes]) -> list[FastPrediction | None]:
        schema = next(iter(self._schemas.values()))
        decode = schema.one.decode
        limit = self.max_bytes
        out: list[FastPrediction | None] = [None] * len(lines)
        typed: list[FastPrediction] = []
        at: list[int] = []
        rest: list[int] = []
        for k, raw in enumerate(lines):
            if len(raw) > limit:
                continue  # pydantic rejects it as too_large, unparsed
            try:
                value = decode(raw)
            except _ERRORS:
                rest.append(k)
                continue
            if scan(raw, limit, MAX_DEPTH) is None:  # see FeatureSchema.decode_scanned
                rest.append(k)
                continue
            typed.append(value)
            at.append(k)
        failed = schema.attach(typed) if typed else []
        for bad in failed:  # features of another kind: the other decoders decide
            rest.append(at[bad])
            at[bad] = -1
        for k, value in zip(at, typed, strict=True):
            if k >= 0:
                out[k] = _fixed(value)
        others = self._one[1:]  # the first schema has had its try
        for k in rest:
            out[k] = _first_of(others, lines[k])
        return out

    def envelope(self, raw: bytes) -> list[FastPrediction] | None:
        """The events of a batch envelope ``{"events": [...]}`` of valid predictions, or
        ``None`` when any element (or the envelope) needs pydantic's judgement."""
        try:
            return self._envelope(raw)
        except Exception:  # a defect, not the input: pydantic decides
            self.failures += 1
            return None

    def _envelope(self, raw: bytes) -> list[FastPrediction] | None:
        # One pass before any decoding: an event over the size limit is left to pydantic
        # (too_large) unparsed; the compiled decoders need the rest of what it checks.
        if self._schemas or len(raw) > self.max_bytes:
            checked = scan(raw, self.max_bytes, MAX_DEPTH)
            if checked is None or checked:
                return None
        for decode in self._many:
            events = decode(raw)
            if events is not None:
                for ev in events:
                    if type(ev.timestamp) is int and _fixed(ev) is None:
                        return None
                return events
        return None

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
