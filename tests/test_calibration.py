"""Tests for :mod:`detectors.calibration`: do the derived thresholds deliver the promised rates?

Every statistical assertion derives its tolerance in the test from the number of simulated
trials (binomial or sample standard errors, 4 sigma), and every simulation is seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from river import drift
from scipy import stats

from detectors import distances
from detectors.calibration import (
    SECONDS_PER_DAY,
    FalseAlarmBudget,
    count_threshold,
    gamma_tail_threshold,
    normal_quantile,
    page_hinkley_threshold,
)
from detectors.columns import CategoricalBlock, Columns, NumericBlock, categorical_block
from detectors.profile import (
    QualityCounts,
    ReferenceProfile,
    categorical_profile,
    numeric_profile,
)
from detectors.window import DetectorSettings, WindowDetector

Z = 4.0  # sigma multiplier of every statistical bound in this module
N_WINDOW = 1000  # events per window
M_REFERENCE = 5000  # events in each reference sample

# -- (a) false-positive rate of the calibrated PSI thresholds ------------------------------------


def _settings_for_alpha(alpha: float, tests: int, seed: int) -> DetectorSettings:
    """Settings whose budget gives exactly ``alpha`` per test: alpha = 1 / (W * T) with
    W = days * 86400 * eps / n  =>  days = n / (alpha * T * 86400 * eps)."""
    eps = 1.0
    days = N_WINDOW / (alpha * tests * SECONDS_PER_DAY * eps)
    return DetectorSettings(
        window_size=N_WINDOW,
        budget_days=days,
        events_per_second=eps,
        statistics=("psi",),
        seed=seed,
        page_hinkley=False,
    )


# Tests per window of a one-feature profile without page_hinkley: 1 distance + the feature's
# quality checks (5 numeric / 4 categorical) + 1 unexpected-feature test. Asserted through
# ``det.alpha`` in the test, so a change in the count is caught rather than silently absorbed.
TESTS_PER_WINDOW = {"numeric": 1 + 5 + 1, "categorical": 1 + 4 + 1}


@dataclass(frozen=True)
class NullCase:
    """One reference sample turned into a detector, and the true bin probabilities of a window
    drawn from the distribution that generated the reference."""

    detector: WindowDetector
    reference_counts: NDArray[np.int64]
    bin_probabilities: NDArray[np.float64]
    one_window: Columns
    one_window_counts: NDArray[np.int64]


def _empty_numeric(n: int) -> NumericBlock:
    z = np.zeros(0, dtype=np.int64)
    return NumericBlock((), np.zeros((0, n)), z, z, z, z)


def _empty_categorical() -> CategoricalBlock:
    z = np.zeros(0, dtype=np.int64)
    return CategoricalBlock((), [], z, z, z)


def _numeric_case(rng: np.random.Generator, alpha: float, seed: int) -> NullCase:
    x = rng.standard_normal(M_REFERENCE)
    prof = numeric_profile(x)
    profile = ReferenceProfile(
        model="m", model_version="1", source="test", events=M_REFERENCE, numeric={"x": prof}
    )
    det = WindowDetector(profile, _settings_for_alpha(alpha, TESTS_PER_WINDOW["numeric"], seed))
    # A window of N(0,1) values, binned on the reference's quantile edges, has multinomial
    # counts with p_b = Phi(e_b) - Phi(e_{b-1}): the exact distribution of a fresh null window.
    bounds = np.concatenate([[-np.inf], np.asarray(prof.edges), [np.inf]])
    p = np.diff(stats.norm.cdf(bounds))
    values = rng.standard_normal(N_WINDOW)
    z = np.zeros(1, dtype=np.int64)
    cols = Columns(
        N_WINDOW, NumericBlock(("x",), values[None, :], z, z, z, z), _empty_categorical()
    )
    counts = distances.bin_counts(values[None, :], np.asarray(prof.edges)[None, :])[0]
    return NullCase(det, np.asarray(prof.counts), p, cols, counts)


CATEGORIES = [f"c{i}" for i in range(12)]
# Zipf-like; with max_categories=8 the last four share the "other" bin.
CATEGORY_P = np.array([1.0 / (i + 1) for i in range(12)]) / sum(1.0 / (i + 1) for i in range(12))


def _categorical_case(rng: np.random.Generator, alpha: float, seed: int) -> NullCase:
    sample = [CATEGORIES[i] for i in rng.choice(12, size=M_REFERENCE, p=CATEGORY_P)]
    prof = categorical_profile(sample, QualityCounts(n=M_REFERENCE), max_categories=8)
    profile = ReferenceProfile(
        model="m", model_version="1", source="test", events=M_REFERENCE, categorical={"c": prof}
    )
    det = WindowDetector(profile, _settings_for_alpha(alpha, TESTS_PER_WINDOW["categorical"], seed))
    index = prof.index()
    unseen = len(prof.categories) + 1
    p = np.zeros(prof.bins)
    for cat, pc in zip(CATEGORIES, CATEGORY_P, strict=True):
        p[index.get(cat, unseen)] += pc
    window = [{"c": CATEGORIES[i]} for i in rng.choice(12, size=N_WINDOW, p=CATEGORY_P)]
    cb = categorical_block(window, ["c"], [index], [unseen])
    cols = Columns(N_WINDOW, _empty_numeric(N_WINDOW), cb)
    counts = distances.code_counts(cb.codes, np.array([prof.bins]))[0]
    return NullCase(det, prof.histogram(), p, cols, counts)


@pytest.mark.parametrize(
    ("kind", "alpha", "references", "windows_per_reference"),
    [
        ("numeric", 0.01, 150, 2000),
        ("numeric", 0.001, 150, 6000),
        ("categorical", 0.01, 150, 2000),
        ("categorical", 0.001, 150, 6000),
    ],
)
def test_psi_threshold_false_positive_rate_matches_alpha(
    kind: str, alpha: float, references: int, windows_per_reference: int
) -> None:
    """Fresh null windows exceed the calibrated PSI threshold at rate ``alpha``.

    The calibration promises an *unconditional* rate: the bootstrap re-draws the reference, so
    the rate is averaged over reference samples as well as windows. Each of R references gets
    its own detector (own bootstrap seed) and K fresh windows. Windows that share a reference
    are not independent (the rate given one reference varies around alpha), so the standard
    error of the pooled rate is the between-reference one,

        se = sd(rate_r) / sqrt(R)        (it contains the within-reference binomial part),

    floored at the binomial se if all R*K windows were independent,

        se_binom = sqrt(alpha * (1 - alpha) / (R * K)),

    and the test asserts |pooled - alpha| <= 4 * max(se, se_binom).

    That tolerance is some +-30 % (alpha = 0.01) to +-80 % (0.001) of alpha, so it does not
    resolve the gamma tail's modest anti-conservatism on categorical rows: a larger run of the
    same design (500 references x 10,000 windows) gave 1.37 +- 0.07 alpha at alpha = 1e-3 and
    1.69 +- 0.09 alpha at 1e-4 for this categorical case, 1.10 and 1.22 alpha for the numeric one.
    """
    rng = np.random.default_rng(20240 + int(1 / alpha) + (0 if kind == "numeric" else 7))
    make = _numeric_case if kind == "numeric" else _categorical_case
    rates = np.empty(references)
    for r in range(references):
        case = make(rng, alpha, seed=r)
        det = case.detector
        assert det.alpha == pytest.approx(alpha, rel=1e-9)
        report = det.evaluate(case.one_window)
        # The window statistic the detector reports is PSI of the binned window vs reference.
        # Bins empty in the reference take no part (see detectors.distances).
        support = case.reference_counts > 0
        expected_psi = distances.psi(
            case.one_window_counts[None, :], case.reference_counts[None], support
        )
        assert report.drift["psi"][0] == pytest.approx(expected_psi[0], rel=1e-12)
        threshold = float(report.threshold["psi"][0])
        assert math.isfinite(threshold)
        assert threshold > 0
        windows = rng.multinomial(N_WINDOW, case.bin_probabilities, size=windows_per_reference)
        ref = np.broadcast_to(case.reference_counts, windows.shape)
        rates[r] = float(np.mean(distances.psi(windows, ref, support) > threshold))
    pooled = float(rates.mean())
    se_between = float(rates.std(ddof=1) / math.sqrt(references))
    se_binom = math.sqrt(alpha * (1 - alpha) / (references * windows_per_reference))
    bound = Z * max(se_between, se_binom)
    assert abs(pooled - alpha) <= bound, (pooled, alpha, bound)


def test_gamma_tail_threshold_on_bootstrap_draws_controls_the_rate() -> None:
    """``gamma_tail_threshold`` on multinomial bootstrap draws, one reference per trial.

    Rows of ``gamma_tail_threshold`` are independent trials here: each row has its own reference
    sample and bootstrap, and one fresh window is compared with its threshold, so the number of
    exceedances is exactly Binomial(trials, rate); a 4-sigma interval around alpha is
    alpha +- 4 * sqrt(alpha * (1 - alpha) / trials).
    """
    rng = np.random.default_rng(7)
    alpha, trials, draws, bins = 0.05, 4000, 200, 6
    m, n = 2000, 500
    p_true = np.full(bins, 1.0 / bins)
    ref = rng.multinomial(m, p_true, size=trials)
    p_hat = ref / m
    # Multinomial bootstrap with a per-row p_hat, done as successive binomials (vectorized).
    boot_w = _multinomial_rows(rng, n, p_hat, draws)
    boot_r = _multinomial_rows(rng, m, p_hat, draws)
    null = distances.psi(boot_w, boot_r)
    thresholds = gamma_tail_threshold(null, alpha)
    assert thresholds.shape == (trials,)
    fresh = rng.multinomial(n, p_true, size=trials)
    exceed = int(np.count_nonzero(distances.psi(fresh, ref) > thresholds))
    sigma = math.sqrt(alpha * (1 - alpha) / trials)
    assert abs(exceed / trials - alpha) <= Z * sigma, (exceed / trials, alpha, Z * sigma)


def _multinomial_rows(
    rng: np.random.Generator, n: int, p: NDArray[np.float64], draws: int
) -> NDArray[np.int64]:
    """``draws`` Multinomial(n, p[i]) vectors per row i, shape (rows, draws, bins)."""
    rows, bins = p.shape
    out = np.zeros((rows, draws, bins), dtype=np.int64)
    left = np.full((rows, draws), n, dtype=np.int64)
    mass = np.ones(rows)
    for b in range(bins - 1):
        cond = np.clip(p[:, b] / np.maximum(mass, 1e-300), 0.0, 1.0)
        out[:, :, b] = rng.binomial(left, cond[:, None])
        left -= out[:, :, b]
        mass -= p[:, b]
    out[:, :, bins - 1] = left
    return out


def test_gamma_tail_threshold_constant_rows_use_mean_or_floor() -> None:
    samples = np.array([[0.3] * 5, [0.0] * 5, [0.1, 0.2, 0.3, 0.2, 0.1]])
    thr = gamma_tail_threshold(samples, 0.01, floor=1e-6)
    assert thr[0] == pytest.approx(0.3)
    assert thr[1] == pytest.approx(1e-6)
    # A real gamma fit: above every sample, decreasing in alpha.
    assert thr[2] > 0.3
    assert gamma_tail_threshold(samples[2:], 0.001)[0] > thr[2]


def test_gamma_tail_threshold_equals_moment_fitted_gamma_quantile() -> None:
    rng = np.random.default_rng(3)
    x = rng.gamma(4.0, 0.01, size=(2, 5000))
    mean = x.mean(axis=1)
    var = x.var(axis=1, ddof=1)
    expected = stats.gamma.isf(1e-6, mean**2 / var, scale=var / mean)
    np.testing.assert_allclose(gamma_tail_threshold(x, 1e-6), expected, rtol=1e-12)


# -- (b) count thresholds -----------------------------------------------------------------------


def _brute_force_count_threshold(n: int, k: int, m: int, alpha: float) -> int:
    """Linear scan for the smallest c with P(X >= c) <= alpha, X ~ BetaBinomial(n, k+.5, m-k+.5)."""
    dist = stats.betabinom(n, k + 0.5, max(m - k, 0) + 0.5)
    sf = dist.sf(np.arange(-1, n + 1))  # sf[c] = P(X > c - 1) = P(X >= c), c = 0..n+1
    return int(np.flatnonzero(sf <= alpha)[0])


@pytest.mark.parametrize(
    ("n", "k", "m", "alpha"),
    [
        (1000, 0, 10000, 1e-8),
        (1000, 100, 10000, 1e-8),
        (1000, 7, 5000, 1e-3),
        (50, 3, 200, 0.05),
        (200, 200, 200, 1e-6),  # the property is always present: nothing is surprising
        (10, 9, 10, 1e-4),
        (500, 1, 1, 0.01),
        (300, 50, 100, 1.0),  # alpha = 1: even zero events is "surprising"
    ],
)
def test_count_threshold_matches_brute_force(n: int, k: int, m: int, alpha: float) -> None:
    c = count_threshold(n, k, m, alpha)
    assert c == _brute_force_count_threshold(n, k, m, alpha)
    dist = stats.betabinom(n, k + 0.5, max(m - k, 0) + 0.5)
    assert dist.sf(c - 1) <= alpha
    if c > 0:
        assert dist.sf(c - 2) > alpha  # c - 1 would not be enough


def test_count_threshold_edge_cases() -> None:
    assert count_threshold(100, 0, 0, 0.01) == 101  # no reference: never fires
    assert count_threshold(100, 5, -3, 0.01) == 101
    assert count_threshold(200, 200, 200, 1e-6) == 201  # always present: never fires
    assert count_threshold(100, 0, 10**6, 0.5) == 1  # never seen: one event is surprising


def test_count_threshold_is_monotone_in_k_and_alpha() -> None:
    n, m = 1000, 20000
    by_k = [count_threshold(n, k, m, 1e-6) for k in range(0, 400, 7)]
    assert by_k == sorted(by_k)
    assert by_k[-1] > by_k[0]
    for k in (0, 10, 200):
        by_alpha = [count_threshold(n, k, m, a) for a in (0.1, 1e-2, 1e-4, 1e-6, 1e-8, 1e-10)]
        assert by_alpha == sorted(by_alpha)
        assert by_alpha[-1] > by_alpha[0]


def test_count_threshold_false_positive_rate_is_at_most_alpha() -> None:
    """Exact check by enumeration: the posterior predictive mass at or above the threshold.

    Averaged over the reference count K ~ Binomial(m, p), the chance that a window of n events
    drawn with the same p reaches the threshold must be close to (not above ~) alpha; computed
    exactly, no simulation: sum_k P(K = k) * P(Binomial(n, p) >= c(k)).
    """
    n, m, p, alpha = 500, 5000, 0.01, 1e-3
    ks = np.arange(0, m + 1)
    pk = stats.binom.pmf(ks, m, p)
    keep = pk > 1e-15
    rate = sum(
        float(pk_) * float(stats.binom.sf(count_threshold(n, int(k), m, alpha) - 1, n, p))
        for k, pk_ in zip(ks[keep], pk[keep], strict=True)
    )
    # The beta-binomial is the Jeffreys-prior predictive; its frequentist rate is close to alpha
    # (a discrete test is conservative: it can only jump between attainable levels).
    assert rate <= 2 * alpha
    assert rate >= alpha / 10


# -- (c) Page-Hinkley ----------------------------------------------------------------------------


def test_page_hinkley_threshold_solves_siegmund() -> None:
    for alpha in (1e-2, 1e-4, 1e-8):
        for delta in (0.25, 0.5, 1.0):
            h = page_hinkley_threshold(alpha, delta)
            x = 2 * delta * (h + 1.166)
            arl = (math.exp(x) - x - 1) / (2 * delta**2)
            assert arl == pytest.approx(2 / alpha, rel=1e-8)
            h1 = page_hinkley_threshold(alpha, delta, two_sided=False)
            # one-sided at alpha solves ARL0 = 1/alpha, as the two-sided test at 2 * alpha does
            assert h1 == pytest.approx(page_hinkley_threshold(2 * alpha, delta), rel=1e-9)
            assert h1 < h


def test_page_hinkley_threshold_is_monotone_in_alpha() -> None:
    hs = [page_hinkley_threshold(a) for a in (1e-1, 1e-2, 1e-3, 1e-5, 1e-8, 1e-12)]
    assert hs == sorted(hs)
    assert len(set(hs)) == len(hs)


@pytest.mark.parametrize("target", [200, 500])
def test_page_hinkley_in_control_run_length(target: int) -> None:
    """River's PageHinkley as configured in detectors/change.py on iid N(0,1) input runs about
    ``target`` windows between false alarms when its threshold is derived for alpha = 1/target.

    Run lengths of R independent replications give mean ARL and se = sd / sqrt(R). The
    acceptance region: the 4-sigma lower confidence limit must reach target / 2 (Siegmund's
    formula is an approximation for a CUSUM with a known mean; River subtracts a running mean)
    and the upper limit must not fall below the target (the run length is of the order of the
    target, the approximation errs on the conservative side); a 4-sigma upper limit must also
    stay below 3 * target, so the threshold is not absurdly conservative either.
    """
    alpha = 1.0 / target
    h = page_hinkley_threshold(alpha, delta=0.5)
    rng = np.random.default_rng(target)
    reps = 600
    run_lengths = np.empty(reps)
    for i in range(reps):
        # The detector exactly as PageHinkleyLatch builds it (River's classes are untyped).
        ph: Any = drift.PageHinkley(
            min_instances=10, delta=0.5, threshold=h, alpha=1.0, mode="both"
        )
        t = 0
        while not ph.drift_detected:  # no censoring: every replication runs to its alarm
            for x in rng.standard_normal(target).tolist():
                t += 1
                ph.update(x)
                if ph.drift_detected:
                    break
        run_lengths[i] = t
    arl = float(run_lengths.mean())
    se = float(run_lengths.std(ddof=1) / math.sqrt(reps))
    assert arl - Z * se >= target / 2, (arl, se)
    assert arl + Z * se >= target, (arl, se)
    assert arl + Z * se <= 3 * target, (arl, se)


# -- (d) the budget ------------------------------------------------------------------------------


def test_false_alarm_budget_arithmetic() -> None:
    b = FalseAlarmBudget(days_between_false_alarms=30, events_per_second=100, window_size=1000)
    # W = 30 days * 86400 s * 100 ev/s / 1000 ev per window
    assert b.windows == pytest.approx(30 * 86400 * 100 / 1000)
    assert b.windows == pytest.approx(259_200)
    assert b.alpha(100) == pytest.approx(1 / (259_200 * 100))
    assert b.alpha(1) == pytest.approx(1 / 259_200)
    # Fewer than one test counts as one.
    assert b.alpha(0) == b.alpha(1)
    assert b.alpha(-5) == b.alpha(1)
    # Bonferroni: T tests at alpha each spend exactly one false alarm per budget period.
    assert b.alpha(37) * 37 * b.windows == pytest.approx(1.0)
    # Doubling the window size halves the windows, doubling the per-window rate.
    b2 = FalseAlarmBudget(30, 100, 2000)
    assert b2.alpha(10) == pytest.approx(2 * b.alpha(10))


@pytest.mark.parametrize(
    ("days", "eps", "window", "message"),
    [
        (0, 1, 1, "days_between_false_alarms"),
        (-1, 1, 1, "days_between_false_alarms"),
        (1, 0, 1, "events_per_second"),
        (1, -0.5, 1, "events_per_second"),
        (1, 1, 0, "window_size"),
    ],
)
def test_false_alarm_budget_rejects_nonsense(
    days: float, eps: float, window: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FalseAlarmBudget(days, eps, window)


def test_normal_quantile() -> None:
    for a in (0.5, 0.05, 1e-3, 1e-9):
        z = normal_quantile(a)
        assert stats.norm.sf(z) == pytest.approx(a, rel=1e-9)
    assert normal_quantile(0.5) == pytest.approx(0.0, abs=1e-12)
