"""The incidents (:mod:`monitor.scenarios.incidents`): each scenario changes what it says it
changes after the onset, by the amount its truth ``params`` record, and nothing else.

Statistical assertions use 5-sigma bounds derived from the sample (see ``streams.py``).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from numpy.typing import NDArray

from monitor.scenarios.simulate import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
)
from tests.scenarios.streams import (
    ONSET_EVENT,
    N,
    Z,
    binomial_bound,
    feature_column,
    mean_diff_bound,
    scenario_events,
    scenario_lines,
    scenario_predictions,
    scenario_truth,
)


def test_truth_alertnames_and_checks() -> None:
    expect = {
        "abrupt-shift": ("FeatureDrift", [], ["credit_score"]),
        "gradual-drift": ("FeatureDrift", [], ["credit_score"]),
        "variance-change": ("FeatureDrift", [], ["credit_score"]),
        "category-shift": ("FeatureDrift", [], ["country"]),
        "missing-spike": ("DataQuality", ["missing"], ["distance_km"]),
        "corrupt-values": ("DataQuality", ["nan_inf", "out_of_range"], ["account_age_days"]),
        "latency-regression": ("LatencyRegression", [], []),
        "accuracy-drop": ("PerformanceDegradation", [], []),
        "flapping": ("FeatureDrift", [], ["credit_score"]),
    }
    for scenario, (alertname, checks, features) in expect.items():
        for inc in scenario_truth(scenario)["incidents"]:
            assert (inc["alertname"], inc["checks"], inc["features"]) == (
                alertname,
                checks,
                features,
            )
    schema = scenario_truth("schema-change")["incidents"]
    assert [(i["alertname"], i["checks"], i["features"]) for i in schema] == [
        ("DataQuality", ["absent"], ["amount"]),
        ("DataQuality", ["unexpected_feature"], ["amount_usd"]),
    ]
    assert scenario_truth("steady")["incidents"] == []


def _split(scenario: str, name: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    col = feature_column(scenario_predictions(scenario), name)
    return col[:ONSET_EVENT], col[ONSET_EVENT:]


def test_abrupt_shift() -> None:
    pre, post = _split("abrupt-shift", "credit_score")
    sd = scenario_truth("abrupt-shift")["incidents"][0]["params"]["feature_sd"]
    assert abs((post.mean() - pre.mean()) - 0.5 * sd) <= mean_diff_bound(pre, post)
    steady_pre, steady_post = _split("steady", "credit_score")
    assert np.array_equal(post - steady_post, np.full(post.size, 0.5 * sd))
    assert np.array_equal(pre, steady_pre)
    other = feature_column(scenario_predictions("abrupt-shift"), "amount")
    assert np.array_equal(other, feature_column(scenario_predictions("steady"), "amount"))


def test_gradual_drift() -> None:
    pre, post = _split("gradual-drift", "credit_score")
    sd = 60.0
    x = np.arange(post.size) / (post.size - 1)
    slope, intercept = np.polyfit(x, post, 1)
    resid = post - (slope * x + intercept)
    se_slope = resid.std(ddof=2) / math.sqrt(float(np.sum((x - x.mean()) ** 2)))
    assert abs(slope - sd) <= Z * se_slope
    se_icpt = math.sqrt(
        resid.var(ddof=2) * (1 / x.size + x.mean() ** 2 / np.sum((x - x.mean()) ** 2))
    )
    assert abs(intercept - pre.mean()) <= Z * math.hypot(
        se_icpt, pre.std(ddof=1) / math.sqrt(pre.size)
    )
    _steady_pre, steady_post = _split("steady", "credit_score")
    # exactly linear before rounding to integers
    assert np.max(np.abs(post - steady_post - sd * x)) <= 1.0


def test_variance_change() -> None:
    pre, post = _split("variance-change", "credit_score")
    ratio = post.std(ddof=1) / pre.std(ddof=1)
    se = ratio * math.sqrt(1 / (2 * (pre.size - 1)) + 1 / (2 * (post.size - 1)))
    assert abs(ratio - 2.0) <= Z * se
    assert abs(post.mean() - pre.mean()) <= mean_diff_bound(pre, post)


def test_category_shift() -> None:
    preds = scenario_predictions("category-shift")
    pre = Counter(o["features"]["country"] for o in preds[:ONSET_EVENT])
    post = Counter(o["features"]["country"] for o in preds[ONSET_EVENT:])
    n_pre, n_post = ONSET_EVENT, N - ONSET_EVENT
    assert "NG" not in pre
    assert abs(post["NG"] / n_post - 0.05) <= binomial_bound(0.05, n_post)
    us_pre, us_post = pre["US"] / n_pre, post["US"] / n_post
    se = math.sqrt(us_pre * (1 - us_pre) / n_pre / 4 + us_post * (1 - us_post) / n_post)
    assert abs(us_post - us_pre / 2) <= Z * se
    expected = scenario_truth("category-shift")["incidents"][0]["params"]["probabilities_after"]
    for code, p in expected.items():
        assert abs(post.get(code, 0) / n_post - p) <= binomial_bound(p, n_post), code


def test_missing_spike() -> None:
    pre, post = _split("missing-spike", "distance_km")
    for col, p in ((pre, 0.01), (post, 0.25)):
        assert abs(float(np.isnan(col).mean()) - p) <= binomial_bound(p, col.size)
    keys = {k for o in scenario_predictions("missing-spike") for k in o["features"]}
    assert keys == {*NUMERIC_FEATURES, *CATEGORICAL_FEATURES}


def test_corrupt_values() -> None:
    pre, post = _split("corrupt-values", "account_age_days")
    assert not np.isnan(pre).any()
    assert pre.min() >= 0 and pre.max() < 1e6
    n = post.size
    for mask, p in (
        (np.isnan(post), 0.025),
        (post == -1.0, 0.0125),
        (post == 1e9, 0.0125),
    ):
        assert abs(float(mask.mean()) - p) <= binomial_bound(p, n)
    total_bad = float((np.isnan(post) | (post < 0) | (post > 1e6)).mean())
    assert abs(total_bad - 0.05) <= binomial_bound(0.05, n)
    raw = scenario_lines("corrupt-values")
    assert all(b"NaN" not in line for line in raw[:ONSET_EVENT])
    assert any(b'"account_age_days":NaN,' in line for line in raw[ONSET_EVENT:])


def test_schema_change() -> None:
    preds = scenario_predictions("schema-change")
    steady = scenario_predictions("steady")
    for i, obj in enumerate(preds):
        feats = obj["features"]
        assert len(feats) == 25
        if i < ONSET_EVENT:
            assert "amount" in feats and "amount_usd" not in feats
        else:
            assert "amount" not in feats
            assert feats["amount_usd"] == steady[i]["features"]["amount"]


def test_latency_regression() -> None:
    pre, post = (
        np.array([o["latency_ms"] for o in part])
        for part in (
            scenario_predictions("latency-regression")[:ONSET_EVENT],
            scenario_predictions("latency-regression")[ONSET_EVENT:],
        )
    )
    base_post = np.array([o["latency_ms"] for o in scenario_predictions("steady")[ONSET_EVENT:]])
    # exact relation to the unchanged baseline (up to rounding to 2 decimals)
    assert np.max(np.abs(post - (1.8 * base_post + 4.0))) <= 1.8 * 0.005 + 0.005 + 1e-9
    expected = 1.8 * pre.mean() + 4.0
    bound = Z * math.sqrt(post.var(ddof=1) / post.size + 1.8**2 * pre.var(ddof=1) / pre.size)
    assert abs(post.mean() - expected) <= bound
    assert np.median(post) > 1.7 * np.median(pre)


def test_accuracy_drop_labels() -> None:
    objs = scenario_events("accuracy-drop")
    truth = scenario_truth("accuracy-drop")
    score: dict[int, float] = {}
    pred_label: dict[int, str] = {}
    line_of_pred: dict[int, int] = {}
    last_pred_ts = ""
    label_of: dict[int, str] = {}
    for k, obj in enumerate(objs):
        i = int(obj["event_id"][2:])
        if "prediction" in obj:
            score[i] = obj["prediction"]["score"]
            pred_label[i] = obj["prediction"]["label"]
            line_of_pred[i] = k
            last_pred_ts = obj["timestamp"]
            placed_after = i
        else:
            assert set(obj) == {"event_id", "model", "timestamp", "label"}
            assert i not in label_of
            label_of[i] = obj["label"]
            assert obj["timestamp"] == last_pred_ts  # time of the line it is placed at
            lag = placed_after - i
            assert 20 <= lag <= 200 or placed_after == N - 1
    assert sorted(label_of) == list(range(N))
    assert set(label_of.values()) == {"fraud", "legit"}
    s = np.array([score[i] for i in range(N)])
    y = np.array([label_of[i] == "fraud" for i in range(N)])
    wrong = np.array([label_of[i] != pred_label[i] for i in range(N)])
    pre, post = slice(0, ONSET_EVENT), slice(ONSET_EVENT, N)
    # calibrated before onset: fraud ~ Bernoulli(score)
    var = float(np.sum(s[pre] * (1 - s[pre])))
    assert abs(float(y[pre].sum() - s[pre].sum())) <= Z * math.sqrt(var)
    # after onset 35% of labels are flipped, so the error rate rises as predicted
    p_err = np.where(s >= 0.5, 1 - s, s)
    p_post = 0.65 * p_err[post] + 0.35 * (1 - p_err[post])
    var_post = float(np.sum(p_post * (1 - p_post)))
    assert abs(float(wrong[post].sum() - p_post.sum())) <= Z * math.sqrt(var_post)
    assert wrong[post].mean() > 5 * wrong[pre].mean()
    inc = truth["incidents"][0]
    first_label = objs[inc["first_offset"]]
    assert "label" in first_label and int(first_label["event_id"][2:]) >= ONSET_EVENT
    earlier_post = [
        k
        for k, o in enumerate(objs[: inc["first_offset"]])
        if "label" in o and int(o["event_id"][2:]) >= ONSET_EVENT
    ]
    assert earlier_post == []


def test_flapping_segments() -> None:
    truth = scenario_truth("flapping")
    incs = truth["incidents"]
    assert len(incs) == math.ceil((N - ONSET_EVENT) / 8_000)
    for k, inc in enumerate(incs):
        assert inc["first_offset"] == ONSET_EVENT + 8_000 * k
        assert inc["last_offset"] == min(inc["first_offset"] + 4_000, N) - 1
        if k:
            gap = inc["first_offset"] - incs[k - 1]["last_offset"] - 1
            assert gap == 4_000
    diff = feature_column(scenario_predictions("flapping"), "credit_score") - feature_column(
        scenario_predictions("steady"), "credit_score"
    )
    on = np.zeros(N, dtype=bool)
    for inc in incs:
        on[inc["first_offset"] : inc["last_offset"] + 1] = True
    assert np.all(diff[on] == 60.0)
    assert np.all(diff[~on] == 0.0)
