"""Kafka reachability for ``/readyz`` and the rate limit on repeated client errors (issue 16,
defect 4), with an injected clock; the probe against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from monitor.broker_watch import BrokerWatch, RepeatFilter, bootstrap_addresses
from monitor.config import ConfigError, settings_from_mapping
from monitor.http_server import Observability


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bootstrap_addresses() -> None:
    assert bootstrap_addresses("a:1, b:2,[::1]:3,c,[fe80::1]") == [
        ("a", 1),
        ("b", 2),
        ("::1", 3),
        ("c", 9092),
        ("fe80::1", 9092),
    ]


def test_the_probe_finds_a_listening_server_and_notices_when_none_is() -> None:
    clock = Clock()
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        dead = f"127.0.0.1:{closed.getsockname()[1]}"
        live = f"127.0.0.1:{listening.getsockname()[1]}"
        watch = BrokerWatch(f"{dead},{live}", unready_after=15, clock=clock)
        assert asyncio.run(watch.probe()) is True  # the second server answers
        down = BrokerWatch(dead, unready_after=15, clock=clock)
        assert asyncio.run(down.probe()) is False
    assert down.unreachable() is None  # not yet: an outage shorter than unready_after
    clock.now += 16
    assert asyncio.run(down.probe()) is False
    assert down.unreachable() == pytest.approx(16)
    down.seen(True)
    assert down.unreachable() is None


def test_readyz_is_not_ready_while_no_broker_is_reachable() -> None:
    clock = Clock()
    obs = Observability(settings_from_mapping({"metrics": {"enabled": False}}))
    obs.assigned = 4
    obs.brokers = BrokerWatch("127.0.0.1:9", unready_after=15, clock=clock)
    assert obs.ready()[0] is True
    obs.brokers.seen(False)
    clock.now += 10
    assert obs.ready()[0] is True  # a blip
    clock.now += 6
    assert obs.ready() == (False, "no Kafka broker reachable for 16 s")
    obs.brokers.seen(True)
    assert obs.ready()[0] is True
    obs.recovering = True
    assert obs.ready() == (False, "recovering state from the changelog")


def test_repeated_client_errors_are_one_line_per_interval_with_a_count() -> None:
    clock = Clock()
    flt = RepeatFilter(30.0, clock=clock)

    def record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, ("node-1",), None)

    passed = []
    for second in range(65):  # 90 a second for 65 s, as measured in an outage
        clock.now = 1000.0 + second
        for _ in range(90):
            r = record("aiokafka.conn", "Unable connect to %s")
            if flt.filter(r):
                passed.append(r.getMessage())
    assert passed == [
        "Unable connect to node-1",
        "Unable connect to node-1 [2699 more like this in the last 30 s]",
        "Unable connect to node-1 [2699 more like this in the last 30 s]",
    ]
    assert flt.filter(record("aiokafka.conn", "Another kind %s"))  # its own kind
    assert flt.filter(record("monitor.app", "Unable connect to %s"))  # not a client logger
    assert flt.filter(record("aiokafka.conn", "Unable connect to %s", logging.INFO))


def test_heartbeats_must_fit_the_session_timeout() -> None:
    k = settings_from_mapping({}).kafka
    assert (k.session_timeout_ms, k.heartbeat_interval_ms, k.unready_after) == (10_000, 3_000, 15)
    with pytest.raises(ConfigError, match="heartbeat_interval_ms"):
        settings_from_mapping(
            {"kafka": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 3000}}
        )
