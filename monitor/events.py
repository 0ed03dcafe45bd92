"""Event schemas on the wire, and parsing that never raises.

One JSON object per event (one per line in files; one per Kafka message or a batch envelope
``{"events": [...]}``). Three kinds, told apart by their fields (or an explicit ``"type"``):

* prediction: ``event_id, model, model_version, timestamp, features, prediction`` and optional
  ``latency_ms``, ``versions``;
* feature: ``event_id, model, timestamp, features`` (features logged separately);
* label: ``event_id, model, timestamp, label`` (ground truth, joined to predictions by id).

Any event may carry ``trace``: the W3C ``traceparent`` (and ``tracestate``) of the request that
produced it, as the serving-side :class:`~monitor.client.EventLogger` records it per event.

``timestamp`` is RFC 3339 (a missing offset means UTC) or epoch milliseconds; feature values are
number, string, bool or null (NaN/Infinity tokens are accepted and counted by data quality);
``prediction`` is a number or an object with ``score``, ``label`` and/or ``probabilities``.
Unknown top-level fields are accepted and counted (``unknown_field``) so producers can add
fields without losing events.

Every rejection carries a machine-readable :class:`Reason` and a human message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import from_json
from typing_extensions import TypedDict

from monitor.accelerator import scan

FeatureValue = bool | float | str | None
# Strict members tried left to right: a JSON true stays a bool, "1.5" stays a string, 1 becomes
# 1.0; smart-mode unions cost about 40% more per event here.
WireFeatureValue = Annotated[
    StrictBool | StrictStr | StrictFloat | None, Field(union_mode="left_to_right")
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Reason(StrEnum):
    """Why an input was rejected."""

    EMPTY = "empty"
    TOO_LARGE = "too_large"
    INVALID_UTF8 = "invalid_utf8"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    INVALID_TIMESTAMP = "invalid_timestamp"
    INVALID_VALUE = "invalid_value"
    #: JSON nested deeper than the parser allows (200 levels).
    TOO_DEEP = "too_deep"
    #: Not the input's fault as far as anyone knows: handling it raised an unexpected exception
    #: (a bug); the Kafka adapter and replay reject the input instead of stopping.
    INTERNAL_ERROR = "internal_error"
    #: Event time outside ``events.max_future_skew`` / ``events.max_age`` of the reference clock.
    CLOCK_SKEW = "clock_skew"
    #: A new model version beyond ``limits.max_streams`` (no idle stream to evict).
    TOO_MANY_STREAMS = "too_many_streams"
    #: A new model version that needs a warm-up while ``limits.max_warmup_events`` are taken.
    WARMUP_FULL = "warmup_full"


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input that is not an event: the reason, a message for people, and where it was."""

    reason: Reason
    message: str
    offset: int


class PredictionOutput(TypedDict):
    """A structured prediction."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]
    score: NotRequired[FiniteFloat | None]
    label: NotRequired[str | bool | int | None]
    probabilities: NotRequired[dict[str, FiniteFloat]]


class PredictionEvent(TypedDict):
    """What a serving process logs for each prediction."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]
    type: NotRequired[Literal["prediction"]]
    event_id: str
    model: str
    model_version: str
    timestamp: datetime
    features: dict[str, WireFeatureValue]
    prediction: FiniteFloat | PredictionOutput
    latency_ms: NotRequired[Annotated[float, Field(ge=0, allow_inf_nan=False)] | None]
    versions: NotRequired[dict[str, str]]
    trace: NotRequired[dict[str, str]]


class FeatureEvent(TypedDict):
    """A feature vector logged on its own."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]
    type: NotRequired[Literal["feature"]]
    event_id: str
    model: str
    timestamp: datetime
    features: dict[str, WireFeatureValue]
    versions: NotRequired[dict[str, str]]
    trace: NotRequired[dict[str, str]]


class LabelEvent(TypedDict):
    """Ground truth for an earlier prediction."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]
    type: NotRequired[Literal["label"]]
    event_id: str
    model: str
    timestamp: datetime
    label: str | bool | FiniteFloat
    trace: NotRequired[dict[str, str]]


