"""The feature parser (``monitor/_featcols.c``, and its Python twin) against Python's own JSON
and float parsing: what it takes it reads exactly as ``json.loads`` does, and it refuses the
rest."""

from __future__ import annotations

import json
import struct
from array import array
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.accelerator import FeatureRow, Parser, gather
from monitor.epochs import epoch_array, latest
from monitor.fastdecode import (
    FastDecoder,
    FastRow,
    FeatureSchema,
    as_event,
    compile_schema,
    row_dicts,
)

# Every test runs on the C extension and on its pure-Python twin (tests/accel_impls.py).
pytestmark = pytest.mark.usefixtures("accel")

BASE = b'{"event_id": "e", "model": "m", "model_version": "v", "timestamp": 0, "prediction": 1, '


def _parse(
    objs: list[bytes],
    numeric: tuple[str, ...],
    categorical: tuple[str, ...] = (),
    kinds: Any = None,
) -> Any:
    kinds = kinds if kinds is not None else (None,) * len(categorical)
    values, columns, failed = Parser(numeric, categorical, kinds).parse(objs)
    return failed[0] if failed else (values, columns)


def _number(text: str) -> float | None:
    """The parser's reading of ``text`` as the value of a numeric feature (None: refused)."""
    got = _parse([b'{"x": ' + text.encode() + b"}"], ("x",))
    if type(got) is int:
        return None
    (value,) = struct.unpack("d", got[0])
    return float(value)


numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.builds(
        lambda sign, whole, frac, exp: f"{sign}{whole}{frac}{exp}",
        st.sampled_from(["", "-"]),
        st.one_of(st.just("0"), st.from_regex(r"[1-9][0-9]{0,24}", fullmatch=True)),
        st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,25}", fullmatch=True)),
        st.one_of(st.just(""), st.from_regex(r"[eE][+-]?[0-9]{1,3}", fullmatch=True)),
    ),
)


@settings(max_examples=2000, deadline=None)
@given(numbers)
def test_numbers_are_read_exactly_as_python_reads_them(text: str) -> None:
    """Correct rounding: the fast path (exact mantissa and power of ten) and dtoa agree with
    ``float()`` to the bit; a number beyond float range is refused."""
    expected = float(json.loads(text))  # json.loads checks the grammar; float() rounds
    got = _number(text)
    if np.isfinite(expected):
        assert got is not None and struct.pack("d", got) == struct.pack("d", expected), text
    else:
        assert got is None, text


@pytest.mark.parametrize(
    "text", ["01", "1.", ".5", "+1", "1e", "1e+", "-", "--1", "NaN", "Infinity", "0x10", "1.5e400"]
)
def test_what_json_or_a_float_does_not_allow_is_refused(text: str) -> None:
    assert _number(text) is None


def test_keys_in_any_order_and_whitespace_anywhere() -> None:
    objs = [
        b'{"a": 1, "b": "x"}',
        b'{"b":"y","a":2.5}',
        b' \n{ "a" :\t-0 ,\r\n "b" : null } ',
        b'{"\\u0061": null, "b": "\\u00e9\\ud83d\\ude00\\n\\"q\\""}',
    ]
    got = _parse(objs, ("a",), ("b",))
    assert type(got) is tuple
    values = np.frombuffer(got[0], np.float64)
    assert values[:3].tolist() == [1.0, 2.5, 0.0] and np.isnan(values[3])
    assert np.copysign(1, values[2]) == 1.0  # -0 is the integer 0, as json.loads reads it
    assert got[1] == (["x", "y", None, 'é😀\n"q"'],)


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        (b'{"a": 1}', "a feature absent"),
        (b'{"a": 1, "b": "x", "c": 2}', "a feature outside the schema"),
        (b'{"a": 1, "a": 2, "b": "x"}', "a feature twice"),
        (b'{"a": "1", "b": "x"}', "a string for a numeric feature"),
        (b'{"a": true, "b": "x"}', "a bool for a numeric feature"),
        (b'{"a": 1, "b": 3}', "a number for a string feature"),
        (b'{"a": 1, "b": "\x01"}', "an unescaped control character"),
        (b'{"a": 1, "b": "\\ud800"}', "a lone surrogate"),
        (b'{"a": 1, "b": "\\x41"}', "an escape JSON does not have"),
        (b'{"a": 1, "b": "\xff"}', "bytes that are not UTF-8"),
        (b'{"a": 1, "b": "x",}', "a trailing comma"),
        (b'{"a": 1, "b": "x"} 7', "something after the object"),
        (b'{"a": 1, "b": "x"', "an unterminated object"),
        (b'{"a": 1, "b": "x}', "an unterminated string"),
        (b"[1, 2]", "not an object"),
    ],
)
def test_anything_else_is_refused_with_its_index(obj: bytes, why: str) -> None:
    assert _parse([b'{"a": 0, "b": "ok"}', obj], ("a",), ("b",)) == 1, why


