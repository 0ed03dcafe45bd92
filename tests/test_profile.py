"""Tests for :mod:`detectors.profile`: what a reference profile records, and its JSON identity.

Expected values are computed in the tests from the raw Python values (filtering by type), not
through :mod:`detectors.columns`, so the profile is checked against an independent reading of
its documented contract.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

from detectors.columns import MISSING_CODE, FeatureDict, FeatureValue
from detectors.profile import (
    PROFILE_FORMAT,
    ErrorProfile,
    QualityCounts,
    ReferenceProfile,
    build_profile,
    categorical_profile,
    latency_profile,
    numeric_profile,
)

N = 1000
BINS = 10


def _mixed_sample() -> tuple[list[dict[str, Any]], NDArray[np.float64], list[Any], NDArray[Any]]:
    """Features, scores, labels and latency with every kind of defect, deterministically."""
    rng = np.random.default_rng(42)
    amounts = rng.normal(100.0, 15.0, N)
    features: list[dict[str, Any]] = []
    big = ["DE"] * 400 + ["FR"] * 250 + ["US"] * 150 + ["GB"] * 80 + ["IT"] * 60 + ["ZZ"] * 2
    singles = [f"X{i:02d}" for i in range(20)]
    countries: list[Any] = big + singles + [None] * 30 + [7] * 8  # 1000 values
    assert len(countries) == N
    order = rng.permutation(N)
    for i in range(N):
        d: dict[str, Any] = {}
        r = i % 100
        if r == 0:
            d["amount"] = None  # null
        elif r == 1:
            pass  # absent
        elif r == 2:
            d["amount"] = "n/a"  # wrong type
        elif r == 3:
            d["amount"] = True  # a bool is not a number here
        elif r == 4:
            d["amount"] = float("nan")
        elif r == 5:
            d["amount"] = float("inf") if i % 200 == 5 else float("-inf")
        elif r == 6:
            d["amount"] = round(float(amounts[i]))  # ints are numbers
        else:
            d["amount"] = float(amounts[i])
        d["country"] = countries[order[i]]
        d["is_new"] = None if i % 25 == 0 else bool(i % 3 == 0)
        features.append(d)
    scores = rng.uniform(0.0, 1.0, N)
    scores[::40] = np.nan
    labels: list[Any] = [
        None if i % 50 == 7 else ("pos" if s > 0.7 else "neg")
        for i, s in enumerate(np.nan_to_num(scores))
    ]
    latency = rng.lognormal(3.0, 0.4, N)
    latency[::100] = np.nan
    return features, scores, labels, latency


@pytest.fixture(scope="module")
def sample() -> tuple[list[dict[str, Any]], NDArray[np.float64], list[Any], NDArray[Any]]:
    return _mixed_sample()


@pytest.fixture(scope="module")
def profile(
    sample: tuple[list[dict[str, Any]], NDArray[np.float64], list[Any], NDArray[Any]],
) -> ReferenceProfile:
    features, scores, labels, latency = sample
    return build_profile(
        "fraud", "v3", "ref.jsonl", features, scores, labels, latency, bins=BINS, max_categories=6
    )


def test_kinds_are_inferred(profile: ReferenceProfile) -> None:
    assert list(profile.numeric) == ["amount"]
    assert list(profile.categorical) == ["country", "is_new"]
    assert profile.events == N
    assert (profile.model, profile.model_version, profile.source) == ("fraud", "v3", "ref.jsonl")
    assert profile.format == PROFILE_FORMAT
    assert profile.error is None


def test_numeric_feature_with_defects(
    sample: tuple[list[dict[str, Any]], NDArray[np.float64], list[Any], NDArray[Any]],
    profile: ReferenceProfile,
) -> None:
    features = sample[0]
    raw = [d.get("amount") for d in features]
    numbers = [v for v in raw if type(v) is float or type(v) is int]
    finite = np.array([v for v in numbers if math.isfinite(v)], dtype=np.float64)
    p = profile.numeric["amount"]
    assert p.quality == QualityCounts(
        n=N,
        null=sum(1 for d in features if "amount" in d and d["amount"] is None),
        absent=sum(1 for d in features if "amount" not in d),
        wrong_type=sum(1 for v in raw if v is not None and type(v) not in (float, int)),
        nan_inf=sum(1 for v in numbers if not math.isfinite(v)),
    )
    assert p.quality == QualityCounts(n=N, null=10, absent=10, wrong_type=20, nan_inf=20)
    assert p.finite == finite.size == N - 60
    assert p.min == finite.min()
    assert p.max == finite.max()
    assert p.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert p.std == pytest.approx(finite.std(ddof=1), rel=1e-12)
    # Continuous data: the inner edges are the deciles, each bin holds a tenth (+-1 for ints).
    expected_edges = np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1])
    np.testing.assert_allclose(p.edges, expected_edges, rtol=1e-12)
    assert len(p.counts) == BINS
    assert sum(p.counts) == finite.size
    for c in p.counts:
        assert abs(c - finite.size / BINS) <= 2


def test_categorical_feature_with_rare_categories(profile: ReferenceProfile) -> None:
    p = profile.categorical["country"]
    # Top 6 by count (ties broken by name); everything rarer shares the "other" bin.
    assert p.categories == ("DE", "FR", "US", "GB", "IT", "ZZ")
    assert p.counts == (400, 250, 150, 80, 60, 2, 20)
    assert p.rare == tuple(f"X{i:02d}" for i in range(20))
    assert p.singletons == 20
    assert p.quality == QualityCounts(n=N, null=30, absent=0, wrong_type=8)
    assert p.bins == 8
    index = p.index()
    assert index["DE"] == 0
    assert index["ZZ"] == 5
    assert index["X07"] == 6  # rare -> "other"
    assert index[None] == MISSING_CODE
    assert "nowhere" not in index  # unseen values are encoded by the caller's unseen code
    assert p.histogram().tolist() == [400, 250, 150, 80, 60, 2, 20, 0]


def test_bool_categorical_feature(
    sample: tuple[list[dict[str, Any]], NDArray[np.float64], list[Any], NDArray[Any]],
    profile: ReferenceProfile,
) -> None:
    features = sample[0]
    tally = Counter(d["is_new"] for d in features)
    p = profile.categorical["is_new"]
    assert p.categories == (False, True)  # False is the more frequent value
    assert all(type(c) is bool for c in p.categories)
    assert p.counts == (tally[False], tally[True], 0)
    assert p.quality == QualityCounts(n=N, null=tally[None])


def test_score_label_and_latency(
    sample: tuple[list[dict[str, Any]], NDArray[np.float64], list[Any], NDArray[Any]],
    profile: ReferenceProfile,
) -> None:
    _, scores, labels, latency = sample
    s = profile.score
    assert s is not None
    finite = scores[np.isfinite(scores)]
    assert s.quality == QualityCounts(n=N, null=int(np.isnan(scores).sum()))
    assert sum(s.counts) == finite.size
    assert (s.min, s.max) == (finite.min(), finite.max())

    lab = profile.label
    assert lab is not None
    tally = Counter(labels)
    assert lab.categories == ("neg", "pos")
    assert lab.counts == (tally["neg"], tally["pos"], 0)
    assert lab.quality == QualityCounts(n=N, null=tally[None])

    lat = profile.latency
    assert lat is not None
    ok = latency[np.isfinite(latency)]
    p50, p95, p99 = np.quantile(ok, [0.5, 0.95, 0.99])
    assert lat.n == ok.size == N - 10
    assert (lat.p50, lat.p95, lat.p99) == pytest.approx((p50, p95, p99), rel=1e-12)
    assert lat.above_p95 == int((ok > p95).sum())
    assert lat.above_p99 == int((ok > p99).sum())
    # Linear interpolation puts p95 at sorted position 0.95 * 989 = 939.55 and p99 at 979.11,
    # so sorted positions 940..989 (50) and 980..989 (10) lie strictly above them.
    assert lat.above_p95 == 50
    assert lat.above_p99 == 10


def test_missing_outputs_give_no_profiles() -> None:
    feats: list[FeatureDict] = [{"x": float(i)} for i in range(20)]
    p = build_profile("m", "1", "s", feats, np.full(20, np.nan), [None] * 20, np.full(20, np.nan))
    assert p.score is None
    assert p.label is None
    assert p.latency is None
    assert latency_profile(np.array([])) is None


def test_bins_must_be_at_least_two() -> None:
    with pytest.raises(ValueError, match="bins"):
        build_profile("m", "1", "s", [{"x": 1.0}], np.array([]), [], np.array([]), bins=1)


# -- JSON identity -------------------------------------------------------------------------------


def test_json_round_trip_is_lossless(profile: ReferenceProfile) -> None:
    text = profile.to_json()
    body = json.loads(text)
    assert body["id"] == profile.id
    assert profile.id.startswith("sha256:")
    assert len(profile.id) == len("sha256:") + 16
    loaded = ReferenceProfile.from_json(text)
    assert loaded == profile
    assert loaded.id == profile.id
    # Types survive: bool categories stay bools, string categories stay strings.
    assert loaded.categorical["is_new"].categories == (False, True)
    assert all(type(c) is bool for c in loaded.categorical["is_new"].categories)
    assert loaded.categorical["country"].categories[0] == "DE"
    # from_json accepts str as well as bytes.
    assert ReferenceProfile.from_json(text.decode()) == profile


def test_id_is_stable_and_content_addressed(
    sample: tuple[list[dict[str, Any]], NDArray[np.float64], list[Any], NDArray[Any]],
    profile: ReferenceProfile,
) -> None:
    features, scores, labels, latency = sample
    again = build_profile(
        "fraud", "v3", "ref.jsonl", features, scores, labels, latency, bins=BINS, max_categories=6
    )
    assert again.id == profile.id
    assert again.canonical_json() == profile.canonical_json()
    # Any content change changes the id.
    assert profile.model_copy(update={"model_version": "v4"}).id != profile.id
    assert profile.model_copy(update={"events": N + 1}).id != profile.id
    amount = profile.numeric["amount"]
    bumped = amount.model_copy(update={"counts": (amount.counts[0] + 1, *amount.counts[1:])})
    assert profile.model_copy(update={"numeric": {"amount": bumped}}).id != profile.id
    # The id written into the JSON is ignored when loading, it is always recomputed.
    body = json.loads(profile.to_json())
    body["id"] = "sha256:0000000000000000"
    assert ReferenceProfile.from_json(json.dumps(body)).id == profile.id


def test_with_error_returns_a_new_profile(profile: ReferenceProfile) -> None:
    err = ErrorProfile(kind="classification", n=100, total=7.0, total_sq=7.0)
    with_err = profile.with_error(err)
    assert with_err.error == err
    assert profile.error is None
    assert with_err.id != profile.id
    assert ReferenceProfile.from_json(with_err.to_json()) == with_err


def test_profiles_are_frozen_and_strict(profile: ReferenceProfile) -> None:
    with pytest.raises(ValidationError):
        profile.events = 3  # type: ignore[misc]
    body = json.loads(profile.to_json())
    body["surprise"] = 1
    with pytest.raises(ValidationError):
        ReferenceProfile.from_json(json.dumps(body))


def test_error_profile_mean_and_std() -> None:
    errors = np.array([0.5, 1.5, 2.0, 0.0, 4.0])
    e = ErrorProfile(
        kind="regression",
        n=errors.size,
        total=float(errors.sum()),
        total_sq=float((errors**2).sum()),
    )
    assert e.mean == pytest.approx(errors.mean())
    assert e.std == pytest.approx(errors.std(ddof=1))
    empty = ErrorProfile(kind="classification", n=0, total=0.0, total_sq=0.0)
    assert (empty.mean, empty.std) == (0.0, 0.0)


# -- degenerate numeric features -----------------------------------------------------------------


def test_quantile_edges_with_heavy_ties() -> None:
    # A discrete feature: 700 zeros, 150 ones, 100 twos, 50 threes.
    values = np.repeat([0.0, 1.0, 2.0, 3.0], [700, 150, 100, 50])
    np.random.default_rng(0).shuffle(values)
    p = numeric_profile(values, bins=BINS)
    edges = np.asarray(p.edges)
    # Ties merged the deciles: only the distinct inner edges are kept, strictly increasing.
    assert 0 < edges.size < BINS - 1
    assert np.all(np.isfinite(edges))
    assert np.all(np.diff(edges) > 0)
    deciles = np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1])
    assert set(edges.tolist()) == {e for e in deciles.tolist() if e > values.min()}
    # No edge at the minimum (the first bin would be empty) and the first bin holds the zeros.
    assert edges.min() > values.min()
    assert p.counts[0] == 700
    # Counts are the histogram on [e_{b-1}, e_b), computed here directly, on `bins` bins:
    # the bins past the last edge are empty.
    assert len(p.counts) == BINS
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])
    direct = [int(((values >= lo) & (values < hi)).sum()) for lo, hi in itertools.pairwise(bounds)]
    assert list(p.counts) == direct + [0] * (BINS - len(direct))
    assert sum(p.counts) == values.size
    # No distinct value is split between bins.
    for v in (0.0, 1.0, 2.0, 3.0):
        b = int(np.searchsorted(edges, v, side="right"))
        assert p.counts[b] >= int((values == v).sum())
    assert (p.min, p.max) == (0.0, 3.0)


def test_constant_feature() -> None:
    p = numeric_profile(np.full(500, 4.2), bins=BINS)
    assert p.edges == ()
    assert p.counts == (500,) + (0,) * (BINS - 1)
    assert (p.min, p.max) == (4.2, 4.2)
    # mean and std come from float sums, so they are 4.2 and 0 up to rounding.
    assert p.mean == pytest.approx(4.2, rel=1e-12)
    assert p.std == pytest.approx(0.0, abs=1e-12)
    prof = ReferenceProfile(model="m", model_version="1", source="s", events=500, numeric={"c": p})
    text = prof.to_json()
    assert b"Infinity" not in text  # standard JSON
    assert ReferenceProfile.from_json(text) == prof


def test_always_null_feature() -> None:
    feats: list[dict[str, FeatureValue]] = [
        {"x": float(i), "empty": None} if i % 2 else {"x": float(i)} for i in range(100)
    ]
    # Inferred kinds leave an always-null feature out.
    inferred = build_profile("m", "1", "s", feats, np.array([]), [], np.array([]))
    assert list(inferred.numeric) == ["x"]
    assert inferred.categorical == {}
    # Named explicitly, it gets an empty profile with its null/absent counts.
    named = build_profile(
        "m",
        "1",
        "s",
        feats,
        np.array([]),
        [],
        np.array([]),
        numeric_names=["x", "empty"],
        categorical_names=[],
    )
    e = named.numeric["empty"]
    assert e.finite == 0
    assert e.counts == (0,) * BINS
    assert e.edges == ()
    assert (e.min, e.max, e.mean, e.std) == (0.0, 0.0, 0.0, 0.0)
    assert e.quality == QualityCounts(n=100, null=50, absent=50)
    assert b"Infinity" not in named.to_json()
    assert ReferenceProfile.from_json(named.to_json()) == named


def test_categorical_profile_caps_rare_list() -> None:
    values: list[FeatureValue] = ["a"] * 5 + ["b"] * 3 + [f"r{i}" for i in range(10)] + [None]
    p = categorical_profile(values, QualityCounts(n=len(values), null=1), 2, max_rare=4)
    assert p.categories == ("a", "b")
    assert p.counts == (5, 3, 10)  # the "other" count covers all rare values, not just listed
    assert p.rare == ("r0", "r1", "r2", "r3")
    assert p.singletons == 10
