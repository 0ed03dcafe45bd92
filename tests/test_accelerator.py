"""The accelerator seam (``monitor.accelerator``): the C extension and its pure-Python twin side
by side, on the same inputs, must give the same answers, to the bit.

Differential, with both implementations in one process (``tests.accel_impls``): ``scan`` and
``Parser.parse`` over the fuzz corpus (``tests/fuzz/corpus``), seeded mutations of it and the
output of every ``simulate`` scenario; ``Parser.parse`` over generated objects and schemas
(closed vocabularies, bools, a feature named twice, names to escape); ``epochs``, ``gather``
and ``attach`` at their bounds; the exceptions of every function on arguments of the wrong
kind. Then the seam itself: the ``accel`` fixture reaches every importer, and the package works
where the extension cannot be imported (a replay in a process that has none).
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import types
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import accelerator
from monitor.cli import main
from monitor.scenarios.simulate import SCENARIOS, generate
from tests.accel_impls import NAMES, NATIVE, PYTHON, SKIP, Impl, using
from tests.fuzz.make_corpus import CORPUS
from tests.fuzz.oracle import MIXED_SCHEMA, SIM_SCHEMA, XC_SCHEMA
from tests.fuzz.replay import byte_mutation

Schema = tuple[tuple[str, ...], tuple[str, ...], tuple[Any, ...]]


def _kinds(schema: tuple[tuple[str, ...], list[tuple[str, Any]]]) -> Schema:
    """A FeatureSchema's features as Parser takes them (as compile_schema makes the kinds)."""
    numeric, categorical = schema
    kinds: list[Any] = []
    for _, kind in categorical:
        if kind is str:
            kinds.append(None)
        elif kind is bool:
            kinds.append(bool)
        else:
            assert get_origin(kind) is Literal
            kinds.append(tuple(get_args(kind)))
    return tuple(numeric), tuple(f for f, _ in categorical), tuple(kinds)


SCHEMAS: dict[str, Schema] = {
    "sim": _kinds(SIM_SCHEMA),
    "xc": _kinds(XC_SCHEMA),
    "mixed": _kinds(MIXED_SCHEMA),
    "empty": ((), (), ()),
    # A feature named twice: the C parser matches a key by position first (the replica).
    "x-twice": (("x", "x"), ("c",), (None,)),
    "x-both": (("x",), ("x", "c"), (None, ("DE", "x"))),
    # Names with something to escape in JSON, and one outside ASCII.
    "escaped": (('a"b', "t\\u"), ("é", "\x01"), (None, bool)),
}
LIMITS = (0, 1, 40, 1 << 20)
DEPTHS = (0, 1, 2, 3, 200, 1 << 30)


def outcome(call: Any, *args: Any) -> Any:
    """What a call gives, or the type of the exception it raises."""
    try:
        return call(*args)
    except Exception as exc:
        return type(exc)


def _replica(*schema: Any) -> Any:
    """The twin's parser with the replica of the C loop for any schema (it takes it only for
    a schema that names a feature twice)."""
    parser = PYTHON.Parser(*schema)
    parser._unique = False
    return parser


#: The twin with its replica of the C loop.
REPLICA = PYTHON._replace(name="replica", Parser=_replica)


def parsed(impl: Impl, schema: Schema, raws: list[Any]) -> Any:
    """``Parser.parse`` as both must agree on it: the refused indexes; the taken rows' float64
    bytes and (type, value) of their categories (a refused row holds nothing usable)."""
    got = outcome(impl.Parser(*schema).parse, raws)
    if isinstance(got, type):
        return got
    values, columns, failed = got
    f = len(schema[0])
    taken = [r for r in range(len(raws)) if r not in set(failed)]
    rows = [bytes(values[r * 8 * f : (r + 1) * 8 * f]) for r in taken]
    cats = [[(type(col[r]), col[r]) for col in columns] for r in taken]
    assert len(values) == 8 * f * len(raws) and all(len(c) == len(raws) for c in columns)
    return failed, rows, cats


