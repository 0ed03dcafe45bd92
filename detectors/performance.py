"""Model performance from ground truth that arrives later.

:class:`LabelJoiner` remembers recent predictions by ``event_id`` so a label event can be matched
with the prediction it grades. It is bounded twice: entries older than ``ttl_seconds`` of event
time are dropped, and beyond ``max_entries`` the oldest are dropped first; both are counted.

:class:`ErrorMonitor` turns joined labels into per-event errors (0/1 for a classification, the
absolute error for a regression), evaluates them in count windows against the reference error and
feeds the binary error stream to River's DDM, latched like the other change detectors.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate, islice, repeat
from operator import attrgetter, sub
from typing import Any, Literal, NamedTuple

import numpy as np
from river.drift.binary import DDM

from detectors.calibration import count_threshold, normal_quantile
from detectors.change import ChangeLatch, load_river_state, river_state
from detectors.columns import int_array
from detectors.profile import ErrorProfile
from detectors.window import Finding

Predicted = str | float | None


class Pending(NamedTuple):
    """What is remembered of a prediction until its label arrives."""

    stream: int
    predicted: Predicted
    timestamp: Any


class LabelJoiner:
    """Bounded map from event id to the prediction awaiting its label.

    Parameters
    ----------
    ttl_seconds
        How long (event time) a prediction waits for its label.
    max_entries
        Memory bound; the oldest predictions are dropped first when it is reached.
    predicted
        Turns a batch's model outputs (:meth:`add_many`) into the values a label grades;
        applied when the batch is added. Default: the outputs are those values.

    Batches of predictions (:meth:`add_many`) are kept as they come and put into the id index
    only when a label is looked up: a stream whose labels never come (or come rarely) then
    costs no hash-table insert per prediction, which on a 100,000-entry table was about 0.7 µs
    per event of replay, mostly cache misses. A batch is kept compact, as a few objects instead
    of five per prediction: its ids as one string and their lengths, the values a label grades
    (repeated strings shared, numbers in an array) and the timestamps as epoch seconds in an
    array. Holding 100,000 predictions as separate objects made every later allocation land in
    memory that had left the CPU cache: the worker's agent code over envelopes ran at 75-100 k
    events/s with the default ``max_entries``, against 160-175 k with 1,000.
    """

    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int,
        predicted: Callable[[list[Any]], list[Predicted]] | None = None,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be > 0")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._predicted = predicted
        # Plain (stream, predicted, timestamp) tuples: a NamedTuple per entry would cost a
        # Python-level call for each prediction of the stream.
        self._pending: dict[str, tuple[int, Predicted, Any]] = {}
        # Batches not yet in ``_pending`` (all newer than its entries), oldest first:
        # (event ids joined, their lengths, stream, predicted values, epoch seconds).
        self._batches: deque[_Batch] = deque()
        self._batched = 0
        self._shared: dict[Predicted, Predicted] = {}  # one object per repeated value
        self.joined = 0
        self.unmatched = 0
        self.expired = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._pending) + self._batched

    def add(self, event_id: str, pending: Pending) -> None:
        """Remember one prediction (call :meth:`trim` now and then to bound memory)."""
        if self._batches:
            self._index()
        self._pending[event_id] = pending

    def add_many(
        self,
        ids: Iterable[str],
        stream: int,
        outputs: Iterable[Any],
        timestamps: Iterable[Any],
    ) -> None:
        """Remember a batch of predictions of one stream (``ids``, model ``outputs`` and
        ``timestamps`` of equal length; see ``predicted``). ``timestamps`` are numbers or
        datetimes, or an ``array("d")`` of epoch seconds, which is kept as it is."""
        ids = list(ids)
        outputs = list(outputs)
        if isinstance(timestamps, array) and timestamps.typecode == "d":
            times = timestamps
        else:
            times = _epochs(list(timestamps))
        if not len(ids) == len(outputs) == len(times):
            raise ValueError("ids, predicted and timestamps differ in length")
        if not ids:
            return
        self._batches.append(
            ("".join(ids), array("q", map(len, ids)), stream, self._compact(outputs), times)
        )
        self._batched += len(ids)
        over = len(self) - self.max_entries
        if over > 0:
            self.evicted += over
            self._drop_oldest(over)

    def _compact(self, outputs: list[Any]) -> Sequence[Predicted]:
        """The values a label grades, in few objects: numbers in an array, repeated strings
        shared (labels of a classifier)."""
        predicted = self._predicted(outputs) if self._predicted is not None else outputs
        types = set(map(type, predicted))
        if types == {float}:
            return array("d", predicted)
        if types == {str}:
            shared = self._shared
            if len(shared) > 4096:  # not a classifier's few labels: stop sharing
                shared.clear()
            return list(map(shared.setdefault, predicted, predicted))
        return list(predicted)

    def _index(self) -> None:
        """Put the waiting batches into the id index (built by C-level ``zip``)."""
        update = self._pending.update
        for joined, lengths, stream, predicted, times in self._batches:
            update(zip(_split(joined, lengths), zip(repeat(stream), predicted, times), strict=True))
        self._batches.clear()
        self._batched = 0

    def _drop_oldest(self, count: int) -> None:
        """Forget the ``count`` oldest predictions (indexed ones are the oldest)."""
        pending = self._pending
        if pending:
            keys = list(islice(pending, count))
            for key in keys:
                del pending[key]
            count -= len(keys)
        batches = self._batches
        while count > 0 and batches:
            joined, lengths, stream, predicted, times = batches[0]
            if len(lengths) <= count:
                batches.popleft()
                self._batched -= len(lengths)
                count -= len(lengths)
            else:
                cut = sum(lengths[:count])
                batches[0] = (
                    joined[cut:],
                    lengths[count:],
                    stream,
                    predicted[count:],
                    times[count:],
                )
                self._batched -= count
                count = 0

    def trim(self, now: float) -> None:
        """Apply both bounds: expire by ``ttl_seconds``, then evict beyond ``max_entries``."""
        self.expire(now)
        over = len(self) - self.max_entries
        if over > 0:
            self.evicted += over
            self._drop_oldest(over)

    def pop(self, event_id: str) -> Pending | None:
        """The prediction for ``event_id``, removed from memory; ``None`` if unknown or gone."""
        found = self.take(event_id)
        if found is None:
            self.unmatched += 1
            return None
        self.joined += 1
        return found

    def take(self, event_id: str) -> Pending | None:
        """:meth:`pop` without counting the outcome (the caller counts: a label delivered
        twice is neither joined nor unmatched)."""
        if self._batches:
            self._index()
        found = self._pending.pop(event_id, None)
        return None if found is None else Pending._make(found)

    def entries_of(self, stream: int) -> tuple[list[str], list[Predicted], list[float]]:
        """The ids, graded values and times (epoch seconds) of the predictions of ``stream``
        waiting for their label, oldest first."""
        if self._batches:
            self._index()
        ids: list[str] = []
        predicted: list[Predicted] = []
        times: list[float] = []
        for key, (owner, value, t) in self._pending.items():
            if owner == stream:
                ids.append(key)
                predicted.append(value)
                times.append(float(t) if isinstance(t, float | int) else _epoch(t))
        return ids, predicted, times

    def add_predicted(
        self,
        ids: Sequence[str],
        stream: int,
        predicted: Sequence[Predicted],
        times: Sequence[float],
    ) -> None:
        """Remember predictions whose graded values are known already (``predicted`` as
        ``predicted`` made them, ``times`` in epoch seconds): predictions restored from a
        checkpoint. Bounded as :meth:`add_many`."""
        if not len(ids) == len(predicted) == len(times):
            raise ValueError("ids, predicted and timestamps differ in length")
        if not ids:
            return
        if self._batches:
            self._index()
        self._pending.update(zip(ids, zip(repeat(stream), predicted, times), strict=True))
        over = len(self) - self.max_entries
        if over > 0:
            self.evicted += over
            self._drop_oldest(over)

    def expire(self, now: float) -> None:
        """Drop predictions older than ``now - ttl_seconds`` (oldest first, stops at a fresh one).

        >>> j = LabelJoiner(10, 100)
        >>> j.add_many(["a", "b"], 0, ["x", "y"], [0.0, 5.0]); j.expire(12.0); len(j), j.expired
        (1, 1)
        """
        limit = now - self.ttl_seconds
        stale = 0
        for _, _, t in self._pending.values():
            if (t if isinstance(t, float | int) else _epoch(t)) >= limit:
                break
            stale += 1
        else:
            for _, _, _, _, times in self._batches:
                fresh = False
                for t in times:
                    if t >= limit:
                        fresh = True
                        break
                    stale += 1
                if fresh:
                    break
        if stale:
            self._drop_oldest(stale)
        self.expired += stale

    def snapshot(self) -> list[tuple[str, int, Predicted, float]]:
        """The pending predictions, oldest first, as JSON-friendly tuples."""
        if self._batches:
            self._index()
        return [(k, *p) for k, p in self._pending.items()]


def _epoch(ts: Any) -> float:
    """Epoch seconds of a datetime (naive means UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return float(ts.timestamp())


#: A batch of :meth:`LabelJoiner.add_many`: event ids joined, their lengths, stream, predicted
#: values, timestamps in epoch seconds.
_Batch = tuple[str, "array[int]", int, Sequence[Predicted], "array[float]"]


def _epochs(timestamps: list[Any]) -> array[float]:
    """Epoch seconds of numbers or datetimes (naive means UTC), by C-level calls when all are
    numbers or all are datetimes with a time zone (as decoded from the wire)."""
    types = set(map(type, timestamps))
    if types <= {float, int}:
        return array("d", timestamps)
    if types == {datetime}:
        seconds = _aware_epochs(timestamps)
        if seconds is not None:
            return seconds
    return array("d", (t if isinstance(t, float | int) else _epoch(t) for t in timestamps))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAYS = attrgetter("days")
_SECONDS = attrgetter("seconds")
_MICROSECONDS = attrgetter("microseconds")
_EXACT_US = 2**53  # microseconds a float64 holds exactly: about 285 years from 1970


def _aware_epochs(timestamps: list[datetime]) -> array[float] | None:
    """``datetime.timestamp`` of each time-zone-aware datetime, or ``None`` when one is naive.

    The same floats (an exact count of microseconds over 10**6, rounded once) at about a third
    of the cost: ``timestamp`` does its timedelta arithmetic on Python ints, here one
    subtraction per datetime is all that is not done on int64 columns.
    """
    try:
        deltas = list(map(sub, timestamps, repeat(_EPOCH)))
    except TypeError:  # naive and aware cannot be subtracted
        return None
    days = int_array(list(map(_DAYS, deltas)))
    micros = (days * 86400 + int_array(list(map(_SECONDS, deltas)))) * 1_000_000 + int_array(
        list(map(_MICROSECONDS, deltas))
    )
    if micros.size and int(np.abs(micros).max()) >= _EXACT_US:
        return None
    out = array("d")
    out.frombytes((micros / 1e6).tobytes())
    return out


def _split(joined: str, lengths: array[int]) -> map[str]:
    """The strings that ``"".join`` made ``joined`` of, given their lengths."""
    ends = list(accumulate(lengths))
    return map(joined.__getitem__, map(slice, [0, *ends[:-1]], ends))


def error_of(predicted: Predicted, label: str | float | bool) -> tuple[str, float] | None:
    """Per-event error: ``("classification", 0/1)`` or ``("regression", |error|)``.

    A numeric prediction graded by a class label is a probability thresholded at 0.5.

    >>> error_of("fraud", "fraud"), error_of("fraud", "legit"), error_of(2.5, 3.0)
    (('classification', 0.0), ('classification', 1.0), ('regression', 0.5))
    >>> error_of(0.8, True), error_of(None, "x")
    (('classification', 0.0), None)
    """
    if predicted is None:
        return None
    if isinstance(label, bool):
        if isinstance(predicted, str):
            return ("classification", float(predicted.lower() != str(label).lower()))
        return ("classification", float((predicted >= 0.5) != label))
    if isinstance(label, str):
        if isinstance(predicted, str):
            return ("classification", float(predicted != label))
        return None
    if isinstance(predicted, str):
        return None
    return ("regression", abs(float(predicted) - float(label)))


@dataclass(frozen=True, slots=True)
class ErrorWindow:
    """One closed error window: mean error, labelled events, and the finding if it holds."""

    value: float
    n: int
    finding: Finding | None


class ErrorMonitor:
    """Error windows of one model version against its reference error.

    Parameters
    ----------
    window
        Labelled events per evaluation window.
    alpha
        Per-window false-positive rate (from the false-alarm budget).
    reference
        Reference error; learned from the first ``warmup`` labelled events when ``None``.
    clear_z
        z distance above the baseline that keeps a DDM-detected change active.
    """

    def __init__(
        self,
        window: int,
        alpha: float,
        reference: ErrorProfile | None = None,
        warmup: int = 2000,
        clear_z: float = 3.0,
    ) -> None:
        self.window = window
        self.alpha = alpha
        self.reference = reference
        self.warmup = warmup
        self.clear_z = clear_z
        self.kind: Literal["classification", "regression"] | None = (
            reference.kind if reference is not None else None
        )
        self._buf: list[float] = []
        self._ddm = DDM()
        self._ddm_fired = False
        self._latch: ChangeLatch | None = None
        self.last_value: float | None = None

    def state(self) -> dict[str, Any]:
        """JSON-friendly state: the open window, the reference, DDM and the latch."""
        return {
            "kind": self.kind,
            "buffer": list(self._buf),
            "reference": self.reference.model_dump() if self.reference is not None else None,
            "ddm": river_state(self._ddm),
            "ddm_fired": self._ddm_fired,
            "latch": self._latch.state() if self._latch is not None else None,
            "latch_clear": self._latch.clear if self._latch is not None else None,
            "last_value": self.last_value,
            "alpha": self.alpha,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        self.kind = state["kind"]
        self._buf = [float(x) for x in state["buffer"]]
        ref = state["reference"]
        self.reference = ErrorProfile.model_validate(ref) if ref is not None else None
        load_river_state(self._ddm, state["ddm"])
        self._ddm_fired = bool(state["ddm_fired"])
        if state["latch"] is not None:
            self._latch = ChangeLatch(float(state["latch_clear"]), "up")
            self._latch.load_state(state["latch"])
        self.last_value = state["last_value"]
        # The significance level it was created with (before a reference detector existed, a
        # stream's errors are judged at 1e-8): a restart must not move the threshold.
        self.alpha = float(state.get("alpha", self.alpha))

    @property
    def pending(self) -> int:
        """Errors collected towards the next window (or the warm-up)."""
        return len(self._buf)

    def add(self, kind: str, error: float) -> ErrorWindow | None:
        """Add one error; returns the closed window when this error completed one."""
        if self.kind is None:
            self.kind = "classification" if kind == "classification" else "regression"
        elif kind != self.kind:
            return None
        self._buf.append(error)
        if self.kind == "classification" and self.reference is not None:
            self._ddm.update(error)
            self._ddm_fired = self._ddm_fired or bool(self._ddm.drift_detected)
        if self.reference is None:
            if len(self._buf) >= self.warmup:
                arr = np.asarray(self._buf)
                self.reference = ErrorProfile(
                    kind=self.kind,
                    n=arr.size,
                    total=float(arr.sum()),
                    total_sq=float((arr * arr).sum()),
                )
                self._buf = []
            return None
        if len(self._buf) < self.window:
            return None
        arr = np.asarray(self._buf)
        self._buf = []
        return self._evaluate(arr)

    def _evaluate(self, errors: np.ndarray) -> ErrorWindow:
        ref = self.reference
        assert ref is not None
        n = errors.size
        value = float(errors.mean())
        self.last_value = value
        if self.kind == "classification":
            k = round(ref.total)
            c = count_threshold(n, k, ref.n, self.alpha)
            threshold = c / n
            significant = errors.sum() >= c
            p = max(ref.mean, 1.0 / max(ref.n, 1))
            clear = self.clear_z * float(np.sqrt(p * (1 - p) / n))
            statistic = "error_rate"
        else:
            z = normal_quantile(self.alpha)
            threshold = ref.mean + z * ref.std * float(np.sqrt(1.0 / n + 1.0 / max(ref.n, 1)))
            significant = value >= threshold
            clear = self.clear_z * ref.std / float(np.sqrt(n))
            statistic = "mae"
        if self._latch is None:
            self._latch = ChangeLatch(max(clear, 1e-12), "up")
            self._latch.update(ref.mean, False)
        changed = self._latch.update(value, self._ddm_fired)
        self._ddm_fired = False
        if not (significant or changed):
            return ErrorWindow(value, n, None)
        return ErrorWindow(
            value,
            n,
            Finding(
                kind="performance",
                subject="",
                check="",
                statistic=statistic,
                value=value,
                threshold=threshold,
                details=(("reference", ref.mean), ("labelled", float(n))),
            ),
        )
