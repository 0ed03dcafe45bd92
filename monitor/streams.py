"""Per model version state: warm-up, the current window, the detectors and the error monitor."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, Literal

import numpy as np

from detectors.columns import (
    Columns,
    categorical_block,
    checked_columns,
    dense_numeric_block,
    extract,
    float_array,
    int_array,
    numeric_block,
    unexpected_features,
)
from detectors.performance import ErrorMonitor
from detectors.profile import ReferenceProfile, build_profile
from detectors.window import DetectorSettings, WindowDetector, WindowReport
from monitor.epochs import latest
from monitor.events import FeatureEvent, PredictionEvent, epoch_seconds
from monitor.fastdecode import FastOutput, FastPrediction, FastRow, FeatureSchema, row_dicts

StreamKey = tuple[str, str]

#: ``model_version`` label of feature vectors logged on their own (feature events).
FEATURE_STREAM_VERSION = "features"


def predicted_of(prediction: Any) -> str | float | None:
    """The value a label grades: the predicted label if there is one, else the score."""
    if isinstance(prediction, _OUTPUTS):
        label = prediction.get("label")
        if label is not None:
            return str(label) if not isinstance(label, str) else label
        score = prediction.get("score")
        return float(score) if score is not None else None
    return float(prediction)


def predicted_many(predictions: list[Any]) -> list[str | float | None]:
    """:func:`predicted_of` of each prediction; a bare number or a string label each is picked
    out by C-level calls, anything else goes through :func:`predicted_of`.

    >>> predicted_many([{"label": "a", "score": 0.1}]), predicted_many([0.5, 1.0])
    (['a'], [0.5, 1.0])
    """
    if set(map(type, predictions)) == {float}:
        return predictions
    labels = _string_labels(predictions)
    return labels if labels is not None else list(map(predicted_of, predictions))


def _string_labels(predictions: list[Any]) -> list[Any] | None:
    """The labels when every prediction is an output object with a string ``label`` (C-level
    calls), else ``None``."""
    types = set(map(type, predictions))
    try:
        if types == {FastOutput}:
            labels = list(map(_A_LABEL, predictions))
        elif types == {dict}:
            labels = list(map(_LABEL, predictions))
        else:
            return None
    except KeyError:
        return None
    return labels if set(map(type, labels)) == {str} else None


_OUTPUTS = (dict, FastOutput)
_LABEL = itemgetter("label")
_PREDICTION = itemgetter("prediction")
_SCORE = itemgetter("score")
_LATENCY = itemgetter("latency_ms")
_TIMESTAMP = itemgetter("timestamp")
_FEATURES = itemgetter("features")
_EVENT_ID = itemgetter("event_id")
# The same fields of fast-decoded events (monitor.fastdecode), read as attributes; on a dict
# they raise AttributeError, which sends a window mixing both kinds to the general path.
_A_LABEL = attrgetter("label")
_A_PREDICTION = attrgetter("prediction")
_A_SCORE = attrgetter("score")
_A_LATENCY = attrgetter("latency_ms")
_A_TIMESTAMP = attrgetter("timestamp")
_A_FEATURES = attrgetter("features")
_A_EVENT_ID = attrgetter("event_id")


def _field(events: Sequence[Any], fast: attrgetter[Any], slow: itemgetter[Any]) -> list[Any]:
    """One field of every event: C-level for fast-decoded events and for dicts alike."""
    if events and isinstance(events[0], FastPrediction):
        try:
            return list(map(fast, events))
        except AttributeError:
            pass
    return list(map(slow, events))


def features_of(events: Sequence[Any]) -> list[Any]:
    """The ``features`` of every event: dicts, or rows of a compiled schema."""
    return _field(events, _A_FEATURES, _FEATURES)


def feature_dicts(features: list[Any]) -> list[Any]:
    """``features`` with the rows of compiled schemas turned into dicts (a block at a time,
    see :func:`monitor.fastdecode.row_dicts`), for the general column code."""
    if FastRow not in set(map(type, features)):
        return features
    at = [k for k, f in enumerate(features) if type(f) is FastRow]
    out = list(features)
    for k, d in zip(at, row_dicts([features[k] for k in at]), strict=True):
        out[k] = d
    return out


def ids_of(events: Sequence[Any]) -> list[str]:
    """The ``event_id`` of every event."""
    return _field(events, _A_EVENT_ID, _EVENT_ID)


def timestamps_of(events: Sequence[Any]) -> list[Any]:
    """The ``timestamp`` of every event, as decoded."""
    return _field(events, _A_TIMESTAMP, _TIMESTAMP)


def predictions_of(events: Sequence[Any]) -> list[Any]:
    """The ``prediction`` of every event: numbers, output dicts or output structs."""
    return _field(events, _A_PREDICTION, _PREDICTION)


def scores_of(events: Sequence[Any]) -> np.ndarray:
    """Prediction scores as float64 (NaN where an event has none)."""
    return _scores(predictions_of(events))


def _scores(predictions: list[Any]) -> np.ndarray:
    types = set(map(type, predictions))
    if types == {float}:
        return float_array(predictions)
    try:
        if types == {FastOutput}:
            return float_array(list(map(_A_SCORE, predictions)))
        if types == {dict}:
            return float_array(list(map(_SCORE, predictions)))
    except (KeyError, TypeError):  # a score left out (UNSET is not a number)
        pass
    out = []
    for p in predictions:
        if isinstance(p, _OUTPUTS):
            s = p.get("score")
            out.append(s if s is not None else None)
        else:
            out.append(p)
    return np.array(out, dtype=np.float64)


def labels_of(events: Sequence[Any]) -> list[str | None]:
    """Predicted labels as strings (None where an event has none)."""
    return _labels(predictions_of(events))


def _labels(predictions: list[Any]) -> list[str | None]:
    labels = _string_labels(predictions)
    if labels is not None:
        return labels
    out: list[str | None] = []
    for p in predictions:
        label = p.get("label") if isinstance(p, _OUTPUTS) else None
        out.append(
            None if label is None else str(label).lower() if isinstance(label, bool) else str(label)
        )
    return out


def latency_of(events: Sequence[Any]) -> np.ndarray:
    """Latency in milliseconds as float64 (NaN where not logged)."""
    try:
        return float_array(_field(events, _A_LATENCY, _LATENCY))
    except (KeyError, TypeError):  # not logged: absent from a dict, UNSET in a fast event
        return np.array([e.get("latency_ms") for e in events], dtype=np.float64)


def last_time(events: Sequence[Any]) -> float:
    """The latest event time of ``events`` in epoch seconds (naive timestamps are UTC)."""
    stamps = _field(events, _A_TIMESTAMP, _TIMESTAMP)
    seconds = latest(stamps)
    if seconds is not None:
        return seconds
    try:
        return epoch_seconds(max(stamps))
    except TypeError:  # naive and aware datetimes do not compare
        return max(epoch_seconds(e["timestamp"]) for e in events)


WindowInputs = tuple[Columns, np.ndarray | None, np.ndarray | None, np.ndarray | None]


@dataclass(frozen=True, slots=True)
class WindowOutputs:
    """What the model said in a closed window, one entry per event: ``scores`` (float64, NaN
    where an event has none), predicted ``labels`` as strings (``None`` where none) and
    ``latency`` in milliseconds (NaN where not logged); each is ``None`` when the detector's
    reference has no such distribution. Extracted once per window, for the detectors and
    the window's observers alike."""

    scores: np.ndarray | None
    labels: list[str | None] | None
    latency: np.ndarray | None


