"""The broker killed with SIGKILL for 20 s under load (issue 16, defect 4): the worker stays
up, ``/readyz`` says not ready during the outage and ready after, the client errors are a few
lines rather than a flood, consumption resumes by itself and no event is lost or counted
twice. The test runs its own broker, killed and started again on the same ports."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.scenarios.simulate import generate
from tests.kafka_broker import KafkaBroker, free_ports, start_broker, stop_broker
from tests.worker_proc import Topics, Worker, envelopes, produce, readyz, until

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

OUTAGE = 20.0
UNREADY_AFTER = 5.0


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[list[KafkaBroker]]:
    """The test's broker (the last of the list: started again, it has a new PID)."""
    started = [start_broker(tmp_path / "kafka")]
    try:
        yield started
    finally:
        stop_broker(started[-1])


def test_broker_killed_for_20_s_under_load(brokers: list[KafkaBroker], tmp_path: Path) -> None:
    broker = brokers[0]
    lines = list(generate("steady", 60_000, 4).lines())
    topics = Topics.fresh("outage")
    topics.create(broker.bootstrap, 1)
    (port,) = free_ports(1)
    cfg = topics.config(
        tmp_path / "monitor.yaml",
        broker.bootstrap,
        1,
        extra=f"metrics:\n  listen: 127.0.0.1:{port}\n",
        kafka_extra=f"  unready_after: {UNREADY_AFTER}s\n",
    )
    produce(broker.bootstrap, topics.predictions, envelopes(lines[:30_000], 100))
    w = Worker(cfg, tmp_path, "w").start()
    try:
        w.wait_for(lambda s: s.get("events_by_stream", {}).get("fraud/v1", 0) >= 30_000)
        until(lambda: readyz(port) == 200, 30, "ready before the outage")
        log_before = w.log.stat().st_size

        os.kill(broker.pid, signal.SIGKILL)
        killed = time.monotonic()
        until(lambda: readyz(port) == 503, UNREADY_AFTER + 10, "not ready in the outage")
        assert time.monotonic() - killed >= UNREADY_AFTER - 1
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - killed)))
        assert w.proc is not None and w.proc.poll() is None  # still up
        outage_log = w.log.read_bytes()[log_before:].decode(errors="replace")
        lines_logged = [x for x in outage_log.splitlines() if x.strip()]
        # The flood was ~90 lines a second; now a few lines per kind of error.
        assert len(lines_logged) < 100, "\n".join(lines_logged[-30:])

        restarted = broker.run_script("start")
        assert restarted.returncode == 0, restarted.stderr
        pid = int((broker.data_dir / "kafka.pid").read_text().strip())
        brokers.append(dataclasses.replace(broker, pid=pid))
        until(lambda: readyz(port) == 200, 90, "ready after the outage")
        produce(broker.bootstrap, topics.predictions, envelopes(lines[30_000:], 100))
        st = w.wait_for(
            lambda s: s.get("events_by_stream", {}).get("fraud/v1", 0) >= len(lines), 120
        )
        time.sleep(2)
        assert w.status()["events_by_stream"]["fraud/v1"] == len(lines)  # 0 lost, 0 twice
        assert st["internal_errors"] == 0
    finally:
        w.stop()
