"""Shared fixtures: the real Kafka broker plugin."""

pytest_plugins = ["tests.kafka_broker"]