def test_bool_kinds_and_closed_sets() -> None:
    members = ("DE", "FR")
    got = _parse(
        [b'{"flag": true, "c": "FR"}', b'{"flag": false, "c": null}'],
        (),
        ("flag", "c"),
        (bool, members),
    )
    assert got[1] == ([True, False], ["FR", None])
    assert got[1][1][0] is members[1]  # the set's own string object
    assert _parse([b'{"flag": 1, "c": "FR"}'], (), ("flag", "c"), (bool, members)) == 0
    assert _parse([b'{"flag": true, "c": "US"}'], (), ("flag", "c"), (bool, members)) == 0


def test_a_repeated_category_is_the_same_string_object() -> None:
    parser = Parser((), ("c",), (None,))
    first = parser.parse([b'{"c": "mobile"}', b'{"c": "mobile"}'])
    again = parser.parse([b'{"c": "mobile"}'])
    assert first[2] == again[2] == []
    a, b = first[1][0]
    assert a == "mobile" and a is b and again[1][0][0] is a


def test_rows_gather_into_feature_columns_across_blocks() -> None:
    schema = compile_schema(["x", "y"], [("c", str)])
    one = b'{"events": [' + BASE + b'"features": {"x": 1, "y": null, "c": "DE"}}]}'
    two = (
        b'{"events": ['
        + BASE
        + b'"features": {"x": 2, "y": 3, "c": null}}, '
        + BASE
        + b'"features": {"c": "FR", "y": 4, "x": 5}}]}'
    )
    a, b = schema.decode_many(one), schema.decode_many(two)
    assert a is not None and b is not None
    rows: list[Any] = [b[1].features, a[0].features, b[0].features]
    got = schema.columns(rows)
    assert got is not None
    values, (cats,) = got
    np.testing.assert_array_equal(values, [[5.0, 1.0, 2.0], [4.0, np.nan, 3.0]])
    assert cats == ["FR", "DE", None]
    other = compile_schema(["x", "y"], [("c", str)])
    assert other.columns(rows) is None  # rows of another schema
    assert gather([*rows, FeatureRow(None, 0)], schema.layout, 2, 1) is None
    assert row_dicts(rows) == [
        {"x": 5.0, "y": 4.0, "c": "FR"},
        {"x": 1.0, "y": None, "c": "DE"},
        {"x": 2.0, "y": 3.0, "c": None},
    ]


def test_a_row_reads_like_the_features_dict() -> None:
    schema = compile_schema(["x", "y"], [("c", str)])
    raw = BASE + b'"features": {"x": 1.5, "y": null, "c": "DE"}}'
    ev = schema.decode_one(raw)
    assert ev is not None
    row: Any = ev["features"]
    assert isinstance(row, FastRow)
    expected = {"x": 1.5, "y": None, "c": "DE"}
    assert dict(row) == expected and row == expected
    assert row["x"] == 1.5 and row.get("y", 0) is None and row.get("z", 0) == 0
    assert "c" in row and "z" not in row and 3 not in row
    assert list(row) == ["x", "y", "c"] and len(row) == 3
    assert row.items() == list(expected.items()) and row.values() == list(expected.values())
    with pytest.raises(KeyError):
        row["z"]
    assert as_event(ev)["features"] == expected
    assert msgspec.json.decode(raw)["features"] == {"x": 1.5, "y": None, "c": "DE"}
    assert "FastRow" in repr(row)


def split() -> FeatureSchema:
    """The issue's schema (numeric x, categorical c), compiled on the implementation in use."""
    return compile_schema(["x"], [("c", str)])


EVENT = BASE.decode() + '"features": {"x": 1, "c": "DE"}}'


def _envelope(*events: str) -> bytes:
    return ('{"events": [' + ", ".join(events) + "]}").encode()


def test_each_event_takes_its_own_features_and_nothing_else() -> None:
    tricky = (
        '{"event_id": "features", "model": "m", "model_version": "v", "timestamp": 0, '
        '"prediction": {"score": 0.5, "label": "a", "probabilities": {"features": 1.0}}, '
        '"versions": {"features": "fs-7", "code": "x\\"features\\": {"}, '
        '"features" : {"c": "FR", "x": null}, "latency_ms": 3}'
    )
    raw = _envelope(EVENT, tricky).replace(b", ", b" ,\n ")
    events = split().decode_many(raw)
    assert events is not None
    assert [as_event(e) for e in events] == [
        json.loads(EVENT),
        {**json.loads(tricky), "features": {"x": None, "c": "FR"}},
    ]
    rows = [e.features for e in events]
    assert isinstance(rows[0], FastRow) and isinstance(rows[1], FastRow)
    block = rows[0].block
    assert rows[1].block is block  # one block for the envelope
    assert np.frombuffer(block[0]).tolist()[0] == 1.0 and np.isnan(np.frombuffer(block[0])[1])
    assert block[1] == (["DE", "FR"],)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (_envelope(BASE.decode() + '"features2": {}}'), "an event without features"),
        (_envelope(EVENT[:-1] + ', "features": {"x": 1, "c": 2}}'), "features twice, last bad"),
        (_envelope(EVENT.replace('"x": 1', '"x": "1"')), "features of another schema"),
        (_envelope(EVENT) + b" 7", "something after the envelope"),
        (_envelope(EVENT)[:-1], "an unterminated envelope"),
        (b'{"batch": [' + EVENT.encode() + b"]}", "not an envelope"),
        (_envelope(EVENT, "7"), "an event that is not an object"),
        (_envelope(BASE.decode() + '"features": 0}'), "a number as the features"),
    ],
)
def test_what_is_not_an_envelope_of_the_schema_is_not_decoded_by_it(raw: bytes, why: str) -> None:
    assert split().decode_many(raw) is None, why


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (EVENT.replace('"features"', '"\\u0066eatures"'), "an escaped features key"),
        (EVENT[:-1] + ', "versions": {"features": "fs-7"}}', "a features key in versions"),
        (EVENT.replace('"model"', '"features": 0, "model"'), "a number dropped for the last"),
    ],
)
def test_features_are_found_by_the_json_structure(event: str, why: str) -> None:
    """msgspec finds each event's features value as pydantic does (the last of a repeated
    key), wherever else the word appears."""
    events = split().decode_many(_envelope(EVENT, event))
    assert events is not None, why
    assert [dict(e.features) for e in events] == [{"x": 1.0, "c": "DE"}] * 2, why


