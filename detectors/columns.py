"""Turning a window of feature dicts into columns, once per window.

The per-event work here is a handful of C-level list operations per feature (``dict.get`` in a
comprehension, ``map(type, ...)``, ``np.array``); everything after this module is numpy over
whole columns. Quality counts are taken on the way because the raw Python values are needed to
tell a null from an absent key from a value of the wrong type.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain, repeat
from operator import itemgetter

import numpy as np

FeatureValue = float | int | str | bool | None
FeatureDict = Mapping[str, FeatureValue]

_NUMBER_TYPES = frozenset({float, int})
_NONE = type(None)

#: Codes for categorical values that cannot be compared with the reference histogram.
MISSING_CODE = -1


@dataclass(slots=True)
class NumericBlock:
    """Numeric features of one window: ``values[j]`` is feature ``j`` as float64.

    Nulls, absent keys and wrong-typed values are NaN in ``values`` and counted separately;
    ``nan_inf`` counts values that arrived as NaN or +-inf themselves.
    """

    names: tuple[str, ...]
    values: np.ndarray  # shape (features, n)
    null: np.ndarray  # int64 per feature
    absent: np.ndarray
    wrong_type: np.ndarray
    nan_inf: np.ndarray


@dataclass(slots=True)
class CategoricalBlock:
    """Categorical features of one window as integer codes into each feature's category index.

    Code ``k`` in ``0..K-1`` is a reference category, ``K`` is "other" (seen in the reference but
    outside its top categories), ``K+1`` is "unseen" and ``MISSING_CODE`` marks a null, absent or
    wrong-typed value.
    """

    names: tuple[str, ...]
    codes: list[np.ndarray]
    null: np.ndarray
    absent: np.ndarray
    wrong_type: np.ndarray


@dataclass(slots=True)
class Columns:
    """One window in columnar form, plus events carrying features outside the schema."""

    n: int
    numeric: NumericBlock
    categorical: CategoricalBlock
    unexpected: dict[str, int] = field(default_factory=dict)


def _missing(
    dicts: Sequence[FeatureDict], name: str, vals: list[FeatureValue], types: set[type]
) -> tuple[int, int]:
    """(None values, of which absent keys) of one column; drops NoneType from ``types``."""
    if _NONE not in types:
        return 0, 0
    types.discard(_NONE)
    return vals.count(None), sum(1 for d in dicts if name not in d)


def extract(dicts: Sequence[FeatureDict], names: Sequence[str]) -> list[list[FeatureValue]]:
    """The values of ``names`` as one list per name (``None`` where absent).

    When every event has every feature, one C-level ``itemgetter`` call per event and one
    transposition replace a ``dict.get`` per feature and event.

    >>> extract([{"a": 1, "b": 2}, {"a": 3}], ["a", "b"])
    [[1, 3], [2, None]]
    """
    if not names:
        return []
    if len(names) > 1:
        try:
            rows = list(map(itemgetter(*names), dicts))
        except KeyError:
            pass
        else:
            return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in names]
    return [[d.get(name) for d in dicts] for name in names]


def numeric_block(
    dicts: Sequence[FeatureDict],
    names: Sequence[str],
    columns: Sequence[list[FeatureValue]] | None = None,
) -> NumericBlock:
    """Extract ``names`` as float columns and count their quality problems.

    >>> b = numeric_block([{"x": 1.0}, {"x": None}, {}, {"x": "a"}, {"x": float("inf")}], ["x"])
    >>> b.values[0].tolist()[:2], int(b.null[0]), int(b.absent[0]), int(b.wrong_type[0])
    ([1.0, nan], 1, 1, 1)
    >>> int(b.nan_inf[0])
    1
    """
    n = len(dicts)
    f = len(names)
    values = np.empty((f, n), dtype=np.float64)
    null = np.zeros(f, dtype=np.int64)
    absent = np.zeros(f, dtype=np.int64)
    wrong = np.zeros(f, dtype=np.int64)
    nan_inf = np.zeros(f, dtype=np.int64)
    cols = columns if columns is not None else extract(dicts, names)
    for j, name in enumerate(names):
        vals = cols[j]
        types = set(map(type, vals))
        nones, absent[j] = _missing(dicts, name, vals, types)
        null[j] = nones - absent[j]
        if not types <= _NUMBER_TYPES:
            before = nones
            vals = [v if type(v) is float or type(v) is int else None for v in vals]
            nones = vals.count(None)
            wrong[j] = nones - before
        col = np.array(vals, dtype=np.float64)
        values[j] = col
        bad = int(np.count_nonzero(~np.isfinite(col)))
        nan_inf[j] = bad - nones
    return NumericBlock(tuple(names), values, null, absent, wrong, nan_inf)


def dense_numeric_block(dicts: Sequence[FeatureDict], names: Sequence[str]) -> NumericBlock | None:
    """:func:`numeric_block` for the common window: every event carries every one of ``names``
    (at least two) as a float. One ``itemgetter`` per event and one ``np.array`` over all rows
    replace the per-feature lists; ``None`` when the window is not like that.

    >>> b = dense_numeric_block([{"x": 1.0, "y": 2.0}, {"x": float("inf"), "y": 3.0}], ["x", "y"])
    >>> b.values.tolist(), b.nan_inf.tolist(), b.null.tolist()
    ([[1.0, inf], [2.0, 3.0]], [1, 0], [0, 0])
    >>> dense_numeric_block([{"x": 1.0, "y": None}], ["x", "y"]) is None
    True
    """
    if len(names) < 2 or not dicts:
        return None
    try:
        rows = list(map(itemgetter(*names), dicts))
    except KeyError:
        return None
    if set(map(type, chain.from_iterable(rows))) != {float}:
        return None
    values = np.ascontiguousarray(np.array(rows, dtype=np.float64).T)
    f = len(names)
    nan_inf = np.count_nonzero(~np.isfinite(values), axis=1).astype(np.int64)
    zeros = np.zeros(f, dtype=np.int64)
    return NumericBlock(tuple(names), values, zeros, zeros.copy(), zeros.copy(), nan_inf)


@lru_cache(maxsize=64)
def _packer(code: str, n: int) -> struct.Struct:
    return struct.Struct(f"{n}{code}")


def _column_bytes(values: Sequence[object], code: str, dtype: type) -> bytes:
    try:
        return _packer(code, len(values)).pack(*values)
    except (struct.error, OverflowError):
        return np.array(values, dtype=dtype).tobytes()


def float_array(values: Sequence[object]) -> np.ndarray:
    """``np.array(values, dtype=np.float64)`` at a quarter of numpy's per-value cost when every
    value is a number: ``struct`` packs Python floats into C doubles with about 70 instructions
    a value where numpy's conversion takes about 280. Anything else (``None``, which numpy
    makes NaN, strings, values numpy rejects) goes to numpy, with numpy's result or error.

    >>> float_array([1.5, 2]).tolist(), float_array([1.5, None]).tolist()
    ([1.5, 2.0], [1.5, nan])
    """
    return np.frombuffer(bytearray(_column_bytes(values, "d", np.float64)), dtype=np.float64)


def int_array(values: Sequence[object]) -> np.ndarray:
    """``np.array(values, dtype=np.int64)`` the same way as :func:`float_array`.

    >>> int_array([3, 0, -1]).tolist()
    [3, 0, -1]
    """
    return np.frombuffer(bytearray(_column_bytes(values, "q", np.int64)), dtype=np.int64)


def checked_columns(
    values: np.ndarray,
    categories: Sequence[Sequence[FeatureValue]],
    numeric: Sequence[str],
    categorical: Sequence[str],
    indexes: Sequence[Mapping[FeatureValue, int]],
    unseen_codes: Sequence[int],
) -> Columns:
    """The columns of a window whose decoder checked every value's kind (see
    ``monitor.fastdecode``): ``values`` holds the ``numeric`` features as a (features, n)
    float64 array with NaN for null (never a NaN or infinity that arrived as such), and
    ``categories`` one sequence per ``categorical`` feature of categories of the index's kind or
    ``None``. No absent key, wrong type or unexpected feature is left to count, so one index
    lookup per categorical value is all the per-value work.

    >>> idx = {"DE": 0, None: MISSING_CODE}
    >>> c = checked_columns(np.array([[1.0, np.nan]]), [["DE", None]], ["x"], ["c"], [idx], [1])
    >>> c.numeric.null.tolist(), c.categorical.codes[0].tolist(), c.categorical.null.tolist()
    ([1], [0, -1], [1])
    """
    f = len(numeric)
    g = len(categorical)
    n = values.shape[1]
    null = np.count_nonzero(np.isnan(values), axis=1).astype(np.int64)
    nan_inf = np.count_nonzero(np.isinf(values), axis=1).astype(np.int64)
    zeros = np.zeros(f, dtype=np.int64)
    nb = NumericBlock(tuple(numeric), values, null, zeros, zeros.copy(), nan_inf)
    codes: list[np.ndarray] = []
    cnull = np.zeros(g, dtype=np.int64)
    for j in range(g):
        col = categories[j]
        cnull[j] = col.count(None)
        codes.append(int_array(list(map(indexes[j].get, col, repeat(unseen_codes[j])))))
    czeros = np.zeros(g, dtype=np.int64)
    cb = CategoricalBlock(tuple(categorical), codes, cnull, czeros, czeros.copy())
    return Columns(n, nb, cb)


def categorical_block(
    dicts: Sequence[FeatureDict],
    names: Sequence[str],
    indexes: Sequence[Mapping[FeatureValue, int]],
    unseen_codes: Sequence[int],
    columns: Sequence[list[FeatureValue]] | None = None,
) -> CategoricalBlock:
    """Encode ``names`` with each feature's category index (value -> code).

    ``indexes[j]`` must map ``None`` to ``MISSING_CODE``; values not in it get
    ``unseen_codes[j]``.

    >>> idx = {"DE": 0, "FR": 1, None: MISSING_CODE}
    >>> rows = [{"c": "DE"}, {"c": "US"}, {"c": None}, {"c": 3.0}]
    >>> b = categorical_block(rows, ["c"], [idx], [3])
    >>> b.codes[0].tolist(), int(b.null[0]), int(b.wrong_type[0])
    ([0, 3, -1, -1], 1, 1)
    """
    n = len(dicts)
    f = len(names)
    codes: list[np.ndarray] = []
    null = np.zeros(f, dtype=np.int64)
    absent = np.zeros(f, dtype=np.int64)
    wrong = np.zeros(f, dtype=np.int64)
    cols = columns if columns is not None else extract(dicts, names)
    for j, name in enumerate(names):
        vals = cols[j]
        types = set(map(type, vals))
        nones, absent[j] = _missing(dicts, name, vals, types)
        null[j] = nones - absent[j]
        index = indexes[j]
        unseen = unseen_codes[j]
        if types <= {str} or types <= {bool}:
            col = list(map(index.get, vals, repeat(unseen)))
        else:
            # A column that mixes kinds: the majority kind in the index decides what is wrong.
            want = bool if any(type(k) is bool for k in index) else str
            col = [index.get(v, unseen) if type(v) is want else MISSING_CODE for v in vals]
            wrong[j] = sum(1 for v in vals if v is not None and type(v) is not want)
        codes.append(np.fromiter(col, dtype=np.int64, count=n))
    return CategoricalBlock(tuple(names), codes, null, absent, wrong)


def unexpected_features(
    dicts: Sequence[FeatureDict], schema: frozenset[str], any_absent: bool, limit: int
) -> dict[str, int]:
    """Count events carrying each feature name outside ``schema`` (at most ``limit`` names).

    When every event has exactly ``len(schema)`` keys and none of the schema's features is
    absent, there can be no extra key; that common case costs one ``map(len, ...)``.

    >>> unexpected_features([{"a": 1}, {"a": 1, "b": 2}], frozenset({"a"}), False, 10)
    {'b': 1}
    """
    if not any_absent and set(map(len, dicts)) <= {len(schema)}:
        return {}
    counts: dict[str, int] = {}
    for d in dicts:
        for key in d:
            if key not in schema:
                if key in counts:
                    counts[key] += 1
                elif len(counts) < limit:
                    counts[key] = 1
    return counts


def infer_kinds(dicts: Sequence[FeatureDict]) -> tuple[list[str], list[str]]:
    """Split feature names into numeric and categorical by the majority type of their values.

    Numbers (not bools) make a numeric feature; strings and bools a categorical one; a feature
    that is always null is left out. Names keep first-seen order.

    >>> infer_kinds([{"a": 1.5, "b": "x", "c": True, "d": None}, {"a": 2}])
    (['a'], ['b', 'c'])
    """
    order: dict[str, list[int]] = {}
    for d in dicts:
        for key, v in d.items():
            tally = order.setdefault(key, [0, 0])
            t = type(v)
            if t is float or t is int:
                tally[0] += 1
            elif t is str or t is bool:
                tally[1] += 1
    numeric = [k for k, (num, cat) in order.items() if num > 0 and num >= cat]
    categorical = [k for k, (num, cat) in order.items() if cat > num]
    return numeric, categorical
