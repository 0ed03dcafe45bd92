"""Hostile input against the real broker (issue 14): every kind of bad message the edge knows,
mixed into a drifting stream. The worker stays up and healthy, each bad message is
dead-lettered once with its reason, the drift alert fires when it fires without them, and the
committed offsets follow the stream."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from monitor.config import Settings
from monitor.pipeline import Pipeline
from monitor.scenarios.simulate import generate
from tests.kafka_broker import KafkaBroker, free_ports
from tests.worker_proc import Topics, Worker, committed, consume_all

pytestmark = pytest.mark.kafka

EVENTS = 40_000
PER_MESSAGE = 250
ROGUE_VERSIONS = 10_000


def _event(line: bytes, **changes: object) -> bytes:
    ev = orjson.loads(line)
    ev.update(changes)
    return orjson.dumps(ev)


def _hostile(line: bytes) -> list[tuple[str, bytes, list[str]]]:
    """(name, message value, the reasons of its dead letters in envelope order) for each
    hostile message, made from one good prediction line of the stream."""
    ev = orjson.loads(line)
    numeric = next(k for k, v in ev["features"].items() if isinstance(v, float))
    head = line[: line.index(b'"features":')]
    tail = line[line.index(b',"prediction":') :]
    feats = orjson.dumps(ev["features"])
    evil = orjson.dumps({**ev["features"], numeric: 666.0})
    deep = feats.replace(
        orjson.dumps(numeric) + b":" + orjson.dumps(ev["features"][numeric]),
        orjson.dumps(numeric) + b":" + b"[" * 1000 + b"]" * 1000,
        1,
    )
    with_probs = _event(
        line, prediction={"score": 0.5, "probabilities": {"features": ev["features"]}}
    )
    return [
        ("deep nesting", head + b'"features":' + deep + tail, ["too_deep"]),
        (
            "timestamp after 9999",
            _event(line, timestamp=253402300800000),
            ["invalid_timestamp"],
        ),
        ("far-future event", _event(line, timestamp="9999-12-31T23:59:59Z"), ["clock_skew"]),
        (
            "duplicate events key",
            b'{"events":['
            + head
            + b'"features":'
            + evil
            + tail
            + b'],"events":['
            + head
            + b'"features":0'
            + tail
            + b"]}",
            ["wrong_type"],
        ),
        (
            "features inside probabilities, a row number as features",
            b'{"events":[' + with_probs + b"," + head + b'"features":1' + tail + b"]}",
            ["wrong_type", "wrong_type"],
        ),
        (
            "duplicate features key, last invalid",
            head + b'"features":' + feats + b',"features":"x"' + tail,
            ["wrong_type"],
        ),
        (
            "invalid UTF-8 in a dropped duplicate features",
            head + b'"features":{"x":"\xff\xfe"},"features":' + feats + tail,
            ["invalid_utf8"],
        ),
        ("10 MB event_id", _event(line, event_id="e" * (10 << 20)), ["too_large"]),
        ("10 MB of whitespace", line[:-1] + b" " * (10 << 20) + b"}", ["too_large"]),
        (
            "100,000-event envelope",
            b'{"events":['
            + b",".join(
                b'{"event_id":"b%d","model":"bulk","model_version":"v","timestamp":0,'
                b'"features":{},"prediction":1}' % i
                for i in range(100_000)
            )
            + b"]}",
            ["too_large"],
        ),
        ("not UTF-8", b"\xff\xfe" + line[2:], ["invalid_utf8"]),
    ]


def _firing_starts(lines: list[bytes]) -> list[tuple[str, str]]:
    """(feature, startsAt) of the firing alerts of a clean replay of ``lines``."""
    from alerting.timefmt import iso

    p = Pipeline(Settings())
    out = []
    for k in range(0, len(lines), 4096):
        out += p.process_lines(lines[k : k + 4096], k)
    return [(t.labels["feature"], iso(t.starts_at)) for t in out if t.state.value == "firing"]


def _http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:
        return int(r.status)


def test_hostile_messages_in_a_drift_stream(
    kafka_broker: KafkaBroker, tmp_path: Path, workers: list[Worker]
) -> None:
    lines = list(generate("abrupt-shift", EVENTS, 8).lines())
    expected_firing = _firing_starts(lines)
    assert expected_firing, "the clean stream must fire"
    hostile = _hostile(lines[100])
    rogue = [
        _event(lines[i % 5000], model_version=f"rogue-{i}", event_id=f"r-{i}")
        for i in range(ROGUE_VERSIONS)
    ]

    topics = Topics.fresh("hostile")
    (port,) = free_ports(1)
    # The worker creates the topics (kafka.max_message_bytes, 16 MiB, as their limit).
    cfg = topics.config(
        tmp_path / "monitor.yaml",
        kafka_broker.bootstrap,
        2,
        extra=f"metrics:\n  listen: 127.0.0.1:{port}\n",
        # Rogue versions that never finish warm-up hold their partition's acknowledgements
        # until their collected events are checkpointed: past 1,000 messages here.
        kafka_extra="  max_unacked_messages: 1000\n",
    )
    w = Worker(cfg, tmp_path, "w").start()
    workers.append(w)
    w.wait_for(lambda s: "messages" in s)
    health = f"http://127.0.0.1:{port}/healthz"
    assert _http_status(health) == 200

    # Partition 0: the drift stream with the hostile messages after its warm-up (compiled
    # feature schema) and halfway through, and one event each of 10,000 versions in between.
    stream = [
        b'{"events":[' + b",".join(lines[k : k + PER_MESSAGE]) + b"]}"
        for k in range(0, EVENTS, PER_MESSAGE)
    ]
    cut = 40  # 10,000 events: past the 5,000-event warm-up
    per = ROGUE_VERSIONS // len(stream) + 1
    values: list[bytes] = []
    bad_offsets: dict[int, list[str]] = {}
    rogue_offsets: set[int] = set()
    for k, envelope in enumerate(stream):
        if k == cut:
            for _, v, reasons in hostile:
                bad_offsets[len(values)] = reasons
                values.append(v)
        values.append(envelope)
        for v in rogue[k * per : (k + 1) * per]:
            rogue_offsets.add(len(values))
            values.append(v)
    assert len(rogue_offsets) == ROGUE_VERSIONS
    producer = KafkaProducer(
        bootstrap_servers=kafka_broker.bootstrap, linger_ms=5, max_request_size=16 << 20
    )
    try:
        for v in values:
            producer.send(topics.predictions, key=b"fraud", value=v, partition=0)
        producer.flush(120)
    finally:
        producer.close(10)

    st = w.wait_for(lambda s: s.get("messages", 0) >= len(values), timeout=300)
    assert w.proc is not None and w.proc.poll() is None
    assert _http_status(health) == 200
    assert st["internal_errors"] == 0

    # Dead letters: each bad message once, with its reasons; the rogue versions beyond the
    # warm-up budget (limits.max_warmup_events) refused as such, each once.
    expected_letters = sum(len(r) for r in bad_offsets.values())
    kept = [k for k in st["events_by_stream"] if k.startswith("fraud/rogue-")]
    assert 0 < len(kept) < ROGUE_VERSIONS
    rogue_refused = ROGUE_VERSIONS - len(kept)
    letters = consume_all(
        kafka_broker.bootstrap, topics.dead_letter, expected_letters + rogue_refused, timeout=120
    )
    got: dict[int, list[str]] = {}
    rogue_letters: list[tuple[int, str]] = []
    seen: set[tuple[int, int, str]] = set()
    for r in letters:
        h = dict(r.headers)
        assert h["driftwatch-source-partition"] == b"0"
        offset = int(h["driftwatch-source-offset"])
        index = int(h.get("driftwatch-envelope-index", b"-1"))
        reason = h["driftwatch-reason"].decode()
        assert (offset, index, reason) not in seen  # none twice
        seen.add((offset, index, reason))
        if offset in rogue_offsets:
            rogue_letters.append((offset, reason))
        else:
            got.setdefault(offset, []).append(reason)
    assert {o: sorted(r) for o, r in got.items()} == {o: sorted(r) for o, r in bad_offsets.items()}
    assert len(rogue_letters) == rogue_refused
    assert Counter(reason for _, reason in rogue_letters) == {"warmup_full": rogue_refused}

    # The drift alert fires on the same window as without the hostile messages.
    assert st["events_by_stream"]["fraud/v1"] == EVENTS
    firing = [
        (r["labels"]["feature"], r["startsAt"])
        for r in w.alerts_records()
        if r["state"] == "firing"
    ]
    assert firing == expected_firing

    # The committed offset of the partition reaches its end, although the rogue versions
    # kept never finish their warm-up: their collected events are in their checkpoints.
    assert st["collected_checkpoints"] > 0
    end = len(values)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if committed(kafka_broker.bootstrap, topics.group, topics.predictions, 0) >= end:
            break
        time.sleep(1)
    assert committed(kafka_broker.bootstrap, topics.group, topics.predictions, 0) == end
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap)
    try:
        tp = TopicPartition(topics.predictions, 0)
        assert consumer.end_offsets([tp])[tp] == end
    finally:
        consumer.close()
