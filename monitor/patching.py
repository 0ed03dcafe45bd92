"""Wrapping a method of a third-party class, once per process: what the corrections of
kafka-python (:mod:`monitor.kafka_sockets`) and Faust (:mod:`monitor.faust_fixes`) share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def wrap(cls: type, name: str, wrapper: Callable[[Any], Any], mark: str) -> None:
    """Replace ``cls.name`` by ``wrapper(original)``; the replacement carries the attribute
    ``mark`` (so that callers can tell it is installed) and ``__wrapped__``, the original."""
    original = getattr(cls, name)
    replacement = wrapper(original)
    setattr(replacement, mark, True)
    replacement.__wrapped__ = original
    setattr(cls, name, replacement)


def wrapped(method: Any, mark: str) -> bool:
    """Whether ``method`` is a replacement made by :func:`wrap` with ``mark``."""
    return bool(getattr(method, mark, False))
