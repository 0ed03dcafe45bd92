"""The live worker's observability, end to end, against real components.

One ``driftwatch run`` subprocess consumes a drift scenario from the real Kafka broker; its
events carry W3C trace context (a ``traceparent`` header per message and a ``trace`` field per
event). While it runs, this module checks:

* ``promtool check metrics`` on a live scrape of ``/metrics`` passes without lint;
* a real Prometheus 2.42 (Debian's, started here on 127.0.0.1) scrapes the worker, loads the
  shipped rules, and its query API returns the drift metric of the drifted feature and the
  trace-id exemplars of the latency histogram;
* an in-test OTLP/HTTP receiver gets consumer spans linked to the producers' contexts and an
  alert span with versions, offsets and links back to the original trace ids;
* the status page in headless Chromium (driven through chromedriver's WebDriver API) draws its
  charts and lists the firing alert; the screenshot goes to ``artifacts/status-page.png``
  (and, with ``DRIFTWATCH_UPDATE_SCREENSHOT=1``, to ``deploy/status-page.png`` for the README).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from monitor.scenarios.simulate import generate
from tests.kafka_broker import KafkaBroker, free_ports
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.prometheus_server import Prom, query, run_prometheus
from tests.webdriver import WebDriver, chromium
from tests.worker_proc import Topics, Worker, until

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
EVENTS = 30_000
ENVELOPE = 500
TRACE_URL = "http://jaeger.example:16686/trace/{trace_id}"


def traceparent(i: int) -> str:
    return f"00-{0xD000 + i:032x}-{0xA000 + i:016x}-01"


def http_get(url: str, accept: str = "", timeout: float = 10.0) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


@dataclass
class Live:
    worker: Worker
    metrics_url: str
    receiver: OtlpReceiver
    topics: Topics
    traces: set[str]
    workdir: Path


def produce_traced(bootstrap: str, topic: str) -> set[str]:
    """The scenario as envelopes keyed by model, every event with its own trace context and
    each message with the first event's ``traceparent`` header; returns all trace ids."""
    lines = list(generate("abrupt-shift", EVENTS, 11).lines())
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=8 << 20)
    traces = set()
    try:
        for start in range(0, len(lines), ENVELOPE):
            events = []
            for i in range(start, start + ENVELOPE):
                ev = orjson.loads(lines[i])
                ev["trace"] = {"traceparent": traceparent(i)}
                traces.add(traceparent(i)[3:35])
                events.append(ev)
            producer.send(
                topic,
                key=b"fraud",
                value=orjson.dumps({"events": events}),
                headers=[("traceparent", traceparent(start).encode())],
            )
        producer.flush(60)
    finally:
        producer.close(10)
    return traces


