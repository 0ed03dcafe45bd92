"""Synthetic card-fraud prediction streams with injected, known incidents.

The generator produces the driftwatch event wire format (one JSON object per line) for a
card-fraud model together with a *truth* document describing exactly which lines carry an
injected incident, so that alerting can be scored by :mod:`monitor.evaluate`.

Design
------
* Columns are drawn with numpy one chunk (:data:`CHUNK_EVENTS` prediction events) at a time
  and encoded straight to bytes, so memory stays flat however many events are requested.
* Values are encoded with ``orjson`` column by column (one ``orjson.dumps`` per column and
  chunk, split into per-row tokens) and spliced into a fixed byte template per line; the
  result is byte-identical to ``orjson.dumps`` of the equivalent dict.  The only values not
  written by orjson are nulls (``null``) and, in ``corrupt-values``, the bare token ``NaN``
  (as Python's :func:`json.dumps` writes it).
* Randomness comes from ``numpy.random.default_rng(seed)``, split into independent child
  streams for the baseline data, the incident injection, label values and label delays.
  Consequently every scenario produces the same baseline: for a given seed, the lines
  before the onset are identical across scenarios (apart from the label lines of
  ``accuracy-drop``), and the incident changes only what it is documented to change.
* Prediction scores are computed from the *clean* feature values (before nulls,
  corruption or drift are applied), so feature incidents do not also move the prediction
  distribution; only ``accuracy-drop`` touches the labels, only ``latency-regression`` the
  latency.

Truth
-----
:meth:`Simulation.truth` is available at any time (it does not require ``lines()`` to have
been consumed).  For ``accuracy-drop`` the line offsets depend on the random label delays;
they are computed by a cheap dry run over the delay stream (no features are generated).
Incident offsets are 0-based line numbers of the written file and describe the *period*
over which the change is present: from the first prediction line at/after the onset to the
last affected line.  For ``accuracy-drop`` the affected lines are the label lines of
predictions made at/after the onset (those labels are the ones drawn from the broken
relationship), so ``first_offset`` is the first such label line.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np
import orjson
from numpy.typing import NDArray

__all__ = [
    "CATEGORICAL_FEATURES",
    "CHUNK_EVENTS",
    "NUMERIC_FEATURES",
    "SCENARIOS",
    "Simulation",
    "generate",
]

SCENARIOS: Final[tuple[str, ...]] = (
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

CHUNK_EVENTS: Final[int] = 10_000
"""Prediction events generated (and encoded) per numpy batch."""

START_MS: Final[np.datetime64] = np.datetime64("2026-01-01T00:00:00.000", "ms")
VERSIONS: Final[dict[str, str]] = {
    "code": "3f2a1c9",
    "data": "snap-2026-01-01",
    "features": "fs-7",
}


@dataclass(frozen=True)
class _NumSpec:
    """How a numeric feature is encoded: ``decimals`` None means integer."""

    name: str
    decimals: int | None
    null_rate: float


NUMERIC_SPECS: Final[tuple[_NumSpec, ...]] = (
    _NumSpec("amount", 2, 0.0),  # lognormal, money
    _NumSpec("account_age_days", None, 0.0),  # gamma
    _NumSpec("txn_count_24h", None, 0.0),  # poisson
    _NumSpec("txn_count_7d", None, 0.0),  # negative binomial (overdispersed)
    _NumSpec("distance_km", 2, 0.01),  # exponential, 1% null (no geolocation)
    _NumSpec("hour_of_day", None, 0.0),  # 0..23, daily cycle
    _NumSpec("merchant_risk", 4, 0.0),  # beta
    _NumSpec("credit_score", None, 0.0),  # normal 680 +- 60
    _NumSpec("customer_age", None, 0.0),  # bimodal mixture
    _NumSpec("amount_zscore", 3, 0.0),  # heavy tailed (student t, 3 dof)
    _NumSpec("failed_logins_7d", None, 0.0),  # zero-inflated poisson
    _NumSpec("email_age_days", None, 0.012),  # gamma, 1.2% null
    _NumSpec("chargebacks_12m", None, 0.0),  # negative binomial, mostly 0
    _NumSpec("avg_amount_30d", 2, 0.0),  # lognormal
    _NumSpec("ip_risk_logit", 3, 0.008),  # normal, 0.8% null
    _NumSpec("items_in_cart", None, 0.0),  # geometric
    _NumSpec("ship_bill_distance_km", 1, 0.0),  # zero-inflated lognormal
    _NumSpec("minutes_since_last_txn", 1, 0.01),  # weibull, 1% null (first txn)
    _NumSpec("amount_velocity_1h", 2, 0.0),  # gamma
    _NumSpec("device_age_days", None, 0.01),  # exponential, 1% null
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

# Incident parameters (recorded in the truth document under ``params``).
DRIFT_FEATURE: Final[str] = "credit_score"
DRIFT_MEAN: Final[float] = 680.0
DRIFT_SD: Final[float] = 60.0
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

_NULL: Final[bytes] = b"null"
_NAN: Final[bytes] = b"NaN"
_LABEL_TOKENS: Final[NDArray[np.object_]] = np.array([b'"legit"', b'"fraud"'], dtype=object)
_CATEGORY_TOKENS: Final[dict[str, NDArray[np.object_]]] = {
    # encoded vocabulary; code len(vocab) is the null token
    name: np.array([orjson.dumps(v) for v in vocab] + [_NULL], dtype=object)
    for name, (vocab, _probs, _null_rate) in CATEGORICAL_SPECS.items()
}
_STREAMS: Final[int] = 4  # base, injection, label values, label delays


def _spec(name: str) -> _NumSpec:
    for s in NUMERIC_SPECS:
        if s.name == name:
            return s
    raise KeyError(name)


def _iso(start: np.datetime64, ms: NDArray[np.int64]) -> NDArray[np.str_]:
    """RFC 3339 UTC timestamps with milliseconds for offsets (ms) from ``start``."""
    stamps = start + ms.astype("timedelta64[ms]")
    return np.datetime_as_string(stamps, unit="ms", timezone="UTC")


def _tokens(values: NDArray[Any]) -> list[bytes]:
    """orjson-encode a 1-D column and split it into one token per row."""
    if values.size == 0:
        return []
    return orjson.dumps(values.tolist())[1:-1].split(b",")


def _json_key(name: str) -> bytes:
    return orjson.dumps(name).replace(b"%", b"%%")


@dataclass
class _Chunk:
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


class _LabelQueue:
    """Places label events a random number of prediction events after their prediction.

    Labels are pushed with the prediction index they refer to and the prediction index
    after which they are written (``place``); ``pop`` returns those due before ``stop``
    ordered by (place, prediction), which fixes the line layout of the file.
    """

    def __init__(self) -> None:
        self.place = np.empty(0, dtype=np.int64)
        self.pred = np.empty(0, dtype=np.int64)
        self.value = np.empty(0, dtype=np.bool_)

    def push(
        self, pred: NDArray[np.int64], place: NDArray[np.int64], value: NDArray[np.bool_]
    ) -> None:
        self.place = np.concatenate([self.place, place])
        self.pred = np.concatenate([self.pred, pred])
        self.value = np.concatenate([self.value, value])

    def pop(self, stop: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
        due = self.place < stop
        order = np.lexsort((self.pred[due], self.place[due]))
        out = (self.place[due][order], self.pred[due][order], self.value[due][order])
        keep = ~due
        self.place, self.pred, self.value = self.place[keep], self.pred[keep], self.value[keep]
        return out


def _layout(
    start: int, stop: int, label_place: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Chunk-relative line positions of predictions and of (sorted) labels."""
    preds = np.arange(start, stop, dtype=np.int64)
    pred_pos = (preds - start) + np.searchsorted(label_place, preds, side="left")
    label_pos = np.arange(label_place.size, dtype=np.int64) + (label_place - start + 1)
    return pred_pos, label_pos


