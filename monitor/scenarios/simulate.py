"""Synthetic card-fraud prediction streams with injected, known incidents.

The generator produces the driftwatch event wire format (one JSON object per line) for a
card-fraud model together with a *truth* document describing exactly which lines carry an
injected incident, so that alerting can be scored by :mod:`monitor.scenarios.evaluate`. The
population it draws from is :mod:`monitor.scenarios.population`, the incidents it injects
:mod:`monitor.scenarios.incidents`; this module encodes lines, places labels and writes truth.

Design
------
* Columns are drawn with numpy one chunk (:data:`CHUNK_EVENTS` prediction events) at a time
  and encoded straight to bytes, so memory stays flat however many events are requested.
* Values are encoded with ``orjson`` column by column (one ``orjson.dumps`` per column and
  chunk, split into per-row tokens) and spliced into a fixed byte template per line; the
  result is byte-identical to ``orjson.dumps`` of the equivalent dict.  The only values not
  written by orjson are nulls (``null``) and, in ``corrupt-values``, the bare token ``NaN``
  (as Python's :func:`json.dumps` writes it).
* Randomness comes from ``numpy.random.default_rng(seed)``, split into independent child
  streams for the baseline data, the incident injection, label values and label delays.
  Consequently every scenario produces the same baseline: for a given seed, the lines
  before the onset are identical across scenarios (apart from the label lines of
  ``accuracy-drop``), and the incident changes only what it is documented to change.
* Prediction scores are computed from the *clean* feature values (before nulls,
  corruption or drift are applied), so feature incidents do not also move the prediction
  distribution; only ``accuracy-drop`` touches the labels, only ``latency-regression`` the
  latency.

Truth
-----
:meth:`Simulation.truth` is available at any time (it does not require ``lines()`` to have
been consumed).  For ``accuracy-drop`` the line offsets depend on the random label delays;
they are computed by a cheap dry run over the delay stream (no features are generated).
Incident offsets are 0-based line numbers of the written file and describe the *period*
over which the change is present: from the first prediction line at/after the onset to the
last affected line.  For ``accuracy-drop`` the affected lines are the label lines of
predictions made at/after the onset (those labels are the ones drawn from the broken
relationship), so ``first_offset`` is the first such label line.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import orjson
from numpy.typing import NDArray

from monitor.scenarios.incidents import (
    LABEL_DELAY_MAX,
    LABEL_DELAY_MIN,
    LABEL_FLIP_PROB,
    RENAME_FROM,
    RENAME_TO,
    incidents,
    inject,
)
from monitor.scenarios.population import (
    CATEGORICAL_FEATURES,
    CATEGORICAL_SPECS,
    NUMERIC_FEATURES,
    NUMERIC_SPECS,
    Chunk,
    draw,
)

__all__ = [
    "CATEGORICAL_FEATURES",
    "CHUNK_EVENTS",
    "NUMERIC_FEATURES",
    "SCENARIOS",
    "Simulation",
    "generate",
]

SCENARIOS: Final[tuple[str, ...]] = (
    "steady",
    "abrupt-shift",
    "gradual-drift",
    "variance-change",
    "category-shift",
    "missing-spike",
    "corrupt-values",
    "schema-change",
    "latency-regression",
    "accuracy-drop",
    "flapping",
)

CHUNK_EVENTS: Final[int] = 10_000
"""Prediction events generated (and encoded) per numpy batch."""

START_MS: Final[np.datetime64] = np.datetime64("2026-01-01T00:00:00.000", "ms")
VERSIONS: Final[dict[str, str]] = {
    "code": "3f2a1c9",
    "data": "snap-2026-01-01",
    "features": "fs-7",
}

_NULL: Final[bytes] = b"null"
_NAN: Final[bytes] = b"NaN"
_LABEL_TOKENS: Final[NDArray[np.object_]] = np.array([b'"legit"', b'"fraud"'], dtype=object)
_CATEGORY_TOKENS: Final[dict[str, NDArray[np.object_]]] = {
    # encoded vocabulary; code len(vocab) is the null token
    name: np.array([orjson.dumps(v) for v in vocab] + [_NULL], dtype=object)
    for name, (vocab, _probs, _null_rate) in CATEGORICAL_SPECS.items()
}
_STREAMS: Final[int] = 4  # base, injection, label values, label delays


def _iso(start: np.datetime64, ms: NDArray[np.int64]) -> NDArray[np.str_]:
    """RFC 3339 UTC timestamps with milliseconds for offsets (ms) from ``start``."""
    stamps = start + ms.astype("timedelta64[ms]")
    return np.datetime_as_string(stamps, unit="ms", timezone="UTC")


def _tokens(values: NDArray[Any]) -> list[bytes]:
    """orjson-encode a 1-D column and split it into one token per row."""
    if values.size == 0:
        return []
    return orjson.dumps(values.tolist())[1:-1].split(b",")


def _json_key(name: str) -> bytes:
    return orjson.dumps(name).replace(b"%", b"%%")


class _LabelQueue:
    """Places label events a random number of prediction events after their prediction.

    Labels are pushed with the prediction index they refer to and the prediction index
    after which they are written (``place``); ``pop`` returns those due before ``stop``
    ordered by (place, prediction), which fixes the line layout of the file.
    """

    def __init__(self) -> None:
        self.place = np.empty(0, dtype=np.int64)
        self.pred = np.empty(0, dtype=np.int64)
        self.value = np.empty(0, dtype=np.bool_)

    def push(
        self, pred: NDArray[np.int64], place: NDArray[np.int64], value: NDArray[np.bool_]
    ) -> None:
        self.place = np.concatenate([self.place, place])
        self.pred = np.concatenate([self.pred, pred])
        self.value = np.concatenate([self.value, value])

    def pop(self, stop: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
        due = self.place < stop
        order = np.lexsort((self.pred[due], self.place[due]))
        out = (self.place[due][order], self.pred[due][order], self.value[due][order])
        keep = ~due
        self.place, self.pred, self.value = self.place[keep], self.pred[keep], self.value[keep]
        return out


def _layout(
    start: int, stop: int, label_place: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Chunk-relative line positions of predictions and of (sorted) labels."""
    preds = np.arange(start, stop, dtype=np.int64)
    pred_pos = (preds - start) + np.searchsorted(label_place, preds, side="left")
    label_pos = np.arange(label_place.size, dtype=np.int64) + (label_place - start + 1)
    return pred_pos, label_pos


