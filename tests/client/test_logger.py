"""EventLogger's settings and request path (:mod:`monitor.client.logger`): the events it
builds, their trace context, keys and versions, and the checks on its settings; then one round
trip through the real broker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

import monitor.client
from monitor.client import PASSWORD_ENV, EventLogger
from tests.client.broker import consume_all, traceparent, unique
from tests.client.fake_kafka import FEATURES, PREDICTION, FakeKafka, make_logger, wait_for
from tests.kafka_broker import KafkaBroker, create_topic


def local_tracer() -> trace.Tracer:
    # A provider of our own: the global one stays untouched for other tests.
    return TracerProvider(shutdown_on_exit=False).get_tracer("driftwatch-tests")


# ---------------------------------------------------------------------------- in-memory Kafka


def test_public_api() -> None:
    assert monitor.client.__all__ == [
        "MAX_BATCH",
        "PASSWORD_ENV",
        "EventLogger",
        "LoggerStats",
        "Producer",
        "SendFuture",
    ]


def test_envelope_carries_events_key_and_versions(kafka: FakeKafka) -> None:
    logger = make_logger(kafka, versions={"code": "abc", "data": "d1"})
    ids = [
        logger.log_prediction(FEATURES, PREDICTION, latency_ms=12.5, timestamp=1_700_000_000_000),
        logger.log_prediction(FEATURES, 0.2, versions={"data": "d2"}, event_id="mine"),
        logger.log_prediction({"x": 1}, 0.3, model="other", model_version="v9"),
        logger.log_prediction({"x": 2}, 0.4),
    ]
    assert ids[1] == "mine"
    assert len(ids[0]) == 32 and int(ids[0], 16) >= 0  # uuid4 hex
    assert logger.close(timeout=5)

    by_key = {m.key: m for m in kafka.messages}
    assert set(by_key) == {b"fraud", b"other"}
    fraud = by_key[b"fraud"]
    assert fraud.topic == "predictions" and fraud.headers == {}
    assert fraud.value.startswith(b'{"events":[')
    events = fraud.events()
    assert [e["event_id"] for e in events] == [ids[0], "mine", ids[3]]
    first = events[0]
    assert first == {
        "event_id": ids[0],
        "model": "fraud",
        "model_version": "v1",
        "timestamp": 1_700_000_000_000,
        "features": FEATURES,
        "prediction": PREDICTION,
        "latency_ms": 12.5,
        "versions": {"code": "abc", "data": "d1"},
    }
    assert events[1]["versions"] == {"code": "abc", "data": "d2"}
    assert "latency_ms" not in events[1]
    assert abs(events[2]["timestamp"] - time.time() * 1000) < 60_000
    assert by_key[b"other"].events()[0]["model_version"] == "v9"
    assert logger.stats()["sent"] == 4


def test_feature_and_label_events_go_to_their_topics(kafka: FakeKafka) -> None:
    logger = make_logger(kafka, labels_topic="truth", features_topic="feats")
    eid = logger.log_prediction(FEATURES, 0.7)
    logger.log_features({"a": 1.0}, event_id=eid)
    assert logger.log_label(eid, "fraud", timestamp="2026-01-01T00:00:00Z") == eid
    assert logger.close(timeout=5)
    assert {m.topic for m in kafka.messages} == {"predictions", "feats", "truth"}
    (label,) = kafka.events("truth")
    assert label == {
        "event_id": eid,
        "model": "fraud",
        "timestamp": "2026-01-01T00:00:00Z",
        "label": "fraud",
    }
    (feature,) = kafka.events("feats")
    assert feature["features"] == {"a": 1.0} and "prediction" not in feature


def test_messages_parse_as_driftwatch_events(kafka: FakeKafka) -> None:
    from monitor.events import Rejection, parse_message

    tracer = local_tracer()
    logger = make_logger(kafka, versions={"code": "abc"})
    with tracer.start_as_current_span("request"):
        eid = logger.log_prediction(FEATURES, PREDICTION, latency_ms=4.0)
        logger.log_features(FEATURES, event_id=eid)
    logger.log_label(eid, True)
    assert logger.close(timeout=5)
    assert len(kafka.messages) == 3
    for message in kafka.messages:
        parsed = parse_message(message.value)
        assert isinstance(parsed, list) and len(parsed) == 1
        assert not isinstance(parsed[0], Rejection), parsed[0]
        assert parsed[0]["event_id"] == eid


def test_trace_context_per_event_and_in_headers(kafka: FakeKafka) -> None:
    tracer = local_tracer()
    logger = make_logger(kafka)
    untraced_first = logger.log_prediction(FEATURES, 0.1)
    with tracer.start_as_current_span("request-a") as span_a:
        a = logger.log_prediction(FEATURES, 0.2)
    span_b = tracer.start_span("request-b")
    with trace.use_span(span_b, end_on_exit=True):
        b = logger.log_prediction(FEATURES, 0.3)
    untraced_last = logger.log_prediction(FEATURES, 0.4)
    assert logger.close(timeout=5)

    (message,) = kafka.messages
    events = {e["event_id"]: e for e in message.events()}
    assert "trace" not in events[untraced_first] and "trace" not in events[untraced_last]
    assert events[a]["trace"] == {"traceparent": traceparent(span_a)}
    assert events[b]["trace"] == {"traceparent": traceparent(span_b)}
    assert traceparent(span_a) != traceparent(span_b)
    # The message header is the context of the first traced event in it.
    assert message.headers == {"traceparent": traceparent(span_a).encode()}


def test_tracestate_travels_with_traceparent(kafka: FakeKafka) -> None:
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "abc"), ("other", "x1")]),
    )
    logger = make_logger(kafka, batch_size=1)
    with trace.use_span(NonRecordingSpan(remote)):
        logger.log_prediction(FEATURES, 0.5)
    assert logger.close(timeout=5)
    (message,) = kafka.messages
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert message.headers == {
        "traceparent": parent.encode(),
        "tracestate": b"vendor=abc,other=x1",
    }
    assert message.events()[0]["trace"] == {
        "traceparent": parent,
        "tracestate": "vendor=abc,other=x1",
    }


def test_unencodable_event_counts_failed_and_does_not_raise(kafka: FakeKafka) -> None:
    logger = make_logger(kafka)
    logger.log_prediction({"when": object()}, 0.5)
    logger.log_prediction(FEATURES, 0.5)
    assert logger.flush(timeout=5)  # everything that was buffered got delivered
    s = logger.stats()
    assert (s["logged"], s["sent"], s["failed"]) == (2, 1, 1)
    assert s["errors"] == {"encode:TypeError": 1}
    logger.close()


def test_numpy_values_are_encoded(kafka: FakeKafka) -> None:
    import numpy as np

    logger = make_logger(kafka)
    logger.log_prediction({"a": np.float32(1.5), "b": np.int64(3)}, np.float64(0.25))
    assert logger.close(timeout=5)
    (event,) = kafka.events()
    assert event["features"] == {"a": 1.5, "b": 3} and event["prediction"] == 0.25


def test_context_manager_closes(kafka: FakeKafka) -> None:
    with make_logger(kafka) as logger:
        logger.log_prediction(FEATURES, 0.5)
    assert len(kafka.events()) == 1


def test_missing_model_is_a_configuration_error(kafka: FakeKafka) -> None:
    logger = EventLogger(producer_factory=kafka.factory)
    with pytest.raises(ValueError, match="model and model_version"):
        logger.log_prediction(FEATURES, 0.5)
    with pytest.raises(ValueError, match="needs a model"):
        logger.log_label("e1", "fraud")
    assert logger.log_label("e1", "fraud", model="m") == "e1"
    logger.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 65_536}, "batch_size"),
        ({"max_buffer": -1}, "max_buffer"),
        ({"linger_ms": -1}, "linger_ms"),
        ({"drop": "random"}, "drop"),
        ({"topic": "bad topic"}, "topic"),
        ({"labels_topic": ""}, "labels_topic"),
        ({"key_by": "event"}, "key_by"),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"sasl_mechanism": "PLAIN"}, "sasl_mechanism"),
        ({"security_protocol": "SASL_SSL"}, "sasl_mechanism"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
            "password",
        ),
        ({"model": ""}, "model"),
        ({"bootstrap_servers": ""}, "bootstrap_servers"),
    ],
)
def test_invalid_settings_name_the_parameter(
    kafka: FakeKafka, options: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ValueError, match=message):
        EventLogger(producer_factory=kafka.factory, **options)


SASL = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "svc-fraud",
    "ssl_cafile": "/etc/ca.pem",
    "ssl_certfile": "/etc/cert.pem",
    "ssl_keyfile": "/etc/key.pem",
}


def connect_config(kafka: FakeKafka, **options: Any) -> tuple[EventLogger, dict[str, Any]]:
    logger = make_logger(kafka, **options)
    logger.log_prediction(FEATURES, 0.5)
    assert logger.close(timeout=5)
    return logger, kafka.configs[-1]


def test_security_settings_reach_the_producer_and_secrets_stay_hidden(
    kafka: FakeKafka, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-Pa55"
    kafka.down = True  # connection errors get logged: they must not show the secret either
    logger = make_logger(
        kafka,
        sasl_password=secret,
        client_id="svc",
        producer_config={"compression_type": "gzip"},
        **SASL,
    )
    logger.log_prediction(FEATURES, 0.5)
    wait_for(lambda: logger.stats()["send_errors"] >= 1)
    kafka.down = False
    assert logger.close(timeout=5)
    config = kafka.configs[-1]
    assert config["client_id"] == "svc" and config["compression_type"] == "gzip"
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "svc-fraud"
    assert config["sasl_plain_password"] == secret
    assert (config["ssl_cafile"], config["ssl_certfile"], config["ssl_keyfile"]) == (
        "/etc/ca.pem",
        "/etc/cert.pem",
        "/etc/key.pem",
    )
    assert "broker down" in caplog.text
    for shown in (repr(logger), str(logger), repr(vars(logger)), caplog.text):
        assert secret not in shown
    assert "SCRAM-SHA-512" in repr(logger)


def test_password_from_file_and_environment(
    kafka: FakeKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("from-file\n", encoding="utf-8")
    _, config = connect_config(kafka, sasl_password_file=secret_file, **SASL)
    assert config["sasl_plain_password"] == "from-file"

    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    _, config = connect_config(kafka, **SASL)
    assert config["sasl_plain_password"] == "from-env"

    with pytest.raises(ValueError, match="not both"):
        make_logger(kafka, sasl_password="x", sasl_password_file=secret_file, **SASL)
    with pytest.raises(ValueError, match="sasl_password_file"):
        make_logger(kafka, sasl_password_file=tmp_path / "missing", **SASL)


# ---------------------------------------------------------------------------- real broker


@pytest.mark.kafka
def test_round_trip_through_the_broker(kafka_broker: KafkaBroker) -> None:
    topic, labels = unique("predictions"), unique("labels")
    create_topic(kafka_broker.bootstrap, topic, 3)
    create_topic(kafka_broker.bootstrap, labels, 3)
    tracer = local_tracer()
    logger = EventLogger(
        kafka_broker.bootstrap,
        topic,
        labels_topic=labels,
        model="fraud",
        model_version="v3",
        versions={"code": "3f2a1c9"},
        batch_size=50,
        linger_ms=20,
    )
    logged: dict[str, tuple[str, str]] = {}
    for i in range(120):
        model = ("fraud", "churn", "credit")[i % 3]
        with tracer.start_as_current_span(f"predict-{i}") as span:
            eid = logger.log_prediction(FEATURES, {"score": i / 120}, model=model, latency_ms=3.0)
        logged[eid] = (model, traceparent(span))
    for eid in list(logged)[:10]:
        logger.log_label(eid, "legit", model=logged[eid][0])
    assert logger.flush(timeout=30)
    assert logger.close(timeout=10)

    records = consume_all(kafka_broker.bootstrap, topic)
    seen: dict[str, dict[str, Any]] = {}
    partitions: dict[bytes | None, set[int]] = {}
    for record in records:
        events = record.events()
        assert record.value.startswith(b'{"events":[') and 1 <= len(events) <= 50
        assert {e["model"].encode() for e in events} == {record.key}
        partitions.setdefault(record.key, set()).add(record.partition)
        # The header is the first event's context; each event carries its own.
        assert record.headers["traceparent"] == events[0]["trace"]["traceparent"].encode()
        for event in events:
            seen[event["event_id"]] = event
    assert set(seen) == set(logged)
    for eid, (model, parent) in logged.items():
        event = seen[eid]
        assert event["model"] == model and event["model_version"] == "v3"
        assert event["versions"] == {"code": "3f2a1c9"}
        assert event["trace"] == {"traceparent": parent}
    assert set(partitions) == {b"fraud", b"churn", b"credit"}
    assert all(len(p) == 1 for p in partitions.values()), partitions  # one model, one partition

    label_events = [e for r in consume_all(kafka_broker.bootstrap, labels) for e in r.events()]
    assert sorted(e["event_id"] for e in label_events) == sorted(list(logged)[:10])
