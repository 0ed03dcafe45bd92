"""OpenTelemetry lineage: from an alert back to the Kafka messages and requests behind it.

* Trace context arrives in Kafka headers (``traceparent``/``tracestate``, W3C) and, for events
  logged with ``monitor.client.EventLogger``, in each event's own ``trace`` field; both are read
  with OpenTelemetry's W3C propagator (:mod:`monitor.trace_context`).
* Every batch of Kafka messages of one partition that the worker processes together (or a
  message handled on its own) gets one CONSUMER span ``process <topic>`` with the messaging
  semantic conventions (v1.44: ``messaging.system``, ``messaging.operation.name``/``.type``,
  ``messaging.destination.name``, ``messaging.destination.partition.id``,
  ``messaging.consumer.group.name``, ``messaging.kafka.offset`` (of the first message),
  ``messaging.kafka.message.key`` (one message) or ``messaging.batch.message_count`` and
  ``driftwatch.batch.last_offset`` (a batch)) and links, made at span creation, to the
  producers' contexts: the messages' header contexts and those of a sample of their events.
  Links are **sampled**, not unbounded: at most ``tracing.max_links`` (32) per span, headers
  first, spread evenly over the batch, and the SDK's link limit is set to the same number so
  none is dropped silently; ``driftwatch.links.candidates`` says how many headers and events
  were probed.
* Every alert state change gets a span ``alert <AlertName> <state>``, a child of the consumer
  span of the message that decided it, with the model, data and feature-set versions, the
  reference profile id and the Kafka offsets of the window behind it (``driftwatch.*``), and
  links to a bounded sample (``tracing.alert_links``, 16) of that window's events. Its trace id
  and a link built from ``tracing.trace_url`` go into the alert's annotations (``trace_id``,
  ``span_id``, ``trace_url``).
* Spans leave through the provider of :mod:`monitor.span_export` (a bounded queue; an
  unreachable collector never blocks the pipeline).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind

from alerting.names import PERFORMANCE_DEGRADATION
from alerting.types import Transition
from detectors.performance import ErrorWindow
from detectors.window import WindowReport
from monitor.fastdecode import AnyEvent
from monitor.metrics import probe_indices
from monitor.streams import ModelStream
from monitor.trace_context import as_text, context_from_event

#: How many header contexts are remembered per topic partition for alert evidence.
HEADER_MEMORY = 512


@dataclass(frozen=True, slots=True)
class Evidence:
    """What an alert span says about the window behind it."""

    links: tuple[Link, ...]
    offsets: Mapping[str, tuple[int, int]]
    events: int
    window: int


@dataclass(slots=True)
class Batch:
    """One Kafka message being processed: its consumer span and header context."""

    span: trace.Span
    source: str
    header: SpanContext | None
    windows: int = 0


class KafkaTracing:
    """Consumer spans per message and alert spans per state change (see module docstring).

    Parameters
    ----------
    tracer
        From the provider built by :func:`monitor.span_export.build_provider` (or any provider
        in tests).
    group_id
        Kafka consumer group (``messaging.consumer.group.name``).
    max_links
        Links per consumer span (sampled evenly over the message's events).
    alert_links
        Links per alert span (sampled evenly over the window's events).
    trace_url
        Template with ``{trace_id}`` and ``{span_id}`` for the ``trace_url`` annotation.
    position_shift
        Input positions are ``offset << position_shift | index`` (16 for Kafka, 0 for files).
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        *,
        group_id: str = "",
        max_links: int = 32,
        alert_links: int = 16,
        trace_url: str | None = None,
        position_shift: int = 16,
    ) -> None:
        self.tracer = tracer
        self.group_id = group_id
        self.max_links = max_links
        self.alert_links = alert_links
        self.trace_url = trace_url
        self.position_shift = position_shift
        self.current: Batch | None = None
        self._headers: dict[str, deque[tuple[int, SpanContext]]] = {}
        self._evidence: dict[str, Evidence] = {}

    # -- consumer spans ------------------------------------------------------------------------

    def begin(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        header: SpanContext | None,
        events: Sequence[Any],
        size: int,
    ) -> Batch:
        """Start the ``process <topic>`` span of one message (links made at creation);
        ``header`` is the context of its ``traceparent`` header
        (:func:`monitor.trace_context.context_from_headers`)."""
        base = offset << self.position_shift
        attributes: dict[str, Any] = {"messaging.kafka.offset": offset}
        if key is not None:
            attributes["messaging.kafka.message.key"] = as_text(key)
        headers = [(offset, key, header)] if header is not None else []
        return self._start(
            topic, partition, headers, events, range(base, base + len(events)), size, attributes
        )

    def begin_batch(
        self,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        headers: Sequence[tuple[int, bytes | None, SpanContext]],
        events: Sequence[Any],
        positions: Sequence[int],
        size: int,
    ) -> Batch:
        """Start the ``process <topic>`` span of a batch of messages of one partition
        (``offsets``, in order). ``headers`` are ``(offset, key, context)`` of the messages whose
        ``traceparent`` was read (a sample of at most ``max_links``); ``positions`` are the
        events' input positions."""
        attributes: dict[str, Any] = {
            "messaging.kafka.offset": offsets[0],
            "messaging.batch.message_count": len(offsets),
            "driftwatch.batch.last_offset": offsets[-1],
        }
        return self._start(topic, partition, headers, events, positions, size, attributes)

    def _start(
        self,
        topic: str,
        partition: int,
        headers: Sequence[tuple[int, bytes | None, SpanContext]],
        events: Sequence[Any],
        positions: Sequence[int],
        size: int,
        attributes: dict[str, Any],
    ) -> Batch:
        """The consumer span, links made at creation: the headers' contexts first, then a
        sample of the events' own contexts, each with the offset of its message."""
        source = f"{topic}/{partition}"
        links: list[Link] = []
        seen: set[tuple[int, int]] = set()
        memory = self._headers.setdefault(source, deque(maxlen=HEADER_MEMORY))
        for offset, key, header in headers:
            memory.append((offset, header))
            if len(links) >= self.max_links or (header.trace_id, header.span_id) in seen:
                continue
            attrs: dict[str, Any] = {
                "messaging.kafka.offset": offset,
                "messaging.destination.partition.id": str(partition),
                "messaging.destination.name": topic,
            }
            if key is not None:
                attrs["messaging.kafka.message.key"] = as_text(key)
            links.append(Link(header, attrs))
            seen.add((header.trace_id, header.span_id))
        probes = probe_indices(len(events), self.max_links)
        mask = (1 << self.position_shift) - 1
        for i in probes:
            if len(links) >= self.max_links:
                break
            sc = context_from_event(events[i])
            if sc is None or (sc.trace_id, sc.span_id) in seen:
                continue
            seen.add((sc.trace_id, sc.span_id))
            ev_attrs: dict[str, Any] = {
                "messaging.kafka.offset": positions[i] >> self.position_shift,
                "driftwatch.event.index": positions[i] & mask,
            }
            event_id = events[i].get("event_id")
            if isinstance(event_id, str):
                ev_attrs["driftwatch.event.id"] = event_id
            links.append(Link(sc, ev_attrs))
        attributes.update(
            {
                "messaging.system": "kafka",
                "messaging.operation.name": "process",
                "messaging.operation.type": "process",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(partition),
                "messaging.message.body.size": size,
                "driftwatch.envelope.events": len(events),
                "driftwatch.links.candidates": len(headers) + len(probes),
            }
        )
        if self.group_id:
            attributes["messaging.consumer.group.name"] = self.group_id
        span = self.tracer.start_span(
            f"process {topic}", kind=SpanKind.CONSUMER, links=links, attributes=attributes
        )
        self.current = Batch(span, source, headers[0][2] if headers else None)
        return self.current

    def end(self, batch: Batch, accepted: int, rejected: int, error: BaseException | None) -> None:
        """Finish the consumer span with what the message amounted to."""
        span = batch.span
        span.set_attribute("driftwatch.events.accepted", accepted)
        span.set_attribute("driftwatch.events.rejected", rejected)
        span.set_attribute("driftwatch.windows.closed", batch.windows)
        if error is not None:
            span.set_attribute("error.type", type(error).__qualname__)
            span.record_exception(error)
            span.set_status(trace.StatusCode.ERROR, str(error))
        span.end()
        if self.current is batch:
            self.current = None

    # -- evidence (WindowObserver) ---------------------------------------------------------------

    def window_closed(
        self, stream: ModelStream, report: WindowReport, events: Sequence[AnyEvent]
    ) -> None:
        """Remember the window's offsets and a sample of its events' contexts."""
        batch = self.current
        if batch is not None:
            batch.windows += 1
        offsets = self._offsets(stream)
        links: list[Link] = []
        seen: set[tuple[int, int]] = set()
        if self.alert_links:
            for i in probe_indices(len(events), self.alert_links * 4):
                if len(links) >= self.alert_links:
                    break
                sc = context_from_event(events[i])
                if sc is None or (sc.trace_id, sc.span_id) in seen:
                    continue
                seen.add((sc.trace_id, sc.span_id))
                attrs: dict[str, Any] = {"driftwatch.window.index": i}
                event_id = events[i].get("event_id")
                if isinstance(event_id, str):
                    attrs["driftwatch.event.id"] = event_id
                links.append(Link(sc, attrs))
            if not links:
                links = self._header_links(offsets, seen)
        self._evidence[stream.group] = Evidence(tuple(links), offsets, report.n, stream.windows)

    def error_window(self, stream: ModelStream, window: ErrorWindow) -> None:
        """Label windows carry no event sample; their alert spans name the offsets only."""
        self._evidence[stream.group + "/labels"] = Evidence(
            (), self._offsets(stream), window.n, stream.windows
        )

    def stream_evicted(self, stream: ModelStream) -> None:
        """Forget the evidence of an evicted stream."""
        self._evidence.pop(stream.group, None)
        self._evidence.pop(stream.group + "/labels", None)

    def _offsets(self, stream: ModelStream) -> dict[str, tuple[int, int]]:
        shift = self.position_shift
        if stream.unsaved_from:
            return {
                src: (first >> shift, stream.seen.get(src, first) >> shift)
                for src, first in stream.unsaved_from.items()
            }
        first, last = stream.offsets
        batch = self.current
        return {batch.source if batch is not None else "": (first >> shift, last >> shift)}

    def _header_links(
        self, offsets: Mapping[str, tuple[int, int]], seen: set[tuple[int, int]]
    ) -> list[Link]:
        found: list[tuple[str, int, SpanContext]] = []
        for source, (first, last) in offsets.items():
            for off, sc in self._headers.get(source, ()):
                if first <= off <= last and (sc.trace_id, sc.span_id) not in seen:
                    seen.add((sc.trace_id, sc.span_id))
                    found.append((source, off, sc))
        out = []
        for i in probe_indices(len(found), self.alert_links):
            source, off, sc = found[i]
            topic, _, partition = source.rpartition("/")
            out.append(
                Link(
                    sc,
                    {
                        "messaging.kafka.offset": off,
                        "messaging.destination.name": topic,
                        "messaging.destination.partition.id": partition,
                    },
                )
            )
        return out

    # -- alert spans -------------------------------------------------------------------------------

    def alert_spans(
        self, transitions: Sequence[Transition], streams: Mapping[tuple[str, str], ModelStream]
    ) -> list[Transition]:
        """One span per state change; returns the changes with ``trace_id``, ``span_id`` and
        ``trace_url`` annotations."""
        batch = self.current
        parent = trace.set_span_in_context(batch.span) if batch is not None else None
        out = []
        for t in transitions:
            model = t.labels.get("model", "")
            version = t.labels.get("model_version", "")
            stream = streams.get((model, version))
            group = f"{model}/{version}"
            if t.alertname == PERFORMANCE_DEGRADATION:
                group += "/labels"
            evidence = self._evidence.get(group)
            attrs = self._alert_attributes(t, stream, evidence)
            span = self.tracer.start_span(
                f"alert {t.alertname} {t.state.value}",
                context=parent,
                kind=SpanKind.INTERNAL,
                links=evidence.links if evidence is not None else (),
                attributes=attrs,
            )
            sc = span.get_span_context()
            span.end()
            ann = dict(t.annotations)
            ann["trace_id"] = format(sc.trace_id, "032x")
            ann["span_id"] = format(sc.span_id, "016x")
            if self.trace_url:
                ann["trace_url"] = self.trace_url.format(
                    trace_id=ann["trace_id"], span_id=ann["span_id"]
                )
            out.append(replace(t, annotations=ann))
        return out

    def _alert_attributes(
        self, t: Transition, stream: ModelStream | None, evidence: Evidence | None
    ) -> dict[str, Any]:
        a: dict[str, Any] = {
            "driftwatch.alert.name": t.alertname,
            "driftwatch.alert.state": t.state.value,
            "driftwatch.alert.fingerprint": t.fingerprint,
            "driftwatch.alert.severity": t.labels.get("severity", ""),
            "driftwatch.model.name": t.labels.get("model", ""),
            "driftwatch.model.version": t.labels.get("model_version", ""),
        }
        for label in ("feature", "check", "output", "metric"):
            if label in t.labels:
                a[f"driftwatch.{label}"] = t.labels[label]
        ann = t.annotations
        if "statistic" in ann:
            a["driftwatch.statistic"] = ann["statistic"]
        for name in ("value", "threshold"):
            with contextlib.suppress(KeyError, ValueError):
                a[f"driftwatch.{name}"] = float(ann[name])
        versions = dict(stream.versions) if stream is not None else {}
        for key, attr in (
            ("data", "driftwatch.data.version"),
            ("features", "driftwatch.feature_set.version"),
            ("code", "driftwatch.serving.code.version"),
        ):
            value = versions.get(key) or ann.get(f"{key}_version")
            if value:
                a[attr] = value
        ref = ann.get("reference_id") or (
            stream.profile.id if stream is not None and stream.profile is not None else ""
        )
        if ref:
            a["driftwatch.reference.id"] = ref
        if evidence is not None:
            a["driftwatch.window.events"] = evidence.events
            a["driftwatch.window.index"] = evidence.window
            a["driftwatch.evidence.links"] = len(evidence.links)
            a["driftwatch.kafka.offsets"] = [
                f"{src}:{first}-{last}" for src, (first, last) in sorted(evidence.offsets.items())
            ]
            if len(evidence.offsets) == 1:
                ((src, (first, last)),) = evidence.offsets.items()
                topic, _, partition = src.rpartition("/")
                if topic:
                    a["messaging.destination.name"] = topic
                    a["messaging.destination.partition.id"] = partition
                a["driftwatch.kafka.offset.first"] = first
                a["driftwatch.kafka.offset.last"] = last
        return a
