"""Serving-side event logger: prediction, feature and label events to Kafka, never blocking.

A serving process calls :meth:`EventLogger.log_prediction` on its request path. The call encodes
the event (orjson), captures the current W3C trace context, appends it to a bounded in-memory
buffer and returns the event id; a background thread batches buffered events into envelopes
``{"events": [...]}`` and hands them to a kafka-python ``KafkaProducer``, which it creates (and
re-creates after an outage) itself, with backoff. Nothing on the request path waits for Kafka.

Delivery is at least once: an envelope that Kafka does not acknowledge with a retriable error
(broker down, delivery timeout) goes back to the front of the buffer and is sent again once a
new producer connects, so an acknowledgement lost in an outage can deliver an event twice;
consumers de-duplicate by ``event_id`` if they need to.
"""

from __future__ import annotations

import atexit
import collections
import logging
import math
import os
import re
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, Protocol, TypedDict

import orjson
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "MAX_BATCH",
    "PASSWORD_ENV",
    "EventLogger",
    "LoggerStats",
    "Producer",
    "SendFuture",
]

log = logging.getLogger(__name__)

PASSWORD_ENV: Final[str] = "DRIFTWATCH_KAFKA_SASL_PASSWORD"
"""Environment variable read for the SASL password when none is given explicitly."""

MAX_BATCH: Final[int] = 65_535
"""Largest envelope the driftwatch consumer accepts (events)."""

_SECURITY_PROTOCOLS: Final = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
_SASL_MECHANISMS: Final = frozenset(
    {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"}
)
_PASSWORD_MECHANISMS: Final = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
_TOPIC_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,249}")
_ENVELOPE_OPEN: Final = b'{"events":['
_ENVELOPE_CLOSE: Final = b"]}"
_JSON_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY
_BACKOFF_MIN_S: Final = 0.1
_BACKOFF_MAX_S: Final = 5.0
_WARN_EVERY_S: Final = 60.0
_PROPAGATOR: Final = TraceContextTextMapPropagator()

Headers = tuple[tuple[str, bytes], ...]
# A buffered event: (enqueued at, topic, key, encoded event, trace headers, send on its own).
# A plain tuple, not a class: building it is on the request path.
_Item = tuple[float, str, bytes | None, bytes, Headers | None, bool]
_T: Final = 0
_TOPIC: Final = 1
_KEY: Final = 2
_PAYLOAD: Final = 3
_HEADERS: Final = 4
_SINGLE: Final = 5


class SendFuture(Protocol):
    """What ``Producer.send`` returns: kafka-python's ``FutureRecordMetadata`` fits."""

    def add_callback(self, f: Callable[..., Any], *args: Any) -> Any: ...

    def add_errback(self, f: Callable[..., Any], *args: Any) -> Any: ...


class Producer(Protocol):
    """The slice of kafka-python's ``KafkaProducer`` the logger uses (a test double fits too)."""

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> SendFuture: ...

    def close(self, timeout: float | None = None) -> None: ...


