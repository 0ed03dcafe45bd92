"""Metrics on an injected registry: values after a replayed scenario, exemplars, cardinality,
and the HTTP server's paths and content negotiation."""

from __future__ import annotations

import contextlib
import gzip
import math
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import prometheus_client
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from detectors.performance import ErrorWindow
from detectors.window import WindowReport
from monitor.config import settings_from_mapping
from monitor.fastdecode import AnyEvent
from monitor.http_server import MonitorServer, Observability
from monitor.metrics import (
    LATENCY_BUCKETS,
    LatencyHistogram,
    TraceRef,
    WindowSnapshot,
    parse_traceparent,
    snapshot_window,
)
from monitor.pipeline import Pipeline
from monitor.scenarios.simulate import generate
from monitor.streams import ModelStream, latency_of

SETTINGS = {
    "window": {"size": 500},
    "reference": {"warmup_events": 2000},
    "alerts": {"FeatureDrift": {"for": "10s"}},
    "metrics": {"listen": "127.0.0.1:0"},
}
N = 8000


def traced(line: bytes, i: int) -> bytes:
    ev = orjson.loads(line)
    if i % 3 == 0:
        ev["trace"] = {"traceparent": f"00-{i + 1:032x}-{i + 1:016x}-01"}
    return orjson.dumps(ev)


