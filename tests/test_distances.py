"""Tests for :mod:`detectors.distances`: known values, metric properties and histogram edge cases.

Known values are computed independently with scipy (``rel_entr``, ``jensenshannon``,
``chisquare``) on the Krichevsky-Trofimov smoothed proportions ``(c + 1/2) / (N + B/2)`` that
the module documents, so a change of formula or smoothing shows up as a mismatch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import spatial, special
from scipy import stats as sps

from detectors import distances
from detectors.distances import bin_counts, chi2, code_counts, js, ks, proportions, psi

Counts = NDArray[np.int64]


def _kt(counts: list[int]) -> NDArray[np.float64]:
    """KT-smoothed proportions, written out independently of the module."""
    c = np.asarray(counts, dtype=np.float64)
    return np.asarray((c + 0.5) / (c.sum() + 0.5 * c.size))


def _row(counts: list[int]) -> Counts:
    return np.asarray([counts], dtype=np.int64)


CASES = [
    ([90, 10], [50, 50]),
    ([0, 5, 20, 75], [25, 25, 25, 25]),
    ([3, 0, 0, 1, 9], [100, 40, 7, 0, 2]),
    ([1000, 0], [0, 1000]),
]


# -- known values --------------------------------------------------------------------------------


def test_proportions_are_kt_smoothed_and_sum_to_one() -> None:
    counts = np.array([[0, 3, 7], [10, 0, 0]])
    p = proportions(counts)
    np.testing.assert_allclose(p[0], [0.5 / 11.5, 3.5 / 11.5, 7.5 / 11.5])
    np.testing.assert_allclose(p[1], [10.5 / 11.5, 0.5 / 11.5, 0.5 / 11.5])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


@pytest.mark.parametrize(("window", "reference"), CASES)
def test_psi_is_symmetric_kl_of_smoothed_proportions(
    window: list[int], reference: list[int]
) -> None:
    q, p = _kt(window), _kt(reference)
    # PSI = KL(q||p) + KL(p||q) = sum (q - p) ln(q / p)
    expected = float(special.rel_entr(q, p).sum() + special.rel_entr(p, q).sum())
    assert psi(_row(window), _row(reference))[0] == pytest.approx(expected, rel=1e-12)


def test_psi_hand_computed_value() -> None:
    # q = (90.5, 10.5)/101, p = (50.5, 50.5)/101 = 1/2 each
    q1, q2 = 90.5 / 101, 10.5 / 101
    expected = (q1 - 0.5) * math.log(q1 / 0.5) + (q2 - 0.5) * math.log(q2 / 0.5)
    assert psi(_row([90, 10]), _row([50, 50]))[0] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.853, abs=5e-4)


@pytest.mark.parametrize(("window", "reference"), CASES)
def test_js_matches_scipy_jensenshannon(window: list[int], reference: list[int]) -> None:
    q, p = _kt(window), _kt(reference)
    # scipy returns the JS *distance*, the square root of the divergence (natural log).
    expected = float(spatial.distance.jensenshannon(q, p)) ** 2
    assert js(_row(window), _row(reference))[0] == pytest.approx(expected, rel=1e-9)


def test_js_of_disjoint_large_samples_approaches_ln2() -> None:
    value = float(js(_row([10**6, 0]), _row([0, 10**6]))[0])
    assert value < math.log(2)
    assert value == pytest.approx(math.log(2), abs=1e-4)


@pytest.mark.parametrize(
    ("window", "reference", "expected"),
    [
        ([0, 10], [10, 0], 1.0),
        ([5, 5], [10, 0], 0.5),
        ([1, 1, 2], [2, 1, 1], 0.25),  # cdfs (.25,.5,1) vs (.5,.75,1)
        ([0, 0, 4], [0, 0, 9], 0.0),
        ([3, 1, 0, 0], [0, 0, 1, 3], 1.0),
    ],
)
def test_ks_known_values(window: list[int], reference: list[int], expected: float) -> None:
    assert ks(_row(window), _row(reference))[0] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("window", "reference"), CASES)
def test_chi2_matches_scipy_chisquare(window: list[int], reference: list[int]) -> None:
    w = np.asarray(window, dtype=np.float64)
    expected_counts = w.sum() * _kt(reference)
    expected = float(sps.chisquare(w, expected_counts).statistic)
    assert chi2(_row(window), _row(reference))[0] == pytest.approx(expected, rel=1e-9)


def test_chi2_is_zero_when_smoothing_leaves_proportions_unchanged() -> None:
    # Uniform counts: (c + 1/2) / (N + B/2) = c / N, so the expected counts equal the counts.
    assert chi2(_row([7, 7, 7]), _row([7, 7, 7]))[0] == pytest.approx(0.0, abs=1e-12)
    assert chi2(_row([7, 7, 7]), _row([70, 70, 70]))[0] == pytest.approx(0.0, abs=1e-12)
    assert chi2(_row([9, 1]), _row([9, 1]))[0] > 0.0


def test_chi2_is_not_symmetric() -> None:
    a, b = _row([90, 10]), _row([50, 50])
    assert chi2(a, b)[0] != pytest.approx(chi2(b, a)[0], rel=1e-3)


# -- properties ----------------------------------------------------------------------------------

count_rows = st.integers(min_value=2, max_value=8).flatmap(
    lambda bins: st.tuples(
        st.lists(st.integers(0, 500), min_size=bins, max_size=bins),
        st.lists(st.integers(0, 500), min_size=bins, max_size=bins),
    )
)


@settings(max_examples=150, deadline=None)
@given(count_rows)
def test_metric_properties(pair: tuple[list[int], list[int]]) -> None:
    a, b = _row(pair[0]), _row(pair[1])
    # Zero for identical inputs. (Not chi2: it compares raw window counts with the *smoothed*
    # reference proportions, so identical non-uniform rows give a small positive value.)
    for name in ("psi", "js", "ks"):
        assert distances.statistic(name, a, a)[0] == pytest.approx(0.0, abs=1e-12)
    # Symmetric where the definition is symmetric.
    assert psi(a, b)[0] == pytest.approx(psi(b, a)[0], rel=1e-12, abs=1e-15)
    assert js(a, b)[0] == pytest.approx(js(b, a)[0], rel=1e-12, abs=1e-15)
    assert ks(a, b)[0] == pytest.approx(ks(b, a)[0], abs=1e-12)
    # Ranges.
    assert psi(a, b)[0] >= -1e-15
    assert chi2(a, b)[0] >= 0.0
    assert -1e-15 <= js(a, b)[0] <= math.log(2)
    assert 0.0 <= ks(a, b)[0] <= 1.0 + 1e-12


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 100), min_size=3, max_size=3),
    st.lists(st.integers(0, 100), min_size=3, max_size=3),
    st.lists(st.integers(0, 100), min_size=3, max_size=3),
)
def test_rows_are_independent_and_draw_axes_broadcast(
    r0: list[int], r1: list[int], ref: list[int]
) -> None:
    window = np.array([r0, r1])
    reference = np.array([ref, ref])
    for name in distances.STATISTICS:
        both = distances.statistic(name, window, reference)
        assert both.shape == (2,)
        for i in range(2):
            single = distances.statistic(name, window[i : i + 1], reference[i : i + 1])[0]
            assert both[i] == pytest.approx(single, rel=1e-12, abs=1e-15)
        # The bootstrap evaluates (rows, draws, bins) arrays in one call.
        cube = distances.statistic(name, window[:, None, :], reference[:, None, :])
        assert cube.shape == (2, 1)
        np.testing.assert_allclose(cube[:, 0], both, rtol=1e-12, atol=1e-15)


def test_psi_grows_with_the_shift() -> None:
    reference = _row([25, 25, 25, 25])
    values = [psi(_row([25 + d, 25, 25, 25 - d]), reference)[0] for d in (0, 5, 10, 20)]
    assert values == sorted(values)
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    assert values[-1] > values[1] > 0


def test_statistic_dispatch_and_unknown_name() -> None:
    a, b = _row([4, 6]), _row([5, 5])
    assert distances.statistic("psi", a, b)[0] == psi(a, b)[0]
    assert distances.statistic("js", a, b)[0] == js(a, b)[0]
    assert distances.statistic("ks", a, b)[0] == ks(a, b)[0]
    assert distances.statistic("chi2", a, b)[0] == chi2(a, b)[0]
    with pytest.raises(ValueError, match="unknown statistic 'kl'"):
        distances.statistic("kl", a, b)


# -- bin_counts ----------------------------------------------------------------------------------


def test_bin_counts_ignores_nan_and_inf() -> None:
    values = np.array([[np.nan, 0.0, np.inf, 1.0, -np.inf, 2.0, np.nan]])
    counts = bin_counts(values, np.array([[0.5, 1.5]]))
    assert counts.tolist() == [[1, 1, 1]]
    assert counts.dtype.kind == "i"


def test_bin_counts_values_beyond_edges_land_in_end_bins() -> None:
    values = np.array([[-1e300, -5.0, 0.49, 0.5, 1.49, 1.5, 7.0, 1e300]])
    counts = bin_counts(values, np.array([[0.5, 1.5]]))
    # Bins are [-inf, 0.5), [0.5, 1.5), [1.5, +inf): an edge value goes to the upper bin.
    assert counts.tolist() == [[3, 2, 3]]


def test_bin_counts_padded_inf_edges_leave_trailing_bins_empty() -> None:
    values = np.array([[0.0, 0.2, 3.0, 1e308, np.inf]])
    counts = bin_counts(values, np.array([[0.1, np.inf, np.inf]]))
    assert counts.tolist() == [[1, 3, 0, 0]]


def test_bin_counts_all_inf_edges_put_everything_in_the_first_bin() -> None:
    values = np.array([[3.0, 3.0, -2.0, np.nan]])
    counts = bin_counts(values, np.full((1, 4), np.inf))
    assert counts.tolist() == [[3, 0, 0, 0, 0]]


def test_bin_counts_rows_use_their_own_edges() -> None:
    values = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]])
    edges = np.array([[0.5, np.inf], [1.5, 2.5]])
    assert bin_counts(values, edges).tolist() == [[1, 3, 0], [2, 1, 1]]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from([0.0, 1.0, 2.0]),
        ),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.floats(-3, 3), min_size=1, max_size=5),
)
def test_bin_counts_matches_a_direct_count(values: list[float], raw_edges: list[float]) -> None:
    edges = np.sort(np.asarray(raw_edges))
    v = np.asarray(values)
    counts = bin_counts(v[None, :], edges[None, :])[0]
    finite = v[np.isfinite(v)]
    assert counts.sum() == finite.size
    bounds = [-np.inf, *edges.tolist(), np.inf]
    for b in range(edges.size + 1):
        expected = int(np.count_nonzero((finite >= bounds[b]) & (finite < bounds[b + 1])))
        assert counts[b] == expected


# -- code_counts ---------------------------------------------------------------------------------


def test_code_counts_skips_missing_codes_and_pads_rows() -> None:
    codes = [
        np.array([0, 0, 2, -1, -1, 1]),
        np.array([-1, -1, -1]),
        np.array([4, 4, 0, -1]),
    ]
    counts = code_counts(codes, np.array([3, 2, 5]))
    assert counts.tolist() == [[2, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 2]]
    assert counts.shape == (3, 5)


def test_code_counts_empty_code_arrays() -> None:
    counts = code_counts([np.array([], dtype=np.int64)], np.array([4]))
    assert counts.tolist() == [[0, 0, 0, 0]]
    assert code_counts([], np.array([], dtype=np.int64)).shape == (0, 0)