def test_an_empty_envelope_has_no_events() -> None:
    assert split().decode_many(b' {"events" : [ ] } ') == []


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "x": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
                "c": st.one_of(st.none(), st.text(max_size=4)),
            }
        ),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
)
def test_envelopes_decode_as_their_events_do_one_by_one(
    features: list[dict[str, Any]], ascii_only: bool
) -> None:
    lines = [
        json.dumps(
            {**json.loads(BASE + b'"features": {}}'), "features": f}, ensure_ascii=ascii_only
        )
        for f in features
    ]
    schema = split()
    many = schema.decode_many(_envelope(*lines))
    ones = [schema.decode_one(line.encode()) for line in lines]
    assert many is not None and all(o is not None for o in ones)
    assert [as_event(e) for e in many] == [as_event(o) for o in ones if o is not None]


def test_lines_decode_as_they_do_one_by_one_however_many_differ() -> None:
    """A batch of lines is decoded with its features parsed together; lines whose features
    differ go to the other decoders."""
    decoder = FastDecoder()
    decoder.compile(["x"], [("c", str)])
    good = (BASE.decode() + '"features": {"x": 1, "c": "DE"}}').encode()
    other = (BASE.decode() + '"features": {"x": 1, "c": 2}}').encode()
    for misses in (1, 12):
        lines = [good, *[other] * misses, good, b"{", good]
        got = decoder.lines(lines)
        one_by_one = [decoder.prediction(line) for line in lines]
        assert [None if g is None else as_event(g) for g in got] == [
            None if g is None else as_event(g) for g in one_by_one
        ]
        assert [type(g.features).__name__ if g is not None else None for g in got] == [
            "FeatureRow",
            *["dict"] * misses,
            "FeatureRow",
            None,
            "FeatureRow",
        ]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.datetimes(
            min_value=datetime(1700, 1, 1),
            max_value=datetime(2250, 1, 1),
            timezones=st.just(UTC),
        ),
        max_size=20,
    )
)
def test_epoch_seconds_are_those_of_datetime_timestamp(stamps: list[datetime]) -> None:
    got = epoch_array(list(stamps))
    assert isinstance(got, array)
    assert got.tolist() == [t.timestamp() for t in stamps]
    assert latest(stamps) == (max(t.timestamp() for t in stamps) if stamps else None)


@pytest.mark.parametrize(
    "other",
    [
        datetime(2026, 1, 1),  # naive
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        datetime(1, 1, 1, tzinfo=UTC),  # beyond exact float microseconds
        1767225600.0,
        "2026-01-01T00:00:00Z",
    ],
)
def test_anything_but_a_utc_datetime_is_left_to_the_caller(other: Any) -> None:
    stamps = [datetime(2026, 1, 1, tzinfo=UTC), other]
    assert epoch_array(stamps) is stamps and latest(stamps) is None


def test_gather_reads_no_row_it_did_not_make() -> None:
    schema = compile_schema(["x"], [("c", str)])
    layout = schema.layout
    for block in [
        (bytearray(8), (["a"],), layout),  # row 1 is beyond both
        (b"\0" * 16, (["a", "b"],), layout),  # values are not a bytearray
        (bytearray(16), ("ab",), layout),  # a column that is not a list
        (bytearray(16), (["a", "b"], []), layout),  # a column too many
    ]:
        assert gather([FeatureRow(block, 1)], layout, 1, 1) is None
    assert gather([FeatureRow((bytearray(16), (["a", "b"],), layout), -1)], layout, 1, 1) is None
    assert gather([FeatureRow((bytearray(16), (["a", "b"],), layout), 1)], layout, 1, 1) == (
        bytearray(8),
        (["b"],),
    )
