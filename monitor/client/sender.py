"""The EventLogger's buffer and sender thread: batching, delivery, retry and reconnect.

:class:`Sender` holds the bounded buffer of encoded events and the counters, and runs the
background thread that packs buffered events into envelopes ``{"events": [...]}`` (one topic
and key each, under ``max_message_bytes``) and hands them to a
:class:`~monitor.client.producer.Producer`. Events whose delivery fails with a retriable error
go back to the front of the buffer, and the producer is re-created with backoff (0.1 s doubling
to 5 s) after an outage. It also owns ``stats``, ``flush`` and ``close``, resets loggers in a
forked child and closes them at interpreter exit. :class:`~monitor.client.EventLogger` adds the
settings and the request path on top.
"""

from __future__ import annotations

import atexit
import collections
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypedDict

from monitor.client.producer import Producer, is_retriable, message_error

__all__ = ["Headers", "Item", "LoggerStats", "Sender"]

log = logging.getLogger("monitor.client")

_ENVELOPE_OPEN: Final = b'{"events":['
_ENVELOPE_CLOSE: Final = b"]}"
_BACKOFF_MIN_S: Final = 0.1
_BACKOFF_MAX_S: Final = 5.0
_WARN_EVERY_S: Final = 60.0

Headers = tuple[tuple[str, bytes], ...]
# A buffered event: (enqueued at, topic, key, encoded event, trace headers, send on its own).
# A plain tuple, not a class: building it is on the request path.
Item = tuple[float, str, bytes | None, bytes, Headers | None, bool]
_T: Final = 0
_TOPIC: Final = 1
_KEY: Final = 2
_PAYLOAD: Final = 3
_HEADERS: Final = 4
_SINGLE: Final = 5


class LoggerStats(TypedDict):
    """Counters of an :class:`~monitor.client.EventLogger`, in events (not messages).

    At any moment ``logged == sent + dropped + failed + buffered``.
    """

    logged: int
    """Events passed to ``log_*`` (including those then dropped or failed)."""
    sent: int
    """Events acknowledged by Kafka."""
    dropped: int
    """Events discarded because the buffer was full (or the logger closed)."""
    failed: int
    """Events that cannot be delivered: not JSON-encodable, or rejected by Kafka for good."""
    buffered: int
    """Events waiting in the buffer or handed to Kafka and not yet acknowledged."""
    in_flight: int
    """Of ``buffered``: handed to Kafka, awaiting acknowledgement."""
    send_errors: int
    """Errors met while connecting or sending (each retry counts)."""
    errors: dict[str, int]
    """``send_errors`` by ``stage:ErrorType``; stages: connect, send, delivery, encode."""
    connected: bool
    """Whether a producer is up and its last delivery did not fail."""
    last_error: str | None
    """The most recent error, for people."""


_LOGGERS: weakref.WeakSet[Sender] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for logger in list(_LOGGERS):
        logger._reset_after_fork()


def _close_at_exit() -> None:
    for logger in list(_LOGGERS):
        if logger._thread is not None and not logger._closed:
            logger.close(timeout=logger.exit_timeout)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)