@dataclass
class Replayed:
    obs: Observability
    pipeline: Pipeline

    def get(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.obs.registry.get_sample_value(name, labels or {})


@pytest.fixture(scope="module")
def replayed() -> Iterator[Replayed]:
    settings = settings_from_mapping(SETTINGS)
    obs = Observability(settings, position_shift=0)
    pipeline = Pipeline(settings, observers=obs.observers)
    obs.attach(pipeline)
    sink = obs.alert_sink([])
    lines = [traced(x, i) for i, x in enumerate(generate("abrupt-shift", N, 5, onset=0.4).lines())]
    lines += [b"{not json", b'{"event_id": 1}', b""]
    for k in range(0, len(lines), 1000):
        out = pipeline.process_lines(lines[k : k + 1000], k)
        if out:
            sink.send(out)
    yield Replayed(obs, pipeline)
    obs.close()


def test_nothing_lands_in_the_global_registry(replayed: Replayed) -> None:
    names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(n.startswith("driftwatch") for n in names)


def test_event_counts_and_rejections_by_reason(replayed: Replayed) -> None:
    get = replayed.get
    assert get("driftwatch_events_received_total") == N + 3
    assert get("driftwatch_events_accepted_total", {"kind": "prediction"}) == N
    assert get("driftwatch_events_rejected_total", {"reason": "malformed_json"}) == 1
    assert get("driftwatch_events_rejected_total", {"reason": "empty"}) == 1
    assert get("driftwatch_events_rejected_total", {"reason": "unknown_event_type"}) == 1
    assert get("driftwatch_events_rejected_total", {"reason": "too_large"}) == 0
    windows = (N - 2000) // 500
    assert get("driftwatch_windows_total", {"model": "fraud", "model_version": "v1"}) == windows
    assert (
        get(
            "driftwatch_build_info",
            {"version": replayed.obs.version, "revision": replayed.obs.revision},
        )
        == 1
    )


def test_drift_score_and_threshold_of_the_drifted_feature(replayed: Replayed) -> None:
    get = replayed.get
    key = {"model": "fraud", "model_version": "v1", "feature": "credit_score"}
    score = get("driftwatch_drift_score", {**key, "statistic": "psi"})
    threshold = get("driftwatch_drift_threshold", {**key, "statistic": "psi"})
    assert score is not None and threshold is not None and score > threshold > 0
    ratio = get("driftwatch_drift_threshold_ratio", key)
    assert ratio == pytest.approx(score / threshold)
    calm = get("driftwatch_drift_threshold_ratio", {**key, "feature": "amount"})
    assert calm is not None and calm < 1
    for stat in ("js", "ks", "chi2"):
        assert get("driftwatch_drift_score", {**key, "statistic": stat}) is not None
    assert get("driftwatch_alerts", {"alertname": "FeatureDrift", "state": "firing"}) == 1
    assert get("driftwatch_alerts", {"alertname": "DataQuality", "state": "firing"}) == 0
    changes = {"alertname": "FeatureDrift", "state": "firing"}
    assert get("driftwatch_alert_transitions_total", changes) == 1


def test_quality_prediction_and_latency_families(replayed: Replayed) -> None:
    get = replayed.get
    mv = {"model": "fraud", "model_version": "v1"}
    missing = get("driftwatch_data_quality_ratio", {**mv, "feature": "amount", "check": "missing"})
    assert missing is not None and 0 <= missing < 0.05
    thr = get(
        "driftwatch_data_quality_threshold_ratio", {**mv, "feature": "amount", "check": "missing"}
    )
    assert thr is not None and thr > missing
    # Checks that do not apply to a row are not exported (no nan_inf on categoricals).
    assert (
        get("driftwatch_data_quality_ratio", {**mv, "feature": "country", "check": "nan_inf"})
        is None
    )
    p5 = get("driftwatch_prediction_score", {**mv, "statistic": "p5"})
    p95 = get("driftwatch_prediction_score", {**mv, "statistic": "p95"})
    assert p5 is not None and p95 is not None and 0 <= p5 <= p95 <= 1
    shares = [
        get("driftwatch_predicted_label_ratio", {**mv, "label": label})
        for label in ("fraud", "legit", "__other__")
    ]
    assert math.fsum(s or 0 for s in shares) == pytest.approx(1.0)
    p50 = get("driftwatch_window_latency_seconds", {**mv, "percentile": "p50"})
    p99 = get("driftwatch_window_latency_seconds", {**mv, "percentile": "p99"})
    assert p50 is not None and p99 is not None and 0 < p50 < p99 < 10
    # The histogram counts every event of every evaluated window, exactly.
    windows = (N - 2000) // 500
    count = get("driftwatch_prediction_latency_seconds_count", mv)
    assert count == windows * 500
    buckets = [
        get("driftwatch_prediction_latency_seconds_bucket", {**mv, "le": repr(float(b))}) or 0.0
        for b in LATENCY_BUCKETS
    ]
    assert buckets == sorted(buckets)  # cumulative


def test_exemplars_hold_event_trace_ids_in_the_right_bucket(replayed: Replayed) -> None:
    text = openmetrics_latest(replayed.obs.registry).decode()  # type: ignore[no-untyped-call]
    lines = [
        x
        for x in text.splitlines()
        if x.startswith("driftwatch_prediction_latency_seconds_bucket") and " # {" in x
    ]
    assert lines
    for line in lines:
        le = float(line.split('le="')[1].split('"')[0])
        exemplar = line.split(" # ")[1]
        labels, value = exemplar.split("} ")[0] + "}", float(exemplar.split("} ")[1].split()[0])
        assert value <= le
        trace_id = labels.split('trace_id="')[1][:32]
        assert int(trace_id, 16) % 3 == 1  # only events with a trace field were probed
        assert len(labels) < 128


def test_cardinality_per_model_version_is_as_documented(replayed: Replayed) -> None:
    snap = replayed.obs.metrics.snapshots()[0]
    rows = len(snap.rows)
    count: dict[str, int] = {}
    for metric in replayed.obs.registry.collect():
        count[metric.name] = len(metric.samples)
    assert count["driftwatch_drift_score"] == 4 * rows
    assert count["driftwatch_drift_threshold"] == 4 * rows
    assert count["driftwatch_drift_threshold_ratio"] == rows
    assert count["driftwatch_data_quality_ratio"] <= 5 * (rows - 2)
    assert count["driftwatch_prediction_latency_seconds"] == len(LATENCY_BUCKETS) + 1 + 2


def test_parse_traceparent_rejects_what_w3c_rejects() -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_traceparent(good.encode()) == TraceRef(good[3:35], good[36:52])
    for bad in ("", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", good + "-x", 7):
        assert parse_traceparent(bad) is None


def test_latency_histogram_counts_only_finite_values() -> None:
    h = LatencyHistogram((0.1, 1.0))
    ref = TraceRef("a" * 32, "b" * 16)
    import numpy as np

    h.add(("m", "v"), np.array([0.05, 0.1, 0.5, 2.0, np.nan]), [(0.5, ref)])
    (fam,) = h.collect()
    samples = {(s.name, s.labels.get("le")): s for s in fam.samples}
    assert samples[("driftwatch_prediction_latency_seconds_bucket", "0.1")].value == 2
    assert samples[("driftwatch_prediction_latency_seconds_bucket", "1.0")].value == 3
    assert samples[("driftwatch_prediction_latency_seconds_bucket", "+Inf")].value == 4
    assert samples[("driftwatch_prediction_latency_seconds_sum", None)].value == pytest.approx(2.65)
    ex = samples[("driftwatch_prediction_latency_seconds_bucket", "1.0")].exemplar
    assert ex is not None and ex.labels["trace_id"] == "a" * 32


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_server_paths_negotiation_and_readiness(replayed: Replayed) -> None:
    obs = replayed.obs
    url = obs.serve()
    assert url is not None and url.startswith("http://127.0.0.1:")
    try:
        status, headers, body = fetch(url + "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b" # {" not in body  # the text format has no exemplars
        status, headers, body = fetch(
            url + "/metrics",
            {"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"},
        )
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(body).decode()
        assert text.rstrip().endswith("# EOF") and 'trace_id="' in text
        # Not ready: no consumer partitions (this is not a worker).
        status, _, body = fetch(url + "/readyz")
        assert status == 503 and b"no input partitions" in body
        obs.assigned = 2
        status, _, body = fetch(url + "/readyz")
        assert status == 200 and b"warm-up mode" in body
        obs.recovering = True
        assert fetch(url + "/readyz")[0] == 503
        obs.recovering = False
        assert fetch(url + "/healthz")[0] == 200
        status, headers, body = fetch(url + "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b"credit_score" in body and b"FeatureDrift" in body
        status, _, body = fetch(url + "/api/status")
        doc = orjson.loads(body)
        assert [a["alertname"] for a in doc["active_alerts"]] == ["FeatureDrift"]
        assert fetch(url + "/nope")[0] == 404
    finally:
        assert obs.server is not None
        obs.server.stop()
        obs.server = None


def test_a_taken_port_does_not_stop_monitoring() -> None:
    registry = CollectorRegistry()
    first = MonitorServer("127.0.0.1:0", registry, lambda: b"", dict, lambda: (True, "")).start()
    try:
        port = first.url.rsplit(":", 1)[1]
        settings = settings_from_mapping({"metrics": {"listen": f"127.0.0.1:{port}"}})
        obs = Observability(settings)
        assert obs.serve() is None and obs.server is None
        obs.close()
    finally:
        first.stop()


def test_grafana_dashboard_queries_only_exposed_metrics(replayed: Replayed) -> None:
    import json
    import re

    path = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "driftwatch.json"
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\bdriftwatch_[a-z0-9_]+", e)}
    exposed = {f"driftwatch_notifications_{k}_total" for k in ("sent", "failed", "dropped")}
    for family in replayed.obs.registry.collect():
        exposed |= {family.name, family.name + "_total", family.name + "_info"}
        exposed |= {family.name + s for s in ("_bucket", "_count", "_sum")}
    assert used and used <= exposed, used - exposed
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"model", "version", "feature"} <= variables


def test_label_join_and_accuracy_per_window() -> None:
    settings = settings_from_mapping(
        {**SETTINGS, "labels": {"window": 200, "warmup": 500}, "metrics": {"enabled": False}}
    )
    obs = Observability(settings, position_shift=0)
    pipeline = Pipeline(settings, observers=obs.observers)
    obs.attach(pipeline)
    lines = list(generate("accuracy-drop", 6000, 2).lines())
    for k in range(0, len(lines), 1000):
        pipeline.process_lines(lines[k : k + 1000], k)
    get = obs.registry.get_sample_value
    labels = get("driftwatch_events_accepted_total", {"kind": "label"})
    joined = get("driftwatch_label_joins_total", {"outcome": "joined"})
    unmatched = get("driftwatch_label_joins_total", {"outcome": "unmatched"})
    assert labels and joined and joined + (unmatched or 0) == labels
    mv = {"model": "fraud", "model_version": "v1"}
    error = get("driftwatch_model_error", {**mv, "metric": "error_rate"})
    accuracy = get("driftwatch_model_accuracy_ratio", mv)
    assert error is not None and accuracy == pytest.approx(1 - error)
    assert get("driftwatch_labels_pending") == len(pipeline.joiner)


def test_notifier_delivery_counters_are_registered_beside() -> None:
    from alerting.notify import Notifier
    from alerting.rules import RuleSet
    from alerting.settings import NotificationSettings

    ns = NotificationSettings.model_validate({"receivers": [{"name": "log", "log": {}}]})
    notifier = Notifier.from_settings(ns, RuleSet())
    try:
        obs = Observability(settings_from_mapping({}))
        obs.attach(Pipeline(), sinks=[notifier])
        assert (
            obs.registry.get_sample_value(
                "driftwatch_notifications_sent_total", {"receiver": "log"}
            )
            == 0
        )
    finally:
        notifier.close()


def test_replay_serve_keeps_serving_after_the_replay(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.kafka_broker import free_ports

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(generate("abrupt-shift", N, 5, onset=0.4).lines()) + b"\n")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        "window: {size: 500}\nreference: {warmup_events: 2000}\n"
        "alerts: {FeatureDrift: {for: 10s}}\n"
    )
    (port,) = free_ports(1)
    cmd = [sys.executable, "-m", "monitor.cli", "replay", str(events), "--config", str(config)]
    cmd += ["--serve", "--metrics-listen", f"127.0.0.1:{port}", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        status, body = 0, b""
        while time.monotonic() < deadline and status != 200:
            assert proc.poll() is None, proc.communicate()
            with contextlib.suppress(OSError):
                status, _, body = fetch(url + "/readyz")
            time.sleep(0.3)
        assert status == 200 and b"replay finished" in body
        doc = orjson.loads(fetch(url + "/api/status")[2])
        assert [a["alertname"] for a in doc["active_alerts"]] == ["FeatureDrift"]
        assert doc["streams"][0]["features"]
        _, _, text = fetch(url + "/metrics")
        assert b'driftwatch_events_accepted_total{kind="prediction"} 8000.0' in text
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"Replay summary" in out


def test_a_window_snapshot_reuses_the_outputs_the_detector_saw() -> None:
    """The stream extracts scores, labels and latencies once per window; the metrics snapshot
    taken from them equals one recomputed from the window's events, and the pipeline drops
    them once the window's observers have seen them."""
    seen: list[tuple[WindowSnapshot, WindowSnapshot, bool]] = []

    class Compare:
        def window_closed(
            self, stream: ModelStream, report: WindowReport, events: Sequence[AnyEvent]
        ) -> None:
            outputs = stream.last_outputs
            assert outputs is not None and stream.last_report is report
            reused = snapshot_window(stream, report, events)
            stream.last_outputs = None
            fresh = snapshot_window(stream, report, events)
            stream.last_outputs = outputs
            assert outputs.latency is not None
            same_latency = bool(np.array_equal(outputs.latency, latency_of(list(events))))
            seen.append((reused, fresh, same_latency))

        def error_window(self, stream: ModelStream, window: ErrorWindow) -> None:
            pass

    settings = settings_from_mapping(SETTINGS)
    pipeline = Pipeline(settings, observers=[Compare()])
    lines = list(generate("abrupt-shift", 4000, 3, onset=0.5).lines())
    for k in range(0, len(lines), 1000):
        pipeline.process_lines(lines[k : k + 1000], k)
    assert len(seen) == (4000 - 2000) // 500
    for reused, fresh, same_latency in seen:
        assert reused.score is not None and reused.labels
        assert (reused.score, reused.labels) == (fresh.score, fresh.labels)
        assert same_latency
    assert all(s.last_outputs is None for s in pipeline.streams.values())
