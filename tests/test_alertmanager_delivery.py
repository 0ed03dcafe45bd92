"""Delivery to Alertmanager and webhooks: payloads, re-sends, retries, outages, counters, auth.

Most tests drive the receivers through the in-memory transport; the urllib transport, basic
auth, bearer tokens and TLS are checked against real HTTP(S) servers on 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.server
import itertools
import json
import logging
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from alerting.alertmanager import AlertmanagerReceiver
from alerting.dispatch import Dispatcher
from alerting.settings import (
    AlertmanagerSettings,
    DeliverySettings,
    NotificationSettings,
    SecretError,
    WebhookSettings,
)
from alerting.transport import (
    HttpResponse,
    MemoryTransport,
    TransportError,
    UrllibTransport,
    auth_headers,
    ssl_context,
)
from alerting.types import NoticeKind, Notification
from alerting.webhook import WebhookReceiver

WALL = 1_800_000_000.0  # a fixed wall clock: 2027-01-15
FAST = DeliverySettings(initial_backoff=0.05, max_backoff=0.2)


def note(
    status: str = "firing",
    fp: str = "a",
    starts: float = WALL - 100,
    ends: float | None = None,
    kind: NoticeKind = NoticeKind.ALERT,
    receiver: str = "am",
) -> Notification:
    return Notification(
        receiver=receiver,
        kind=kind,
        status=status,
        alertname="FeatureDrift",
        labels={"alertname": "FeatureDrift", "feature": fp, "severity": "warning"},
        annotations={"summary": "Drift.", "runbook_url": "rb/FeatureDrift.md"},
        starts_at=starts,
        ends_at=ends if status == "resolved" else None,
        fingerprint=fp,
        offset=7,
        generator_url=f"http://localhost:9464/alerts/{fp}",
    )


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.01)


def am(
    transport: MemoryTransport,
    urls: tuple[str, ...] = ("http://am0:9093",),
    delivery: DeliverySettings = FAST,
    **kw: Any,
) -> AlertmanagerReceiver:
    settings = AlertmanagerSettings(urls=urls, **{"resend_interval": 60.0, **kw})
    return AlertmanagerReceiver("am", settings, transport, {}, delivery, wall=lambda: WALL)


def bodies(t: MemoryTransport, url_part: str = "") -> list[list[dict[str, Any]]]:
    return [json.loads(body) for url, body, _ in list(t.requests) if url_part in url]


def test_firing_payload_is_alertmanager_v2() -> None:
    t = MemoryTransport()
    r = am(t, resend_interval=30.0)
    r.offer([note()])
    wait_until(lambda: len(t.requests) == 1)
    r.close(time.monotonic() + 1)
    url, body, headers = t.requests[0]
    assert url == "http://am0:9093/api/v2/alerts"
    assert headers["Content-Type"] == "application/json"
    (alert,) = json.loads(body)
    assert alert["labels"] == {"alertname": "FeatureDrift", "feature": "a", "severity": "warning"}
    assert alert["annotations"]["runbook_url"] == "rb/FeatureDrift.md"
    assert alert["generatorURL"] == "http://localhost:9464/alerts/a"
    starts = datetime.fromisoformat(alert["startsAt"]).timestamp()
    ends = datetime.fromisoformat(alert["endsAt"]).timestamp()
    assert starts == pytest.approx(WALL - 100, abs=0.001)  # event time
    assert ends == pytest.approx(WALL + 4 * 30.0, abs=0.001)  # now + 4 x resend interval
    assert r.delivery_stats().sent == 1


def test_active_alerts_are_resent_every_interval_and_resolved_ones_for_the_retention() -> None:
    t = MemoryTransport()
    r = am(t, resend_interval=0.2, resolve_retention=0.5)
    r.offer([note()])
    time.sleep(0.75)
    sends = len(t.requests)
    assert 3 <= sends <= 6, sends
    r.offer([note("resolved", ends=WALL - 10)])
    wait_until(lambda: any(b[0]["endsAt"].startswith("2027-01-15T07:59:50") for b in bodies(t)))
    time.sleep(1.0)
    n = len(t.requests)
    time.sleep(0.5)
    assert len(t.requests) == n, "resolved alert still re-sent after the retention"
    resolved = [b for b in bodies(t) if not b[0]["endsAt"].startswith("2027-01-15T08:0")]
    assert len(resolved) >= 2  # sent at once, then re-sent within the retention
    r.close(time.monotonic() + 1)


def test_every_alertmanager_gets_every_alert_even_when_one_is_down() -> None:
    def handler(url: str, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        if "am1" in url:
            raise TransportError("connection refused")
        return HttpResponse(200)

    t = MemoryTransport(handler)
    r = am(t, urls=("http://am0:9093", "http://am1:9093"))
    r.offer([note(fp="a"), note(fp="b")])
    wait_until(lambda: len(bodies(t, "am0")) == 1 and len(bodies(t, "am1")) >= 2)
    assert {a["labels"]["feature"] for a in bodies(t, "am0")[0]} == {"a", "b"}
    r.close(time.monotonic() + 0.2)
    am0, am1 = (ep.stats for ep in r.endpoints)
    assert (am0.sent, am0.retried, am0.dropped) == (2, 0, 0)
    assert am1.sent == 0 and am1.retried >= 1 and am1.dropped == 2


def test_the_live_member_of_a_pair_keeps_its_lease_and_the_returning_one_gets_the_start() -> None:
    # Each URL has its own queue, backoff and re-send timer: am1 being down neither delays
    # am0's lease renewals nor loses the alert for am1, which gets the original startsAt.
    up = threading.Event()

    def handler(url: str, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        if "am1" in url and not up.is_set():
            raise TransportError("connection refused")
        return HttpResponse(200)

    t = MemoryTransport(handler)
    r = am(t, urls=("http://am0:9093", "http://am1:9093"), resend_interval=0.1)
    r.offer([note()])
    wait_until(lambda: len(bodies(t, "am0")) >= 5 and r.endpoints[1].stats.retried >= 5)
    assert r.endpoints[1].stats.sent == 0
    up.set()
    wait_until(lambda: r.endpoints[1].stats.sent >= 1)
    r.close(time.monotonic() + 1)
    starts = {b[0]["startsAt"] for b in bodies(t)}
    assert starts == {bodies(t, "am0")[0][0]["startsAt"]}  # one start, to both, every time
    assert r.endpoints[0].stats.retried == 0
    assert r.delivery_stats().dropped == 0


def test_5xx_and_network_errors_are_retried_with_growing_backoff() -> None:
    answers: list[HttpResponse | TransportError] = [
        TransportError("refused"),
        HttpResponse(503, b"busy"),
        HttpResponse(502),
    ]
    times: list[float] = []

    def handler(url: str, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        times.append(time.monotonic())
        if answers:
            a = answers.pop(0)
            if isinstance(a, TransportError):
                raise a
            return a
        return HttpResponse(200)

    t = MemoryTransport(handler)
    r = am(t, delivery=DeliverySettings(initial_backoff=0.1, max_backoff=1.0))
    r.offer([note()])
    wait_until(lambda: r.delivery_stats().sent == 1)
    r.close(time.monotonic() + 1)
    stats = r.delivery_stats()
    assert (stats.retried, stats.failed, stats.dropped) == (3, 0, 0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Waits of 0.1, 0.2, 0.4 s, each scaled by a jitter factor in [0.5, 1].
    for gap, base in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert 0.5 * base - 0.01 <= gap <= base + 0.1, gaps


def test_4xx_is_not_retried_and_the_body_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    t = MemoryTransport(lambda u, b, h: HttpResponse(400, b"start time must be before end time"))
    r = am(t)
    with caplog.at_level(logging.ERROR, "driftwatch.notifications"):
        r.offer([note()])
        wait_until(lambda: r.delivery_stats().failed == 1)
        time.sleep(0.3)
    assert len(t.requests) == 1
    assert "start time must be before end time" in caplog.text
    assert r.close(time.monotonic() + 0.5)
    assert r.delivery_stats().retried == 0


def test_latest_state_per_alert_is_delivered_when_alertmanager_returns() -> None:
    up = threading.Event()

    def handler(url: str, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        if not up.is_set():
            raise TransportError("connection refused")
        return HttpResponse(200)

    t = MemoryTransport(handler)
    r = am(t)
    r.offer([note(fp="a")])
    r.offer([note("resolved", fp="a", ends=WALL - 50), note(fp="b")])
    r.offer([note(fp="c"), note("resolved", fp="c", ends=WALL - 40)])
    wait_until(lambda: r.delivery_stats().retried >= 2)
    up.set()
    wait_until(lambda: r.delivery_stats().sent > 0)
    r.close(time.monotonic() + 1)
    last = bodies(t)[-1]
    state = {a["labels"]["feature"]: a["endsAt"] for a in last}
    assert sorted(state) == ["a", "b", "c"]  # one entry per alert: its latest state
    assert state["a"].startswith("2027-01-15T07:59:10")  # resolved at its event time
    assert state["b"].startswith("2027-01-15T08:04")  # active: now + 4 x 60 s
    assert r.delivery_stats().dropped == 0


def test_a_full_queue_drops_and_counts_and_send_never_blocks() -> None:
    def slow(url: str, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        time.sleep(0.5)
        raise TransportError("timed out")

    t = MemoryTransport(slow)
    r = am(t, delivery=DeliverySettings(queue_capacity=2, initial_backoff=0.05))
    start = time.perf_counter()
    for fp in "abcde":
        r.offer([note(fp=fp)])
    assert time.perf_counter() - start < 0.05
    assert r.delivery_stats().dropped == 3
    assert not r.close(time.monotonic() + 0.1)
    assert r.delivery_stats().dropped == 5  # the two queued ones were never delivered


def test_event_timestamps_are_clamped_to_the_wall_clock_and_wall_mode_ignores_them() -> None:
    t = MemoryTransport()
    r = am(t)
    future = WALL + 3600
    r.offer([note(fp="a", starts=future)])
    r.offer([note("resolved", fp="b", starts=WALL - 10, ends=future)])
    wait_until(lambda: r.delivery_stats().sent >= 2)
    r.close(time.monotonic() + 1)
    sent = {a["labels"]["feature"]: a for b in bodies(t) for a in b}
    assert sent["a"]["startsAt"] == "2027-01-15T08:00:00.000Z"  # not in the future
    assert sent["b"]["endsAt"] == "2027-01-15T08:00:00.000Z"  # resolved now, not in an hour

    t2 = MemoryTransport()
    r2 = am(t2, timestamps="wall")
    r2.offer([note(fp="c", starts=WALL - 1000)])
    wait_until(lambda: r2.delivery_stats().sent >= 1)
    r2.close(time.monotonic() + 1)
    assert bodies(t2)[0][0]["startsAt"] == "2027-01-15T08:00:00.000Z"


def test_transients_never_reach_alertmanager() -> None:
    t = MemoryTransport()
    r = am(t)
    r.offer([note("resolved", kind=NoticeKind.TRANSIENT, ends=WALL)])
    time.sleep(0.2)
    assert r.close(time.monotonic() + 0.5)
    assert t.requests == []


def test_webhook_payload_order_and_filters() -> None:
    t = MemoryTransport()
    settings = WebhookSettings(url="http://hook/x", send_resolved=False, max_alerts=2)
    r = WebhookReceiver("chat", settings, t, {}, FAST, external_url="http://dw")
    r.offer(
        [
            note(fp="a", receiver="chat"),
            note("resolved", fp="a", ends=WALL, receiver="chat"),
            note("resolved", kind=NoticeKind.TRANSIENT, ends=WALL, receiver="chat"),
            note(fp="b", receiver="chat"),
            note(fp="c", kind=NoticeKind.FLAPPING, receiver="chat"),
        ]
    )
    assert r.close(time.monotonic() + 2)
    payloads = [json.loads(b) for _, b, _ in t.requests]
    assert [[a["fingerprint"] for a in p["alerts"]] for p in payloads] == [["a", "b"], ["c"]]
    first = payloads[0]
    assert first["version"] == "driftwatch/1"
    assert first["status"] == "firing"
    assert first["receiver"] == "chat"
    assert first["externalURL"] == "http://dw"
    assert first["commonLabels"] == {"alertname": "FeatureDrift", "severity": "warning"}
    assert first["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert payloads[1]["alerts"][0]["kind"] == "flapping"


def test_dispatcher_routes_by_receiver_and_writes_the_log(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    settings = NotificationSettings.model_validate(
        {
            "receivers": [
                {"name": "am", "alertmanager": {"urls": ["http://am0:9093"]}},
                {"name": "log", "log": {"path": str(path), "send_transient": False}},
            ]
        }
    )
    t = MemoryTransport()
    d = Dispatcher.from_settings(settings, transport=t)
    d.send([note(), note(receiver="log"), note(receiver="nobody")])
    d.send([note("resolved", kind=NoticeKind.TRANSIENT, ends=WALL, receiver="log")])
    assert d.close(2.0)
    assert d.unknown == 1
    (line,) = path.read_text().splitlines()
    assert json.loads(line)["fingerprint"] == "a"
    assert d.stats()["am"].sent == 1
    assert d.stats()["log"].sent == 1


# -- the real HTTP client -------------------------------------------------------------------


class Recorder(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, bytes]]] = []
    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).seen.append(dict(self.headers.items()))
        status, body = type(self).answers.pop(0) if type(self).answers else (200, b"")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[http.server.HTTPServer, str]]:
    handler = type("H", (Recorder,), {"answers": [], "seen": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_urllib_transport_returns_answers_and_raises_without_one(
    server: tuple[http.server.HTTPServer, str],
) -> None:
    srv, url = server
    handler: Any = srv.RequestHandlerClass
    handler.answers[:] = [(200, b""), (400, b"bad label"), (500, b"boom")]
    tr = UrllibTransport()
    assert tr.post(url + "/x", b"[]", {}, 5).status == 200
    assert tr.post(url + "/x", b"[]", {}, 5) == HttpResponse(400, b"bad label")
    assert tr.post(url + "/x", b"[]", {}, 5) == HttpResponse(500, b"boom")
    port = srv.server_address[1]
    srv.shutdown()
    srv.server_close()
    with pytest.raises(TransportError):
        tr.post(f"http://127.0.0.1:{port}/x", b"[]", {}, 2)


def test_basic_auth_and_bearer_secrets_from_env_and_file(
    server: tuple[http.server.HTTPServer, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    srv, url = server
    handler: Any = srv.RequestHandlerClass
    handler.answers[:] = [(200, b""), (503, b"")]
    monkeypatch.setenv("AM_PASSWORD", "s3cret-pw")
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    basic = AlertmanagerSettings.model_validate(
        {"urls": [url], "basic_auth": {"username": "dw", "password": {"env": "AM_PASSWORD"}}}
    )
    bearer = AlertmanagerSettings.model_validate(
        {"urls": [url], "bearer_token": {"file": str(token)}}
    )
    assert auth_headers(bearer) == {"Authorization": "Bearer tok-123"}
    with caplog.at_level(logging.DEBUG):
        r = AlertmanagerReceiver("am", basic, UrllibTransport(), auth_headers(basic), FAST)
        r.offer([note()])
        wait_until(lambda: r.delivery_stats().sent == 1)
        r.offer([note(fp="b")])
        wait_until(lambda: r.delivery_stats().retried == 1)
        r.close(time.monotonic() + 2)
    expected = "Basic " + base64.b64encode(b"dw:s3cret-pw").decode()
    assert handler.seen[0]["Authorization"] == expected
    assert "s3cret-pw" not in caplog.text and expected not in caplog.text
    assert "s3cret" not in repr(basic)
    monkeypatch.delenv("AM_PASSWORD")
    with pytest.raises(SecretError, match="AM_PASSWORD is not set") as err:
        auth_headers(basic)
    assert "s3cret" not in str(err.value)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_with_a_ca_file(tmp_path: Path) -> None:
    try:
        cert, key = _self_signed(tmp_path)
    except (OSError, subprocess.CalledProcessError):
        pytest.fail("needs the openssl command (Debian package openssl)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    handler = type("H", (Recorder,), {"answers": [], "seen": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{srv.server_address[1]}/api/v2/alerts"
    try:
        settings = AlertmanagerSettings.model_validate(
            {"urls": ["https://127.0.0.1"], "tls": {"ca_file": str(cert)}}
        )
        trusted = UrllibTransport(ssl_context(settings.tls))
        assert trusted.post(url, b"[]", {}, 5).status == 200
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            UrllibTransport().post(url, b"[]", {}, 5)
    finally:
        srv.shutdown()
        srv.server_close()