class LoggerStats(TypedDict):
    """Counters of an :class:`EventLogger`, in events (not messages).

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


class _Secret:
    """A string that never shows in ``repr``/``str`` (the logger's attributes may be printed)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _kafka_producer(config: Mapping[str, Any]) -> Producer:
    from kafka import KafkaProducer

    from monitor.kafka_sockets import release_kafka_sockets

    release_kafka_sockets()
    # While no broker even accepts TCP, fail at once: the logger keeps its buffer and tries to
    # build a producer again later.
    servers = config["bootstrap_servers"]
    if not _accepts_connections(servers, config.get("bootstrap_timeout_ms", 5_000) / 1000):
        shown = servers if isinstance(servers, str) else ",".join(servers)
        raise ConnectionError(f"no broker accepts connections at {shown}")
    # A KafkaProducer whose bootstrap fails does not close its network client (its sockets
    # leak until garbage collection, on every reconnect attempt); keep a handle to close it.
    default_client = KafkaProducer.DEFAULT_CONFIG["kafka_client"]
    clients: list[Any] = []

    def kafka_client(**configs: Any) -> Any:
        client = default_client(**configs)
        clients.append(client)
        return client

    try:
        producer: Producer = KafkaProducer(**{"kafka_client": kafka_client, **config})
    except BaseException:
        for client in clients:
            try:
                client.close()
            except Exception as exc:  # pragma: no cover - best effort
                log.debug("closing a failed Kafka client: %s", exc)
        raise
    return producer


def _host_port(server: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or a bare host (port 9092, as kafka-python assumes)."""
    server = server.strip()
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 9092
    if server.count(":") == 1:
        host, _, port = server.partition(":")
        return host, int(port)
    return server, 9092


def _accepts_connections(servers: str | list[str], timeout: float) -> bool:
    for server in servers.split(",") if isinstance(servers, str) else servers:
        try:
            with socket.create_connection(_host_port(server), timeout=min(timeout, 2.0)):
                return True
        except (OSError, ValueError):
            continue
    return False


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _is_retriable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retriable", False))


_MESSAGE_ERRORS: Final = frozenset(
    {
        "MessageSizeTooLargeError",
        "RecordListTooLargeError",
        "InvalidTopicError",
        "InvalidRecordError",
        "TopicAuthorizationFailedError",
    }
)


def _message_error(exc: BaseException) -> bool:
    """Whether ``send`` refused this message for good (retrying it elsewhere will not help)."""
    return isinstance(exc, ValueError | TypeError) or type(exc).__name__ in _MESSAGE_ERRORS


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _topic(name: str, value: object) -> str:
    if not isinstance(value, str) or not _TOPIC_RE.fullmatch(value) or value in {".", ".."}:
        raise ValueError(
            f"{name} must be a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -), got {value!r}"
        )
    return value


_LOGGERS: weakref.WeakSet[EventLogger] = weakref.WeakSet()


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


class EventLogger:
    """Log prediction, feature and label events to Kafka from a serving process, never blocking.

    ``log_prediction`` (and ``log_features``, ``log_label``) encodes the event with orjson,
    appends it to a bounded buffer and returns its ``event_id`` at once; it never waits for
    Kafka, whether the broker is up, down or unknown. A background thread (started on the first
    call) sends buffered events in batch envelopes ``{"events": [...]}`` of up to ``batch_size``
    events, or fewer once the oldest has waited ``linger_ms``; with ``batch_size=1`` every
    event is its own message, without an envelope. An envelope holds events of one topic and
    one key and stays under ``max_message_bytes``.

    Example::

        from monitor.client import EventLogger

        events = EventLogger("127.0.0.1:9092", model="fraud", model_version="v7",
                             versions={"code": "3f2a1c9", "data": "snap-2026-01-01"})

        # In the request handler (inside its OpenTelemetry span, if any); returns at once:
        event_id = events.log_prediction({"amount": 42.5, "country": "DE"}, {"score": 0.91},
                                         latency_ms=12.3)
        events.log_label(event_id, "legit")    # later, when the ground truth is known
        events.close(timeout=10)               # at shutdown (also runs at exit): deliver

    Parameters
    ----------
    bootstrap_servers
        ``host:port`` of one or more brokers, comma separated.
    topic, features_topic, labels_topic
        Where prediction, feature and label events go.
    model, model_version, versions
        Defaults for every event; a call's own ``model``/``model_version`` win, and its
        ``versions`` are merged over these (``code``, ``data``, ``features``, free keys).
    batch_size
        Events per envelope (1: one event per message, no envelope); at most 65,535.
    linger_ms
        How long the oldest buffered event may wait for its envelope to fill.
    max_buffer
        Bound on events held (waiting in the buffer plus handed to Kafka and not yet
        acknowledged); events are held encoded, so memory is about ``max_buffer`` times the
        event size (100 MB for the default and 1 KB events). When it is full,
        ``drop="oldest"`` discards the oldest waiting event to make room and ``drop="newest"``
        discards the new one; either way ``stats()["dropped"]`` counts every discarded event.
        Events already handed to Kafka (at most ``max_in_flight``) are never discarded: they
        are retried.
    max_in_flight
        Events handed to Kafka and awaiting acknowledgement; by default
        ``min(max_buffer, max(10 * batch_size, 10_000))``.
    max_message_bytes
        Upper bound on one envelope's size; keep it under the broker's ``message.max.bytes``.
    security_protocol
        ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
    sasl_mechanism, sasl_username, sasl_password, sasl_password_file
        SASL credentials (``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``, ...). The password
        comes from ``sasl_password``, else from the file ``sasl_password_file`` (trailing
        newline stripped), else from the environment variable ``DRIFTWATCH_KAFKA_SASL_PASSWORD``.
        It is never logged and never shown by ``repr``.
    ssl_cafile, ssl_certfile, ssl_keyfile
        TLS: CA bundle to verify the brokers, client certificate and key (PEM).
    key_by
        ``"model"``: the message key is the model name, so one model's events share a partition
        and arrive in order; ``None``: no key.
    client_id
        Kafka client id (shows in broker logs and quotas).
    producer_config
        Extra ``KafkaProducer`` settings (e.g. ``compression_type``, ``acks``), applied last.
    producer_factory
        Builds the producer from the config mapping; the default builds kafka-python's
        ``KafkaProducer``. Tests pass an in-memory double.
    exit_timeout
        Seconds ``close`` may take when it runs at interpreter exit.

    Trace context
    -------------
    Each ``log_*`` call reads the current OpenTelemetry context with the W3C TraceContext
    propagator. An event logged under a valid span carries its own context in an optional field
    ``"trace": {"traceparent": ..., "tracestate": ...}`` (``tracestate`` only when non-empty);
    an event logged outside any span has no ``trace`` field. A Kafka message carries the
    ``traceparent``/``tracestate`` headers of the first traced event it holds, so tools that
    read headers see a parent, while each event's own lineage stays exact in its ``trace``
    field even when one envelope gathers events of many requests (envelopes are not split by
    trace context, which would make them one event long in a typical server).

    Outages
    -------
    While no broker answers, the sender thread re-creates the producer with backoff (0.1 s
    doubling to 5 s) and nothing leaves the buffer, so the drop policy decides exactly which
    events survive. Events already handed to Kafka when the outage begins come back to the
    front of the buffer when kafka-python gives up on them (``delivery_timeout_ms``, 30 s by
    default; set it in ``producer_config``) and are sent again after reconnecting.

    Counters (``stats()``): ``logged == sent + dropped + failed + buffered`` at all times.
    """

    def __init__(
        self,
        bootstrap_servers: str = "127.0.0.1:9092",
        topic: str = "predictions",
        *,
        features_topic: str = "features",
        labels_topic: str = "labels",
        model: str | None = None,
        model_version: str | None = None,
        versions: Mapping[str, str] | None = None,
        batch_size: int = 500,
        linger_ms: float = 50,
        max_buffer: int = 100_000,
        drop: Literal["oldest", "newest"] = "oldest",
        max_in_flight: int | None = None,
        max_message_bytes: int = 900_000,
        security_protocol: str = "PLAINTEXT",
        sasl_mechanism: str | None = None,
        sasl_username: str | None = None,
        sasl_password: str | None = None,
        sasl_password_file: str | os.PathLike[str] | None = None,
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        key_by: Literal["model"] | None = "model",
        client_id: str = "driftwatch-event-logger",
        producer_config: Mapping[str, Any] | None = None,
        producer_factory: Callable[[Mapping[str, Any]], Producer] | None = None,
        exit_timeout: float = 5.0,
    ) -> None:
        if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
            raise ValueError(
                f"bootstrap_servers must be 'host:port[,host:port...]', got {bootstrap_servers!r}"
            )
        self.bootstrap_servers = bootstrap_servers
        self.topic = _topic("topic", topic)
        self.features_topic = _topic("features_topic", features_topic)
        self.labels_topic = _topic("labels_topic", labels_topic)
        for name, value in (("model", model), ("model_version", model_version)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
        self.model = model
        self.model_version = model_version
        self.versions: dict[str, str] | None = dict(versions) if versions else None
        self.batch_size = _positive_int("batch_size", batch_size)
        if self.batch_size > MAX_BATCH:
            raise ValueError(f"batch_size must be at most {MAX_BATCH}, got {batch_size}")
        if (
            isinstance(linger_ms, bool)
            or not isinstance(linger_ms, int | float)
            or not math.isfinite(linger_ms)
            or linger_ms < 0
        ):
            raise ValueError(f"linger_ms must be a finite number >= 0, got {linger_ms!r}")
        self.linger_ms = linger_ms
        self.max_buffer = _positive_int("max_buffer", max_buffer)
        if drop not in ("oldest", "newest"):
            raise ValueError(f"drop must be 'oldest' or 'newest', got {drop!r}")
        self.drop = drop
        if max_in_flight is None:
            max_in_flight = min(self.max_buffer, max(10 * self.batch_size, 10_000))
        self.max_in_flight = _positive_int("max_in_flight", max_in_flight)
        self.max_message_bytes = _positive_int("max_message_bytes", max_message_bytes)
        if security_protocol not in _SECURITY_PROTOCOLS:
            raise ValueError(
                f"security_protocol must be one of {', '.join(sorted(_SECURITY_PROTOCOLS))}, "
                f"got {security_protocol!r}"
            )
        self.security_protocol = security_protocol
        if sasl_mechanism is not None:
            if sasl_mechanism not in _SASL_MECHANISMS:
                raise ValueError(
                    f"sasl_mechanism must be one of {', '.join(sorted(_SASL_MECHANISMS))}, "
                    f"got {sasl_mechanism!r}"
                )
            if not security_protocol.startswith("SASL_"):
                raise ValueError(
                    "sasl_mechanism needs security_protocol SASL_PLAINTEXT or SASL_SSL, "
                    f"got {security_protocol!r}"
                )
        elif security_protocol.startswith("SASL_"):
            raise ValueError(f"security_protocol {security_protocol} needs a sasl_mechanism")
        self.sasl_mechanism = sasl_mechanism
        self.sasl_username = sasl_username
        self._sasl_password = self._read_password(sasl_mechanism, sasl_password, sasl_password_file)
        if sasl_mechanism in _PASSWORD_MECHANISMS and (
            not sasl_username or self._sasl_password is None
        ):
            raise ValueError(
                f"sasl_mechanism {sasl_mechanism} needs sasl_username and a password "
                f"(sasl_password, sasl_password_file or ${PASSWORD_ENV})"
            )
        self.ssl_cafile = ssl_cafile
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        if key_by not in ("model", None):
            raise ValueError(f"key_by must be 'model' or None, got {key_by!r}")
        self.key_by = key_by
        self.client_id = client_id
        self.producer_config: dict[str, Any] = dict(producer_config or {})
        if producer_factory is None:
            # Import kafka-python now, in the caller's thread: importing it later in the sender
            # thread would hold the GIL against the first requests for ~100 ms.
            import kafka  # noqa: F401

            producer_factory = _kafka_producer
        self._producer_factory = producer_factory
        self.exit_timeout = exit_timeout
        self._key_cache: dict[str, bytes] = {}
        self._reset_state()
        _LOGGERS.add(self)

    @staticmethod
    def _read_password(
        mechanism: str | None, password: str | None, password_file: str | os.PathLike[str] | None
    ) -> _Secret | None:
        if password is not None and password_file is not None:
            raise ValueError("give sasl_password or sasl_password_file, not both")
        if password is not None:
            return _Secret(password)
        if password_file is not None:
            try:
                with open(password_file, encoding="utf-8") as fh:
                    return _Secret(fh.read().rstrip("\r\n"))
            except OSError as exc:
                raise ValueError(
                    f"sasl_password_file: cannot read {os.fspath(password_file)!r}: {exc.strerror}"
                ) from exc
        if mechanism in _PASSWORD_MECHANISMS and PASSWORD_ENV in os.environ:
            return _Secret(os.environ[PASSWORD_ENV])
        return None

    def _reset_state(self) -> None:
        lock = threading.Lock()
        self._lock = lock
        self._wake_sender = threading.Condition(lock)  # only the sender thread waits here
        self._changed = threading.Condition(lock)  # flush() and blocking puts wait here
        self._buf: collections.deque[_Item] = collections.deque()
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

    def _reset_after_fork(self) -> None:
        # The parent's thread, producer and in-flight batches do not exist in a forked child, and
        # its buffered events are the parent's to send: the child starts empty.
        self._reset_state()

    def __repr__(self) -> str:
        sasl = f", sasl_mechanism={self.sasl_mechanism!r}" if self.sasl_mechanism else ""
        return (
            f"EventLogger(bootstrap_servers={self.bootstrap_servers!r}, topic={self.topic!r}, "
            f"model={self.model!r}, batch_size={self.batch_size}, max_buffer={self.max_buffer}, "
            f"drop={self.drop!r}, security_protocol={self.security_protocol!r}{sasl})"
        )

    def __enter__(self) -> EventLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ request path

    def log_prediction(
        self,
        features: Mapping[str, Any],
        prediction: float | Mapping[str, Any],
        *,
        latency_ms: float | None = None,
        event_id: str | None = None,
        timestamp: int | float | str | datetime | None = None,
        model: str | None = None,
        model_version: str | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> str:
        """Buffer a prediction event and return its ``event_id`` (a uuid4 hex by default).

        ``features`` maps names to number, string, bool or None; ``prediction`` is a number or
        a mapping with ``score``, ``label`` and/or ``probabilities``. ``timestamp`` is epoch
        milliseconds, an RFC 3339 string or a datetime (default: now). Raises ``ValueError``
        only when no model or model version is known (a configuration error); never for
        transport reasons.
        """
        model = model or self.model
        model_version = model_version or self.model_version
        if model is None or model_version is None:
            raise ValueError(
                "log_prediction needs model and model_version (here or in EventLogger(...))"
            )
        eid = event_id if event_id is not None else uuid.uuid4().hex
        event: dict[str, Any] = {
            "event_id": eid,
            "model": model,
            "model_version": model_version,
            "timestamp": _now_ms() if timestamp is None else timestamp,
            "features": features,
            "prediction": prediction,
        }
        if latency_ms is not None:
            event["latency_ms"] = latency_ms
        merged = self._versions(versions)
        if merged:
            event["versions"] = merged
        self._log(self.topic, model, event)
        return eid

    def log_features(
        self,
        features: Mapping[str, Any],
        *,
        event_id: str | None = None,
        timestamp: int | float | str | datetime | None = None,
        model: str | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> str:
        """Buffer a feature event (a feature vector logged on its own) for ``features_topic``."""
        model = model or self.model
        if model is None:
            raise ValueError("log_features needs a model (here or in EventLogger(...))")
        eid = event_id if event_id is not None else uuid.uuid4().hex
        event: dict[str, Any] = {
            "event_id": eid,
            "model": model,
            "timestamp": _now_ms() if timestamp is None else timestamp,
            "features": features,
        }
        merged = self._versions(versions)
        if merged:
            event["versions"] = merged
        self._log(self.features_topic, model, event)
        return eid

    def log_label(
        self,
        event_id: str,
        label: str | bool | float,
        *,
        timestamp: int | float | str | datetime | None = None,
        model: str | None = None,
    ) -> str:
        """Buffer the ground truth for the prediction ``event_id``, for ``labels_topic``."""
        model = model or self.model
        if model is None:
            raise ValueError("log_label needs a model (here or in EventLogger(...))")
        event: dict[str, Any] = {
            "event_id": event_id,
            "model": model,
            "timestamp": _now_ms() if timestamp is None else timestamp,
            "label": label,
        }
        self._log(self.labels_topic, model, event)
        return event_id

    def _versions(self, versions: Mapping[str, str] | None) -> Mapping[str, str] | None:
        if versions is None:
            return self.versions
        if self.versions is None:
            return versions
        return {**self.versions, **versions}

    def _key(self, model: str) -> bytes | None:
        if self.key_by is None:
            return None
        key = self._key_cache.get(model)
        if key is None:
            key = model.encode()
            if len(self._key_cache) < 10_000:
                self._key_cache[model] = key
        return key

    def _log(self, topic: str, model: str, event: dict[str, Any]) -> None:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        headers: Headers | None = None
        if carrier:
            event["trace"] = carrier
            headers = tuple((name, value.encode()) for name, value in carrier.items())
        try:
            payload = orjson.dumps(event, option=_JSON_OPTIONS)
        except TypeError as exc:  # orjson.JSONEncodeError: the event's values, not transport
            with self._lock:
                self._logged += 1
                self._failed += 1
                self._error("encode", exc)
            return
        item: _Item = (time.monotonic(), topic, self._key(model), payload, headers, False)
        with self._lock:
            self._logged += 1
            if self._closed:
                self._dropped += 1
                return
            buf = self._buf
            if len(buf) + self._in_flight >= self.max_buffer:
                if self.drop == "newest" or not buf:
                    self._dropped += 1
                    return
                buf.popleft()
                self._dropped += 1
            buf.append(item)
            n = len(buf)
            if self._thread is None:
                self._start()
            elif n == 1 or n % self.batch_size == 0:
                self._wake_sender.notify()

    def _put_encoded(
        self,
        items: Iterable[tuple[str, bytes | None, bytes, bool]],
        *,
        headers: Headers | None = None,
        timeout: float = 60.0,
    ) -> int:
        """Buffer already-encoded events ``(topic, key, payload, single)``, waiting for room.

        For bulk publishing (:mod:`monitor.publish`): instead of dropping, wait while the buffer
        is full; raise ``TimeoutError`` when no room appears for ``timeout`` seconds. ``single``
        sends that payload as its own message even when batching. Returns events buffered.
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
        config: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",")],
            "client_id": self.client_id,
            "acks": "all",
            "linger_ms": 5,
            "batch_size": 256 * 1024,
            "max_request_size": max(1_048_576, self.max_message_bytes + 64 * 1024),
            # Both only ever block the sender thread, never the request path.
            "max_block_ms": 10_000,
            "bootstrap_timeout_ms": 5_000,
            # An outage is noticed (and in-flight events come back to the buffer, where the
            # drop policy applies) after delivery_timeout_ms rather than kafka-python's 2 min.
            "request_timeout_ms": 10_000,
            "delivery_timeout_ms": 30_000,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism is not None:
            config["sasl_mechanism"] = self.sasl_mechanism
            if self.sasl_username is not None:
                config["sasl_plain_username"] = self.sasl_username
            if self._sasl_password is not None:
                config["sasl_plain_password"] = self._sasl_password.get()
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                config[name] = value
        config.update(self.producer_config)
        return config

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

    def _next_action(self, producer: Producer | None) -> tuple[str, list[_Item]]:
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
        self, batch: list[_Item]
    ) -> list[tuple[str, bytes | None, bytes, Headers | None, list[_Item]]]:
        """Group a batch by (topic, key) and pack envelopes: one envelope, one topic and key."""
        groups: dict[tuple[str, bytes | None], list[_Item]] = {}
        for item in batch:
            groups.setdefault((item[_TOPIC], item[_KEY]), []).append(item)
        limit = self.max_message_bytes - len(_ENVELOPE_OPEN) - len(_ENVELOPE_CLOSE)
        out: list[tuple[str, bytes | None, bytes, Headers | None, list[_Item]]] = []
        for (topic, key), items in groups.items():
            chunk: list[_Item] = []
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
        topic: str, key: bytes | None, chunk: list[_Item]
    ) -> tuple[str, bytes | None, bytes, Headers | None, list[_Item]]:
        value = _ENVELOPE_OPEN + b",".join(item[_PAYLOAD] for item in chunk) + _ENVELOPE_CLOSE
        headers = next((item[_HEADERS] for item in chunk if item[_HEADERS]), None)
        return topic, key, value, headers, chunk

    def _dispatch(self, producer: Producer, batch: list[_Item]) -> None:
        messages = self._messages(batch)
        for i, (topic, key, value, headers, items) in enumerate(messages):
            try:
                future = producer.send(
                    topic, value=value, key=key, headers=list(headers) if headers else None
                )
            except Exception as exc:
                if not _message_error(exc):
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

    def _requeue(self, items: list[_Item]) -> None:
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

    def _on_failed(self, items: list[_Item], exc: BaseException) -> None:
        with self._lock:
            self._error("delivery", exc)
            if _is_retriable(exc):
                self._requeue(items)
                self._connected = False
                self._reconnect = True
                self._schedule_retry()
            else:
                self._in_flight -= len(items)
                self._failed += len(items)
            self._changed.notify_all()
            self._wake_sender.notify()
