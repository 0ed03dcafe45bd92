"""``Parser``, a compiled schema's feature parser, in pure Python (``monitor/_featcols.c``).

A features object is taken when it holds exactly what the schema allows: every feature once, a
number or null for a numeric feature, a category of the feature's kind (any string, a string of
a closed set, or a bool) or null for a categorical one, nothing else; any other object is
refused by its index. Numbers are read as ``float()`` reads their JSON text (correctly rounded,
as C's Clinger fast path and dtoa are), a JSON integer ``-0`` is ``0.0``; a number beyond float
range, a ``NaN``/``Infinity`` token, bytes that are not UTF-8 and a lone surrogate escape are
refused, as there.

The objects are parsed by the stdlib's JSON scanner (C) with their pairs kept in order, which
decides what the C parser decides when the schema names each feature once. A schema that names
one twice (the C parser then matches a key by position first) is parsed by a replica of the C
parser's loop. A refused object's row, as in C, holds nothing usable.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
import struct
from array import array
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

__all__ = ["Parser"]

#: The NaN a null numeric feature is (C's ``NAN``: the quiet NaN, sign bit clear).
NULL: float = struct.unpack("<d", (0x7FF8_0000_0000_0000).to_bytes(8, "little"))[0]
_NUMERIC, _OPEN, _BOOL, _CLOSED = 0, 1, 2, 3
_NONE = type(None)
_NUMBER_TYPES = frozenset({float, int, _NONE})
_INF = math.inf
#: What the replica's readers return for text that is not the value they read.
_BAD: Any = object()
#: Distinct categories remembered per feature, so that a repeated one is the same str object.
_CACHE = 4096
_WS = re.compile(r"[ \n\r\t]*+")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*+)(\.[0-9]++)?+([eE][+-]?[0-9]++)?+")
# A JSON string as the C parser delimits it: a backslash takes the next character unchecked
# (the escapes are checked when resolved); a control character ends it unterminated.
_STRING = re.compile(r'"((?:[^"\\\x00-\x1f]++|\\[\s\S])*+)"')


def _refuse(token: str) -> Any:
    raise ValueError(f"{token} is not a number JSON allows")


# The stdlib's C scanner: one JSON value at a position, and where it ends (StopIteration when
# there is none); an object comes as the tuple of its (key, value) pairs, in order.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder(object_pairs_hook=tuple, parse_constant=_refuse)  # type: ignore[arg-type]
)


def _utf8(text: str) -> bytes | None:
    """The UTF-8 of ``text``, or ``None`` when it holds a lone surrogate."""
    try:
        return str.encode(text, "utf-8")
    except UnicodeEncodeError:
        return None


def _closed(kind: tuple[Any, ...]) -> dict[str, str]:
    """The members a JSON string can be (str with a UTF-8 form), each found by its text; the
    first of equal members is the one returned."""
    members: dict[str, str] = {}
    for member in kind:
        if isinstance(member, str) and _utf8(member) is not None:
            members.setdefault(str.__str__(member), member)
    return members


class Parser:
    """Parser(numeric, categorical, kinds): the feature parser of one compiled schema (kinds:
    None for any string, bool, or a tuple of the strings allowed)."""

    _ready = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("type 'Parser' is not an acceptable base type")  # as the C type

    def __init__(
        self, numeric: tuple[str, ...], categorical: tuple[str, ...], kinds: tuple[Any, ...]
    ) -> None:
        if self._ready:
            raise RuntimeError("a Parser is set up once")
        for name, arg in (("numeric", numeric), ("categorical", categorical), ("kinds", kinds)):
            if not isinstance(arg, tuple):
                raise TypeError(f"argument {name} must be tuple, not {type(arg).__name__}")
        names = (*numeric, *categorical)
        if not all(isinstance(name, str) for name in names):
            raise TypeError("feature names must be str")
        f, g = len(numeric), len(categorical)
        if len(kinds) != g:
            raise ValueError("one kind per categorical feature and 64 cache slots for each")
        specs: list[tuple[int, int, dict[str, str] | None]] = [
            (_NUMERIC, j, None) for j in range(f)
        ]
        for j, kind in enumerate(kinds):
            if kind is None:
                specs.append((_OPEN, j, None))
            elif kind is bool:
                specs.append((_BOOL, j, None))
            elif isinstance(kind, tuple):
                specs.append((_CLOSED, j, _closed(kind)))
            else:
                raise TypeError("a kind is None, bool or a tuple of str")
        forms = [_utf8(name) for name in names]
        self._f, self._g, self._nkeys = f, g, f + g
        self._names = tuple(str.__str__(name) for name in names)
        self._specs = specs
        #: A name without UTF-8 is no JSON key: every object lacks that feature.
        self._never = any(form is None for form in forms)
        # Names the C parser compares as raw bytes (nothing to escape in their JSON form).
        self._plain = [
            form is not None and not any(b < 0x20 or b in b'"\\' for b in form) for form in forms
        ]
        self._unique = len(set(self._names)) == len(self._names)
        self._where = dict(zip(self._names, specs, strict=True))
        self._keyset = frozenset(self._names)
        numeric_names = self._names[:f]
        self._numbers: Callable[[dict[str, Any]], Sequence[Any]] = (
            itemgetter(*numeric_names)
            if f > 1
            else lambda values: [values[name] for name in numeric_names]
        )
        self._categorical = list(zip(self._names[f:], specs[f:], strict=True))
        self._cache: list[dict[str, str]] = [{} for _ in range(g)]
        self._ready = True

    def parse(self, raws: list[Any]) -> tuple[bytearray, tuple[list[Any], ...], list[int]]:
        """parse(raws): the features of every raw JSON object as (row-major float64 bytes, one
        list per categorical feature, the indexes of the objects this schema does not take;
        their rows hold nothing usable)."""
        if not self._ready:
            raise RuntimeError("Parser.__init__ was not called")
        if not isinstance(raws, list):
            raise TypeError("raws must be a list")
        n, f = len(raws), self._f
        flat = array("d", bytes(8 * n * f))
        cols: tuple[list[Any], ...] = tuple([None] * n for _ in range(self._g))
        failed: list[int] = []
        one = self._one if self._unique else self._replica
        for r, raw in enumerate(raws):
            try:
                # A buffer (as C's PyBUF_SIMPLE takes it) of UTF-8: the C parser refuses any
                # object with bytes that are not, since they could only be in its strings.
                text = str(raw, "utf-8")
            except (TypeError, ValueError, BufferError):
                failed.append(r)
                continue
            if self._never or not one(text, r, flat, cols):
                failed.append(r)
        return bytearray(flat), cols, failed

    def _category(self, j: int, value: str) -> str:
        cache = self._cache[j]
        known = cache.get(value)
        if known is not None:
            return known
        if len(cache) >= _CACHE:
            cache.clear()
        cache[value] = value
        return value

    def _value(self, spec: tuple[int, int, dict[str, str] | None], value: Any) -> Any:
        """The stored value of a decoded JSON value for this feature; ``self`` when refused."""
        kind, j, members = spec
        if value is None:
            return NULL if kind == _NUMERIC else None
        t = type(value)
        if kind == _NUMERIC:
            if t is float:
                return value if math.isfinite(value) else self
            if t is int:  # -0 is the integer 0; float() of a JSON integer rounds correctly
                try:
                    return float(value)
                except OverflowError:
                    return self
            return self
        if kind == _BOOL:
            return value if t is bool else self
        if t is not str:
            return self
        if kind == _CLOSED:
            assert members is not None
            return members.get(value, self)
        if not value.isascii() and _utf8(value) is None:
            return self  # a lone surrogate escape
        return self._category(j, value)

    def _one(self, text: str, r: int, flat: array[float], cols: tuple[list[Any], ...]) -> bool:
        """Parse one object into row ``r`` (a schema that names each feature once)."""
        start = 0 if text[:1] == "{" else _skip(text, 0)
        try:
            pairs, end = _SCAN(text, start)
        except (ValueError, RecursionError, StopIteration):
            return False
        if type(pairs) is not tuple or len(pairs) != self._nkeys:
            return False
        if end != len(text) and _skip(text, end) != len(text):
            return False
        values = dict(pairs)
        if values.keys() != self._keyset:  # a key outside the schema, or one twice
            return False
        f = self._f
        if f:
            numbers = self._numbers(values)
            kinds = set(map(type, numbers))
            if not kinds <= _NUMBER_TYPES:  # a bool, a string, an object ...
                return False
            if _NONE in kinds:
                numbers = [NULL if v is None else v for v in numbers]
            try:
                row = array("d", numbers)  # an int rounds as float() rounds it; -0 is 0
            except OverflowError:
                return False
            if _INF in row or -_INF in row:  # 1e400: beyond float range
                return False
            flat[r * f : (r + 1) * f] = row
        for name, spec in self._categorical:
            got = self._value(spec, values[name])
            if got is self:
                return False
            cols[spec[1]][r] = got
        return True

    def _replica(self, text: str, r: int, flat: array[float], cols: tuple[list[Any], ...]) -> bool:
        """Parse one object into row ``r`` as the C loop does, key by key: the next feature in
        schema order is tried first on the key's raw text, then the first of that name."""
        names, plain, nkeys = self._names, self._plain, self._nkeys
        seen = [False] * nkeys
        end = len(text)
        p = _skip(text, 0)
        if p >= end or text[p] != "{":
            return False
        p = _skip(text, p + 1)
        count = guess = 0
        if p < end and text[p] == "}":
            p += 1
        else:
            while True:
                found = -1
                if guess < nkeys and plain[guess] and text.startswith(f'"{names[guess]}"', p):
                    found = guess
                    p += len(names[guess]) + 2
                if found < 0:
                    key, p = _string(text, p)
                    if key is _BAD:
                        return False
                    found = names.index(key) if key in names else -1
                if found < 0 or seen[found]:
                    return False
                seen[found] = True
                guess = found + 1
                count += 1
                p = _skip(text, p)
                if p >= end or text[p] != ":":
                    return False
                p = _skip(text, p + 1)
                if p >= end:
                    return False
                spec = self._specs[found]
                value: Any
                if text.startswith("null", p):
                    value, p = None, p + 4
                elif spec[0] == _NUMERIC:
                    value, p = _number(text, p)
                elif spec[0] == _BOOL:
                    value, p = _literal(text, p)
                else:
                    value, p = _string(text, p)
                if value is _BAD:
                    return False
                got = self._value(spec, value)
                if got is self:
                    return False
                if spec[0] == _NUMERIC:
                    flat[r * self._f + spec[1]] = got
                else:
                    cols[spec[1]][r] = got
                p = _skip(text, p)
                if p >= end:
                    return False
                if text[p] == ",":
                    p = _skip(text, p + 1)
                    continue
                if text[p] == "}":
                    p += 1
                    break
                return False
        return count == nkeys and _skip(text, p) == end


