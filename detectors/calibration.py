"""Thresholds derived from a false-alarm budget instead of picked by hand.

Users state how often they accept a false alarm: *expected days between false alarms per model*
at a stated event rate. With count windows of ``n`` events that is
``W = days * 86400 * events_per_second / n`` windows. A window runs ``T`` tests (one per feature
and statistic, one per data-quality check, ...), so with a Bonferroni split every test gets the
per-window false-positive rate

    alpha = 1 / (W * T)

and each statistic's threshold is its ``1 - alpha`` quantile under the null hypothesis "the window
was drawn from the reference distribution". Alerts additionally need the condition to hold for
the rule's ``for`` duration, so the budget is a conservative bound.

How the null quantiles are obtained:

* Binned distances (PSI, Jensen-Shannon, KS, chi-square): a *bootstrap* of the reference. Drawing
  ``n`` events with replacement from a reference sample of ``m`` events and binning them is the
  same as drawing bin counts from ``Multinomial(n, p_hat)``; the reference itself is re-drawn
  from ``Multinomial(m, p_hat)`` so its own sampling noise is included. A gamma distribution is
  fitted to the bootstrap statistics by the method of moments (binned distances are
  asymptotically scaled chi-square, i.e. gamma) and its ``1 - alpha`` quantile is the threshold;
  a bootstrap of a few hundred draws cannot reach ``alpha`` ~ 1e-8 empirically, the fitted tail
  can.
* Counts (missing values, NaN/inf, out of range, wrong type, latency above the reference p95, ...):
  if the reference saw ``k`` such events in ``m``, the number in a window of ``n`` follows the
  beta-binomial posterior predictive ``BetaBinomial(n, k + 1/2, m - k + 1/2)`` (Jeffreys prior),
  which is exact up to the prior and handles ``k = 0``. The threshold is the smallest count ``c``
  with ``P(X >= c) <= alpha``.
* Page-Hinkley (CUSUM) on a unit-variance series with drift allowance ``delta``: Siegmund's
  approximation of the in-control average run length,
  ``ARL0 = (exp(2 delta (h + 1.166)) - 2 delta (h + 1.166) - 1) / (2 delta^2)``, solved for the
  threshold ``h`` that gives ``ARL0 = 1 / alpha`` (doubled for a two-sided test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, stats

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class FalseAlarmBudget:
    """What a user is willing to tolerate, and the figures that turn it into ``alpha``.

    Parameters
    ----------
    days_between_false_alarms
        Expected days between two false alarms for one model version.
    events_per_second
        The event rate at which that expectation is stated.
    window_size
        Events per evaluation window.
    """

    days_between_false_alarms: float
    events_per_second: float
    window_size: int

    def __post_init__(self) -> None:
        if self.days_between_false_alarms <= 0:
            raise ValueError("days_between_false_alarms must be > 0")
        if self.events_per_second <= 0:
            raise ValueError("events_per_second must be > 0")
        if self.window_size < 1:
            raise ValueError("window_size must be >= 1")

    @property
    def windows(self) -> float:
        """Windows evaluated in the budget period."""
        return (
            self.days_between_false_alarms
            * SECONDS_PER_DAY
            * self.events_per_second
            / self.window_size
        )

    def alpha(self, tests_per_window: int) -> float:
        """Per-test, per-window false-positive rate (Bonferroni over tests and windows).

        >>> FalseAlarmBudget(30, 100, 1000).alpha(100)
        3.858024691358025e-08
        """
        return 1.0 / (self.windows * max(1, tests_per_window))


def gamma_tail_threshold(null_samples: np.ndarray, alpha: float, floor: float = 1e-9) -> np.ndarray:
    """``1 - alpha`` quantile of a gamma fitted by moments to each row of ``null_samples``.

    ``null_samples`` has shape ``(features, draws)``; returns one threshold per feature. A row
    with zero variance (a constant feature) gets ``max(mean, floor)`` so that any change at all is
    above it.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.chisquare(9, size=(1, 20000)) / 1000
    >>> t = gamma_tail_threshold(x, 0.001)[0]
    >>> bool(abs(t - stats.chi2.ppf(0.999, 9) / 1000) < 0.002)
    True
    """
    mean = null_samples.mean(axis=1)
    var = null_samples.var(axis=1, ddof=1)
    out: np.ndarray = np.maximum(mean, floor)
    ok = (var > 0) & (mean > 0)
    shape = mean[ok] ** 2 / var[ok]
    scale = var[ok] / mean[ok]
    out[ok] = np.maximum(stats.gamma.isf(alpha, shape, scale=scale), floor)
    return out


@lru_cache(maxsize=4096)
def count_threshold(n: int, k: int, m: int, alpha: float) -> int:
    """Smallest count ``c`` with ``P(X >= c) <= alpha`` for ``X ~ BetaBinomial(n, k+.5, m-k+.5)``.

    ``k`` of ``m`` reference events had the property; ``n`` is the window size. Returns ``n + 1``
    when not even ``n`` would be surprising (the check can never fire).

    >>> count_threshold(1000, 0, 10000, 1e-8)  # a property never seen in 10,000 events
    8
    >>> count_threshold(1000, 100, 10000, 1e-8)  # seen at 1%: about 10 expected
    35
    """
    if m <= 0:
        return n + 1
    a = k + 0.5
    b = max(m - k, 0) + 0.5
    # P(X >= c) for every c at once: the pmf summed from the top down, so that the small tails
    # that matter here keep their precision (one vectorized call instead of a bisection of
    # ``sf`` calls, each of which costs scipy's argument checks: 0.3 instead of 1.6 ms).
    pmf = np.exp(stats.betabinom.logpmf(np.arange(n + 1), n, a, b))
    tail = np.cumsum(pmf[::-1])[::-1]
    below = np.flatnonzero(tail <= alpha)
    c = int(below[0]) if below.size else n + 1
    # The summed tail and scipy's ``sf`` may differ in the last bits: settle the boundary with
    # ``sf`` itself, so that ``c`` is the smallest count whose ``sf(c - 1)`` is within alpha.
    sf = stats.betabinom.sf
    while c <= n and sf(c - 1, n, a, b) > alpha:
        c += 1
    while c > 0 and sf(c - 2, n, a, b) <= alpha:
        c -= 1
    return c


def page_hinkley_threshold(alpha: float, delta: float = 0.5, two_sided: bool = True) -> float:
    """Page-Hinkley threshold ``h`` whose in-control run length is ``1/alpha`` windows.

    Uses Siegmund's approximation for a CUSUM on a unit-variance series with allowance
    ``delta``; a two-sided test halves the run length, so it solves for ``2/alpha``.

    >>> round(page_hinkley_threshold(1e-4), 2)
    8.05
    """
    arl = (2.0 if two_sided else 1.0) / alpha

    def arl0(h: float) -> float:
        x = 2.0 * delta * (h + 1.166)
        return (math.exp(x) - x - 1.0) / (2.0 * delta * delta) - arl

    return float(optimize.brentq(arl0, 0.0, 700.0 / (2.0 * delta)))


def normal_quantile(alpha: float) -> float:
    """One-sided standard-normal critical value ``z`` with ``P(Z > z) = alpha``.

    >>> round(normal_quantile(0.025), 3)
    1.96
    """
    return float(stats.norm.isf(alpha))