def objects(data: bytes) -> list[bytes]:
    """Candidate features objects in an input: itself and the spans between its braces."""
    out = [data]
    ends = [i for i, b in enumerate(data) if b == ord("}")]
    for i in [i for i, b in enumerate(data) if b == ord("{")][:8]:
        after = [j for j in ends if j > i]
        out += [data[i : j + 1] for j in {*after[:2], *after[-1:]}]
    return out


def assert_same(inputs: list[bytes]) -> None:
    """Both implementations scan and parse every input alike."""
    for data in inputs:
        for text in (data, b'{"events":[' + data + b"]}", b'{"events": [{}, ' + data + b"]}"):
            for limit in LIMITS:
                for depth in DEPTHS:
                    c = outcome(NATIVE.scan, text, limit, depth)
                    assert c == outcome(PYTHON.scan, text, limit, depth), (text, limit, depth)
        raws = objects(data)
        for name, schema in SCHEMAS.items():
            assert parsed(NATIVE, schema, raws) == parsed(PYTHON, schema, raws), (name, data)


CORPUS_FILES = sorted(p for p in CORPUS.iterdir() if p.is_file())


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_the_fuzz_corpus_is_scanned_and_parsed_alike(path: Path) -> None:
    assert_same([path.read_bytes()])


def test_mutations_of_the_corpus_are_scanned_and_parsed_alike() -> None:
    rng = random.Random(15)
    pool = [p.read_bytes() for p in CORPUS_FILES]
    mutate = byte_mutation(rng, pool)
    assert_same([mutate(rng.choice(pool), 4096) for _ in range(300)])


class _Features(msgspec.Struct):
    features: msgspec.Raw = msgspec.Raw(b"null")


def features_of(line: bytes) -> Any:
    """The raw features object of a simulated line (as msgspec leaves it, or by its braces
    when msgspec refuses the line: corrupt-values writes NaN tokens)."""
    try:
        return msgspec.json.decode(line, type=_Features).features
    except msgspec.DecodeError:
        start = line.index(b"{", line.index(b'"features"'))
        return line[start : line.index(b"}", start) + 1]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_simulated_streams_are_scanned_and_parsed_alike(scenario: str) -> None:
    lines = [line.rstrip(b"\n") for line in generate(scenario, 1500, 3).lines()]
    envelope = b'{"events": [' + b", ".join(lines[:200]) + b"]}"
    for limit in (0, 500, 1 << 20):
        assert NATIVE.scan(envelope, limit, 200) == PYTHON.scan(envelope, limit, 200)
    assert [NATIVE.scan(x, 1 << 20, 200) for x in lines] == [
        PYTHON.scan(x, 1 << 20, 200) for x in lines
    ]
    raws = list(map(features_of, lines))
    for schema in (SCHEMAS["sim"], (SCHEMAS["sim"][0], SCHEMAS["sim"][1], (None,) * 5)):
        c, py = parsed(NATIVE, schema, raws), parsed(PYTHON, schema, raws)
        assert c == py
        assert len(c[1]) > 1000 or scenario == "schema-change", "most rows are taken"


# -- generated objects ---------------------------------------------------------------------------

KEYS = ["x", "c", "b", "d", "y", "\\u0078", 'a\\"b', "t\\\\u", "\\u00e9", "é", "\\u0001", "z"]
NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(
        ["-0", "-0.0", "0e5", "1e400", "-1e400", "-1e-400", "1.", "01", "NaN", "1E+2", "-"]
    ),
    st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
)
STRINGS = st.sampled_from(
    ['"DE"', '"FR"', '"x"', '""', '"\\u00e9"', '"é"', '"\\ud83d\\ude00"', '"\\ud800"', '"\\x"']
)
VALUES = st.one_of(NUMBERS, STRINGS, st.sampled_from(["null", "true", "false", "[]", "{}", "nul"]))
SPACE = st.sampled_from(["", " ", "\n\t", "\r"])


