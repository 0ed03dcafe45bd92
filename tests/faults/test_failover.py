"""Two workers in one group, the one that owns the firing alert killed with SIGKILL (issue 16,
defect 4): the survivor takes its partitions within the session timeout plus 15 s, keeps the
alert alive in a real Alertmanager 0.25 (same ``startsAt``, past its lease), and counts every
event of the moved model version exactly once when input goes on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from monitor.scenarios.simulate import generate
from tests.alertmanager_server import Alertmanager, active_alerts
from tests.kafka_broker import KafkaBroker
from tests.worker_proc import Topics, Worker, until

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

RESEND = 2.0
SESSION_S = 6.0


def send(bootstrap: str, topic: str, parts: dict[int, list[bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for partition, lines in parts.items():
            for k in range(0, len(lines), 250):
                value = b'{"events":[' + b",".join(lines[k : k + 250]) + b"]}"
                producer.send(topic, key=b"k", value=value, partition=partition)
        producer.flush(60)
    finally:
        producer.close(10)


def test_the_survivor_takes_over_partitions_and_alerts(
    kafka_broker: KafkaBroker,
    alertmanager: Alertmanager,
    tmp_path: Path,
) -> None:
    fraud = list(generate("abrupt-shift", 40_000, 8).lines())
    churn = [
        x.replace(b'"model":"fraud"', b'"model":"churn"').replace(b'"e-', b'"c-')
        for x in generate("steady", 30_000, 6).lines()
    ]
    topics = Topics.fresh("failover")
    topics.create(kafka_broker.bootstrap, 2)
    cfg = topics.config(
        tmp_path / "monitor.yaml",
        kafka_broker.bootstrap,
        2,
        kafka_extra=(
            f"  session_timeout_ms: {int(SESSION_S * 1000)}\n  heartbeat_interval_ms: 1000\n"
        ),
        extra=(
            "notifications:\n  receivers:\n    - name: am\n      alertmanager:\n"
            f"        urls: ['{alertmanager.url}']\n        resend_interval: {RESEND}s\n"
        ),
    )
    workers = [Worker(cfg, tmp_path, name) for name in ("w1", "w2")]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_for(lambda s: "messages" in s)
        send(kafka_broker.bootstrap, topics.predictions, {0: fraud[:30_000], 1: churn})
        (fired,) = until(
            lambda: active_alerts(alertmanager, "FeatureDrift"), 180, "FeatureDrift in Alertmanager"
        )
        owner = until(
            lambda: next(
                (w for w in workers if "fraud/v1" in w.status().get("events_by_stream", {})),
                None,
            ),
            10,
            "the stats of the worker that fired",
        )
        survivor = next(w for w in workers if w is not owner)
        owner.kill()
        killed = time.monotonic()
        send(kafka_broker.bootstrap, topics.predictions, {0: fraud[30_000:30_250]})
        # The survivor gets partition 0 once the group notices (session timeout) and
        # processes its input.
        survivor.wait_for(lambda s: "fraud/v1" in s.get("events_by_stream", {}), SESSION_S + 15)
        # Reported (pytest -s), not asserted beyond the bound above; the README quotes it.
        print(f"failover: {time.monotonic() - killed:.1f} s, session timeout {SESSION_S} s")
        # Past the dead worker's lease, the alert is still there: the survivor re-sent it.
        time.sleep(max(0.0, killed + 4 * RESEND + 3 - time.monotonic()))
        (kept,) = active_alerts(alertmanager, "FeatureDrift")
        assert kept["startsAt"] == fired["startsAt"]

        send(kafka_broker.bootstrap, topics.predictions, {0: fraud[30_250:]})
        st = survivor.wait_for(
            lambda s: s.get("events_by_stream", {}).get("fraud/v1", 0) >= len(fraud), 120
        )
        time.sleep(2)
        st = survivor.status()
        assert st["events_by_stream"]["fraud/v1"] == len(fraud)  # each once across the move
        assert st["events_by_stream"]["churn/v1"] == len(churn)
    finally:
        for w in workers:
            w.stop()
