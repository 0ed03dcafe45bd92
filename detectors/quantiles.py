"""``np.quantile`` (its default ``linear`` method) of one small 1-D array, without its overhead.

A window's latency and score percentiles are three quantiles of about a thousand values, where
``np.quantile`` spends most of its ~40 µs in argument handling around one ``np.partition``. This
does the same steps (virtual index ``q * (n - 1)``, partition at the neighbouring ranks, numpy's
``_lerp`` between them, including its switch to ``b - (b - a) * (1 - t)`` for ``t >= 0.5``), so
the results are numpy's to the bit (``tests/test_quantiles.py`` checks it on generated arrays).
"""

from __future__ import annotations

import numpy as np


def quantiles(values: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """``np.quantile(values, qs)`` for a non-empty 1-D float64 ``values`` without NaN and
    ``qs`` in [0, 1].

    >>> quantiles(np.array([3.0, 1.0, 2.0, 4.0]), np.array([0.0, 0.5, 0.95, 1.0])).tolist()
    [1.0, 2.5, 3.8499999999999996, 4.0]
    """
    n = values.size
    virtual = qs * (n - 1)
    below = np.floor(virtual).astype(np.intp)
    above = np.minimum(below + 1, n - 1)
    ranked = np.partition(values, np.unique(np.concatenate((below, above))))
    t = virtual - below
    a = ranked[below]
    b = ranked[above]
    diff = b - a
    out = a + diff * t
    result: np.ndarray = np.where(t >= 0.5, b - diff * (1 - t), out)
    return result