KNOWN_FIELDS = {
    "prediction": frozenset(PredictionEvent.__annotations__),
    "feature": frozenset(FeatureEvent.__annotations__),
    "label": frozenset(LabelEvent.__annotations__),
}


def event_kind(value: Any) -> str | None:
    """Which kind of event an object is: by ``type`` if given, else by its fields.

    >>> event_kind({"prediction": 1}), event_kind({"label": 1}), event_kind({"features": {}})
    ('prediction', 'label', 'feature')
    """
    if not isinstance(value, dict):
        return None
    declared = value.get("type")
    if declared is not None:
        return declared if declared in KNOWN_FIELDS else None
    if "prediction" in value:
        return "prediction"
    if "label" in value:
        return "label"
    if "features" in value:
        return "feature"
    return None


AnyEvent = Annotated[
    Annotated[PredictionEvent, Tag("prediction")]
    | Annotated[FeatureEvent, Tag("feature")]
    | Annotated[LabelEvent, Tag("label")],
    Discriminator(event_kind),
]
_EVENT = TypeAdapter(AnyEvent)
# Predictions are the bulk of the stream: validating against their schema directly skips the
# discriminator call; anything that fails is validated again against the union for its reason.
_PREDICTION = TypeAdapter(PredictionEvent)


class _PredictionEnvelope(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    events: list[PredictionEvent]


# A batch envelope of valid predictions validates from its bytes in one call; one bad element
# sends the whole message through the per-element path, which finds the reason of each.
_ENVELOPE = TypeAdapter(_PredictionEnvelope)

_TYPE_ERRORS = frozenset(
    {
        "string_type",
        "float_type",
        "float_parsing",
        "bool_type",
        "dict_type",
        "int_type",
        "literal_error",
        "model_type",
        "typed_dict_type",
        "list_type",
        "union_tag_invalid",
        "bool_parsing",
        "int_parsing",
        "string_unicode",
    }
)


# How pydantic's JSON parser words text nested deeper than it allows.
_DEEP = "recursion limit exceeded"


def _reason(err: dict[str, Any]) -> Reason:
    kind = err["type"]
    loc = err.get("loc", ())
    if kind == "json_invalid":
        return Reason.TOO_DEEP if _DEEP in err.get("msg", "") else Reason.MALFORMED_JSON
    if kind == "union_tag_not_found":
        return Reason.UNKNOWN_EVENT_TYPE
    if not loc and kind in {"model_attributes_type", "dict_type", "typed_dict_type"}:
        return Reason.NOT_AN_OBJECT
    if kind == "missing":
        return Reason.MISSING_FIELD
    if kind == "finite_number":
        return Reason.NON_FINITE
    if kind.startswith(("datetime", "date_", "timezone")) or (loc and loc[-1] == "timestamp"):
        return Reason.INVALID_TIMESTAMP
    if kind == "union_tag_invalid":
        return Reason.UNKNOWN_EVENT_TYPE
    if kind in _TYPE_ERRORS:
        return Reason.WRONG_TYPE
    return Reason.INVALID_VALUE


_UNION_MEMBERS = frozenset(
    {"bool", "float", "str", "int", "PredictionOutput", "strict-bool", "strict-str", "strict-float"}
)


def _message(err: dict[str, Any]) -> str:
    loc = err.get("loc", ())[1:]
    # A union member named inside the path ("prediction.PredictionOutput.score") says nothing
    # to a producer; the last one is handled below.
    parts = [str(p) for k, p in enumerate(loc) if k == len(loc) - 1 or p not in _UNION_MEMBERS]
    if err["type"] == "union_tag_not_found":
        return (
            "cannot tell the event kind: expected a 'prediction', 'label' or 'features' field "
            '(or "type": prediction|feature|label)'
        )
    if err["type"] == "union_tag_invalid":
        return "type: must be one of prediction, feature, label"
    if parts and (parts[-1] in _UNION_MEMBERS or parts[-1].startswith(("function-", "constr"))):
        parts = parts[:-1]
        loc = ".".join(parts) or "event"
        if parts and parts[0] == "features":
            return f"{loc}: a feature value must be a number, string, bool or null"
        return f"{loc}: {err['msg']}"
    loc = ".".join(parts) or "event"
    return f"{loc}: {err['msg']}"


def rejection_from(exc: ValidationError, offset: int) -> Rejection:
    """Translate a pydantic error into a :class:`Rejection`.

    The first error's field decides; among that field's errors the deepest does: a union
    reports one error per member, and for ``"prediction": {"score": NaN}`` the float member's
    "not a number" comes first while the object member's ``non_finite`` score is the cause.
    """
    errs = exc.errors(include_url=False, include_context=False, include_input=False)
    if not errs:
        return Rejection(Reason.INVALID_VALUE, f"event: {exc}", offset)
    field = errs[0]["loc"][:2]
    first = max(
        (e for e in errs if e["loc"][:2] == field), key=lambda e: len(e["loc"]), default=errs[0]
    )
    return Rejection(_reason(dict(first)), _message(dict(first)), offset)


Event = PredictionEvent | FeatureEvent | LabelEvent


def _internal(exc: Exception, offset: int) -> Rejection:
    return Rejection(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", offset)


def parse_event(raw: bytes, offset: int = 0, max_bytes: int = 1 << 20) -> Event | Rejection:
    """Validate one JSON event; never raises.

    >>> parse_event(b'{"event_id": "1", "model": "m", "timestamp": 0, "label": "x"}')["label"]
    'x'
    >>> parse_event(b'{"event_id": 1}').reason.value
    'unknown_event_type'
    >>> parse_event(b'{oops').reason.value
    'malformed_json'
    """
    try:
        return _parse_event(raw, offset, max_bytes)
    except Exception as exc:  # a defect, not the input: a rejection all the same
        return _internal(exc, offset)


def _parse_event(raw: bytes, offset: int, max_bytes: int) -> Event | Rejection:
    if len(raw) > max_bytes:  # before anything reads it
        return _too_large(len(raw), max_bytes, offset)
    if not raw or raw.isspace():
        return Rejection(Reason.EMPTY, "empty input", offset)
    try:
        event: Event = _PREDICTION.validate_json(raw)
    except ValidationError:
        pass
    else:
        return event
    try:
        event = _EVENT.validate_json(raw)
    except ValidationError as exc:
        rej = rejection_from(exc, offset)
        if rej.reason is Reason.UNKNOWN_EVENT_TYPE and not raw.lstrip().startswith(b"{"):
            return Rejection(Reason.NOT_AN_OBJECT, "an event must be a JSON object", offset)
        if rej.reason is Reason.MALFORMED_JSON or rej.reason is Reason.WRONG_TYPE:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as ude:
                return Rejection(Reason.INVALID_UTF8, f"not UTF-8: {ude}", offset)
        return rej
    return event


def parse_object(value: Any, offset: int = 0) -> Event | Rejection:
    """Validate one already-decoded JSON object (an element of a batch envelope); never
    raises."""
    try:
        return _parse_object(value, offset)
    except Exception as exc:  # a defect, not the input: a rejection all the same
        return _internal(exc, offset)


def _parse_object(value: Any, offset: int) -> Event | Rejection:
    try:
        event: Event = _PREDICTION.validate_python(value)
    except ValidationError:
        pass
    else:
        return event
    if not isinstance(value, dict):
        return Rejection(Reason.NOT_AN_OBJECT, "an event must be a JSON object", offset)
    try:
        event = _EVENT.validate_python(value)
    except ValidationError as exc:
        return rejection_from(exc, offset)
    return event


def parse_message(
    raw: bytes, max_bytes: int = 1 << 20, event_max_bytes: int = 1 << 20
) -> list[Event | Rejection] | Rejection:
    """Validate one Kafka message: a single event or a batch envelope ``{"events": [...]}``;
    never raises.

    Returns a rejection for the whole message when it is not usable at all, else one result
    per event (an envelope element may be rejected on its own; its ``offset`` is its index).
    ``max_bytes`` limits the message, ``event_max_bytes`` each event (``events.max_bytes``):
    a single event longer is rejected unread, an envelope's element spanning more is
    rejected as ``too_large`` in its place.

    >>> label = b'{"event_id": "1", "model": "m", "timestamp": 0, "label": 1}'
    >>> [getattr(r, "reason", "ok") for r in parse_message(b'{"events": [' + label + b', 7]}')]
    ['ok', <Reason.NOT_AN_OBJECT: 'not_an_object'>]
    """
    try:
        return _parse_message(raw, max_bytes, event_max_bytes)
    except Exception as exc:  # a defect, not the input: a rejection all the same
        return _internal(exc, 0)


def _parse_message(
    raw: bytes, max_bytes: int, event_max_bytes: int
) -> list[Event | Rejection] | Rejection:
    head = raw[:16].lstrip()
    if not head.startswith(b'{"events"'):
        single = parse_event(raw, 0, min(max_bytes, event_max_bytes))
        if not (isinstance(single, Rejection) and single.reason is Reason.UNKNOWN_EVENT_TYPE):
            return [single]
    if len(raw) > max_bytes:
        return Rejection(
            Reason.TOO_LARGE, f"message of {len(raw)} bytes exceeds the {max_bytes}-byte limit", 0
        )
    try:
        fast: list[Event | Rejection] = list(_ENVELOPE.validate_json(raw)["events"])
    except ValidationError:
        pass
    else:
        return _sized(raw, fast, event_max_bytes)
    try:
        body = from_json(raw, allow_inf_nan=True)
    except ValueError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as ude:
            return Rejection(Reason.INVALID_UTF8, f"not UTF-8: {ude}", 0)
        if _DEEP in str(exc):
            return Rejection(Reason.TOO_DEEP, f"invalid JSON: {exc}", 0)
        return Rejection(Reason.MALFORMED_JSON, f"invalid JSON: {exc}", 0)
    if not isinstance(body, dict):
        return Rejection(Reason.NOT_AN_OBJECT, 'a message must be an event or {"events": [...]}', 0)
    if set(body) != {"events"}:
        if len(raw) > event_max_bytes:  # one event, however it starts
            return [_too_large(len(raw), event_max_bytes, 0)]
        return [parse_object(body, 0)]
    events = body["events"]
    if not isinstance(events, list):
        return Rejection(Reason.WRONG_TYPE, "events: must be a list of events", 0)
    return _sized(raw, [parse_object(e, i) for i, e in enumerate(events)], event_max_bytes)


def _too_large(size: int | None, limit: int, offset: int) -> Rejection:
    what = "event" if size is None else f"event of {size} bytes"
    return Rejection(Reason.TOO_LARGE, f"{what} exceeds the {limit}-byte limit", offset)


def _sized(
    raw: bytes, parsed: list[Event | Rejection], limit: int
) -> list[Event | Rejection] | Rejection:
    """``parsed`` (the envelope's elements) with each element whose JSON spans more than
    ``limit`` bytes rejected as ``too_large``."""
    if len(raw) <= limit:
        return parsed
    over = scan(raw, limit, 1 << 30)  # the text is valid JSON: only the sizes are asked
    if over is None:  # pragma: no cover - valid JSON always scans
        return _too_large(len(raw), limit, 0)
    for i in over:
        if i < len(parsed):
            parsed[i] = _too_large(None, limit, i)
    return parsed


def epoch_seconds(ts: datetime) -> float:
    """Event time in epoch seconds; a timestamp without an offset is UTC.

    >>> epoch_seconds(datetime(2026, 1, 1))
    1767225600.0
    """
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def unknown_fields(event: Event, kind: str) -> bool:
    """Whether the event carries top-level fields outside its schema."""
    return not KNOWN_FIELDS[kind].issuperset(event)
