"""A JSON-aware mutator for the fuzzer, next to libFuzzer's byte mutations.

Byte mutations rarely turn a valid event into another *valid-looking* one that differs where the
decoders differ. Half of the mutations here decode the input as JSON, change it where the issue's
defects live (a value swapped for a hostile one, a ``"features"`` object put into another field,
a key repeated with another value, an event wrapped into an envelope or taken out of one, deep
nesting, large strings) and write it back with varied spacing; the other half (and any input
that is not JSON) are libFuzzer's own.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

HOSTILE: list[Any] = [
    None,
    True,
    0,
    1,
    -0.0,
    666,
    2**64,
    1e308,
    253402300800000,
    -62135596800001,
    "",
    "DE",
    "EVIL",
    "\ud800",
    "\u00e9\U0001f600",
    "2026-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    float("nan"),
    float("inf"),
    [],
    {},
    {"x": 666, "c": "EVIL"},
    {"features": {"x": 666, "c": "EVIL"}},
    {"score": float("nan")},
]


#: A placeholder that json_mutator replaces with deeply nested arrays or objects.
DEEP = "\x00deep\x00"


def _nested(rng: random.Random) -> str:
    depth = rng.choice([100, 999, 1000, 1500, 3000])
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "0" + "}" * depth


class _Pairs(list[tuple[str, Any]]):
    """An object written with these (key, value) pairs, repeated keys included."""


def _features_of(body: Any) -> Any:
    """A features object of ``body`` (the first found), else the issue's hostile one."""
    for path in _paths(body):
        if path and path[-1] == "features" and isinstance(_get(body, path), dict):
            return json.loads(json.dumps(_get(body, path)))
    return {"x": 666, "c": "EVIL"}


_FIELDS = frozenset(
    [
        "event_id",
        "model",
        "model_version",
        "timestamp",
        "features",
        "prediction",
        "latency_ms",
        "versions",
        "trace",
        "type",
        "score",
        "label",
        "probabilities",
        "events",
    ]
)


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*at, k))
    elif isinstance(value, list):
        for k, v in enumerate(value):
            out += _paths(v, (*at, k))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    _get(value, path[:-1])[path[-1]] = new
    return value


def _dump(value: Any, rng: random.Random, dup: float) -> str:
    """JSON of ``value`` with random spacing; each object repeats one of its keys (with
    another value) with probability ``dup``."""
    sep = rng.choice([",", ", ", " ,\n"])
    colon = rng.choice([":", ": ", " : "])
    if isinstance(value, dict | _Pairs):
        pairs = list(value.items() if isinstance(value, dict) else value)
        if pairs and rng.random() < dup:
            k, _ = rng.choice(pairs)
            pairs.insert(rng.randrange(len(pairs) + 1), (k, rng.choice(HOSTILE)))
        body = sep.join(json.dumps(k) + colon + _dump(v, rng, dup) for k, v in pairs)
        return "{" + body + "}"
    if isinstance(value, list):
        return "[" + sep.join(_dump(v, rng, dup) for v in value) + "]"
    return json.dumps(value, ensure_ascii=rng.random() < 0.5)


def _structural(body: Any, rng: random.Random) -> Any:
    paths = _paths(body)
    op = rng.randrange(8)
    # Half the time an event's own field (timestamp, prediction, ...) rather than any value.
    fields = [p for p in paths if p and p[-1] in _FIELDS]
    path = rng.choice(fields if fields and rng.random() < 0.5 else paths)
    if op == 0:  # a hostile value anywhere
        return _set(body, path, rng.choice(HOSTILE))
    if op == 1:  # a features object (the event's own, or the issue's) in another object
        target = _get(body, path)
        if isinstance(target, dict):
            target["features"] = rng.choice([_features_of(body), {}, 0, 1])
        return body
    if op == 2:  # deep nesting, written in by json_mutator (as text: deeper than Python's stack)
        return _set(body, path, DEEP)
    if op == 3:  # a large string
        return _set(body, path, "s" * rng.choice([300, 3000]))
    if op == 4:  # into an envelope, with a copy or a number beside it
        return {"events": [body, rng.choice([body, 0, 1, {"features": 1}])][: rng.randint(1, 2)]}
    if op == 5 and isinstance(body, dict) and isinstance(body.get("events"), list):
        events = body["events"]
        return events[0] if events and rng.random() < 0.5 else {"events": events[::-1]}
    if op == 6 and isinstance(body, dict):  # a repeated key hides a row number (defect 2)
        if isinstance(body.get("events"), list):
            rows = [
                {**e, "features": k} if isinstance(e, dict) else e
                for k, e in enumerate(body["events"])
            ]
            return _Pairs([*body.items(), ("events", rows)])
        return _Pairs([*body.items(), ("features", rng.choice([0, 1, "x", None]))])
    return body


def json_mutator(fallback: Callable[[bytes, int], bytes]) -> Callable[[bytes, int, int], bytes]:
    """A libFuzzer custom mutator: ``fallback(data, max_size)`` is libFuzzer's own."""

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            return fallback(data, max_size)
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            return fallback(data, max_size)
        try:
            text = _dump(_structural(body, rng), rng, 0.15)
        except RecursionError:
            return fallback(data, max_size)
        text = text.replace(json.dumps(DEEP), _nested(rng))
        out = text.encode("utf-8", "surrogatepass")
        return out if len(out) <= max_size else fallback(data, max_size)

    return mutate
