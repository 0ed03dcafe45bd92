"""Tracing without Kafka: consumer and alert spans through the real adapter and pipeline
(in-memory span exporter), link sampling and the alert annotations. The header getter is tested
in ``test_trace_context.py``, the exporter's counting in ``test_span_export.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from alerting.types import Transition
from monitor.config import settings_from_mapping
from monitor.http_server import Observability
from monitor.kafka_adapter import KafkaAdapter
from monitor.pipeline import Pipeline
from monitor.scenarios.simulate import generate
from tests.doubles import Msg

TOPIC = "predictions"


def traceparent(i: int) -> str:
    return f"00-{i + 1:032x}-{i + 1:016x}-01"


def make_messages(lines: list[bytes], size: int, bad_header_every: int = 0) -> list[Msg]:
    """Envelopes of ``size`` events, each event with its own ``trace`` field; the header
    carries the first event's context (as ``monitor.client`` does)."""
    out = []
    for k, start in enumerate(range(0, len(lines), size)):
        events = []
        for i in range(start, min(start + size, len(lines))):
            ev = orjson.loads(lines[i])
            ev["trace"] = {"traceparent": traceparent(i), "tracestate": "dw=1"}
            events.append(ev)
        header = traceparent(start).encode()
        if bad_header_every and k % bad_header_every == 1:
            header = b"00-not-a-trace"
        body = orjson.dumps({"events": events})
        out.append(Msg(TOPIC, 0, k, b"fraud", body, [("traceparent", header)]))
    return out


SETTINGS = {
    "window": {"size": 500},
    "reference": {"warmup_events": 2000},
    "alerts": {"FeatureDrift": {"for": "10s"}},
    "kafka": {"group_id": "dw-test"},
    "tracing": {"trace_url": "http://traces.example/trace/{trace_id}?span={span_id}"},
}


@dataclass
class Run:
    obs: Observability
    exporter: InMemorySpanExporter
    transitions: list[Transition]
    lines: int

    def spans(self) -> tuple[ReadableSpan, ...]:
        assert self.obs.provider is not None
        self.obs.provider.force_flush()
        return self.exporter.get_finished_spans()


def run_adapter(
    messages: Sequence[Msg],
    settings: dict[str, object],
    batches: int = 0,
    acked: list[int] | None = None,
    dead: list[bytes] | None = None,
) -> Run:
    """Feed ``messages`` through a real adapter: one by one (``handle``), or with
    ``batches=k`` as the worker's agent does (``add``, then ``flush`` every ``k`` messages)."""
    cfg = settings_from_mapping(settings)
    exporter = InMemorySpanExporter()
    obs = Observability(cfg, exporter=exporter)
    pipeline = Pipeline(cfg, observers=obs.observers, checkpointing=True)
    seen: list[Transition] = []

    class Sink:
        def send(self, transitions: list[Transition]) -> None:
            seen.extend(transitions)

        def close(self) -> None:
            pass

    async def dead_letter(key: bytes | None, value: bytes, headers: object) -> None:
        if dead is not None:
            dead.append(value)

    adapter = KafkaAdapter(pipeline, {}, dead_letter, [Sink(), *obs.sinks], observer=obs)
    obs.attach(pipeline, adapter)

    def ack_of(m: Msg) -> Any:
        return (lambda: acked.append(m.offset)) if acked is not None else (lambda: None)

    async def feed() -> None:
        for k, m in enumerate(messages):
            if not batches:
                await adapter.handle(m, m.value, ack_of(m))
            elif adapter.add(m, m.value, ack_of(m)) or k % batches == batches - 1:
                await adapter.flush()
        await adapter.flush()

    asyncio.run(feed())
    return Run(obs, exporter, seen, sum(1 for _ in messages))


@pytest.fixture(scope="module")
def drift_run() -> Iterator[Run]:
    lines = list(generate("abrupt-shift", 8000, 5, onset=0.4).lines())
    run = run_adapter(make_messages(lines, 250, bad_header_every=4), SETTINGS)
    yield run
    run.obs.close()


