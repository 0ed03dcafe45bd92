"""What each scenario changes after its onset, and how the truth document describes it.

The incident parameters (which feature drifts and by how much, the missing and corrupt rates,
the renamed feature, the latency factor, the label flips and delays), :func:`inject`, which
applies a scenario's incident to a chunk of baseline columns at and after the onset event, and
:func:`incidents`, the alert each scenario should raise with the events it spans and the
parameters recorded under ``params`` in the truth.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from monitor.scenarios.population import (
    CATEGORICAL_SPECS,
    COUNTRIES,
    DRIFT_MEAN,
    DRIFT_SD,
    NEW_COUNTRY,
    Chunk,
    numeric_spec,
)

__all__ = [
    "CORRUPT_FEATURE",
    "DRIFT_FEATURE",
    "LABEL_DELAY_MAX",
    "LABEL_DELAY_MIN",
    "LABEL_FLIP_PROB",
    "MISSING_FEATURE",
    "RENAME_FROM",
    "RENAME_TO",
    "Incident",
    "incidents",
    "inject",
    "shifted_country_probs",
]

Incident = tuple[str, list[str], list[str], int, int, dict[str, Any]]
"""(alertname, checks, features, first event, last event, params) of one incident."""

# Incident parameters (recorded in the truth document under ``params``).
DRIFT_FEATURE: Final[str] = "credit_score"
SHIFT_SD: Final[float] = 0.5
GRADUAL_SD: Final[float] = 1.0
VARIANCE_FACTOR: Final[float] = 2.0
FLAP_SD: Final[float] = 1.0
FLAP_PERIOD: Final[int] = 4_000
MISSING_FEATURE: Final[str] = "distance_km"
MISSING_RATE: Final[float] = 0.25
CORRUPT_FEATURE: Final[str] = "account_age_days"
CORRUPT_NAN_RATE: Final[float] = 0.025
CORRUPT_LOW_RATE: Final[float] = 0.0125
CORRUPT_HIGH_RATE: Final[float] = 0.0125
CORRUPT_LOW: Final[float] = -1.0
CORRUPT_HIGH: Final[float] = 1e9
RENAME_FROM: Final[str] = "amount"
RENAME_TO: Final[str] = "amount_usd"
LATENCY_FACTOR: Final[float] = 1.8
LATENCY_ADD_MS: Final[float] = 4.0
LABEL_FLIP_PROB: Final[float] = 0.35
LABEL_DELAY_MIN: Final[int] = 20
LABEL_DELAY_MAX: Final[int] = 200


def inject(
    chunk: Chunk, rng: np.random.Generator, *, scenario: str, events: int, onset_event: int
) -> None:
    """Apply the scenario's incident to the rows at/after the onset."""
    if scenario in ("steady", "accuracy-drop"):
        return
    n = chunk.stop - chunk.start
    idx = np.arange(chunk.start, chunk.stop, dtype=np.int64)
    on = idx >= onset_event
    u = rng.random(n)  # uniform draws shared by the scenarios that need them
    if not on.any():
        return
    if scenario == "abrupt-shift":
        chunk.num[DRIFT_FEATURE] = chunk.num[DRIFT_FEATURE] + on * (SHIFT_SD * DRIFT_SD)
    elif scenario == "gradual-drift":
        span = max(1, events - 1 - onset_event)
        frac = np.clip((idx - onset_event) / span, 0.0, 1.0)
        chunk.num[DRIFT_FEATURE] = chunk.num[DRIFT_FEATURE] + on * (frac * GRADUAL_SD * DRIFT_SD)
    elif scenario == "variance-change":
        x = chunk.num[DRIFT_FEATURE]
        chunk.num[DRIFT_FEATURE] = np.where(on, DRIFT_MEAN + VARIANCE_FACTOR * (x - DRIFT_MEAN), x)
    elif scenario == "flapping":
        flap_on = on & (((idx - onset_event) // FLAP_PERIOD) % 2 == 0)
        chunk.num[DRIFT_FEATURE] = chunk.num[DRIFT_FEATURE] + flap_on * (FLAP_SD * DRIFT_SD)
    elif scenario == "category-shift":
        probs = shifted_country_probs()
        codes = np.searchsorted(np.cumsum(probs), u, side="right")
        codes = np.minimum(codes, probs.size - 1)
        chunk.cat["country"] = np.where(on, codes, chunk.cat["country"]).astype(np.intp)
    elif scenario == "missing-spike":
        chunk.null[MISSING_FEATURE] = np.where(on, u < MISSING_RATE, chunk.null[MISSING_FEATURE])
    elif scenario == "corrupt-values":
        x = chunk.num[CORRUPT_FEATURE].copy()
        nan = on & (u < CORRUPT_NAN_RATE)
        low = on & (u >= CORRUPT_NAN_RATE) & (u < CORRUPT_NAN_RATE + CORRUPT_LOW_RATE)
        high_cut = CORRUPT_NAN_RATE + CORRUPT_LOW_RATE + CORRUPT_HIGH_RATE
        high = on & (u >= CORRUPT_NAN_RATE + CORRUPT_LOW_RATE) & (u < high_cut)
        x[low] = CORRUPT_LOW
        x[high] = CORRUPT_HIGH
        chunk.num[CORRUPT_FEATURE] = x
        chunk.nan[CORRUPT_FEATURE] = nan
    elif scenario == "schema-change":
        chunk.renamed_from = int(np.argmax(on))
    elif scenario == "latency-regression":
        chunk.latency = np.where(on, chunk.latency * LATENCY_FACTOR + LATENCY_ADD_MS, chunk.latency)
    else:  # pragma: no cover - validated in generate()
        raise AssertionError(scenario)


def incidents(scenario: str, events: int, onset_event: int) -> list[Incident]:
    """(alertname, checks, features, first event, last event, params) per incident.

    Offsets here are prediction-event indices, which equal line numbers for every
    scenario without label lines.
    """
    n, o = events, onset_event
    drift: dict[str, Any] = {
        "feature_mean": DRIFT_MEAN,
        "feature_sd": DRIFT_SD,
    }
    if scenario == "abrupt-shift":
        return [("FeatureDrift", [], [DRIFT_FEATURE], o, n - 1, {**drift, "shift_sd": SHIFT_SD})]
    if scenario == "gradual-drift":
        params = {**drift, "final_shift_sd": GRADUAL_SD}
        return [("FeatureDrift", [], [DRIFT_FEATURE], o, n - 1, params)]
    if scenario == "variance-change":
        params = {**drift, "sd_factor": VARIANCE_FACTOR}
        return [("FeatureDrift", [], [DRIFT_FEATURE], o, n - 1, params)]
    if scenario == "flapping":
        params = {**drift, "shift_sd": FLAP_SD, "period_events": FLAP_PERIOD}
        return [
            (
                "FeatureDrift",
                [],
                [DRIFT_FEATURE],
                first,
                min(first + FLAP_PERIOD, n) - 1,
                params,
            )
            for first in range(o, n, 2 * FLAP_PERIOD)
        ]
    if scenario == "category-shift":
        vocab = CATEGORICAL_SPECS["country"][0]
        shares = shifted_country_probs().round(6).tolist()
        params = {
            "new_value": NEW_COUNTRY,
            "top_value": COUNTRIES[0],
            "probabilities_after": dict(zip(vocab, shares, strict=True)),
        }
        return [("FeatureDrift", [], ["country"], o, n - 1, params)]
    if scenario == "missing-spike":
        params = {
            "null_rate_before": numeric_spec(MISSING_FEATURE).null_rate,
            "null_rate_after": MISSING_RATE,
        }
        return [("DataQuality", ["missing"], [MISSING_FEATURE], o, n - 1, params)]
    if scenario == "corrupt-values":
        params = {
            "nan_rate": CORRUPT_NAN_RATE,
            "sentinels": [
                {"value": int(CORRUPT_LOW), "rate": CORRUPT_LOW_RATE},
                {"value": int(CORRUPT_HIGH), "rate": CORRUPT_HIGH_RATE},
            ],
        }
        checks = ["nan_inf", "out_of_range"]
        return [("DataQuality", checks, [CORRUPT_FEATURE], o, n - 1, params)]
    if scenario == "schema-change":
        params = {"renamed_from": RENAME_FROM, "renamed_to": RENAME_TO}
        return [
            ("DataQuality", ["absent"], [RENAME_FROM], o, n - 1, params),
            ("DataQuality", ["unexpected_feature"], [RENAME_TO], o, n - 1, params),
        ]
    if scenario == "latency-regression":
        params = {"factor": LATENCY_FACTOR, "added_ms": LATENCY_ADD_MS}
        return [("LatencyRegression", [], [], o, n - 1, params)]
    if scenario == "accuracy-drop":
        params = {
            "flip_prob": LABEL_FLIP_PROB,
            "label_delay_events": [LABEL_DELAY_MIN, LABEL_DELAY_MAX],
        }
        return [("PerformanceDegradation", [], [], o, n - 1, params)]
    return []


def shifted_country_probs() -> NDArray[np.float64]:
    """Country mix after ``category-shift``: top share halves, NG appears at 5%."""
    base = CATEGORICAL_SPECS["country"][1]
    top = float(base[0])
    probs = base.copy()
    new_share = 0.05
    probs[0] = top / 2.0
    rest = 1.0 - new_share - probs[0]
    probs[1:-1] = base[1:-1] * (rest / float(base[1:-1].sum()))
    probs[-1] = new_share
    return probs
