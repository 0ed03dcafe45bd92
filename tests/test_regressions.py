"""Regression tests for detector bugs found while writing the detector tests."""

from __future__ import annotations

import numpy as np
from scipy import stats

from detectors import distances
from detectors.calibration import page_hinkley_threshold
from detectors.change import PageHinkleyLatch
from detectors.columns import Columns, categorical_block, numeric_block
from detectors.profile import build_profile
from detectors.window import DetectorSettings, WindowDetector


def test_binary_categorical_psi_false_positive_rate_is_within_budget() -> None:
    """A bool feature (P(True) = 0.3) profiled from 10,000 events; windows of 1000 drawn from the
    same distribution. The per-window false-positive rate of its PSI test is computed exactly by
    enumerating the window's count of True (Binomial(1000, 0.3)); it must be of the order of the
    detector's alpha, here allowed up to 10 * alpha."""
    rng = np.random.default_rng(2024)
    feats = [
        {"x": float(x), "b": bool(b)}
        for x, b in zip(rng.standard_normal(10_000), rng.random(10_000) < 0.3, strict=True)
    ]
    prof = build_profile("m", "1", "s", feats, np.array([]), [], np.array([]))
    det = WindowDetector(prof, DetectorSettings())
    cp = prof.categorical["b"]
    window = [
        {"x": float(x), "b": bool(b)}
        for x, b in zip(rng.standard_normal(1000), rng.random(1000) < 0.3, strict=True)
    ]
    cols = Columns(
        1000,
        numeric_block(window, ["x"]),
        categorical_block(window, ["b"], det.indexes, det.unseen_codes),
    )
    r = det.rows.index("b")
    threshold = float(det.evaluate(cols).threshold["psi"][r])
    k = np.arange(1001)  # windows with k events of the first category
    counts = np.zeros((1001, cp.bins), dtype=np.int64)
    first = cp.categories[0]
    counts[:, 0] = k
    counts[:, 1] = 1000 - k
    ref = np.broadcast_to(cp.histogram(), counts.shape)
    psi = distances.psi(counts, ref, ref > 0)  # as the detector computes it
    p_first = 0.3 if first is True else 0.7
    rate = float(stats.binom.pmf(k, 1000, p_first)[psi > threshold].sum())
    assert rate <= 10 * det.alpha, (rate, det.alpha, rate / det.alpha)


def test_page_hinkley_latch_holds_while_the_shift_persists() -> None:
    """The change condition should stay true while the z series stays shifted by 5 sd (the
    ChangeLatch docstring: "stays active while the change persists ... the alert clears once
    the series is back to normal"). Allow 10 % of windows to miss."""
    rng = np.random.default_rng(1)
    latch = PageHinkleyLatch(page_hinkley_threshold(1e-6), delta=0.5, clear=3.0)
    for z in rng.standard_normal(100):
        latch.update(float(z))
    active = [latch.update(float(z)) for z in rng.standard_normal(60) + 5.0]
    first = active.index(True)
    held = active[first:]
    assert sum(held) >= 0.9 * len(held), "".join("1" if a else "0" for a in active)


def test_bool_feature_wrong_type_counted_the_same_in_profile_and_window() -> None:
    """A bool feature with 5 % stray strings: the reference profile and a window of the very same
    events must agree on how many values are of the wrong type."""
    feats = ([{"b": True}] * 60 + [{"b": False}] * 35 + [{"b": "yes"}] * 5) * 10
    prof = build_profile("m", "1", "s", feats, np.array([]), [], np.array([]))
    det = WindowDetector(prof, DetectorSettings(window_size=len(feats)))
    cb = categorical_block(feats, det.categorical_names, det.indexes, det.unseen_codes)
    assert prof.categorical["b"].quality.wrong_type == int(cb.wrong_type[0])
