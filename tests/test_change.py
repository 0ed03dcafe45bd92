"""Tests for :mod:`detectors.change`: the latch around one-shot River change detections."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.calibration import page_hinkley_threshold
from detectors.change import AdwinLatch, ChangeLatch, PageHinkleyLatch

# -- ChangeLatch ---------------------------------------------------------------------------------


def test_clear_must_be_positive() -> None:
    with pytest.raises(ValueError, match="clear"):
        ChangeLatch(0.0)
    with pytest.raises(ValueError, match="clear"):
        ChangeLatch(-1.0)


def test_baseline_is_the_mean_of_inactive_updates() -> None:
    latch = ChangeLatch(clear=10.0)
    xs = [1.0, 2.0, 6.0, -3.0]
    for x in xs:
        assert latch.update(x, detected=False) is False
    assert latch.baseline == pytest.approx(sum(xs) / len(xs))


def test_detection_alone_is_not_enough() -> None:
    latch = ChangeLatch(clear=3.0)
    # The very first update has no baseline yet: a detection cannot activate the latch.
    assert latch.update(100.0, detected=True) is False
    assert latch.baseline == 100.0
    # Detected but within `clear` of the baseline: stays inactive and joins the baseline.
    assert latch.update(102.0, detected=True) is False
    assert latch.baseline == pytest.approx(101.0)
    # Away from the baseline but not detected: inactive.
    assert latch.update(110.0, detected=False) is False
    assert latch.active is False


def test_latch_holds_while_away_and_freezes_the_baseline() -> None:
    # Release on the first value back within `clear` (no release hysteresis) to isolate holding.
    latch = ChangeLatch(clear=3.0, release_below=3.0, release_after=1)
    for x in (0.0, 1.0, -1.0, 0.0):
        latch.update(x, detected=False)
    assert latch.baseline == 0.0
    assert latch.update(5.0, detected=True) is True
    # No further detections are needed while the value stays >= clear away, either side.
    assert latch.update(4.0, detected=False) is True
    assert latch.update(-3.0, detected=False) is True  # |x - 0| = 3 >= clear
    assert latch.baseline == 0.0  # active updates do not move the baseline
    assert latch.update(2.9, detected=False) is False
    # Released; the releasing value belongs to the change, so the baseline is unchanged, and a
    # new detection is needed to re-activate.
    assert latch.baseline == 0.0
    assert latch.update(9.0, detected=False) is False
    assert latch.baseline == pytest.approx(9.0 / 5)


def test_release_needs_consecutive_calm_values() -> None:
    """One noisy window back near the baseline must not release a persisting change: River
    restarts its detector after a detection, so a released latch would never be set again."""
    latch = ChangeLatch(clear=3.0)  # release below 2.0 for 2 consecutive values
    for x in (0.0, 0.5, -0.5):
        latch.update(x, detected=False)
    assert latch.update(5.0, detected=True) is True
    assert [latch.update(x, detected=False) for x in (1.0, 5.0, 1.9)] == [True] * 3
    assert latch.update(1.9, detected=False) is False  # second calm value in a row
    assert latch.active is False


def test_up_direction_ignores_decreases() -> None:
    latch = ChangeLatch(clear=1.0, direction="up", release_after=1)
    for x in (5.0, 5.0):
        latch.update(x, detected=False)
    assert latch.update(0.0, detected=True) is False  # far below: not a change "up"
    assert latch.update(7.0, detected=True) is True
    assert latch.update(6.5, detected=False) is True
    assert latch.update(-100.0, detected=False) is False


# -- PageHinkleyLatch ----------------------------------------------------------------------------

ALPHA = 1e-6
H = page_hinkley_threshold(ALPHA, 0.5)


def _run(latch: PageHinkleyLatch, zs: np.ndarray) -> list[bool]:
    return [latch.update(float(z)) for z in zs]


def test_page_hinkley_latch_quiet_on_null_series() -> None:
    """Two-sided ARL0 = 1/alpha = 1e6 windows, so P(alarm within 500) <~ 500 / 1e6 = 5e-4."""
    rng = np.random.default_rng(0)
    latch = PageHinkleyLatch(H)
    assert not any(_run(latch, rng.standard_normal(500)))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_page_hinkley_latch_catches_a_step_and_releases(sign: float) -> None:
    """A 5-sd step in the z series: the CUSUM gains ~ (5 - delta) per window, so it crosses h
    within ceil(h / 4.5) windows; twice that bounds the delay with room for noise. Once the
    series is back to normal the latch is released (the value is within ``clear`` of the
    baseline) and stays released."""
    rng = np.random.default_rng(1 if sign > 0 else 2)
    latch = PageHinkleyLatch(H, delta=0.5, clear=3.0)
    assert not any(_run(latch, rng.standard_normal(100)))
    shifted = _run(latch, rng.standard_normal(30) + 5.0 * sign)
    assert True in shifted
    assert shifted.index(True) <= 2 * math.ceil(H / 4.5)
    back = _run(latch, rng.standard_normal(30))
    # Released after two consecutive windows within 2 sd of the baseline (hysteresis).
    assert not any(back[2:])


def test_page_hinkley_latch_ignores_a_small_offset_below_clear() -> None:
    """A +2 sd step is detected by the CUSUM but never 3 sd away from the baseline on average;
    the latch only fires on windows that happen to be 3 away, so far fewer than on a 5-sd step."""
    rng = np.random.default_rng(3)
    latch = PageHinkleyLatch(H, clear=3.0)
    _run(latch, rng.standard_normal(100))
    active = _run(latch, rng.standard_normal(40) + 2.0)
    assert sum(active) <= 10


# -- AdwinLatch ----------------------------------------------------------------------------------


def test_adwin_latch_catches_a_large_increase_and_releases() -> None:
    clear = math.log1p(0.1)
    rng = np.random.default_rng(4)
    latch = AdwinLatch(delta=0.01, clear=clear)
    baseline_values = rng.normal(0.0, 0.05, 40).tolist()
    assert not any(latch.update(x) for x in baseline_values)
    up_values = rng.normal(1.0, 0.05, 40).tolist()
    up = [latch.update(x) for x in up_values]
    assert any(up)
    first = up.index(True)
    assert first <= 30
    assert all(up[first:])
    # The baseline is the running mean of the inactive values that were within `clear` of it
    # (all of the first ten): the step values before the activation are too far away to count.
    n, mean = 0, 0.0
    for x in [*baseline_values, *up_values[:first]]:
        if n < 10 or abs(x - mean) < clear:
            n += 1
            mean += (x - mean) / n
    assert n >= 10 + 0.5 * (len(baseline_values) - 10)  # most null values count
    assert latch.latch.baseline == pytest.approx(mean, rel=1e-9)
    back = [latch.update(float(x)) for x in rng.normal(0.0, 0.05, 10)]
    assert back[:1] == [True]  # released on the second calm value
    assert not any(back[1:])


def test_adwin_latch_ignores_decreases() -> None:
    rng = np.random.default_rng(5)
    latch = AdwinLatch(delta=0.01, clear=math.log1p(0.1))
    values = np.concatenate([rng.normal(0.0, 0.05, 40), rng.normal(-1.0, 0.05, 60)])
    assert not any(latch.update(float(x)) for x in values)
