"""Where spans go: the tracer provider, its resource, and a batch processor that counts losses.

:func:`build_provider` builds the (not global) ``TracerProvider`` that
:class:`~monitor.tracing.KafkaTracing` starts its spans on. Its resource carries
``service.name``, ``service.version``, ``vcs.ref.head.revision`` (:func:`code_revision`),
``vcs.repository.url.full`` and ``deployment.environment.name``. Spans leave through a
:class:`CountingBatchSpanProcessor` (the SDK's batch processor) and the OTLP/HTTP protobuf
exporter; the pipeline only appends to a bounded queue, so an unreachable collector never blocks
it. Spans lost to a full queue or a failed export are counted in :class:`SpanCounts`, which
the ``driftwatch_spans_exported_total`` and ``driftwatch_spans_dropped_total`` metrics read.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from monitor.config import TracingConfig

log = logging.getLogger("driftwatch.tracing")


def code_revision(override: str | None = None) -> str:
    """This monitor's code revision: ``override``, ``$DRIFTWATCH_REVISION``, ``git rev-parse
    HEAD`` of the source checkout, else ``unknown``."""
    if override:
        return override
    env = os.environ.get("DRIFTWATCH_REVISION")
    if env:
        return env
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return "unknown"
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return "unknown"


def build_resource(cfg: TracingConfig, version: str, revision: str) -> Resource:
    """The monitor's resource: service name and version, code revision, repository, env."""
    attrs: dict[str, str] = {
        "service.name": cfg.service_name,
        "service.version": version,
        "vcs.ref.head.revision": revision,
    }
    if cfg.repository_url:
        attrs["vcs.repository.url.full"] = cfg.repository_url
    if cfg.environment:
        attrs["deployment.environment.name"] = cfg.environment
    return Resource.create(attrs)


@dataclass(slots=True)
class SpanCounts:
    """Spans handed to the exporter and what became of them (thread-safe increments)."""

    exported: int = 0
    dropped_queue_full: int = 0
    dropped_export_failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {
            "exported": self.exported,
            "dropped_queue_full": self.dropped_queue_full,
            "dropped_export_failed": self.dropped_export_failed,
        }


class CountingExporter(SpanExporter):
    """Wraps an exporter: counts exported spans and spans lost to a failed export; never
    raises into the batch processor's thread."""

    def __init__(self, inner: SpanExporter, counts: SpanCounts) -> None:
        self.inner = inner
        self.counts = counts

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export; a failure (collector down, refused) counts the spans as dropped."""
        try:
            result = self.inner.export(spans)
        except Exception:
            log.exception("span export failed")
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.counts.add("exported", len(spans))
        else:
            self.counts.add("dropped_export_failed", len(spans))
        return result

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting spans dropped because its queue was full, and with a
    bounded shutdown (``shutdown_timeout`` seconds) so exit never waits on a dead collector.

    The count checks the queue length just before the SDK appends, as the SDK's own "Queue
    full" warning does; an export taking a batch at that instant can make it one too many.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        counts: SpanCounts,
        *,
        max_queue_size: int = 2048,
        schedule_delay_millis: float = 1000.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            exporter,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=min(512, max_queue_size),
        )
        self.counts = counts
        self.max_queue_size = max_queue_size
        self.shutdown_timeout = shutdown_timeout

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the span; count it when the full queue pushes the oldest out."""
        if span.context is not None and span.context.trace_flags.sampled:
            # The SDK's queue is a bounded deque: appending to a full one drops the oldest.
            queue = self._batch_processor._queue
            if len(queue) >= self.max_queue_size:
                self.counts.add("dropped_queue_full", 1)
        super().on_end(span)

    def shutdown(self) -> None:
        """Export what is queued for at most ``shutdown_timeout`` seconds, then stop."""
        self._batch_processor.shutdown(timeout_millis=int(self.shutdown_timeout * 1000))


def build_provider(
    cfg: TracingConfig,
    version: str,
    revision: str,
    exporter: SpanExporter | None = None,
) -> tuple[TracerProvider, SpanCounts]:
    """A tracer provider exporting OTLP/HTTP protobuf to ``cfg.endpoint`` (or ``exporter``).

    The SDK's link limit is raised to ``max(max_links, alert_links)`` so sampled links are all
    kept. The provider is not installed globally: pass it to :class:`KafkaTracing`.
    """
    counts = SpanCounts()
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=cfg.endpoint, headers=dict(cfg.headers) or None, timeout=cfg.timeout
        )
    limits = SpanLimits(max_links=max(cfg.max_links, cfg.alert_links, 1))
    provider = TracerProvider(resource=build_resource(cfg, version, revision), span_limits=limits)
    provider.add_span_processor(
        CountingBatchSpanProcessor(
            CountingExporter(exporter, counts), counts, max_queue_size=cfg.queue_size
        )
    )
    return provider, counts
