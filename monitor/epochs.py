"""Epoch seconds of decoded timestamps, by the C helper ``monitor._featcols.epochs`` when it
can (every one a UTC ``datetime``, as msgspec decodes ``Z`` and ``+00:00``)."""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from monitor.accelerator import epochs


def epoch_array(timestamps: list[Any]) -> array[float] | list[Any]:
    """``array("d")`` of ``datetime.timestamp()`` of each UTC datetime (exactly), or
    ``timestamps`` themselves when one is anything else (the caller converts those).

    >>> from datetime import UTC, datetime
    >>> epoch_array([datetime(2026, 1, 1, 0, 0, 0, 10_000, tzinfo=UTC)])
    array('d', [1767225600.01])
    >>> epoch_array([1.5])
    [1.5]
    """
    seconds = epochs(timestamps)
    if seconds is None:
        return timestamps
    out = array("d")
    out.frombytes(seconds)
    return out


def latest(timestamps: list[Any]) -> float | None:
    """The largest epoch second of UTC datetimes (C-level), or ``None`` when they are not
    all such (or there are none)."""
    seconds = epochs(timestamps)
    if not seconds:
        return None
    return float(np.frombuffer(seconds, np.float64).max())
