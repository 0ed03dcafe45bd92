"""In-memory stand-ins shared by the adapter's unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Msg:
    """A Kafka message as :class:`monitor.kafka_adapter.KafkaAdapter` reads it; Faust gives
    ``timestamp`` in seconds (``None``: a message without one)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes = b""
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp: float | None = None