def _value_of(kind: Any) -> st.SearchStrategy[str]:
    """JSON values for a feature of this kind (``"n"``: numeric), now and then of another."""
    if kind == "n":
        own = NUMBERS
    elif kind is bool:
        own = st.sampled_from(["true", "false"])
    elif isinstance(kind, tuple):
        own = st.sampled_from(kind).map(json.dumps)
    else:
        own = st.one_of(
            STRINGS, st.text(max_size=3).map(lambda t: json.dumps(t, ensure_ascii=False))
        )
    return st.one_of(own, own, own, st.just("null"), VALUES)


@st.composite
def texts(draw: st.DrawFn, schema: Schema) -> bytes:
    """A features object for ``schema``: mostly its features once each (keys in any order and
    spelling), now and then one missing, repeated or foreign, or the text cut short."""
    numeric, categorical, kinds = schema
    features = [*((n, "n") for n in numeric), *zip(categorical, kinds, strict=True)]
    chosen = draw(st.permutations(features))
    if chosen and draw(st.integers(0, 4)) == 0:
        chosen = draw(st.lists(st.sampled_from(chosen), max_size=len(chosen) + 1))
    pairs = [
        (json.dumps(name, ensure_ascii=draw(st.booleans())), draw(_value_of(kind)))
        for name, kind in chosen
    ]
    if draw(st.integers(0, 5)) == 0:
        pairs.insert(draw(st.integers(0, len(pairs))), (f'"{draw(st.sampled_from(KEYS))}"', "1"))
    ws = draw(SPACE)
    body = f",{ws}".join(f"{ws}{k}{ws}:{ws}{v}" for k, v in pairs)
    text = f"{ws}{{{body}{ws}}}{ws}".encode()
    return text[: draw(st.integers(0, len(text)))] if draw(st.integers(0, 9)) == 0 else text


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(SCHEMAS)), st.data())
def test_generated_objects_are_parsed_alike(name: str, data: st.DataObject) -> None:
    schema = SCHEMAS[name]
    raws = data.draw(st.lists(texts(schema), min_size=1, max_size=6))
    c = parsed(NATIVE, schema, raws)
    assert c == parsed(PYTHON, schema, raws) == parsed(REPLICA, schema, raws)


def test_the_replica_of_the_c_loop_agrees_on_every_schema() -> None:
    """The twin parses a schema that names a feature twice with a replica of the C parser's
    loop; run on every schema (over the corpus and its mutations), it must agree with C."""
    rng = random.Random(7)
    pool = [p.read_bytes() for p in CORPUS_FILES]
    mutate = byte_mutation(rng, pool)
    for data in pool + [mutate(rng.choice(pool), 4096) for _ in range(200)]:
        raws = objects(data)
        for name, schema in SCHEMAS.items():
            assert parsed(NATIVE, schema, raws) == parsed(REPLICA, schema, raws), (name, data)


def test_a_feature_named_twice_is_matched_as_the_c_parser_matches_it() -> None:
    """By position first on the key's raw text (the next feature in schema order), else the
    first feature of that name; an escaped key never matches by position."""
    schema: Schema = (("x", "x"), (), ())
    raws = [b'{"x": 1, "x": -0}', b'{"\\u0078": 1, "x": 2}', b'{"x": 1, "\\u0078": 2}', b'{"x": 1}']
    for impl in (NATIVE, PYTHON):
        values, _, failed = impl.Parser(*schema).parse(raws)
        assert failed == [2, 3]
        assert bytes(values[:32]) == struct.pack("4d", 1.0, 0.0, 1.0, 2.0)  # -0 is the int 0


