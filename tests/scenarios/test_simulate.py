"""Tests for the scenario generator :mod:`monitor.scenarios.simulate`.

Statistical assertions use 5-sigma bounds derived from the sample (standard errors from
sample standard deviations / binomial variances), never hand-tuned constants.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from monitor.scenarios import simulate
from monitor.scenarios.population import CATEGORICAL_SPECS, NUMERIC_SPECS
from monitor.scenarios.simulate import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    SCENARIOS,
    generate,
)

N = 24_000
SEED = 11
ONSET = 0.5
ONSET_EVENT = math.floor(ONSET * N)
Z = 5.0  # sigma multiplier for statistical bounds


@functools.cache
def _lines(scenario: str, events: int = N, seed: int = SEED) -> tuple[bytes, ...]:
    return tuple(generate(scenario, events, seed, onset=ONSET).lines())


@functools.lru_cache(maxsize=4)
def _parsed(scenario: str) -> tuple[dict[str, Any], ...]:
    if scenario == "corrupt-values":
        return tuple(json.loads(line) for line in _lines(scenario))
    return tuple(orjson.loads(line) for line in _lines(scenario))


def _predictions(scenario: str) -> list[dict[str, Any]]:
    return [o for o in _parsed(scenario) if "prediction" in o]


def _column(objs: list[dict[str, Any]], name: str) -> NDArray[np.float64]:
    vals = [o["features"].get(name) for o in objs]
    return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)


def _truth(scenario: str) -> dict[str, Any]:
    return generate(scenario, N, SEED, onset=ONSET).truth()


def _mean_diff_bound(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Z-sigma bound for a difference of two sample means."""
    return Z * math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)


def _binomial_bound(p: float, n: int) -> float:
    return Z * math.sqrt(max(p * (1.0 - p), 1.0 / n) / n)


# --------------------------------------------------------------------------- basics


def test_scenarios_listed() -> None:
    assert SCENARIOS == (
        "steady",
        "abrupt-shift",
        "gradual-drift",
        "variance-change",
        "category-shift",
        "missing-spike",
        "corrupt-values",
        "schema-change",
        "latency-regression",
        "accuracy-drop",
        "flapping",
    )
    assert len(NUMERIC_FEATURES) == 20
    assert len(CATEGORICAL_FEATURES) == 5


def test_deterministic_bytes() -> None:
    a = b"\n".join(generate("accuracy-drop", 15_000, 5).lines())
    b = b"\n".join(generate("accuracy-drop", 15_000, 5).lines())
    c = b"\n".join(generate("accuracy-drop", 15_000, 6).lines())
    assert a == b
    assert a != c


def test_lines_reiterable() -> None:
    sim = generate("flapping", 12_000, 2)
    assert list(sim.lines()) == list(sim.lines())


def test_write_matches_lines(tmp_path: Path) -> None:
    sim = generate("schema-change", 12_345, 3, rate=250.0)
    truth = sim.write(tmp_path / "events.jsonl", tmp_path / "truth.json")
    data = (tmp_path / "events.jsonl").read_bytes()
    assert data == b"\n".join(sim.lines()) + b"\n"
    assert json.loads((tmp_path / "truth.json").read_text()) == truth == sim.truth()
    assert data.count(b"\n") == truth["lines"] == 12_345


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_line_parses(scenario: str) -> None:
    seen_constants: list[str] = []

    def constant(name: str) -> float:
        seen_constants.append(name)
        return float(name)

    for line in _lines(scenario):
        assert not line.endswith(b"\n")
        obj = json.loads(line, parse_constant=constant)
        assert isinstance(obj, dict)
        if b"NaN" not in line:
            # byte-identical to orjson's own encoding of the parsed object
            assert orjson.dumps(orjson.loads(line)) == line
    if scenario == "corrupt-values":
        assert set(seen_constants) == {"NaN"}
    else:
        assert seen_constants == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_counts_and_truth_header(scenario: str) -> None:
    lines = _lines(scenario)
    truth = _truth(scenario)
    preds = _predictions(scenario)
    assert len(preds) == N == truth["events"]
    assert truth["lines"] == len(lines)
    labels = [o for o in _parsed(scenario) if "prediction" not in o]
    if scenario == "accuracy-drop":
        assert len(labels) == N
        assert len(lines) == 2 * N
    else:
        assert labels == []
        assert len(lines) == N
    assert truth["scenario"] == scenario
    assert truth["seed"] == SEED
    assert truth["rate"] == 100.0
    assert truth["model"] == "fraud"
    assert truth["model_version"] == "v1"
    assert truth["features"] == {
        "numeric": list(NUMERIC_FEATURES),
        "categorical": list(CATEGORICAL_FEATURES),
    }
    assert [o["event_id"] for o in preds] == [f"e-{i}" for i in range(N)]
    stamps = [o["timestamp"] for o in _parsed(scenario)]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "steady"])
