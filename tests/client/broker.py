"""Reading back what the EventLogger wrote to a real broker (tests marked ``kafka``), and the
``traceparent`` those records should carry."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span

from tests.client.fake_kafka import message_events


@dataclass(frozen=True)
class Record:
    partition: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    def events(self) -> list[dict[str, Any]]:
        return message_events(self.value)


def consume_all(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Record]:
    """Every message in ``topic`` up to its end offsets now, partition by partition."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            assert time.monotonic() < deadline, f"no metadata for {topic}"
            time.sleep(0.1)
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Record] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(
                    Record(r.partition, r.key, r.value, dict(r.headers or [])) for r in batch
                )
        return records
    finally:
        consumer.close()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def traceparent(span: Span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