SCAN_TOKENS = [
    *(b"{", b"}", b"[", b"]", b",", b":", b" ", b"\n", b"\t", b'"', b"\\", b"1", b"null"),
    *(b'"events"', b'"ev\\u0065nts"', b'"x"', b'"a b"', b'"\\"', b'"\x01"', b"\x01", b"\x7f"),
    *(b"\xc3\xa9", b"\xc3", b"\xa9", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"),
    *(b"\xf0\x9f\x98\x80", b"\xef\xbb\xbf", b"\xc1\x81", b"\xff"),
]
PREFIXES = [b'{"events":[', b'{ "events" : [ ', b'{"a":1,"events":[', b'{"events":{', b"[", b""]
PREFIXES += [b'{"x":[', b'{"events": "x", [', b'{"events":[1],"events":[', b'{"e\\u0076ents":[']


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from(PREFIXES),
    st.lists(st.lists(st.sampled_from(SCAN_TOKENS), max_size=6), max_size=5),
    st.sampled_from([b"]}", b"]", b"", b"}]}", b"] }  "]),
    st.integers(0, 24),
    st.integers(0, 5),
)
def test_generated_texts_are_scanned_alike(
    prefix: bytes, elements: list[list[bytes]], close: bytes, limit: int, depth: int
) -> None:
    """Envelopes of small elements, with what a scan judges: strings of every kind (escaped,
    not UTF-8, with a control character, unterminated), keys "events" spelt several ways,
    elements around the limit, nesting around the depth; and the same with no envelope."""
    body = b",".join(b"".join(e) for e in elements)
    for text in (prefix + body + close, body):
        assert outcome(NATIVE.scan, text, limit, depth) == outcome(PYTHON.scan, text, limit, depth)


# -- the rest of the interface ---------------------------------------------------------------------

UTC_EDGES = [
    datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=s * ((1 << 53) - d))
    for s in (-1, 1)
    for d in (0, 1)
]


@pytest.mark.parametrize(
    "stamps",
    [
        [datetime(2026, 1, 1, 0, 0, 0, 10_000, tzinfo=UTC), datetime(1700, 3, 1, 1, 2, 3, 7, UTC)],
        UTC_EDGES[1:3],
        UTC_EDGES[1::2],
        UTC_EDGES[:1],
        UTC_EDGES[3:],
        [datetime(2026, 1, 1)],
        [datetime(2026, 1, 1, tzinfo=timezone(timedelta(0), "Z"))],
        [datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1)))],
        [type("Sub", (datetime,), {})(2026, 1, 1, tzinfo=UTC)],
        [datetime(9999, 12, 31, tzinfo=UTC)],
        [],
        ["2026-01-01T00:00:00Z"],
    ],
)
def test_epochs_agree_to_the_bit(stamps: list[Any]) -> None:
    assert NATIVE.epochs(stamps) == PYTHON.epochs(stamps)
    assert NATIVE.epochs(stamps) is None or len(NATIVE.epochs(stamps) or b"") == 8 * len(stamps)


def _gather_calls(impl: Impl) -> list[tuple[Any, ...]]:
    """gather's arguments at and beyond its bounds, with rows of ``impl``."""
    layout = LAYOUT
    row = impl.FeatureRow
    block = (GATHERED, (["a", None], ["b", True]), layout)
    return [
        ([row(block, 1), row(block, 0), row(block, 1)], layout, 1, 2),
        ([row(block, 2)], layout, 1, 2),  # 3 rows of values, 2 of categories
        ([row(block, -1)], layout, 1, 2),
        ([row(block, 0)], layout, 4, 2),  # 25 bytes hold no row of 4 values
        ([row(block, 0)], object(), 1, 2),
        ([row(block, 0)], layout, 1, 1),
        ([row(block, 0)], layout, -1, 2),
        ([row(block, 0)], layout, 2**62, 2),
        ([row(block, 0)], layout, 2**63, 2),
        ([row(block, 0)], layout, 1.0, 2),
        ([row((bytes(GATHERED), block[1], layout), 0)], layout, 1, 2),
        ([row((GATHERED, (("a",), ["b"]), layout), 0)], layout, 1, 2),
        ([row(list(block), 0)], layout, 1, 2),
        ([], layout, 5, 0),
        ([], layout, 2**61, 0),  # no row, but more values than a size can count
        ([row(block, 0), "not a row"], layout, 1, 2),
        ((row(block, 0),), layout, 1, 2),
    ]