def test_one_consumer_span_per_message_with_semconv_attributes(drift_run: Run) -> None:
    consumer = [s for s in drift_run.spans() if s.kind is SpanKind.CONSUMER]
    assert len(consumer) == drift_run.lines
    span = consumer[3]
    assert span.name == f"process {TOPIC}"
    a = span.attributes or {}
    assert a["messaging.system"] == "kafka"
    assert a["messaging.operation.name"] == "process"
    assert a["messaging.operation.type"] == "process"
    assert a["messaging.destination.name"] == TOPIC
    assert a["messaging.destination.partition.id"] == "0"
    assert a["messaging.consumer.group.name"] == "dw-test"
    assert a["messaging.kafka.offset"] == 3
    assert a["messaging.kafka.message.key"] == "fraud"
    assert a["driftwatch.events.accepted"] == 250
    assert "messaging.batch.message_count" not in a  # one Kafka message, not a batch
    resource = span.resource.attributes
    assert resource["service.name"] == "driftwatch"
    assert resource["service.version"]
    assert resource["vcs.ref.head.revision"]


def test_links_are_sampled_to_the_limit_and_carry_offsets(drift_run: Run) -> None:
    consumer = [s for s in drift_run.spans() if s.kind is SpanKind.CONSUMER]
    for span in consumer:
        assert span.dropped_links == 0
        assert 0 < len(span.links) <= 32
        attrs: dict[str, Any] = dict(span.attributes or {})
        offset = int(attrs["messaging.kafka.offset"])
        assert all(dict(x.attributes or {})["messaging.kafka.offset"] == offset for x in span.links)
        ids = [link.context.trace_id for link in span.links]
        assert len(ids) == len(set(ids))
        first = offset * 250
        assert all(first < i <= first + 250 for i in ids)  # this message's events only
    # A valid header is one of the links (with the partition); a malformed one adds none.
    good = consumer[0].links[0]
    assert dict(good.attributes or {})["messaging.destination.partition.id"] == "0"
    assert good.context.trace_id == 1
    bad = consumer[1]
    assert all("messaging.destination.partition.id" not in (x.attributes or {}) for x in bad.links)


def test_alert_spans_are_children_with_versions_offsets_and_evidence(drift_run: Run) -> None:
    spans = drift_run.spans()
    alerts = [s for s in spans if s.name.startswith("alert ")]
    names = [s.name for s in alerts]
    assert "alert FeatureDrift pending" in names and "alert FeatureDrift firing" in names
    firing = next(s for s in alerts if s.name == "alert FeatureDrift firing")
    parent = next(s for s in spans if s.context.span_id == firing.parent.span_id)  # type: ignore[union-attr]
    assert parent.kind is SpanKind.CONSUMER
    assert parent.context.trace_id == firing.context.trace_id
    a: dict[str, Any] = dict(firing.attributes or {})
    assert a["driftwatch.model.name"] == "fraud"
    assert a["driftwatch.model.version"] == "v1"
    assert a["driftwatch.feature"] == "credit_score"
    assert a["driftwatch.data.version"] == "snap-2026-01-01"
    assert a["driftwatch.feature_set.version"] == "fs-7"
    assert str(a["driftwatch.reference.id"]).startswith("sha256:")
    first, last = a["driftwatch.kafka.offset.first"], a["driftwatch.kafka.offset.last"]
    assert last == (parent.attributes or {})["messaging.kafka.offset"]
    assert 0 <= int(first) <= int(last)
    assert list(a["driftwatch.kafka.offsets"]) == [f"{TOPIC}/0:{first}-{last}"]
    assert float(a["driftwatch.value"]) > float(a["driftwatch.threshold"])
    assert 0 < len(firing.links) <= 16
    lo, hi = int(first) * 250, (int(last) + 1) * 250
    assert all(lo < link.context.trace_id <= hi for link in firing.links)  # the window's events


def test_alert_annotations_carry_the_span_and_trace_url(drift_run: Run) -> None:
    spans = {s.context.span_id: s for s in drift_run.spans() if s.name.startswith("alert ")}
    assert drift_run.transitions
    for t in drift_run.transitions:
        ann = t.annotations
        span = spans[int(ann["span_id"], 16)]
        assert int(ann["trace_id"], 16) == span.context.trace_id
        assert ann["trace_url"] == (
            f"http://traces.example/trace/{ann['trace_id']}?span={ann['span_id']}"
        )


