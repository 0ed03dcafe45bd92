"""A restarted worker tells Alertmanager again about the alert it was firing (issue 16, defect
1), against the real broker and a real Alertmanager 0.25: the worker fires FeatureDrift, is
killed with SIGKILL, the alert expires in Alertmanager (its lease is 4 x ``resend_interval``),
and the worker started again, with no new input, has it back in Alertmanager with its original
``startsAt`` within a ``resend_interval`` of its partition assignment."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.scenarios.simulate import generate
from tests.alertmanager_server import Alertmanager, active_alerts
from tests.kafka_broker import KafkaBroker
from tests.worker_proc import Topics, Worker, envelopes, produce, until, wait_committed

pytestmark = pytest.mark.kafka

RESEND = 2.0  # seconds; Alertmanager's lease is 4 x this


def test_a_firing_alert_is_back_in_alertmanager_after_kill_9_and_restart(
    kafka_broker: KafkaBroker, alertmanager: Alertmanager, tmp_path: Path, workers: list[Worker]
) -> None:
    lines = list(generate("abrupt-shift", 30_000, 8).lines())
    topics = Topics.fresh("takeover")
    topics.create(kafka_broker.bootstrap, 1)
    cfg = topics.config(
        tmp_path / "monitor.yaml",
        kafka_broker.bootstrap,
        1,
        extra=(
            "notifications:\n  receivers:\n    - name: am\n      alertmanager:\n"
            f"        urls: ['{alertmanager.url}']\n        resend_interval: {RESEND}s\n"
        ),
    )
    end = produce(kafka_broker.bootstrap, topics.predictions, envelopes(lines, 250))
    first = Worker(cfg, tmp_path, "first").start()
    workers.append(first)
    first.wait_for(lambda s: s.get("alerts", {}).get("FeatureDrift/firing", 0) >= 1)
    (fired,) = until(
        lambda: active_alerts(alertmanager, "FeatureDrift"), 30, "the alert in Alertmanager"
    )
    # 30,000 events end a window: everything is checkpointed and committed; the restarted
    # worker gets no input at all.
    assert wait_committed(kafka_broker.bootstrap, topics.group, topics.predictions, end) == end
    first.kill()

    # Nobody re-sends it: Alertmanager lets it expire at the end of its lease.
    until(
        lambda: not active_alerts(alertmanager, "FeatureDrift"),
        8 * RESEND + 10,
        "the alert to expire",
    )

    second = Worker(cfg, tmp_path, "second").start()
    workers.append(second)
    second.wait_for(lambda s: "messages" in s)  # started: partitions assigned, recovered
    (back,) = until(
        lambda: active_alerts(alertmanager, "FeatureDrift"),
        RESEND + 10,
        "the alert back in Alertmanager",
    )
    assert back["startsAt"] == fired["startsAt"]
    assert back["labels"] == fired["labels"]
    assert second.status()["messages"] == 0  # without any input to the second worker
    assert [r for r in second.alerts_records() if r["state"] in ("pending", "firing")] == []
