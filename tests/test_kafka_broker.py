"""Integration tests against the real local Kafka broker (see tests/kafka_broker.py)."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from tests.kafka_broker import KafkaBroker, create_topic

pytestmark = pytest.mark.kafka

MESSAGES = 100
PARTITIONS = 4


def test_produce_and_consume_100_messages(kafka_broker: KafkaBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = f"driftwatch-test-{uuid.uuid4().hex[:12]}"
    create_topic(kafka_broker.bootstrap, topic, PARTITIONS)

    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(topic, key=f"k{i % 10}".encode(), value=f"event-{i}".encode())
            for i in range(MESSAGES)
        ]
        producer.flush(timeout=30)
        partitions_used = {future.get(timeout=30).partition for future in futures}
    finally:
        producer.close(timeout=10)
    assert partitions_used <= set(range(PARTITIONS))
    assert len(partitions_used) > 1, "10 distinct keys should spread over several partitions"

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    received: list[str] = []
    try:
        deadline = time.monotonic() + 60.0
        while len(received) < MESSAGES and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=1000, max_records=MESSAGES)
            for records in batches.values():
                received.extend(record.value.decode() for record in records)
        assigned = {tp.partition for tp in consumer.assignment()}
    finally:
        consumer.close()

    assert assigned == set(range(PARTITIONS))
    assert len(received) == MESSAGES
    assert sorted(received) == sorted(f"event-{i}" for i in range(MESSAGES))


def test_status_reports_running(kafka_broker: KafkaBroker) -> None:
    result = kafka_broker.run_script("status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kafka: running" in result.stdout
    # The version the broker logged: the Kafka line kafka.sh was asked for (KAFKA_LINE).
    expected = {"3": "3.9.2", "4": "4.0.2"}[os.environ.get("KAFKA_LINE", "3")]
    assert f"running Kafka {expected} " in result.stdout, result.stdout
    assert f"(pid {kafka_broker.pid})" in result.stdout
    assert f"127.0.0.1:{kafka_broker.port}" in result.stdout