class Simulation:
    """A lazily generated scenario: event lines plus the truth about injected incidents.

    Create instances with :func:`generate`.  ``lines()`` may be iterated any number of
    times and always yields the same bytes; ``truth()`` can be called at any time.
    """

    def __init__(
        self,
        *,
        scenario: str,
        events: int,
        seed: int,
        rate: float,
        onset: float,
        model: str,
        model_version: str,
        start: np.datetime64 = START_MS,
    ) -> None:
        self.scenario = scenario
        self.start = start
        self.events = events
        self.seed = seed
        self.rate = float(rate)
        self.onset = float(onset)
        self.model = model
        self.model_version = model_version
        self.onset_event = math.floor(onset * events)
        self._truth: dict[str, Any] | None = None
        model_tok = orjson.dumps(model).replace(b"%", b"%%")
        version_tok = orjson.dumps(model_version).replace(b"%", b"%%")
        self._pred_template = self._template(model_tok, version_tok, renamed=False)
        self._renamed_template = self._template(model_tok, version_tok, renamed=True)
        self._label_template = (
            b'{"event_id":"e-%d","model":' + model_tok + b',"timestamp":%s,"label":%s}'
        )

    # ------------------------------------------------------------------ public API

    def lines(self) -> Iterator[bytes]:
        """Yield the encoded JSON lines (no trailing newline), generated chunk by chunk."""
        for chunk in self.chunks():
            yield from chunk

    def chunks(self) -> Iterator[list[bytes]]:
        """Yield the encoded lines in batches of about :data:`CHUNK_EVENTS` events."""
        base, inj, lab, delay = np.random.default_rng(self.seed).spawn(_STREAMS)
        queue = _LabelQueue() if self.scenario == "accuracy-drop" else None
        for start in range(0, self.events, CHUNK_EVENTS):
            stop = min(start + CHUNK_EVENTS, self.events)
            chunk = draw(base, start, stop)
            inject(
                chunk, inj, scenario=self.scenario, events=self.events, onset_event=self.onset_event
            )
            pred_lines = self._encode(chunk)
            if queue is None:
                yield pred_lines
                continue
            self._push_labels(queue, chunk, lab, delay)
            place, pred, value = queue.pop(stop)
            label_lines = self._encode_labels(place, pred, value)
            pred_pos, label_pos = _layout(start, stop, place)
            merged = np.empty(len(pred_lines) + len(label_lines), dtype=object)
            merged[pred_pos] = pred_lines
            merged[label_pos] = label_lines
            yield merged.tolist()

    def truth(self) -> dict[str, Any]:
        """The truth document (see the module docstring); computed once and cached."""
        if self._truth is None:
            self._truth = self._compute_truth()
        return self._truth

    def write(
        self, out_path: str | os.PathLike[str], truth_path: str | os.PathLike[str] | None = None
    ) -> dict[str, Any]:
        """Write every line plus ``\\n`` to ``out_path`` (and the truth JSON); return the truth."""
        with open(out_path, "wb") as fh:
            for chunk in self.chunks():
                fh.write(b"\n".join(chunk))
                fh.write(b"\n")
        truth = self.truth()
        if truth_path is not None:
            with open(truth_path, "wb") as fh:
                fh.write(orjson.dumps(truth, option=orjson.OPT_INDENT_2) + b"\n")
        return truth

    # ------------------------------------------------------------------ generation

    @staticmethod
    def _template(model_tok: bytes, version_tok: bytes, *, renamed: bool) -> bytes:
        names = [RENAME_TO if renamed and n == RENAME_FROM else n for n in NUMERIC_FEATURES]
        names += list(CATEGORICAL_FEATURES)
        features = b",".join(_json_key(n) + b":%s" for n in names)
        versions = orjson.dumps(VERSIONS).replace(b"%", b"%%")
        return (
            b'{"event_id":"e-%d","model":'
            + model_tok
            + b',"model_version":'
            + version_tok
            + b',"timestamp":%s,"features":{'
            + features
            + b'},"prediction":{"score":%s,"label":%s},"latency_ms":%s,"versions":'
            + versions
            + b"}"
        )

    def _encode(self, chunk: Chunk) -> list[bytes]:
        """Encode a chunk's prediction events as JSON lines."""
        n = chunk.stop - chunk.start
        idx = np.arange(chunk.start, chunk.stop, dtype=np.int64)
        columns: list[list[bytes]] = [_tokens(self._timestamps(idx))]
        for spec in NUMERIC_SPECS:
            raw = chunk.num[spec.name]
            null = chunk.null.get(spec.name)
            nan = chunk.nan.get(spec.name)
            bad = null if nan is None else (nan if null is None else null | nan)
            if bad is not None:
                raw = np.where(bad, 0.0, raw)
            if spec.decimals is None:
                tokens = _tokens(np.rint(raw).astype(np.int64))
            else:
                tokens = _tokens(np.round(raw, spec.decimals) + 0.0)
            if null is not None:
                for k in np.flatnonzero(null).tolist():
                    tokens[k] = _NULL
            if nan is not None:
                for k in np.flatnonzero(nan).tolist():
                    tokens[k] = _NAN
            columns.append(tokens)
        for name, lut in _CATEGORY_TOKENS.items():
            columns.append(lut[chunk.cat[name]].tolist())
        columns.append(_tokens(chunk.score))
        columns.append(_LABEL_TOKENS[(chunk.score >= 0.5).astype(np.intp)].tolist())
        columns.append(_tokens(np.round(chunk.latency, 2)))
        rows = zip(range(chunk.start, chunk.stop), *columns, strict=True)
        cut = n if chunk.renamed_from is None else chunk.renamed_from
        template = self._pred_template
        out = [template % row for row in itertools.islice(rows, cut)]
        if cut < n:
            renamed = self._renamed_template
            out.extend(renamed % row for row in rows)
        return out

    def _timestamps(self, idx: NDArray[np.int64]) -> NDArray[np.str_]:
        ms = np.floor(idx * 1000.0 / self.rate).astype(np.int64)
        return _iso(self.start, ms)

    def _push_labels(
        self,
        queue: _LabelQueue,
        chunk: Chunk,
        lab: np.random.Generator,
        delay: np.random.Generator,
    ) -> None:
        n = chunk.stop - chunk.start
        pred = np.arange(chunk.start, chunk.stop, dtype=np.int64)
        place = self._placements(pred, delay)
        u = lab.random(n)
        v = lab.random(n)
        fraud = u < chunk.score
        flip = (pred >= self.onset_event) & (v < LABEL_FLIP_PROB)
        queue.push(pred, place, fraud ^ flip)

    def _placements(self, pred: NDArray[np.int64], delay: np.random.Generator) -> NDArray[np.int64]:
        d = delay.integers(LABEL_DELAY_MIN, LABEL_DELAY_MAX + 1, size=pred.size, dtype=np.int64)
        place: NDArray[np.int64] = np.minimum(pred + d, self.events - 1)
        return place

    def _encode_labels(
        self, place: NDArray[np.int64], pred: NDArray[np.int64], value: NDArray[np.bool_]
    ) -> list[bytes]:
        stamps = _tokens(self._timestamps(place))
        labels = _LABEL_TOKENS[value.astype(np.intp)].tolist()
        template = self._label_template
        return [template % row for row in zip(pred.tolist(), stamps, labels, strict=True)]

    # ------------------------------------------------------------------ truth

    def _time_of_event(self, i: int) -> str:
        return str(self._timestamps(np.array([i], dtype=np.int64))[0])

    def _compute_truth(self) -> dict[str, Any]:
        lines = self.events
        entries: list[dict[str, Any]] = []
        found = incidents(self.scenario, self.events, self.onset_event)
        for alertname, checks, features, first_event, last_event, event_params in found:
            first, last, params = first_event, last_event, event_params
            first_place, last_place = first, last
            if self.scenario == "accuracy-drop":
                dry = self._label_dry_run()
                lines, first, last = dry.lines, dry.first_line, dry.last_line
                first_place, last_place = dry.first_place, dry.last_place
                params = {**params, "onset_prediction_offset": dry.onset_line}
            entries.append(
                {
                    "kind": self.scenario,
                    "alertname": alertname,
                    "checks": checks,
                    "features": features,
                    "first_offset": first,
                    "last_offset": last,
                    "first_time": self._time_of_event(first_place),
                    "last_time": self._time_of_event(last_place),
                    "params": params,
                }
            )
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "events": self.events,
            "lines": lines,
            "rate": self.rate,
            "model": self.model,
            "model_version": self.model_version,
            "onset": self.onset,
            "onset_event": self.onset_event,
            "start_time": self._time_of_event(0),
            "features": {
                "numeric": list(NUMERIC_FEATURES),
                "categorical": list(CATEGORICAL_FEATURES),
            },
            "incidents": entries,
        }

    def _label_dry_run(self) -> _DryRun:
        """Replay only the label-delay stream to find line numbers (no features drawn)."""
        delay = np.random.default_rng(self.seed).spawn(_STREAMS)[3]
        queue = _LabelQueue()
        line_base = 0
        onset_line = first = first_place = last = last_place = -1
        for start in range(0, self.events, CHUNK_EVENTS):
            stop = min(start + CHUNK_EVENTS, self.events)
            pred = np.arange(start, stop, dtype=np.int64)
            queue.push(pred, self._placements(pred, delay), np.zeros(pred.size, np.bool_))
            place, label_pred, _ = queue.pop(stop)
            pred_pos, label_pos = _layout(start, stop, place)
            if start <= self.onset_event < stop:
                onset_line = line_base + int(pred_pos[self.onset_event - start])
            post = np.flatnonzero(label_pred >= self.onset_event)
            if post.size:
                if first < 0:
                    first = line_base + int(label_pos[post[0]])
                    first_place = int(place[post[0]])
                last = line_base + int(label_pos[post[-1]])
                last_place = int(place[post[-1]])
            line_base += (stop - start) + place.size
        return _DryRun(line_base, onset_line, first, first_place, last, last_place)


