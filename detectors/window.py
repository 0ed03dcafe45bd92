"""Comparing one window of events with the reference profile.

:class:`WindowDetector` is built once per model version from its :class:`ReferenceProfile`: it
calibrates every threshold (see :mod:`detectors.calibration`), then :meth:`WindowDetector.evaluate`
compares each window with the reference, all features at once, and returns a
:class:`WindowReport` with every statistic and the :class:`Finding` s whose condition holds.

Numbers in a report:

* ``drift[stat][r]``: the distance of row ``r`` (numeric features, then the prediction score,
  then categorical features, then the predicted label) from the reference; ``threshold[stat][r]``
  the calibrated threshold for this window's count of usable values.
* ``quality[check][r]``: how many events of the window had the problem (``missing`` = null,
  ``absent`` = key not sent, ``wrong_type``, ``nan_inf``, ``out_of_range`` = outside the reference
  min..max, ``unseen_category``), with ``quality_threshold[check][r]`` the count that fires.
* ``latency``: window p50/p95/p99 in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors import distances
from detectors.calibration import (
    FalseAlarmBudget,
    count_threshold,
    gamma_tail_threshold,
    page_hinkley_threshold,
)
from detectors.change import AdwinLatch, PageHinkleyLatch
from detectors.columns import Columns
from detectors.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from detectors.quantiles import quantiles

NUMERIC_CHECKS = ("missing", "absent", "wrong_type", "nan_inf", "out_of_range")
CATEGORICAL_CHECKS = ("missing", "absent", "wrong_type", "unseen_category")
CHECKS = ("missing", "absent", "wrong_type", "nan_inf", "out_of_range", "unseen_category")
SCORE = "score"
LABEL = "label"


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """What users configure about detection.

    Parameters
    ----------
    window_size
        Events per evaluation window (count windows; durations are in event time elsewhere).
    budget_days, events_per_second
        The false-alarm budget: expected days between false alarms per model version at this
        event rate. Every threshold is derived from it.
    statistics
        Distances whose crossing raises ``FeatureDrift``/``PredictionDrift`` (all are computed
        and reported): any of ``psi``, ``js``, ``ks``, ``chi2``.
    bootstrap_draws, seed
        Size and seed of the reference bootstrap used for calibration.
    page_hinkley
        Run Page-Hinkley on each numeric feature's window sign-test z series to catch slow
        drifts; ``ph_delta`` is its allowance and ``change_clear_z`` the z distance from the
        baseline that keeps a detected change active.
    latency_min_increase
        A latency regression must also be practically large: window p95 (or p99) at least this
        fraction above the reference.
    min_usable
        Fewest usable values a row needs in a window for its distance to be tested.
    max_unexpected_features
        Cap on distinct unknown feature names tracked per window (bounds alert cardinality).
    """

    window_size: int = 1000
    budget_days: float = 30.0
    events_per_second: float = 100.0
    statistics: tuple[str, ...] = ("psi",)
    bootstrap_draws: int = 400
    seed: int = 0
    page_hinkley: bool = True
    ph_delta: float = 0.5
    change_clear_z: float = 3.0
    latency_min_increase: float = 0.1
    min_usable: int = 50
    max_unexpected_features: int = 20

    @property
    def budget(self) -> FalseAlarmBudget:
        """The false-alarm budget in windows."""
        return FalseAlarmBudget(self.budget_days, self.events_per_second, self.window_size)


@dataclass(frozen=True, slots=True)
class Finding:
    """A condition that holds in this window.

    ``kind`` is ``feature_drift``, ``prediction_drift``, ``data_quality``, ``latency`` or
    ``performance``; ``subject`` the feature (or ``score``/``label``); ``check`` the data-quality
    check; ``value``/``threshold`` the deciding statistic and its calibrated threshold.
    """

    kind: str
    subject: str
    check: str
    statistic: str
    value: float
    threshold: float
    details: tuple[tuple[str, float], ...] = ()


@dataclass(slots=True)
class WindowReport:
    """All statistics of one window (see the module docstring for their meaning)."""

    n: int
    rows: tuple[str, ...]
    drift: dict[str, np.ndarray]
    threshold: dict[str, np.ndarray]
    change_z: np.ndarray
    quality: dict[str, np.ndarray]
    quality_threshold: dict[str, np.ndarray]
    unexpected: dict[str, int]
    latency: tuple[float, float, float] | None
    score_mean: float | None
    findings: list[Finding] = field(default_factory=list)


_SCALE_EXPONENT = {"psi": 1.0, "js": 1.0, "ks": 0.5}
#: The latency percentiles of a window (p50, p95, p99).
_LATENCY_QS = np.array([0.5, 0.95, 0.99])


def _pad_edges(profiles: list[NumericProfile]) -> tuple[np.ndarray, np.ndarray]:
    bins = max(len(p.counts) for p in profiles)
    edges = np.full((len(profiles), bins - 1), np.inf)
    counts = np.zeros((len(profiles), bins), dtype=np.int64)
    for r, p in enumerate(profiles):
        edges[r, : len(p.edges)] = p.edges
        counts[r, : len(p.counts)] = p.counts
    return edges, counts


def _pad_hist(profiles: list[CategoricalProfile]) -> np.ndarray:
    width = max(p.bins for p in profiles)
    counts = np.zeros((len(profiles), width), dtype=np.int64)
    for r, p in enumerate(profiles):
        counts[r, : p.bins] = p.histogram()
    return counts


class WindowDetector:
    """Calibrated comparison of windows with one reference profile (see module docstring).

    The only state across windows is in the change detectors (Page-Hinkley per numeric feature
    and on the score, ADWIN on latency), which is why :meth:`evaluate` must see windows in order.
    """

    def __init__(self, profile: ReferenceProfile, settings: DetectorSettings) -> None:
        for s in settings.statistics:
            if s not in distances.STATISTICS:
                raise ValueError(f"statistics: unknown statistic {s!r}")
        self.profile = profile
        self.settings = settings
        self.numeric_names = tuple(profile.numeric)
        self.categorical_names = tuple(profile.categorical)
        num_profiles = list(profile.numeric.values())
        self.has_score = profile.score is not None
        if profile.score is not None:
            num_profiles.append(profile.score)
        cat_profiles = list(profile.categorical.values())
        self.has_label = profile.label is not None
        if profile.label is not None:
            cat_profiles.append(profile.label)
        self._num_profiles = num_profiles
        self._cat_profiles = cat_profiles
        self.rows = (
            self.numeric_names
            + ((SCORE,) if self.has_score else ())
            + self.categorical_names
            + ((LABEL,) if self.has_label else ())
        )
        self._prediction_rows = frozenset(
            ([len(self.numeric_names)] if self.has_score else [])
            + ([len(self.rows) - 1] if self.has_label else [])
        )
        self.tests = self._count_tests()
        self.alpha = settings.budget.alpha(self.tests)
        n = settings.window_size
        rng = np.random.default_rng(settings.seed)

        # Numeric rows: features then the score.
        if num_profiles:
            self._edges, self._num_ref = _pad_edges(num_profiles)
        else:
            self._edges = np.zeros((0, 1))
            self._num_ref = np.zeros((0, 2), dtype=np.int64)
        self._num_m = self._num_ref.sum(axis=1)
        events = np.array([max(p.quality.n, 1) for p in num_profiles], dtype=np.float64)
        self._num_ncal = np.maximum(np.round(n * self._num_m / events), 1.0)
        self._mins = np.array([p.min for p in num_profiles])
        self._maxs = np.array([p.max for p in num_profiles])
        # Categorical rows: features then the label.
        if cat_profiles:
            self._cat_ref = _pad_hist(cat_profiles)
        else:
            self._cat_ref = np.zeros((0, 2), dtype=np.int64)
        self._cat_bins = np.array([p.bins for p in cat_profiles], dtype=np.int64)
        self._cat_m = self._cat_ref.sum(axis=1)
        cevents = np.array([max(p.quality.n, 1) for p in cat_profiles], dtype=np.float64)
        self._cat_ncal = np.maximum(np.round(n * self._cat_m / cevents), 1.0)
        self.indexes = [p.index() for p in cat_profiles]
        self.unseen_codes = [len(p.categories) + 1 for p in cat_profiles]

        self._num_mask = self._num_ref > 0
        self._cat_mask = self._cat_ref > 0
        self._m_all = np.maximum(np.concatenate([self._num_m, self._cat_m]).astype(np.float64), 1.0)
        self._ncal_all = np.concatenate([self._num_ncal, self._cat_ncal])
        self._thr = self._calibrate(rng)
        self._quality_thr = self._calibrate_counts()
        self._ph: list[PageHinkleyLatch] = []
        if settings.page_hinkley:
            h = page_hinkley_threshold(self.alpha, settings.ph_delta)
            self.ph_threshold = h
            self._ph = [
                PageHinkleyLatch(h, settings.ph_delta, settings.change_clear_z)
                for _ in num_profiles
            ]
        lat = profile.latency
        self._lat_thr: tuple[int, int] | None = None
        self._adwin: AdwinLatch | None = None
        if lat is not None:
            self._lat_thr = (
                count_threshold(n, lat.above_p95, lat.n, self.alpha),
                count_threshold(n, lat.above_p99, lat.n, self.alpha),
            )
            self._adwin = AdwinLatch(
                delta=min(0.01, self.alpha),
                clear=float(np.log1p(settings.latency_min_increase)),
            )
        # Bins below the reference median edge (bins are equal-frequency quantile bins).
        self._mid = (self._edges.shape[1] + 1) // 2 if self._edges.size else 0

    # -- state -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-friendly state of the change detectors (all else derives from the profile)."""
        return {
            "page_hinkley": [latch.state() for latch in self._ph],
            "adwin": self._adwin.state() if self._adwin is not None else None,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned (same profile and settings)."""
        for latch, st in zip(self._ph, state.get("page_hinkley", []), strict=False):
            latch.load_state(st)
        if self._adwin is not None and state.get("adwin") is not None:
            self._adwin.load_state(state["adwin"])

    # -- calibration -------------------------------------------------------------------------

    def _count_tests(self) -> int:
        s = self.settings
        stats = len(s.statistics)
        per_num = stats + len(NUMERIC_CHECKS) + (1 if s.page_hinkley else 0)
        per_cat = stats + len(CATEGORICAL_CHECKS)
        tests = len(self.numeric_names) * per_num + len(self.categorical_names) * per_cat
        tests += (stats + (1 if s.page_hinkley else 0)) if self.has_score else 0
        tests += stats if self.has_label else 0
        tests += 3 if self.profile.latency is not None else 0
        return tests + 1  # unexpected features

    def _bootstrap(
        self, rng: np.random.Generator, ref: np.ndarray, ncal: np.ndarray
    ) -> dict[str, np.ndarray]:
        draws = self.settings.bootstrap_draws
        rows, bins = ref.shape
        out = {s: np.full(rows, np.inf) for s in distances.STATISTICS}
        if rows == 0:
            return out
        w = np.zeros((rows, draws, bins), dtype=np.int64)
        r = np.zeros((rows, draws, bins), dtype=np.int64)
        ok = np.zeros(rows, dtype=bool)
        for i in range(rows):
            m = int(ref[i].sum())
            if m == 0:
                continue
            p = ref[i] / m
            w[i] = rng.multinomial(int(ncal[i]), p, size=draws)
            r[i] = rng.multinomial(m, p, size=draws)
            ok[i] = True
        mask = (ref > 0)[:, None, :]
        for s, null in distances.all_statistics(w, r, mask).items():
            out[s][ok] = gamma_tail_threshold(null[ok], self.alpha)
        return out

    def _calibrate(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        num = self._bootstrap(rng, self._num_ref, self._num_ncal)
        cat = self._bootstrap(rng, self._cat_ref, self._cat_ncal)
        return {s: np.concatenate([num[s], cat[s]]) for s in distances.STATISTICS}

    def _calibrate_counts(self) -> dict[str, np.ndarray]:
        n = self.settings.window_size
        a = self.alpha
        rows = len(self.rows)
        out = {c: np.full(rows, n + 1, dtype=np.int64) for c in CHECKS}
        nf = len(self.numeric_names)
        offset_cat = len(self._num_profiles)
        for j in range(nf):
            q = self._num_profiles[j].quality
            out["missing"][j] = count_threshold(n, q.null, q.n, a)
            out["absent"][j] = count_threshold(n, q.absent, q.n, a)
            out["wrong_type"][j] = count_threshold(n, q.wrong_type, q.n, a)
            out["nan_inf"][j] = count_threshold(n, q.nan_inf, q.n, a)
            finite = self._num_profiles[j].finite
            # A new draw lands outside the min..max of m draws with probability 2/(m+1).
            out["out_of_range"][j] = count_threshold(n, 2, finite + 1, a)
        for j, p in enumerate(self._cat_profiles[: len(self.categorical_names)]):
            q = p.quality
            r = offset_cat + j
            out["missing"][r] = count_threshold(n, q.null, q.n, a)
            out["absent"][r] = count_threshold(n, q.absent, q.n, a)
            out["wrong_type"][r] = count_threshold(n, q.wrong_type, q.n, a)
            used = max(int(sum(p.counts)), 1)
            out["unseen_category"][r] = count_threshold(n, p.singletons, used, a)
        self.unexpected_threshold = count_threshold(n, 0, self.profile.events, a)
        return out

    # -- evaluation --------------------------------------------------------------------------

    def _scaled(self, stat: str, usable: np.ndarray) -> np.ndarray:
        m, ncal = self._m_all, self._ncal_all
        neff = np.maximum(usable.astype(np.float64), 1.0)
        if stat == "chi2":
            factor = (1.0 + neff / m) / (1.0 + ncal / m)
        else:
            factor = ((1.0 / neff + 1.0 / m) / (1.0 / ncal + 1.0 / m)) ** _SCALE_EXPONENT[stat]
        thr = self._thr[stat] * factor
        thr[usable < self.settings.min_usable] = np.inf
        return np.asarray(thr)

    def evaluate(
        self,
        columns: Columns,
        scores: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        latency_ms: np.ndarray | None = None,
    ) -> WindowReport:
        """Compare one window with the reference and update the change detectors.

        ``columns`` must have been extracted with this detector's names and category indexes
        (``numeric_names``, ``categorical_names``, ``indexes``, ``unseen_codes``); ``scores``
        (float, NaN where absent) and ``labels`` (codes from ``indexes[-1]``) are needed when the
        profile has a score / label distribution, ``latency_ms`` when it has latency.
        """
        n = columns.n
        nb = columns.numeric
        values = nb.values
        if self.has_score:
            sc = scores if scores is not None else np.full(n, np.nan)
            values = np.vstack([values, sc[None, :]])
        num_counts = (
            distances.bin_counts(values, self._edges)
            if values.shape[0]
            else np.zeros((0, self._num_ref.shape[1]), dtype=np.int64)
        )
        codes = list(columns.categorical.codes)
        if self.has_label:
            codes.append(labels if labels is not None else np.full(n, -1, dtype=np.int64))
        cat_counts = (
            distances.code_counts(codes, self._cat_bins)
            if codes
            else np.zeros((0, self._cat_ref.shape[1]), dtype=np.int64)
        )
        usable = np.concatenate([num_counts.sum(axis=1), cat_counts.sum(axis=1)])

        drift: dict[str, np.ndarray] = {}
        threshold: dict[str, np.ndarray] = {}
        num_stats = distances.all_statistics(num_counts, self._num_ref, self._num_mask)
        cat_stats = distances.all_statistics(cat_counts, self._cat_ref, self._cat_mask)
        for s in distances.STATISTICS:
            drift[s] = np.concatenate([num_stats[s], cat_stats[s]])
            threshold[s] = self._scaled(s, usable)

        # Sign test around the reference median, per numeric row, for the change detectors.
        nnum = num_counts.shape[0]
        change_z = np.zeros(len(self.rows))
        if nnum and self._mid:
            below_w = num_counts[:, : self._mid].sum(axis=1) / np.maximum(num_counts.sum(axis=1), 1)
            below_r = self._num_ref[:, : self._mid].sum(axis=1) / np.maximum(self._num_m, 1)
            var = below_r * (1.0 - below_r) / np.maximum(num_counts.sum(axis=1), 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(var > 0, (below_w - below_r) / np.sqrt(var), 0.0)
            change_z[:nnum] = z

        rows = len(self.rows)
        nf = len(self.numeric_names)
        ncat_f = len(self.categorical_names)
        cat0 = nnum
        quality = {c: np.zeros(rows, dtype=np.int64) for c in CHECKS}
        quality["missing"][:nf] = nb.null
        quality["absent"][:nf] = nb.absent
        quality["wrong_type"][:nf] = nb.wrong_type
        quality["nan_inf"][:nf] = nb.nan_inf
        if nf:
            fv = nb.values
            quality["out_of_range"][:nf] = np.count_nonzero(
                (fv < self._mins[:nf, None]) | (fv > self._maxs[:nf, None]), axis=1
            )
        cb = columns.categorical
        quality["missing"][cat0 : cat0 + ncat_f] = cb.null
        quality["absent"][cat0 : cat0 + ncat_f] = cb.absent
        quality["wrong_type"][cat0 : cat0 + ncat_f] = cb.wrong_type
        for j in range(ncat_f):
            quality["unseen_category"][cat0 + j] = int(cat_counts[j, self.unseen_codes[j]])

        report = WindowReport(
            n=n,
            rows=self.rows,
            drift=drift,
            threshold=threshold,
            change_z=change_z,
            quality=quality,
            quality_threshold=self._quality_thr,
            unexpected=columns.unexpected,
            latency=None,
            score_mean=None,
        )
        self._drift_findings(report)
        self._quality_findings(report)
        if self.has_score and scores is not None:
            finite = scores[np.isfinite(scores)]
            report.score_mean = float(finite.mean()) if finite.size else None
        if latency_ms is not None:
            self._latency_finding(report, latency_ms)
        return report

    def _drift_findings(self, report: WindowReport) -> None:
        stats = self.settings.statistics
        ratios = np.vstack([report.drift[s] / report.threshold[s] for s in stats])
        best = ratios.argmax(axis=0)
        best_ratio = ratios.max(axis=0)
        changed = np.zeros(len(self.rows), dtype=bool)
        for r, latch in enumerate(self._ph):
            changed[r] = latch.update(float(report.change_z[r]))
        for ri in np.flatnonzero((best_ratio > 1.0) | changed):
            r = int(ri)
            name = self.rows[r]
            is_pred = r in self._prediction_rows
            details = tuple((s, float(report.drift[s][r])) for s in distances.STATISTICS)
            if best_ratio[r] > 1.0:
                stat = stats[int(best[r])]
                value, thr = float(report.drift[stat][r]), float(report.threshold[stat][r])
            else:
                stat = "page_hinkley"
                value, thr = float(report.change_z[r]), self.settings.change_clear_z
            report.findings.append(
                Finding(
                    kind="prediction_drift" if is_pred else "feature_drift",
                    subject=name,
                    check="",
                    statistic=stat,
                    value=value,
                    threshold=thr,
                    details=(*details, ("change_z", float(report.change_z[r]))),
                )
            )

    def _quality_findings(self, report: WindowReport) -> None:
        feature_rows = [r for r in range(len(self.rows)) if r not in self._prediction_rows]
        n = report.n
        rows = np.array(feature_rows, dtype=np.int64)
        for check in CHECKS:
            counts = report.quality[check]
            thr = self._quality_thr[check]
            for ri in rows[counts[rows] >= thr[rows]]:
                r = int(ri)
                report.findings.append(
                    Finding(
                        kind="data_quality",
                        subject=self.rows[r],
                        check=check,
                        statistic=f"{check}_rate",
                        value=float(counts[r]) / n,
                        threshold=float(thr[r]) / n,
                        details=(("count", float(counts[r])),),
                    )
                )
        for name, count in report.unexpected.items():
            if count >= self.unexpected_threshold:
                report.findings.append(
                    Finding(
                        kind="data_quality",
                        subject=name,
                        check="unexpected_feature",
                        statistic="unexpected_feature_rate",
                        value=count / n,
                        threshold=self.unexpected_threshold / n,
                        details=(("count", float(count)),),
                    )
                )

    def _latency_finding(self, report: WindowReport, latency_ms: np.ndarray) -> None:
        ref = self.profile.latency
        lat = latency_ms[np.isfinite(latency_ms)]
        if ref is None or self._lat_thr is None or lat.size < self.settings.min_usable:
            return
        p50, p95, p99 = (float(x) for x in quantiles(lat, _LATENCY_QS))
        report.latency = (p50, p95, p99)
        scale = lat.size / self.settings.window_size
        c95 = int(np.count_nonzero(lat > ref.p95))
        c99 = int(np.count_nonzero(lat > ref.p99))
        t95 = self._lat_thr[0] * scale
        t99 = self._lat_thr[1] * scale
        k = 1.0 + self.settings.latency_min_increase
        slow95 = c95 >= t95 and p95 >= k * ref.p95
        slow99 = c99 >= t99 and p99 >= k * ref.p99
        changed = False
        if self._adwin is not None and ref.p95 > 0:
            changed = self._adwin.update(float(np.log(max(p95, 1e-9) / ref.p95)))
        if slow95 or slow99 or changed:
            report.findings.append(
                Finding(
                    kind="latency",
                    subject="",
                    check="",
                    statistic="p95_exceedance" if slow95 or not slow99 else "p99_exceedance",
                    value=(c95 if slow95 or not slow99 else c99) / lat.size,
                    threshold=(t95 if slow95 or not slow99 else t99) / lat.size,
                    details=(
                        ("p50_ms", p50),
                        ("p95_ms", p95),
                        ("p99_ms", p99),
                        ("ref_p50_ms", ref.p50),
                        ("ref_p95_ms", ref.p95),
                        ("ref_p99_ms", ref.p99),
                    ),
                )
            )
