"""Acceptance: every incident scenario raises the right alert on the right feature in time,
and a steady stream raises nothing.

Detection delays are derived from the defaults, not tuned: a window is ``W = 1000`` events, the
first window wholly inside an incident closes at most ``2W`` events after its onset (one window
that straddles the onset, then the next one), and an alert fires once its condition has held
for the rule's ``for`` in event time, which at ``R = 100`` events/s is ``for * R`` events more.
So the bound is ``2W + for * R``: 8,000 events for drift and latency (``for`` 60 s), 5,000 for
data quality (``for`` 30 s). The gradual drift grows from 0 to 1 sd over the incident, so its
bound adds the time for the drift to become visible; the accuracy drop is measured in labelled
events (label windows of 500, one label line per prediction line).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from alerting.types import Transition
from monitor.config import settings_from_mapping
from monitor.pipeline import Pipeline
from monitor.scenarios.evaluate import evaluate
from monitor.scenarios.simulate import generate

W = 1000
RATE = 100.0
EVENTS = 40_000


def run(
    scenario: str, events: int = EVENTS, seed: int = 7, pipeline: Pipeline | None = None
) -> tuple[list[Transition], dict[str, Any], Pipeline]:
    sim = generate(scenario, events, seed, RATE)
    p = pipeline or Pipeline()
    out: list[Transition] = []
    offset = 0
    for chunk in sim.chunks():
        out += p.process_lines(chunk, offset)
        offset += len(chunk)
    return out, sim.truth(), p


def bound(for_seconds: float) -> int:
    return 2 * W + int(for_seconds * RATE)


CASES = [
    # scenario, alertname, features, checks, delay bound in events
    ("abrupt-shift", "FeatureDrift", {"credit_score"}, set(), bound(60)),
    ("variance-change", "FeatureDrift", None, set(), bound(60)),
    ("category-shift", "FeatureDrift", {"country"}, set(), bound(60)),
    ("missing-spike", "DataQuality", None, {"missing"}, bound(30)),
    ("corrupt-values", "DataQuality", None, {"nan_inf", "out_of_range"}, bound(30)),
    ("schema-change", "DataQuality", None, {"absent", "unexpected_feature"}, bound(30)),
    ("latency-regression", "LatencyRegression", None, set(), bound(60)),
    ("gradual-drift", "FeatureDrift", None, set(), bound(60) + 6 * W),
    ("accuracy-drop", "PerformanceDegradation", None, set(), 2 * bound(60)),
]


@pytest.mark.parametrize(
    ("scenario", "alertname", "features", "checks", "limit"), CASES, ids=[c[0] for c in CASES]
)
def test_incident_fires_right_alert_in_time(
    scenario: str, alertname: str, features: set[str] | None, checks: set[str], limit: int
) -> None:
    transitions, truth, pipeline = run(scenario)
    records = [t.to_record() for t in transitions]
    ev = evaluate(records, truth)
    assert ev.incidents, truth
    for inc in ev.incidents:
        assert inc.detected, (scenario, inc)
        assert inc.alertname == alertname
        assert inc.delay_events is not None
        assert 0 <= inc.delay_events <= limit, (scenario, inc.delay_events, limit)
    firing = [t for t in transitions if t.state.value == "firing"]
    assert firing
    if features is not None:
        assert {t.labels.get("feature") for t in firing if t.alertname == alertname} == features
    if checks:
        got = {t.labels["check"] for t in firing if t.alertname == "DataQuality"}
        assert checks <= got, got
    # Nothing fires before the incident starts.
    first = min(inc["first_offset"] for inc in truth["incidents"])
    assert all(t.offset >= first for t in firing)
    assert pipeline.stats.accepted == truth["lines"]


def test_half_sd_shift_on_one_of_twenty_features_within_20000_events() -> None:
    transitions, truth, _ = run("abrupt-shift", 60_000, seed=11)
    assert len(truth["features"]["numeric"]) >= 20
    (inc,) = truth["incidents"]
    assert inc["params"]["shift_sd"] == 0.5
    firing = [t for t in transitions if t.state.value == "firing"]
    assert [t.labels["feature"] for t in firing] == ["credit_score"]
    delay = firing[0].offset - inc["first_offset"]
    assert 0 <= delay <= 20_000
    assert firing[0].starts_at - truth_start(inc) <= 20_000 / RATE


def truth_start(inc: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(inc["first_time"]).timestamp()


def test_annotations_carry_statistic_reference_and_versions() -> None:
    transitions, _, pipeline = run("abrupt-shift", 30_000)
    firing = next(t for t in transitions if t.state.value == "firing")
    a = firing.annotations
    stream = pipeline.streams[("fraud", "v1")]
    assert stream.profile is not None
    assert a["reference_id"] == stream.profile.id
    assert a["statistic"] == "psi"
    assert float(a["value"]) > float(a["threshold"])
    assert a["code_version"] == "3f2a1c9"
    assert a["data_version"] == "snap-2026-01-01"
    assert a["features_version"] == "fs-7"
    assert a["summary"].endswith(".")
    assert "credit_score" in a["description"]
    assert firing.labels == {
        "alertname": "FeatureDrift",
        "model": "fraud",
        "model_version": "v1",
        "feature": "credit_score",
        "severity": "warning",
    }


def test_flapping_incident_is_transient_at_default_for_and_fires_with_short_for() -> None:
    transitions, truth, _ = run("flapping")
    states = Counter(t.state.value for t in transitions)
    on_periods = len(truth["incidents"])
    assert on_periods >= 2
    # Each on-period lasts 40 s of event time, shorter than FeatureDrift's default `for` (60 s).
    assert states["firing"] == 0
    assert states["transient"] >= on_periods - 1
    short = settings_from_mapping(
        {"alerts": {"FeatureDrift": {"for": "10s", "keep_firing_for": "0s"}}}
    )
    transitions, truth, _ = run("flapping", pipeline=Pipeline(short))
    fired = [t for t in transitions if t.state.value == "firing"]
    resolved = [t for t in transitions if t.state.value == "resolved"]
    assert len(fired) == on_periods
    assert len(resolved) >= on_periods - 1
    ev = evaluate([t.to_record() for t in transitions], truth)
    assert ev.detected == on_periods


@pytest.mark.slow
def test_steady_million_events_never_fires() -> None:
    transitions, truth, pipeline = run("steady", 1_000_000, seed=2026)
    assert truth["incidents"] == []
    assert len(truth["features"]["numeric"]) + len(truth["features"]["categorical"]) >= 20
    assert pipeline.stats.accepted == 1_000_000
    assert pipeline.stats.windows >= 990
    firing = [t for t in transitions if t.state.value == "firing"]
    assert firing == []
