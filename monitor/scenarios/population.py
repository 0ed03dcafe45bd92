"""The synthetic card-fraud population every scenario starts from.

Twenty numeric features (each with its distribution and encoding), five categorical ones (their
vocabularies and baseline shares), the daily cycle of transactions, and :func:`draw`, which
draws one chunk of baseline columns, and :func:`score`, the fraud model's probability from the
clean features. :mod:`monitor.scenarios.incidents` changes these columns after the onset, and
:mod:`monitor.scenarios.simulate` encodes them as event lines. The random draws are consumed in
the same order for every scenario, so the baseline is the same whatever the incident.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CATEGORICAL_FEATURES",
    "CATEGORICAL_SPECS",
    "COUNTRIES",
    "DRIFT_MEAN",
    "DRIFT_SD",
    "HOUR_WEIGHTS",
    "NEW_COUNTRY",
    "NUMERIC_FEATURES",
    "NUMERIC_SPECS",
    "Chunk",
    "NumSpec",
    "draw",
    "numeric_spec",
    "score",
]


@dataclass(frozen=True)
class NumSpec:
    """How a numeric feature is encoded: ``decimals`` None means integer."""

    name: str
    decimals: int | None
    null_rate: float


NUMERIC_SPECS: Final[tuple[NumSpec, ...]] = (
    NumSpec("amount", 2, 0.0),  # lognormal, money
    NumSpec("account_age_days", None, 0.0),  # gamma
    NumSpec("txn_count_24h", None, 0.0),  # poisson
    NumSpec("txn_count_7d", None, 0.0),  # negative binomial (overdispersed)
    NumSpec("distance_km", 2, 0.01),  # exponential, 1% null (no geolocation)
    NumSpec("hour_of_day", None, 0.0),  # 0..23, daily cycle
    NumSpec("merchant_risk", 4, 0.0),  # beta
    NumSpec("credit_score", None, 0.0),  # normal 680 +- 60
    NumSpec("customer_age", None, 0.0),  # bimodal mixture
    NumSpec("amount_zscore", 3, 0.0),  # heavy tailed (student t, 3 dof)
    NumSpec("failed_logins_7d", None, 0.0),  # zero-inflated poisson
    NumSpec("email_age_days", None, 0.012),  # gamma, 1.2% null
    NumSpec("chargebacks_12m", None, 0.0),  # negative binomial, mostly 0
    NumSpec("avg_amount_30d", 2, 0.0),  # lognormal
    NumSpec("ip_risk_logit", 3, 0.008),  # normal, 0.8% null
    NumSpec("items_in_cart", None, 0.0),  # geometric
    NumSpec("ship_bill_distance_km", 1, 0.0),  # zero-inflated lognormal
    NumSpec("minutes_since_last_txn", 1, 0.01),  # weibull, 1% null (first txn)
    NumSpec("amount_velocity_1h", 2, 0.0),  # gamma
    NumSpec("device_age_days", None, 0.01),  # exponential, 1% null
)
NUMERIC_FEATURES: Final[tuple[str, ...]] = tuple(s.name for s in NUMERIC_SPECS)

COUNTRIES: Final[tuple[str, ...]] = (
    "US",
    "GB",
    "DE",
    "FR",
    "ES",
    "IT",
    "NL",
    "CA",
    "BR",
    "IN",
    "MX",
    "PL",
    "SE",
    "AU",
    "JP",
)
NEW_COUNTRY: Final[str] = "NG"
"""Country code never seen at baseline; appears at ~5% in ``category-shift``."""


def _zipf(n: int, s: float) -> NDArray[np.float64]:
    w: NDArray[np.float64] = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    out: NDArray[np.float64] = w / w.sum()
    return out


CATEGORICAL_SPECS: Final[dict[str, tuple[tuple[str, ...], NDArray[np.float64], float]]] = {
    # name: (vocabulary, baseline probabilities, null rate)
    "country": (
        (*COUNTRIES, NEW_COUNTRY),
        np.append(_zipf(len(COUNTRIES), 1.2), 0.0),
        0.0,
    ),
    "device": (("mobile", "desktop", "tablet"), np.array([0.58, 0.34, 0.08]), 0.01),
    "channel": (("ecommerce", "in_app", "pos", "moto"), np.array([0.45, 0.30, 0.22, 0.03]), 0.0),
    "merchant_category": (
        (
            "grocery",
            "electronics",
            "travel",
            "fuel",
            "restaurants",
            "fashion",
            "digital_goods",
            "gambling",
            "health",
            "home",
        ),
        np.array([0.22, 0.09, 0.06, 0.12, 0.16, 0.10, 0.08, 0.02, 0.07, 0.08]),
        0.0,
    ),
    "card_type": (("credit", "debit", "prepaid"), np.array([0.55, 0.38, 0.07]), 0.0),
}
CATEGORICAL_FEATURES: Final[tuple[str, ...]] = tuple(CATEGORICAL_SPECS)


def _daily_cycle() -> NDArray[np.float64]:
    """Hour-of-day weights: quiet nights, a broad afternoon peak and an evening peak."""
    h = np.arange(24, dtype=np.float64)
    w = 0.12 + np.exp(-(((h - 13.0) / 4.5) ** 2)) + 0.6 * np.exp(-(((h - 20.0) / 2.0) ** 2))
    out: NDArray[np.float64] = w / w.sum()
    return out


HOUR_WEIGHTS: Final[NDArray[np.float64]] = _daily_cycle()

# credit_score's baseline, which the drift scenarios move (recorded in their truth ``params``).
DRIFT_MEAN: Final[float] = 680.0
DRIFT_SD: Final[float] = 60.0


def numeric_spec(name: str) -> NumSpec:
    for s in NUMERIC_SPECS:
        if s.name == name:
            return s
    raise KeyError(name)


@dataclass
class Chunk:
    """Columns for prediction events ``start`` .. ``stop - 1`` (raw, unrounded values)."""

    start: int
    stop: int
    num: dict[str, NDArray[np.float64]]
    null: dict[str, NDArray[np.bool_]]
    cat: dict[str, NDArray[np.intp]]
    score: NDArray[np.float64]
    latency: NDArray[np.float64]
    nan: dict[str, NDArray[np.bool_]] = field(default_factory=dict)
    renamed_from: int | None = None  # first row (chunk-relative) using the renamed schema


def draw(rng: np.random.Generator, start: int, stop: int) -> Chunk:
    """Baseline columns; consumes ``rng`` identically for every scenario."""
    n = stop - start
    mix = rng.random(n)
    num: dict[str, NDArray[np.float64]] = {
        "amount": np.maximum(rng.lognormal(3.7, 1.1, n), 0.5),
        "account_age_days": np.floor(rng.gamma(1.6, 420.0, n)),
        "txn_count_24h": rng.poisson(2.2, n).astype(np.float64),
        "txn_count_7d": rng.negative_binomial(3, 3.0 / 17.0, n).astype(np.float64),
        "distance_km": rng.exponential(28.0, n),
        "hour_of_day": rng.choice(24, size=n, p=HOUR_WEIGHTS).astype(np.float64),
        "merchant_risk": rng.beta(2.0, 9.0, n),
        "credit_score": rng.normal(DRIFT_MEAN, DRIFT_SD, n),
        "customer_age": np.clip(
            np.where(mix < 0.55, rng.normal(31.0, 6.0, n), rng.normal(55.0, 10.0, n)),
            18.0,
            99.0,
        ),
        "amount_zscore": 0.8 * rng.standard_t(3.0, n),
        "failed_logins_7d": np.where(rng.random(n) < 0.85, 0.0, rng.poisson(1.5, n) + 1.0),
        "email_age_days": np.floor(rng.gamma(0.9, 900.0, n)),
        "chargebacks_12m": rng.negative_binomial(0.3, 0.85, n).astype(np.float64),
        "avg_amount_30d": rng.lognormal(3.9, 0.7, n),
        "ip_risk_logit": rng.normal(-2.2, 1.1, n),
        "items_in_cart": rng.geometric(0.45, n).astype(np.float64),
        "ship_bill_distance_km": np.where(rng.random(n) < 0.7, 0.0, rng.lognormal(3.0, 1.5, n)),
        "minutes_since_last_txn": 900.0 * rng.weibull(0.7, n),
        "amount_velocity_1h": rng.gamma(0.8, 90.0, n),
        "device_age_days": np.floor(rng.exponential(160.0, n)),
    }
    null = {s.name: rng.random(n) < s.null_rate for s in NUMERIC_SPECS if s.null_rate > 0.0}
    cat: dict[str, NDArray[np.intp]] = {}
    for name, (vocab, probs, null_rate) in CATEGORICAL_SPECS.items():
        codes = rng.choice(len(vocab), size=n, p=probs)
        if null_rate > 0.0:
            codes = np.where(rng.random(n) < null_rate, len(vocab), codes)
        cat[name] = codes.astype(np.intp)
    fraud_score = score(num, cat)
    latency = rng.lognormal(math.log(20.0), 0.35, n) + np.where(
        rng.random(n) < 0.04, rng.lognormal(math.log(60.0), 0.7, n), 0.0
    )
    return Chunk(start, stop, num, null, cat, fraud_score, latency)


def score(
    num: dict[str, NDArray[np.float64]], cat: dict[str, NDArray[np.intp]]
) -> NDArray[np.float64]:
    """Fraud probability: sigmoid of a linear function of clean features."""
    night = (num["hour_of_day"] <= 4.0) | (num["hour_of_day"] >= 23.0)
    card_not_present = (cat["channel"] == 0) | (cat["channel"] == 3)
    logit = (
        -6.7
        + 0.9 * np.log(num["amount"] / 40.0)
        + 7.0 * num["merchant_risk"]
        + 1.0 * (num["ip_risk_logit"] + 2.2)
        + 0.45 * num["failed_logins_7d"]
        + 0.35 * np.log1p(num["distance_km"] / 10.0)
        - 0.35 * np.log1p(num["account_age_days"] / 365.0)
        + 0.9 * night
        + 0.7 * card_not_present
    )
    score: NDArray[np.float64] = np.round(1.0 / (1.0 + np.exp(-logit)), 6)
    return score
