"""The msgspec hot path agrees with the pydantic schema, and the batch path with the per-event one.

``monitor.fastdecode`` may refuse what pydantic accepts (pydantic then decides), but whatever it
accepts must come out exactly as pydantic's result. ``Pipeline.process_lines`` (fast decoding,
runs of predictions processed stream by stream) must decide exactly what validating and
processing each line on its own decides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from alerting.types import Transition
from monitor.events import Rejection, parse_event, parse_message
from monitor.fastdecode import (
    FastDecoder,
    FastPrediction,
    FeatureSchema,
    as_event,
    compile_schema,
    decode_message,
    decode_prediction,
)
from monitor.pipeline import Pipeline
from monitor.scenarios.simulate import generate
from monitor.streams import window_inputs
from tests.test_bad_input import GOOD

# Every test runs on the C extension and on its pure-Python twin (tests/accel_impls.py).
pytestmark = pytest.mark.usefixtures("accel")

BASE: dict[str, Any] = {**GOOD, "versions": {"code": "3f2a1c9"}}


def _same(fast: Any, slow: Any) -> bool:
    """Equal values of equal types (a bool is not 1.0); datetimes with the same offset, equal
    to the microsecond."""
    if isinstance(fast, dict):
        return (
            isinstance(slow, dict)
            and fast.keys() == slow.keys()
            and all(_same(fast[k], slow[k]) for k in fast)
        )
    if isinstance(fast, datetime):
        # Digits below the microsecond are rounded by msgspec and cut by pydantic.
        return (
            isinstance(slow, datetime)
            and abs(fast - slow) <= timedelta(microseconds=1)
            and fast.utcoffset() == slow.utcoffset()
            and (fast.tzinfo is None) == (slow.tzinfo is None)
        )
    return type(fast) is type(slow) and fast == slow


def assert_agrees(raw: bytes) -> bool:
    """If the fast decoder accepts ``raw``, pydantic accepts it with the same event."""
    fast = decode_prediction(raw)
    if fast is None:
        return False
    slow = parse_event(raw)
    assert not isinstance(slow, Rejection), (raw, slow)
    assert _same(as_event(fast), dict(slow)), (raw, fast, slow)
    return True


def test_plain_prediction_is_taken_by_the_fast_path() -> None:
    assert assert_agrees(orjson.dumps(BASE))
    assert assert_agrees(orjson.dumps({**BASE, "timestamp": 1767225600123}))
    assert assert_agrees(orjson.dumps({**BASE, "prediction": 0.25, "latency_ms": None}))
    assert assert_agrees(orjson.dumps({**BASE, "type": "prediction", "trace": {"a": "b"}}))


def test_what_only_pydantic_may_decide_is_left_to_it() -> None:
    left = {
        "unknown top-level field": orjson.dumps({**BASE, "host": "a"}),
        "unknown prediction field": orjson.dumps({**BASE, "prediction": {"score": 0.1, "x": 1}}),
        "NaN token": json.dumps({**BASE, "features": {"a": float("nan")}}).encode(),
        "beyond float range": orjson.dumps(BASE).replace(b"12.3", b"1e400"),
        "float timestamp": orjson.dumps({**BASE, "timestamp": 1767225600.5}),
        "label event": b'{"event_id": "e", "model": "m", "timestamp": 0, "label": 1}',
        "feature event": b'{"event_id": "e", "model": "m", "timestamp": 0, "features": {}}',
        "negative latency": orjson.dumps({**BASE, "latency_ms": -1}),
        "list feature": orjson.dumps({**BASE, "features": {"a": [1]}}),
        "malformed": b'{"event_id": ',
        "not UTF-8": orjson.dumps(BASE).replace(b"DE", b"\xff\xfe"),
    }
    for name, raw in left.items():
        assert decode_prediction(raw) is None, name


def test_feature_values_keep_their_kind() -> None:
    raw = orjson.dumps({**BASE, "features": {"b": True, "i": 3, "s": "1.5", "n": None}})
    ev = decode_prediction(raw)
    assert ev is not None
    assert ev["features"] == {"b": True, "i": 3.0, "s": "1.5", "n": None}
    assert type(ev["features"]["b"]) is bool and type(ev["features"]["i"]) is float
    assert assert_agrees(raw)


def test_fast_events_read_like_the_schema_dicts() -> None:
    """Consumers of events (observers, traces, the slow paths) read fast events as dicts."""
    raw = orjson.dumps(
        {**BASE, "trace": {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}}
    )
    ev = decode_prediction(raw)
    assert type(ev) is FastPrediction
    plain = as_event(ev)
    assert isinstance(ev, Mapping) and isinstance(ev["prediction"], Mapping)
    assert list(ev) == list(ev.keys()) == list(plain) and len(ev) == len(plain)
    assert [k for k, _ in ev.items()] == list(plain) and len(ev.values()) == len(plain)
    assert ev["features"] == plain["features"] and ev.get("trace") == plain["trace"]
    assert ev["prediction"]["score"] == 0.82 and ev["prediction"].get("probabilities") is None
    assert "type" not in ev and ev.get("type", "prediction") == "prediction"
    assert "versions" in ev and 3 not in ev
    for missing in ("type", "host", 3):
        try:
            ev[missing]
        except KeyError:
            continue
        raise AssertionError(f"{missing!r} should be absent")


def test_envelopes_agree_with_parse_message() -> None:
    one = orjson.dumps(BASE)
    raw = b'{"events": [' + one + b"," + one + b"]}"
    fast = decode_message(raw)
    slow = parse_message(raw)
    assert fast is not None and isinstance(slow, list)
    assert not any(isinstance(b, Rejection) for b in slow)
    assert [_same(as_event(a), b) for a, b in zip(fast, slow, strict=True)] == [True, True]
    assert decode_message(b'{"events": [' + one + b', {"event_id": 1}]}') is None
    assert decode_message(b'{"events": [], "extra": 1}') is None


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
timestamps = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**45),
    st.floats(min_value=0, max_value=2e12),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)).map(
        lambda d: d.isoformat()
    ),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)).map(
        lambda d: d.isoformat(timespec="milliseconds") + "Z"
    ),
    st.sampled_from(
        [
            "2026-01-01T00:00:00+05:30",
            "2026-01-01 00:00:00Z",
            "2026-01-01t00:00:00z",
            "2026-01-01",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "1767225600000",
            "2026-01-01T00:00:00.1234567Z",
        ]
    ),
)
outputs = st.one_of(
    scalars,
    st.fixed_dictionaries(
        {},
        optional={
            "score": scalars,
            "label": scalars,
            "probabilities": st.dictionaries(st.text(max_size=3), scalars, max_size=3),
        },
    ),
)


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` three times in four, else ``other``: most generated events are predictions
    the fast path takes, the rest probe its edges."""
    return st.integers(0, 3).flatmap(lambda k: valid if k else other)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": draw(mostly(st.text(max_size=5), scalars)),
        "model": "m",
        "model_version": draw(mostly(st.just("v1"), scalars)),
        "timestamp": draw(timestamps),
        "features": draw(st.dictionaries(st.text(max_size=4), scalars, max_size=6)),
        "prediction": draw(
            mostly(st.fixed_dictionaries({"score": st.floats(0, 1), "label": st.text()}), outputs)
        ),
    }
    optional = {
        "latency_ms": mostly(st.floats(0, 1e4), scalars),
        "versions": mostly(
            st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
            st.dictionaries(st.text(max_size=3), scalars, max_size=2),
        ),
        "trace": st.dictionaries(st.sampled_from(["traceparent", "tracestate"]), st.text()),
        "type": mostly(st.just("prediction"), st.sampled_from(["label", "other", 1])),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            ev[name] = draw(strategy)
    return ev


@settings(max_examples=600, deadline=None)
@given(events())
def test_fast_path_accepts_nothing_pydantic_would_not_and_decodes_the_same(
    ev: dict[str, Any],
) -> None:
    accepted = assert_agrees(json.dumps(ev).encode())
    event(f"fast path: {'taken' if accepted else 'left to pydantic'}")


# -- the batch path ------------------------------------------------------------------------------


def _two_models(lines: list[bytes]) -> list[bytes]:
    """Interleave a second model version (every third line) and sprinkle bad input."""
    out = []
    for i, raw in enumerate(lines):
        if i % 3 == 0:
            raw = raw.replace(b'"model_version":"v1"', b'"model_version":"v2"')
        if i % 997 == 0:
            out.append(b'{"broken": ')
        if i % 1499 == 0:
            out.append(raw.replace(b'"model":', b'"extra_field":1,"model":'))
            continue
        out.append(raw)
    return out


def _key(t: Transition) -> tuple[object, ...]:
    return (t.alertname, tuple(sorted(t.labels.items())), t.state.value, t.offset)


@pytest.mark.parametrize("scenario", ["abrupt-shift", "category-shift"])
def test_batch_path_decides_what_the_per_event_path_decides(tmp_path: Path, scenario: str) -> None:
    """Category shift brings values outside a compiled closed vocabulary (general decoder)."""
    path = tmp_path / "ev.jsonl"
    generate(scenario, 24_000, 5).write(path)
    lines = _two_models(path.read_bytes().splitlines())

    batch = Pipeline()
    got: list[Transition] = []
    for k in range(0, len(lines), 777):
        got += batch.process_lines(lines[k : k + 777], k)

    single = Pipeline()
    want: list[Transition] = []
    for i, raw in enumerate(lines):
        result = parse_event(raw, i)
        if isinstance(result, Rejection):
            single.reject(result)
        else:
            single.process_event(result, i, want)

    assert want, "the scenario must raise alerts for the comparison to mean something"
    assert sorted(map(_key, got)) == sorted(map(_key, want))
    assert [t.offset for t in got] == sorted(t.offset for t in got)
    for name in ("lines", "accepted", "rejected", "warnings", "events", "windows", "alerts"):
        assert getattr(batch.stats, name) == getattr(single.stats, name), name
    assert batch.stats.warnings["unknown_field"] > 0
    assert len(batch.joiner) == len(single.joiner)
    for key, stream in single.streams.items():
        other = batch.streams[key]
        assert (other.events, other.windows, other.versions) == (
            stream.events,
            stream.windows,
            stream.versions,
        )
        assert other.profile is not None and stream.profile is not None
        assert other.profile.id == stream.profile.id


def test_batch_path_skips_redelivered_input() -> None:
    lines = [raw.rstrip(b"\n") for raw in generate("steady", 7_000, 1).lines()]
    p = Pipeline(checkpointing=True)
    p.process_lines(lines[:5_000], 0, "src")  # the warm-up completes: a checkpoint
    p.take_checkpoints()
    stream = next(iter(p.streams.values()))
    assert stream.applied["src"] == 4_999
    p.process_lines(lines[4_000:6_000], 4_000, "src")  # 1,000 of them again
    assert p.stats.duplicates == 1_000
    assert stream.events == 6_000


def test_redelivery_within_the_process_is_skipped_too() -> None:
    """A rebalance seeks back to the committed offset: events collected since the last
    checkpoint arrive again in the same process and must not be counted twice."""
    lines = [raw.rstrip(b"\n") for raw in generate("steady", 6_500, 1).lines()]
    p = Pipeline(checkpointing=True)
    p.process_lines(lines[:5_600], 0, "src")  # warm-up checkpointed, 600 events collected
    stream = next(iter(p.streams.values()))
    assert (stream.applied["src"], len(stream.pending)) == (4_999, 600)
    p.process_lines(lines[5_000:6_500], 5_000, "src")  # 600 again, then 900 new
    assert p.stats.duplicates == 600
    assert stream.events == 6_500
    single = Pipeline(checkpointing=True)
    event = parse_event(lines[5_599], 5_599)
    assert not isinstance(event, Rejection)
    single.process_lines(lines[:5_600], 0, "src")
    single.process_event(event, 5_599, [], "src")  # the per-event path skips it as well
    assert single.stats.duplicates == 1


def test_a_message_twice_in_one_batch_is_applied_once() -> None:
    """The worker buffers messages; a rebalance that seeks back can put the same message in
    one batch twice. Positions of a source only grow, so the second copy is a duplicate."""
    lines = [raw.rstrip(b"\n") for raw in generate("steady", 5_600, 2).lines()]
    events = [parse_event(raw) for raw in lines]
    p = Pipeline(checkpointing=True)
    p.process_lines(lines[:5_000], 0, "src")  # the warm-up
    batch = events[5_000:5_300] + events[5_200:5_600]  # 100 of them again
    positions = list(range(5_000, 5_300)) + list(range(5_200, 5_600))
    p.process_events(batch, positions, "src")
    stream = next(iter(p.streams.values()))
    assert p.stats.duplicates == 100
    assert stream.events == 5_600
    assert len(stream.pending) == 600


# -- compiled feature schemas --------------------------------------------------------------------


def schema() -> FeatureSchema:
    """The schema ``schema_features`` draws for, compiled on the implementation in use."""
    return compile_schema(["x", "y"], [("c", str), ("b", bool)])


schema_values = {
    "x": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False), st.integers()),
    "y": scalars,
    "c": st.one_of(st.none(), st.text(max_size=3), scalars),
    "b": st.one_of(st.none(), st.booleans(), scalars),
}


