"""The pipeline: bytes in, alert state changes out, and no I/O.

``Pipeline.process_lines`` takes raw JSON lines (from a file or Kafka messages) with their
offsets, validates them, appends events to their model version's window, and whenever a window
is complete runs the detectors on it and turns the findings into alert signals for the
:class:`alerting.state.AlertTracker`. It returns the alert state changes that this input decided;
the caller (``replay``, the Faust agent) delivers them. Every input line is accounted for in
:class:`PipelineStats`: accepted or rejected by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import attrgetter, itemgetter, lt
from typing import Any, Literal, Protocol

from alerting.notify import build_tracker
from alerting.state import AlertTracker
from alerting.types import Signal, Transition
from detectors.performance import ErrorMonitor, ErrorWindow, LabelJoiner, Pending, error_of
from detectors.profile import ReferenceProfile
from detectors.window import Finding, WindowReport
from monitor.config import Settings
from monitor.epochs import epoch_array
from monitor.events import (
    KNOWN_FIELDS,
    Event,
    LabelEvent,
    PredictionEvent,
    Rejection,
    epoch_seconds,
    event_kind,
    parse_event,
    unknown_fields,
)
from monitor.fastdecode import AnyEvent, FastDecoder, FastPrediction
from monitor.streams import (
    FEATURE_STREAM_VERSION,
    ModelStream,
    StreamKey,
    predicted_many,
    predicted_of,
)

ALERT_NAMES = {
    "feature_drift": "FeatureDrift",
    "prediction_drift": "PredictionDrift",
    "data_quality": "DataQuality",
    "latency": "LatencyRegression",
    "performance": "PerformanceDegradation",
}

_STREAM_KEY = itemgetter("model", "model_version")
_EVENT_ID = itemgetter("event_id")
_PREDICTION = itemgetter("prediction")
_TIMESTAMP = itemgetter("timestamp")
#: The same fields of fast-decoded events (:class:`FastPrediction`), read as attributes.
_GETTERS = (_STREAM_KEY, _EVENT_ID, _PREDICTION, _TIMESTAMP)
_FAST_GETTERS = (
    attrgetter("model", "model_version"),
    attrgetter("event_id"),
    attrgetter("prediction"),
    attrgetter("timestamp"),
)
_OFFSET = attrgetter("offset")


def _increasing(positions: Sequence[int]) -> bool:
    """Whether ``positions`` strictly increase (C-level for lists; a range always does)."""
    if isinstance(positions, range):
        return positions.step > 0
    return all(map(lt, positions, islice(positions, 1, None)))


def _is_prediction(ev: object) -> bool:
    """Whether a parse result is a prediction event (not a rejection, feature or label)."""
    if isinstance(ev, FastPrediction):
        return True
    return type(ev) is dict and "prediction" in ev and ev.get("type", "prediction") == "prediction"


@dataclass(slots=True)
class PipelineStats:
    """Counts since start: ``lines`` = ``accepted`` + sum of ``rejected``."""

    lines: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    windows: int = 0
    duplicates: int = 0
    restored: int = 0
    #: Streams rebuilt because another worker advanced their checkpoints (a rebalance).
    stale: int = 0
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)


class WindowObserver(Protocol):
    """Told about every closed window (metrics, traces, the status page).

    Called synchronously inside ``process_*`` once per window, never per event: it must be
    cheap and do no I/O. ``events`` are the window's events, in order.
    """

    def window_closed(
        self, stream: ModelStream, report: WindowReport, events: Sequence[AnyEvent]
    ) -> None:
        """A window of ``stream`` was evaluated (before its alerts are decided)."""

    def error_window(self, stream: ModelStream, window: ErrorWindow) -> None:
        """A window of labelled events of ``stream`` was evaluated."""


def _fmt(x: float) -> str:
    return f"{x:.4g}"


class Pipeline:
    """Parse, window, detect, decide (see module docstring).

    Parameters
    ----------
    settings
        The configuration (window size, budget, rules, ...).
    references
        Reference profiles by (model, model_version); streams without one learn theirs from a
        warm-up.
    tracker
        The alert state machine; a new one from ``settings`` by default.
    checkpoints
        Looks up the last checkpoint of a stream by its group (``model/version``) when the
        stream is first seen, so a restarted worker resumes where it left off.
    checkpointing
        Take checkpoints (see :meth:`take_checkpoints`); the live worker does, replay does not.
    observers
        Told about every closed window (:class:`WindowObserver`), e.g. metrics and traces.
    foreign_checkpoints
        Like ``checkpoints``, but ``None`` for a checkpoint this process stored itself (the
        worker's table can tell without decoding it); checked for every batch (see
        :meth:`_current`). Default: ``checkpoints``.

    Input positions are per *source* (a file, or one Kafka topic partition) and only grow; input
    at or before a position a stream has already applied (checkpointed, or collected since) is a
    re-delivery and is skipped, which makes at-least-once delivery idempotent for the state:
    after a restart (from the checkpoint) and after a rebalance that seeks back to the
    committed offset within the same process.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        references: Mapping[StreamKey, ReferenceProfile] | None = None,
        tracker: AlertTracker | None = None,
        checkpoints: Callable[[str], Mapping[str, Any] | None] | None = None,
        checkpointing: bool = False,
        observers: Sequence[WindowObserver] = (),
        foreign_checkpoints: Callable[[str], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.observers = list(observers)
        self.references = dict(references or {})
        self.tracker = tracker or build_tracker(
            self.settings.rule_set(), self.settings.notifications
        )
        self.stats = PipelineStats()
        self.streams: dict[StreamKey, ModelStream] = {}
        self._by_index: list[ModelStream] = []
        lab = self.settings.labels
        self.joiner = LabelJoiner(lab.ttl, lab.max_pending, predicted_many)
        self.rejections: list[Rejection] = []
        self.keep_rejections = 1000
        self.checkpoints = checkpoints
        self.foreign_checkpoints = foreign_checkpoints or checkpoints
        self.checkpointing = checkpointing
        self.position_shift = 0
        self._checkpoints: dict[str, dict[str, Any]] = {}
        self._detector_settings = self.settings.detector_settings()
        #: Decodes input with the feature schema of every stream compiled in (the hot path).
        self.decoder = FastDecoder(self.settings.events.max_bytes)

    # -- input -------------------------------------------------------------------------------

    def process_lines(
        self, lines: Sequence[bytes], first_offset: int = 0, source: str = ""
    ) -> list[Transition]:
        """Process consecutive input lines; ``first_offset`` is the offset of ``lines[0]``.

        Lines are decoded by :mod:`monitor.fastdecode` first; the few it leaves to pydantic
        (anything but a plain prediction) are validated one by one with their reason.
        """
        max_bytes = self.settings.events.max_bytes
        fast = self.decoder.lines(lines)
        positions = range(first_offset, first_offset + len(lines))
        if None not in fast:
            return self.process_events(fast, positions, source, predictions=True)  # type: ignore[arg-type]
        events = [
            ev if ev is not None else parse_event(raw, pos, max_bytes)
            for ev, raw, pos in zip(fast, lines, positions, strict=True)
        ]
        return self.process_events(events, positions, source)

    def process_events(
        self,
        events: Sequence[AnyEvent | Rejection],
        positions: Sequence[int],
        source: str = "",
        predictions: bool = False,
    ) -> list[Transition]:
        """Process already-parsed events (or rejections) at their input positions.

        Positions increase within a source. Runs of consecutive predictions take the batch
        path (:meth:`_predictions`); ``predictions=True`` promises that every event is a
        prediction without unknown fields (what :mod:`monitor.fastdecode` returns).
        """
        out: list[Transition] = []
        if predictions:
            if events:
                self._predictions(events, positions, source, out, checked=True)  # type: ignore[arg-type]
            return out
        run = 0  # start of the current run of predictions
        for k, ev in enumerate(events):
            if _is_prediction(ev):
                continue
            if run < k:
                self._predictions(events[run:k], positions[run:k], source, out)  # type: ignore[arg-type]
            run = k + 1
            if isinstance(ev, Rejection):
                self.reject(ev)
            elif not isinstance(ev, FastPrediction):  # always: those are predictions
                self.process_event(ev, positions[k], out, source)
        if run < len(events):
            self._predictions(events[run:], positions[run:], source, out)  # type: ignore[arg-type]
        return out

    def _predictions(
        self,
        events: Sequence[PredictionEvent],
        positions: Sequence[int],
        source: str,
        out: list[Transition],
        checked: bool = False,
    ) -> None:
        """Process a run of prediction events: what :meth:`process_event` does to each, with
        the per-event work done by C-level calls on the whole run, stream by stream."""
        n = len(events)
        stats = self.stats
        stats.lines += n
        stats.accepted += n
        stats.events["prediction"] += n
        fast = checked or all(issubclass(t, FastPrediction) for t in set(map(type, events)))
        if not fast:
            known = KNOWN_FIELDS["prediction"]
            extra = sum(
                1 for e in events if type(e) is dict and len(e) > 6 and not known.issuperset(e)
            )
            if extra:
                stats.warnings["unknown_field"] += extra
        getters = _FAST_GETTERS if fast else _GETTERS
        keys = list(map(getters[0], events))
        first = keys[0]
        if keys.count(first) == n:
            self._stream_predictions(first, events, positions, source, out, getters)
            return
        groups: dict[StreamKey, list[int]] = {}
        for k, key in enumerate(keys):
            groups.setdefault(key, []).append(k)
        mark = len(out)
        for key, idx in groups.items():
            self._stream_predictions(
                key, [events[k] for k in idx], [positions[k] for k in idx], source, out, getters
            )
        # Streams are processed one after the other; report their changes in input order.
        out[mark:] = sorted(out[mark:], key=_OFFSET)

    def _stream_predictions(
        self,
        key: StreamKey,
        events: Sequence[PredictionEvent],
        positions: Sequence[int],
        source: str,
        out: list[Transition],
        getters: tuple[Callable[[Any], Any], ...],
    ) -> None:
        _, event_id, prediction, timestamp = getters
        stream = self.streams.get(key)
        stream = self._new_stream(key) if stream is None else self._current(stream)
        floor = self._floor(stream, source)
        if positions[0] <= floor or not _increasing(positions):
            # Re-delivered input: before what this stream applied, or a message twice in one
            # batch (a rebalance seeks back while the worker still buffers it).
            keep = []
            for k, pos in enumerate(positions):
                if pos > floor:
                    keep.append(k)
                    floor = pos
            self.stats.duplicates += len(positions) - len(keep)
            events = [events[k] for k in keep]
            positions = [positions[k] for k in keep]
        n = len(events)
        i = 0
        joiner = self.joiner
        while i < n:
            pending = stream.pending
            if not pending:
                stream.offsets = (positions[i], positions[i])
            j = min(n, i + stream.capacity - len(pending))
            take = events[i:j]
            stream.events += j - i
            stream.note(source, positions[i])
            stream.note(source, positions[j - 1])
            joiner.add_many(
                map(event_id, take),
                stream.index,
                map(prediction, take),
                epoch_array(list(map(timestamp, take))),
            )
            for ev in reversed(take):
                versions = ev.get("versions")
                if versions:
                    stream.versions = versions
                    break
            pending.extend(take)
            i = j
            if len(pending) >= stream.capacity:
                self._window_full(stream, positions[j - 1], out)

    def safe_position(self, source: str) -> int | None:
        """Input of ``source`` before this position is fully reflected in checkpoints (or had
        no effect on state); ``None`` when nothing of ``source`` awaits a checkpoint."""
        pending = [s.unsaved_from[source] for s in self._by_index if source in s.unsaved_from]
        return min(pending) if pending else None

    def take_checkpoints(self) -> dict[str, dict[str, Any]]:
        """Checkpoints taken since the last call, by stream group (only the newest per group).

        A checkpoint is taken when a window closes or the reference is learned: at that moment
        the stream holds no collected events, so everything it has seen is in its state.
        """
        out = self._checkpoints
        self._checkpoints = {}
        return out

    def _checkpoint(self, stream: ModelStream) -> None:
        if self.checkpointing:
            self._checkpoints[stream.group] = self.snapshot_stream(stream)

    def snapshot_stream(self, stream: ModelStream) -> dict[str, Any]:
        """JSON-friendly checkpoint of one stream; marks its noted input as saved.

        Only valid while the stream holds no collected window events (see
        :meth:`take_checkpoints`); events collected afterwards are not acknowledged until the
        next checkpoint, so after a restart they are delivered again.
        """
        assert not stream.pending, "checkpoint with collected events"
        stream.saved()
        errors = stream.errors
        return {
            "format": 1,
            "key": list(stream.key),
            "profile": (
                stream.profile.json_dict
                if stream.profile is not None and stream.profile.source == "warmup"
                else None
            ),
            "profile_id": stream.profile.id if stream.profile is not None else None,
            "windows": stream.windows,
            "events": stream.events,
            "labels": stream.labels,
            "versions": stream.versions,
            "last_time": stream.last_time,
            "applied": stream.applied,
            "detector": stream.detector.state() if stream.detector is not None else None,
            "errors": errors.state() if errors is not None else None,
            "alerts": self.tracker.snapshot_group(stream.group),
            "label_alerts": self.tracker.snapshot_group(stream.group + "/labels"),
        }

    def restore_stream(self, stream: ModelStream, state: Mapping[str, Any]) -> None:
        """Load a checkpoint written by :meth:`snapshot_stream` into a new stream."""
        raw_profile = state.get("profile")
        if raw_profile is not None:
            stream.use_profile(ReferenceProfile.model_validate(raw_profile))
            self._compile(stream)
        elif stream.profile is None and state.get("profile_id"):
            raise ValueError(
                f"checkpoint of {stream.group} needs reference {state['profile_id']}, "
                "which is not loaded"
            )
        if stream.detector is not None and state.get("detector") is not None:
            stream.detector.load_state(state["detector"])
        stream.windows = int(state["windows"])
        stream.events = int(state["events"])
        stream.labels = int(state.get("labels", 0))
        stream.versions = dict(state.get("versions") or {})
        stream.last_time = float(state["last_time"])
        stream.applied = {str(k): int(v) for k, v in state["applied"].items()}
        if state.get("errors") is not None:
            stream.errors = self._error_monitor(stream)
            stream.errors.load_state(state["errors"])
        self.tracker.restore_group(stream.group, state.get("alerts") or {})
        self.tracker.restore_group(stream.group + "/labels", state.get("label_alerts") or {})
        self.stats.restored += 1

    def reject(self, rejection: Rejection) -> None:
        """Count an input that is not an event (and keep the first few for the report)."""
        self.stats.lines += 1
        self.stats.rejected[rejection.reason.value] += 1
        if len(self.rejections) < self.keep_rejections:
            self.rejections.append(rejection)

    def process_event(
        self, event: Event, offset: int, out: list[Transition], source: str = ""
    ) -> None:
        """Route one valid event; appends decided state changes to ``out``."""
        stats = self.stats
        stats.lines += 1
        stats.accepted += 1
        kind = event_kind(event) or "prediction"
        stats.events[kind] += 1
        if len(event) > 6 and unknown_fields(event, kind):
            stats.warnings["unknown_field"] += 1
        if kind == "label":
            self._label(event, offset, out, source)  # type: ignore[arg-type]
            return
        if kind == "prediction":
            key = (event["model"], event["model_version"])  # type: ignore[typeddict-item]
        else:
            key = (event["model"], FEATURE_STREAM_VERSION)
        stream = self.streams.get(key)
        stream = self._new_stream(key) if stream is None else self._current(stream)
        if offset <= self._floor(stream, source):
            stats.duplicates += 1
            return
        stream.events += 1
        stream.note(source, offset)
        if kind == "prediction":
            self.joiner.add(
                event["event_id"],
                Pending(stream.index, predicted_of(event["prediction"]), event["timestamp"]),  # type: ignore[typeddict-item]
            )
        versions = event.get("versions")
        if versions:
            stream.versions = versions  # type: ignore[assignment]
        pending = stream.pending
        if not pending:
            stream.offsets = (offset, offset)
        pending.append(event)  # type: ignore[arg-type]
        if len(pending) >= stream.capacity:
            self._window_full(stream, offset, out)

    def _window_full(self, stream: ModelStream, offset: int, out: list[Transition]) -> None:
        """``stream`` collected what it needs (warm-up or a window), the last at ``offset``."""
        stream.offsets = (stream.offsets[0], offset)
        if stream.detector is None:
            stream.learn_profile()
            self._compile(stream)
            self._checkpoint(stream)
            return
        window = stream.pending
        report = stream.close_window()
        self.stats.windows += 1
        for observer in self.observers:
            observer.window_closed(stream, report, window)
        stream.last_outputs = None
        self._decide(stream, report, offset, out)
        self.joiner.trim(stream.last_time)
        self._checkpoint(stream)

    def _floor(self, stream: ModelStream, source: str) -> int:
        """Input of ``source`` at or before this position is a re-delivery.

        The live worker (``checkpointing``) counts everything the stream applied, checkpointed
        or not: Kafka re-delivers after a rebalance within the process. Without checkpoints
        (replay) positions restart with every file fed to the pipeline, so nothing is skipped.
        """
        if self.checkpointing:
            return stream.last_position(source)
        return stream.applied.get(source, -1)

    def _current(self, stream: ModelStream) -> ModelStream:
        """``stream``, or its successor rebuilt from the changelog when another worker
        advanced it (live worker only).

        A rebalance may give this worker's partitions to another worker and later give them
        back; meanwhile the other worker's checkpoints move past what this one remembers. A
        checkpoint whose input positions lie beyond the stream's own is such a one: the stale
        stream is dropped and a new one is restored from the checkpoint (input after it was
        never acknowledged, so Kafka delivers it again). The new stream takes the old one's
        slot, so predictions waiting in the label join are graded by it. Costs one table
        read per batch and stream (:attr:`foreign_checkpoints`, which skips this worker's own).
        """
        if self.foreign_checkpoints is None or not self.checkpointing:
            return stream
        state = self.foreign_checkpoints(stream.group)
        if not state:
            return stream
        applied = state.get("applied") or {}
        if all(int(pos) <= stream.last_position(src) for src, pos in applied.items()):
            return stream
        del self.streams[stream.key]
        self.stats.stale += 1
        return self._new_stream(stream.key)

    def _new_stream(self, key: StreamKey) -> ModelStream:
        cfg = self.settings
        old = next((s.index for s in self._by_index if s.key == key), None)
        stream = ModelStream(
            key=key,
            index=len(self._by_index) if old is None else old,
            settings=self._detector_settings,
            warmup_events=cfg.reference.warmup_events,
            bins=cfg.reference.bins,
            max_categories=cfg.reference.max_categories,
            numeric_names=cfg.features.numeric or None,
            categorical_names=cfg.features.categorical or None,
        )
        ref = self.references.get(key)
        if ref is not None:
            stream.use_profile(ref)
            self._compile(stream)
        self.streams[key] = stream
        if old is None:
            self._by_index.append(stream)
        else:
            self._by_index[old] = stream
        if self.checkpoints is not None:
            state = self.checkpoints(stream.group)
            if state is not None:
                self.restore_stream(stream, state)
        return stream

    def _compile(self, stream: ModelStream) -> None:
        """Compile the stream's feature schema into the decoder (see ``FastDecoder``).

        A categorical feature whose reference vocabulary looks closed (no rare category and
        no value seen only once, so new values are improbable) is compiled as that set of
        strings: the decoder then returns the reference's own string objects, with no new
        string to allocate and hash per event. A value outside the set sends its event to the
        general decoder (and its window to the general column path), which counts it as
        unseen.
        """
        det = stream.detector
        if det is None:
            return
        kinds: list[tuple[str, Any]] = []
        for name, index in zip(det.categorical_names, det.indexes, strict=False):
            values = [k for k in index if k is not None]
            types = set(map(type, values))
            if len(types) > 1 or not types <= {str, bool}:
                return  # a feature of mixed kinds: every window takes the general path
            kind: Any = types.pop() if types else str
            ref = det.profile.categorical[name]
            if kind is str and values and not ref.rare and not ref.singletons:
                kind = Literal[tuple(values)]
            kinds.append((name, kind))
        stream.schema = self.decoder.compile(det.numeric_names, kinds)

    def _error_monitor(self, stream: ModelStream) -> ErrorMonitor:
        det = stream.detector
        lab = self.settings.labels
        alpha = det.alpha if det is not None else 1e-8
        ref = stream.profile.error if stream.profile is not None else None
        return ErrorMonitor(lab.window, alpha, ref, lab.warmup, self.settings.drift.change_clear_z)

    def _label(self, event: LabelEvent, offset: int, out: list[Transition], source: str) -> None:
        found = self.joiner.pop(event["event_id"])
        if found is None:
            return
        stream = self._by_index[found.stream]
        if offset <= self._floor(stream, source):
            self.stats.duplicates += 1
            return
        graded = error_of(found.predicted, event["label"])
        if graded is None:
            self.stats.warnings["label_type_mismatch"] += 1
            return
        if stream.errors is None:
            stream.errors = self._error_monitor(stream)
        stream.labels += 1
        stream.note(source, offset)
        window = stream.errors.add(*graded)
        if window is None:
            return
        for observer in self.observers:
            observer.error_window(stream, window)
        now = epoch_seconds(event["timestamp"])
        signals = []
        if window.finding is not None:
            signals.append(self._signal(stream, window.finding, (offset, offset)))
        out.extend(
            self._record(self.tracker.evaluate(stream.group + "/labels", now, signals, offset))
        )

    # -- decisions ---------------------------------------------------------------------------

    def _decide(
        self, stream: ModelStream, report: WindowReport, offset: int, out: list[Transition]
    ) -> None:
        signals = [self._signal(stream, f, stream.offsets) for f in report.findings]
        out.extend(
            self._record(self.tracker.evaluate(stream.group, stream.last_time, signals, offset))
        )

    def _record(self, transitions: list[Transition]) -> list[Transition]:
        for t in transitions:
            self.stats.alerts[(t.alertname, t.state.value)] += 1
        return transitions

    def _signal(self, stream: ModelStream, f: Finding, window: tuple[int, int]) -> Signal:
        model, version = stream.key
        alertname = ALERT_NAMES[f.kind]
        labels: list[tuple[str, str]] = [("model", model), ("model_version", version)]
        if f.kind in {"feature_drift", "data_quality"}:
            labels.append(("feature", f.subject))
        if f.kind == "data_quality":
            labels.append(("check", f.check))
        if f.kind == "prediction_drift":
            labels.append(("output", f.subject))
        if f.kind == "performance":
            labels.append(("metric", f.statistic))
        rule = self.tracker.rules.rule(alertname)
        # Input positions may pack more than an offset (the Kafka adapter packs the index in
        # an envelope below ``position_shift`` bits); people read offsets.
        first, last = window[0] >> self.position_shift, window[1] >> self.position_shift
        profile_id = stream.profile.id if stream.profile is not None else ""
        what = {
            "feature_drift": f"Feature {f.subject} of {model} {version} drifted",
            "prediction_drift": f"The {f.subject} output of {model} {version} drifted",
            "data_quality": (
                f"Data-quality check {f.check} fails on {f.subject} of {model} {version}"
            ),
            "latency": f"Latency of {model} {version} regressed",
            "performance": f"{f.statistic} of {model} {version} rose",
        }[f.kind]
        ann = {
            "summary": rule.summary or what + ".",
            "description": (
                f"{what}: {f.statistic} {_fmt(f.value)} against threshold {_fmt(f.threshold)} "
                f"in events {first}-{last} (reference {profile_id})."
            ),
            "statistic": f.statistic,
            "value": _fmt(f.value),
            "threshold": _fmt(f.threshold),
            "reference_id": profile_id,
            "window_offsets": f"{first}-{last}",
        }
        for k, v in f.details:
            ann[k] = _fmt(v)
        vers = stream.versions
        for name in ("code", "data", "features"):
            if name in vers:
                ann[f"{name}_version"] = vers[name]
        return Signal(alertname, tuple(labels), ann)
