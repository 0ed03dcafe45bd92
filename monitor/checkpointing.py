"""Checkpoints of the pipeline's streams: when they are taken, what they hold, how they return.

A stream's checkpoint is taken when it learns its reference and when a window closes: then it
holds no collected events and its detector state says everything it has seen. The worker
acknowledges a message once every stream it touched has checkpointed past it
(:meth:`Checkpoints.safe_position`). A stream still collecting (a warm-up that never finishes, a
window that fills slowly) would hold its partition's acknowledgements for good, so the worker
asks for :meth:`Checkpoints.checkpoint_collected` when a partition has too many unacknowledged
messages: those streams' checkpoints then carry their collected events
(:mod:`monitor.collected`), bounded by ``warmup_events`` or ``window.size`` per stream and by
the changelog's record size.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from alerting.state import AlertTracker
from alerting.types import Transition
from detectors.performance import ErrorMonitor, LabelJoiner, Pending
from detectors.profile import ReferenceProfile
from monitor.admission import event_seconds
from monitor.collected import collected_size, decode_collected, encode_collected
from monitor.config import Settings
from monitor.events import epoch_seconds
from monitor.limits import MISSING
from monitor.pipeline_types import PipelineStats
from monitor.streams import (
    ModelStream,
    StreamKey,
    ids_of,
    predicted_many,
    predicted_of,
    predictions_of,
    timestamps_of,
)


class Checkpoints:
    """Checkpointing (mixed into :class:`~monitor.pipeline.Pipeline`, which provides the
    attributes below, ``_compile``, ``_error_monitor``, ``_remove`` and ``_new_stream``)."""

    streams: OrderedDict[StreamKey, ModelStream]
    tracker: AlertTracker
    stats: PipelineStats
    joiner: LabelJoiner
    checkpointing: bool
    foreign_checkpoints: Callable[[str], Mapping[str, Any] | None] | None
    _checkpoints: dict[str, dict[str, Any] | None]
    settings: Settings
    checkpoints: Callable[[str], Mapping[str, Any] | None] | None
    #: Most bytes of collected events one checkpoint may carry (see :meth:`checkpoint_collected`).
    max_collected_bytes: int = 8 << 20

    def _compile(self, stream: ModelStream) -> None:
        raise NotImplementedError

    def _error_monitor(self, stream: ModelStream) -> ErrorMonitor:
        raise NotImplementedError

    def _remove(self, stream: ModelStream) -> None:
        raise NotImplementedError

    def _new_stream(
        self, key: StreamKey, index: int | None = None, state: Any = ...
    ) -> ModelStream:
        raise NotImplementedError

    def safe_position(self, source: str) -> int | None:
        """Input of ``source`` before this position is fully reflected in checkpoints (or had
        no effect on state); ``None`` when nothing of ``source`` awaits a checkpoint."""
        pending = [
            s.unsaved_from[source] for s in self.streams.values() if source in s.unsaved_from
        ]
        return min(pending) if pending else None

    def take_checkpoints(self) -> dict[str, dict[str, Any] | None]:
        """Checkpoints taken since the last call, by stream group (only the newest per group),
        and the predictions kept for labels (:meth:`_keep_for_labels`) by their key; ``None``:
        delete the key."""
        out = self._checkpoints
        self._checkpoints = {}
        return out

    def _checkpoint(self, stream: ModelStream) -> None:
        if self.checkpointing:
            self._checkpoints[stream.group] = self.snapshot_stream(stream)

    def checkpoint_collected(self, source: str, before: int) -> int:
        """Checkpoint, with their collected events, the streams holding input of ``source``
        from before position ``before`` unacknowledged; returns how many (see
        :meth:`take_checkpoints`).

        A stream whose collected events would take more than :attr:`max_collected_bytes` drops
        them instead (counted as the warning ``collected_dropped``, one per event) and starts
        its warm-up or window again: its checkpoint must fit in one changelog record, and only
        events far larger than predictions usually are come near that.
        """
        taken = 0
        for stream in list(self.streams.values()):
            start = stream.unsaved_from.get(source)
            if start is None or start >= before:
                continue
            self._checkpoint_collected(stream)
            taken += 1
        return taken

    def _checkpoint_collected(self, stream: ModelStream) -> None:
        plain = encode_collected(stream.pending)
        if plain and collected_size(plain) > self.max_collected_bytes:
            self.stats.warnings["collected_dropped"] += len(plain)
            stream.pending = []
            plain = []
        self._checkpoints[stream.group] = self.snapshot_stream(stream, plain)

    def snapshot_stream(
        self, stream: ModelStream, collected: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """JSON-friendly checkpoint of one stream; marks its noted input as saved.

        Without ``collected`` (the stream's collected events as :func:`encode_collected` makes
        them) only valid while the stream holds none: events collected afterwards are not
        acknowledged until the next checkpoint, so after a restart they are delivered again.
        """
        assert collected is not None or not stream.pending, "checkpoint with collected events"
        stream.saved()
        state = {
            **stream.state(),
            "alerts": self.tracker.snapshot_group(stream.group),
            "label_alerts": self.tracker.snapshot_group(stream.group + "/labels"),
        }
        if collected:
            state["collected"] = collected
            state["collected_offsets"] = list(stream.offsets)
        return state

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
        stream.load_state(state)
        if state.get("errors") is not None:
            stream.errors = self._error_monitor(stream)
            stream.errors.load_state(state["errors"])
        self.tracker.restore_group(stream.group, state.get("alerts") or {})
        self.tracker.restore_group(stream.group + "/labels", state.get("label_alerts") or {})
        self._restore_labels(stream)
        collected = state.get("collected")
        if collected:
            events = decode_collected(stream.group, collected)
            stream.pending = list(events)  # type: ignore[arg-type]
            first, last = state.get("collected_offsets") or (0, 0)
            stream.offsets = (int(first), int(last))
            for ev in events:
                prediction = ev.get("prediction", MISSING)
                if prediction is not MISSING:  # it waits for its label again
                    self.joiner.add(
                        ev["event_id"],
                        Pending(stream.index, predicted_of(prediction), ev["timestamp"]),
                    )
        self.stats.restored += 1

    def _keep_for_labels(self, stream: ModelStream, window: Sequence[Any]) -> None:
        """Checkpoint the predictions of a window just used (or a warm-up), as they wait in the
        label join, so a label that comes after a restart still finds its prediction.

        Only for streams that have had labels (most never get any), and bounded as the
        join is: a window's predictions (its own changelog record, written once) are
        forgotten once all of them are older than ``labels.ttl`` before the stream's time, and
        the oldest go first beyond ``labels.max_pending``.
        """
        if not self.checkpointing or stream.errors is None or not window:
            return
        ids = ids_of(window)
        times = [float(t) for t in event_seconds(timestamps_of(window))]
        predicted = predicted_many(predictions_of(window))
        number = stream.windows if stream.detector is not None else 0
        self._keep_segment(stream, number, ids, predicted, times)

    def _first_label(self, stream: ModelStream, event_id: str, found: Pending) -> None:
        """``stream`` applied its first label (``event_id``, its prediction ``found``):
        checkpoint the predictions of it the label join holds, which were not kept (see
        :meth:`_keep_for_labels`), and the stream with them; once in its life."""
        if not self.checkpointing:
            return
        ids, predicted, times = self.joiner.entries_of(stream.index)
        # Its own prediction too: a copy of the label delivered again finds it, as applied.
        ids.append(event_id)
        predicted.append(found.predicted)
        t = found.timestamp
        times.append(float(t) if isinstance(t, float | int) else epoch_seconds(t))
        self._keep_segment(stream, -1, ids, predicted, times)
        self._checkpoint_collected(stream)

    def _keep_segment(
        self,
        stream: ModelStream,
        number: int,
        ids: list[str],
        predicted: list[Any],
        times: list[float],
    ) -> None:
        key = label_segment_key(stream.group, number)
        self._checkpoints[key] = {"ids": ids, "predicted": predicted, "times": times}
        segments = stream.label_segments
        segments.append([float(number), max(times), float(len(ids))])
        lab = self.settings.labels
        limit = stream.last_time - lab.ttl
        while segments and (
            segments[0][1] < limit or sum(seg[2] for seg in segments) > lab.max_pending
        ):
            gone = segments.pop(0)
            self._checkpoints[label_segment_key(stream.group, int(gone[0]))] = None

    def _restore_labels(self, stream: ModelStream) -> None:
        """Put the checkpointed predictions of a restored stream back into the label join."""
        if self.checkpoints is None:
            return
        for seg in stream.label_segments:
            saved = self.checkpoints(label_segment_key(stream.group, int(seg[0])))
            if saved:
                self.joiner.add_predicted(
                    saved["ids"], stream.index, saved["predicted"], saved["times"]
                )

    def adopt(self, states: Mapping[str, Mapping[str, Any]]) -> list[Transition]:
        """Take over the alerts of these checkpoints (by group) now, without waiting for
        input: their partitions were just assigned (a restart, or another worker's). Returns
        the alerts receivers were told are active (:meth:`AlertTracker.resume`), to tell them
        again. A stream this pipeline holds keeps its state unless the checkpoint is newer
        (:meth:`_current`); a stream whose predictions wait for labels is restored now (within
        ``limits.max_streams``), the others when their input comes, their alerts now.
        """
        out: list[Transition] = []
        room = self.settings.limits.max_streams - len(self.streams)
        for group, state in states.items():
            key = (str(state["key"][0]), str(state["key"][1]))
            stream = self.streams.get(key)
            if stream is not None:
                self._current(stream)
            elif state.get("label_segments") and room > 0:
                # Its predictions wait for labels, which may come before any more input for
                # the stream: restored now, they are in the label join.
                self._new_stream(key, state=state)
                room -= 1
            else:
                self.tracker.restore_group(group, state.get("alerts") or {})
                self.tracker.restore_group(group + "/labels", state.get("label_alerts") or {})
            out += self.tracker.resume(group)
            out += self.tracker.resume(group + "/labels")
        return out

    def release(self, partitions: Collection[int]) -> list[StreamKey]:
        """Partitions were revoked: forget the streams fed only from them, and their alerts,
        without a word (their state is in their checkpoints; the new owner reads the input
        after those again and takes the alerts over). Returns their keys."""
        gone: list[StreamKey] = []
        revoked = set(partitions)
        for stream in list(self.streams.values()):
            parts = {_partition(src) for src in (*stream.applied, *stream.seen)}
            if parts and parts <= revoked:
                self._forget(stream)
                gone.append(stream.key)
        return gone

    def _forget(self, stream: ModelStream) -> None:
        raise NotImplementedError

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
        self._remove(stream)
        self.stats.stale += 1
        return self._new_stream(stream.key, stream.index)


def taken_over(state: Mapping[str, Any], partitions: Collection[int]) -> bool:
    """Whether the checkpoint ``state`` has input from one of ``partitions`` and holds what
    cannot wait for the stream's next input: alerts receivers were told are active (firing,
    or flapping), or predictions waiting for their labels. What :meth:`Checkpoints.adopt`
    takes over when those partitions are assigned."""
    sources = state.get("applied") or {}
    if not any(_partition(src) in partitions for src in sources):
        return False
    if state.get("label_segments"):
        return True
    for part in ("alerts", "label_alerts"):
        held = state.get(part) or {}
        if any(a.get("state") == "firing" for a in (held.get("alerts") or {}).values()):
            return True
        histories = (held.get("flapping") or {}).get("histories") or {}
        if any(h.get("flapping_since") is not None for h in histories.values()):
            return True
    return False


def _partition(source: object) -> int:
    """The partition of a Kafka source name (``topic/partition``), ``-1`` for others."""
    tail = str(source).rpartition("/")[2]
    return int(tail) if tail.isdigit() else -1


def label_segment_key(group: str, number: int) -> str:
    """The table key of the predictions of window ``number`` of ``group`` kept for labels."""
    return f"{group}#labels/{number}"