LAYOUT = object()
NAN = b"\x01\x00\x00\x00\x00\x00\xf8\x7f"  # a NaN with a payload: copied, never made
GATHERED = bytearray(NAN + bytes(range(8)) + bytes(8) + b"\x07")


def test_gather_agrees_at_its_bounds() -> None:
    results = [
        [outcome(impl.gather, *args) for args in _gather_calls(impl)] for impl in (NATIVE, PYTHON)
    ]
    assert results[0] == results[1]
    assert results[0][0] == (
        bytearray(bytes(range(8)) + NAN + bytes(range(8))),
        ([None, "a", None], [True, "b", True]),
    )
    assert results[0][1:4] == [None, None, None]


def test_attach_and_rows_agree() -> None:
    class Event:
        def __init__(self, features: Any) -> None:
            self.features = features

    for impl in (NATIVE, PYTHON):
        block = (bytearray(), (), None)
        events = [Event(0), Event(1)]
        assert impl.attach(events, block, impl.FeatureRow, "features", True) is True
        assert [(type(e.features), e.features.index) for e in events] == [
            (impl.FeatureRow, 0),
            (impl.FeatureRow, 1),
        ]
        assert events[0].features.block is block
        assert impl.attach([Event(1)], block, impl.FeatureRow, "features", True) is False
        assert impl.attach([Event(True)], block, impl.FeatureRow, "features", True) is False
        sub = type("Sub", (impl.FeatureRow,), {})
        assert (
            impl.attach(events, block, sub, "features") is True and type(events[0].features) is sub
        )
        for bad in [
            (events, block, object, "features"),
            (tuple(events), block, impl.FeatureRow, "features"),
            (events, block, impl.FeatureRow, b"features"),
            (events, block, impl.FeatureRow),
            ([Event(0)], block, impl.FeatureRow, "missing", True),
        ]:
            assert outcome(impl.attach, *bad) in (TypeError, AttributeError), bad
        row = impl.FeatureRow(block, 3)
        assert (row.block, row.index) == (block, 3)
        assert impl.FeatureRow(block=block, index=True).index == 1
        for attr in ("block", "index"):
            with pytest.raises(AttributeError):
                setattr(row, attr, None)
        assert outcome(impl.FeatureRow, block, 1.5) is TypeError
        assert outcome(impl.FeatureRow, block, 2**63) is OverflowError


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("scan", ("text", 1, 1)),
        ("scan", (b"{}", 1.0, 1)),
        ("scan", (b"{}", 1, 2**31)),
        ("scan", (b"{}", 2**63, 1)),
        ("scan", (bytearray(b'{"events": [1]}'), 0, 5)),
        ("scan", (memoryview(b'{"events": [1]}'), 0, 5)),
        ("scan", (b"{}",)),
        ("epochs", ((datetime(2026, 1, 1, tzinfo=UTC),),)),
        ("parse", ("not a list",)),
        ("parse", ([b"{}", "{}", 7, None, bytearray(b"{}"), memoryview(b"{}")],)),
        ("Parser", ((), (), ())),
        ("Parser", (["x"], (), ())),
        ("Parser", ((1,), (), ())),
        ("Parser", ((), ("c",), ())),
        ("Parser", ((), ("c",), (str,))),
        ("Parser", ((), ("c",), (("DE", 3, "\ud800"),))),
        ("Parser", (("\ud800",), (), ())),
    ],
)
def test_both_refuse_and_raise_alike(name: str, args: tuple[Any, ...]) -> None:
    def call(impl: Impl) -> Any:
        if name == "parse":
            if type(args[0]) is list:
                return parsed(impl, ((), (), ()), args[0])
            return outcome(impl.Parser((), (), ()).parse, *args)
        result = outcome(getattr(impl, name), *args)
        return "made" if isinstance(result, impl.Parser) else result

    assert call(NATIVE) == call(PYTHON)


