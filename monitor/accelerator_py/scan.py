"""``scan``, the one pass over an event's or an envelope's JSON text, in pure Python.

The C helper (``featcols_scan`` in ``monitor/_featcols.c``) walks the text byte by byte; here
regular expressions take the runs it passes over (everything but quotes, brackets and, between
the events of an envelope, commas) and whole strings in one match each, so that the Python loop
turns once per bracket, per event, and per key of the top-level object. A string is matched
by the byte ranges of well-formed UTF-8, as the C ``utf8_sequence`` judges it (no overlong
form, no surrogate, nothing beyond U+10FFFF), with a backslash taking the byte after it
unchecked, as there.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from typing import Any, cast

from monitor.accelerator_py.rows import ssize

__all__ = ["scan"]

_INT_MAX = (1 << 31) - 1
_WS = b" \n\r\t"
_SKIP_WS = re.compile(rb"[ \n\r\t]*+")
# A string's body: printable ASCII but quote and backslash, a backslash and any byte after it,
# or one well-formed UTF-8 sequence; possessive, so that no input makes it backtrack.
_BODY = (
    rb"(?:[\x20\x21\x23-\x5b\x5d-\x7f]++"
    rb"|\\[\x00-\xff]"
    rb"|[\xc2-\xdf][\x80-\xbf]"
    rb"|\xe0[\xa0-\xbf][\x80-\xbf]"
    rb"|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}"
    rb"|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2})*+"
)
_STRING = rb'"' + _BODY + rb'"'
# What each state passes over, then what it stops at: a bracket (group "tok"), a quote that
# opens no well-formed string ("bad": the text is refused), or the end of the text (no group).
_OUTSIDE = re.compile(rb'(?:[^"{}\[\]]++|' + _STRING + rb')*+(?:(?P<tok>[{}\[\]])|(?P<bad>")|\Z)')
# Between the events of an envelope (depth 2 of its "events" array) a comma is a token too.
_BETWEEN = re.compile(rb'(?:[^"{}\[\],]++|' + _STRING + rb')*+(?:(?P<tok>[{}\[\],])|(?P<bad>")|\Z)')
# At depth 1 every string is a token ("key"): a key "events" (when a colon follows) makes the
# next array the events; any other string forgets such a key.
_TOP = re.compile(rb'[^"{}\[\]]*+(?:(?P<tok>[{}\[\]])|(?P<key>' + _STRING + rb')|(?P<bad>")|\Z)')
# Each always matches (at worst the empty string before the end of the text).
_skip_ws = cast("Callable[[bytes, int], re.Match[bytes]]", _SKIP_WS.match)
_top = cast("Callable[[bytes, int], re.Match[bytes]]", _TOP.match)
_between = cast("Callable[[bytes, int], re.Match[bytes]]", _BETWEEN.match)
_outside = cast("Callable[[bytes, int], re.Match[bytes]]", _OUTSIDE.match)
_OPEN, _CLOSE, _COMMA, _COLON = frozenset(b"{["), frozenset(b"}]"), ord(","), ord(":")
_BRACKET = ord("[")


_CONTROLS = bytes(range(0x20))
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"{}[]")


def _unkeyed(data: bytes, max_depth: int) -> list[int] | None:
    """:func:`scan` of a text with no backslash and no ``"events"``: no key "events", and
    every quote opens or closes a string as the walk pairs them, so the text split at its
    quotes alternates between what is outside strings and what is inside."""
    parts = data.split(b'"')
    if len(parts) % 2 == 0:
        return None  # an odd number of quotes: the last string is unterminated
    inside = b'"'.join(parts[1::2])  # a quote between them: no UTF-8 sequence spans two
    if len(inside.translate(None, _CONTROLS)) != len(inside):
        return None  # a control character in a string
    if not inside.isascii():
        try:
            inside.decode()  # Python's strict decoder judges UTF-8 as utf8_sequence does
        except UnicodeDecodeError:
            return None
    depth = 0
    for b in b"".join(parts[0::2]).translate(None, _NOT_BRACKETS):
        if b in _OPEN:
            depth += 1
            if depth > max_depth:
                return None
        else:
            depth -= 1
            if depth < 0:
                return None
    return []


def _is_events(body: bytes) -> bool:
    """Whether a string body (escapes unresolved) is the key ``events``."""
    if b"\\" not in body:
        return body == b"events"
    try:  # escapes as JSON resolves them; what JSON refuses is no key "events"
        return bool(json.loads('"' + body.decode() + '"') == "events")
    except ValueError:
        return False


def _element(data: bytes, elem: int, tail: int, limit: int, index: int, over: list[int]) -> int:
    """1 when the events array has an element between ``elem`` and ``tail`` (whitespace
    excluded), appending ``index`` to ``over`` when it spans more than ``limit`` bytes; 0 when
    there is none."""
    if tail > elem and data[tail - 1] not in _WS:
        size = tail - elem
    else:
        size = len(data[elem:tail].rstrip(_WS))
        if size == 0:
            return 0
    if size > limit:
        over.append(index)
    return 1


def _text(text: Any) -> bytes:
    """The bytes of a bytes-like argument (C's ``y*``)."""
    if type(text) is bytes:
        return text
    if isinstance(text, str):
        raise TypeError(f"a bytes-like object is required, not '{type(text).__name__}'")
    view = memoryview(text)  # TypeError for what has no buffer
    if not view.c_contiguous:
        raise TypeError("a contiguous bytes-like object is required")
    return view.tobytes()


def scan(text: Any, limit: int, max_depth: int, /) -> list[int] | None:
    """``None`` when a string of the JSON text is not UTF-8, holds a control character or is
    unterminated, or the text nests deeper than ``max_depth``; else the indexes of the elements
    of its top-level ``"events"`` array (the last, if the key is repeated) longer than
    ``limit`` bytes. On text that is not JSON the answer means nothing (a parser refuses it),
    but it is the C helper's answer, to the index."""
    data = _text(text)
    limit = ssize(limit)
    max_depth = operator.index(max_depth)
    if not -_INT_MAX - 1 <= max_depth <= _INT_MAX:
        raise OverflowError("signed integer is greater than maximum")
    if b"\\" not in data and b'"events"' not in data:  # a single event, usually
        return _unkeyed(data, max_depth)
    over: list[int] = []
    pos = depth = index = elem = 0
    events = in_events = False
    while True:
        if depth == 1:
            m = _top(data, pos)
            if m.lastgroup == "key":
                end = m.end()
                events = False
                after = _skip_ws(data, end).end()
                if after < len(data) and data[after] == _COLON:
                    events = _is_events(data[m.start("key") + 1 : end - 1])
                pos = end
                continue
        else:
            m = (_between if in_events and depth == 2 else _outside)(data, pos)
        kind = m.lastgroup
        if kind is None:  # the end of the text
            return over
        if kind == "bad":
            return None
        at = m.end() - 1
        ch = data[at]
        pos = at + 1
        if ch in _OPEN:
            depth += 1
            if depth > max_depth:
                return None
            if depth == 2 and ch == _BRACKET and events:
                in_events = True  # a repeated key: its array replaces the one before
                index = 0
                over.clear()
                pos = elem = _skip_ws(data, pos).end()
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                return None
            if depth == 1:
                events = False
                if in_events:  # the end of the events array
                    _element(data, elem, at, limit, index, over)
                    in_events = False
        else:  # a comma between events
            index += _element(data, elem, at, limit, index, over)
            pos = elem = _skip_ws(data, pos).end()
