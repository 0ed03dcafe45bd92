"""River change detectors on per-window signal series, latched into conditions.

A River detector reports a change at one update and then restarts, but an alert needs a
*condition* that stays true while the change persists. :class:`ChangeLatch` turns the one-shot
detection into that: it becomes active when the detector fires *and* the current value is at
least ``clear`` away from the baseline (the mean of the series while it was inactive), and stays
active while the value remains that far away. So a slow drift that no single window shows is
caught by the cumulative detector, and the alert clears once the series is back to normal.
"""

from __future__ import annotations

from typing import Any, Literal

from river import drift, stats

#: How many inputs a latch remembers to rebuild a detector whose state is not exposed (ADWIN).
HISTORY = 4096


def river_state(obj: Any) -> dict[str, Any]:
    """JSON-friendly state of a pure-Python River detector (numbers, flags, ``stats.Mean``)."""
    out: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if isinstance(value, stats.Mean):
            out[name] = {"mean_n": value.n, "mean": value._mean}
        elif value is None or isinstance(value, bool | int | float | str):
            out[name] = value
    return out


def load_river_state(obj: Any, state: dict[str, Any]) -> None:
    """Inverse of :func:`river_state` on a freshly constructed detector of the same class."""
    for name, value in state.items():
        if isinstance(value, dict) and "mean_n" in value:
            m = stats.Mean()
            m.n = value["mean_n"]
            m._mean = value["mean"]
            setattr(obj, name, m)
        else:
            setattr(obj, name, value)


class ChangeLatch:
    """Hysteresis around a one-shot change detection.

    Parameters
    ----------
    clear
        Distance from the baseline that counts as "still changed".
    direction
        ``"both"`` for ``|x - baseline|``, ``"up"`` for ``x - baseline`` only.

    >>> latch = ChangeLatch(clear=3.0)
    >>> [latch.update(x, detected=False) for x in (0.0, 0.2, -0.2)]
    [False, False, False]
    >>> latch.update(5.0, detected=True), latch.update(4.0, detected=False)
    (True, True)
    >>> latch.update(0.5, detected=False), round(latch.baseline, 3)
    (False, 0.125)
    """

    def __init__(self, clear: float, direction: Literal["both", "up"] = "both") -> None:
        if clear <= 0:
            raise ValueError("clear must be > 0")
        self.clear = clear
        self.direction = direction
        self.active = False
        self._n = 0
        self._mean = 0.0

    @property
    def baseline(self) -> float:
        """Mean of the series over the updates where the latch was inactive."""
        return self._mean

    def state(self) -> dict[str, Any]:
        """JSON-friendly state."""
        return {"active": self.active, "n": self._n, "mean": self._mean}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        self.active = bool(state["active"])
        self._n = int(state["n"])
        self._mean = float(state["mean"])

    def _away(self, x: float) -> bool:
        d = x - self._mean
        return (abs(d) if self.direction == "both" else d) >= self.clear

    def update(self, x: float, detected: bool) -> bool:
        """Feed one value and whether the change detector fired on it; return the condition."""
        if self.active:
            self.active = self._away(x)
        else:
            self.active = detected and self._n > 0 and self._away(x)
        if not self.active:
            self._n += 1
            self._mean += (x - self._mean) / self._n
        return self.active


class PageHinkleyLatch:
    """Two-sided Page-Hinkley on a unit-variance z-series, latched.

    ``threshold`` comes from :func:`detectors.calibration.page_hinkley_threshold`; ``delta`` is
    the drift allowance in standard deviations of the series per window; ``clear`` the distance
    (in the same units) that keeps the condition active.
    """

    def __init__(self, threshold: float, delta: float = 0.5, clear: float = 3.0) -> None:
        self.detector = drift.PageHinkley(
            min_instances=10, delta=delta, threshold=threshold, alpha=1.0, mode="both"
        )
        self.latch = ChangeLatch(clear, "both")

    def update(self, z: float) -> bool:
        """Feed one window's z value; return whether the change condition holds."""
        self.detector.update(z)
        return self.latch.update(z, bool(self.detector.drift_detected))

    def state(self) -> dict[str, Any]:
        """JSON-friendly state (Page-Hinkley's sums and the latch)."""
        return {"ph": river_state(self.detector), "latch": self.latch.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        load_river_state(self.detector, state["ph"])
        self.latch.load_state(state["latch"])


class AdwinLatch:
    """ADWIN on a per-window series (for example log latency p95 over its reference), latched
    while the value is ``clear`` above the baseline. ``delta`` is ADWIN's confidence: the
    probability of a false cut per check, set from the false-alarm budget."""

    def __init__(self, delta: float, clear: float) -> None:
        self.delta = delta
        self.detector = self._new()
        self.latch = ChangeLatch(clear, "up")
        self.history: list[float] = []

    def _new(self) -> Any:
        return drift.ADWIN(delta=self.delta, clock=1, grace_period=10, min_window_length=5)

    def update(self, x: float) -> bool:
        """Feed one window's value; return whether the change condition holds."""
        self.detector.update(x)
        self.history.append(x)
        if len(self.history) > 2 * HISTORY:
            del self.history[:-HISTORY]
        return self.latch.update(x, bool(self.detector.drift_detected))

    def state(self) -> dict[str, Any]:
        """JSON-friendly state: ADWIN keeps its buckets in compiled code, so the recent inputs
        are stored instead and replayed into a fresh detector on restore (its window is bounded,
        so the last :data:`HISTORY` inputs rebuild it)."""
        return {"history": self.history[-HISTORY:], "latch": self.latch.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        self.detector = self._new()
        self.history = [float(x) for x in state["history"]]
        for x in self.history:
            self.detector.update(x)
        self.latch.load_state(state["latch"])