def test_a_parser_is_set_up_once() -> None:
    for impl in (NATIVE, PYTHON):
        parser = impl.Parser(("x",), (), ())
        assert outcome(parser.__init__, ("x",), (), ()) is RuntimeError
        assert outcome(impl.Parser.__new__(impl.Parser).parse, []) is RuntimeError


# -- the seam --------------------------------------------------------------------------------------


def test_the_fixture_reaches_every_importer(accel: Impl) -> None:
    """Every module global that is an accelerator object is the one of the implementation in
    use, and what the decoder makes is of it."""
    import monitor.fastdecode

    theirs = {id(getattr(impl, n)): n for impl in (NATIVE, PYTHON) for n in NAMES}
    holders = set()
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith(("monitor", "tests")) and not module_name.startswith(SKIP):
            for value in list(vars(module).values()):
                name = theirs.get(id(value))
                if name is not None:
                    assert value is getattr(accel, name), (module_name, name)
                    holders.add(module_name)
    assert {"monitor.accelerator", "monitor.fastdecode", "monitor.events"} <= holders
    assert accel.name == accelerator.IMPLEMENTATION
    schema = monitor.fastdecode.compile_schema(["x"], [("c", str)])
    event = schema.decode_one(
        b'{"event_id": "e", "model": "m", "model_version": "v", "timestamp": 0,'
        b' "features": {"x": 1, "c": "DE"}, "prediction": 1}'
    )
    assert event is not None and type(event["features"]) is accel.FeatureRow
    assert dict(event["features"]) == {"x": 1.0, "c": "DE"}


def test_a_module_imported_during_a_swap_gets_the_native_objects_back() -> None:
    late = types.ModuleType("tests.late_importer")
    sys.modules[late.__name__] = late
    try:
        with using(PYTHON):
            vars(late)["scan"] = accelerator.scan  # as `from monitor.accelerator import scan` now
            assert vars(late)["scan"] is PYTHON.scan
        assert vars(late)["scan"] is NATIVE.scan and accelerator.scan is NATIVE.scan
    finally:
        del sys.modules[late.__name__]


def test_the_package_works_where_the_extension_cannot_be_imported(tmp_path: Path) -> None:
    """A process where ``import monitor._featcols`` fails (as where no compiler built it)
    takes the twin, and its replay decides the alerts this one decides."""
    events, alerts = tmp_path / "events.jsonl", tmp_path / "alerts.jsonl"
    simulate = ["simulate", "--scenario", "missing-spike", "--events", "12000", "--seed", "5"]
    assert main([*simulate, "--out", str(events)]) == 0
    assert main(["replay", str(events), "--alerts", str(alerts), "--no-progress"]) == 0
    script = (
        "import sys\n"
        "sys.modules['monitor._featcols'] = None  # import monitor._featcols: ImportError\n"
        "from monitor import accelerator\n"
        "from monitor.cli import main\n"
        "assert accelerator.IMPLEMENTATION == 'python', accelerator.IMPLEMENTATION\n"
        f"sys.exit(main(['replay', {str(events)!r}, '--alerts', {str(tmp_path / 'twin.jsonl')!r},"
        " '--no-progress']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DRIFTWATCH_ACCEL"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"DataQuality" in done.stdout
    mine = [json.loads(x) for x in alerts.read_text().splitlines()]
    assert (
        mine and [json.loads(x) for x in (tmp_path / "twin.jsonl").read_text().splitlines()] == mine
    )
