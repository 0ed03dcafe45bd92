"""Tests for :mod:`detectors.performance`: the label join and the error monitor."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from detectors.calibration import count_threshold, normal_quantile
from detectors.performance import ErrorMonitor, ErrorWindow, LabelJoiner, Pending, error_of
from detectors.profile import ErrorProfile

# -- LabelJoiner ---------------------------------------------------------------------------------


class _ReferenceJoiner:
    """The joiner's contract in the plainest form: an insertion-ordered dict."""

    def __init__(self, ttl: float, cap: int) -> None:
        self.ttl, self.cap, self.d = ttl, cap, {}  # type: ignore[var-annotated]
        self.expired = self.evicted = 0

    def _bound(self) -> None:
        over = len(self.d) - self.cap
        if over > 0:
            self.evicted += over
            for k in list(self.d)[:over]:
                del self.d[k]

    def add_many(self, ids: list[str], stream: int, pred: list[str], ts: list[float]) -> None:
        for k, p, t in zip(ids, pred, ts, strict=True):
            self.d[k] = (stream, p, t)
        self._bound()

    def trim(self, now: float) -> None:
        stale = 0
        for _, _, t in self.d.values():
            if t >= now - self.ttl:
                break
            stale += 1
        for k in list(self.d)[:stale]:
            del self.d[k]
        self.expired += stale
        self._bound()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(0, 6), st.integers(0, 3)),
            st.tuples(st.just("pop"), st.integers(0, 60), st.just(0)),
            st.tuples(st.just("trim"), st.integers(0, 80), st.just(0)),
        ),
        max_size=40,
    )
)
def test_label_joiner_batches_behave_as_an_ordered_map(ops: list[tuple[str, int, int]]) -> None:
    """Batches kept unindexed until a label is looked up change nothing a caller can see."""
    joiner = LabelJoiner(20, 9, predicted=lambda outputs: [o.upper() for o in outputs])
    ref = _ReferenceJoiner(20, 9)
    seq = 0
    for op, a, b in ops:
        if op == "add":
            ids = [f"e{seq + i}" for i in range(a)]
            ts = [float(seq + i) for i in range(a)]
            preds = [f"p{seq + i}" for i in range(a)]
            seq += a
            joiner.add_many(iter(ids), b, iter(preds), iter(ts))
            ref.add_many(ids, b, [p.upper() for p in preds], ts)
        elif op == "pop":
            got = joiner.pop(f"e{a}")
            want = ref.d.pop(f"e{a}", None)
            assert (tuple(got) if got is not None else None) == want
        else:
            joiner.trim(float(a))
            ref.trim(float(a))
        assert len(joiner) == len(ref.d)
        assert (joiner.expired, joiner.evicted) == (ref.expired, ref.evicted)
    assert joiner.snapshot() == [(k, *v) for k, v in ref.d.items()]


def test_joiner_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        LabelJoiner(0, 10)
    with pytest.raises(ValueError, match="max_entries"):
        LabelJoiner(10, 0)


def test_pop_counts_joined_and_unmatched() -> None:
    j = LabelJoiner(ttl_seconds=60, max_entries=10)
    j.add("a", Pending(0, "fraud", 1.0))
    j.add_many(["b", "c"], 1, [0.7, None], [2.0, 3.0])
    assert len(j) == 3
    found = j.pop("b")
    assert found == Pending(1, 0.7, 2.0)
    assert j.pop("b") is None  # a label arriving twice matches once
    assert j.pop("zzz") is None
    assert j.pop("a") == Pending(0, "fraud", 1.0)
    assert (j.joined, j.unmatched, len(j)) == (2, 2, 1)


def test_ttl_expiry_is_oldest_first() -> None:
    j = LabelJoiner(ttl_seconds=10, max_entries=100)
    j.add_many(["a", "b", "c", "d"], 0, ["x"] * 4, [0.0, 4.0, 9.9, 15.0])
    j.expire(10.0)  # limit 0.0: nothing is strictly older
    assert (len(j), j.expired) == (4, 0)
    j.expire(14.0)  # limit 4.0: only "a" (0.0) is older
    assert (len(j), j.expired) == (3, 1)
    j.expire(20.0)  # limit 10.0: "b" and "c"
    assert (len(j), j.expired) == (1, 3)
    assert [k for k, *_ in j.snapshot()] == ["d"]
    assert j.pop("a") is None
    assert j.unmatched == 1


def test_ttl_expiry_with_datetimes() -> None:
    t0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    naive = datetime(2024, 5, 1, 12, 0, 5)  # naive is read as UTC
    plus2 = datetime(2024, 5, 1, 14, 0, 8, tzinfo=timezone(timedelta(hours=2)))  # 12:00:08Z
    j = LabelJoiner(ttl_seconds=5, max_entries=10)
    j.add("a", Pending(0, "x", t0))
    j.add("b", Pending(0, "x", naive))
    j.add("c", Pending(0, "x", plus2))
    j.expire(t0.timestamp() + 9.0)  # limit 12:00:04: drops "a" only
    assert [k for k, *_ in j.snapshot()] == ["b", "c"]
    j.expire(t0.timestamp() + 12.5)  # limit 12:00:07.5: drops "b"
    assert [k for k, *_ in j.snapshot()] == ["c"]
    assert j.expired == 2


