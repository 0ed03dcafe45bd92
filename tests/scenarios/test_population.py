"""The baseline population (:mod:`monitor.scenarios.population`): marginals, shapes, scores
and latency of the steady stream, and the same baseline under every scenario.

Statistical assertions use 5-sigma bounds derived from the sample (see ``streams.py``).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from monitor.scenarios.population import CATEGORICAL_SPECS, NUMERIC_SPECS
from monitor.scenarios.simulate import (
    SCENARIOS,
)
from tests.scenarios.streams import (
    ONSET_EVENT,
    Z,
    binomial_bound,
    feature_column,
    scenario_lines,
    scenario_predictions,
)


def test_baseline_identical_across_scenarios() -> None:
    steady = scenario_lines("steady")
    for scenario in SCENARIOS:
        lines = [ln for ln in scenario_lines(scenario) if b'"prediction"' in ln]
        assert lines[:ONSET_EVENT] == list(steady[:ONSET_EVENT]), scenario
    # accuracy-drop changes only labels: every prediction line equals steady's
    acc = [ln for ln in scenario_lines("accuracy-drop") if b'"prediction"' in ln]
    assert acc == list(steady)


def test_marginals_sanity() -> None:
    preds = scenario_predictions("steady")
    n = len(preds)
    for spec in NUMERIC_SPECS:
        col = feature_column(preds, spec.name)
        null_rate = float(np.isnan(col).mean())
        if spec.null_rate == 0.0:
            assert null_rate == 0.0, spec.name
        else:
            assert abs(null_rate - spec.null_rate) <= binomial_bound(spec.null_rate, n)
        vals = col[~np.isnan(col)]
        if spec.decimals is None:
            assert all(isinstance(o["features"][spec.name], int | None) for o in preds)
        else:
            assert np.all(np.round(vals, spec.decimals) == vals), spec.name
    for name, (vocab, probs, null_rate) in CATEGORICAL_SPECS.items():
        values = [o["features"][name] for o in preds]
        counts = Counter(values)
        assert set(counts) <= {*vocab, None}
        for code, p in zip(vocab, probs, strict=True):
            share = counts.get(code, 0) / n
            assert abs(share - p * (1 - null_rate)) <= binomial_bound(float(p), n), (name, code)
    assert "NG" not in {o["features"]["country"] for o in preds}
    country = Counter(o["features"]["country"] for o in preds)
    ranked = [c for c, _ in country.most_common()]
    assert ranked[0] == "US"
    # realistic shapes, not N(0, 1)
    amount = feature_column(preds, "amount")
    assert amount.min() > 0 and np.mean(amount) > 1.3 * np.median(amount)  # right skew
    hours = feature_column(preds, "hour_of_day")
    assert set(np.unique(hours).tolist()) <= set(range(24))
    hour_counts = np.bincount(hours.astype(np.int64), minlength=24)
    assert hour_counts[14] > 4 * hour_counts[4]  # daily cycle
    risk = feature_column(preds, "merchant_risk")
    assert risk.min() >= 0.0 and risk.max() <= 1.0
    credit = feature_column(preds, "credit_score")
    se = credit.std(ddof=1) / math.sqrt(n)
    assert abs(credit.mean() - 680.0) <= Z * se
    assert abs(credit.std(ddof=1) - 60.0) <= Z * 60.0 / math.sqrt(2 * n)
    age = feature_column(preds, "customer_age")
    assert np.sum((age >= 38) & (age <= 44)) < np.sum((age >= 28) & (age <= 34))  # bimodal
    z = feature_column(preds, "amount_zscore")
    kurt = float(np.mean((z - z.mean()) ** 4) / z.var() ** 2)
    assert kurt > 6.0  # heavy tailed (normal: 3)


def test_predictions_and_latency() -> None:
    preds = scenario_predictions("steady")
    n = len(preds)
    scores = np.array([o["prediction"]["score"] for o in preds])
    labels = [o["prediction"]["label"] for o in preds]
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    assert labels == ["fraud" if s >= 0.5 else "legit" for s in scores]
    assert 0.01 <= scores.mean() <= 0.06  # base fraud rate of a few percent
    assert 0 < labels.count("fraud") < 0.05 * n
    latency = np.array([o["latency_ms"] for o in preds])
    assert np.all(np.round(latency, 2) == latency)
    assert 17.0 <= float(np.median(latency)) <= 23.0
    assert np.percentile(latency, 99.5) > 3 * np.median(latency)  # right tail
    assert all(
        o["versions"] == {"code": "3f2a1c9", "data": "snap-2026-01-01", "features": "fs-7"}
        for o in preds
    )
    assert all(o["model"] == "fraud" and o["model_version"] == "v1" for o in preds)
