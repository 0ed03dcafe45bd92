"""The Kafka seam of the EventLogger: the producer interface and kafka-python's producer.

:class:`Producer` and :class:`SendFuture` are the slice of kafka-python's ``KafkaProducer``
the sender thread uses, so a test double fits as well as the real thing.
:func:`kafka_producer` builds the real one (failing at once while no broker accepts TCP, and
closing the network client of a producer whose bootstrap fails), and :func:`is_retriable` and
:func:`message_error` sort kafka-python's errors into "try again later" and "this message can
never be sent". kafka-python is imported only when a real producer is built.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

__all__ = [
    "Producer",
    "SendFuture",
    "accepts_connections",
    "is_retriable",
    "kafka_producer",
    "message_error",
]

log = logging.getLogger("monitor.client")  # one logger name for the whole client


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


def kafka_producer(config: Mapping[str, Any]) -> Producer:
    from kafka import KafkaProducer

    from monitor.kafka_sockets import release_kafka_sockets

    release_kafka_sockets()
    # While no broker even accepts TCP, fail at once: the logger keeps its buffer and tries to
    # build a producer again later.
    servers = config["bootstrap_servers"]
    if not accepts_connections(servers, config.get("bootstrap_timeout_ms", 5_000) / 1000):
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


def accepts_connections(servers: str | list[str], timeout: float) -> bool:
    for server in servers.split(",") if isinstance(servers, str) else servers:
        try:
            with socket.create_connection(_host_port(server), timeout=min(timeout, 2.0)):
                return True
        except (OSError, ValueError):
            continue
    return False


def is_retriable(exc: BaseException) -> bool:
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


def message_error(exc: BaseException) -> bool:
    """Whether ``send`` refused this message for good (retrying it elsewhere will not help)."""
    return isinstance(exc, ValueError | TypeError) or type(exc).__name__ in _MESSAGE_ERRORS
