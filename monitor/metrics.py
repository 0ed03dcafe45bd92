"""Every Prometheus instrument of driftwatch, built against an injected registry.

:class:`MonitorMetrics` registers all of them on the ``CollectorRegistry`` it is given (never
the global one). Nothing here runs per event:

* per closed window (:meth:`MonitorMetrics.window_closed`) it computes one
  :class:`WindowSnapshot` with numpy (drift and thresholds are the report's arrays, score
  percentiles, label shares, latency bucket counts) and keeps it; the gauges are rendered from
  the newest snapshot per model version at scrape time;
* per Kafka message (a batch envelope) it observes the processing duration;
* counters of the pipeline, the adapter, the label joiner and the notification dispatcher are
  read from their own counts at scrape time (so they cost nothing on the hot path).

The prediction latency histogram is fed one window at a time with bucket counts from
``numpy.searchsorted``, so every event is counted exactly. Its exemplars carry a trace id: that
of a sampled event of the bucket with its own ``trace`` field (see ``monitor.client``), else the
``traceparent`` header of the Kafka message that closed the window.

Label cardinality per model version (``F`` features, ``P`` prediction rows: score and/or label,
``C`` predicted label classes, at most ``reference.max_categories`` + 1):

=================================================  =========================================
family                                             series
=================================================  =========================================
``driftwatch_drift_score`` / ``_threshold``        ``4 * (F + P)`` each (psi, js, ks, chi2)
``driftwatch_data_quality_ratio`` / ``_threshold``  ``<= 5 * F`` each (checks that apply)
``driftwatch_prediction_latency_seconds``          14 buckets + 2
``driftwatch_window_latency_seconds``              3
``driftwatch_prediction_score``                    4
``driftwatch_predicted_label_ratio``               ``C``
``driftwatch_model_error`` / accuracy              2
=================================================  =========================================

Alert families are per alert name (5 built in) and state; consumer lag is per assigned topic
partition. Alertmanager delivery counters (``driftwatch_notifications_*_total{receiver}``) are
:class:`alerting.metrics.NotificationCollector`'s, one series per configured receiver.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, Info
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from alerting.fingerprint import fingerprint
from alerting.names import BUILTIN_ALERTS
from alerting.state import AlertTracker
from alerting.types import AlertState, Transition
from detectors.performance import ErrorWindow
from detectors.window import WindowReport
from monitor.events import Reason
from monitor.fastdecode import AnyEvent
from monitor.latency_metrics import (
    LATENCY_BUCKETS,
    NAMESPACE,
    ConsumerPosition,
    LatencyHistogram,
    TraceRef,
    annotation_trace,
    event_trace,
    parse_traceparent,
    probe_indices,
)
from monitor.snapshots import (
    OTHER_LABEL,
    WindowSnapshot,
    _window_outputs,
    feature_series,
    feature_series_budget,
    snapshot_window,
)
from monitor.streams import ModelStream

__all__ = [
    "LATENCY_BUCKETS",
    "OTHER_LABEL",
    "ConsumerPosition",
    "LatencyHistogram",
    "MonitorMetrics",
    "TraceRef",
    "WindowSnapshot",
    "event_trace",
    "feature_series",
    "feature_series_budget",
    "parse_traceparent",
    "probe_indices",
    "snapshot_window",
]


#: Per-message processing buckets (seconds): 0.1 ms .. 5 s.
BATCH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5)
#: Events probed per window for an exemplar trace id (evenly spaced).
EXEMPLAR_PROBES = 32
#: Warnings of accepted events (``driftwatch_event_warnings_total``).
WARNINGS = ("unknown_field", "label_type_mismatch", "evicted_events", "label_stream_evicted")


class MonitorMetrics(Collector):
    """All of driftwatch's Prometheus metrics (see the module docstring).

    Parameters
    ----------
    registry
        Where every instrument is registered (build one per process at the composition root).
    version, revision
        driftwatch's version and code revision, for ``driftwatch_build_info``.
    tracker
        The alert state machine, read for the ``driftwatch_alerts`` gauge.
    on_window
        Also told every :class:`WindowSnapshot` (the status page history).
    on_evict
        Also told the group (``model/version``) of every stream the pipeline evicted.
    max_feature_series
        At most this many per-feature series are rendered (``metrics.max_feature_series``;
        see :func:`feature_series_budget`).

    Sources of counters are attached with :meth:`watch_pipeline`, :meth:`watch_adapter` and
    :meth:`watch_spans`; they are read at scrape time. Notification delivery counters come from
    :class:`alerting.metrics.NotificationCollector`, registered beside this collector.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str,
        revision: str,
        tracker: AlertTracker | None = None,
        on_window: Sequence[Callable[[WindowSnapshot], None]] = (),
        on_evict: Sequence[Callable[[str], None]] = (),
        max_feature_series: int = 20_000,
    ) -> None:
        self.registry = registry
        self.tracker = tracker
        self.on_window = list(on_window)
        self.on_evict = list(on_evict)
        self.max_feature_series = max_feature_series
        #: The trace of the Kafka message being processed (set per message by the adapter's
        #: observer), used for exemplars when the window's events carry none.
        self.batch_trace: TraceRef | None = None
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], WindowSnapshot] = {}
        self._errors: dict[tuple[str, str], tuple[str, float, int]] = {}
        self._transitions: Counter[tuple[str, str]] = Counter()
        self._transition_exemplars: dict[tuple[str, str], Exemplar] = {}
        self._alerts: dict[tuple[str, str], int] = {}
        self._lag: list[ConsumerPosition] = []
        self._assigned = 0
        self._pipeline: Any = None
        self._adapter: Any = None
        self._spans: Callable[[], Mapping[str, int]] | None = None
        self._created = time.time()

        info = Info(
            f"{NAMESPACE}_build", "driftwatch version and code revision.", registry=registry
        )
        info.info({"version": version, "revision": revision})
        self.latency = LatencyHistogram()
        registry.register(self.latency)
        self.batch_seconds = Histogram(
            f"{NAMESPACE}_batch_processing_seconds",
            "Wall time to process one Kafka message (one event or a batch envelope), including "
            "window evaluation and alert decisions.",
            ("topic",),
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        registry.register(self)

    # -- sources -----------------------------------------------------------------------------

    def watch_pipeline(self, pipeline: Any) -> None:
        """Read event, window and label-join counts from this :class:`Pipeline`."""
        self._pipeline = pipeline
        if self.tracker is None:
            self.tracker = pipeline.tracker

    def watch_adapter(self, adapter: Any) -> None:
        """Read message, dead-letter and acknowledgement counts from this ``KafkaAdapter``."""
        self._adapter = adapter

    def watch_spans(self, stats: Callable[[], Mapping[str, int]]) -> None:
        """Read span export counters (``exported``, ``dropped_queue_full``, ``export_failed``)."""
        self._spans = stats

    # -- per window (WindowObserver) -----------------------------------------------------------

    def window_closed(
        self, stream: ModelStream, report: WindowReport, events: Sequence[AnyEvent]
    ) -> None:
        """Keep the window's snapshot and count its latencies."""
        outputs = _window_outputs(stream, report, events)
        snap = snapshot_window(stream, report, events, outputs)
        with self._lock:
            self._latest[stream.key] = snap
        if outputs.latency is not None:
            lat = outputs.latency / 1e3
            self.latency.add(stream.key, lat, self._latency_traces(events, lat))
        for callback in self.on_window:
            callback(snap)

    def _latency_traces(
        self, events: Sequence[AnyEvent], seconds: np.ndarray
    ) -> list[tuple[float, TraceRef]]:
        out: list[tuple[float, TraceRef]] = []
        for i in probe_indices(len(events), EXEMPLAR_PROBES):
            ref = event_trace(events[i])
            if ref is not None and math.isfinite(seconds[i]):
                out.append((float(seconds[i]), ref))
        if not out and self.batch_trace is not None:
            finite = np.flatnonzero(np.isfinite(seconds))
            if finite.size:
                out.append((float(seconds[finite[-1]]), self.batch_trace))
        return out

    def error_window(self, stream: ModelStream, window: ErrorWindow) -> None:
        """Keep the newest error window of a model version."""
        kind = stream.errors.kind if stream.errors is not None else None
        metric = "error_rate" if kind == "classification" else "mae"
        with self._lock:
            self._errors[stream.key] = (metric, window.value, window.n)

    def stream_evicted(self, stream: ModelStream) -> None:
        """Forget an evicted stream's series (its version may never come back)."""
        with self._lock:
            self._latest.pop(stream.key, None)
            self._errors.pop(stream.key, None)
        self.latency.forget(stream.key)
        for callback in self.on_evict:
            callback(stream.group)

    # -- per message -----------------------------------------------------------------------------

    def batch_processed(self, topic: str, seconds: float, trace: TraceRef | None) -> None:
        """One Kafka message was processed in ``seconds`` (exemplar: its trace)."""
        child = self.batch_seconds.labels(topic)
        if trace is not None:
            child.observe(seconds, trace.exemplar_labels())
        else:
            child.observe(seconds)

    def set_consumer(self, assigned: int, positions: Sequence[ConsumerPosition]) -> None:
        """Assigned input partitions and their lag (the worker's timer, about once a second)."""
        with self._lock:
            self._assigned = assigned
            self._lag = list(positions)

    # -- alerts (AlertSink) ------------------------------------------------------------------------

    def send(self, transitions: list[Transition]) -> None:
        """Count state changes (exemplar: the alert span's trace) and refresh alert gauges."""
        with self._lock:
            for t in transitions:
                key = (t.alertname, t.state.value)
                self._transitions[key] += 1
                ref = annotation_trace(t)
                if ref is not None:
                    self._transition_exemplars[key] = Exemplar(
                        ref.exemplar_labels(), 1.0, time.time()
                    )
        self.refresh_alerts()

    def resume(self, transitions: list[Transition]) -> None:
        """Alerts restored from checkpoints: the alert gauges show them again."""
        self.refresh_alerts()

    def withdraw(self, owned: Callable[[Mapping[str, str]], bool]) -> None:
        """Alerts moved to another worker: the alert gauges stop counting them."""
        self.refresh_alerts()

    def close(self) -> None:
        """Nothing to release."""

    def refresh_alerts(self) -> None:
        """Recount pending/firing/flapping alerts from the tracker."""
        tracker = self.tracker
        if tracker is None:
            return
        counts: Counter[tuple[str, str]] = Counter()
        for alert in tracker.active():
            counts[(alert.alertname, alert.state.value)] += 1
            flap = tracker.flapping
            if flap is not None and flap.is_flapping(fingerprint(alert.labels)):
                counts[(alert.alertname, "flapping")] += 1
        with self._lock:
            self._alerts = dict(counts)

    # -- scrape ------------------------------------------------------------------------------------

    def snapshots(self) -> list[WindowSnapshot]:
        """The newest window snapshot of every model version."""
        with self._lock:
            return list(self._latest.values())

    def describe(self) -> Iterable[Metric]:
        """Families without samples (registration checks names)."""
        return self._families(empty=True)

    def collect(self) -> Iterable[Metric]:
        """Render every family from the current numbers."""
        return self._families(empty=False)

    def _families(self, empty: bool) -> list[Metric]:
        out: list[Metric] = []
        out += self._event_families(empty)
        out += self._window_families(empty)
        out += self._alert_families(empty)
        out += self._consumer_families(empty)
        return out

    def _counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
        return CounterMetricFamily(f"{NAMESPACE}_{name}", doc, labels=labels)

    def _gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{NAMESPACE}_{name}", doc, labels=labels)

    def _event_families(self, empty: bool) -> list[Metric]:
        received = self._counter(
            "events_received_total", "Input events read (accepted plus rejected)."
        )
        accepted = self._counter(
            "events_accepted_total", "Valid events by kind (prediction, feature, label).", ["kind"]
        )
        rejected = self._counter(
            "events_rejected_total",
            "Inputs that are not valid events, by reason (each is dead-lettered by the worker).",
            ["reason"],
        )
        duplicates = self._counter(
            "events_redelivered_total",
            "Re-delivered events skipped because their effect is already in a checkpoint.",
        )
        warnings = self._counter(
            "event_warnings_total",
            "Accepted events with a problem (unknown_field, label_type_mismatch), events of an "
            "open window dropped with their evicted stream (evicted_events), labels whose "
            "prediction's stream was evicted (label_stream_evicted).",
            ["warning"],
        )
        windows = self._counter(
            "windows_total", "Evaluated windows per model version.", ["model", "model_version"]
        )
        joins = self._counter(
            "label_joins_total",
            "Label events by join outcome: joined to a prediction, unmatched (no prediction "
            "remembered), and predictions expired (ttl) or evicted (max_pending) unlabelled.",
            ["outcome"],
        )
        pending = self._gauge("labels_pending", "Predictions remembered, awaiting their label.")
        messages = self._counter("messages_total", "Kafka messages consumed.")
        dead = self._counter("dead_letters_total", "Messages or envelope elements dead-lettered.")
        dead_cut, dead_failed = (
            self._counter("dead_letters_truncated_total", "Dead letters cut to fit Kafka's limit."),
            self._counter(
                "dead_letter_failures_total", "Dead-letter writes that failed (retried)."
            ),
        )
        unacked = self._gauge(
            "messages_unacked",
            "Messages processed but not yet acknowledged (their windows are still open).",
        )
        streams = self._gauge(
            "streams",
            "Model versions kept, by phase: warmup (learning the reference) or monitoring "
            "(limits.max_streams bounds both).",
            ["phase"],
        )
        evicted = self._counter(
            "streams_evicted_total",
            "Streams dropped after limits.stream_idle_ttl of idleness to make room for new ones.",
        )
        fams: list[Metric] = [received, accepted, rejected, duplicates, warnings, windows]
        fams += [joins, pending, messages, dead, dead_cut, dead_failed, unacked, streams, evicted]
        if empty:
            return fams
        p = self._pipeline
        if p is not None:
            s = p.stats
            received.add_metric([], s.lines)
            events = dict(s.events)
            for kind in ("prediction", "feature", "label"):
                accepted.add_metric([kind], events.get(kind, 0))
            rej = dict(s.rejected)
            for reason in Reason:
                rejected.add_metric([reason.value], rej.get(reason.value, 0))
            duplicates.add_metric([], s.duplicates)
            warn = dict(s.warnings)
            for w in WARNINGS:
                warnings.add_metric([w], warn.get(w, 0))
            kept = list(p.streams.values())
            warming = 0
            for stream in kept:
                windows.add_metric(list(stream.key), stream.windows)
                warming += stream.detector is None
            streams.add_metric(["warmup"], warming)
            streams.add_metric(["monitoring"], len(kept) - warming)
            evicted.add_metric([], s.evicted)
            j = p.joiner
            for outcome, value in (
                ("joined", j.joined),
                ("unmatched", j.unmatched),
                ("expired", j.expired),
                ("evicted", j.evicted),
            ):
                joins.add_metric([outcome], value)
            pending.add_metric([], len(j))
        a = self._adapter
        if a is not None:
            messages.add_metric([], a.stats.messages)
            dead.add_metric([], a.stats.dead_letters)
            dead_cut.add_metric([], a.stats.dead_letters_truncated)
            dead_failed.add_metric([], a.stats.dead_letter_failures)
            unacked.add_metric([], a.unacked())
        return fams

    def _window_families(self, empty: bool) -> list[Metric]:
        mv = ["model", "model_version"]
        score = self._gauge(
            "drift_score",
            "Distance of the last window's distribution from the reference, per feature (rows "
            "'score' and 'label' are the prediction) and statistic (psi, js, ks, chi2).",
            [*mv, "feature", "statistic"],
        )
        threshold = self._gauge(
            "drift_threshold",
            "Calibrated threshold of drift_score for the last window (+Inf: too few values).",
            [*mv, "feature", "statistic"],
        )
        ratio = self._gauge(
            "drift_threshold_ratio",
            "drift_score / drift_threshold of the statistics that raise FeatureDrift and "
            "PredictionDrift (largest); above 1 the condition holds.",
            [*mv, "feature"],
        )
        quality = self._gauge(
            "data_quality_ratio",
            "Share of the last window's events with a data-quality problem, per feature and "
            "check (missing, absent, wrong_type, nan_inf, out_of_range, unseen_category).",
            [*mv, "feature", "check"],
        )
        quality_thr = self._gauge(
            "data_quality_threshold_ratio",
            "Share of the window at which the DataQuality alert's condition holds.",
            [*mv, "feature", "check"],
        )
        lat = self._gauge(
            "window_latency_seconds",
            "Prediction latency percentile (p50, p95, p99) of the last window, in seconds.",
            [*mv, "percentile"],
        )
        pred = self._gauge(
            "prediction_score",
            "Prediction score of the last window: mean, p5, p50, p95.",
            [*mv, "statistic"],
        )
        labels = self._gauge(
            "predicted_label_ratio",
            "Share of the last window's predictions per predicted label (__other__: labels "
            "not in the reference).",
            [*mv, "label"],
        )
        size = self._gauge("window_events", "Events in the last window.", mv)
        last = self._gauge(
            "window_event_time_seconds",
            "Event time (Unix seconds) of the newest event of the last window.",
            mv,
        )
        error = self._gauge(
            "model_error",
            "Mean error of the last window of labelled events (metric error_rate for "
            "classification, mae for regression).",
            [*mv, "metric"],
        )
        accuracy = self._gauge(
            "model_accuracy_ratio",
            "Accuracy (1 - error_rate) of the last window of labelled events (classification).",
            mv,
        )
        omitted = self._gauge(
            "feature_series_omitted",
            "Model versions whose per-feature series (drift, data quality) are not exported "
            "because metrics.max_feature_series is reached.",
        )
        fams: list[Metric] = [score, threshold, ratio, quality, quality_thr, lat, pred, labels]
        fams += [size, last, error, accuracy, omitted]
        if empty:
            return fams
        with self._lock:
            snaps = list(self._latest.values())
            errors = dict(self._errors)
        featured = feature_series_budget(snaps, self.max_feature_series)
        omitted.add_metric([], len(snaps) - len(featured))
        for snap in snaps:
            key = [snap.model, snap.model_version]
            if snap.latency is not None:
                for name, v in zip(("p50", "p95", "p99"), snap.latency, strict=True):
                    lat.add_metric([*key, name], v)
            if snap.score is not None:
                for name, v in zip(("mean", "p5", "p50", "p95"), snap.score, strict=True):
                    pred.add_metric([*key, name], v)
            for label, share in snap.labels.items():
                labels.add_metric([*key, label], share)
            size.add_metric(key, snap.n)
            last.add_metric(key, snap.event_time)
            if id(snap) not in featured:  # metrics.max_feature_series
                continue
            for stat, values in snap.drift.items():
                thr = snap.threshold[stat]
                for r, row in enumerate(snap.rows):
                    score.add_metric([*key, row, stat], float(values[r]))
                    threshold.add_metric([*key, row, stat], float(thr[r]))
            ratios = np.vstack(
                [snap.drift[s] / snap.threshold[s] for s in snap.alerting_statistics]
            ).max(axis=0)
            for r, row in enumerate(snap.rows):
                ratio.add_metric([*key, row], float(ratios[r]))
            for check, shares in snap.quality.items():
                thr = snap.quality_threshold[check]
                for r, row in enumerate(snap.rows):
                    if not math.isnan(shares[r]):
                        quality.add_metric([*key, row, check], float(shares[r]))
                        quality_thr.add_metric([*key, row, check], float(thr[r]))
        for (model, version), (metric, value, _n) in errors.items():
            error.add_metric([model, version, metric], value)
            if metric == "error_rate":
                accuracy.add_metric([model, version], 1.0 - value)
        return fams

    def _alert_families(self, empty: bool) -> list[Metric]:
        active = self._gauge(
            "alerts",
            "Active alerts by name and state (pending, firing; flapping counts firing or "
            "pending alerts whose condition changes too often to be notified).",
            ["alertname", "state"],
        )
        changes = self._counter(
            "alert_transitions_total",
            "Alert state changes by name and state: pending, firing, resolved, transient "
            "(pending that cleared before 'for'), flapping, flapping_stopped.",
            ["alertname", "state"],
        )
        if empty:
            return [active, changes]
        with self._lock:
            alerts = dict(self._alerts)
            transitions = dict(self._transitions)
            exemplars = dict(self._transition_exemplars)
        names = sorted(set(BUILTIN_ALERTS) | {n for n, _ in transitions} | {n for n, _ in alerts})
        for name in names:
            for state in ("pending", "firing", "flapping"):
                active.add_metric([name, state], alerts.get((name, state), 0))
            for state in AlertState:
                key = (name, state.value)
                changes.add_metric(
                    [name, state.value], transitions.get(key, 0), exemplar=exemplars.get(key)
                )
        return [active, changes]

    def _consumer_families(self, empty: bool) -> list[Metric]:
        lag = self._gauge(
            "kafka_consumer_lag_messages",
            "Messages in an assigned input partition not yet processed by this worker.",
            ["topic", "partition"],
        )
        assigned = self._gauge(
            "kafka_assigned_partitions", "Input topic partitions assigned to this worker."
        )
        spans = self._counter("spans_exported_total", "Spans the OTLP collector accepted.")
        dropped = self._counter(
            "spans_dropped_total",
            "Spans lost: queue_full (the export queue was full) or export_failed (the "
            "collector was unreachable or refused them after retries).",
            ["reason"],
        )
        if empty:
            return [lag, assigned, spans, dropped]
        with self._lock:
            positions = list(self._lag)
            n_assigned = self._assigned
        for pos in positions:
            lag.add_metric([pos.topic, str(pos.partition)], pos.lag)
        assigned.add_metric([], n_assigned)
        if self._spans is not None:
            st = self._spans()
            spans.add_metric([], st.get("exported", 0))
            for reason in ("queue_full", "export_failed"):
                dropped.add_metric([reason], st.get(f"dropped_{reason}", 0))
        return [lag, assigned, spans, dropped]
