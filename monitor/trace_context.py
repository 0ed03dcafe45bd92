"""W3C trace context in, read with OpenTelemetry's propagator: Kafka headers and event fields.

A producer's context reaches driftwatch in two places: the ``traceparent``/``tracestate``
headers of a Kafka message, and the ``trace`` field of an event logged with
``monitor.client.EventLogger`` (``{"traceparent": ..., "tracestate": ...}``). Both are parsed
by :class:`~opentelemetry.trace.propagation.tracecontext.TraceContextTextMapPropagator`, so
driftwatch accepts exactly what the W3C Trace Context spec and OpenTelemetry accept (version
``00`` exactly, later versions by their first four fields, never ``ff``, lowercase hex, no
all-zero ids); this module only supplies the getters over the two carriers.
:class:`KafkaHeadersGetter` takes headers as ``(key, value)`` pairs or a mapping, keys and values
as str or bytes, repeated keys and ``None`` values; :class:`FieldsGetter` reads a mapping of
str. Nothing here raises on malformed input: the answer is ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

HeaderPairs = Sequence[tuple[str | bytes, bytes | str | None]]
Headers = HeaderPairs | Mapping[str | bytes, bytes | str | None]
#: The propagator's own limit on a field's length. Longer values are dropped by the getters, as
#: the propagator would drop them, but without its warning: on hostile input that warning
#: would be logged once per message.
MAX_FIELD_LENGTH = 512

_PROPAGATOR = TraceContextTextMapPropagator()


def as_text(value: str | bytes | bytearray) -> str:
    """A header key or value as str (bytes decoded as UTF-8, bad bytes replaced).

    >>> as_text(b"00-ab"), as_text("k=v")
    ('00-ab', 'k=v')
    """
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value


class KafkaHeadersGetter(Getter[Headers]):
    """Reads W3C fields from Kafka headers: ``(key, value)`` pairs (keys may repeat, values may
    be ``None``) or a mapping; keys and values may be str or bytes.

    >>> g = KafkaHeadersGetter()
    >>> g.get([(b"traceparent", b"00-ab"), ("other", None), ("traceparent", None)], "traceparent")
    ['00-ab']
    >>> g.get({"tracestate": b"k=v"}, "tracestate"), g.get(None, "x")
    (['k=v'], None)
    """

    def get(self, carrier: Headers | None, key: str) -> list[str] | None:
        """Values of ``key`` as str, in order; None when there is none."""
        if not carrier:
            return None
        pairs: Iterable[tuple[Any, Any]] = (
            carrier.items() if isinstance(carrier, Mapping) else carrier
        )
        out = [
            text
            for k, v in pairs
            if v is not None and as_text(k) == key and len(text := as_text(v)) <= MAX_FIELD_LENGTH
        ]
        return out or None

    def keys(self, carrier: Headers | None) -> list[str]:
        """All header keys as str."""
        if not carrier:
            return []
        if isinstance(carrier, Mapping):
            return [as_text(k) for k in carrier]
        return [as_text(k) for k, _ in carrier]


class FieldsGetter(Getter[Mapping[str, Any]]):
    """Reads W3C fields from a mapping whose values are str (an event's ``trace`` field);
    values of any other type count as absent.

    >>> FieldsGetter().get({"traceparent": "00-ab", "tracestate": 7}, "tracestate") is None
    True
    """

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        """``[value]`` when ``key`` holds a str, else None."""
        value = carrier.get(key)
        return [value] if isinstance(value, str) and len(value) <= MAX_FIELD_LENGTH else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        """The str keys."""
        return [k for k in carrier if isinstance(k, str)]


HEADERS_GETTER = KafkaHeadersGetter()
FIELDS_GETTER = FieldsGetter()


def _extract(carrier: Any, getter: Getter[Any]) -> SpanContext | None:
    sc = trace.get_current_span(_PROPAGATOR.extract(carrier, getter=getter)).get_span_context()
    return sc if sc.is_valid else None


def context_from_headers(headers: Headers | None) -> SpanContext | None:
    """The producer's span context from ``traceparent``/``tracestate`` headers, or None."""
    if not headers:
        return None
    return _extract(headers, HEADERS_GETTER)


def context_from_fields(fields: Any) -> SpanContext | None:
    """The span context of a mapping holding ``traceparent`` (and ``tracestate``), or None.

    >>> sc = context_from_fields({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    >>> format(sc.trace_id, "032x"), sc.trace_flags.sampled, sc.is_remote
    ('11111111111111111111111111111111', True, True)
    >>> context_from_fields({"traceparent": "00-" + "0" * 32 + "-" + "2" * 16 + "-01"}) is None
    True
    """
    if not isinstance(fields, Mapping):
        return None
    return _extract(fields, FIELDS_GETTER)


def context_from_traceparent(value: Any) -> SpanContext | None:
    """The span context of one ``traceparent`` value (str or bytes), or None."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    return _extract({"traceparent": value}, FIELDS_GETTER)


def context_from_event(event: Any) -> SpanContext | None:
    """The span context in an event's own ``trace`` field (``monitor.client``), or None."""
    return context_from_fields(event.get("trace")) if isinstance(event, Mapping) else None
