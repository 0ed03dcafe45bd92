"""The generated streams the scenario tests share, each generated once per test session.

Statistical assertions use ``Z``-sigma bounds derived from the sample (standard errors from
sample standard deviations / binomial variances), never hand-tuned constants.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from monitor.scenarios.simulate import (
    generate,
)

N = 24_000
SEED = 11
ONSET = 0.5
ONSET_EVENT = math.floor(ONSET * N)
Z = 5.0  # sigma multiplier for statistical bounds


@functools.cache
def scenario_lines(scenario: str, events: int = N, seed: int = SEED) -> tuple[bytes, ...]:
    return tuple(generate(scenario, events, seed, onset=ONSET).lines())


@functools.lru_cache(maxsize=4)
def scenario_events(scenario: str) -> tuple[dict[str, Any], ...]:
    if scenario == "corrupt-values":
        return tuple(json.loads(line) for line in scenario_lines(scenario))
    return tuple(orjson.loads(line) for line in scenario_lines(scenario))


def scenario_predictions(scenario: str) -> list[dict[str, Any]]:
    return [o for o in scenario_events(scenario) if "prediction" in o]


def feature_column(objs: list[dict[str, Any]], name: str) -> NDArray[np.float64]:
    vals = [o["features"].get(name) for o in objs]
    return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)


def scenario_truth(scenario: str) -> dict[str, Any]:
    return generate(scenario, N, SEED, onset=ONSET).truth()


def mean_diff_bound(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Z-sigma bound for a difference of two sample means."""
    return Z * math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)


def binomial_bound(p: float, n: int) -> float:
    return Z * math.sqrt(max(p * (1.0 - p), 1.0 / n) / n)
