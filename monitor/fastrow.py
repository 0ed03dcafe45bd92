"""The rows of compiled features: :class:`FastRow` and the layout of the blocks they point into.

A :class:`~monitor.fastdecode.FeatureSchema` parses the features of a batch into one block
(``monitor/_featcols.c``); each event's features become a :class:`FastRow`, read like the
schema's dict. Split from :mod:`monitor.fastdecode`, which re-exports these names.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import repeat
from math import isnan
from operator import attrgetter
from typing import Any, TypeAlias

import numpy as np

from monitor.accelerator import FeatureRow, gather


@dataclass(frozen=True, slots=True, eq=False)
class RowLayout:
    """Where each feature of a compiled schema is in a parsed block: ``where[name]`` is
    ``(False, j)`` for numeric column ``j`` and ``(True, j)`` for categorical column ``j``."""

    names: tuple[str, ...]
    where: dict[str, tuple[bool, int]]
    numeric: int
    categorical: int


#: A parsed batch's features: (float64 rows of the numeric features as bytes, one list per
#: categorical feature, the layout); every event of the batch refers to it by its row.
Block: TypeAlias = tuple[bytearray, tuple[list[Any], ...], RowLayout]

_UNPACK_DOUBLE = struct.Struct("d").unpack_from


class _RowMapping:
    """The read-only mapping methods of :class:`FastRow`, installed on the C type."""

    block: Any
    index: int

    def _value(self, where: tuple[bool, int]) -> Any:
        block: Block = self.block
        categorical, j = where
        if categorical:
            return block[1][j][self.index]
        (value,) = _UNPACK_DOUBLE(block[0], (self.index * block[2].numeric + j) * 8)
        return None if isnan(value) else value  # NaN is a null (no NaN token gets here)

    def __getitem__(self, key: str) -> Any:
        where = self.block[2].where.get(key) if type(key) is str else None
        if where is None:
            raise KeyError(key)
        return self._value(where)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of feature ``key``, or ``default`` when the schema has no such feature."""
        where = self.block[2].where.get(key) if type(key) is str else None
        return default if where is None else self._value(where)

    def __contains__(self, key: object) -> bool:
        return type(key) is str and key in self.block[2].where

    def keys(self) -> list[str]:
        """The feature names, in schema order (every one is present)."""
        return list(self.block[2].names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.block[2].names)

    def __len__(self) -> int:
        return len(self.block[2].names)

    def values(self) -> list[Any]:
        """The values, in schema order."""
        return [self._value(w) for w in self.block[2].where.values()]

    def items(self) -> list[tuple[str, Any]]:
        """``(feature, value)`` in schema order."""
        return [(k, self._value(w)) for k, w in self.block[2].where.items()]

    def as_dict(self) -> dict[str, Any]:
        """The plain dict of these features."""
        return dict(self.items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.as_dict() == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FastRow({self.as_dict()!r})"

    __hash__ = None  # type: ignore[assignment]  # equal to dicts, so unhashable as they are


#: The features of an event decoded with a :class:`FeatureSchema`: row ``index`` of the parsed
#: batch's ``block``, read like the schema's dict (``row["amount"]``, ``get``, ``in``,
#: iteration; ``collections.abc.Mapping``); a numeric feature that was null reads as ``None``;
#: ``dict(row)`` gives the plain dict. The type is the C extension's ``FeatureRow`` (two fields,
#: not tracked by the garbage collector, as a subclass defined here would be), with the methods
#: of ``_RowMapping`` installed on it.
FastRow = FeatureRow
for _name in (
    *("_value", "get", "keys", "values", "items", "as_dict"),
    *("__getitem__", "__contains__", "__iter__", "__len__", "__eq__", "__hash__", "__repr__"),
):
    setattr(FastRow, _name, vars(_RowMapping)[_name])
Mapping.register(FastRow)


_A_BLOCK = attrgetter("block")


def row_dicts(rows: list[FastRow]) -> list[dict[str, Any]]:
    """The plain dicts of these rows, taken a layout at a time by C-level calls.

    >>> from monitor.fastdecode import compile_schema
    >>> s = compile_schema(["x"], [("c", str)])
    >>> ev = s.decode_many(b'{"events": [{"event_id": "e", "model": "m", "model_version": "v",'
    ...     b' "timestamp": 0, "features": {"x": null, "c": "DE"}, "prediction": 1}]}')
    >>> row_dicts([e.features for e in ev])
    [{'x': None, 'c': 'DE'}]
    """
    out: list[dict[str, Any]] = [{}] * len(rows)
    layouts: dict[int, list[int]] = {}
    blocks = list(map(_A_BLOCK, rows))
    for k, block in enumerate(blocks):
        layouts.setdefault(id(block[2]), []).append(k)
    for at in layouts.values():
        layout: RowLayout = blocks[at[0]][2]
        got = gather([rows[k] for k in at], layout, layout.numeric, layout.categorical)
        if got is None:  # pragma: no cover - rows of one layout always gather
            raise TypeError("rows of one layout did not gather")
        values, columns = got
        numeric = np.frombuffer(values, np.float64).reshape(layout.numeric, len(at))
        cols: list[list[Any]] = [[None if isnan(v) else v for v in col] for col in numeric.tolist()]
        cols.extend(columns)
        if cols:
            dicts = list(map(dict, map(zip, repeat(layout.names), zip(*cols, strict=True))))
        else:
            dicts = [{} for _ in at]
        for k, d in zip(at, dicts, strict=True):
            out[k] = d
    return out
