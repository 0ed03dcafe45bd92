"""The metrics, health and status server (``MonitorServer``) over real HTTP: content
negotiation, exemplars and gzip from prometheus_client's exposition app, the other paths beside
it, and errors that answer 500 without stopping the server."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric

from monitor.config import settings_from_mapping
from monitor.http_server import MonitorServer, parse_listen

TRACE, SPAN = "a" * 32, "b" * 16
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


class Switchable:
    """What the server shows, changed by the tests (and a collector that can fail)."""

    def __init__(self) -> None:
        self.ready = (False, "no input partitions assigned")
        self.healthy = (True, "")
        self.fail = False

    def page(self) -> bytes:
        if self.fail:
            raise RuntimeError("page broke")
        return b"<html>status</html>"

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        if self.fail:
            raise RuntimeError("collector broke")
        return []


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[MonitorServer, Switchable]]:
    registry = CollectorRegistry()
    events = Counter("dwtest_events", "Events seen.", registry=registry)
    events.inc(3, exemplar={"trace_id": TRACE, "span_id": SPAN})
    Gauge("dwtest_other", "Another family.", registry=registry).set(1)
    state = Switchable()
    registry.register(state)
    server = MonitorServer(
        "127.0.0.1:0",
        registry,
        state.page,
        lambda: {"ready": state.ready[0], "value": 1.5},
        lambda: state.ready,
        lambda: state.healthy,
    ).start()
    yield server, state
    server.stop()


def fetch(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_text_format_by_default_without_exemplars(served: tuple[MonitorServer, Switchable]) -> None:
    server, _ = served
    status, headers, body = fetch(server.url + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "Content-Encoding" not in headers
    assert headers["Cache-Control"] == "no-store"
    assert b"dwtest_events_total 3.0\n" in body
    assert b"# {" not in body and b"# EOF" not in body


def test_openmetrics_carries_exemplars_gzipped_when_accepted(
    served: tuple[MonitorServer, Switchable],
) -> None:
    server, _ = served
    status, headers, body = fetch(server.url + "/metrics", {"Accept": OPENMETRICS})
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert "Content-Encoding" not in headers
    line = next(x for x in body.decode().splitlines() if x.startswith("dwtest_events_total"))
    assert f'trace_id="{TRACE}"' in line and f'span_id="{SPAN}"' in line
    status, headers, zipped = fetch(
        server.url + "/metrics", {"Accept": OPENMETRICS, "Accept-Encoding": "gzip, deflate"}
    )
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(zipped).decode()
    assert text.rstrip().endswith("# EOF") and f'trace_id="{TRACE}"' in text


def test_metrics_can_be_filtered_by_name(served: tuple[MonitorServer, Switchable]) -> None:
    server, _ = served
    _, _, body = fetch(server.url + "/metrics?name%5B%5D=dwtest_other")
    assert b"dwtest_other 1.0" in body and b"dwtest_events" not in body


def test_readiness_and_health_say_why(served: tuple[MonitorServer, Switchable]) -> None:
    server, state = served
    assert fetch(server.url + "/readyz")[::2] == (503, b"not ready: no input partitions assigned\n")
    state.ready = (True, "2 partitions assigned, warm-up mode")
    try:
        status, headers, body = fetch(server.url + "/readyz")
        assert (status, body) == (200, b"ok: 2 partitions assigned, warm-up mode\n")
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert fetch(server.url + "/healthz")[::2] == (200, b"ok\n")
        state.healthy = (False, "worker loop stalled for 31 s")
        assert fetch(server.url + "/healthz")[0] == 503
    finally:
        state.ready = (False, "no input partitions assigned")
        state.healthy = (True, "")


def test_status_page_json_and_unknown_paths(served: tuple[MonitorServer, Switchable]) -> None:
    server, _ = served
    for path in ("/", "/index.html"):
        status, headers, body = fetch(server.url + path)
        assert (status, body) == (200, b"<html>status</html>")
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Cache-Control"] == "no-store"
    status, headers, body = fetch(server.url + "/api/status?x=1")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"ready": False, "value": 1.5}
    assert fetch(server.url + "/nope")[0] == 404
    assert fetch(server.url + "/healthz", method="POST")[0] == 405
    assert fetch(server.url + "/metrics", method="POST")[0] == 405


def test_errors_answer_500_and_the_server_goes_on(served: tuple[MonitorServer, Switchable]) -> None:
    server, state = served
    state.fail = True
    try:
        assert fetch(server.url + "/")[::2] == (500, b"internal error\n")
        assert fetch(server.url + "/metrics")[0] == 500
    finally:
        state.fail = False
    assert fetch(server.url + "/metrics")[0] == 200
    assert fetch(server.url + "/")[0] == 200


def test_the_wsgi_app_answers_without_a_socket(served: tuple[MonitorServer, Switchable]) -> None:
    from wsgiref.util import setup_testing_defaults

    server, _ = served
    environ: dict[str, Any] = {"PATH_INFO": "/metrics", "HTTP_ACCEPT": OPENMETRICS}
    setup_testing_defaults(environ)
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    body = b"".join(server.app(environ, start_response))
    ((status, headers),) = started
    assert status == "200 OK" and ("Cache-Control", "no-store") in headers
    assert body.endswith(b"# EOF\n")


def test_binds_loopback_unless_told_otherwise() -> None:
    assert settings_from_mapping({}).metrics.listen == "127.0.0.1:9464"
    assert parse_listen(":9464") == ("127.0.0.1", 9464)
    server = MonitorServer(":0", CollectorRegistry(), bytes, dict, lambda: (True, "")).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert fetch(server.url + "/healthz")[0] == 200
    finally:
        server.stop()
