"""The limits of a :class:`~monitor.pipeline.Pipeline`: which events and streams it takes.

:class:`Admission` is the part of the pipeline that decides, before any state changes, what an
input may add: event times within ``events.max_future_skew``/``max_age`` of a trusted clock
(:class:`~monitor.admission.EventClock`), and new streams within ``limits.max_streams`` and
``limits.max_warmup_events``, evicting streams idle for ``limits.stream_idle_ttl`` to make room.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any

from alerting.state import AlertTracker
from detectors.profile import ReferenceProfile
from monitor.admission import EventClock, event_seconds
from monitor.config import Settings
from monitor.events import Event, Reason, Rejection, event_kind
from monitor.fastdecode import AnyEvent, FastPrediction
from monitor.streams import FEATURE_STREAM_VERSION, ModelStream, StreamKey

_KEY = attrgetter("model", "model_version")
_TIMESTAMP = attrgetter("timestamp")
#: ``state`` of :meth:`Admission._new_stream` when the caller did not read the checkpoint.
MISSING: Any = object()


def stream_key(event: Event) -> StreamKey | None:
    """The stream a pydantic-validated event goes to (``None``: a label, which has none)."""
    kind = event_kind(event) or "prediction"
    if kind == "prediction":
        return (event["model"], event["model_version"])  # type: ignore[typeddict-item]
    if kind == "feature":
        return (event["model"], FEATURE_STREAM_VERSION)
    return None


class Admission:
    """Admission of events and streams (mixed into :class:`~monitor.pipeline.Pipeline`,
    which provides the attributes below and ``_new_stream``)."""

    settings: Settings
    references: dict[StreamKey, ReferenceProfile]
    tracker: AlertTracker
    checkpoints: Callable[[str], Mapping[str, Any] | None] | None
    observers: list[Any]
    on_evict: list[Callable[[ModelStream], None]]
    streams: OrderedDict[StreamKey, ModelStream]
    _by_index: dict[int, ModelStream]
    _warming: int
    clock: EventClock

    def reject(self, rejection: Rejection) -> None:
        raise NotImplementedError

    def _evicted(self, stream: ModelStream) -> None:
        raise NotImplementedError

    def _new_stream(
        self, key: StreamKey, index: int | None = None, state: Any = MISSING
    ) -> ModelStream:
        raise NotImplementedError

    def admit(
        self,
        events: Sequence[AnyEvent | Rejection],
        positions: Sequence[int],
        source: str = "",
        times: Sequence[float] | float | None = None,
    ) -> tuple[Sequence[AnyEvent | Rejection], Sequence[int], list[Rejection]]:
        """The events the pipeline takes, their positions, and rejections of the others.

        An event whose time is outside ``events.max_future_skew``/``max_age`` of its reference
        (``times``: the Kafka message timestamp per event or for all, NaN where none; else the
        input's watermark, see :class:`~monitor.admission.EventClock`) is ``clock_skew``. A
        new model version beyond ``limits.max_streams`` is ``too_many_streams``; one that needs
        a warm-up beyond ``limits.max_warmup_events`` is ``warmup_full``. Rejections are
        counted; the ``offset`` of each is its event's position. The streams of the events
        taken exist when it returns. Rejections in ``events`` pass through.
        """
        if not events:
            return events, positions, []
        if all(issubclass(t, FastPrediction) for t in set(map(type, events))):
            at: list[int] | None = None
            stamps = list(map(_TIMESTAMP, events))
            keys: list[StreamKey | None] = list(map(_KEY, events))
        else:
            at = [k for k, ev in enumerate(events) if not isinstance(ev, Rejection)]
            if not at:
                return events, positions, []
            stamps = [events[k]["timestamp"] for k in at]  # type: ignore[index]
            keys = [stream_key(events[k]) for k in at]  # type: ignore[arg-type]
        if times is not None and not isinstance(times, float | int) and at is not None:
            times = [times[k] for k in at]
        bad: dict[int, Rejection] = {}
        for j, skew in self.clock.judge(event_seconds(stamps), source, times):
            k = j if at is None else at[j]
            bad[k] = Rejection(Reason.CLOCK_SKEW, skew, positions[k])
        streams = self.streams
        first = keys[0]
        if first is not None and first in streams and keys.count(first) == len(keys):
            self._touch(streams[first])
        else:
            # Streams with events here are active: none of them may make room for another.
            for key in dict.fromkeys(keys):
                if key is not None and key in streams:
                    self._touch(streams[key])
            refused: dict[StreamKey, tuple[Reason, str]] = {}
            for j, key in enumerate(keys):
                if key is None or key in streams:
                    continue
                k = j if at is None else at[j]
                if k in bad:
                    continue
                why = refused.get(key) or self._open(key)
                if why is not None:
                    refused[key] = why
                    bad[k] = Rejection(why[0], why[1], positions[k])
        if not bad:
            return events, positions, []
        rejections = [bad[k] for k in sorted(bad)]
        for rejection in rejections:
            self.reject(rejection)
        keep = [k for k in range(len(events)) if k not in bad]
        return [events[k] for k in keep], [positions[k] for k in keep], rejections

    def _open(self, key: StreamKey) -> tuple[Reason, str] | None:
        """Make the stream of a new ``key`` within ``limits`` (evicting idle streams), or say
        why not."""
        lim = self.settings.limits
        group = f"{key[0]}/{key[1]}"
        state = self.checkpoints(group) if self.checkpoints is not None else None
        # A checkpoint without a reference holds a warm-up's collected events.
        warmup = key not in self.references and (state is None or not state.get("profile_id"))
        size = self.settings.reference.warmup_events
        while len(self.streams) >= lim.max_streams or (
            warmup and (self._warming + 1) * size > lim.max_warmup_events
        ):
            if self._evict_idle():
                continue
            if len(self.streams) >= lim.max_streams:
                return Reason.TOO_MANY_STREAMS, (
                    f"{group} would be stream {len(self.streams) + 1} of limits.max_streams "
                    f"{lim.max_streams}, and none has been idle for limits.stream_idle_ttl"
                )
            return Reason.WARMUP_FULL, (
                f"{group} needs a warm-up of {size} events while {self._warming} model "
                f"versions warm up (limits.max_warmup_events {lim.max_warmup_events})"
            )
        self._new_stream(key, state=state)
        return None

    def _touch(self, stream: ModelStream) -> None:
        """``stream`` accepted an event now: it is the most recently active (so
        :attr:`streams` stays ordered by :attr:`ModelStream.touched`)."""
        stream.touched = self.clock.latest
        if self.streams.get(stream.key) is stream:
            self.streams.move_to_end(stream.key)

    def _evict_idle(self) -> bool:
        """Evict the stream idle the longest if it has been idle for ``stream_idle_ttl``;
        whether one was. Streams with active alerts are passed over (and looked at again
        after another ``stream_idle_ttl``): an alert never disappears unannounced."""
        limit = self.clock.latest - self.settings.limits.stream_idle_ttl
        tracker = self.tracker
        for _ in range(len(self.streams)):
            stream = next(iter(self.streams.values()))
            if stream.touched >= limit:
                return False
            if tracker.has_alerts(stream.group) or tracker.has_alerts(stream.group + "/labels"):
                self._touch(stream)
                continue
            self._forget(stream)
            self._evicted(stream)
            return True
        return False

    def _forget(self, stream: ModelStream) -> None:
        """Drop ``stream`` and its alerts without a word (it is in its checkpoint); its
        observers and ``on_evict`` are told."""
        self._remove(stream)
        self.tracker.forget_group(stream.group)
        self.tracker.forget_group(stream.group + "/labels")
        for observer in self.observers:
            hook = getattr(observer, "stream_evicted", None)
            if hook is not None:
                hook(stream)
        for callback in self.on_evict:
            callback(stream)

    def _remove(self, stream: ModelStream) -> None:
        """Take ``stream`` out of the pipeline (its warm-up reservation too)."""
        del self.streams[stream.key]
        if self._by_index.get(stream.index) is stream:
            del self._by_index[stream.index]
        self._release(stream)

    def _release(self, stream: ModelStream) -> None:
        if stream.reserved:
            stream.reserved = False
            self._warming -= 1