@pytest.fixture(scope="module")
def live(kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("live")
    receiver = OtlpReceiver().start()
    topics = Topics.fresh("obs")
    topics.create(kafka_broker.bootstrap, 2)
    (port,) = free_ports(1)
    extra = (
        f"metrics:\n  listen: 127.0.0.1:{port}\n"
        f"tracing:\n  enabled: true\n  endpoint: {receiver.endpoint}\n"
        f"  trace_url: '{TRACE_URL}'\n  environment: test\n"
    )
    cfg = topics.config(workdir / "monitor.yaml", kafka_broker.bootstrap, 2, extra=extra)
    worker = Worker(cfg, workdir, "obs").start()
    try:
        traces = produce_traced(kafka_broker.bootstrap, topics.predictions)
        worker.wait_for(
            lambda s: (
                s.get("alerts", {}).get("FeatureDrift/firing", 0) >= 1
                and s.get("accepted", 0) >= EVENTS
            ),
            timeout=240,
        )
        yield Live(worker, f"http://127.0.0.1:{port}", receiver, topics, traces, workdir)
    finally:
        worker.stop()
        receiver.stop()


def test_readyz_healthz_and_a_live_scrape_that_passes_promtool(live: Live) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: apt-get install prometheus")
    ready = until(
        lambda: http_get(live.metrics_url + "/readyz")[0] == 200, 30, "/readyz to answer 200"
    )
    assert ready
    assert http_get(live.metrics_url + "/healthz")[0] == 200
    status, ctype, body = http_get(live.metrics_url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    out = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == b"" and out.stderr.strip() == b""  # no lint at all
    text = body.decode()
    assert 'driftwatch_build_info{revision="' in text
    # Three input topics of two partitions, all assigned; everything consumed: no lag (the
    # worker refreshes lag once a second).
    assert "driftwatch_kafka_assigned_partitions 6.0" in text
    lag = until(lambda: _lag(live), 30, "zero lag on six partitions")
    assert f'partition="0",topic="{live.topics.predictions}"' in "".join(lag)
    assert f'driftwatch_events_accepted_total{{kind="prediction"}} {EVENTS}.0' in text
    # OpenMetrics on request, with exemplars holding the producers' trace ids.
    status, ctype, body = http_get(
        live.metrics_url + "/metrics", accept="application/openmetrics-text; version=1.0.0"
    )
    assert ctype.startswith("application/openmetrics-text")
    exemplar_ids = {
        line.split('trace_id="')[1][:32]
        for line in body.decode().splitlines()
        if line.startswith("driftwatch_prediction_latency_seconds_bucket") and "trace_id" in line
    }
    assert exemplar_ids and exemplar_ids <= live.traces


def _lag(live: Live) -> list[str] | None:
    text = http_get(live.metrics_url + "/metrics")[2].decode()
    lag = [x for x in text.splitlines() if x.startswith("driftwatch_kafka_consumer_lag_messages{")]
    return lag if len(lag) == 6 and all(x.endswith(" 0.0") for x in lag) else None


@pytest.fixture(scope="module")
def prometheus(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    rules = REPO / "deploy" / "prometheus"
    target = live.metrics_url.removeprefix("http://")
    config = (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {rules / 'driftwatch_recording_rules.yml'}\n"
        f"  - {rules / 'driftwatch_alerting_rules.yml'}\n"
        "scrape_configs:\n  - job_name: driftwatch\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    directory = tmp_path_factory.mktemp("prometheus")
    with run_prometheus(directory, config, ["--enable-feature=exemplar-storage"]) as prom:
        yield prom


def test_prometheus_scrapes_the_worker_and_returns_the_drifted_feature(
    live: Live, prometheus: Prom
) -> None:
    up = until(lambda: query(prometheus, 'up{job="driftwatch"} == 1'), 60, "the scrape")
    assert len(up) == 1
    drift = until(
        lambda: query(prometheus, 'driftwatch_drift_score{feature="credit_score",statistic="psi"}'),
        30,
        "the drift metric",
    )
    (series,) = drift
    assert series["metric"]["model"] == "fraud" and series["metric"]["model_version"] == "v1"
    ratio = query(prometheus, 'driftwatch_drift_threshold_ratio{feature="credit_score"}')
    assert float(ratio[0]["value"][1]) > 1.0  # the drifted feature is over its threshold
    calm = query(prometheus, 'driftwatch_drift_threshold_ratio{feature="amount"}')
    assert float(calm[0]["value"][1]) < 1.0
    firing = query(prometheus, 'driftwatch_alerts{alertname="FeatureDrift",state="firing"}')
    assert float(firing[0]["value"][1]) == 1.0
    # The shipped rules load and evaluate against the live series.
    until(
        lambda: query(prometheus, 'driftwatch:drift_threshold_ratio:max{feature="credit_score"}'),
        30,
        "the recording rule",
    )
    _status, _, body = http_get(prometheus.url + "/api/v1/rules")
    groups = json.loads(body)["data"]["groups"]
    health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
    assert health and set(health.values()) <= {"ok", "unknown"}, health
    # Exemplars were stored with the producers' trace ids.
    now = time.time()
    params = urllib.parse.urlencode(
        {
            "query": "driftwatch_prediction_latency_seconds_bucket",
            "start": now - 600,
            "end": now + 60,
        }
    )
    _, _, body = http_get(prometheus.url + "/api/v1/query_exemplars?" + params)
    ids = {
        ex["labels"]["trace_id"]
        for series in json.loads(body)["data"]
        for ex in series["exemplars"]
    }
    assert ids and ids <= live.traces


def _offsets(span: ReceivedSpan) -> range:
    """The offsets of the messages a consumer span processed (one, or a batch of them)."""
    first = span.attributes["messaging.kafka.offset"]
    return range(first, span.attributes.get("driftwatch.batch.last_offset", first) + 1)


def _spans(live: Live) -> list[ReceivedSpan]:
    def done(spans: list[ReceivedSpan]) -> bool:
        consumer = {o for s in spans if s.kind == 5 for o in _offsets(s)}
        alert = any(s.name == "alert FeatureDrift firing" for s in spans)
        return alert and len(consumer) >= EVENTS // ENVELOPE

    return live.receiver.wait_for(done, timeout=60)


def test_alert_span_leads_back_to_the_producers_traces(live: Live) -> None:
    spans = _spans(live)
    by_id = {s.span_id: s for s in spans}
    alert = next(s for s in spans if s.name == "alert FeatureDrift firing")
    resource = alert.resource
    assert resource["service.name"] == "driftwatch"
    assert resource["service.version"]
    assert len(resource["vcs.ref.head.revision"]) >= 7
    assert resource["deployment.environment.name"] == "test"
    a = alert.attributes
    assert a["driftwatch.model.name"] == "fraud" and a["driftwatch.model.version"] == "v1"
    assert a["driftwatch.feature"] == "credit_score"
    assert a["driftwatch.data.version"] == "snap-2026-01-01"
    assert a["driftwatch.feature_set.version"] == "fs-7"
    assert a["driftwatch.reference.id"].startswith("sha256:")
    assert a["messaging.destination.name"] == live.topics.predictions
    first, last = a["driftwatch.kafka.offset.first"], a["driftwatch.kafka.offset.last"]
    assert 0 <= first <= last < EVENTS // ENVELOPE
    # Links: a bounded sample of the window's events, each an original producer trace.
    assert 0 < len(alert.links) <= 16 and alert.dropped_links == 0
    assert {link.trace_id for link in alert.links} <= live.traces
    # Parent: the CONSUMER span of the batch of messages holding the one that closed the window.
    parent = by_id[alert.parent_span_id]
    assert parent.name == f"process {live.topics.predictions}"
    assert parent.kind == 5  # SPAN_KIND_CONSUMER
    pa = parent.attributes
    assert pa["messaging.system"] == "kafka"
    assert pa["messaging.operation.type"] == "process"
    assert pa["messaging.consumer.group.name"] == live.topics.group
    assert last in _offsets(parent)
    assert pa["messaging.batch.message_count"] == len(_offsets(parent))
    assert pa["messaging.destination.partition.id"] in {"0", "1"}
    # Batches of 500-event envelopes hold fewer than tracing.max_links (32) messages, so every
    # message's traceparent header is among the links, with its offset.
    header = traceparent(last * ENVELOPE)[3:35]
    assert header in {link.trace_id for link in parent.links}
    assert {link.trace_id for link in parent.links} <= live.traces
    consumer = [s for s in spans if s.kind == 5]
    covered = sorted(o for s in consumer for o in _offsets(s))
    assert covered == list(range(EVENTS // ENVELOPE))  # every message in exactly one span
    # The alert as written by the worker points at this trace.
    record = next(r for r in live.worker.alerts_records() if r["state"] == "firing")
    assert record["annotations"]["trace_id"] == alert.trace_id
    assert record["annotations"]["trace_url"] == TRACE_URL.format(trace_id=alert.trace_id)
    assert live.receiver.content_types == {"application/x-protobuf"}


CHART_CHECK = """
const figs = [...document.querySelectorAll('figure.drift')];
const drawn = figs.filter(f => {
  const line = f.querySelector('polyline.score');
  if (!line) return false;
  const r = line.getBoundingClientRect();
  return r.width > 50 && line.points.numberOfItems > 1;
});
const alerts = [...document.querySelectorAll('table.active-alerts tr.alert.firing')];
const lat = document.querySelectorAll('figure.latency polyline').length;
return {
  figures: figs.length,
  drawn: drawn.map(f => f.dataset.feature),
  breach: [...document.querySelectorAll('figure.drift.breach')].map(f => f.dataset.feature),
  firing: alerts.map(a => a.dataset.alertname),
  runbook: alerts.map(a => (a.querySelector('a[href*="runbook"], a') || {}).textContent),
  traceLinks: [...document.querySelectorAll('table.active-alerts a')]
      .map(a => a.getAttribute('href')).filter(h => h.includes('/trace/')),
  latencyLines: lat,
  reference: (document.querySelector('.reference-id') || {}).textContent,
  external: [...document.querySelectorAll('script[src],link[href],img[src]')].length,
};
"""


def test_status_page_in_headless_chromium(live: Live, tmp_path: Path) -> None:
    with chromium(tmp_path, ["--window-size=1280,1700"]) as driver:
        driver.go(live.metrics_url + "/")
        page = until(lambda: _drawn(driver), 30, "the charts")
        assert page["figures"] >= 20 and len(page["drawn"]) == page["figures"]
        assert page["breach"] == ["credit_score"]
        assert page["firing"] == ["FeatureDrift"]
        assert page["traceLinks"] and all(
            link.startswith("http://jaeger.example:16686/trace/") for link in page["traceLinks"]
        )
        assert page["latencyLines"] == 3
        assert page["reference"].startswith("sha256:")
        assert page["external"] == 0  # no external assets
        png = driver.screenshot()
        assert png.startswith(b"\x89PNG")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "status-page.png").write_bytes(png)
        if os.environ.get("DRIFTWATCH_UPDATE_SCREENSHOT"):  # the README's picture
            (REPO / "deploy" / "status-page.png").write_bytes(png)


def _drawn(driver: WebDriver) -> dict[str, Any] | None:
    page: dict[str, Any] = driver.js(CHART_CHECK)
    return page if page["figures"] and page["firing"] else None