class Sender:
    """The buffer, counters and sender thread under :class:`~monitor.client.EventLogger`.

    Not used on its own: the subclass validates and sets the attributes declared here, builds
    the producer's settings (:meth:`_producer_settings`) and calls :meth:`_reset_state`.
    """

    bootstrap_servers: str
    batch_size: int
    linger_ms: float
    max_buffer: int
    max_in_flight: int
    max_message_bytes: int
    exit_timeout: float
    _producer_factory: Callable[[Mapping[str, Any]], Producer]

    def _reset_state(self) -> None:
        lock = threading.Lock()
        self._lock = lock
        self._wake_sender = threading.Condition(lock)  # only the sender thread waits here
        self._changed = threading.Condition(lock)  # flush() and blocking puts wait here
        self._buf: collections.deque[Item] = collections.deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._close_deadline = math.inf
        self._flushing = 0
        self._in_flight = 0
        self._logged = 0
        self._sent = 0
        self._dropped = 0
        self._failed = 0
        self._send_errors = 0
        self._errors: collections.Counter[str] = collections.Counter()
        self._last_error: str | None = None
        self._connected = False
        self._reconnect = False  # a delivery failed: replace the producer once nothing is in flight
        self._retry_at = 0.0
        self._backoff = _BACKOFF_MIN_S
        self._warned_at: dict[str, float] = {}

    def _register(self) -> None:
        # Weakly held: a logger nobody references is neither kept alive nor closed at exit.
        _LOGGERS.add(self)

    def _reset_after_fork(self) -> None:
        # The parent's thread, producer and in-flight batches do not exist in a forked child, and
        # its buffered events are the parent's to send: the child starts empty.
        self._reset_state()

    def _put_encoded(
        self,
        items: Iterable[tuple[str, bytes | None, bytes, bool]],
        *,
        headers: Headers | None = None,
        timeout: float = 60.0,
    ) -> int:
        """Buffer already-encoded events ``(topic, key, payload, single)``, waiting for room.

        For bulk publishing (:mod:`monitor.scenarios.publish`): instead of dropping, wait while
        the buffer is full; raise ``TimeoutError`` when no room appears for ``timeout`` seconds.
        ``single`` sends that payload as its own message even when batching. Returns events
        buffered.
        """
        count = 0
        with self._lock:
            if self._closed:
                raise RuntimeError("the EventLogger is closed")
            if self._thread is None:
                self._start()
            buf = self._buf
            batch = self.batch_size
            now = time.monotonic()
            for topic, key, payload, single in items:
                if len(buf) + self._in_flight >= self.max_buffer:
                    self._wake_sender.notify()
                    deadline = time.monotonic() + timeout
                    while len(buf) + self._in_flight >= self.max_buffer:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise TimeoutError(
                                f"no room in the buffer for {timeout:g} s: Kafka at "
                                f"{self.bootstrap_servers} is not taking events "
                                f"(last error: {self._last_error or 'none'})"
                            )
                        self._changed.wait(remaining)
                    now = time.monotonic()
                buf.append((now, topic, key, payload, headers, single))
                self._logged += 1
                count += 1
                if len(buf) % batch == 0:
                    self._wake_sender.notify()
            self._wake_sender.notify()
        return count

    # ------------------------------------------------------------------ control

    def stats(self) -> LoggerStats:
        """A consistent snapshot of the counters (see :class:`LoggerStats`)."""
        with self._lock:
            return LoggerStats(
                logged=self._logged,
                sent=self._sent,
                dropped=self._dropped,
                failed=self._failed,
                buffered=len(self._buf) + self._in_flight,
                in_flight=self._in_flight,
                send_errors=self._send_errors,
                errors=dict(self._errors),
                connected=self._connected,
                last_error=self._last_error,
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is buffered now, ignoring ``linger_ms``; wait up to ``timeout`` seconds.

        Returns True when every event logged before the call has been acknowledged by Kafka and
        none was dropped or failed meanwhile; False on timeout (the events stay buffered and
        keep being retried). Waits on counters, so with other threads logging concurrently it
        may return once as many events as were logged before the call have been settled.
        """
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._logged
            lost_before = self._dropped + self._failed
            self._flushing += 1
            self._wake_sender.notify()
            try:
                while self._sent + self._dropped + self._failed < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._changed.wait(None if remaining == math.inf else remaining)
            finally:
                self._flushing -= 1
            return self._dropped + self._failed == lost_before

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush (up to ``timeout`` seconds), stop the sender thread and close the producer.

        Returns whether everything was delivered. Events logged after ``close`` are counted as
        dropped. Runs at interpreter exit with ``exit_timeout`` for loggers still open.
        """
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        delivered = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._close_deadline = deadline
            self._wake_sender.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            remaining = deadline - time.monotonic()
            thread.join(None if remaining == math.inf else max(remaining, 0.0))
        _LOGGERS.discard(self)
        with self._lock:
            return delivered and len(self._buf) + self._in_flight == 0

    # ------------------------------------------------------------------ sender thread

    def _start(self) -> None:
        # Called with the lock held, on the first event.
        thread = threading.Thread(target=self._run, name="driftwatch-event-logger", daemon=True)
        self._thread = thread
        thread.start()

    def _error(self, stage: str, exc: BaseException) -> None:
        """Count an error and warn (rate-limited per kind); call with the lock held."""
        kind = f"{stage}:{type(exc).__name__}"
        self._send_errors += 1
        self._errors[kind] += 1
        text = str(exc)
        if not text.startswith(type(exc).__name__):
            text = f"{type(exc).__name__}: {text}"
        self._last_error = f"{stage}: {text}"
        now = time.monotonic()
        if now - self._warned_at.get(kind, -math.inf) >= _WARN_EVERY_S:
            self._warned_at[kind] = now
            log.warning(
                "EventLogger (%s): %s; %d events buffered",
                self.bootstrap_servers,
                self._last_error,
                len(self._buf) + self._in_flight,
            )

    def _producer_settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def _run(self) -> None:
        producer: Producer | None = None
        try:
            while True:
                action, batch = self._next_action(producer)
                if action == "exit":
                    break
                if action == "connect":
                    producer = self._connect()
                elif action == "replace":
                    assert producer is not None
                    self._close_producer(producer, 0.0)
                    producer = None
                elif producer is not None:
                    self._dispatch(producer, batch)
        except BaseException:  # pragma: no cover - a bug; say so rather than die silently
            log.exception("EventLogger sender thread crashed; events stay buffered")
            raise
        finally:
            if producer is not None:
                remaining = self._close_deadline - time.monotonic()
                self._close_producer(producer, max(0.0, min(remaining, 30.0)))

    def _next_action(self, producer: Producer | None) -> tuple[str, list[Item]]:
        """Wait for something to do: connect, replace the producer, send a batch, or exit."""
        with self._lock:
            while True:
                now = time.monotonic()
                buf = self._buf
                if self._closed and (
                    (not buf and self._in_flight == 0) or now >= self._close_deadline
                ):
                    return "exit", []
                timeout: float | None = None
                if self._closed:
                    timeout = self._close_deadline - now
                if producer is not None and self._reconnect:
                    if self._in_flight == 0:
                        self._reconnect = False
                        return "replace", []
                elif now < self._retry_at:
                    wait = self._retry_at - now
                    timeout = wait if timeout is None else min(timeout, wait)
                elif buf and producer is None:
                    return "connect", []
                elif buf:
                    room = self.max_in_flight - self._in_flight
                    urgent = self._closed or self._flushing > 0
                    linger_left = buf[0][_T] + self.linger_ms / 1000.0 - now
                    n = min(len(buf), room)
                    if not urgent and linger_left > 0:
                        n -= n % self.batch_size
                        if n == 0 and room > 0:
                            timeout = linger_left if timeout is None else min(timeout, linger_left)
                    if n > 0:
                        batch = [buf.popleft() for _ in range(n)]
                        self._in_flight += n
                        return "send", batch
                if timeout is not None and timeout <= 0:
                    continue
                self._wake_sender.wait(timeout)

    def _connect(self) -> Producer | None:
        try:
            producer = self._producer_factory(self._producer_settings())
        except Exception as exc:
            with self._lock:
                self._connected = False
                self._error("connect", exc)
                self._schedule_retry()
            return None
        with self._lock:
            if not self._connected:
                log.info("EventLogger connected to %s", self.bootstrap_servers)
            self._connected = True
            self._reconnect = False
        return producer

    def _schedule_retry(self) -> None:
        # With the lock held.
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2.0, _BACKOFF_MAX_S)

    def _close_producer(self, producer: Producer, timeout: float) -> None:
        try:
            producer.close(timeout=timeout)
        except Exception as exc:
            log.debug("closing the Kafka producer: %s", exc)

    def _messages(
        self, batch: list[Item]
    ) -> list[tuple[str, bytes | None, bytes, Headers | None, list[Item]]]:
        """Group a batch by (topic, key) and pack envelopes: one envelope, one topic and key."""
        groups: dict[tuple[str, bytes | None], list[Item]] = {}
        for item in batch:
            groups.setdefault((item[_TOPIC], item[_KEY]), []).append(item)
        limit = self.max_message_bytes - len(_ENVELOPE_OPEN) - len(_ENVELOPE_CLOSE)
        out: list[tuple[str, bytes | None, bytes, Headers | None, list[Item]]] = []
        for (topic, key), items in groups.items():
            chunk: list[Item] = []
            size = 0
            for item in items:
                if self.batch_size == 1 or item[_SINGLE]:
                    out.append((topic, key, item[_PAYLOAD], item[_HEADERS], [item]))
                    continue
                n = len(item[_PAYLOAD]) + 1
                if chunk and (len(chunk) >= self.batch_size or size + n > limit):
                    out.append(self._envelope(topic, key, chunk))
                    chunk, size = [], 0
                chunk.append(item)
                size += n
            if chunk:
                out.append(self._envelope(topic, key, chunk))
        return out

    @staticmethod
    def _envelope(
        topic: str, key: bytes | None, chunk: list[Item]
    ) -> tuple[str, bytes | None, bytes, Headers | None, list[Item]]:
        value = _ENVELOPE_OPEN + b",".join(item[_PAYLOAD] for item in chunk) + _ENVELOPE_CLOSE
        headers = next((item[_HEADERS] for item in chunk if item[_HEADERS]), None)
        return topic, key, value, headers, chunk

    def _dispatch(self, producer: Producer, batch: list[Item]) -> None:
        messages = self._messages(batch)
        for i, (topic, key, value, headers, items) in enumerate(messages):
            try:
                future = producer.send(
                    topic, value=value, key=key, headers=list(headers) if headers else None
                )
            except Exception as exc:
                if not message_error(exc):
                    # Metadata unavailable, or the producer broke: put this and the rest back
                    # and connect anew.
                    rest = [item for message in messages[i:] for item in message[4]]
                    with self._lock:
                        self._requeue(rest)
                        self._error("send", exc)
                        self._connected = False
                        self._reconnect = True
                        self._schedule_retry()
                        self._wake_sender.notify()
                    return
                # The message itself cannot be sent (e.g. larger than max_request_size).
                with self._lock:
                    self._in_flight -= len(items)
                    self._failed += len(items)
                    self._error("send", exc)
                    self._changed.notify_all()
                continue
            future.add_callback(self._on_delivered, len(items))
            future.add_errback(self._on_failed, items)

    def _requeue(self, items: list[Item]) -> None:
        # With the lock held: in-flight events go back to the front, oldest first, where
        # drop="oldest" can evict them.
        self._in_flight -= len(items)
        self._buf.extendleft(reversed(items))

    def _on_delivered(self, count: int, _metadata: object) -> None:
        with self._lock:
            self._in_flight -= count
            self._sent += count
            self._backoff = _BACKOFF_MIN_S
            self._changed.notify_all()
            self._wake_sender.notify()

    def _on_failed(self, items: list[Item], exc: BaseException) -> None:
        with self._lock:
            self._error("delivery", exc)
            if is_retriable(exc):
                self._requeue(items)
                self._connected = False
                self._reconnect = True
                self._schedule_retry()
            else:
                self._in_flight -= len(items)
                self._failed += len(items)
            self._changed.notify_all()
            self._wake_sender.notify()
