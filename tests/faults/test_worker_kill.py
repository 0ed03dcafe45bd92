"""A worker killed with SIGKILL under load and restarted at once (issue 16's fault suite),
against the real broker and a real Alertmanager 0.25: predictions, their labels and a stray
model version that never finishes its warm-up are being produced when the worker dies.

Afterwards every prediction is counted once (none lost, none in two windows), no label is
joined twice, the stray version's events are all there and its partition's
committed offset still follows the input (bounded by ``kafka.max_unacked_messages``), and the
firing PerformanceDegradation is still in Alertmanager, by ``amtool alert query``, two leases
after the kill, with the ``startsAt`` it had before."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from monitor.scenarios.simulate import generate
from tests.alertmanager_server import Alertmanager, active_alerts
from tests.kafka_broker import KafkaBroker
from tests.worker_proc import Topics, Worker, committed, until

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

RESEND = 2.0  # seconds; Alertmanager's lease is 4 x this
MAX_UNACKED = 100
ALERT = "PerformanceDegradation"


def event_id(line: bytes) -> bytes:
    return line.split(b'"event_id":"')[1].split(b'"')[0]


def amtool(am: Alertmanager, alertname: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["amtool", "alert", "query", "-o", "json", f"--alertmanager.url={am.url}", alertname],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return list(json.loads(out.stdout))


class Load:
    """Produces predictions (envelopes of 100) and, after each envelope, the labels that have
    come due (an envelope too), in a thread, pausing between envelopes so that input flows for
    seconds."""

    def __init__(
        self, bootstrap: str, topics: Topics, chunks: list[tuple[list[bytes], list[bytes]]]
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.chunks = chunks
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        try:
            for predictions, labels in self.chunks:
                value = b'{"events":[' + b",".join(predictions) + b"]}"
                producer.send(self.topics.predictions, key=b"fraud", value=value)
                if labels:
                    value = b'{"events":[' + b",".join(labels) + b"]}"
                    producer.send(self.topics.labels, key=b"fraud", value=value)
                producer.flush(30)
                time.sleep(0.05)
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            producer.close(10)

    def start(self) -> Load:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(120)
        assert not self.thread.is_alive() and self.error is None, self.error


def chunks_of(lines: list[bytes]) -> tuple[list[tuple[list[bytes], list[bytes]]], int, int]:
    """The scenario's predictions in envelopes of 100, each followed by the labels that came
    before the next envelope in the scenario (so a label never precedes its prediction); the
    number of predictions and of labels."""
    predicted: set[bytes] = set()
    chunks: list[tuple[list[bytes], list[bytes]]] = []
    batch: list[bytes] = []
    due: list[bytes] = []
    n_labels = 0
    for line in lines:
        if b'"prediction"' in line:
            if len(batch) == 100:
                chunks.append((batch, due))
                batch, due = [], []
            batch.append(line)
            predicted.add(event_id(line))
        elif event_id(line) in predicted:
            due.append(line)
            n_labels += 1
    chunks.append((batch, due))
    return chunks, len(predicted), n_labels


def test_kill_9_under_load_loses_nothing_and_keeps_the_alert(
    kafka_broker: KafkaBroker, alertmanager: Alertmanager, tmp_path: Path
) -> None:
    lines = list(generate("accuracy-drop", 30_000, 11).lines())
    chunks, n_predictions, n_labels = chunks_of(lines)
    stray = [
        line.replace(b'"model_version":"v1"', b'"model_version":"canary"').replace(
            b'"event_id":"e-', b'"event_id":"k-'
        )
        for line in lines[:40]
        if b'"prediction"' in line
    ][:4]
    topics = Topics.fresh("kill9")
    topics.create(kafka_broker.bootstrap, 1)
    cfg = topics.config(
        tmp_path / "monitor.yaml",
        kafka_broker.bootstrap,
        1,
        kafka_extra=f"  max_unacked_messages: {MAX_UNACKED}\n",
        extra=(
            "notifications:\n  receivers:\n    - name: am\n      alertmanager:\n"
            f"        urls: ['{alertmanager.url}']\n        resend_interval: {RESEND}s\n"
        ),
    )
    first = Worker(cfg, tmp_path, "first").start()
    second = Worker(cfg, tmp_path, "second")
    try:
        first.wait_for(lambda s: "messages" in s)
        # The stray version's three events, one message each, among the first predictions.
        head: list[tuple[list[bytes], list[bytes]]] = [([line], []) for line in stray[:3]]
        head += chunks[:250]
        Load(kafka_broker.bootstrap, topics, head).start().join()
        (fired,) = until(lambda: active_alerts(alertmanager, ALERT), 300, f"{ALERT} to fire")

        # The fourth stray event comes after the restart: the version is restored from its
        # checkpoint (with its three collected events) when its input comes.
        load = Load(kafka_broker.bootstrap, topics, [*chunks[250:], ([stray[3]], [])]).start()
        time.sleep(1.0)  # the rest is flowing
        first.kill()
        killed = time.monotonic()
        second.start()
        load.join()
        st = second.wait_for(
            lambda s: (
                s.get("events_by_stream", {}).get("fraud/v1", 0) >= n_predictions
                and s.get("events_by_stream", {}).get("fraud/canary", 0) >= len(stray)
            ),
            180,
        )
        # The labels topic is read at its own pace: wait until nothing changes for 5 s.
        settled: dict[str, Any] = {"last": None, "since": time.monotonic()}

        def quiet() -> bool:
            now = second.status()
            if now != settled["last"]:
                settled.update(last=now, since=time.monotonic())
            return time.monotonic() - float(settled["since"]) >= 5

        until(quiet, 120, "the worker to go quiet")
        # Two leases after the kill: a worker that did not send the alert again would have
        # let it expire by now.
        time.sleep(max(0.0, killed + 2 * 4 * RESEND - time.monotonic()))
        (kept,) = amtool(alertmanager, f"alertname={ALERT}")
        assert kept["startsAt"] == fired["startsAt"]
        assert kept["labels"]["model_version"] == "v1"

        st = second.status()
        assert st["events_by_stream"]["fraud/v1"] == n_predictions  # none lost, none twice
        # No label joined twice. Not all are joined: labels the restarted worker reads before
        # the predictions it reads again find none (docs/OPERATIONS.md, known issues).
        joined = st["labels_by_stream"]["fraud/v1"]
        print(f"labels joined after kill -9: {joined} of {n_labels}")
        # Those are labels of predictions read again: at most MAX_UNACKED envelopes of 100.
        assert n_labels - MAX_UNACKED * 100 <= joined <= n_labels
        assert st["events_by_stream"]["fraud/canary"] == len(stray)  # from its checkpoint
        assert st["rejected"] == {}
        end = len(stray) + len(chunks)
        # The stray version holds its events, not the partition's commits.
        until(
            lambda: (
                committed(kafka_broker.bootstrap, topics.group, topics.predictions)
                >= end - MAX_UNACKED
            ),
            30,
            "the committed offset to follow the input",
        )
    finally:
        first.stop()
        second.stop()
