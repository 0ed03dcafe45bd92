"""The pipeline: bytes in, alert state changes out, and no I/O.

``Pipeline.process_lines`` takes raw JSON lines (from a file or Kafka messages) with their
offsets, validates them, appends events to their model version's window, and whenever a window
is complete runs the detectors on it and turns the findings into alert signals for the
:class:`alerting.state.AlertTracker`. It returns the alert state changes that this input decided;
the caller (``replay``, the Faust agent) delivers them. Every input line is accounted for in
:class:`PipelineStats`: accepted or rejected by reason.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from operator import attrgetter, itemgetter, lt
from typing import Any

from alerting.notify import build_tracker
from alerting.state import AlertTracker
from alerting.types import Signal, Transition
from detectors.performance import ErrorMonitor, LabelJoiner, Pending, error_of
from detectors.profile import ReferenceProfile
from detectors.window import Finding, WindowReport
from monitor.admission import EventClock
from monitor.checkpointing import Checkpoints
from monitor.collected import STATE_MARGIN
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
from monitor.limits import MISSING, Admission, stream_key
from monitor.pipeline_types import PipelineStats, WindowObserver
from monitor.signals import signal_of
from monitor.streams import (
    ModelStream,
    StreamKey,
    predicted_many,
    predicted_of,
)

__all__ = ["Pipeline", "PipelineStats", "WindowObserver"]

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


class Pipeline(Admission, Checkpoints):
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
    on_evict
        Also told every stream evicted to make room (``limits``), after the observers.

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
        on_evict: Sequence[Callable[[ModelStream], None]] = (),
    ) -> None:
        self.settings = settings or Settings()
        self.observers = list(observers)
        self.on_evict = list(on_evict)
        self.references = dict(references or {})
        self.tracker = tracker or build_tracker(
            self.settings.rule_set(), self.settings.notifications
        )
        self.stats = PipelineStats()
        #: Least recently active first (see :meth:`_touch`).
        self.streams: OrderedDict[StreamKey, ModelStream] = OrderedDict()
        #: Streams by :attr:`ModelStream.index`, the number the label join remembers; an index
        #: is never given to another stream, so a late label cannot grade the wrong one.
        self._by_index: dict[int, ModelStream] = {}
        self._next_index = 0
        self._warming = 0  # streams holding a warm-up reservation
        ev = self.settings.events
        #: Judges event times (``events.max_future_skew``, ``events.max_age``).
        self.clock = EventClock(ev.max_future_skew, ev.max_age)
        lab = self.settings.labels
        self.joiner = LabelJoiner(lab.ttl, lab.max_pending, predicted_many)
        self.rejections: list[Rejection] = []
        self.keep_rejections = 1000
        self.checkpoints = checkpoints
        self.foreign_checkpoints = foreign_checkpoints or checkpoints
        self.checkpointing = checkpointing
        self.position_shift = 0
        self._checkpoints: dict[str, dict[str, Any] | None] = {}
        self._detector_settings = self.settings.detector_settings()
        #: A checkpoint is one changelog record (``kafka.max_message_bytes`` at most).
        self.max_collected_bytes = max(
            self.settings.kafka.max_message_bytes - STATE_MARGIN, STATE_MARGIN
        )
        #: Decodes input with the feature schema of every stream compiled in (the hot path).
        self.decoder = FastDecoder(self.settings.events.max_bytes)

    # -- input -------------------------------------------------------------------------------

    def process_lines(
        self,
        lines: Sequence[bytes],
        first_offset: int = 0,
        source: str = "",
        out: list[Transition] | None = None,
        times: Sequence[float] | float | None = None,
    ) -> list[Transition]:
        """Process consecutive input lines; ``first_offset`` is the offset of ``lines[0]``;
        ``times``: the Kafka timestamp of each line (or all), see :meth:`admit`; ``out``: see
        :meth:`process_events`.

        Lines are decoded by :mod:`monitor.fastdecode` first; the few it leaves to pydantic
        (anything but a plain prediction) are validated one by one with their reason.
        """
        max_bytes = self.settings.events.max_bytes
        fast = self.decoder.lines(lines)
        positions = range(first_offset, first_offset + len(lines))
        if None not in fast:
            return self.process_events(fast, positions, source, True, out, times)  # type: ignore[arg-type]
        events = [
            ev if ev is not None else parse_event(raw, pos, max_bytes)
            for ev, raw, pos in zip(fast, lines, positions, strict=True)
        ]
        return self.process_events(events, positions, source, False, out, times)

    def process_events(
        self,
        events: Sequence[AnyEvent | Rejection],
        positions: Sequence[int],
        source: str = "",
        predictions: bool = False,
        out: list[Transition] | None = None,
        times: Sequence[float] | float | None = None,
        admitted: bool = False,
    ) -> list[Transition]:
        """Process already-parsed events (or rejections) at their input positions.

        Positions increase within a source. Runs of consecutive predictions take the batch
        path (:meth:`_predictions`); ``predictions=True`` promises that every event is a
        prediction without unknown fields (what :mod:`monitor.fastdecode` returns). Events
        go through :meth:`admit` first (with ``times``) unless the caller did that
        (``admitted``). The state changes decided are appended to ``out`` (a new list by
        default) and returned: if processing raises, the caller still has those decided before.
        """
        if out is None:
            out = []
        if not admitted:
            events, positions, _ = self.admit(events, positions, source, times)
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
        self._touch(stream)
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
        key: StreamKey = stream_key(event)  # type: ignore[assignment]  # not a label
        stream = self.streams.get(key)
        stream = self._new_stream(key) if stream is None else self._current(stream)
        self._touch(stream)
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
        window = stream.pending
        if stream.detector is None:
            stream.learn_profile()
            self._release(stream)
            self._compile(stream)
            self._keep_for_labels(stream, window)
            self._checkpoint(stream)
            return
        report = stream.close_window()
        self.stats.windows += 1
        for observer in self.observers:
            observer.window_closed(stream, report, window)
        stream.last_outputs = None
        self._decide(stream, report, offset, out)
        self.joiner.trim(stream.last_time)
        self._keep_for_labels(stream, window)
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

    def _new_stream(
        self, key: StreamKey, index: int | None = None, state: Any = MISSING
    ) -> ModelStream:
        """A new stream for ``key`` (restored from its checkpoint if there is one: ``state``
        when the caller read it already); ``index``: the slot of the stream it replaces."""
        cfg = self.settings
        if index is None:
            index = self._next_index
            self._next_index += 1
        stream = ModelStream(
            key=key,
            index=index,
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
        self._by_index[index] = stream
        stream.touched = self.clock.latest
        if state is MISSING:
            state = self.checkpoints(stream.group) if self.checkpoints is not None else None
        if state is not None:
            self.restore_stream(stream, state)
        if stream.detector is None:
            stream.reserved = True
            self._warming += 1
        return stream

    def _evicted(self, stream: ModelStream) -> None:
        self.stats.evicted += 1
        if stream.pending:
            self.stats.warnings["evicted_events"] += len(stream.pending)

    def _compile(self, stream: ModelStream) -> None:
        """Compile the stream's feature schema into the decoder (see ``FastDecoder`` and
        :meth:`ModelStream.schema_kinds`)."""
        det = stream.detector
        kinds = stream.schema_kinds()
        if det is not None and kinds is not None:
            stream.schema = self.decoder.compile(det.numeric_names, kinds)

    def _error_monitor(self, stream: ModelStream) -> ErrorMonitor:
        det = stream.detector
        lab = self.settings.labels
        alpha = det.alpha if det is not None else 1e-8
        ref = stream.profile.error if stream.profile is not None else None
        return ErrorMonitor(lab.window, alpha, ref, lab.warmup, self.settings.drift.change_clear_z)

    def _label(self, event: LabelEvent, offset: int, out: list[Transition], source: str) -> None:
        joiner = self.joiner
        found = joiner.take(event["event_id"])
        if found is None:
            joiner.unmatched += 1
            return
        stream = self._by_index.get(found.stream)
        if stream is None:  # its prediction's stream was evicted since
            joiner.joined += 1
            self.stats.warnings["label_stream_evicted"] += 1
            return
        self._touch(stream)
        if offset <= self._floor(stream, source):
            # Re-delivered after a restart (its prediction came back from the checkpoint):
            # neither joined nor unmatched again.
            self.stats.duplicates += 1
            return
        joiner.joined += 1
        graded = error_of(found.predicted, event["label"])
        if graded is None:
            self.stats.warnings["label_type_mismatch"] += 1
            return
        first = stream.errors is None
        if stream.errors is None:
            stream.errors = self._error_monitor(stream)
        stream.labels += 1
        stream.note(source, offset)
        window = stream.errors.add(*graded)
        if first:
            self._first_label(stream, event["event_id"], found)
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
        return signal_of(stream, f, window, self.tracker.rules, self.position_shift)
