"""River change detectors on per-window signal series, latched into conditions.

A River detector reports a change at one update and then restarts, but an alert needs a
*condition* that stays true while the change persists. :class:`ChangeLatch` turns the one-shot
detection into that: it becomes active when the detector fires *and* the current value is at
least ``clear`` away from the baseline (the mean of the series while it was inactive), and it
releases only after ``release_after`` consecutive values closer than ``release_below`` to the
baseline. The hysteresis matters: River restarts the detector after a detection and learns the
shifted level as its new normal, so a latch released by one noisy window would never be set
again while the drift persists. So a slow drift that no single window shows is
caught by the cumulative detector, and the alert clears once the series is back to normal.
"""

from __future__ import annotations

from typing import Any, Literal

from river import drift, stats

#: How many inputs a latch remembers to rebuild a detector whose state is not exposed (ADWIN).
HISTORY = 4096

_PLAIN = frozenset({type(None), bool, int, float, str})


def river_state(obj: Any) -> dict[str, Any]:
    """JSON-friendly state of a pure-Python River detector (numbers, flags, ``stats.Mean``)."""
    out: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if type(value) in _PLAIN:  # most values; an exact type test skips ABC checks
            out[name] = value
        elif isinstance(value, stats.Mean):
            out[name] = {"mean_n": value.n, "mean": value._mean}
        elif isinstance(value, bool | int | float | str):
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
    release_below, release_after
        Release after this many consecutive values closer than ``release_below`` (default
        two thirds of ``clear``) to the baseline (default 2).

    >>> latch = ChangeLatch(clear=3.0)
    >>> [latch.update(x, detected=False) for x in (0.0, 0.2, -0.2)]
    [False, False, False]
    >>> latch.update(5.0, detected=True), latch.update(1.0, detected=False)
    (True, True)
    >>> [latch.update(0.5, detected=False) for _ in range(3)], round(latch.baseline, 3)
    ([False, False, False], 0.2)
    """

    def __init__(
        self,
        clear: float,
        direction: Literal["both", "up"] = "both",
        release_below: float | None = None,
        release_after: int = 2,
    ) -> None:
        if clear <= 0:
            raise ValueError("clear must be > 0")
        if release_after < 1:
            raise ValueError("release_after must be >= 1")
        self.clear = clear
        self.direction = direction
        self.release_below = clear * 2.0 / 3.0 if release_below is None else release_below
        self.release_after = release_after
        self.warmup = 10
        self.active = False
        self._calm = 0
        self._n = 0
        self._mean = 0.0

    @property
    def baseline(self) -> float:
        """Mean of the series over the inactive updates that were within ``clear`` of it (all
        of the first ten)."""
        return self._mean

    def state(self) -> dict[str, Any]:
        """JSON-friendly state."""
        return {"active": self.active, "n": self._n, "mean": self._mean, "calm": self._calm}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        self.active = bool(state["active"])
        self._n = int(state["n"])
        self._mean = float(state["mean"])
        self._calm = int(state.get("calm", 0))

    def _distance(self, x: float) -> float:
        d = x - self._mean
        return abs(d) if self.direction == "both" else d

    def update(self, x: float, detected: bool) -> bool:
        """Feed one value and whether the change detector fired on it; return the condition."""
        if self.active:
            self._calm = self._calm + 1 if self._distance(x) < self.release_below else 0
            if self._calm >= self.release_after:
                self.active = False
                self._calm = 0
                return False  # the releasing value still belongs to the change
            return True
        self.active = detected and self._n > 0 and self._distance(x) >= self.clear
        # The baseline learns only from values near it (after a short start), so windows of a
        # change that the detector has not confirmed yet do not drag it along.
        if not self.active and (self._n < self.warmup or abs(x - self._mean) < self.clear):
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
