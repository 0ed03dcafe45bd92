"""Reference profiles: what "normal" looks like for one model version.

A profile is built from a reference sample (a file, or the first events of the stream) and holds
everything the detectors compare windows with: per numeric feature the quantile bin edges and the
reference histogram on them, range, mean, spread and quality counts; per categorical feature the
category frequencies; the prediction score and label distributions; the latency quantiles; and
the error rate when labels were joined. It is stored as JSON; its ``id`` is a hash of that JSON,
so the same reference always has the same id in alerts and traces.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from detectors.columns import (
    MISSING_CODE,
    FeatureDict,
    FeatureValue,
    categorical_block,
    infer_kinds,
    numeric_block,
)
from detectors.distances import bin_counts

Category = str | bool

PROFILE_FORMAT = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QualityCounts(_Frozen):
    """How often the reference sample had each data-quality problem, out of ``n`` events."""

    n: int
    null: int = 0
    absent: int = 0
    wrong_type: int = 0
    nan_inf: int = 0


class NumericProfile(_Frozen):
    """One numeric feature: ``edges`` are the distinct inner quantile edges (at most
    ``bins - 1``; fewer when ties merge quantiles), ``counts`` the reference histogram on
    ``bins`` bins (bins past the last edge are empty)."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    min: float
    max: float
    mean: float
    std: float
    quality: QualityCounts

    @property
    def finite(self) -> int:
        """Reference values that were finite numbers."""
        return int(sum(self.counts))


class CategoricalProfile(_Frozen):
    """One categorical feature: the ``categories`` kept as bins with their ``counts``, followed
    by one count for all rarer categories (``rare`` lists them, capped), and the number of
    categories seen exactly once (``singletons``), whose share estimates how often a value the
    reference never saw turns up (Good-Turing)."""

    categories: tuple[Category, ...]
    counts: tuple[int, ...]
    rare: tuple[Category, ...] = ()
    singletons: int = 0
    quality: QualityCounts

    @property
    def bins(self) -> int:
        """Histogram bins: kept categories, "other" and "unseen"."""
        return len(self.categories) + 2

    def index(self) -> dict[FeatureValue, int]:
        """Value -> code map used to encode windows (see :mod:`detectors.columns`)."""
        k = len(self.categories)
        idx: dict[FeatureValue, int] = {c: k for c in self.rare}
        idx.update({c: i for i, c in enumerate(self.categories)})
        idx[None] = MISSING_CODE
        return idx

    def histogram(self) -> np.ndarray:
        """Reference counts on all bins (the "unseen" bin is zero by construction)."""
        return np.array([*self.counts, 0], dtype=np.int64)


class LatencyProfile(_Frozen):
    """Latency quantiles of the reference (milliseconds) and how many reference events lay
    above the p95 and p99, which makes the window test an exact count test."""

    n: int
    p50: float
    p95: float
    p99: float
    above_p95: int
    above_p99: int


class ErrorProfile(_Frozen):
    """Reference error of joined labels: error rate (classification) or absolute error
    (regression), ``total`` is the sum of per-event errors and ``total_sq`` of their squares."""

    kind: Literal["classification", "regression"]
    n: int
    total: float
    total_sq: float

    @property
    def mean(self) -> float:
        """Mean error per labelled event."""
        return self.total / self.n if self.n else 0.0

    @property
    def std(self) -> float:
        """Standard deviation of the per-event error."""
        if self.n < 2:
            return 0.0
        var = (self.total_sq - self.total * self.total / self.n) / (self.n - 1)
        return float(np.sqrt(max(var, 0.0)))