@st.composite
def schema_features(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly the schema's features with values of its kinds, sometimes one absent or extra."""
    feats = {name: draw(strategy) for name, strategy in schema_values.items()}
    change = draw(st.integers(0, 7))
    if change == 0:
        del feats[draw(st.sampled_from(sorted(feats)))]
    elif change == 1:
        feats[draw(st.sampled_from(["z", "get", "keys"]))] = draw(scalars)
    return feats


def _kinds_hold(feats: dict[str, Any]) -> bool:
    def number(v: Any) -> bool:  # (beyond float range the general decoder refuses it too)
        return v is None or type(v) in (int, float)

    return (
        feats.keys() == {"x", "y", "c", "b"}
        and number(feats["x"])
        and number(feats["y"])
        and (feats["c"] is None or type(feats["c"]) is str)
        and (feats["b"] is None or type(feats["b"]) is bool)
    )


@settings(max_examples=400, deadline=None)
@given(schema_features())
def test_a_compiled_schema_takes_exactly_the_events_of_its_schema(feats: dict[str, Any]) -> None:
    """What the compiled decoder takes, the general decoder decodes equally; it takes every
    event whose features have the schema's names and kinds, and nothing else."""
    raw = json.dumps({**BASE, "features": feats}).encode()
    general = decode_prediction(raw)
    compiled = schema()
    typed = compiled.decode_one(raw)
    event(f"compiled schema: {'takes' if typed is not None else 'leaves'}")
    if general is None:
        assert typed is None
        return
    assert (typed is not None) == _kinds_hold(feats), feats
    if typed is not None:
        assert compiled.owns(typed.features)
        assert _same(as_event(typed), as_event(general))
        assert dict(typed["features"]) == general["features"]


def test_a_decoder_tries_its_schemas_then_the_general_decoder() -> None:
    decoder = FastDecoder()
    first = decoder.compile(["x", "y"], [("c", str), ("b", bool)])
    other = decoder.compile(["amount"], [])
    assert first is not None and other is not None
    assert decoder.compile(["amount"], []) is other  # compiled once
    lines = [
        orjson.dumps({**BASE, "features": {"x": 1, "y": None, "c": "DE", "b": True}}),
        orjson.dumps({**BASE, "features": {"amount": 2.5}}),
        orjson.dumps({**BASE, "features": {"amount": 2.5, "new": 1}}),
        b'{"broken": ',
    ]
    got = decoder.lines(lines)

    def owner(g: Any) -> str | None:
        if g is None:
            return None
        return next((n for n, s in (("first", first), ("other", other)) if s.owns(g.features)), "")

    assert [owner(g) for g in got] == ["first", "other", "", None]
    assert got[2] is not None and type(got[2].features) is dict
    envelope = b'{"events": [' + lines[0] + b"," + lines[0] + b"]}"
    assert [owner(e) for e in decoder.message(envelope) or []] == ["first"] * 2
    mixed = b'{"events": [' + lines[0] + b"," + lines[1] + b"]}"
    assert [type(e).__name__ for e in decoder.message(mixed) or []] == ["FastPrediction"] * 2


def test_messages_decodes_a_batch_of_values_as_message_does_one_by_one() -> None:
    decoder = FastDecoder()
    assert decoder.compile(["amount"], []) is not None
    typed = orjson.dumps({**BASE, "features": {"amount": 2.5}})
    general = orjson.dumps({**BASE, "features": {"amount": 2.5, "new": 1}})
    millis = orjson.dumps({**BASE, "timestamp": 1767225600000, "features": {"amount": 1.0}})
    envelope = b'{"events": [' + typed + b"," + general + b"]}"
    limit = len(envelope) + 10
    values = [
        typed,
        general,
        millis,
        envelope,
        b'{"events": [' + typed + b", 7]}",  # pydantic decides
        b'{"broken": ',
        b'{"event_id": "e", "label": 1}',  # a label: pydantic decides
        typed + b" " * limit,  # over max_bytes
    ]
    got = decoder.messages(values, max_bytes=limit)
    one_by_one = [decoder.message(v) if len(v) <= limit else None for v in values]
    assert [None if g is None else [as_event(e) for e in g] for g in got] == [
        None if g is None else [as_event(e) for e in g] for g in one_by_one
    ]
    assert [None if g is None else len(g) for g in got] == [1, 1, 1, 2, None, None, None, None]
    assert got[2] is not None and got[2][0]["timestamp"] == datetime.fromisoformat(
        "2026-01-01T00:00:00+00:00"
    )


def _columns_equal(a: Any, b: Any) -> None:
    assert a.n == b.n and a.unexpected == b.unexpected
    for block in ("numeric", "categorical"):
        x, y = getattr(a, block), getattr(b, block)
        assert x.names == y.names
        for part in ("null", "absent", "wrong_type", *(("nan_inf",) if block == "numeric" else ())):
            np.testing.assert_array_equal(getattr(x, part), getattr(y, part), err_msg=part)
    np.testing.assert_array_equal(a.numeric.values, b.numeric.values)
    for u, v in zip(a.categorical.codes, b.categorical.codes, strict=True):
        np.testing.assert_array_equal(u, v)


def test_windows_of_compiled_events_give_the_columns_of_the_general_path(tmp_path: Path) -> None:
    """The stream's compiled schema and ``checked_columns`` see a window as the feature dicts
    and the general column code do: values, nulls and category codes."""
    path = tmp_path / "ev.jsonl"
    generate("missing-spike", 30_000, 3).write(path)
    lines = path.read_bytes().splitlines()
    pipeline = Pipeline()
    pipeline.process_lines(lines[:6_000])
    (stream,) = pipeline.streams.values()
    det, schema = stream.detector, stream.schema
    assert det is not None and schema is not None
    compared = nulls = 0
    for k in range(6_000, len(lines), 1_000):
        typed = pipeline.decoder.lines(lines[k : k + 1_000])
        if not all(isinstance(e, FastPrediction) and schema.owns(e.features) for e in typed):
            continue
        general = [as_event(e) for e in typed if e is not None]
        fast_cols, *fast_rest = window_inputs(det, typed, schema)
        cols, *rest = window_inputs(det, general)
        _columns_equal(fast_cols, cols)
        for u, v in zip(fast_rest, rest, strict=True):
            np.testing.assert_array_equal(u, v)
        compared += 1
        nulls += int(fast_cols.numeric.null.sum())
    assert compared >= 20 and nulls > 0, (compared, nulls)
    # One event without a feature: the window mixes structs and dicts and takes the general path.
    mixed: list[Any] = list(typed)
    mixed[3] = as_event(mixed[3])
    del mixed[3]["features"][det.numeric_names[0]]
    plain = [as_event(e) for e in mixed]
    mixed_cols, *_ = window_inputs(det, mixed, schema)
    _columns_equal(mixed_cols, window_inputs(det, plain)[0])
    assert mixed_cols.numeric.absent[0] == 1


def test_a_closed_vocabulary_returns_the_reference_strings_and_leaves_others() -> None:
    schema = compile_schema([], [("c", Literal["DE", "FR"])])
    raw = orjson.dumps({**BASE, "features": {"c": "DE"}})
    one, two = schema.decode_one(raw), schema.decode_one(raw)
    assert one is not None and two is not None
    assert one["features"]["c"] == "DE" and one["features"]["c"] is two["features"]["c"]
    decoder = FastDecoder()
    decoder.compile([], [("c", Literal["DE", "FR"])])
    (us,) = decoder.lines([orjson.dumps({**BASE, "features": {"c": "US"}})])
    assert us is not None and us["features"] == {"c": "US"}  # the general decoder's dict