def _skip(text: str, p: int) -> int:
    """The position after the JSON whitespace at ``p``."""
    return _WS.match(text, p).end()  # type: ignore[union-attr]  # matches the empty string


def _string(text: str, p: int) -> tuple[Any, int]:
    """The JSON string at ``p`` (escapes resolved) and the position after it; ``_BAD`` when
    there is none, an escape is invalid or it holds a lone surrogate."""
    m = _STRING.match(text, p)
    if m is None:
        return _BAD, p
    body: str = m.group(1)
    if "\\" in body:
        try:
            body = json.loads(m.group(0))
        except ValueError:
            return _BAD, p
        if _utf8(body) is None:
            return _BAD, p
    return body, m.end()


def _number(text: str, p: int) -> tuple[Any, int]:
    """The JSON number at ``p`` as a float and the position after it; ``_BAD`` when there is
    none or it is beyond float range."""
    m = _NUMBER.match(text, p)
    if m is None:
        return _BAD, p
    value = float(m.group(0))
    if m.lastindex is None and value == 0:
        value = 0.0  # the JSON integer -0 is 0, as json.loads reads it
    return (value if math.isfinite(value) else _BAD), m.end()


def _literal(text: str, p: int) -> tuple[Any, int]:
    """The JSON ``true`` or ``false`` at ``p`` and the position after it, else ``_BAD``."""
    if text.startswith("true", p):
        return True, p + 4
    if text.startswith("false", p):
        return False, p + 5
    return _BAD, p
