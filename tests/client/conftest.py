"""The in-memory Kafka every EventLogger test starts from."""

from __future__ import annotations

import pytest

from tests.client.fake_kafka import FakeKafka


@pytest.fixture
def kafka() -> FakeKafka:
    return FakeKafka()
