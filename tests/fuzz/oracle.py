"""The differential oracle: every fast decode path against pydantic and ``json.loads``.

:meth:`Oracle.check` takes one input (a single event line or a Kafka message, possibly an
envelope ``{"events": [...]}``) and returns what breaks the contract of
:mod:`monitor.fastdecode`, as one line per problem (an empty list: the input is fine):

* nothing raises: no fast path, no pydantic path, not the pipeline;
* whatever a fast path accepts, pydantic accepts with an equal result (equal types, floats equal
  to the bit, timestamps within the 1 µs the module docstring allows), and its feature values
  are those of ``json.loads`` of the same bytes, to the bit (``-0`` is the integer 0, a ``NaN``
  token is never a null);
* whatever is rejected carries a :class:`~monitor.events.Reason` and a message (a fast path
  leaves an input to pydantic with ``None``; should it return a ``Rejection`` itself, pydantic
  must not accept that input);
* the pipeline (``process_lines``, with a small ``events.max_bytes``) rejects, with pydantic's
  reason, every line pydantic rejects, the size limit included.

The fast paths are those of :class:`~monitor.fastdecode.FastDecoder` (``prediction``, ``lines``,
``message``, ``messages``, ``envelope``) without a compiled schema and with several (the
simulator's schema with closed vocabularies, the issue's ``x``/``c`` schema, one with a bool and
a closed set, an empty one), in two orders since ``lines`` gives the first schema the first try
(each schema takes the events of its features). The input is also wrapped in an envelope on
its own and after a valid event, so that mutated single events reach the envelope split.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from monitor.config import Settings
from monitor.events import Reason, Rejection, parse_event, parse_message
from monitor.fastdecode import FastDecoder, FastPrediction, FastRow, as_event, row_dicts
from monitor.pipeline import Pipeline
from monitor.scenarios.population import CATEGORICAL_SPECS, NUMERIC_FEATURES
from monitor.scenarios.simulate import generate

#: The per-event limit of the decoder-level checks (the default ``events.max_bytes``).
MAX_BYTES = 1 << 20
#: The pipeline's ``events.max_bytes`` here: small, so that fuzzed inputs cross it.
PIPELINE_MAX_BYTES = 2048
#: Lines a pipeline takes before it is replaced (its streams and state grow with the input).
PIPELINE_LINES = 500

#: Valid simulator lines: the warm-up of the pipeline and the valid neighbours of an input.
SIM_LINES = [line.rstrip(b"\n") for line in generate("steady", 120, 14).lines()]
GOOD = SIM_LINES[0]

_COUNTRY, _DEVICE, _CHANNEL, _MERCHANT, _CARD = (tuple(v[0]) for v in CATEGORICAL_SPECS.values())
#: The simulator's schema as the pipeline compiles it: closed vocabularies and open ones.
SIM_SCHEMA: tuple[tuple[str, ...], list[tuple[str, Any]]] = (
    NUMERIC_FEATURES,
    [
        ("country", Literal[_COUNTRY[:-1]]),  # NG, the new country, is outside the set
        ("device", str),
        ("channel", Literal[_CHANNEL]),
        ("merchant_category", str),
        ("card_type", Literal[_CARD]),
    ],
)
#: The schema of the issue's reproducers: numeric ``x``, categorical ``c``.
XC_SCHEMA: tuple[tuple[str, ...], list[tuple[str, Any]]] = (("x",), [("c", str)])
MIXED_SCHEMA: tuple[tuple[str, ...], list[tuple[str, Any]]] = (
    ("x", "y"),
    [("c", str), ("b", bool), ("d", Literal["DE", "FR"])],
)
EMPTY_SCHEMA: tuple[tuple[str, ...], list[tuple[str, Any]]] = ((), [])


def _decoder(*schemas: tuple[tuple[str, ...], list[tuple[str, Any]]]) -> FastDecoder:
    decoder = FastDecoder()
    for numeric, categorical in schemas:
        if decoder.compile(numeric, categorical) is None:
            raise ValueError("more schemas than FastDecoder.MAX_SCHEMAS")
    return decoder


def _int_as_float(text: str) -> float:
    # What the schema makes of a JSON integer, without int()'s digit limit: float() of the
    # digits rounds correctly as float(int(...)) does, and + 0.0 makes -0 the integer 0.
    return float(text) + 0.0


def json_features(raw: bytes) -> list[Any]:
    """The ``features`` of each event of ``raw`` as ``json.loads`` reads them (one element for
    a single event, one per element for an envelope); raises on what is not JSON."""
    body = json.loads(raw.decode("utf-8"), parse_int=_int_as_float)
    if isinstance(body, dict) and list(body) == ["events"] and isinstance(body["events"], list):
        events = body["events"]
    else:
        events = [body]
    return [e.get("features") if isinstance(e, dict) else None for e in events]


def _float_bits(x: float) -> bytes:
    return struct.pack("<d", x)


def difference(fast: Any, slow: Any, at: str = "") -> str | None:
    """Where ``fast`` and ``slow`` differ: types, values, floats to the bit; datetimes with
    the same offset, equal within 1 µs (msgspec rounds digits below it, pydantic cuts them)."""
    if isinstance(fast, datetime) or isinstance(slow, datetime):
        if not (isinstance(fast, datetime) and isinstance(slow, datetime)):
            return f"{at}: {fast!r} != {slow!r}"
        if (fast.tzinfo is None) != (slow.tzinfo is None) or fast.utcoffset() != slow.utcoffset():
            return f"{at}: offsets differ: {fast!r} != {slow!r}"
        if abs(fast - slow) > timedelta(microseconds=1):
            return f"{at}: {fast!r} != {slow!r}"
        return None
    if type(fast) is not type(slow):
        return f"{at}: {type(fast).__name__} {fast!r:.80} != {type(slow).__name__} {slow!r:.80}"
    if isinstance(fast, dict):
        if set(fast) != set(slow):
            return f"{at}: keys {sorted(fast)!r:.200} != {sorted(slow)!r:.200}"
        for key in fast:
            diff = difference(fast[key], slow[key], f"{at}.{key}")
            if diff is not None:
                return diff
        return None
    if isinstance(fast, list):
        if len(fast) != len(slow):
            return f"{at}: {len(fast)} elements != {len(slow)}"
        for k, (a, b) in enumerate(zip(fast, slow, strict=True)):
            diff = difference(a, b, f"{at}[{k}]")
            if diff is not None:
                return diff
        return None
    if isinstance(fast, float):
        return None if _float_bits(fast) == _float_bits(slow) else f"{at}: {fast!r} != {slow!r}"
    return None if fast == slow else f"{at}: {fast!r:.80} != {slow!r:.80}"


def rejection_problem(result: Any) -> str | None:
    """What is wrong with a rejection (``None``: a reason and a message)."""
    if not isinstance(result, Rejection):
        return None
    if not isinstance(result.reason, Reason):
        return f"rejection without a Reason: {result.reason!r}"
    if not isinstance(result.message, str) or not result.message:
        return f"rejection {result.reason.value} without a message"
    return None


def _describe(exc: BaseException) -> str:
    text = " | ".join(str(exc).splitlines()[:2])
    return f"raised {type(exc).__name__}: {text[:200]}"


One = Callable[[bytes], "FastPrediction | None"]
Many = Callable[[bytes], "list[FastPrediction] | None"]


class Oracle:
    """The decoders and the pipeline one input goes through; :meth:`check` lists problems."""

    def __init__(self) -> None:
        self.decoders: dict[str, FastDecoder] = {
            "general": FastDecoder(),
            "sim,xc,mixed,empty": _decoder(SIM_SCHEMA, XC_SCHEMA, MIXED_SCHEMA, EMPTY_SCHEMA),
            "xc,sim": _decoder(XC_SCHEMA, SIM_SCHEMA),
        }
        self.singles: list[tuple[str, One]] = []
        self.messages: list[tuple[str, Many]] = []
        for name, d in self.decoders.items():
            self.singles.append((f"{name}.prediction", d.prediction))
            self.singles.append((f"{name}.lines", _lines_of(d)))
            self.messages.append((f"{name}.message", d.message))
            self.messages.append((f"{name}.envelope", d.envelope))
            self.messages.append((f"{name}.messages", _messages_of(d)))
        self._pipeline: Pipeline | None = None
        self._pipeline_lines = 0
        self._position = 0

    # -- the pipeline --------------------------------------------------------------------------

    def pipeline(self) -> Pipeline:
        """A pipeline past the simulator's warm-up (its schema compiled), renewed now and then."""
        if self._pipeline is None or self._pipeline_lines >= PIPELINE_LINES:
            settings = Settings.model_validate(
                {
                    "events": {"max_bytes": PIPELINE_MAX_BYTES},
                    "reference": {"warmup_events": 100},
                }
            )
            self._pipeline = Pipeline(settings)
            self._pipeline.process_lines(SIM_LINES, 0, "fuzz")
            self._position = len(SIM_LINES)
            self._pipeline_lines = 0
        self._pipeline_lines += 1
        return self._pipeline

    def _check_pipeline(self, raw: bytes, problems: list[str]) -> None:
        try:
            slow = parse_event(raw, 0, PIPELINE_MAX_BYTES)
        except Exception as exc:
            problems.append(f"parse_event(max_bytes={PIPELINE_MAX_BYTES}) {_describe(exc)}")
            return
        pipeline = self.pipeline()
        before = dict(pipeline.stats.rejected)
        try:
            pipeline.process_lines([raw], self._position, "fuzz")
        except Exception as exc:
            problems.append(f"pipeline.process_lines {_describe(exc)}")
            self._pipeline = None  # its state is unknown now
            return
        finally:
            self._position += 1
        if isinstance(slow, Rejection):
            after = pipeline.stats.rejected
            grown = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
            if grown != {slow.reason.value: 1}:
                problems.append(
                    f"pipeline.process_lines: pydantic rejects as {slow.reason.value}, "
                    f"the pipeline counted {grown or 'no rejection'}"
                )

    # -- the decoders --------------------------------------------------------------------------

    def check(self, raw: bytes, pipeline: bool = True) -> list[str]:
        """The problems of ``raw`` (an empty list when every path keeps the contract)."""
        problems: list[str] = []
        self._check_single(raw, problems)
        self._check_message(raw, "", problems)
        self._check_message(b'{"events":[' + raw + b"]}", "wrapped ", problems)
        after = b'{"events":[' + GOOD + b"," + raw + b"]}"
        self._check_message(after, "after a good one ", problems)
        if pipeline:
            self._check_pipeline(raw, problems)
        return problems

    def _check_single(self, raw: bytes, problems: list[str]) -> None:
        try:
            slow: Any = parse_event(raw, 0, MAX_BYTES)
        except Exception as exc:
            problems.append(f"parse_event {_describe(exc)}")
            slow = None
        else:
            wrong = rejection_problem(slow)
            if wrong is not None:
                problems.append(f"parse_event: {wrong}")
        expected: list[Any] | None = None
        for name, decode in self.singles:
            try:
                fast = decode(raw)
            except Exception as exc:
                problems.append(f"{name} {_describe(exc)}")
                continue
            if fast is None:
                continue
            if isinstance(fast, Rejection):
                problem = _fast_rejection(fast, slow)
                if problem is not None:
                    problems.append(f"{name} {problem}")
                continue
            if expected is None:
                expected = self._expected(raw, problems, name)
            problem = self._compare(fast, slow, expected, 0, raw)
            if problem is not None:
                problems.append(f"{name} accepts: {problem}")

    def _check_message(self, raw: bytes, label: str, problems: list[str]) -> None:
        try:
            slow: Any = parse_message(raw, MAX_BYTES)
        except Exception as exc:
            problems.append(f"{label}parse_message {_describe(exc)}")
            slow = None
        else:
            for item in slow if isinstance(slow, list) else [slow]:
                wrong = rejection_problem(item)
                if wrong is not None:
                    problems.append(f"{label}parse_message: {wrong}")
        expected: list[Any] | None = None
        for name, decode in self.messages:
            try:
                fast = decode(raw)
            except Exception as exc:
                problems.append(f"{label}{name} {_describe(exc)}")
                continue
            if fast is None:
                continue
            if isinstance(fast, Rejection):  # the whole message
                accepted = isinstance(slow, list) and not all(
                    isinstance(v, Rejection) for v in slow
                )
                problem = _fast_rejection(fast, "an event" if accepted else None)
                if problem is not None:
                    problems.append(f"{label}{name} {problem}")
                continue
            events = [e for e in fast if not isinstance(e, Rejection)]
            if events and expected is None:
                expected = self._expected(raw, problems, f"{label}{name}")
            if not isinstance(slow, list) or len(slow) != len(fast):
                if isinstance(slow, Rejection):
                    got = f"rejects the message: {slow.reason.value}: {slow.message[:200]}"
                else:
                    got = f"gives {len(slow) if isinstance(slow, list) else slow}"
                if events:
                    problems.append(f"{label}{name} accepts {len(events)} events, pydantic {got}")
                for e in fast:
                    problem = _fast_rejection(e, None) if isinstance(e, Rejection) else None
                    if problem is not None:
                        problems.append(f"{label}{name} {problem}")
                continue
            for k, (event, verdict) in enumerate(zip(fast, slow, strict=True)):
                if isinstance(event, Rejection):
                    problem = _fast_rejection(event, verdict)
                    if problem is not None:
                        problems.append(f"{label}{name} event {k}: {problem}")
                        break
                    continue
                problem = self._compare(event, verdict, expected or [], k, raw)
                if problem is not None:
                    problems.append(f"{label}{name} accepts, event {k}: {problem}")
                    break

    @staticmethod
    def _expected(raw: bytes, problems: list[str], name: str) -> list[Any]:
        try:
            return json_features(raw)
        except (ValueError, RecursionError) as exc:
            problems.append(f"{name} accepts what json.loads refuses: {_describe(exc)}")
            return []

    @staticmethod
    def _compare(fast: Any, slow: Any, expected: list[Any], k: int, raw: bytes) -> str | None:
        if not isinstance(fast, FastPrediction):
            return f"not a FastPrediction: {type(fast).__name__}"
        if slow is None or isinstance(slow, Rejection):
            reason = "raised" if slow is None else f"{slow.reason.value}: {slow.message[:200]}"
            return f"pydantic rejects ({reason})"
        try:
            plain = as_event(fast)
        except Exception as exc:
            return f"as_event {_describe(exc)}"
        diff = difference(plain, dict(slow), "event")
        if diff is not None:
            return f"differs from pydantic at {diff}"
        if k < len(expected):
            diff = difference(plain["features"], expected[k], "features")
            if diff is not None:
                return f"differs from json.loads at {diff}"
        features = fast.features
        if isinstance(features, FastRow):
            try:
                (gathered,) = row_dicts([features])
            except Exception as exc:
                return f"row_dicts {_describe(exc)}"
            diff = difference(gathered, features.as_dict(), "gathered")
            if diff is not None:
                return f"row_dicts differs from the row at {diff}"
        return None