class ReferenceProfile(_Frozen):
    """Everything driftwatch compares a model version's windows with.

    ``events`` is the size of the reference sample; ``source`` says where it came from
    (a file name, or ``warmup`` for a profile learned from the stream).
    """

    format: int = PROFILE_FORMAT
    model: str
    model_version: str
    source: str
    events: int
    numeric: dict[str, NumericProfile] = Field(default_factory=dict)
    categorical: dict[str, CategoricalProfile] = Field(default_factory=dict)
    score: NumericProfile | None = None
    label: CategoricalProfile | None = None
    latency: LatencyProfile | None = None
    error: ErrorProfile | None = None

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, as pydantic makes it, without this profile's cached :attr:`json_dict` and
        :attr:`id` (pydantic copies them along with the fields)."""
        copy = super().model_copy(update=update, deep=deep)
        for name in ("json_dict", "id"):
            copy.__dict__.pop(name, None)
        return copy

    @cached_property
    def json_dict(self) -> dict[str, Any]:
        """``model_dump(mode="json")``, computed once (the profile is frozen): a worker puts it
        in every checkpoint of a stream with a learned profile. Read it, never modify it."""
        return self.model_dump(mode="json")

    def canonical_json(self) -> bytes:
        """The JSON whose hash is the profile id (sorted keys, no whitespace)."""
        return json.dumps(self.json_dict, sort_keys=True, separators=(",", ":")).encode()

    @cached_property
    def id(self) -> str:
        """Content hash, ``sha256:`` plus the first 16 hex digits (computed once)."""
        return "sha256:" + hashlib.sha256(self.canonical_json()).hexdigest()[:16]

    def to_json(self) -> bytes:
        """Readable JSON with the id included (the id is ignored when loading)."""
        body = self.model_dump(mode="json")
        body["id"] = self.id
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ReferenceProfile:
        """Load and validate a profile written by :meth:`to_json`."""
        body = json.loads(data)
        if isinstance(body, dict):
            body.pop("id", None)
        return cls.model_validate(body)

    def with_error(self, error: ErrorProfile) -> ReferenceProfile:
        """A copy that also knows the reference error rate."""
        return self.model_copy(update={"error": error})


def _numeric_profile(values: np.ndarray, bins: int, quality: QualityCounts) -> NumericProfile:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return NumericProfile(
            edges=(),
            counts=(0,) * bins,
            min=0.0,
            max=0.0,
            mean=0.0,
            std=0.0,
            quality=quality,
        )
    inner = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    # Bins are [e_{b-1}, e_b); an edge equal to the minimum would leave the first bin empty.
    inner = inner[inner > finite.min()]
    edges = np.full(bins - 1, np.inf)
    edges[: inner.size] = inner
    counts = bin_counts(finite[None, :], edges[None, :])[0]
    return NumericProfile(
        edges=tuple(inner.tolist()),
        counts=tuple(int(c) for c in counts),
        min=float(finite.min()),
        max=float(finite.max()),
        mean=float(finite.mean()),
        std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        quality=quality,
    )


def numeric_profile(values: np.ndarray, bins: int = 10) -> NumericProfile:
    """Profile of a plain float array (NaN marks a missing value).

    >>> p = numeric_profile(np.arange(100.0), bins=4)
    >>> p.edges, p.counts
    ((24.75, 49.5, 74.25), (25, 25, 25, 25))
    >>> numeric_profile(np.array([0.0, 0.0, 0.0, 1.0]), bins=4).edges  # ties merge edges
    (0.25,)
    """
    missing = int(np.count_nonzero(np.isnan(values)))
    return _numeric_profile(values, bins, QualityCounts(n=int(values.size), null=missing))


def categorical_profile(
    values: Sequence[FeatureValue],
    quality: QualityCounts,
    max_categories: int = 50,
    max_rare: int = 1000,
) -> CategoricalProfile:
    """Profile of raw category values (non-category values are ignored; quality counts them).

    >>> p = categorical_profile(["a", "a", "b", "c", None], QualityCounts(n=5, null=1), 2)
    >>> p.categories, p.counts, p.rare, p.singletons
    (('a', 'b'), (2, 1, 1), ('c',), 2)
    """
    tally = Counter(v for v in values if type(v) is str or type(v) is bool)
    ranked = sorted(tally.items(), key=lambda kv: (-kv[1], str(kv[0])))
    kept = ranked[:max_categories]
    rest = ranked[max_categories:]
    return CategoricalProfile(
        categories=tuple(k for k, _ in kept),
        counts=(*(c for _, c in kept), sum(c for _, c in rest)),
        rare=tuple(k for k, _ in rest[:max_rare]),
        singletons=sum(1 for _, c in ranked if c == 1),
        quality=quality,
    )


def latency_profile(latency_ms: np.ndarray) -> LatencyProfile | None:
    """Latency quantiles and exceedance counts; ``None`` when no latency was logged."""
    lat = latency_ms[np.isfinite(latency_ms)]
    if lat.size == 0:
        return None
    p50, p95, p99 = (float(x) for x in np.quantile(lat, [0.5, 0.95, 0.99]))
    return LatencyProfile(
        n=int(lat.size),
        p50=p50,
        p95=p95,
        p99=p99,
        above_p95=int(np.count_nonzero(lat > p95)),
        above_p99=int(np.count_nonzero(lat > p99)),
    )


def _majority_kind(features: Sequence[FeatureDict], name: str) -> type:
    bools = strs = 0
    for d in features:
        t = type(d.get(name))
        if t is bool:
            bools += 1
        elif t is str:
            strs += 1
    return bool if bools > strs else str


def build_profile(
    model: str,
    model_version: str,
    source: str,
    features: Sequence[FeatureDict],
    scores: np.ndarray,
    labels: Sequence[FeatureValue],
    latency_ms: np.ndarray,
    *,
    bins: int = 10,
    max_categories: int = 50,
    numeric_names: Sequence[str] | None = None,
    categorical_names: Sequence[str] | None = None,
) -> ReferenceProfile:
    """Build a profile from a reference sample given column-wise.

    ``scores`` and ``latency_ms`` are float arrays with NaN where absent, ``labels`` the predicted
    labels (None where absent). Feature kinds are inferred unless both name lists are given.
    """
    if bins < 2:
        raise ValueError("bins must be >= 2")
    if numeric_names is None or categorical_names is None:
        inferred_num, inferred_cat = infer_kinds(features)
        numeric_names = inferred_num if numeric_names is None else numeric_names
        categorical_names = inferred_cat if categorical_names is None else categorical_names
    n = len(features)
    numeric: dict[str, NumericProfile] = {}
    if numeric_names:
        block = numeric_block(features, numeric_names)
        for j, name in enumerate(numeric_names):
            q = QualityCounts(
                n=n,
                null=int(block.null[j]),
                absent=int(block.absent[j]),
                wrong_type=int(block.wrong_type[j]),
                nan_inf=int(block.nan_inf[j]),
            )
            numeric[name] = _numeric_profile(block.values[j], bins, q)
    categorical: dict[str, CategoricalProfile] = {}
    if categorical_names:
        # Encode once against an index holding only the majority kind (str or bool), which
        # is what the window encoder counts values of the other kinds against.
        kinds = [_majority_kind(features, name) for name in categorical_names]
        cblock = categorical_block(
            features,
            categorical_names,
            [{None: MISSING_CODE, True: 0} if k is bool else {None: MISSING_CODE} for k in kinds],
            [0] * len(categorical_names),
        )
        for j, name in enumerate(categorical_names):
            q = QualityCounts(
                n=n,
                null=int(cblock.null[j]),
                absent=int(cblock.absent[j]),
                wrong_type=int(cblock.wrong_type[j]),
            )
            raw = [d.get(name) for d in features]
            categorical[name] = categorical_profile(raw, q, max_categories)
    score = None
    if scores.size and np.isfinite(scores).any():
        score = numeric_profile(scores, bins)
    label = None
    present = [v for v in labels if v is not None]
    if present:
        label = categorical_profile(
            present,
            QualityCounts(n=len(labels), null=len(labels) - len(present)),
            max_categories,
        )
    return ReferenceProfile(
        model=model,
        model_version=model_version,
        source=source,
        events=n,
        numeric=numeric,
        categorical=categorical,
        score=score,
        label=label,
        latency=latency_profile(latency_ms),
    )
