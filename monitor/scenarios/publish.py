"""Publish a simulated scenario (or any JSON-lines events) to Kafka.

``driftwatch simulate ... --to kafka://127.0.0.1:9092/predictions [--batch N]`` calls
:func:`publish`. The events go through :class:`monitor.client.EventLogger`'s buffer and sender
thread, so they are batched, keyed and delivered exactly as a serving process would deliver
them; only the lines are already encoded, and publishing waits for room instead of dropping.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any, Final

import orjson
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic_core import from_json

from monitor.client import EventLogger
from monitor.client.sender import Headers
from monitor.events import event_kind
from monitor.scenarios.simulate import Simulation

__all__ = ["PublishError", "parse_kafka_url", "publish"]

DEFAULT_PORT: Final[int] = 9092
_CHUNK: Final[int] = 10_000
_TOPIC_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,249}")
_HOST_RE: Final = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")
_FORMAT: Final[str] = "kafka://host:port[,host:port...]/topic"

# (topic, key, encoded event, send on its own)
_Routed = tuple[str, bytes | None, bytes, bool]


class PublishError(RuntimeError):
    """Kafka did not take every event (unreachable, or events rejected); the message says which."""


def parse_kafka_url(url: str) -> tuple[str, str]:
    """Split ``kafka://host:port[,host:port...]/topic`` into bootstrap servers and topic.

    The port defaults to 9092. Raises ``ValueError`` naming the part that is wrong.

    >>> parse_kafka_url("kafka://127.0.0.1:9092/predictions")
    ('127.0.0.1:9092', 'predictions')
    >>> parse_kafka_url("kafka://a,b:9093/p")
    ('a:9092,b:9093', 'p')
    >>> parse_kafka_url("http://127.0.0.1:9092/predictions")
    Traceback (most recent call last):
    ...
    ValueError: url scheme must be 'kafka', got 'http' in 'http://127.0.0.1:9092/predictions'
    """
    if not isinstance(url, str):
        raise ValueError(f"url must be a string like {_FORMAT}, got {url!r}")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"url must look like {_FORMAT}, got {url!r}")
    if scheme.lower() != "kafka":
        raise ValueError(f"url scheme must be 'kafka', got {scheme!r} in {url!r}")
    if "?" in rest or "#" in rest:
        raise ValueError(f"url must not have a query or fragment, got {url!r}")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        raise ValueError(
            "url must not carry credentials (user@host); configure SASL settings instead"
        )
    if not netloc:
        raise ValueError(f"url host is missing in {url!r} (expected {_FORMAT})")
    servers = []
    for server in netloc.split(","):
        host, port_text = server, ""
        if server.startswith("["):
            end = server.find("]")
            host, rest_port = server[: end + 1], server[end + 1 :]
            if end < 0 or (rest_port and not rest_port.startswith(":")):
                raise ValueError(f"url host {server!r} is not a valid [IPv6]:port in {url!r}")
            port_text = rest_port[1:]
        elif ":" in server:
            host, _, port_text = server.rpartition(":")
        if not host or not _HOST_RE.fullmatch(host):
            raise ValueError(f"url host must be a host name or address, got {host!r} in {url!r}")
        port = DEFAULT_PORT
        if port_text or server.endswith(":"):
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError(f"url port must be a number 1-65535, got {port_text!r} in {url!r}")
            port = int(port_text)
        servers.append(f"{host}:{port}")
    if not slash or not path:
        raise ValueError(f"url topic is missing in {url!r} (expected {_FORMAT})")
    if not _TOPIC_RE.fullmatch(path) or path in {".", ".."}:
        raise ValueError(
            f"url topic must be a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -), got {path!r}"
        )
    return ",".join(servers), path


def publish(
    sim_or_lines: Simulation | Iterable[bytes | str],
    url: str,
    batch: int = 500,
    *,
    labels_topic: str = "labels",
    features_topic: str = "features",
    timeout: float = 60.0,
    connect_timeout: float = 15.0,
    **logger_options: Any,
) -> int:
    """Publish every event of a simulation (or of JSON lines) to Kafka; return events sent.

    Parameters
    ----------
    sim_or_lines
        A :class:`~monitor.scenarios.simulate.Simulation`, or JSON lines (bytes or str; blank
        lines are skipped), e.g. an open JSONL file in binary mode.
    url
        ``kafka://host:port/topic``: the brokers and the topic for prediction events.
    batch
        Events per message: envelopes ``{"events": [...]}`` of up to ``batch`` events of one
        model; ``batch=1`` sends every event as its own message, without an envelope.
    labels_topic, features_topic
        Where label events (``accuracy-drop``) and feature events go.
    timeout
        Seconds to wait for Kafka to take more events, and for the final flush, before giving
        up with :class:`PublishError`.
    connect_timeout
        Seconds to wait for the first connection before giving up with :class:`PublishError`.
    logger_options
        Passed to :class:`~monitor.client.EventLogger` (security settings, ``client_id``,
        ``producer_config``, ``max_buffer``).

    Messages are keyed by the event's model. The current trace context, if any, goes into the
    message headers. A line that is not JSON (``NaN``/``Infinity`` tokens allowed, as the
    consumer allows them) or not an object is sent on its own, unwrapped and unkeyed, to the
    prediction topic, so that it cannot spoil an envelope: the consumer dead-letters it alone,
    as it would from a file. Raises ``ValueError`` for a bad ``url`` or ``batch``.
    """
    bootstrap, topic = parse_kafka_url(url)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    options: dict[str, Any] = {"max_buffer": max(20 * batch, 50_000), "drop": "newest"}
    options.update(logger_options)
    logger = EventLogger(
        bootstrap,
        topic,
        features_topic=features_topic,
        labels_topic=labels_topic,
        batch_size=batch,
        **options,
    )
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    headers: Headers | None = tuple((k, v.encode()) for k, v in carrier.items()) or None
    if isinstance(sim_or_lines, Simulation):
        chunks = _simulation_chunks(sim_or_lines, topic, labels_topic)
    else:
        chunks = _line_chunks(sim_or_lines, topic, labels_topic, features_topic)
    try:
        try:
            for i, chunk in enumerate(chunks):
                logger._put_encoded(chunk, headers=headers, timeout=timeout)
                if i == 0:
                    _wait_connected(logger, url, connect_timeout)
        except TimeoutError as exc:
            raise PublishError(f"publishing to {url} stalled: {exc}") from exc
        delivered = logger.close(timeout=timeout)
    finally:
        logger.close(timeout=0)
    stats = logger.stats()
    if not delivered:
        raise PublishError(
            f"publishing to {url}: {stats['sent']} of {stats['logged']} events delivered, "
            f"{stats['failed']} rejected, {stats['buffered']} undelivered after {timeout:g} s "
            f"(last error: {stats['last_error'] or 'none'})"
        )
    return stats["sent"]


def _wait_connected(logger: EventLogger, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (stats := logger.stats())["connected"]:
        if time.monotonic() >= deadline:
            raise PublishError(
                f"cannot reach Kafka at {url} within {timeout:g} s "
                f"(last error: {stats['last_error'] or 'none'})"
            )
        time.sleep(0.02)


def _simulation_chunks(sim: Simulation, topic: str, labels_topic: str) -> Iterator[list[_Routed]]:
    # The simulator writes a fixed template: a prediction line continues after its model with
    # "model_version", a label line with "timestamp". Every line is an object.
    key = sim.model.encode()
    model_part = b'"model":' + orjson.dumps(sim.model) + b',"'
    for lines in sim.chunks():
        out: list[_Routed] = []
        for line in lines:
            at = line.find(model_part) + len(model_part)
            is_prediction = line.startswith(b'model_version"', at)
            out.append((topic if is_prediction else labels_topic, key, line, False))
        yield out


def _line_chunks(
    lines: Iterable[bytes | str], topic: str, labels_topic: str, features_topic: str
) -> Iterator[list[_Routed]]:
    it = iter(lines)
    while chunk := list(itertools.islice(it, _CHUNK)):
        out: list[_Routed] = []
        for raw in chunk:
            line = (raw.encode() if isinstance(raw, str) else bytes(raw)).strip()
            if line:
                out.append(_route(line, topic, labels_topic, features_topic))
        yield out


def _route(line: bytes, topic: str, labels_topic: str, features_topic: str) -> _Routed:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            value = from_json(line, allow_inf_nan=True)
        except ValueError:
            return topic, None, line, True
    if not isinstance(value, dict):
        return topic, None, line, True
    kind = event_kind(value)
    model = value.get("model")
    key = model.encode() if isinstance(model, str) else None
    if kind == "label":
        return labels_topic, key, line, False
    if kind == "feature":
        return features_topic, key, line, False
    return topic, key, line, False
