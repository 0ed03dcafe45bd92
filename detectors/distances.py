"""Binned distribution distances, vectorized over all features of a window at once.

Every function takes count matrices of shape ``(features, bins)``: ``window`` counts of the
current window and ``reference`` counts of the reference profile, and returns one value per
feature. Proportions are smoothed with the Krichevsky-Trofimov estimator ``(c + 1/2) / (N + B/2)``
so a bin the window fills but the reference left nearly empty gives a finite value.

Every function takes an optional boolean ``mask`` (broadcastable to the counts) of the bins that
take part. :class:`~detectors.window.WindowDetector` masks the bins that are empty in the
reference (the padding past a feature's last distinct edge, a categorical feature's "unseen"
bin): smoothed empty-in-both bins would add a near-constant to every value and make the null
distribution a shifted one that a gamma fitted by moments cannot follow. Values outside the
reference's support are what the data-quality checks (``out_of_range``, ``unseen_category``)
are for.

* PSI (population stability index) ``sum (q - p) ln(q / p)``: the symmetric KL divergence; rules of
  thumb call 0.1 "moderate" and 0.25 "large", but driftwatch compares it with a calibrated
  threshold instead.
* Jensen-Shannon divergence (natural log, so between 0 and ln 2).
* KS: the largest gap between the binned cumulative distributions (raw proportions).
* Chi-square: Pearson's statistic of the window counts against the reference proportions.
"""

from __future__ import annotations

import numpy as np

STATISTICS = ("psi", "js", "ks", "chi2")


Mask = np.ndarray | None


def proportions(counts: np.ndarray, mask: Mask = None) -> np.ndarray:
    """Krichevsky-Trofimov smoothed proportions per row over the ``mask`` ed bins (0 elsewhere)."""
    c = counts.astype(np.float64, copy=False)
    if mask is None:
        bins = c.shape[-1]
        return np.asarray((c + 0.5) / (c.sum(axis=-1, keepdims=True) + 0.5 * bins))
    m = np.broadcast_to(mask, c.shape)
    c = np.where(m, c, 0.0)
    bins = m.sum(axis=-1, keepdims=True)
    return np.asarray(np.where(m, c + 0.5, 0.0) / (c.sum(axis=-1, keepdims=True) + 0.5 * bins))


def _xlogy_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a * log(a / b)`` with 0 where ``a`` is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(a > 0, a * np.log(a / b), 0.0))


def psi(window: np.ndarray, reference: np.ndarray, mask: Mask = None) -> np.ndarray:
    """Population stability index per row.

    >>> psi(np.array([[50, 50]]), np.array([[50, 50]])).round(6).tolist()
    [0.0]
    >>> float(psi(np.array([[90, 10]]), np.array([[50, 50]]))[0].round(3))
    0.853
    """
    q = proportions(window, mask)
    p = proportions(reference, mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, (q - p) * np.log(q / p), 0.0)
    return np.asarray(terms.sum(axis=-1))


def js(window: np.ndarray, reference: np.ndarray, mask: Mask = None) -> np.ndarray:
    """Jensen-Shannon divergence per row (natural log).

    >>> float(js(np.array([[1000, 0]]), np.array([[0, 1000]]))[0].round(2))
    0.69
    """
    q = proportions(window, mask)
    p = proportions(reference, mask)
    m = 0.5 * (p + q)
    return np.asarray(0.5 * (_xlogy_ratio(q, m) + _xlogy_ratio(p, m)).sum(axis=-1))


def ks(window: np.ndarray, reference: np.ndarray, mask: Mask = None) -> np.ndarray:
    """Largest absolute difference of the binned CDFs per row.

    >>> ks(np.array([[0, 10]]), np.array([[10, 0]])).tolist()
    [1.0]
    """
    w = window.astype(np.float64)
    r = reference.astype(np.float64)
    if mask is not None:
        w = np.where(mask, w, 0.0)
        r = np.where(mask, r, 0.0)
    wn = np.maximum(w.sum(axis=-1, keepdims=True), 1.0)
    rn = np.maximum(r.sum(axis=-1, keepdims=True), 1.0)
    gap = np.abs(np.cumsum(w / wn, axis=-1) - np.cumsum(r / rn, axis=-1))
    return np.asarray(gap.max(axis=-1))


def chi2(window: np.ndarray, reference: np.ndarray, mask: Mask = None) -> np.ndarray:
    """Pearson chi-square of window counts against smoothed reference proportions.

    >>> chi2(np.array([[50, 50]]), np.array([[500, 500]])).round(6).tolist()
    [0.0]
    """
    w = window.astype(np.float64)
    if mask is not None:
        w = np.where(mask, w, 0.0)
    n = w.sum(axis=-1, keepdims=True)
    p = proportions(reference, mask)
    expected = np.maximum(n * p, 1e-12)
    return np.asarray(np.where(p > 0, (w - expected) ** 2 / expected, 0.0).sum(axis=-1))


