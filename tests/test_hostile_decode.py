"""Hostile input at the decode edge (issue 14): nothing raises, nothing is taken that pydantic
would not take, no event carries features that are not its own, and no event beyond
``events.max_bytes`` is decoded.

Every decode path is asked: ``FastDecoder.prediction``, ``lines``, ``envelope``, ``message``
and ``messages`` with and without a compiled schema, ``events.parse_event`` and
``parse_message``, and ``Pipeline.process_lines`` (replay). The reproducers are kept as bytes in
:data:`REPRODUCERS` for the fuzz corpus.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from monitor.accelerator import FeatureRow, Parser, gather
from monitor.config import EventsConfig, Settings
from monitor.events import Reason, Rejection, parse_event, parse_message
from monitor.fastdecode import FastDecoder, FastPrediction, as_event, compile_schema
from monitor.pipeline import Pipeline
from tests.test_fastdecode import _same, events, schema_features

# Every test runs on the C extension and on its pure-Python twin (tests/accel_impls.py).
pytestmark = pytest.mark.usefixtures("accel")

HEAD = b'{"event_id":"e","model":"m","model_version":"v","timestamp":0,'
GOOD = HEAD + b'"features":{"x":1,"c":"DE"},"prediction":1}'


def ev(features: bytes = b'{"x":1,"c":"DE"}', rest: bytes = b'"prediction":1') -> bytes:
    """An event of the schema (numeric ``x``, categorical ``c``) with these raw parts."""
    return HEAD + b'"features":' + features + b"," + rest + b"}"


def envelope(*items: bytes) -> bytes:
    return b'{"events":[' + b",".join(items) + b"]}"


DEEP = ev(b'{"x":' + b"[" * 1000 + b"]" * 1000 + b',"c":"DE"}')
FAR_FUTURE = HEAD.replace(b'"timestamp":0', b'"timestamp":253402300800000') + (
    b'"features":{},"prediction":1}'
)
#: Defect 2: each is rejected by pydantic; the old C split took each with stolen features.
SMUGGLED = {
    "duplicate events key": b'{"events":['
    + ev(b'{"x":666,"c":"EVIL"}')
    + b'],"events":['
    + ev(b"0")
    + b"]}",
    "features inside probabilities, a row number next": envelope(
        ev(rest=b'"prediction":{"score":0.5,"probabilities":{"features":{"x":5,"c":"X"}}}'),
        ev(b"1"),
    ),
    "duplicate features, the last invalid": envelope(ev(rest=b'"features":0,"prediction":1')),
    "invalid UTF-8 in a dropped duplicate features": envelope(
        ev(b'{"x":1,"c":"\xff"}', b'"features":{"x":2,"c":"DE"},"prediction":1')
    ),
    "a deep dropped duplicate features": envelope(
        ev(b"[" * 300 + b"]" * 300, b'"features":{"x":2,"c":"DE"},"prediction":1')
    ),
    "invalid UTF-8 in a dropped duplicate events list": b'{"events":['
    + ev(b'{"x":1,"c":"\xff"}')
    + b'],"events":['
    + GOOD
    + b"]}",
}
#: The same smuggling in single events (msgspec drops the first value of a repeated key).
SMUGGLED_LINES = {
    "invalid UTF-8 in a dropped duplicate features": ev(
        b'{"x":1,"c":"\xff"}', b'"features":{"x":2,"c":"DE"},"prediction":1'
    ),
    "a deep dropped duplicate features": ev(
        b"[" * 300 + b"]" * 300, b'"features":{"x":2,"c":"DE"},"prediction":1'
    ),
    "duplicate features, the last invalid": ev(rest=b'"features":0,"prediction":1'),
}
NAN_SCORE = ev(rest=b'"prediction":{"score":NaN}')

#: Every reproducer of this file, as bytes (the fuzz corpus takes them).
REPRODUCERS: list[bytes] = [
    DEEP,
    FAR_FUTURE,
    envelope(DEEP),
    envelope(FAR_FUTURE),
    *SMUGGLED.values(),
    *SMUGGLED_LINES.values(),
    NAN_SCORE,
    ev(rest=b'"prediction":{"score":Infinity}'),
    ev(b'{"x":1,"c":"' + b"A" * (10 << 20) + b'"}'),
    HEAD.replace(b'"e"', b'"' + b"e" * (10 << 20) + b'"') + b'"features":{},"prediction":1}',
    ev(b'{"x":1,' + b" " * (10 << 20) + b'"c":"DE"}'),
]


def decoders() -> list[FastDecoder]:
    """A decoder with the schema compiled (numeric x, categorical c) and one without."""
    compiled = FastDecoder()
    assert compiled.compile(["x"], [("c", str)]) is not None
    return [compiled, FastDecoder()]


def fast_results(decoder: FastDecoder, raw: bytes) -> list[Any]:
    """What every path of ``decoder`` makes of ``raw`` as a Kafka message or a line."""
    return [
        decoder.message(raw),
        decoder.messages([raw], 16 << 20)[0],
        *((decoder.prediction(raw), decoder.lines([raw])[0]) if raw[:9] != b'{"events"' else ()),
    ]


def reasons(parsed: Any) -> list[str]:
    if isinstance(parsed, Rejection):
        return [parsed.reason.value]
    return [r.reason.value if isinstance(r, Rejection) else "ok" for r in parsed]


# -- defect 1: nothing raises, each is a rejection with a reason -----------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (DEEP, "too_deep"),
        (FAR_FUTURE, "invalid_timestamp"),
        (envelope(DEEP), "too_deep"),
        (envelope(FAR_FUTURE), "invalid_timestamp"),
        (envelope(GOOD, FAR_FUTURE.replace(b"{}", b'{"x":1,"c":"DE"}')), "invalid_timestamp"),
    ],
)
def test_poison_messages_are_rejected_with_their_reason(raw: bytes, reason: str) -> None:
    for decoder in decoders():
        assert all(r is None for r in fast_results(decoder, raw))
        assert decoder.failures == 0  # refused as input, not caught as a defect
    got = reasons(parse_message(raw))
    assert got[-1] == reason
    if raw[:9] != b'{"events"':
        assert reasons([parse_event(raw)]) == [reason]


def test_replay_counts_poison_lines_and_goes_on() -> None:
    pipeline = Pipeline()
    pipeline.decoder.compile(["x"], [("c", str)])
    pipeline.process_lines([GOOD, DEEP, FAR_FUTURE, GOOD])
    assert pipeline.stats.accepted == 2
    assert dict(pipeline.stats.rejected) == {"too_deep": 1, "invalid_timestamp": 1}


def test_a_defect_in_the_fast_path_leaves_the_input_to_pydantic() -> None:
    decoder = decoders()[0]

    def broken(raw: bytes) -> None:
        raise RuntimeError("a bug")

    decoder._one.insert(0, broken)
    decoder._many.insert(0, broken)
    assert decoder.message(GOOD) is None and decoder.message(envelope(GOOD)) is None
    assert decoder.failures == 2


# -- defect 2: an event never takes features from elsewhere ---------------------------------------


@pytest.mark.parametrize("name", sorted(SMUGGLED))
def test_smuggled_features_are_never_taken(name: str) -> None:
    raw = SMUGGLED[name]
    slow = parse_message(raw)
    assert isinstance(slow, Rejection) or all(isinstance(r, Rejection) for r in slow), name
    for decoder in decoders():
        assert decoder.message(raw) is None, name
        assert decoder.messages([raw], 1 << 20) == [None], name


@pytest.mark.parametrize("name", sorted(SMUGGLED_LINES))
def test_smuggled_features_in_a_line_are_never_taken(name: str) -> None:
    raw = SMUGGLED_LINES[name]
    assert isinstance(parse_event(raw), Rejection), name
    for decoder in decoders():
        assert all(r is None for r in fast_results(decoder, raw)), name


def test_a_repeated_key_is_taken_as_pydantic_takes_it() -> None:
    """A valid earlier value of a repeated key is dropped by both: the same event (the
    compiled decoder takes it; the general one, which types the dropped value too, may not)."""
    for raw in (
        ev(b"0", b'"features":{"x":2,"c":"DE"},"prediction":1'),
        ev(b'{"x":[[1]],"c":"\\u00e9"}', b'"features":{"x":2,"c":"DE"},"prediction":1'),
    ):
        slow = parse_event(raw)
        assert not isinstance(slow, Rejection)
        compiled, general = decoders()
        for decoder in (compiled, general):
            for got in fast_results(decoder, raw):
                value = got[0] if isinstance(got, list) else got
                assert (value is None and decoder is general) or (
                    value is not None and _same(as_event(value), dict(slow))
                )


# -- defect 3: the per-event size limit on every path ---------------------------------------------

LIMIT = 4096
BIG = {
    "event_id": HEAD.replace(b'"e"', b'"' + b"e" * 10_000 + b'"') + b'"features":{"x":1,"c":"DE"},'
    b'"prediction":1}',
    "category": ev(b'{"x":1,"c":"' + b"A" * 10_000 + b'"}'),
    "whitespace": ev(b'{"x":1,' + b" " * 10_000 + b'"c":"DE"}'),
}


@pytest.mark.parametrize("name", sorted(BIG))
def test_an_event_over_the_limit_is_rejected_on_every_path(name: str) -> None:
    raw = BIG[name]
    decoder = FastDecoder(LIMIT)
    decoder.compile(["x"], [("c", str)])
    assert all(r is None for r in fast_results(decoder, raw))
    assert decoder.message(envelope(GOOD, raw, GOOD)) is None
    assert reasons(parse_message(raw, 16 << 20, LIMIT)) == ["too_large"]
    assert reasons(parse_message(envelope(GOOD, raw, GOOD), 16 << 20, LIMIT)) == [
        "ok",
        "too_large",
        "ok",
    ]
    pipeline = Pipeline(Settings(events=EventsConfig(max_bytes=LIMIT)))
    pipeline.process_lines([GOOD, raw])
    assert dict(pipeline.stats.rejected) == {"too_large": 1}


def test_ten_megabytes_in_one_event_is_too_large_by_default() -> None:
    """The issue's sizes with the default limit (1 MiB), as the worker's 16 MiB message
    limit lets them through."""
    for raw in REPRODUCERS[-3:]:
        for decoder in decoders():
            assert decoder.message(raw) is None and decoder.message(envelope(raw)) is None
        assert reasons(parse_message(raw, 16 << 20)) == ["too_large"]
        assert reasons(parse_message(envelope(GOOD, raw), 16 << 20)) == ["ok", "too_large"]


def test_an_envelope_under_the_limit_of_events_under_it_is_decoded() -> None:
    raw = envelope(*[GOOD] * 100)  # 9 KB: more than the limit, each event far less
    decoder = FastDecoder(LIMIT)
    decoder.compile(["x"], [("c", str)])
    got = decoder.message(raw)
    assert got is not None and len(got) == 100
    assert reasons(parse_message(raw, 16 << 20, LIMIT)) == ["ok"] * 100


# -- defect 7: the smaller ones -------------------------------------------------------------------


def test_a_non_finite_score_in_a_prediction_object_is_non_finite() -> None:
    for raw in (NAN_SCORE, ev(rest=b'"prediction":{"probabilities":{"a":-Infinity}}')):
        rej = parse_event(raw)
        assert isinstance(rej, Rejection) and rej.reason is Reason.NON_FINITE, rej
        assert "PredictionOutput" not in rej.message
    rej = parse_event(ev(rest=b'"prediction":{"score":"high"}'))
    assert isinstance(rej, Rejection) and rej.reason is Reason.WRONG_TYPE


def test_gather_refuses_a_row_whose_offset_would_overflow() -> None:
    layout = object()
    values = bytearray(16)
    for index in (2**62, 2**61 + 1, (2**63 - 1) // 8):
        assert gather([FeatureRow((values, (), layout), index)], layout, 2, 0) is None
    assert gather([FeatureRow((values, (), layout), 0)], layout, 2**62, 0) is None
    assert gather([FeatureRow((values, (), layout), 1)], layout, 1, 0) == (bytearray(8), ())


def test_a_lone_surrogate_in_a_closed_vocabulary_makes_nothing_raise() -> None:
    schema = compile_schema(["x"], [("c", Literal["DE", "\ud800"])])
    assert schema.decode_one(ev(b'{"x":1,"c":"FR"}')) is None
    got = schema.decode_one(GOOD)
    assert got is not None and dict(got.features) == {"x": 1.0, "c": "DE"}
    assert schema.decode_many(envelope(ev(b'{"x":1,"c":"FR"}'))) is None
    named = Parser(("x\udc00",), (), ())  # a feature name without UTF-8: never matched
    assert named.parse([b'{"x":1}'])[2] == [0]


def test_a_failed_allocation_in_number_raises_memory_error() -> None:
    """Numbers of 128 characters or more take an allocation; every allocation of a parse is
    made to fail in turn: each failure is a MemoryError, never an error without exception."""
    import _testcapi as testcapi  # type: ignore[import-not-found]  # CPython test hooks

    parser = Parser(("x",), (), ())
    raws = [b'{"x": 1.' + b"1" * 200 + b"}"]
    outcomes = set()
    for k in range(1, 40):
        testcapi.set_nomemory(k, k + 1)
        try:
            parser.parse(raws)
            outcomes.add("ok")
        except MemoryError:
            outcomes.add("MemoryError")
        finally:
            testcapi.remove_mem_hooks()
    assert outcomes == {"ok", "MemoryError"}


# -- the differential property over envelopes -----------------------------------------------------


def schema_decoder() -> FastDecoder:
    """A decoder with the schema of ``schema_features`` compiled (on the implementation in use)."""
    decoder = FastDecoder()
    decoder.compile(["x", "y"], [("c", str), ("b", bool)])
    return decoder


def _mutate(raw: bytes, how: int, at: int) -> bytes:
    """Hostile variations: a repeated key, a byte changed, a cut."""
    if how == 1:
        return raw.replace(b'"features": ', b'"features": 0, "features": ', 1)
    if how == 2:
        return raw.replace(b'"features": ', b'"features": {"x": "\xff"}, "features": ', 1)
    if how == 3 and raw:
        return raw[: at % len(raw)] + bytes([raw[at % len(raw)] ^ 0x80]) + raw[at % len(raw) + 1 :]
    if how == 4:
        return raw + b', "events": []}'
    return raw


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(events(), schema_features().map(lambda f: {**json.loads(GOOD), "features": f})),
        max_size=5,
    ),
    st.integers(0, 6),
    st.integers(0, 10**6),
)
def test_an_envelope_decodes_as_pydantic_validates_it(
    items: list[dict[str, Any]], how: int, at: int
) -> None:
    """Whatever the fast path accepts, pydantic accepts with equal events; nothing raises."""
    raw = _mutate(("{" + '"events": ' + json.dumps(items) + "}").encode(), how, at)
    slow = parse_message(raw)
    for decoder in (schema_decoder(), FastDecoder()):
        fast = decoder.message(raw)
        event(f"fast path: {'taken' if fast else 'left'}")
        if fast is None:
            continue
        assert not isinstance(slow, Rejection), (raw, slow)
        assert len(fast) == len(slow)
        for a, b in zip(fast, slow, strict=True):
            assert isinstance(a, FastPrediction) and not isinstance(b, Rejection), (raw, b)
            assert _same(as_event(a), dict(b)), (raw, a, b)
    assert isinstance(slow, Rejection) or all(isinstance(r, (Rejection, dict)) for r in slow)
