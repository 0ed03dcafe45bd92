"""publish(): URL parsing, routing of lines, and simulated scenarios through the real broker."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

import monitor.scenarios.publish
from monitor.scenarios.publish import PublishError, parse_kafka_url, publish
from monitor.scenarios.simulate import generate
from tests.client.broker import Record, consume_all, traceparent
from tests.kafka_broker import KafkaBroker, create_topic, free_ports


def test_public_api() -> None:
    assert monitor.scenarios.publish.__all__ == ["PublishError", "parse_kafka_url", "publish"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("kafka://127.0.0.1:9092/predictions", ("127.0.0.1:9092", "predictions")),
        ("kafka://localhost/p", ("localhost:9092", "p")),
        ("KAFKA://a:1,b:2/p.v1_x-y", ("a:1,b:2", "p.v1_x-y")),
        ("kafka://[::1]:9093/p", ("[::1]:9093", "p")),
    ],
)
def test_parse_kafka_url(url: str, expected: tuple[str, str]) -> None:
    assert parse_kafka_url(url) == expected


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("127.0.0.1:9092/predictions", "must look like kafka://"),
        ("http://127.0.0.1:9092/predictions", "scheme must be 'kafka'"),
        ("kafka:///predictions", "host is missing"),
        ("kafka://127.0.0.1:9092", "topic is missing"),
        ("kafka://127.0.0.1:9092/", "topic is missing"),
        ("kafka://127.0.0.1:port/p", "port must be a number"),
        ("kafka://127.0.0.1:70000/p", "port must be a number"),
        ("kafka://127.0.0.1:/p", "port must be a number"),
        ("kafka://:9092/p", "host must be"),
        ("kafka://a,:9092/p", "host must be"),
        ("kafka://bad host:9092/p", "host must be"),
        ("kafka://[::1/p", "IPv6"),
        ("kafka://127.0.0.1:9092/a/b", "topic must be"),
        ("kafka://127.0.0.1:9092/sp ace", "topic must be"),
        ("kafka://user:pw@127.0.0.1:9092/p", "credentials"),
        ("kafka://127.0.0.1:9092/p?acks=all", "query"),
    ],
)
def test_parse_kafka_url_names_the_wrong_part(url: str, part: str) -> None:
    with pytest.raises(ValueError, match=part.replace("(", r"\(")):
        parse_kafka_url(url)


def test_credentials_never_echoed() -> None:
    with pytest.raises(ValueError) as info:
        parse_kafka_url("kafka://user:s3cr3t@127.0.0.1:9092/p")
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize("batch", [0, -1, True, 1.5])
def test_batch_must_be_a_positive_integer(batch: Any) -> None:
    with pytest.raises(ValueError, match="batch"):
        publish([], "kafka://127.0.0.1:9092/p", batch=batch)


def test_unreachable_broker_raises_publish_error() -> None:
    (port,) = free_ports(1)
    lines = [b'{"event_id":"1","model":"m","timestamp":0,"label":1}']
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"cannot reach Kafka .* within 1 s .*no broker accepts"):
        publish(lines, f"kafka://127.0.0.1:{port}/p", connect_timeout=1)
    assert time.monotonic() - started < 5


def events_of(records: list[Record]) -> list[dict[str, Any]]:
    return [e for r in records for e in r.events()]


def topics(name: str) -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"{name}-pred-{tag}", f"{name}-labels-{tag}", f"{name}-features-{tag}"


@pytest.mark.kafka
@pytest.mark.parametrize("batch", [500, 1])
def test_publish_simulated_scenario(kafka_broker: KafkaBroker, batch: int) -> None:
    predictions, labels, _ = topics(f"sim{batch}")
    for topic in (predictions, labels):
        create_topic(kafka_broker.bootstrap, topic, 2)
    sim = generate("accuracy-drop", 3_000, seed=5, model="fraud-x")
    lines = [orjson.loads(line) for line in sim.lines()]

    sent = publish(
        sim, f"kafka://{kafka_broker.bootstrap}/{predictions}", batch, labels_topic=labels
    )

    assert sent == len(lines) == sim.truth()["lines"]
    pred_records = consume_all(kafka_broker.bootstrap, predictions)
    label_records = consume_all(kafka_broker.bootstrap, labels)
    assert {r.key for r in pred_records + label_records} == {b"fraud-x"}
    assert len({r.partition for r in pred_records}) == 1  # one model, one partition
    # Same events, same order (one key, one partition, in order).
    assert events_of(pred_records) == [e for e in lines if "prediction" in e]
    assert events_of(label_records) == [e for e in lines if "prediction" not in e]
    label_count = len(lines) - 3_000
    assert label_count > 0
    if batch == 1:
        assert len(pred_records) == 3_000 and len(label_records) == label_count
        assert not any(r.value.startswith(b'{"events"') for r in pred_records)
        assert [r.value for r in pred_records] == [
            line for line in sim.lines() if b'"prediction":' in line
        ]
    else:
        sizes = [len(r.events()) for r in pred_records]
        assert all(r.value.startswith(b'{"events":[') for r in pred_records + label_records)
        assert max(sizes) == 500 and sum(sizes) == 3_000
        assert len(pred_records) <= 3_000 // 500 + 2  # full envelopes, bar chunk and flush tails


@pytest.mark.kafka
def test_publish_lines_routes_by_kind_and_isolates_bad_lines(kafka_broker: KafkaBroker) -> None:
    predictions, labels, features = topics("lines")
    for topic in (predictions, labels, features):
        create_topic(kafka_broker.bootstrap, topic, 1)
    prediction = {
        "event_id": "p1",
        "model": "m1",
        "model_version": "v1",
        "timestamp": 0,
        "features": {"a": 1.0},
        "prediction": 0.5,
    }
    lines: list[bytes | str] = [
        orjson.dumps(prediction) + b"\n",
        b"{oops",
        b'{"event_id":"p2","model":"m1","model_version":"v1","timestamp":0,'
        b'"features":{"a":NaN},"prediction":0.5}',
        b"   ",
        b"[1, 2]",
        '{"event_id": "p1", "model": "m1", "timestamp": 1, "label": "fraud"}',
        b'{"event_id": "f1", "model": "m2", "timestamp": 1, "features": {"b": "x"}}',
    ]
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("driftwatch-tests")
    with tracer.start_as_current_span("publish") as span:
        sent = publish(
            lines,
            f"kafka://{kafka_broker.bootstrap}/{predictions}",
            batch=100,
            labels_topic=labels,
            features_topic=features,
        )
    assert sent == 6  # the blank line is not an event

    pred_records = consume_all(kafka_broker.bootstrap, predictions)
    envelopes = [r for r in pred_records if r.value.startswith(b'{"events"')]
    singles = sorted(r.value for r in pred_records if r not in envelopes)
    assert singles == [b"[1, 2]", b"{oops"]
    assert all(r.key is None for r in pred_records if r not in envelopes)
    (envelope,) = envelopes
    assert envelope.key == b"m1"
    assert b'"a":NaN' in envelope.value  # accepted in an envelope, as the consumer allows
    assert [
        e["event_id"] for e in orjson.loads(envelope.value.replace(b"NaN", b"null"))["events"]
    ] == ["p1", "p2"]
    assert {r.headers["traceparent"] for r in pred_records} == {traceparent(span).encode()}

    (label,) = events_of(consume_all(kafka_broker.bootstrap, labels))
    assert label["label"] == "fraud"
    (feature_record,) = consume_all(kafka_broker.bootstrap, features)
    assert feature_record.key == b"m2" and feature_record.events()[0]["event_id"] == "f1"
