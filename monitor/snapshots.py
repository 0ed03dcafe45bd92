"""What metrics and the status page show of a closed window: :class:`WindowSnapshot`, computed
once per window with numpy (:func:`snapshot_window`), and the budget of per-feature series
(``metrics.max_feature_series``) over the snapshots of many model versions."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.quantiles import quantiles
from detectors.window import CATEGORICAL_CHECKS, NUMERIC_CHECKS, WindowReport
from monitor.fastdecode import AnyEvent
from monitor.streams import ModelStream, WindowOutputs, window_outputs

OTHER_LABEL = "__other__"
#: The score percentiles of a window snapshot (p5, p50, p95).
_SCORE_QS = np.array([0.05, 0.5, 0.95])


@dataclass(frozen=True, slots=True)
class WindowSnapshot:
    """The numbers of one closed window that metrics and the status page show.

    ``drift``/``threshold``: per statistic, one value per row (``rows``: numeric features, then
    ``score``, categorical features, then ``label``); ``quality``/``quality_threshold``: per
    check the share of the window's events with the problem and the share that fires, NaN where
    the check does not apply to the row; ``latency``: window p50/p95/p99 in seconds;
    ``score``: mean, p5, p50, p95 of the prediction score; ``labels``: share of each predicted
    label (classes outside the reference are summed as ``__other__``).
    """

    model: str
    model_version: str
    window: int
    n: int
    event_time: float
    wall_time: float
    rows: tuple[str, ...]
    drift: Mapping[str, np.ndarray]
    threshold: Mapping[str, np.ndarray]
    alerting_statistics: tuple[str, ...]
    quality: Mapping[str, np.ndarray]
    quality_threshold: Mapping[str, np.ndarray]
    latency: tuple[float, float, float] | None
    score: tuple[float, float, float, float] | None
    labels: Mapping[str, float]
    reference_id: str
    versions: Mapping[str, str]
    findings: tuple[str, ...]
    offsets: tuple[int, int]

    @property
    def group(self) -> str:
        """``model/model_version``, the alert group."""
        return f"{self.model}/{self.model_version}"


def _quality_shares(
    stream: ModelStream, report: WindowReport
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    det = stream.detector
    assert det is not None
    rows = len(report.rows)
    applies = {c: np.zeros(rows, dtype=bool) for c in report.quality}
    nf = len(det.numeric_names)
    cat0 = nf + (1 if det.has_score else 0)
    for c in NUMERIC_CHECKS:
        applies[c][:nf] = True
    for c in CATEGORICAL_CHECKS:
        applies[c][cat0 : cat0 + len(det.categorical_names)] = True
    n = max(report.n, 1)
    share = {c: np.where(applies[c], report.quality[c] / n, np.nan) for c in report.quality}
    thr = {
        c: np.where(applies[c], np.minimum(report.quality_threshold[c] / n, 1.0), np.nan)
        for c in report.quality
    }
    return share, thr


_PROFILE_IDS: dict[int, tuple[Any, str]] = {}


def _profile_id(stream: ModelStream) -> str:
    """The reference profile's id (a hash of its JSON), computed once per profile object."""
    profile = stream.profile
    if profile is None:
        return ""
    known = _PROFILE_IDS.get(id(profile))
    if known is None or known[0] is not profile:
        if len(_PROFILE_IDS) > 1000:
            _PROFILE_IDS.clear()
        known = (profile, profile.id)
        _PROFILE_IDS[id(profile)] = known
    return known[1]


def _label_key(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _window_outputs(
    stream: ModelStream, report: WindowReport, events: Sequence[AnyEvent]
) -> WindowOutputs:
    """The scores, labels and latencies of ``report``'s window: those the stream extracted for
    its detector while it still holds them, else read again from ``events``."""
    if stream.last_report is report and stream.last_outputs is not None:
        return stream.last_outputs
    assert stream.detector is not None
    return window_outputs(stream.detector, events)[0]


def snapshot_window(
    stream: ModelStream,
    report: WindowReport,
    events: Sequence[AnyEvent],
    outputs: WindowOutputs | None = None,
) -> WindowSnapshot:
    """Compute the :class:`WindowSnapshot` of a closed window (numpy, no per-event metrics);
    ``outputs`` are the window's, when the caller has them."""
    det = stream.detector
    assert det is not None
    if outputs is None:
        outputs = _window_outputs(stream, report, events)
    score = None
    if outputs.scores is not None:
        s = outputs.scores[np.isfinite(outputs.scores)]
        if s.size:
            p5, p50, p95 = quantiles(s, _SCORE_QS)
            score = (float(s.mean()), float(p5), float(p50), float(p95))
    labels: dict[str, float] = {}
    profile = stream.profile
    if outputs.labels is not None and profile is not None and profile.label is not None:
        counts = Counter(outputs.labels)
        counts.pop(None, None)
        total = max(len(events), 1)
        for k in {_label_key(c) for c in profile.label.categories}:
            labels[k] = counts.pop(k, 0) / total
        labels[OTHER_LABEL] = sum(counts.values()) / total
    latency = None
    if report.latency is not None:
        latency = (report.latency[0] / 1e3, report.latency[1] / 1e3, report.latency[2] / 1e3)
    share, thr = _quality_shares(stream, report)
    return WindowSnapshot(
        model=stream.key[0],
        model_version=stream.key[1],
        window=stream.windows,
        n=report.n,
        event_time=stream.last_time,
        wall_time=time.time(),
        rows=report.rows,
        drift=report.drift,
        threshold=report.threshold,
        alerting_statistics=det.settings.statistics,
        quality=share,
        quality_threshold=thr,
        latency=latency,
        score=score,
        labels=labels,
        reference_id=_profile_id(stream),
        versions=dict(stream.versions),
        findings=tuple(sorted({f.kind for f in report.findings})),
        offsets=stream.offsets,
    )


def feature_series(snap: WindowSnapshot) -> int:
    """Per-feature series of one model version: drift score and threshold per statistic and
    row, the threshold ratio per row, data-quality ratio and threshold per applicable check."""
    rows = len(snap.rows)
    quality = sum(int(np.count_nonzero(~np.isnan(v))) for v in snap.quality.values())
    return 2 * len(snap.drift) * rows + rows + 2 * quality


def feature_series_budget(snaps: Sequence[WindowSnapshot], limit: int) -> set[int]:
    """``id``s of the snapshots whose per-feature series fit in ``limit``: versions with a
    finding first, then the most recently evaluated; each whole or not at all, so a dashboard
    never shows half a model version."""
    order = sorted(snaps, key=lambda s: (not s.findings, -s.wall_time, s.group))
    out: set[int] = set()
    left = limit
    for snap in order:
        n = feature_series(snap)
        if n <= left:
            out.add(id(snap))
            left -= n
    return out