def window_inputs(
    det: WindowDetector, evs: list[Any], schema: FeatureSchema | None = None
) -> WindowInputs:
    """Columns, scores, label codes and latencies of a window of events, as
    :meth:`WindowDetector.evaluate` takes them (all per-event Python work of a window).

    When every event was decoded with ``schema`` (the stream's compiled schema) the columns
    are read from the checked attributes; otherwise from the feature dicts, counting nulls,
    absent keys, wrong types and unexpected features.
    """
    cols, outputs, codes = window_parts(det, evs, schema)
    return cols, outputs.scores, codes, outputs.latency


def window_parts(
    det: WindowDetector, evs: list[Any], schema: FeatureSchema | None = None
) -> tuple[Columns, WindowOutputs, np.ndarray | None]:
    """:func:`window_inputs` as the columns, the :class:`WindowOutputs` and the label codes."""
    return _columns(det, evs, schema), *window_outputs(det, evs)


def _columns(det: WindowDetector, evs: list[Any], schema: FeatureSchema | None) -> Columns:
    feats = features_of(evs)
    nf = len(det.categorical_names)
    checked = schema.columns(feats) if schema is not None else None
    if checked is not None:
        return checked_columns(
            checked[0],
            checked[1],
            schema.numeric,  # type: ignore[union-attr]
            schema.categorical,  # type: ignore[union-attr]
            det.indexes[:nf],
            det.unseen_codes[:nf],
        )
    feats = feature_dicts(feats)
    nb = dense_numeric_block(feats, det.numeric_names)
    if nb is None:
        values = extract(feats, det.numeric_names + det.categorical_names)
        nn = len(det.numeric_names)
        nb = numeric_block(feats, det.numeric_names, values[:nn])
        categorical = values[nn:]
    else:
        categorical = extract(feats, det.categorical_names)
    cb = categorical_block(
        feats, det.categorical_names, det.indexes[:nf], det.unseen_codes[:nf], categorical
    )
    names = frozenset(det.numeric_names) | frozenset(det.categorical_names)
    any_absent = bool(nb.absent.any() or cb.absent.any())
    return Columns(
        len(feats),
        nb,
        cb,
        unexpected_features(feats, names, any_absent, det.settings.max_unexpected_features),
    )


