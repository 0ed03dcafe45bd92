"""Run ``driftwatch run`` as a real subprocess against the test broker, and talk to Kafka.

Also a pytest plugin (loaded in ``tests/conftest.py``): the ``workers`` fixture stops every
:class:`Worker` a test appends to it. ``terminate`` stops any test subprocess by its PID,
``readyz`` reads a worker's ``/readyz`` status and ``until`` polls with a bounded wait."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


@dataclass
class Topics:
    """Unique topic names and group for one test, so tests never see each other's data."""

    predictions: str
    features: str
    labels: str
    dead_letter: str
    group: str

    @classmethod
    def fresh(cls, tag: str) -> Topics:
        u = uuid.uuid4().hex[:8]
        return cls(
            f"{tag}-pred-{u}", f"{tag}-feat-{u}", f"{tag}-lab-{u}", f"{tag}-dlq-{u}", f"{tag}-{u}"
        )

    def create(self, bootstrap: str, partitions: int) -> None:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="driftwatch-tests")
        try:
            admin.create_topics(
                [NewTopic(t, partitions, 1) for t in (self.predictions, self.features, self.labels)]
                + [NewTopic(self.dead_letter, 1, 1)]
            )
        finally:
            admin.close()

    def config(
        self, path: Path, bootstrap: str, partitions: int, extra: str = "", kafka_extra: str = ""
    ) -> Path:
        # The simulated streams happened on 2026-01-01 and are produced now: the worker judges
        # event times against the message timestamps (the broker's clock), so the bounds are
        # wide here (a century; year 1 and 9999 stay out). Stamping the messages with the
        # events' time instead would let the test broker's 1 h retention delete them.
        path.write_text(
            f"kafka:\n  bootstrap_servers: '{bootstrap}'\n  group_id: {self.group}\n"
            f"  partitions: {partitions}\n{kafka_extra}"
            f"topics:\n  predictions: {self.predictions}\n  features: {self.features}\n"
            f"  labels: {self.labels}\n  dead_letter: {self.dead_letter}\n"
            f"events:\n  max_future_skew: 36500d\n  max_age: 36500d\n" + extra,
            encoding="utf-8",
        )
        return path


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send (key, value) messages and wait for all of them; returns how many."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=8 << 20)
    n = 0
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
            n += 1
        producer.flush(60)
    finally:
        producer.close(10)
    return n


def envelopes(lines: list[bytes], size: int) -> Iterable[tuple[bytes, bytes]]:
    """Lines as batch envelopes of ``size`` events keyed by model ``fraud``."""
    for k in range(0, len(lines), size):
        yield b"fraud", b'{"events":[' + b",".join(lines[k : k + size]) + b"]}"


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Read a topic from the beginning until ``expected`` records arrived (or timeout)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
        group_id=None,
    )
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for record in consumer:
                out.append(record)
                if len(out) >= expected:
                    break
    finally:
        consumer.close()
    return out


class Worker:
    """``driftwatch run`` in a subprocess with its own alerts and stats files; its log level is
    ``DW_TEST_LOGLEVEL`` from the environment (``warning``), ``info`` to debug a rebalance."""

    def __init__(self, config: Path, workdir: Path, name: str, module: str = "monitor.cli") -> None:
        self.module = module  # what ``python -m`` runs: the CLI, or a test tool wrapping it
        self.alerts = workdir / f"{name}.alerts.jsonl"
        self.stats = workdir / f"{name}.stats.json"
        self.log = workdir / f"{name}.log"
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        self._logf = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.module,
                "run",
                "--config",
                str(self.config),
                "--alerts",
                str(self.alerts),
                "--loglevel",
                os.environ.get("DW_TEST_LOGLEVEL", "warning"),
                "--stats",
                str(self.stats),
            ],
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return self

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.stats.read_text()))
        except (OSError, ValueError):
            return {}

    def wait_for(
        self, done: Callable[[dict[str, Any]], bool], timeout: float = 120.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            st = self.status()
            if st and done(st):
                return st
            time.sleep(0.5)
        raise AssertionError(
            f"timed out; last status {self.status()}\n" + self.log.read_text()[-3000:]
        )

    def alerts_records(self) -> list[dict[str, Any]]:
        if not self.alerts.exists():
            return []
        return [json.loads(x) for x in self.alerts.read_text().splitlines() if x.strip()]

    def kill(self) -> None:
        """kill -9, as a crash."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._logf.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc)
        self._logf.close()  # also when the worker exited by itself


def terminate(proc: subprocess.Popen[bytes], group: bool = False) -> None:
    """Stop a test's subprocess by its PID: SIGTERM, and SIGKILL if it is still running after
    10 s. Nothing to do when it has already exited. With ``group``, the signals go to its
    process group (a process started with ``start_new_session=True`` and its children)."""
    if proc.poll() is not None:
        return
    send = os.killpg if group else os.kill
    send(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        send(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """The test appends each :class:`Worker` it starts; all are stopped at teardown."""
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def readyz(port: int) -> int:
    """The HTTP status of the worker's ``/readyz`` on 127.0.0.1:``port``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    """The group's committed offset of ``topic``'s ``partition`` (-1 when none)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="driftwatch-tests")
    try:
        offsets = admin.list_group_offsets({group: [TopicPartition(topic, partition)]})
    finally:
        admin.close()
    found = offsets.get(group, {}).get(TopicPartition(topic, partition))
    return int(found.offset) if found is not None else -1


def wait_committed(
    bootstrap: str, group: str, topic: str, end: int, partition: int = 0, timeout: float = 60.0
) -> int:
    """Wait until the group's committed offset of the partition reaches ``end``; returns it."""
    deadline = time.monotonic() + timeout
    found = committed(bootstrap, group, topic, partition)
    while found < end and time.monotonic() < deadline:
        time.sleep(0.5)
        found = committed(bootstrap, group, topic, partition)
    return found


def until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll ``check`` every ``every`` seconds until it returns something true, and return
    that; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}")