def statistic(
    name: str, window: np.ndarray, reference: np.ndarray, mask: Mask = None
) -> np.ndarray:
    """Dispatch by name (one of :data:`STATISTICS`)."""
    if name == "psi":
        return psi(window, reference, mask)
    if name == "js":
        return js(window, reference, mask)
    if name == "ks":
        return ks(window, reference, mask)
    if name == "chi2":
        return chi2(window, reference, mask)
    raise ValueError(f"unknown statistic {name!r}; expected one of {', '.join(STATISTICS)}")


def all_statistics(
    window: np.ndarray, reference: np.ndarray, mask: Mask = None
) -> dict[str, np.ndarray]:
    """Every statistic of :data:`STATISTICS` at once, sharing the proportions (the window
    detector's hot path; equal to calling each function).

    >>> w, r = np.array([[90, 10]]), np.array([[50, 50]])
    >>> {k: round(float(v[0]), 6) for k, v in all_statistics(w, r).items()} == {
    ...     k: round(float(statistic(k, w, r)[0]), 6) for k in STATISTICS}
    True
    """
    q = proportions(window, mask)
    p = proportions(reference, mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(q / p)
        psi_v = np.where(p > 0, (q - p) * ratio, 0.0).sum(axis=-1)
    m = 0.5 * (p + q)
    js_v = 0.5 * (_xlogy_ratio(q, m) + _xlogy_ratio(p, m)).sum(axis=-1)
    w = window.astype(np.float64)
    r = reference.astype(np.float64)
    if mask is not None:
        w = np.where(mask, w, 0.0)
        r = np.where(mask, r, 0.0)
    wn = w.sum(axis=-1, keepdims=True)
    rn = np.maximum(r.sum(axis=-1, keepdims=True), 1.0)
    ks_v = np.abs(np.cumsum(w / np.maximum(wn, 1.0), axis=-1) - np.cumsum(r / rn, axis=-1))
    expected = np.maximum(wn * p, 1e-12)
    chi2_v = np.where(p > 0, (w - expected) ** 2 / expected, 0.0).sum(axis=-1)
    return {
        "psi": np.asarray(psi_v),
        "js": np.asarray(js_v),
        "ks": np.asarray(ks_v.max(axis=-1)),
        "chi2": np.asarray(chi2_v),
    }


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Histogram each row of ``values`` (features x n) on its row of inner ``edges``.

    ``edges`` has shape ``(features, bins - 1)`` and is sorted per row (padded with +inf); bin
    ``b`` holds ``edges[b-1] <= x < edges[b]``. Non-finite values are not counted.

    >>> bin_counts(np.array([[0.0, 1.0, 2.0, np.nan]]), np.array([[0.5, 1.5]])).tolist()
    [[1, 1, 1]]
    """
    f, bins_minus_1 = edges.shape
    bins = bins_minus_1 + 1
    # With a handful of edges, counting the edges each value reaches (one vectorized comparison
    # per edge over all rows) is cheaper than a binary search per row; counted in bytes (an
    # eighth of the memory traffic of int64: 35 % less time for 10 bins) when they fit.
    small = bins < 256
    reached_count = np.zeros(values.shape, dtype=np.uint8 if small else np.int64)
    reached = np.empty(values.shape, dtype=bool)
    step = reached.view(np.uint8) if small else reached  # bytes of 0/1: added without a cast
    for k in range(bins_minus_1):
        np.greater_equal(values, edges[:, k : k + 1], out=reached)
        reached_count += step
    idx = reached_count.astype(np.int64)
    idx += (np.arange(f, dtype=np.int64) * bins)[:, None]
    idx[~np.isfinite(values)] = f * bins
    counts = np.bincount(idx.ravel(), minlength=f * bins + 1)
    return counts[: f * bins].reshape(f, bins)


def code_counts(codes: list[np.ndarray], bins: np.ndarray) -> np.ndarray:
    """Histogram integer category codes; ``bins[j]`` is feature ``j``'s bin count.

    Codes below zero (missing) are not counted. Rows are padded to the widest feature.

    >>> code_counts([np.array([0, 0, 2, -1])], np.array([3])).tolist()
    [[2, 0, 1]]
    """
    width = int(bins.max()) if len(bins) else 0
    out = np.zeros((len(codes), width), dtype=np.int64)
    for j, c in enumerate(codes):
        valid = c[c >= 0]
        out[j, : bins[j]] = np.bincount(valid, minlength=int(bins[j]))[: bins[j]]
    return out
