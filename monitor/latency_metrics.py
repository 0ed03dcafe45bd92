"""Trace references for exemplars and the prediction latency histogram (exact counts, one
window at a time): the parts of :mod:`monitor.metrics` that follow a model version's events."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opentelemetry.trace import SpanContext, format_span_id, format_trace_id
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from monitor.trace_context import context_from_event, context_from_traceparent

NAMESPACE = "driftwatch"
#: Prediction latency buckets (seconds): 1 ms .. 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class TraceRef:
    """A W3C trace id (32 hex) and span id (16 hex): what an exemplar carries."""

    trace_id: str
    span_id: str

    def exemplar_labels(self) -> dict[str, str]:
        """``{"trace_id": ..., "span_id": ...}`` (55 code points, under OpenMetrics' 128)."""
        return {"trace_id": self.trace_id, "span_id": self.span_id}


def parse_traceparent(value: Any) -> TraceRef | None:
    """The ids of a ``traceparent`` (str or bytes) as OpenTelemetry's W3C propagator reads it
    (:mod:`monitor.trace_context`); None if absent or invalid.

    >>> parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    TraceRef(trace_id='4bf92f3577b34da6a3ce929d0e0e4736', span_id='00f067aa0ba902b7')
    >>> parse_traceparent("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    True
    """
    return trace_ref(context_from_traceparent(value))


def event_trace(event: Any) -> TraceRef | None:
    """The trace context an event carries in its own ``trace`` field (``monitor.client``)."""
    return trace_ref(context_from_event(event))


def trace_ref(sc: SpanContext | None) -> TraceRef | None:
    """The ids of a span context as hex (None stays None)."""
    if sc is None:
        return None
    return TraceRef(format_trace_id(sc.trace_id), format_span_id(sc.span_id))


def probe_indices(n: int, k: int) -> range:
    """Up to ``k`` indices spread evenly over ``range(n)``.

    >>> list(probe_indices(10, 4)), list(probe_indices(3, 8))
    ([0, 3, 6, 9], [0, 1, 2])
    """
    step = max(1, -(-n // k)) if k > 0 else n + 1
    return range(0, n, step)


@dataclass(slots=True)
class _Latency:
    buckets: np.ndarray
    total: float = 0.0
    exemplars: list[Exemplar | None] = field(default_factory=list)


class LatencyHistogram(Collector):
    """``driftwatch_prediction_latency_seconds``: the events' logged ``latency_ms`` as a
    histogram in seconds per model version, fed one window at a time (exact counts)."""

    name = f"{NAMESPACE}_prediction_latency_seconds"

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Latency] = {}

    def add(
        self,
        key: tuple[str, str],
        seconds: np.ndarray,
        traces: Sequence[tuple[float, TraceRef]] = (),
    ) -> None:
        """Count finite latencies (seconds); ``traces`` are (latency, trace) exemplar choices."""
        finite = seconds[np.isfinite(seconds)]
        idx = np.searchsorted(self.bounds, finite, side="left")
        counts = np.bincount(idx, minlength=len(self.bounds) + 1)
        now = time.time()
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = _Latency(np.zeros(len(self.bounds) + 1, dtype=np.int64))
                series.exemplars = [None] * (len(self.bounds) + 1)
                self._series[key] = series
            series.buckets += counts
            series.total += float(finite.sum())
            for value, ref in traces:
                b = int(np.searchsorted(self.bounds, value, side="left"))
                series.exemplars[b] = Exemplar(ref.exemplar_labels(), value, now)

    def forget(self, key: tuple[str, str]) -> None:
        """Drop the series of a model version no longer monitored."""
        with self._lock:
            self._series.pop(key, None)

    def describe(self) -> Iterable[Metric]:
        """The family without samples (registration checks names)."""
        yield self._family()

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            self.name,
            "Prediction latency logged by the serving process, in seconds.",
            labels=("model", "model_version"),
        )

    def collect(self) -> Iterable[Metric]:
        """Cumulative buckets with exemplars."""
        fam = self._family()
        les = [_le(b) for b in self.bounds] + ["+Inf"]
        with self._lock:
            items = [
                (k, s.buckets.cumsum(), s.total, list(s.exemplars)) for k, s in self._series.items()
            ]
        for key, cum, total, exemplars in items:
            buckets: list[Any] = []
            for le, count, ex in zip(les, cum, exemplars, strict=True):
                buckets.append((le, float(count), ex) if ex is not None else (le, float(count)))
            fam.add_metric(list(key), buckets, total)
        yield fam


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass(frozen=True, slots=True)
class ConsumerPosition:
    """Lag of one assigned topic partition: ``highwater`` minus the next offset to process."""

    topic: str
    partition: int
    lag: int


def annotation_trace(t: Any) -> TraceRef | None:
    """The trace an alert state change carries in its annotations (``trace_id``, ``span_id``)."""
    trace_id = t.annotations.get("trace_id")
    span_id = t.annotations.get("span_id")
    if trace_id and span_id and len(trace_id) == 32 and len(span_id) == 16:
        return TraceRef(trace_id, span_id)
    return None
