"""W3C trace context through OpenTelemetry's propagator: Kafka headers, event fields and the
exemplar ids agree on what is a context, as the spec and the propagator decide."""

from __future__ import annotations

import logging

import pytest

from monitor.latency_metrics import TraceRef, parse_traceparent
from monitor.trace_context import (
    MAX_FIELD_LENGTH,
    KafkaHeadersGetter,
    context_from_event,
    context_from_fields,
    context_from_headers,
    context_from_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
GOOD = f"00-{TRACE}-{SPAN}-01"


def traceparent(i: int) -> str:
    return f"00-{i + 1:032x}-{i + 1:016x}-01"


def test_getter_reads_bytes_str_repeated_and_none() -> None:
    g = KafkaHeadersGetter()
    headers: list[tuple[str | bytes, bytes | str | None]] = [
        (b"traceparent", None),
        ("traceparent", b"first"),
        (b"traceparent", "second"),
    ]
    assert g.get(headers, "traceparent") == ["first", "second"]
    assert g.get(headers, "tracestate") is None
    assert g.keys({b"a": b"1", "b": None}) == ["a", "b"]
    sc = context_from_headers([(b"traceparent", traceparent(7).encode()), ("tracestate", b"k=v")])
    assert sc is not None and sc.trace_id == 8 and sc.is_remote
    assert sc.trace_state.get("k") == "v"
    for bad in (b"garbage", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01", b"ff-" + b"1" * 49):
        assert context_from_headers([("traceparent", bad)]) is None
    assert context_from_headers(None) is None
    assert context_from_event({"trace": {"traceparent": "00-zz"}}) is None
    assert context_from_event({"trace": "x"}) is None


# (traceparent, accepted): the W3C Trace Context rules as OpenTelemetry's propagator applies them.
CASES = [
    (GOOD, True),
    (f" \t{GOOD}\t ", True),  # optional whitespace around the value
    (f"00-{TRACE}-{SPAN}-00", True),  # not sampled is still a context
    (f"cc-{TRACE}-{SPAN}-01", True),  # a later version: its first four fields
    (f"cc-{TRACE}-{SPAN}-01-what-comes-later", True),
    (f"00-{TRACE}-{SPAN}-01-what-comes-later", False),  # version 00 has exactly four fields
    (f"ff-{TRACE}-{SPAN}-01", False),  # version ff is invalid
    (f"00-{TRACE.upper()}-{SPAN}-01", False),  # lowercase hex only
    (f"00-{'0' * 32}-{SPAN}-01", False),  # all-zero trace id
    (f"00-{TRACE}-{'0' * 16}-01", False),  # all-zero span id
    (f"00-{TRACE}-{SPAN}-zz", False),
    (f"00-{TRACE[:-1]}-{SPAN}-01", False),
    ("00-zz", False),
    ("", False),
]


@pytest.mark.parametrize(("value", "accepted"), CASES)
def test_headers_event_fields_and_exemplar_ids_agree(value: str, accepted: bool) -> None:
    from_header = context_from_headers([("traceparent", value.encode())])
    from_event = context_from_event({"trace": {"traceparent": value}})
    ref = parse_traceparent(value)
    assert (from_header is not None) is accepted
    assert (from_event is not None) is accepted
    assert (ref is not None) is accepted
    if accepted:
        assert from_header == from_event == context_from_traceparent(value)
        assert ref == TraceRef(TRACE, SPAN)
        assert from_event is not None and from_event.trace_id == int(TRACE, 16)


def test_event_context_keeps_flags_and_tracestate() -> None:
    sc = context_from_event({"trace": {"traceparent": GOOD, "tracestate": "dw=1,k=v"}})
    assert sc is not None and sc.is_remote and sc.trace_flags.sampled
    assert dict(sc.trace_state) == {"dw": "1", "k": "v"}
    unsampled = context_from_fields({"traceparent": f"00-{TRACE}-{SPAN}-00"})
    assert unsampled is not None and not unsampled.trace_flags.sampled
    # A malformed tracestate is dropped; the traceparent still counts.
    sc = context_from_fields({"traceparent": GOOD, "tracestate": 7})
    assert sc is not None and len(sc.trace_state) == 0


def test_what_is_not_a_traceparent_is_none() -> None:
    assert context_from_event({"trace": {"traceparent": 7}}) is None
    assert context_from_event({"trace": {}}) is None
    assert context_from_event({}) is None
    assert context_from_event("not an event") is None
    assert context_from_fields(None) is None
    assert context_from_traceparent(None) is None
    assert context_from_traceparent(b"\xff" + GOOD.encode()) is None
    assert context_from_traceparent(bytearray(GOOD.encode())) is not None
    assert context_from_headers({"traceparent": None}) is None


def test_oversized_fields_are_dropped_without_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    long_parent = GOOD + " " * MAX_FIELD_LENGTH  # valid but for its length
    long_state = "k=" + "v" * MAX_FIELD_LENGTH
    with caplog.at_level(logging.DEBUG):
        assert context_from_headers([("traceparent", long_parent)]) is None
        assert context_from_event({"trace": {"traceparent": long_parent}}) is None
        sc = context_from_headers([("traceparent", GOOD), ("tracestate", long_state)])
    assert sc is not None and len(sc.trace_state) == 0
    assert caplog.records == []
