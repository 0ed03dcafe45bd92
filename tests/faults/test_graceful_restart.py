"""A graceful restart reads nothing twice (issue 16, defect 4): SIGTERM while model versions
still collect events (open windows, a warm-up) and dead-lettered messages sit behind them. The
stopping worker checkpoints the collected events and commits everything it processed; the
next one starts at the end: no dead letter, no rejection is repeated, every event is counted
once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from monitor.scenarios.simulate import generate
from tests.kafka_broker import KafkaBroker
from tests.worker_proc import Topics, Worker, committed, consume_all, produce

pytestmark = [pytest.mark.kafka, pytest.mark.faults]


def test_sigterm_and_restart_repeat_no_dead_letter(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    lines = list(generate("steady", 7_500, 4).lines())  # warm-up (5,000) and half a window
    messages: list[tuple[bytes, bytes]] = []
    bad = 0
    for k in range(0, len(lines), 50):
        messages.append((b"fraud", b'{"events":[' + b",".join(lines[k : k + 50]) + b"]}"))
        if k % 1000 == 0:
            messages.append((b"fraud", b'{"event_id": "x", "model": 1}'))  # wrong_type
            bad += 1
    topics = Topics.fresh("graceful")
    topics.create(kafka_broker.bootstrap, 1)
    cfg = topics.config(tmp_path / "monitor.yaml", kafka_broker.bootstrap, 1)
    end = produce(kafka_broker.bootstrap, topics.predictions, messages)
    first = Worker(cfg, tmp_path, "first").start()
    try:
        st = first.wait_for(lambda s: s.get("messages", 0) >= end)
        assert st["unacked"] > 0  # held by the open window: nothing would commit them
    finally:
        first.stop()  # SIGTERM
    assert first.proc is not None and first.proc.returncode == 0
    assert committed(kafka_broker.bootstrap, topics.group, topics.predictions) == end

    second = Worker(cfg, tmp_path, "second").start()
    try:
        second.wait_for(lambda s: "messages" in s)
        time.sleep(5)  # anything re-read would be processed by now
        st = second.status()
        assert st["messages"] == 0 and st["rejected"] == {}
        more = list(generate("steady", 600, 5).lines())
        produce(
            kafka_broker.bootstrap,
            topics.predictions,
            [(b"fraud", b'{"events":[' + b",".join(more) + b"]}")],
        )
        st = second.wait_for(lambda s: s.get("events_by_stream", {}).get("fraud/v1", 0) >= 8_100)
        assert st["events_by_stream"]["fraud/v1"] == 8_100  # restored with its collected events
    finally:
        second.stop()
    letters = consume_all(kafka_broker.bootstrap, topics.dead_letter, bad + 1, timeout=15)
    assert len(letters) == bad  # each once
