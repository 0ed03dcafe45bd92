"""Per-feature series are bounded by ``metrics.max_feature_series`` whatever the number of model
versions (issue 14, defect 5), exist only past warm-up, and go with an evicted stream."""

from __future__ import annotations

from dataclasses import replace

import orjson
from prometheus_client import CollectorRegistry

from monitor.config import settings_from_mapping
from monitor.metrics import MonitorMetrics, feature_series, feature_series_budget
from monitor.pipeline import Pipeline
from monitor.status_page import StatusHistory

T0 = 1_767_225_600.0
FEATURE_FAMILIES = (
    "driftwatch_drift_score",
    "driftwatch_drift_threshold",
    "driftwatch_drift_threshold_ratio",
    "driftwatch_data_quality_ratio",
    "driftwatch_data_quality_threshold_ratio",
)
FEATURES = 20


def line(version: str, n: int, t: float) -> bytes:
    features: dict[str, object] = {f"x{j}": float((n * (j + 3)) % 23) for j in range(FEATURES)}
    features["c"] = "abc"[n % 3]
    return orjson.dumps(
        {
            "event_id": f"{version}-{n}",
            "model": "m",
            "model_version": version,
            "timestamp": t * 1000.0,
            "features": features,
            "prediction": {"score": (n % 10) / 10, "label": "ab"[n % 2]},
        }
    )


def series(registry: CollectorRegistry) -> dict[str, int]:
    out: dict[str, int] = {}
    for family in registry.collect():
        out[family.name] = out.get(family.name, 0) + len(family.samples)
    return out


def build(
    limit: int, versions: int, events: int, **limits: object
) -> tuple[Pipeline, MonitorMetrics, StatusHistory]:
    settings = settings_from_mapping(
        {
            "reference": {"warmup_events": 100},
            "window": {"size": 50},
            "limits": {"max_warmup_events": 100 * versions, **limits},
            "metrics": {"max_feature_series": limit},
        }
    )
    registry = CollectorRegistry()
    history = StatusHistory()
    metrics = MonitorMetrics(
        registry,
        version="test",
        revision="test",
        on_window=[history.add_window],
        on_evict=[history.forget],
        max_feature_series=settings.metrics.max_feature_series,
    )
    p = Pipeline(settings, observers=[metrics])
    metrics.watch_pipeline(p)
    offset = 0
    for v in range(versions):
        lines = [line(f"v{v}", n, T0 + n * 0.1) for n in range(events)]
        p.process_lines(lines, offset, "input")
        offset += len(lines)
    return p, metrics, history


def test_feature_series_are_capped_with_many_versions() -> None:
    # 40 versions past warm-up (one window each) and 10 still warming up.
    p, metrics, _ = build(2_000, 40, 150)
    warming = [f"v{k}" for k in range(40, 50)]
    for v in warming:
        p.process_lines([line(v, n, T0 + 20 + n * 0.1) for n in range(10)], 10_000, "input")
    per_version = _per_version(build(1_000_000, 1, 150)[1])
    assert per_version > 100  # ~11 per feature: what made 500 versions 255,805 series
    counts = series(metrics.registry)
    total = sum(counts.get(name, 0) for name in FEATURE_FAMILIES)
    assert 2_000 - per_version < total <= 2_000
    omitted = metrics.registry.get_sample_value("driftwatch_feature_series_omitted")
    assert omitted == 40 - total // per_version
    # Every version keeps its few other series (window size, event time, ...).
    assert counts["driftwatch_window_events"] == 40
    # A version still in its warm-up has none at all.
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.labels.get("model_version") in warming:
                assert sample.name == "driftwatch_windows_total"
    assert metrics.registry.get_sample_value("driftwatch_streams", {"phase": "warmup"}) == 10
    assert metrics.registry.get_sample_value("driftwatch_streams", {"phase": "monitoring"}) == 40


def _per_version(metrics: MonitorMetrics) -> int:
    counts = series(metrics.registry)
    return sum(counts.get(name, 0) for name in FEATURE_FAMILIES)


def test_versions_with_findings_are_exported_first() -> None:
    _, metrics, _ = build(1_000_000, 3, 150)
    snaps = sorted(metrics.snapshots(), key=lambda s: -s.wall_time)
    assert not any(s.findings for s in snaps)
    one = feature_series(snaps[0])
    # Room for one version: the most recently evaluated one...
    assert feature_series_budget(snaps, one) == {id(snaps[0])}
    # ...unless another has a finding.
    flagged = replace(snaps[-1], findings=("feature_drift",))
    assert feature_series_budget([*snaps[:-1], flagged], one) == {id(flagged)}
    assert feature_series_budget(snaps, 0) == set()


def test_evicted_versions_leave_no_series_and_no_history() -> None:
    p, metrics, history = build(1_000_000, 3, 150, max_streams=3, stream_idle_ttl="1h")
    assert {s.model_version for s in metrics.snapshots()} == {"v0", "v1", "v2"}
    # The clock moves on with v2 (every 4 minutes), then a fourth version needs room.
    times = [T0 + 20 + 240 * k for k in range(40)]
    p.process_lines([line("v2", 1000 + k, t) for k, t in enumerate(times)], 20_000, "input")
    p.process_lines([line("v3", 0, times[-1] + 1)], 30_000, "input")
    assert p.stats.evicted == 1
    left = {s.model_version for s in metrics.snapshots()}
    assert left == {"v1", "v2"}
    assert {s.model_version for s in history.streams()} == {"v1", "v2"}
    text = "\n".join(
        str(sample.labels) for family in metrics.registry.collect() for sample in family.samples
    )
    assert "'v0'" not in text
