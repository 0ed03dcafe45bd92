"""One registry of built-in alert names (``alerting.names``): the detectors' findings, the
default rules, the alert metrics and the label-window traces all use the same five names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from alerting.names import ALERT_OF_FINDING, BUILTIN_ALERTS, PERFORMANCE_DEGRADATION
from alerting.rules import DEFAULT_RULES, RuleSet
from monitor.metrics import MonitorMetrics

ROOT = Path(__file__).resolve().parent.parent


def finding_kinds() -> set[str]:
    """Every ``kind`` the detectors give a ``Finding`` (string constants in its argument)."""
    kinds: set[str] = set()
    for path in (ROOT / "detectors").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Finding":
                for kw in node.keywords:
                    if kw.arg == "kind":
                        kinds |= {
                            c.value
                            for c in ast.walk(kw.value)
                            if isinstance(c, ast.Constant) and isinstance(c.value, str)
                        }
    return kinds


def test_the_five_builtin_names_are_plain_strings() -> None:
    assert BUILTIN_ALERTS == (
        "FeatureDrift",
        "PredictionDrift",
        "DataQuality",
        "LatencyRegression",
        "PerformanceDegradation",
    )
    # Plain str, not an enum: alert records and fingerprints stay byte-identical.
    assert all(type(name) is str for name in BUILTIN_ALERTS)
    assert PERFORMANCE_DEGRADATION in BUILTIN_ALERTS


def test_every_finding_kind_of_the_detectors_has_an_alert_name() -> None:
    kinds = finding_kinds()
    assert len(kinds) == 5
    assert kinds == set(ALERT_OF_FINDING)
    assert sorted(ALERT_OF_FINDING.values()) == sorted(BUILTIN_ALERTS)


def test_every_builtin_alert_has_its_default_rule() -> None:
    assert set(DEFAULT_RULES) == set(BUILTIN_ALERTS)
    rules = RuleSet()
    for name in BUILTIN_ALERTS:
        assert rules.rule(name) is DEFAULT_RULES[name]
    assert rules.rule(PERFORMANCE_DEGRADATION).severity == "critical"


def test_alert_metrics_show_every_builtin_name_before_the_first_alert() -> None:
    registry = CollectorRegistry()
    MonitorMetrics(registry, version="0", revision="r")
    for state in ("pending", "firing", "flapping"):
        for name in BUILTIN_ALERTS:
            labels = {"alertname": name, "state": state}
            assert registry.get_sample_value("driftwatch_alerts", labels) == 0


def test_the_registry_imports_nothing_of_monitor() -> None:
    code = (
        "import sys, alerting.names, alerting.rules; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'monitor'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
