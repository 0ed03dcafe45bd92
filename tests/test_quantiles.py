"""``detectors.quantiles.quantiles`` is ``np.quantile`` to the bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from detectors.quantiles import quantiles


@settings(max_examples=500, deadline=None)
@given(
    arrays(
        np.float64,
        st.integers(1, 2000),
        elements=st.floats(allow_nan=False, allow_infinity=False, width=64),
    ),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
)
def test_quantiles_are_numpys(values: np.ndarray, qs: list[float]) -> None:
    expected = np.quantile(values, qs)
    got = quantiles(values, np.asarray(qs))
    np.testing.assert_array_equal(got, expected)
    assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_the_percentiles_the_monitor_takes() -> None:
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 999, 1000, 1001):
        lat = rng.lognormal(3.0, 0.6, n).round(2)
        for qs in ([0.5, 0.95, 0.99], [0.05, 0.5, 0.95]):
            np.testing.assert_array_equal(quantiles(lat, np.array(qs)), np.quantile(lat, qs))