def test_truth_offsets_point_at_lines(scenario: str) -> None:
    truth = _truth(scenario)
    objs = _parsed(scenario)
    assert truth["incidents"]
    for inc in truth["incidents"]:
        assert inc["kind"] == scenario
        first, last = inc["first_offset"], inc["last_offset"]
        assert 0 <= first <= last < truth["lines"]
        assert objs[first]["timestamp"] == inc["first_time"]
        assert objs[last]["timestamp"] == inc["last_time"]
        if scenario == "accuracy-drop":
            continue
        # period incidents: the first line is the onset prediction (or a flapping on-period)
        first_event = int(objs[first]["event_id"][2:])
        assert first == first_event
        if scenario != "flapping":
            assert first_event == ONSET_EVENT
            assert last == truth["lines"] - 1


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
        for inc in _truth(scenario)["incidents"]:
            assert (inc["alertname"], inc["checks"], inc["features"]) == (
                alertname,
                checks,
                features,
            )
    schema = _truth("schema-change")["incidents"]
    assert [(i["alertname"], i["checks"], i["features"]) for i in schema] == [
        ("DataQuality", ["absent"], ["amount"]),
        ("DataQuality", ["unexpected_feature"], ["amount_usd"]),
    ]
    assert _truth("steady")["incidents"] == []


def test_truth_available_before_lines() -> None:
    sim = generate("accuracy-drop", 23_456, 9, onset=0.3)
    early = sim.truth()
    lines = list(sim.lines())
    assert early == sim.truth()
    assert early["lines"] == len(lines)
    inc = early["incidents"][0]
    objs = [orjson.loads(line) for line in lines]
    onset = math.floor(0.3 * 23_456)
    post = [k for k, o in enumerate(objs) if "label" in o and int(o["event_id"][2:]) >= onset]
    assert inc["first_offset"] == post[0]
    assert inc["last_offset"] == post[-1] == len(lines) - 1
    onset_line = inc["params"]["onset_prediction_offset"]
    assert objs[onset_line]["event_id"] == f"e-{onset}"
    assert "prediction" in objs[onset_line]


# --------------------------------------------------------------------------- baseline


def test_baseline_identical_across_scenarios() -> None:
    steady = _lines("steady")
    for scenario in SCENARIOS:
        lines = [ln for ln in _lines(scenario) if b'"prediction"' in ln]
        assert lines[:ONSET_EVENT] == list(steady[:ONSET_EVENT]), scenario
    # accuracy-drop changes only labels: every prediction line equals steady's
    acc = [ln for ln in _lines("accuracy-drop") if b'"prediction"' in ln]
    assert acc == list(steady)


