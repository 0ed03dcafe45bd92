"""What the pipeline lets in: event times a trusted clock vouches for (``events.max_future_skew``,
``events.max_age``), and the streams its limits hold (see :class:`monitor.config.LimitsConfig`).

Every event time that reaches a window, a ``for`` timer or the label join's expiry has passed
:class:`EventClock`, so one event can move the monitor's time by at most ``max_future_skew``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from monitor.epochs import epoch_array
from monitor.events import epoch_seconds

#: Below this many events a Python loop judges them faster than numpy's per-call overhead.
_VECTOR_FROM = 32


def event_seconds(timestamps: list[Any]) -> list[float] | np.ndarray:
    """Epoch seconds of decoded timestamps (UTC datetimes by the C helper, others one by one;
    a naive datetime is UTC)."""
    seconds = epoch_array(timestamps)
    if isinstance(seconds, list):
        return [float(t) if isinstance(t, int | float) else epoch_seconds(t) for t in seconds]
    return np.frombuffer(seconds, np.float64)


def iso(seconds: float) -> str:
    """``seconds`` as RFC 3339 for people (``?`` when out of datetime's range)."""
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return "?"


@dataclass(slots=True)
class _Watermark:
    #: Latest event time accepted from the input (``None`` before its first event).
    time: float | None = None
    #: Time of the last event rejected against the watermark, if the input's last event was
    #: one: a next one that agrees with it moves the watermark (see :class:`EventClock`).
    outlier: float | None = None


class EventClock:
    """Judges event times against a reference clock, per input source.

    The reference of an event is the time given with it (the Kafka message timestamp), else
    its source's watermark: the latest event time accepted from that source. An event at
    ``t`` passes when ``reference - max_age <= t <= reference + max_future_skew``. A source's
    watermark starts at the median time of the first events it is given (one call); two
    consecutive events outside
    the bounds that agree with each other (within ``max_future_skew``) move the watermark to
    the second, which passes (a gap in a recording, not one wrong clock).

    :attr:`latest` is the monitor's event clock: the latest time any source accepted (used to
    tell idle streams). A checkpoint does not hold it: after a restart the first message sets
    it again.
    """

    def __init__(self, max_future_skew: float, max_age: float) -> None:
        self.max_future_skew = max_future_skew
        self.max_age = max_age
        self.latest = -math.inf
        self._marks: dict[str, _Watermark] = {}

    def watermark(self, source: str) -> float | None:
        """The watermark of ``source`` (``None`` before its first event)."""
        mark = self._marks.get(source)
        return mark.time if mark is not None else None

    def judge(
        self,
        seconds: Sequence[float] | np.ndarray,
        source: str,
        reference: Sequence[float] | np.ndarray | float | None = None,
    ) -> list[tuple[int, str]]:
        """The events outside their bounds, as ``(index, why)``; the others advance
        ``source``'s watermark. ``reference``: per event (or one for all) the time the
        transport vouches for, NaN or ``None`` where there is none."""
        n = len(seconds)
        if n == 0:
            return []
        mark = self._marks.get(source)
        if mark is None:
            # The first events of an input set its watermark: their median, so that one wrong
            # clock among them cannot (a single first event sets it alone).
            mark = self._marks[source] = _Watermark(float(np.median(np.asarray(seconds))))
        ref_list: list[float] | None = None
        if reference is not None:
            refs = np.broadcast_to(np.asarray(reference, dtype=np.float64), (n,))
            missing = np.isnan(refs)
            if not missing.any():
                return self._against(np.asarray(seconds, dtype=np.float64), refs, mark)
            if not missing.all():
                ref_list = refs.tolist()
        vector = ref_list is None and n >= _VECTOR_FROM and mark.outlier is None
        if vector and self._all_pass(seconds, mark):
            return []
        return self._one_by_one(seconds, ref_list, mark)

    def _against(self, t: np.ndarray, refs: np.ndarray, mark: _Watermark) -> list[tuple[int, str]]:
        ahead = t > refs + self.max_future_skew
        behind = t < refs - self.max_age
        ok = ~(ahead | behind)
        if ok.any():
            self._advance(mark, float(t[ok].max()))
        if ok.all():
            return []
        return [
            (int(k), self._why(float(t[k]), float(refs[k]), "message timestamp"))
            for k in np.flatnonzero(~ok)
        ]

    def _all_pass(self, seconds: Sequence[float] | np.ndarray, mark: _Watermark) -> bool:
        """Whether every event passes against the watermark as it advances (then it is
        advanced); numpy for a long run, which is the common case of a healthy stream."""
        t = np.asarray(seconds, dtype=np.float64)
        start = mark.time if mark.time is not None else float(t[0])
        before = np.maximum.accumulate(np.concatenate(([start], t[:-1])))
        if not bool(((t <= before + self.max_future_skew) & (t >= before - self.max_age)).all()):
            return False
        self._advance(mark, max(float(before[-1]), float(t[-1])))
        return True

    def _one_by_one(
        self,
        seconds: Sequence[float] | np.ndarray,
        refs: list[float] | None,
        mark: _Watermark,
    ) -> list[tuple[int, str]]:
        skew, age = self.max_future_skew, self.max_age
        w, outlier = mark.time, mark.outlier
        out: list[tuple[int, str]] = []
        for k, t in enumerate(seconds):
            t = float(t)
            ref = refs[k] if refs is not None else math.nan
            if not math.isnan(ref):  # a transport time: absolute bounds, the watermark follows
                if ref - age <= t <= ref + skew:
                    w = t if w is None or t > w else w
                else:
                    out.append((k, self._why(t, ref, "message timestamp")))
                continue
            if w is None:
                w = t
            elif w - age <= t <= w + skew:
                w = t if t > w else w
                outlier = None
            elif outlier is not None and abs(t - outlier) <= skew:
                w, outlier = t, None  # the input moved: follow it
            else:
                out.append((k, self._why(t, w, "watermark")))
                outlier = t
        mark.outlier = outlier
        if w is not None:
            self._advance(mark, w, force=True)
        return out

    def _advance(self, mark: _Watermark, time: float, force: bool = False) -> None:
        if force or mark.time is None or time > mark.time:
            mark.time = time
        self.latest = max(self.latest, mark.time)

    def _why(self, t: float, ref: float, what: str) -> str:
        if t > ref:
            return (
                f"event time {iso(t)} is {t - ref:.0f} s after the {what} {iso(ref)} "
                f"(events.max_future_skew {self.max_future_skew:.0f} s)"
            )
        return (
            f"event time {iso(t)} is {ref - t:.0f} s before the {what} {iso(ref)} "
            f"(events.max_age {self.max_age:.0f} s)"
        )
