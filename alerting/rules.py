"""Alert rules: how long a condition must hold, how long to keep firing, and how bad it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from alerting.names import (
    DATA_QUALITY,
    FEATURE_DRIFT,
    LATENCY_REGRESSION,
    PERFORMANCE_DEGRADATION,
    PREDICTION_DRIFT,
)

Severity = Literal["critical", "warning", "info"]

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True, slots=True)
class Escalation:
    """Raise the severity of an alert that is still firing ``after_seconds`` after it fired.

    The tracker then emits a second firing alert with the same labels except ``severity`` (a
    separate Alertmanager alert, as two Prometheus rules with different ``for`` would give); the
    original stays active, and Alertmanager's usual "critical inhibits warning" rule mutes it.
    Both resolve together.
    """

    after_seconds: float
    severity: Severity

    def __post_init__(self) -> None:
        if self.after_seconds < 0:
            raise ValueError("after_seconds must be >= 0")


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
    escalation
        Optional steps, by increasing ``after_seconds`` and severity (none by default).
    runbook
        URL of this alert's runbook; empty means ``<runbook base URL><alertname>.md``.
    """

    for_seconds: float = 60.0
    keep_firing_for_seconds: float = 60.0
    severity: Severity = "warning"
    summary: str = ""
    escalation: tuple[Escalation, ...] = ()
    runbook: str = ""

    def __post_init__(self) -> None:
        if self.for_seconds < 0:
            raise ValueError("for_seconds must be >= 0")
        if self.keep_firing_for_seconds < 0:
            raise ValueError("keep_firing_for_seconds must be >= 0")
        rank = SEVERITY_RANK[self.severity]
        after = -1.0
        for step in self.escalation:
            if step.after_seconds <= after or SEVERITY_RANK[step.severity] <= rank:
                raise ValueError(
                    "escalation steps must raise the severity at increasing after_seconds"
                )
            after, rank = step.after_seconds, SEVERITY_RANK[step.severity]


DEFAULT_RULES: dict[str, AlertRule] = {
    FEATURE_DRIFT: AlertRule(
        60.0, 60.0, "warning", "A feature's distribution has drifted from its reference."
    ),
    PREDICTION_DRIFT: AlertRule(
        60.0, 60.0, "warning", "The model's output distribution has drifted from its reference."
    ),
    DATA_QUALITY: AlertRule(
        30.0, 60.0, "critical", "Feature data is broken: a data-quality check is failing."
    ),
    LATENCY_REGRESSION: AlertRule(
        60.0, 60.0, "warning", "Prediction latency has regressed against its reference."
    ),
    PERFORMANCE_DEGRADATION: AlertRule(
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
