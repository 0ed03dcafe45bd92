"""Alert rules: how long a condition must hold, how long to keep firing, and how bad it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["critical", "warning", "info"]

#: Alert names raised by the built-in detectors.
BUILTIN_ALERTS = (
    "FeatureDrift",
    "PredictionDrift",
    "DataQuality",
    "LatencyRegression",
    "PerformanceDegradation",
)


@dataclass(frozen=True, slots=True)
class AlertRule:
    """Timing and severity of one alert name (durations in seconds of event time).

    Parameters
    ----------
    for_seconds
        How long the condition must hold before a pending alert fires (Prometheus ``for``).
        A condition that clears earlier is a *transient*: recorded, never notified.
    keep_firing_for_seconds
        After the condition clears, how long a firing alert stays firing (Prometheus
        ``keep_firing_for``): hysteresis against resolving on one good window.
    severity
        ``critical`` pages, ``warning`` goes to a ticket queue, ``info`` is not routed.
    summary
        One sentence for the ``summary`` annotation.
    """

    for_seconds: float = 60.0
    keep_firing_for_seconds: float = 60.0
    severity: Severity = "warning"
    summary: str = ""

    def __post_init__(self) -> None:
        if self.for_seconds < 0:
            raise ValueError("for_seconds must be >= 0")
        if self.keep_firing_for_seconds < 0:
            raise ValueError("keep_firing_for_seconds must be >= 0")


DEFAULT_RULES: dict[str, AlertRule] = {
    "FeatureDrift": AlertRule(
        60.0, 60.0, "warning", "A feature's distribution has drifted from its reference."
    ),
    "PredictionDrift": AlertRule(
        60.0, 60.0, "warning", "The model's output distribution has drifted from its reference."
    ),
    "DataQuality": AlertRule(
        30.0, 60.0, "critical", "Feature data is broken: a data-quality check is failing."
    ),
    "LatencyRegression": AlertRule(
        60.0, 60.0, "warning", "Prediction latency has regressed against its reference."
    ),
    "PerformanceDegradation": AlertRule(
        60.0, 120.0, "critical", "The model's error against ground truth has risen."
    ),
}


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules by alert name; names without a rule use ``default``."""

    rules: dict[str, AlertRule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    default: AlertRule = AlertRule()

    def rule(self, alertname: str) -> AlertRule:
        """The rule for ``alertname``."""
        return self.rules.get(alertname, self.default)
