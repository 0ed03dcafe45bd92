"""Settings: defaults without a file, errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.settings import parse_duration
from monitor.cli import main
from monitor.config import ConfigError, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "monitor.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_no_file_means_documented_defaults() -> None:
    s = load_settings(None)
    assert s == Settings()
    assert s.window.size == 1000
    assert s.reference.warmup_events == 5000
    assert s.calibration.false_alarm_days == 30
    rules = s.rule_set()
    assert rules.rule("FeatureDrift").for_seconds == 60
    assert rules.rule("DataQuality").severity == "critical"


def test_overrides_apply(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "window:\n  size: 500\nalerts:\n  FeatureDrift:\n    for: 2m\n"
        "    keep_firing_for: 30s\n    severity: critical\n",
    )
    s = load_settings(p)
    assert s.window.size == 500
    r = s.rule_set().rule("FeatureDrift")
    assert (r.for_seconds, r.keep_firing_for_seconds, r.severity) == (120.0, 30.0, "critical")
    assert s.rule_set().rule("LatencyRegression").for_seconds == 60.0
    assert s.detector_settings().window_size == 500


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("window:\n  size: ten\n", "monitor.yaml: window.size: Input should be a valid integer"),
        ("window:\n  size: 10\n", "monitor.yaml: window.size: Input should be greater than"),
        ("widow:\n  size: 10\n", "monitor.yaml: widow: unknown setting"),
        (
            "alerts:\n  FeatureDrift:\n    for: soon\n",
            "monitor.yaml: alerts.FeatureDrift.for: Value error, invalid duration 'soon'",
        ),
        (
            "alerts:\n  FeatureDrift:\n    severity: loud\n",
            "monitor.yaml: alerts.FeatureDrift.severity: Input should be 'critical'",
        ),
        ("drift:\n  statistics: [psi, wasserstein]\n", "monitor.yaml: drift.statistics.1:"),
        ("- just\n- a list\n", "monitor.yaml: (top level): expected a mapping"),
        ("window: [unclosed\n", "monitor.yaml: invalid YAML (line 2, column 1)"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(p)
    assert str(info.value).startswith(str(p.parent) + "/" + expected) or expected in str(
        info.value
    ), str(info.value)
    assert str(p) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml")


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("90s") == 90.0
    assert parse_duration(0) == 0.0
    assert parse_duration("7d") == parse_duration("168h") == 604800.0
    for bad in ("", "5 minutes", -1, True, "1w", "d"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "calibration:\n  false_alarm_days: 7\n")
    assert main(["check-config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out
    assert "one per 7 days" in out
    bad = write(tmp_path, "window:\n  size: -3\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "monitor.yaml: window.size" in err