def test_trim_evicts_beyond_max_entries_oldest_first() -> None:
    j = LabelJoiner(ttl_seconds=1000, max_entries=3)
    for i in range(5):
        j.add(f"e{i}", Pending(0, "x", float(i)))
    assert len(j) == 5  # add() does not bound memory by itself
    j.trim(now=10.0)
    assert (len(j), j.evicted, j.expired) == (3, 2, 0)
    assert [k for k, *_ in j.snapshot()] == ["e2", "e3", "e4"]
    # trim expires first, then evicts what is still over the bound.
    j.add_many(["f0", "f1"], 0, ["y", "y"], [1500.0, 1501.0])
    assert j.evicted == 4  # add_many bounds memory at once: e2, e3 dropped
    j.trim(now=2003.5)  # limit 1003.5: e4 (4.0) expires
    assert (len(j), j.expired, j.evicted) == (2, 1, 4)


def test_add_many_eviction_counts() -> None:
    j = LabelJoiner(ttl_seconds=1000, max_entries=4)
    j.add_many([f"a{i}" for i in range(10)], 2, list(range(10)), [float(i) for i in range(10)])
    assert len(j) == 4
    assert j.evicted == 6
    snap = j.snapshot()
    assert snap == [(f"a{i}", 2, i, float(i)) for i in range(6, 10)]
    with pytest.raises(ValueError):
        j.add_many(["x", "y"], 0, ["p"], [0.0, 1.0])  # lengths must agree (strict zip)


# -- error_of ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicted", "label", "expected"),
    [
        ("fraud", "fraud", ("classification", 0.0)),
        ("fraud", "legit", ("classification", 1.0)),
        ("Fraud", "fraud", ("classification", 1.0)),  # string labels are case-sensitive
        ("True", True, ("classification", 0.0)),  # bool labels compare case-insensitively
        ("false", True, ("classification", 1.0)),
        ("FALSE", False, ("classification", 0.0)),
        (0.8, True, ("classification", 0.0)),  # a probability thresholded at 0.5
        (0.5, True, ("classification", 0.0)),
        (0.49, True, ("classification", 1.0)),
        (0.2, False, ("classification", 0.0)),
        (0.7, False, ("classification", 1.0)),
        (2.5, 3.0, ("regression", 0.5)),
        (3.0, 2.5, ("regression", 0.5)),
        (10.0, 7, ("regression", 3.0)),  # an int label is numeric
        (None, "x", None),
        (None, 1.0, None),
        (0.3, "fraud", None),  # a number graded by a class name cannot be compared
        ("fraud", 1.0, None),  # a class graded by a number cannot either
    ],
)
def test_error_of(
    predicted: str | float | None, label: str | float | bool, expected: tuple[str, float] | None
) -> None:
    got = error_of(predicted, label)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert got[0] == expected[0]
        assert got[1] == pytest.approx(expected[1])


# -- ErrorMonitor --------------------------------------------------------------------------------


def _feed(monitor: ErrorMonitor, kind: str, errors: np.ndarray) -> tuple[list[ErrorWindow], int]:
    windows = []
    nones = 0
    for e in errors.tolist():
        w = monitor.add(kind, float(e))
        if w is None:
            nones += 1
        else:
            windows.append(w)
    return windows, nones


def test_error_monitor_learns_its_reference_from_warmup() -> None:
    rng = np.random.default_rng(0)
    warm = (rng.random(2000) < 0.1).astype(float)
    m = ErrorMonitor(window=500, alpha=1e-6, warmup=2000)
    assert m.reference is None
    windows, nones = _feed(m, "classification", warm)
    assert windows == []
    assert nones == 2000
    ref = m.reference
    assert ref is not None
    assert ref.kind == "classification"
    assert ref.n == 2000
    assert ref.total == warm.sum()
    assert ref.mean == pytest.approx(warm.mean())
    # Errors after the warm-up form windows of exactly `window` labelled events.
    more, _ = _feed(m, "classification", (rng.random(1250) < 0.1).astype(float))
    assert len(more) == 2
    assert all(w.n == 500 for w in more)
    assert m.last_value == more[-1].value


def test_error_monitor_ignores_a_different_kind() -> None:
    m = ErrorMonitor(window=10, alpha=1e-3, warmup=20)
    for _ in range(20):
        m.add("classification", 0.0)
    assert m.add("regression", 5.0) is None
    assert m.kind == "classification"
    # The regression error was dropped, not buffered: the window closes after 10 more errors.
    assert [m.add("classification", 1.0) for _ in range(9)] == [None] * 9
    w = m.add("classification", 1.0)
    assert w is not None
    assert (w.n, w.value) == (10, 1.0)