def test_timestamps_and_ids() -> None:
    sim = generate("steady", 2_000, 1, rate=3.0)
    objs = [orjson.loads(line) for line in sim.lines()]
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    start = np.datetime64("2026-01-01T00:00:00.000", "ms")
    for i, obj in enumerate(objs):
        assert obj["event_id"] == f"e-{i}"
        assert pattern.match(obj["timestamp"])
        ms = math.floor(i * 1000 / 3.0)
        expected = np.datetime_as_string(start + np.timedelta64(ms, "ms"), unit="ms")
        assert obj["timestamp"] == f"{expected}Z"
    assert objs[0]["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert objs[3]["timestamp"] == "2026-01-01T00:00:01.000Z"


def test_marginals_sanity() -> None:
    preds = _predictions("steady")
    n = len(preds)
    for spec in NUMERIC_SPECS:
        col = _column(preds, spec.name)
        null_rate = float(np.isnan(col).mean())
        if spec.null_rate == 0.0:
            assert null_rate == 0.0, spec.name
        else:
            assert abs(null_rate - spec.null_rate) <= _binomial_bound(spec.null_rate, n)
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
            assert abs(share - p * (1 - null_rate)) <= _binomial_bound(float(p), n), (name, code)
    assert "NG" not in {o["features"]["country"] for o in preds}
    country = Counter(o["features"]["country"] for o in preds)
    ranked = [c for c, _ in country.most_common()]
    assert ranked[0] == "US"
    # realistic shapes, not N(0, 1)
    amount = _column(preds, "amount")
    assert amount.min() > 0 and np.mean(amount) > 1.3 * np.median(amount)  # right skew
    hours = _column(preds, "hour_of_day")
    assert set(np.unique(hours).tolist()) <= set(range(24))
    hour_counts = np.bincount(hours.astype(np.int64), minlength=24)
    assert hour_counts[14] > 4 * hour_counts[4]  # daily cycle
    risk = _column(preds, "merchant_risk")
    assert risk.min() >= 0.0 and risk.max() <= 1.0
    credit = _column(preds, "credit_score")
    se = credit.std(ddof=1) / math.sqrt(n)
    assert abs(credit.mean() - 680.0) <= Z * se
    assert abs(credit.std(ddof=1) - 60.0) <= Z * 60.0 / math.sqrt(2 * n)
    age = _column(preds, "customer_age")
    assert np.sum((age >= 38) & (age <= 44)) < np.sum((age >= 28) & (age <= 34))  # bimodal
    z = _column(preds, "amount_zscore")
    kurt = float(np.mean((z - z.mean()) ** 4) / z.var() ** 2)
    assert kurt > 6.0  # heavy tailed (normal: 3)


def test_predictions_and_latency() -> None:
    preds = _predictions("steady")
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


def test_model_name_escaping() -> None:
    line = next(generate("steady", 10, 1, model='fr"a%ud', model_version="v%d").lines())
    obj = json.loads(line)
    assert obj["model"] == 'fr"a%ud'
    assert obj["model_version"] == "v%d"


# --------------------------------------------------------------------------- scenarios


def _split(scenario: str, name: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    col = _column(_predictions(scenario), name)
    return col[:ONSET_EVENT], col[ONSET_EVENT:]


def test_abrupt_shift() -> None:
    pre, post = _split("abrupt-shift", "credit_score")
    sd = _truth("abrupt-shift")["incidents"][0]["params"]["feature_sd"]
    assert abs((post.mean() - pre.mean()) - 0.5 * sd) <= _mean_diff_bound(pre, post)
    steady_pre, steady_post = _split("steady", "credit_score")
    assert np.array_equal(post - steady_post, np.full(post.size, 0.5 * sd))
    assert np.array_equal(pre, steady_pre)
    other = _column(_predictions("abrupt-shift"), "amount")
    assert np.array_equal(other, _column(_predictions("steady"), "amount"))


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
    assert abs(post.mean() - pre.mean()) <= _mean_diff_bound(pre, post)


def test_category_shift() -> None:
    preds = _predictions("category-shift")
    pre = Counter(o["features"]["country"] for o in preds[:ONSET_EVENT])
    post = Counter(o["features"]["country"] for o in preds[ONSET_EVENT:])
    n_pre, n_post = ONSET_EVENT, N - ONSET_EVENT
    assert "NG" not in pre
    assert abs(post["NG"] / n_post - 0.05) <= _binomial_bound(0.05, n_post)
    us_pre, us_post = pre["US"] / n_pre, post["US"] / n_post
    se = math.sqrt(us_pre * (1 - us_pre) / n_pre / 4 + us_post * (1 - us_post) / n_post)
    assert abs(us_post - us_pre / 2) <= Z * se
    expected = _truth("category-shift")["incidents"][0]["params"]["probabilities_after"]
    for code, p in expected.items():
        assert abs(post.get(code, 0) / n_post - p) <= _binomial_bound(p, n_post), code


def test_missing_spike() -> None:
    pre, post = _split("missing-spike", "distance_km")
    for col, p in ((pre, 0.01), (post, 0.25)):
        assert abs(float(np.isnan(col).mean()) - p) <= _binomial_bound(p, col.size)
    keys = {k for o in _predictions("missing-spike") for k in o["features"]}
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
        assert abs(float(mask.mean()) - p) <= _binomial_bound(p, n)
    total_bad = float((np.isnan(post) | (post < 0) | (post > 1e6)).mean())
    assert abs(total_bad - 0.05) <= _binomial_bound(0.05, n)
    raw = _lines("corrupt-values")
    assert all(b"NaN" not in line for line in raw[:ONSET_EVENT])
    assert any(b'"account_age_days":NaN,' in line for line in raw[ONSET_EVENT:])


def test_schema_change() -> None:
    preds = _predictions("schema-change")
    steady = _predictions("steady")
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
            _predictions("latency-regression")[:ONSET_EVENT],
            _predictions("latency-regression")[ONSET_EVENT:],
        )
    )
    base_post = np.array([o["latency_ms"] for o in _predictions("steady")[ONSET_EVENT:]])
    # exact relation to the unchanged baseline (up to rounding to 2 decimals)
    assert np.max(np.abs(post - (1.8 * base_post + 4.0))) <= 1.8 * 0.005 + 0.005 + 1e-9
    expected = 1.8 * pre.mean() + 4.0
    bound = Z * math.sqrt(post.var(ddof=1) / post.size + 1.8**2 * pre.var(ddof=1) / pre.size)
    assert abs(post.mean() - expected) <= bound
    assert np.median(post) > 1.7 * np.median(pre)


