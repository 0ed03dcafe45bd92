"""An in-memory Kafka for the EventLogger's tests: a producer factory, futures, messages.

:class:`FakeKafka` stands in for the broker (it can be down, slow to accept connections, or fail
the next deliveries) and records every message sent; its :meth:`FakeKafka.factory` is what the
tests pass as ``EventLogger(producer_factory=...)``. It needs only the standard library and
orjson, so the isolation tests (``test_main.py``) also uses it in an interpreter that cannot
import the worker's dependencies.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from monitor.client import EventLogger, Producer

FEATURES: dict[str, Any] = {
    **{f"num_{i}": i * 1.25 for i in range(20)},
    "country": "DE",
    "device": "mobile",
    "channel": "ecommerce",
    "merchant_category": "grocery",
    "card_type": None,
}


PREDICTION = {"score": 0.91, "label": "fraud"}


class RetriableError(Exception):
    """Stands in for a retriable kafka-python error (KafkaTimeoutError and friends)."""

    retriable = True


class FatalError(Exception):
    """Stands in for a non-retriable delivery error."""


class FakeFuture:
    """Resolves callbacks like kafka-python's Future: at once when already done."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Any], object]] = []
        self._errbacks: list[Callable[[BaseException], object]] = []
        self._outcome: tuple[bool, Any] | None = None

    def add_callback(self, f: Callable[..., Any], *args: Any) -> FakeFuture:
        cb = functools.partial(f, *args)
        if self._outcome is None:
            self._callbacks.append(cb)
        elif self._outcome[0]:
            cb(self._outcome[1])
        return self

    def add_errback(self, f: Callable[..., Any], *args: Any) -> FakeFuture:
        eb = functools.partial(f, *args)
        if self._outcome is None:
            self._errbacks.append(eb)
        elif not self._outcome[0]:
            eb(self._outcome[1])
        return self

    def succeed(self) -> None:
        self._outcome = (True, None)
        for cb in self._callbacks:
            cb(None)

    def fail(self, exc: BaseException) -> None:
        self._outcome = (False, exc)
        for eb in self._errbacks:
            eb(exc)


def message_events(value: bytes) -> list[dict[str, Any]]:
    """The events of one message: an envelope's list, or the one bare event."""
    decoded = orjson.loads(value)
    events: list[dict[str, Any]] = decoded.get("events", [decoded])
    return events


@dataclass
class Message:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    at: float = field(default_factory=time.monotonic)

    def events(self) -> list[dict[str, Any]]:
        return message_events(self.value)


class FakeKafka:
    """A broker double: can be down (connect raises) or slow to answer (connect waits on gate)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.configs: list[dict[str, Any]] = []
        self.down = False
        self.gate: threading.Event | None = None
        self.fail_next: list[BaseException] = []  # delivery fails (errback)
        self.raise_next: list[BaseException] = []  # send raises
        self.producers = 0
        self.closed = 0

    def factory(self, config: Mapping[str, Any]) -> Producer:
        self.configs.append(dict(config))
        if self.gate is not None:
            self.gate.wait(30)
        if self.down:
            raise ConnectionError("broker down")
        self.producers += 1
        return FakeProducer(self)

    def events(self, topic: str | None = None) -> list[dict[str, Any]]:
        return [e for m in self.messages if topic in (None, m.topic) for e in m.events()]


class FakeProducer:
    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> FakeFuture:
        if self.kafka.raise_next:
            raise self.kafka.raise_next.pop(0)
        future = FakeFuture()
        if self.kafka.fail_next:
            future.fail(self.kafka.fail_next.pop(0))
            return future
        assert value is not None
        self.kafka.messages.append(Message(topic, key, value, dict(headers or [])))
        future.succeed()
        return future

    def close(self, timeout: float | None = None) -> None:
        self.kafka.closed += 1


def make_logger(kafka: FakeKafka, **options: Any) -> EventLogger:
    settings: dict[str, Any] = {
        "model": "fraud",
        "model_version": "v1",
        "batch_size": 10,
        "linger_ms": 10_000,
        "producer_factory": kafka.factory,
    }
    settings.update(options)
    return EventLogger("127.0.0.1:9", "predictions", **settings)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.002)


def open_gate_later(kafka: FakeKafka, delay: float = 0.1) -> None:
    """Hold connecting until ``delay`` has passed, so what follows happens during a flush."""
    gate = kafka.gate = threading.Event()
    timer = threading.Timer(delay, gate.set)
    timer.daemon = True
    timer.start()


def check_invariant(logger: EventLogger) -> None:
    s = logger.stats()
    assert s["logged"] == s["sent"] + s["dropped"] + s["failed"] + s["buffered"], s
