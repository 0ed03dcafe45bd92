"""The EventLogger: prediction, feature and label events to Kafka, never blocking.

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

import math
import os
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, Literal

import orjson
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from monitor.client.producer import Producer, kafka_producer
from monitor.client.sender import Headers, Item, Sender
from monitor.client.settings import (
    MAX_BATCH,
    PASSWORD_ENV,
    PASSWORD_MECHANISMS,
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
    positive_int,
    read_password,
    topic_name,
)

__all__ = ["EventLogger"]

_JSON_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY
_PROPAGATOR: Final = TraceContextTextMapPropagator()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class EventLogger(Sender):
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
    sasl_mechanism, sasl_username, sasl_password, sasl_password_file, sasl_password_env
        SASL credentials (``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``, ...). The password
        comes from ``sasl_password``, else from the file ``sasl_password_file`` (trailing
        newline stripped), else from the environment variable named ``sasl_password_env``
        (``DRIFTWATCH_KAFKA_SASL_PASSWORD``), as the worker's ``kafka`` settings name them.
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
        sasl_password_env: str = PASSWORD_ENV,
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
        self.topic = topic_name("topic", topic)
        self.features_topic = topic_name("features_topic", features_topic)
        self.labels_topic = topic_name("labels_topic", labels_topic)
        for name, value in (("model", model), ("model_version", model_version)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
        self.model = model
        self.model_version = model_version
        self.versions: dict[str, str] | None = dict(versions) if versions else None
        self.batch_size = positive_int("batch_size", batch_size)
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
        self.max_buffer = positive_int("max_buffer", max_buffer)
        if drop not in ("oldest", "newest"):
            raise ValueError(f"drop must be 'oldest' or 'newest', got {drop!r}")
        self.drop = drop
        if max_in_flight is None:
            max_in_flight = min(self.max_buffer, max(10 * self.batch_size, 10_000))
        self.max_in_flight = positive_int("max_in_flight", max_in_flight)
        self.max_message_bytes = positive_int("max_message_bytes", max_message_bytes)
        if security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(
                f"security_protocol must be one of {', '.join(sorted(SECURITY_PROTOCOLS))}, "
                f"got {security_protocol!r}"
            )
        self.security_protocol = security_protocol
        if sasl_mechanism is not None:
            if sasl_mechanism not in SASL_MECHANISMS:
                raise ValueError(
                    f"sasl_mechanism must be one of {', '.join(sorted(SASL_MECHANISMS))}, "
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
        self._sasl_password = read_password(
            sasl_mechanism, sasl_password, sasl_password_file, sasl_password_env
        )
        if sasl_mechanism in PASSWORD_MECHANISMS and (
            not sasl_username or self._sasl_password is None
        ):
            raise ValueError(
                f"sasl_mechanism {sasl_mechanism} needs sasl_username and a password "
                f"(sasl_password, sasl_password_file or ${sasl_password_env})"
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

            producer_factory = kafka_producer
        self._producer_factory = producer_factory
        self.exit_timeout = exit_timeout
        self._key_cache: dict[str, bytes] = {}
        self._reset_state()
        self._register()

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
        item: Item = (time.monotonic(), topic, self._key(model), payload, headers, False)
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