def test_error_monitor_null_stream_and_rise() -> None:
    """Classification errors at p0 = 10%, then 25%.

    Null: a window fires through the count test with probability <= alpha, or through the DDM
    latch only when its error rate is >= 3 standard errors above the baseline, so with the
    normal approximation P(any of 40 windows fires) <= 40 * (alpha + P(Z >= 3)) ~ 0.054, and
    the latch additionally needs a DDM detection. Rise: per window the count test fires with
    power pi = P(Binomial(500, 0.25) >= c), c the calibrated count threshold; the test asserts a
    finding within the first 3 windows (miss probability (1 - pi)^3, computed) and in at least
    10 * pi - 4 * sqrt(10 * pi * (1 - pi)) of 10 windows.
    """
    alpha, window, p0, p1 = 1e-6, 500, 0.1, 0.25
    rng = np.random.default_rng(11)
    m = ErrorMonitor(window=window, alpha=alpha, warmup=2000, clear_z=3.0)
    _feed(m, "classification", (rng.random(2000) < p0).astype(float))
    null, _ = _feed(m, "classification", (rng.random(40 * window) < p0).astype(float))
    assert len(null) == 40
    assert 40 * (alpha + stats.norm.sf(3.0)) < 0.06
    assert [w for w in null if w.finding is not None] == []

    ref = m.reference
    assert ref is not None
    c = count_threshold(window, round(ref.total), ref.n, alpha)
    power = float(stats.binom.sf(c - 1, window, p1))
    assert (1 - power) ** 3 < 1e-3
    rise, _ = _feed(m, "classification", (rng.random(10 * window) < p1).astype(float))
    flagged = [w.finding is not None for w in rise]
    assert any(flagged[:3])
    assert sum(flagged) >= 10 * power - 4 * math.sqrt(10 * power * (1 - power))
    f = next(w.finding for w in rise if w.finding is not None)
    assert f.kind == "performance"
    assert f.statistic == "error_rate"
    assert f.threshold == pytest.approx(c / window)
    assert dict(f.details)["reference"] == pytest.approx(ref.mean)


def test_error_monitor_regression_with_given_reference() -> None:
    """Absolute errors |N(0, 1)| (mean sqrt(2/pi)); the threshold is
    mean + z_alpha * sd * sqrt(1/n + 1/m). Doubling the error scale moves the window mean by
    ~ 0.8, i.e. dozens of standard errors at n = 400, so every window fires."""
    rng = np.random.default_rng(12)
    ref_err = np.abs(rng.standard_normal(5000))
    ref = ErrorProfile(
        kind="regression",
        n=ref_err.size,
        total=float(ref_err.sum()),
        total_sq=float((ref_err**2).sum()),
    )
    alpha = 1e-6
    m = ErrorMonitor(window=400, alpha=alpha, reference=ref)
    null, nones = _feed(m, "regression", np.abs(rng.standard_normal(400 * 20)))
    assert nones == 400 * 20 - 20  # no warm-up: the reference was given
    assert [w for w in null if w.finding is not None] == []
    worse, _ = _feed(m, "regression", 2.0 * np.abs(rng.standard_normal(400 * 5)))
    assert all(w.finding is not None for w in worse)
    f = worse[0].finding
    assert f is not None
    assert f.statistic == "mae"
    expected = ref.mean + normal_quantile(alpha) * ref.std * math.sqrt(1 / 400 + 1 / ref.n)
    assert f.threshold == pytest.approx(expected)
    assert worse[0].value > f.threshold


def test_epochs_of_aware_datetimes_equal_datetime_timestamp() -> None:
    """The int64 path of ``_epochs`` gives exactly ``datetime.timestamp``; naive datetimes
    (UTC) and times beyond float64's exact microseconds take the general path."""
    from array import array
    from datetime import datetime, timedelta, timezone

    from detectors.performance import _epochs

    rng = np.random.default_rng(3)
    for tz in (UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7, minutes=-30))):
        base = datetime(1900 + int(rng.integers(0, 300)), 6, 15, tzinfo=tz)
        times = [
            base + timedelta(microseconds=int(u)) for u in rng.integers(-(10**12), 10**12, 200)
        ]
        assert _epochs(times) == array("d", map(datetime.timestamp, times))
    naive = [datetime(2026, 1, 1), datetime(2026, 1, 1, 0, 0, 1, 500)]
    assert _epochs(naive) == array("d", [1767225600.0, 1767225601.0005])
    far = [datetime(9999, 12, 31, tzinfo=UTC), datetime(1, 1, 2, tzinfo=UTC)]
    assert _epochs(far) == array("d", map(datetime.timestamp, far))
    assert _epochs([1.5, 2]) == array("d", [1.5, 2.0])
