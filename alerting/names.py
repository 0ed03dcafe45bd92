"""The built-in alert names, defined once: the five alerts driftwatch's own detectors raise.

Everything that spells a built-in alert name imports it from here: the default rules
(:data:`alerting.rules.DEFAULT_RULES`), the signal of each detector finding
(:data:`ALERT_OF_FINDING`, keyed by ``detectors.window.Finding.kind``), the alert metrics that
are exported at zero before the first alert (``monitor.metrics``) and the tracing of label
windows (``monitor.tracing``). Names are plain ``str`` so alert records, fingerprints and label
values stay exactly what they were. Alerts of other names (user rules) are not listed here and
need no registration.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

FEATURE_DRIFT: Final = "FeatureDrift"
PREDICTION_DRIFT: Final = "PredictionDrift"
DATA_QUALITY: Final = "DataQuality"
LATENCY_REGRESSION: Final = "LatencyRegression"
PERFORMANCE_DEGRADATION: Final = "PerformanceDegradation"

#: The alert name of each kind of detector finding (``detectors.window.Finding.kind``).
ALERT_OF_FINDING: Final[Mapping[str, str]] = MappingProxyType(
    {
        "feature_drift": FEATURE_DRIFT,
        "prediction_drift": PREDICTION_DRIFT,
        "data_quality": DATA_QUALITY,
        "latency": LATENCY_REGRESSION,
        "performance": PERFORMANCE_DEGRADATION,
    }
)

#: Alert names raised by the built-in detectors, in the order of :data:`ALERT_OF_FINDING`.
BUILTIN_ALERTS: Final[tuple[str, ...]] = tuple(ALERT_OF_FINDING.values())