def test_accuracy_drop_labels() -> None:
    objs = _parsed("accuracy-drop")
    truth = _truth("accuracy-drop")
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
    truth = _truth("flapping")
    incs = truth["incidents"]
    assert len(incs) == math.ceil((N - ONSET_EVENT) / 8_000)
    for k, inc in enumerate(incs):
        assert inc["first_offset"] == ONSET_EVENT + 8_000 * k
        assert inc["last_offset"] == min(inc["first_offset"] + 4_000, N) - 1
        if k:
            gap = inc["first_offset"] - incs[k - 1]["last_offset"] - 1
            assert gap == 4_000
    diff = _column(_predictions("flapping"), "credit_score") - _column(
        _predictions("steady"), "credit_score"
    )
    on = np.zeros(N, dtype=bool)
    for inc in incs:
        on[inc["first_offset"] : inc["last_offset"] + 1] = True
    assert np.all(diff[on] == 60.0)
    assert np.all(diff[~on] == 0.0)


@settings(max_examples=25, deadline=None)
@given(
    events=st.integers(min_value=1, max_value=700),
    onset=st.floats(min_value=0.01, max_value=0.99),
    chunk=st.integers(min_value=1, max_value=97),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_label_layout_any_chunking(events: int, onset: float, chunk: int, seed: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(simulate, "CHUNK_EVENTS", chunk)
        sim = generate("accuracy-drop", events, seed, onset=onset)
        truth = sim.truth()
        objs = [orjson.loads(line) for line in sim.lines()]
    assert len(objs) == truth["lines"] == 2 * events
    onset_event = math.floor(onset * events)
    preds = [int(o["event_id"][2:]) for o in objs if "prediction" in o]
    labels = [int(o["event_id"][2:]) for o in objs if "label" in o]
    assert preds == list(range(events))
    assert sorted(labels) == list(range(events))
    seen: set[int] = set()
    for obj in objs:
        i = int(obj["event_id"][2:])
        if "prediction" in obj:
            seen.add(i)
        else:
            assert i in seen  # a label never precedes its prediction
    post = [k for k, o in enumerate(objs) if "label" in o and int(o["event_id"][2:]) >= onset_event]
    inc = truth["incidents"][0]
    assert (inc["first_offset"], inc["last_offset"]) == (post[0], post[-1])


# --------------------------------------------------------------------------- laziness


def test_lines_is_lazy_generator() -> None:
    sim = generate("accuracy-drop", 5_000_000, 1)
    assert inspect.isgenerator(sim.lines())
    it = sim.lines()
    t0 = time.perf_counter()
    first = next(it)
    assert time.perf_counter() - t0 < 2.0
    assert orjson.loads(first)["event_id"] == "e-0"


def test_memory_flat() -> None:
    sim = generate("steady", 5_000_000, 1)
    tracemalloc.start()
    try:
        for count, _line in enumerate(sim.lines(), start=1):
            if count == 3 * simulate.CHUNK_EVENTS:
                break
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a few chunks' worth of lines (~0.8 kB each), nowhere near the 4 GB of the whole file
    assert peak < 40 * simulate.CHUNK_EVENTS * 1_000


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"scenario": "nope"}, "scenario"),
        ({"events": 0}, "events"),
        ({"events": -5}, "events"),
        ({"events": 2.5}, "events"),
        ({"rate": 0.0}, "rate"),
        ({"rate": -1.0}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"onset": 0.0}, "onset"),
        ({"onset": 1.0}, "onset"),
        ({"onset": 1.5}, "onset"),
        ({"onset": float("nan")}, "onset"),
        ({"seed": -1}, "seed"),
    ],
)
def test_value_errors_name_parameter(kwargs: dict[str, Any], param: str) -> None:
    args: dict[str, Any] = {"scenario": "steady", "events": 100, "seed": 1, **kwargs}
    with pytest.raises(ValueError, match=rf"^{param}\b"):
        generate(**args)