@dataclass(frozen=True)
class _DryRun:
    """Line layout facts of an ``accuracy-drop`` file (placements are prediction indices)."""

    lines: int
    onset_line: int
    first_line: int
    first_place: int
    last_line: int
    last_place: int


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def generate(
    scenario: str,
    events: int,
    seed: int,
    rate: float = 100.0,
    *,
    onset: float = 0.5,
    model: str = "fraud",
    model_version: str = "v1",
    start: datetime | None = None,
) -> Simulation:
    """Create a lazily generated :class:`Simulation` of ``events`` prediction events.

    ``rate`` is events per second (event ``i`` happens ``i / rate`` seconds after ``start``,
    an aware datetime, 2026-01-01T00:00:00Z by default); the incident starts at prediction
    event ``floor(onset * events)``.  Raises :class:`ValueError` naming the offending parameter.
    """
    first = START_MS
    if start is not None:
        if not isinstance(start, datetime) or start.utcoffset() is None:
            raise ValueError(f"start must be an aware datetime, got {start!r}")
        first = np.datetime64(round(start.timestamp() * 1000), "ms")
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}; got {scenario!r}")
    events = _check_positive_int("events", events)
    if events <= 0:
        raise ValueError(f"events must be > 0, got {events}")
    seed = _check_positive_int("seed", seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
        raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate!r}")
    if (
        isinstance(onset, bool)
        or not isinstance(onset, int | float)
        or not math.isfinite(onset)
        or not 0.0 < onset < 1.0
    ):
        raise ValueError(f"onset must be strictly between 0 and 1, got {onset!r}")
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    if not isinstance(model_version, str) or not model_version:
        raise ValueError(f"model_version must be a non-empty string, got {model_version!r}")
    return Simulation(
        scenario=scenario,
        events=events,
        seed=seed,
        rate=float(rate),
        onset=float(onset),
        model=model,
        model_version=model_version,
        start=first,
    )
