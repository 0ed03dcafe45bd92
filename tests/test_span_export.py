"""The span exporter pipeline: a collector that is stuck or unreachable never blocks, and every
span is either exported or counted as dropped."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from monitor.config import TracingConfig
from monitor.span_export import SpanCounts, build_provider


class BlockingExporter(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_a_stuck_collector_never_blocks_and_full_queue_drops_are_counted() -> None:
    exporter = BlockingExporter()
    cfg = TracingConfig(enabled=True, queue_size=16)
    provider, counts = build_provider(cfg, "0", "r", exporter)
    tracer = provider.get_tracer("t")
    for i in range(600):  # the exporter holds its first batch; the queue overflows
        tracer.start_span(f"s{i}").end()
    assert counts.dropped_queue_full > 0
    exporter.release.set()
    provider.shutdown()
    assert exporter.exported == counts.exported
    # Every span was either exported or counted as dropped. The count reads the queue length
    # just before the SDK appends (as the SDK's own "Queue full" check does), so an export
    # popping a batch at that instant can make it one too many.
    assert 600 <= counts.exported + counts.dropped_queue_full <= 601


def test_an_unreachable_collector_counts_dropped_spans() -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = TracingConfig(enabled=True, endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=0.5)
    provider, counts = build_provider(cfg, "0", "r")
    tracer = provider.get_tracer("t")
    for i in range(5):
        tracer.start_span(f"s{i}").end()
    provider.force_flush()
    provider.shutdown()
    assert counts.dropped_export_failed == 5
    assert counts.exported == 0
    assert isinstance(counts, SpanCounts)