def test_simulate_to_sends_labels_to_the_configured_topic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``simulate --to`` takes the labels (and features) topic from ``--config``, not a
    hard-coded ``labels``."""
    import monitor.scenarios.publish
    from monitor.cli import main

    calls: list[dict[str, Any]] = []

    def publish(sim: Any, url: str, batch: int, **kwargs: Any) -> int:
        calls.append({"url": url, "batch": batch, **kwargs})
        return 0

    monkeypatch.setattr(monitor.scenarios.publish, "publish", publish)
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("topics:\n  labels: truth-x\n  features: feats-x\n", encoding="utf-8")
    args = ["simulate", "--scenario", "accuracy-drop", "--events", "200"]
    url = "kafka://127.0.0.1:9/preds"
    assert main([*args, "--to", url, "--config", str(cfg)]) == 0
    assert main([*args, "--to", url]) == 0
    assert [(c["labels_topic"], c["features_topic"]) for c in calls] == [
        ("truth-x", "feats-x"),
        ("labels", "features"),
    ]


@pytest.mark.kafka
def test_simulate_to_writes_labels_to_topics_labels(kafka_broker: Any, tmp_path: Path) -> None:
    from kafka import KafkaConsumer

    from monitor.cli import main
    from tests.kafka_broker import create_topic

    tag = f"{time.time_ns() % 10**9}"
    preds, labels = f"simcfg-pred-{tag}", f"simcfg-truth-{tag}"
    for topic in (preds, labels):
        create_topic(kafka_broker.bootstrap, topic, 1)
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"topics:\n  labels: {labels}\n", encoding="utf-8")
    url = f"kafka://{kafka_broker.bootstrap}/{preds}"
    argv = ["simulate", "--scenario", "accuracy-drop", "--events", "3000", "--seed", "5"]
    assert main([*argv, "--to", url, "--config", str(cfg)]) == 0
    consumer = KafkaConsumer(
        labels,
        bootstrap_servers=kafka_broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        group_id=None,
    )
    try:
        got = [r.value for r in consumer]
    finally:
        consumer.close()
    events = [e for raw in got for e in orjson.loads(raw)["events"]]
    assert events and all("label" in e and "prediction" not in e for e in events)