def _fast_rejection(fast: Rejection, slow: Any) -> str | None:
    """What is wrong with a rejection by a fast path (should one return rejections rather than
    leave the input to pydantic): it needs a reason, and pydantic must not accept the input."""
    wrong = rejection_problem(fast)
    if wrong is not None:
        return wrong
    if slow is not None and not isinstance(slow, Rejection):
        return f"rejects ({fast.reason.value}: {fast.message[:200]}) what pydantic accepts"
    return None


def _lines_of(decoder: FastDecoder) -> One:
    """``decoder.lines`` of the input between two valid lines (the batch path's attach, with
    the input's failure in the middle); the neighbours must come out as they do alone."""
    alone = decoder.lines([GOOD])[0]

    def lines(raw: bytes) -> FastPrediction | None:
        got = decoder.lines([GOOD, raw, GOOD])
        for neighbour in (got[0], got[2]):
            if neighbour is None or alone is None:
                raise AssertionError("a valid neighbour was refused")
            diff = difference(as_event(neighbour), as_event(alone), "neighbour")
            if diff is not None:
                raise AssertionError(diff)
        return got[1]

    return lines


def _messages_of(decoder: FastDecoder) -> Many:
    """``decoder.messages`` of the input between two valid messages."""

    def messages(raw: bytes) -> list[FastPrediction] | None:
        got = decoder.messages([GOOD, raw, GOOD], MAX_BYTES)
        if got[0] is None or got[2] is None or len(got[0]) != 1 or len(got[2]) != 1:
            raise AssertionError("a valid neighbour was refused")
        return got[1]

    return messages


def check_all(raws: Sequence[bytes]) -> dict[int, list[str]]:
    """The problems of each input with one oracle (only those with problems)."""
    oracle = Oracle()
    out = {}
    for k, raw in enumerate(raws):
        problems = oracle.check(raw)
        if problems:
            out[k] = problems
    return out
