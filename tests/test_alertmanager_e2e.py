"""Against a real Alertmanager 0.25: incidents replayed through the monitor reach a webhook.

Alertmanager runs from ``deploy/alertmanager/am.sh`` with the example configuration, its
receivers pointed at a webhook server run by the test (see ``tests/alertmanager_server.py``).
The incident is one on-period of the ``flapping`` simulation (a 1-sd shift on ``credit_score``
for 4,000 events = 40 s of event time) with FeatureDrift's ``for`` shortened to 10 s, so it
fires inside the on-period and resolves in the following off-period.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerting.notify import Notifier, build_tracker
from alerting.settings import AlertRuleSettings, NotificationSettings, rule_set_from
from monitor.pipeline import Pipeline
from monitor.replay import replay
from monitor.scenarios.simulate import generate
from tests.alertmanager_server import (
    REPO_ROOT,
    Alertmanager,
    WebhookReceiver,
    run_alertmanager,
    serve_webhook,
)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with serve_webhook() as receiver:
        yield receiver


@pytest.fixture
def alertmanager(tmp_path: Path, webhook_receiver: WebhookReceiver) -> Iterator[Alertmanager]:
    with run_alertmanager(tmp_path / "am", webhook_receiver) as am:
        yield am


ON_START, ON_END, OFF_END = 20_000, 24_000, 28_000


def sim_lines() -> list[bytes]:
    sim = generate("flapping", 40_000, 7, 100.0)
    return [line for chunk in sim.chunks() for line in chunk]


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return sim_lines()


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines))
    return path


def notifier_for(am: Alertmanager, **rules: AlertRuleSettings) -> tuple[Notifier, Pipeline]:
    ns = NotificationSettings.model_validate(
        {
            "receivers": [
                {"name": "am", "alertmanager": {"urls": [am.url], "resend_interval": "2s"}}
            ],
            "delivery": {"initial_backoff": "0.2s", "max_backoff": "2s"},
        }
    )
    rule_set = rule_set_from(rules)
    pipeline = Pipeline(tracker=build_tracker(rule_set, ns))
    return Notifier.from_settings(ns, rule_set), pipeline


SHORT = AlertRuleSettings.model_validate({"for": "10s", "keep_firing_for": "0s"})


def statuses(alerts: list[dict[str, Any]], **labels: str) -> list[str]:
    return [a["status"] for a in alerts if all(a["labels"].get(k) == v for k, v in labels.items())]


@pytest.fixture
def incident_files(tmp_path: Path, lines: list[bytes]) -> Iterator[tuple[Path, Path]]:
    yield (
        write(tmp_path / "part1.jsonl", lines[:ON_END]),
        write(tmp_path / "part2.jsonl", lines[ON_END:OFF_END]),
    )


def test_incident_fires_with_runbook_then_resolves(
    alertmanager: Alertmanager,
    webhook_receiver: WebhookReceiver,
    incident_files: tuple[Path, Path],
) -> None:
    notifier, pipeline = notifier_for(alertmanager, FeatureDrift=SHORT)
    part1, part2 = incident_files
    try:
        replay(part1, pipeline, notifier, progress=False)
        alerts = webhook_receiver.wait_for(
            lambda a: "firing" in statuses(a, alertname="FeatureDrift"), 20, "/chat"
        )
        firing = next(a for a in alerts if a["status"] == "firing")
        assert firing["labels"] == {
            "alertname": "FeatureDrift",
            "model": "fraud",
            "model_version": "v1",
            "feature": "credit_score",
            "severity": "warning",
        }
        ann = firing["annotations"]
        assert ann["runbook_url"].endswith("deploy/runbooks/FeatureDrift.md")
        assert ann["summary"].endswith(".")
        assert "credit_score" in ann["description"]
        assert ann["data_version"] == "snap-2026-01-01"
        # Event time: the alert started on 2026-01-01, when the simulated incident did.
        assert firing["startsAt"].startswith("2026-01-01T00:03")
        assert firing["endsAt"] == "0001-01-01T00:00:00Z"
        # Alertmanager holds it as active, with the lease driftwatch gave it.
        (held,) = alertmanager.api("/api/v2/alerts?filter=alertname%3D%22FeatureDrift%22")
        assert held["status"]["state"] == "active"
        assert held["generatorURL"].startswith("http://localhost:9464/alerts/")

        replay(part2, pipeline, notifier, progress=False)
        webhook_receiver.wait_for(
            lambda a: statuses(a, alertname="FeatureDrift")[-1:] == ["resolved"], 20, "/chat"
        )
    finally:
        notifier.close()
    stats = notifier.dispatcher.stats()["am"]
    assert stats.failed == 0
    assert stats.dropped == 0
    assert webhook_receiver.payloads("/pager") == []


def test_nothing_lost_while_alertmanager_is_down_for_30_s(
    alertmanager: Alertmanager,
    webhook_receiver: WebhookReceiver,
    incident_files: tuple[Path, Path],
) -> None:
    notifier, pipeline = notifier_for(alertmanager, FeatureDrift=SHORT)
    part1, part2 = incident_files
    try:
        replay(part1, pipeline, notifier, progress=False)
        webhook_receiver.wait_for(
            lambda a: "firing" in statuses(a, alertname="FeatureDrift"), 20, "/chat"
        )
        alertmanager.stop()
        down_at = time.monotonic()
        # The incident resolves while Alertmanager is down; the replay is not slowed by it.
        result = replay(part2, pipeline, notifier, progress=False)
        assert result.seconds < 10
        assert pipeline.stats.alerts[("FeatureDrift", "resolved")] == 1
        time.sleep(max(0.0, 30.0 - (time.monotonic() - down_at)))
        assert notifier.dispatcher.stats()["am"].retried > 0
        assert statuses(webhook_receiver.alerts("/chat"), alertname="FeatureDrift") == ["firing"]
        alertmanager.start()
        webhook_receiver.wait_for(
            lambda a: statuses(a, alertname="FeatureDrift")[-1:] == ["resolved"], 30, "/chat"
        )
    finally:
        notifier.close()
    stats = notifier.dispatcher.stats()["am"]
    assert stats.dropped == 0
    assert stats.failed == 0


def test_flapping_scenario_gives_one_flapping_notification(
    alertmanager: Alertmanager,
    webhook_receiver: WebhookReceiver,
    lines: list[bytes],
    tmp_path: Path,
) -> None:
    notifier, pipeline = notifier_for(alertmanager)  # default for: 60 s, never fires
    try:
        replay(write(tmp_path / "flapping.jsonl", lines), pipeline, notifier, progress=False)
        webhook_receiver.wait_for(lambda a: "firing" in statuses(a, flapping="true"), 20, "/chat")
        time.sleep(3.0)  # a few more group intervals: nothing else may arrive
    finally:
        notifier.close()
    alerts = webhook_receiver.alerts()
    assert len(webhook_receiver.payloads()) == 1
    (flap,) = alerts
    assert flap["labels"]["flapping"] == "true"
    assert flap["labels"]["feature"] == "credit_score"
    assert "flapping" in flap["annotations"]["summary"]
    assert flap["annotations"]["runbook_url"].endswith("FeatureDrift.md")
    assert notifier.router.transients["FeatureDrift"] >= 2
    assert pipeline.stats.alerts[("FeatureDrift", "firing")] == 0


def alertmanager_configs() -> list[Path]:
    return sorted((REPO_ROOT / "deploy").rglob("alertmanager*.y*ml"))


@pytest.mark.parametrize("path", alertmanager_configs(), ids=lambda p: p.name)
def test_amtool_check_config_passes(path: Path) -> None:
    try:
        result = subprocess.run(
            ["amtool", "check-config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        pytest.fail("amtool not installed (Debian package prometheus-alertmanager)")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