def test_transition_counter_has_the_alert_trace_as_exemplar(drift_run: Run) -> None:
    from prometheus_client.openmetrics.exposition import generate_latest

    text = generate_latest(drift_run.obs.registry).decode()  # type: ignore[no-untyped-call]
    series = 'driftwatch_alert_transitions_total{alertname="FeatureDrift",state="firing"}'
    line = next(x for x in text.splitlines() if x.startswith(series))
    firing = next(t for t in drift_run.transitions if t.state.value == "firing")
    assert f'trace_id="{firing.annotations["trace_id"]}"' in line


def _key(t: Transition) -> tuple[object, ...]:
    return (t.alertname, tuple(sorted(t.labels.items())), t.state.value, t.offset)


def test_batches_decide_what_single_messages_decide_with_one_span_per_run() -> None:
    lines = list(generate("abrupt-shift", 6000, 5, onset=0.4).lines())
    messages = make_messages(lines, 25, bad_header_every=4)
    bad = Msg(TOPIC, 0, len(messages), b"fraud", b'{"events": [{"event_id": 1}]}')
    messages.insert(len(messages) // 2, bad)
    for k, m in enumerate(messages):
        m.offset = k
    single_acks: list[int] = []
    single = run_adapter(messages, SETTINGS, acked=single_acks)
    acks: list[int] = []
    dead: list[bytes] = []
    batched = run_adapter(messages, SETTINGS, batches=7, acked=acks, dead=dead)
    try:
        assert single.transitions, "the scenario must raise alerts for the comparison"
        assert list(map(_key, batched.transitions)) == list(map(_key, single.transitions))
        assert dead == [bad.value]
        assert acks == sorted(acks) and acks == single_acks  # in order, once each
        consumer = [s for s in batched.spans() if s.kind is SpanKind.CONSUMER]
        # Runs of at most 7 messages, split where the bad message is handled on its own.
        assert len(messages) / 7 <= len(consumer) <= len(messages) / 7 + 3
        runs = [s for s in consumer if "messaging.batch.message_count" in (s.attributes or {})]
        assert len(runs) == len(consumer) - 1
        for span in runs:
            a: dict[str, Any] = dict(span.attributes or {})
            first, last = a["messaging.kafka.offset"], a["driftwatch.batch.last_offset"]
            assert last - first + 1 == a["messaging.batch.message_count"] <= 7
            assert a["driftwatch.events.accepted"] == 25 * a["messaging.batch.message_count"]
            assert 0 < len(span.links) <= 32 and span.dropped_links == 0
            offsets = [dict(x.attributes or {})["messaging.kafka.offset"] for x in span.links]
            assert all(first <= o <= last for o in offsets)
    finally:
        single.obs.close()
        batched.obs.close()


def test_batched_checkpoints_are_stored_in_the_context_of_their_own_partition() -> None:
    """The worker's ``enter`` makes a message Faust's current event before the work up to it
    is stored: a checkpoint must be written while a message of its stream's partition is
    current, never one of another partition in the same batch."""
    lines = list(generate("steady", 6000, 3).lines())
    messages = []
    for k, raw in enumerate(lines):
        partition = k % 2
        if partition:
            raw = raw.replace(b'"model":"fraud"', b'"model":"churn"')
        messages.append(Msg(TOPIC, partition, k // 2, b"m", raw.rstrip(b"\n")))
    current: list[Msg | None] = [None]
    writes: list[tuple[str, int]] = []

    class Table(dict[str, Any]):
        def __setitem__(self, group: str, state: Any) -> None:
            assert current[0] is not None, "checkpoint stored outside any message's context"
            writes.append((group, current[0].partition))
            super().__setitem__(group, state)

    async def dead_letter(key: bytes | None, value: bytes, headers: object) -> None:
        raise AssertionError("no dead letters expected")

    pipeline = Pipeline(settings_from_mapping(SETTINGS), checkpointing=True)
    adapter = KafkaAdapter(
        pipeline, Table(), dead_letter, [], enter=lambda m: current.__setitem__(0, m)
    )

    async def feed() -> None:
        for k, m in enumerate(messages):
            if adapter.add(m, m.value, lambda: None, m) or k % 301 == 300:
                await adapter.flush()
        await adapter.flush()

    asyncio.run(feed())
    assert {g for g, _ in writes} == {"fraud/v1", "churn/v1"}
    assert all(p == (0 if g == "fraud/v1" else 1) for g, p in writes), writes