class Simulation:
    """A lazily generated scenario: event lines plus the truth about injected incidents.

    Create instances with :func:`generate`.  ``lines()`` may be iterated any number of
    times and always yields the same bytes; ``truth()`` can be called at any time.
    """

    def __init__(
        self,
        *,
        scenario: str,
        events: int,
        seed: int,
        rate: float,
        onset: float,
        model: str,
        model_version: str,
        start: np.datetime64 = START_MS,
    ) -> None:
        self.scenario = scenario
        self.start = start
        self.events = events
        self.seed = seed
        self.rate = float(rate)
        self.onset = float(onset)
        self.model = model
        self.model_version = model_version
        self.onset_event = math.floor(onset * events)
        self._truth: dict[str, Any] | None = None
        model_tok = orjson.dumps(model).replace(b"%", b"%%")
        version_tok = orjson.dumps(model_version).replace(b"%", b"%%")
        self._pred_template = self._template(model_tok, version_tok, renamed=False)
        self._renamed_template = self._template(model_tok, version_tok, renamed=True)
        self._label_template = (
            b'{"event_id":"e-%d","model":' + model_tok + b',"timestamp":%s,"label":%s}'
        )

    # ------------------------------------------------------------------ public API

    def lines(self) -> Iterator[bytes]:
        """Yield the encoded JSON lines (no trailing newline), generated chunk by chunk."""
        for chunk in self.chunks():
            yield from chunk

    def chunks(self) -> Iterator[list[bytes]]:
        """Yield the encoded lines in batches of about :data:`CHUNK_EVENTS` events."""
        base, inj, lab, delay = np.random.default_rng(self.seed).spawn(_STREAMS)
        queue = _LabelQueue() if self.scenario == "accuracy-drop" else None
        for start in range(0, self.events, CHUNK_EVENTS):
            stop = min(start + CHUNK_EVENTS, self.events)
            chunk = self._draw(base, start, stop)
            self._inject(chunk, inj)
            pred_lines = self._encode(chunk)
            if queue is None:
                yield pred_lines
                continue
            self._push_labels(queue, chunk, lab, delay)
            place, pred, value = queue.pop(stop)
            label_lines = self._encode_labels(place, pred, value)
            pred_pos, label_pos = _layout(start, stop, place)
            merged = np.empty(len(pred_lines) + len(label_lines), dtype=object)
            merged[pred_pos] = pred_lines
            merged[label_pos] = label_lines
            yield merged.tolist()

    def truth(self) -> dict[str, Any]:
        """The truth document (see the module docstring); computed once and cached."""
        if self._truth is None:
            self._truth = self._compute_truth()
        return self._truth

    def write(
        self, out_path: str | os.PathLike[str], truth_path: str | os.PathLike[str] | None = None
    ) -> dict[str, Any]:
        """Write every line plus ``\\n`` to ``out_path`` (and the truth JSON); return the truth."""
        with open(out_path, "wb") as fh:
            for chunk in self.chunks():
                fh.write(b"\n".join(chunk))
                fh.write(b"\n")
        truth = self.truth()
        if truth_path is not None:
            with open(truth_path, "wb") as fh:
                fh.write(orjson.dumps(truth, option=orjson.OPT_INDENT_2) + b"\n")
        return truth

    # ------------------------------------------------------------------ generation

    @staticmethod
    def _template(model_tok: bytes, version_tok: bytes, *, renamed: bool) -> bytes:
        names = [RENAME_TO if renamed and n == RENAME_FROM else n for n in NUMERIC_FEATURES]
        names += list(CATEGORICAL_FEATURES)
        features = b",".join(_json_key(n) + b":%s" for n in names)
        versions = orjson.dumps(VERSIONS).replace(b"%", b"%%")
        return (
            b'{"event_id":"e-%d","model":'
            + model_tok
            + b',"model_version":'
            + version_tok
            + b',"timestamp":%s,"features":{'
            + features
            + b'},"prediction":{"score":%s,"label":%s},"latency_ms":%s,"versions":'
            + versions
            + b"}"
        )

    def _draw(self, rng: np.random.Generator, start: int, stop: int) -> _Chunk:
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
        score = self._score(num, cat)
        latency = rng.lognormal(math.log(20.0), 0.35, n) + np.where(
            rng.random(n) < 0.04, rng.lognormal(math.log(60.0), 0.7, n), 0.0
        )
        return _Chunk(start, stop, num, null, cat, score, latency)

    @staticmethod
    def _score(
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

    def _inject(self, chunk: _Chunk, rng: np.random.Generator) -> None:
        """Apply the scenario's incident to the rows at/after the onset."""
        scenario = self.scenario
        if scenario in ("steady", "accuracy-drop"):
            return
        n = chunk.stop - chunk.start
        idx = np.arange(chunk.start, chunk.stop, dtype=np.int64)
        on = idx >= self.onset_event
        u = rng.random(n)  # uniform draws shared by the scenarios that need them
        if not on.any():
            return
        if scenario == "abrupt-shift":
            chunk.num[DRIFT_FEATURE] = chunk.num[DRIFT_FEATURE] + on * (SHIFT_SD * DRIFT_SD)
        elif scenario == "gradual-drift":
            span = max(1, self.events - 1 - self.onset_event)
            frac = np.clip((idx - self.onset_event) / span, 0.0, 1.0)
            chunk.num[DRIFT_FEATURE] = chunk.num[DRIFT_FEATURE] + on * (
                frac * GRADUAL_SD * DRIFT_SD
            )
        elif scenario == "variance-change":
            x = chunk.num[DRIFT_FEATURE]
            chunk.num[DRIFT_FEATURE] = np.where(
                on, DRIFT_MEAN + VARIANCE_FACTOR * (x - DRIFT_MEAN), x
            )
        elif scenario == "flapping":
            flap_on = on & (((idx - self.onset_event) // FLAP_PERIOD) % 2 == 0)
            chunk.num[DRIFT_FEATURE] = chunk.num[DRIFT_FEATURE] + flap_on * (FLAP_SD * DRIFT_SD)
        elif scenario == "category-shift":
            probs = _shifted_country_probs()
            codes = np.searchsorted(np.cumsum(probs), u, side="right")
            codes = np.minimum(codes, probs.size - 1)
            chunk.cat["country"] = np.where(on, codes, chunk.cat["country"]).astype(np.intp)
        elif scenario == "missing-spike":
            chunk.null[MISSING_FEATURE] = np.where(
                on, u < MISSING_RATE, chunk.null[MISSING_FEATURE]
            )
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
            chunk.latency = np.where(
                on, chunk.latency * LATENCY_FACTOR + LATENCY_ADD_MS, chunk.latency
            )
        else:  # pragma: no cover - validated in generate()
            raise AssertionError(scenario)

    def _encode(self, chunk: _Chunk) -> list[bytes]:
        """Encode a chunk's prediction events as JSON lines."""
        n = chunk.stop - chunk.start
        idx = np.arange(chunk.start, chunk.stop, dtype=np.int64)
        columns: list[list[bytes]] = [_tokens(self._timestamps(idx))]
        for spec in NUMERIC_SPECS:
            raw = chunk.num[spec.name]
            null = chunk.null.get(spec.name)
            nan = chunk.nan.get(spec.name)
            bad = null if nan is None else (nan if null is None else null | nan)
            if bad is not None:
                raw = np.where(bad, 0.0, raw)
            if spec.decimals is None:
                tokens = _tokens(np.rint(raw).astype(np.int64))
            else:
                tokens = _tokens(np.round(raw, spec.decimals) + 0.0)
            if null is not None:
                for k in np.flatnonzero(null).tolist():
                    tokens[k] = _NULL
            if nan is not None:
                for k in np.flatnonzero(nan).tolist():
                    tokens[k] = _NAN
            columns.append(tokens)
        for name, lut in _CATEGORY_TOKENS.items():
            columns.append(lut[chunk.cat[name]].tolist())
        columns.append(_tokens(chunk.score))
        columns.append(_LABEL_TOKENS[(chunk.score >= 0.5).astype(np.intp)].tolist())
        columns.append(_tokens(np.round(chunk.latency, 2)))
        rows = zip(range(chunk.start, chunk.stop), *columns, strict=True)
        cut = n if chunk.renamed_from is None else chunk.renamed_from
        template = self._pred_template
        out = [template % row for row in itertools.islice(rows, cut)]
        if cut < n:
            renamed = self._renamed_template
            out.extend(renamed % row for row in rows)
        return out

    def _timestamps(self, idx: NDArray[np.int64]) -> NDArray[np.str_]:
        ms = np.floor(idx * 1000.0 / self.rate).astype(np.int64)
        return _iso(self.start, ms)

    def _push_labels(
        self,
        queue: _LabelQueue,
        chunk: _Chunk,
        lab: np.random.Generator,
        delay: np.random.Generator,
    ) -> None:
        n = chunk.stop - chunk.start
        pred = np.arange(chunk.start, chunk.stop, dtype=np.int64)
        place = self._placements(pred, delay)
        u = lab.random(n)
        v = lab.random(n)
        fraud = u < chunk.score
        flip = (pred >= self.onset_event) & (v < LABEL_FLIP_PROB)
        queue.push(pred, place, fraud ^ flip)

    def _placements(self, pred: NDArray[np.int64], delay: np.random.Generator) -> NDArray[np.int64]:
        d = delay.integers(LABEL_DELAY_MIN, LABEL_DELAY_MAX + 1, size=pred.size, dtype=np.int64)
        place: NDArray[np.int64] = np.minimum(pred + d, self.events - 1)
        return place

    def _encode_labels(
        self, place: NDArray[np.int64], pred: NDArray[np.int64], value: NDArray[np.bool_]
    ) -> list[bytes]:
        stamps = _tokens(self._timestamps(place))
        labels = _LABEL_TOKENS[value.astype(np.intp)].tolist()
        template = self._label_template
        return [template % row for row in zip(pred.tolist(), stamps, labels, strict=True)]

    # ------------------------------------------------------------------ truth

    def _time_of_event(self, i: int) -> str:
        return str(self._timestamps(np.array([i], dtype=np.int64))[0])

    def _incidents(self) -> list[tuple[str, list[str], list[str], int, int, dict[str, Any]]]:
        """(alertname, checks, features, first event, last event, params) per incident.

        Offsets here are prediction-event indices, which equal line numbers for every
        scenario without label lines.
        """
        n, o, scenario = self.events, self.onset_event, self.scenario
        drift: dict[str, Any] = {
            "feature_mean": DRIFT_MEAN,
            "feature_sd": DRIFT_SD,
        }
        if scenario == "abrupt-shift":
            return [
                ("FeatureDrift", [], [DRIFT_FEATURE], o, n - 1, {**drift, "shift_sd": SHIFT_SD})
            ]
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
            shares = _shifted_country_probs().round(6).tolist()
            params = {
                "new_value": NEW_COUNTRY,
                "top_value": COUNTRIES[0],
                "probabilities_after": dict(zip(vocab, shares, strict=True)),
            }
            return [("FeatureDrift", [], ["country"], o, n - 1, params)]
        if scenario == "missing-spike":
            params = {
                "null_rate_before": _spec(MISSING_FEATURE).null_rate,
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

    def _compute_truth(self) -> dict[str, Any]:
        lines = self.events
        incidents: list[dict[str, Any]] = []
        for alertname, checks, features, first_event, last_event, event_params in self._incidents():
            first, last, params = first_event, last_event, event_params
            first_place, last_place = first, last
            if self.scenario == "accuracy-drop":
                dry = self._label_dry_run()
                lines, first, last = dry.lines, dry.first_line, dry.last_line
                first_place, last_place = dry.first_place, dry.last_place
                params = {**params, "onset_prediction_offset": dry.onset_line}
            incidents.append(
                {
                    "kind": self.scenario,
                    "alertname": alertname,
                    "checks": checks,
                    "features": features,
                    "first_offset": first,
                    "last_offset": last,
                    "first_time": self._time_of_event(first_place),
                    "last_time": self._time_of_event(last_place),
                    "params": params,
                }
            )
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "events": self.events,
            "lines": lines,
            "rate": self.rate,
            "model": self.model,
            "model_version": self.model_version,
            "onset": self.onset,
            "onset_event": self.onset_event,
            "start_time": self._time_of_event(0),
            "features": {
                "numeric": list(NUMERIC_FEATURES),
                "categorical": list(CATEGORICAL_FEATURES),
            },
            "incidents": incidents,
        }

    def _label_dry_run(self) -> _DryRun:
        """Replay only the label-delay stream to find line numbers (no features drawn)."""
        delay = np.random.default_rng(self.seed).spawn(_STREAMS)[3]
        queue = _LabelQueue()
        line_base = 0
        onset_line = first = first_place = last = last_place = -1
        for start in range(0, self.events, CHUNK_EVENTS):
            stop = min(start + CHUNK_EVENTS, self.events)
            pred = np.arange(start, stop, dtype=np.int64)
            queue.push(pred, self._placements(pred, delay), np.zeros(pred.size, np.bool_))
            place, label_pred, _ = queue.pop(stop)
            pred_pos, label_pos = _layout(start, stop, place)
            if start <= self.onset_event < stop:
                onset_line = line_base + int(pred_pos[self.onset_event - start])
            post = np.flatnonzero(label_pred >= self.onset_event)
            if post.size:
                if first < 0:
                    first = line_base + int(label_pos[post[0]])
                    first_place = int(place[post[0]])
                last = line_base + int(label_pos[post[-1]])
                last_place = int(place[post[-1]])
            line_base += (stop - start) + place.size
        return _DryRun(line_base, onset_line, first, first_place, last, last_place)


@dataclass(frozen=True)
class _DryRun:
    """Line layout facts of an ``accuracy-drop`` file (placements are prediction indices)."""

    lines: int
    onset_line: int
    first_line: int
    first_place: int
    last_line: int
    last_place: int


def _shifted_country_probs() -> NDArray[np.float64]:
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


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def generate(
    scenario: str,
    events: int,
    seed: int,
    rate: float = 100.0,
    *,
    onset: float = 0.5,
    model: str = "fraud",
    model_version: str = "v1",
    start: datetime | None = None,
) -> Simulation:
    """Create a lazily generated :class:`Simulation` of ``events`` prediction events.

    ``rate`` is events per second (event ``i`` happens ``i / rate`` seconds after ``start``,
    an aware datetime, 2026-01-01T00:00:00Z by default); the incident starts at prediction
    event ``floor(onset * events)``.  Raises :class:`ValueError` naming the offending parameter.
    """
    first = START_MS
    if start is not None:
        if not isinstance(start, datetime) or start.utcoffset() is None:
            raise ValueError(f"start must be an aware datetime, got {start!r}")
        first = np.datetime64(round(start.timestamp() * 1000), "ms")
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}; got {scenario!r}")
    events = _check_positive_int("events", events)
    if events <= 0:
        raise ValueError(f"events must be > 0, got {events}")
    seed = _check_positive_int("seed", seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
        raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate!r}")
    if (
        isinstance(onset, bool)
        or not isinstance(onset, int | float)
        or not math.isfinite(onset)
        or not 0.0 < onset < 1.0
    ):
        raise ValueError(f"onset must be strictly between 0 and 1, got {onset!r}")
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    if not isinstance(model_version, str) or not model_version:
        raise ValueError(f"model_version must be a non-empty string, got {model_version!r}")
    return Simulation(
        scenario=scenario,
        events=events,
        seed=seed,
        rate=float(rate),
        onset=float(onset),
        model=model,
        model_version=model_version,
        start=first,
    )