def window_outputs(
    det: WindowDetector, evs: Sequence[Any]
) -> tuple[WindowOutputs, np.ndarray | None]:
    """The :class:`WindowOutputs` of a window of events, as ``det`` looks at them, and the
    predicted labels' codes in ``det``'s label index (``None`` without a label profile)."""
    scores = labels = codes = latency = None
    if det.has_score or det.has_label:
        predictions = predictions_of(evs)
        if det.has_score:
            scores = _scores(predictions)
        if det.has_label:
            labels = _labels(predictions)
            index = det.indexes[-1]
            unseen = det.unseen_codes[-1]
            codes = int_array(list(map(index.get, labels, repeat(unseen))))
    if det.profile.latency is not None:
        latency = latency_of(evs)
    return WindowOutputs(scores, labels, latency), codes


@dataclass(slots=True)
class ModelStream:
    """Everything driftwatch keeps for one (model, model_version).

    Events are appended to ``pending`` one by one; all per-window work happens in
    :meth:`close_window`, on columns.
    """

    key: StreamKey
    index: int
    settings: DetectorSettings
    warmup_events: int
    bins: int
    max_categories: int
    numeric_names: tuple[str, ...] | None
    categorical_names: tuple[str, ...] | None
    profile: ReferenceProfile | None = None
    detector: WindowDetector | None = None
    errors: ErrorMonitor | None = None
    pending: list[PredictionEvent | FeatureEvent | FastPrediction] = field(default_factory=list)
    offsets: tuple[int, int] = (0, 0)
    versions: dict[str, str] = field(default_factory=dict)
    last_report: WindowReport | None = None
    #: The scores, labels and latencies of the window of :attr:`last_report`, for the
    #: observers of that window (the pipeline drops them once they have seen it).
    last_outputs: WindowOutputs | None = None
    #: The feature schema compiled into the pipeline's decoder for this stream, if any.
    schema: FeatureSchema | None = None
    last_time: float = 0.0
    windows: int = 0
    #: Events (and labels) applied to this stream since it was first seen, restarts included.
    events: int = 0
    labels: int = 0
    #: Per input source: first position of events collected but not yet in a checkpoint.
    unsaved_from: dict[str, int] = field(default_factory=dict)
    #: Per input source: last position whose effect is in the last checkpoint; input at or
    #: before it is a re-delivery after a restart and is skipped.
    applied: dict[str, int] = field(default_factory=dict)
    #: Highest position seen per source since the last checkpoint.
    seen: dict[str, int] = field(default_factory=dict)
    #: The pipeline's event clock when an event of this stream was last accepted (idleness).
    touched: float = -math.inf
    #: Whether this stream holds a warm-up reservation (``limits.max_warmup_events``).
    reserved: bool = False
    #: The checkpointed predictions that may still get their label: ``[number, newest event
    #: time, count]`` per window, oldest first (see ``Checkpoints._keep_for_labels``).
    label_segments: list[list[float]] = field(default_factory=list)

    def note(self, source: str, position: int) -> None:
        """Record that input at ``position`` of ``source`` changed this stream's state."""
        if source not in self.unsaved_from:
            self.unsaved_from[source] = position
        self.seen[source] = position  # positions only grow within a source

    def last_position(self, source: str) -> int:
        """The highest position of ``source`` this stream applied, in its checkpoint or since
        (``-1`` if none): input at or before it is a re-delivery."""
        return max(self.applied.get(source, -1), self.seen.get(source, -1))

    def saved(self) -> None:
        """Everything noted so far is in the checkpoint being written."""
        for source, pos in self.seen.items():
            if pos > self.applied.get(source, -1):
                self.applied[source] = pos
        self.unsaved_from.clear()
        self.seen.clear()

    @property
    def group(self) -> str:
        """Alert group of the window detectors."""
        return f"{self.key[0]}/{self.key[1]}"

    @property
    def capacity(self) -> int:
        """Events to collect before the next step (warm-up or window)."""
        return self.settings.window_size if self.detector is not None else self.warmup_events

    def state(self) -> dict[str, Any]:
        """This stream's part of its checkpoint (JSON-friendly; the pipeline adds alerts)."""
        profile, errors = self.profile, self.errors
        return {
            "format": 1,
            "key": list(self.key),
            "profile": (
                profile.json_dict if profile is not None and profile.source == "warmup" else None
            ),
            "profile_id": profile.id if profile is not None else None,
            "windows": self.windows,
            "events": self.events,
            "labels": self.labels,
            "versions": self.versions,
            "last_time": self.last_time,
            "applied": self.applied,
            "label_segments": self.label_segments,
            "detector": self.detector.state() if self.detector is not None else None,
            "errors": errors.state() if errors is not None else None,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Load the counts and detector state of :meth:`state` (profile and errors apart)."""
        if self.detector is not None and state.get("detector") is not None:
            self.detector.load_state(state["detector"])
        self.windows = int(state["windows"])
        self.events = int(state["events"])
        self.labels = int(state.get("labels", 0))
        self.versions = dict(state.get("versions") or {})
        self.last_time = float(state["last_time"])
        self.applied = {str(k): int(v) for k, v in state["applied"].items()}
        self.label_segments = [list(map(float, seg)) for seg in state.get("label_segments") or []]

    def schema_kinds(self) -> list[tuple[str, Any]] | None:
        """The categorical features' kinds to compile a decoder schema with (``None``: no
        detector yet, or a feature of mixed kinds, whose windows take the general path).

        A categorical feature whose reference vocabulary looks closed (no rare category and
        no value seen only once, so new values are improbable) is compiled as that set of
        strings: the decoder then returns the reference's own string objects, with no new
        string to allocate and hash per event. A value outside the set sends its event to the
        general decoder (and its window to the general column path), which counts it as
        unseen.
        """
        det = self.detector
        if det is None:
            return None
        kinds: list[tuple[str, Any]] = []
        for name, index in zip(det.categorical_names, det.indexes, strict=False):
            values = [k for k in index if k is not None]
            types = set(map(type, values))
            if len(types) > 1 or not types <= {str, bool}:
                return None
            kind: Any = types.pop() if types else str
            ref = det.profile.categorical[name]
            if kind is str and values and not ref.rare and not ref.singletons:
                kind = Literal[tuple(values)]
            kinds.append((name, kind))
        return kinds

    def use_profile(self, profile: ReferenceProfile) -> None:
        """Start evaluating windows against ``profile``."""
        self.profile = profile
        self.detector = WindowDetector(profile, self.settings)

    def learn_profile(self) -> ReferenceProfile:
        """Build the reference from the warm-up events collected in ``pending``."""
        evs = self.pending
        profile = build_profile(
            self.key[0],
            self.key[1],
            "warmup",
            feature_dicts(features_of(evs)),
            scores_of(evs),
            labels_of(evs),
            latency_of(evs),
            bins=self.bins,
            max_categories=self.max_categories,
            numeric_names=self.numeric_names,
            categorical_names=self.categorical_names,
        )
        self.pending = []
        self.use_profile(profile)
        return profile

    def close_window(self) -> WindowReport:
        """Evaluate the collected window and start a new one."""
        det = self.detector
        assert det is not None
        evs = self.pending
        self.pending = []
        cols, outputs, codes = window_parts(det, evs, self.schema)
        report = det.evaluate(cols, outputs.scores, codes, outputs.latency)
        self.last_time = last_time(evs)
        self.last_report = report
        self.last_outputs = outputs
        self.windows += 1
        return report
