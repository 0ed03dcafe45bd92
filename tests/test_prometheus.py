"""The shipped Prometheus configuration: ``promtool check config/rules`` and ``promtool test
rules`` (Debian's Prometheus 2.42) pass, and the rules stay within what 2.42 accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULES = ["driftwatch_recording_rules.yml", "driftwatch_alerting_rules.yml"]
PROMTOOL = shutil.which("promtool")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # .ci/run installs the Debian package `prometheus`: a missing promtool fails, never skips.
    assert PROMTOOL is not None, "promtool missing: apt-get install prometheus"
    return subprocess.run(
        [PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_check_config_and_rules() -> None:
    out = promtool("check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    out = promtool("check", "rules", *RULES)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == 2


def test_promtool_test_rules() -> None:
    out = promtool("test", "rules", "driftwatch_rules_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_rules_fit_prometheus_2_42_and_carry_runbooks() -> None:
    runbooks = {p.name for p in (DEPLOY.parent / "runbooks").glob("*.md")}
    alerts = 0
    for name in RULES:
        doc = yaml.safe_load((DEPLOY / name).read_text())
        for group in doc["groups"]:
            # Group labels arrived in 3.0 and query_offset in 2.53; 2.42 rejects both.
            assert set(group) <= {"name", "interval", "limit", "rules"}, group["name"]
            for rule in group["rules"]:
                if "alert" not in rule:
                    assert ":" in rule["record"]  # level:metric:operations
                    continue
                alerts += 1
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}
                ann = rule["annotations"]
                assert ann["summary"][0].isupper() and ann["summary"].endswith(".")
                assert ann["description"]
                assert ann["runbook_url"].rsplit("/", 1)[1] in runbooks
                if rule["alert"] in {"FeatureDrift", "PredictionDrift", "DataQuality"}:
                    assert "for" in rule and "keep_firing_for" in rule
    assert alerts >= 8
