"""Alert fingerprints, computed exactly as Prometheus/Alertmanager do.

``model.LabelSet.Fingerprint()`` in prometheus/common hashes the label pairs sorted by name with
64-bit FNV-1a, a 0xff byte after every name and every value. Using the same function means the
``fingerprint`` in driftwatch's records is the one Alertmanager shows for the same alert.
"""

from __future__ import annotations

from collections.abc import Mapping

_OFFSET = 14695981039346656037
_PRIME = 1099511628211
_MASK = (1 << 64) - 1
_SEP = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """16 hex digits identifying a label set (alertname included).

    >>> fingerprint({})
    'cbf29ce484222325'
    >>> fingerprint({"b": "2", "a": "1"}) == fingerprint({"a": "1", "b": "2"})
    True
    """
    h = _OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _PRIME) & _MASK
            h = ((h ^ _SEP) * _PRIME) & _MASK
    return f"{h:016x}"
