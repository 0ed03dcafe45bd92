"""Rows of parsed features and the helpers around them, in pure Python: :class:`FeatureRow`,
:func:`attach`, :func:`gather` and :func:`epochs`, as ``monitor/_featcols.c`` defines them.

Every argument check, refusal (``None``) and exception of the C functions is kept, and every
float is copied or computed to the bit: :func:`gather` copies the float64 rows as numpy
arrays (no conversion), :func:`epochs` is ``datetime.timestamp()`` itself, which divides the
exact count of microseconds by 10**6 once, as the C helper does.
"""

from __future__ import annotations

import operator
from array import array
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import numpy as np

__all__ = ["FeatureRow", "attach", "epochs", "gather"]

_SSIZE_MAX = (1 << 63) - 1
_EXACT = timedelta(microseconds=(1 << 53) - 1)  # the microseconds a float64 holds exactly
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LOW, _HIGH = _EPOCH - _EXACT, _EPOCH + _EXACT
_READONLY = frozenset({"block", "index"})


def ssize(value: object) -> int:
    """``value`` as a C ``Py_ssize_t`` argument: an integer (``__index__``) that fits."""
    got = operator.index(value)  # type: ignore[arg-type]  # TypeError for anything else
    if not -_SSIZE_MAX - 1 <= got <= _SSIZE_MAX:
        raise OverflowError("Python int too large to convert to C ssize_t")
    return got


class FeatureRow:
    """One event's features: row ``index`` of a parsed batch's ``block``."""

    __slots__ = ("block", "index")
    block: Any
    index: int

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        row = object.__new__(cls)  # arguments are for __init__, as C's generic tp_new takes them
        _SET_BLOCK(row, None)  # what the C fields read before __init__
        _SET_INDEX(row, 0)
        return row

    def __init__(self, block: Any, index: int) -> None:
        _SET_BLOCK(self, block)
        _SET_INDEX(self, ssize(index))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _READONLY:  # read-only members in C; a subclass may have other attributes
            raise AttributeError("readonly attribute")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in _READONLY:
            raise AttributeError("readonly attribute")
        object.__delattr__(self, name)


_BLOCK = vars(FeatureRow)["block"]
_INDEX = vars(FeatureRow)["index"]
# The slots' own descriptors: set past __setattr__, read past any property of a subclass, as
# the C code reads and writes the struct fields.
_SET_BLOCK, _SET_INDEX = _BLOCK.__set__, _INDEX.__set__
_GET_BLOCK, _GET_INDEX = _BLOCK.__get__, _INDEX.__get__
_NEW = object.__new__


def attach(
    events: list[Any], block: Any, row_type: type[FeatureRow], attr: str, check: Any = False, /
) -> bool:
    """``events[i].<attr> = row_type(block, i)`` for every event (``__init__`` is not called,
    as in C); with ``check``, only when every ``events[i].<attr>`` is the int ``i`` (else
    ``False`` and nothing changed)."""
    if not isinstance(events, list):
        raise TypeError(f"attach() argument 1 must be list, not {type(events).__name__}")
    if not isinstance(row_type, type):
        raise TypeError(f"attach() argument 3 must be type, not {type(row_type).__name__}")
    if not isinstance(attr, str):
        raise TypeError(f"attach() argument 4 must be str, not {type(attr).__name__}")
    check = bool(check)
    if not issubclass(row_type, FeatureRow):
        raise TypeError("row_type must derive from FeatureRow")
    if check:
        for i, event in enumerate(events):
            have = getattr(event, attr)
            if type(have) is not int or have != i:
                return False
    for i, event in enumerate(events):
        row = _NEW(row_type)
        _SET_BLOCK(row, block)
        _SET_INDEX(row, i)
        setattr(event, attr, row)
    return True


def _checked(block: Any, layout: object, g: int) -> tuple[bytearray, tuple[list[Any], ...]] | None:
    """The values and columns of a block as FeatureSchema makes it, else ``None``."""
    if not isinstance(block, tuple):
        return None
    if type(block) is not tuple:
        block = tuple.__getitem__(block, slice(None))  # its items, past any override
    if len(block) < 3 or block[2] is not layout:
        return None
    values, columns = block[0], block[1]
    if type(values) is not bytearray or type(columns) is not tuple or len(columns) != g:
        return None
    if any(type(col) is not list for col in columns):
        return None
    return values, columns


def gather(
    rows: list[Any], layout: object, f: int, g: int, /
) -> tuple[bytearray, tuple[list[Any], ...]] | None:
    """The rows' features as (feature-major float64 bytes of ``f`` numeric features, one list
    per categorical feature), or ``None`` when a row is not of this layout (or out of its
    block's bounds)."""
    if not isinstance(rows, list):
        raise TypeError(f"gather() argument 1 must be list, not {type(rows).__name__}")
    f, g = ssize(f), ssize(g)
    n = len(rows)
    if f < 0 or g < 0 or f > (_SSIZE_MAX // 8) // (n or 1):
        return None
    # Runs of consecutive rows of one block: (block values, columns, first row, indexes).
    runs: list[tuple[bytearray, tuple[list[Any], ...], int, list[int]]] = []
    last: Any = None
    for r, row in enumerate(rows):
        if not isinstance(row, FeatureRow):
            return None
        block, index = _GET_BLOCK(row), _GET_INDEX(row)
        if block is not last or not runs:
            parts = _checked(block, layout, g)
            if parts is None:
                return None
            runs.append((parts[0], parts[1], r, []))
            last = block
        values, columns, _, indexes = runs[-1]
        if index < 0 or (f > 0 and index >= len(values) // (8 * f)):
            return None
        for col in columns:
            if index >= len(col):
                return None
        indexes.append(index)
    out = np.empty((f, n), np.float64)
    cols: tuple[list[Any], ...] = tuple([None] * n for _ in range(g))
    for values, columns, first, indexes in runs:
        stop = first + len(indexes)
        if f:
            whole = len(values) // (8 * f)
            matrix = np.frombuffer(values, np.float64, whole * f).reshape(whole, f)
            out[:, first:stop] = matrix[indexes].T  # copies the float64s, bits and all
        for col, source in zip(cols, columns, strict=True):
            col[first:stop] = map(source.__getitem__, indexes)
    return bytearray(out.tobytes()), cols


def epochs(timestamps: list[Any], /) -> bytearray | None:
    """``datetime.timestamp()`` of every UTC datetime as float64 bytes, or ``None`` when one is
    not a ``datetime`` (not a subclass) whose tzinfo is ``datetime.UTC``, or is too far from
    1970 for exact microseconds."""
    if not isinstance(timestamps, list):
        raise TypeError("timestamps must be a list")
    out = array("d")
    for t in timestamps:
        if type(t) is not datetime or t.tzinfo is not UTC or not _LOW <= t <= _HIGH:
            return None
        out.append(t.timestamp())
    return bytearray(out)
