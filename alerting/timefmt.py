"""RFC 3339 timestamps for alert payloads."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(epoch_seconds: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds.

    >>> iso(0.0)
    '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
