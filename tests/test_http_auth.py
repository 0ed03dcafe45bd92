"""Bearer-token authentication and TLS of the metrics/status server (``metrics.auth``,
``metrics.tls``), over real sockets: every path but the probes answers 401 without the token,
the status page's sign-in cookie, HTTPS with certificates made by ``openssl``, configuration
errors that name the field and the file, and no token in any log line."""

from __future__ import annotations

import http.client
import logging
import ssl
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from monitor.config import ConfigError, MetricsTLSConfig, load_settings
from monitor.http_auth import COOKIE, SESSION_SECONDS, BearerAuth, server_context
from monitor.http_server import MonitorServer, Observability
from tests.tls_certs import Certs, make_certs

TOKEN = "s3cret-Token-8f1d2c"
WRONG = "wrong-Token-77aa01"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def start_server(auth: BearerAuth | None, tls: ssl.SSLContext | None = None) -> MonitorServer:
    registry = CollectorRegistry()
    Counter("dwtest_events", "Events seen.", registry=registry).inc(3)
    return MonitorServer(
        "127.0.0.1:0",
        registry,
        lambda: b"<html>status</html>",
        lambda: {"ready": True},
        lambda: (True, "2 partitions assigned"),
        auth=auth,
        tls=tls,
    ).start()


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def server(clock: Clock) -> Iterator[MonitorServer]:
    srv = start_server(BearerAuth(TOKEN, secure_cookie=False, clock=clock))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def request(
    url: str,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request, redirects not followed."""
    parts = urllib.parse.urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.netloc, timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PROTECTED = ["/metrics", "/", "/index.html", "/api/status", "/nope"]


@pytest.mark.parametrize("path", PROTECTED)
def test_every_path_but_the_probes_needs_the_token(server: MonitorServer, path: str) -> None:
    for headers in ({}, bearer(WRONG), bearer(""), {"Authorization": f"Basic {TOKEN}"}):
        status, hdrs, body = request(server.url, path, headers)
        assert status == 401, (path, headers)
        assert hdrs["WWW-Authenticate"].startswith("Bearer")
        assert body == b"bearer token required\n"
    assert request(server.url, path, method="POST")[0] == 401  # before 405
    status, _, body = request(server.url, path, bearer(TOKEN))
    assert status == (404 if path == "/nope" else 200)
    if path == "/metrics":
        assert b"dwtest_events_total 3.0" in body


def test_probes_stay_open(server: MonitorServer) -> None:
    assert request(server.url, "/healthz")[::2] == (200, b"ok\n")
    assert request(server.url, "/readyz")[::2] == (200, b"ok: 2 partitions assigned\n")
    assert request(server.url, "/readyz", bearer(WRONG))[0] == 200


def test_a_browser_signs_in_once_and_gets_a_cookie(server: MonitorServer, clock: Clock) -> None:
    html = {"Accept": "text/html,application/xhtml+xml"}
    status, hdrs, body = request(server.url, "/", html)
    assert status == 401 and hdrs["WWW-Authenticate"].startswith("Bearer")
    assert b'<form class="login" method="post" action="login">' in body
    assert b"status</html>" not in body
    # Wherever the form shows, it posts to /login (relative, for servers behind a prefix).
    status, _, body = request(server.url, "/api/status", html)
    assert status == 401 and b'method="post" action="../login">' in body
    assert request(server.url, "/login")[0] == 200
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, hdrs, body = request(
        server.url, "/login", form, "POST", urllib.parse.urlencode({"token": WRONG}).encode()
    )
    assert status == 401 and b"That is not the token." in body and "Set-Cookie" not in hdrs
    status, hdrs, _ = request(
        server.url, "/login", form, "POST", urllib.parse.urlencode({"token": TOKEN}).encode()
    )
    assert status == 303 and hdrs["Location"] == "./"
    cookie = hdrs["Set-Cookie"]
    attrs = [a.strip() for a in cookie.split(";")]
    assert {"HttpOnly", "SameSite=Strict", f"Max-Age={SESSION_SECONDS}"} <= set(attrs)
    assert "Secure" not in attrs  # plain HTTP: a Secure cookie would never come back
    assert TOKEN not in cookie
    session = attrs[0]
    assert session.startswith(COOKIE + "=")
    for path in ("/", "/api/status", "/metrics"):
        assert request(server.url, path, {"Cookie": f"theme=dark; {session}"})[0] == 200
    expires, mac = session.split("=", 1)[1].split(".")
    forged = [
        f"{COOKIE}={expires}.{'0' * len(mac)}",
        f"{COOKIE}={int(expires) + 3600}.{mac}",  # a later expiry does not match the MAC
        f"{COOKIE}={mac}",
        f"{COOKIE}=",
        f'{COOKIE}="unbalanced',
    ]
    for value in forged:
        assert request(server.url, "/", {"Cookie": value})[0] == 401, value
    clock.now += SESSION_SECONDS + 1
    try:
        assert request(server.url, "/", {"Cookie": session})[0] == 401  # expired
    finally:
        clock.now -= SESSION_SECONDS + 1
    # A cookie made with another token is refused.
    other = BearerAuth(WRONG, secure_cookie=False, clock=clock).session_cookie().split(";")[0]
    assert request(server.url, "/", {"Cookie": other})[0] == 401
    assert request(server.url, "/login", method="PUT")[0] == 405
    big = {**form, "Content-Length": str(1 << 20)}
    assert request(server.url, "/login", big, "POST", b"token=x")[0] == 413


def test_the_token_is_never_logged(server: MonitorServer, caplog: pytest.LogCaptureFixture) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with caplog.at_level(logging.DEBUG, logger="driftwatch"):
        for token in (TOKEN, WRONG):
            request(server.url, "/metrics", bearer(token))
            request(server.url, f"/?token={token}")
            request(server.url, "/login", form, "POST", f"token={token}".encode())
        session = BearerAuth(TOKEN, secure_cookie=False).session_cookie().split(";")[0]
        request(server.url, "/", {"Cookie": session})
    text = caplog.text
    assert "401 for GET /metrics" in text and '"GET /" 401' in text  # the requests were logged
    assert "failed sign-in to the status page from 127.0.0.1" in text
    assert "Bearer" not in text and session.split("=")[1] not in text
    for secret in (TOKEN, WRONG):
        assert secret not in text
    assert TOKEN not in repr(BearerAuth(TOKEN, secure_cookie=False))


def test_https_with_a_certificate_from_openssl(certs: Certs) -> None:
    tls = server_context(MetricsTLSConfig(certfile=str(certs.cert), keyfile=str(certs.key)))
    assert tls.minimum_version == ssl.TLSVersion.TLSv1_2
    srv = start_server(BearerAuth(TOKEN, secure_cookie=True), tls)
    try:
        assert srv.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(certs.ca))
        status, _, body = request(srv.url, "/metrics", bearer(TOKEN), context=trusted)
        assert status == 200 and b"dwtest_events_total 3.0" in body
        assert request(srv.url, "/metrics", context=trusted)[0] == 401
        assert request(srv.url, "/healthz", context=trusted)[0] == 200
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        _, hdrs, _ = request(srv.url, "/login", form, "POST", f"token={TOKEN}".encode(), trusted)
        assert "Secure" in [a.strip() for a in hdrs["Set-Cookie"].split(";")]
        # A client that does not trust the CA and one that speaks plain HTTP are refused, and
        # the server goes on.
        with pytest.raises(ssl.SSLCertVerificationError):
            request(srv.url, "/healthz", context=ssl.create_default_context())
        plain = srv.url.replace("https://", "http://")
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            request(plain, "/healthz")
        assert request(srv.url, "/healthz", context=trusted)[0] == 200
    finally:
        srv.stop()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "monitor.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_settings_read_the_token_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certs: Certs
) -> None:
    assert load_settings(None).metrics.auth is None and load_settings(None).metrics.tls is None
    (tmp_path / "token").write_text(TOKEN + "\n")
    cfg = write(
        tmp_path,
        f"metrics:\n  auth:\n    bearer_token:\n      file: {tmp_path / 'token'}\n"
        f"  tls:\n    certfile: {certs.cert}\n    keyfile: {certs.key}\n",
    )
    s = load_settings(cfg)
    assert s.metrics.auth is not None and s.metrics.auth.bearer_token.secret() == TOKEN
    assert TOKEN not in repr(s) and TOKEN not in str(s.model_dump())
    monkeypatch.setenv("DW_TEST_TOKEN", WRONG)
    by_env = "metrics:\n  auth:\n    bearer_token: {env: DW_TEST_TOKEN}\n"
    s = load_settings(write(tmp_path, by_env))
    assert s.metrics.auth is not None and s.metrics.auth.bearer_token.secret() == WRONG


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "metrics:\n  auth:\n    bearer_token: {env: DW_TEST_TOKEN, file: /x}\n",
            "metrics.auth.bearer_token: Value error, give exactly one of env or file",
        ),
        (
            "metrics:\n  auth:\n    bearer_token: {}\n",
            "metrics.auth.bearer_token: Value error, give exactly one of env or file",
        ),
        (
            "metrics:\n  auth:\n    bearer_token: {env: DW_UNSET_TOKEN}\n",
            "metrics.auth.bearer_token: Value error, "
            "environment variable DW_UNSET_TOKEN is not set",
        ),
        (
            "metrics:\n  auth:\n    bearer_token: {file: TMP/missing}\n",
            "metrics.auth.bearer_token: Value error, "
            "cannot read secret file TMP/missing: FileNotFoundError",
        ),
        (
            "metrics:\n  auth:\n    bearer_token: {file: TMP/empty}\n",
            "metrics.auth.bearer_token: Value error, file TMP/empty is empty",
        ),
        ("metrics:\n  auth: {}\n", "metrics.auth.bearer_token: Field required"),
        ("metrics:\n  tls:\n    certfile: TMP/empty\n", "metrics.tls.keyfile: Field required"),
        (
            "metrics:\n  tls: {certfile: TMP/empty, keyfile: TMP/empty}\n",
            "metrics.tls: Value error, cannot load certfile TMP/empty with keyfile TMP/empty",
        ),
    ],
)
def test_config_errors_name_the_field_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    monkeypatch.delenv("DW_UNSET_TOKEN", raising=False)
    (tmp_path / "empty").write_text(" \n")
    p = write(tmp_path, text.replace("TMP", str(tmp_path)))
    with pytest.raises(ConfigError) as info:
        load_settings(p)
    assert str(info.value).startswith(f"{p}: {expected.replace('TMP', str(tmp_path))}"), str(
        info.value
    )


def test_observability_serves_what_the_settings_say(
    tmp_path: Path, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "token").write_text(TOKEN)
    cfg = write(
        tmp_path,
        "metrics:\n  listen: 127.0.0.1:0\n"
        f"  auth:\n    bearer_token: {{file: {tmp_path / 'token'}}}\n"
        f"  tls: {{certfile: {certs.cert}, keyfile: {certs.key}}}\n",
    )
    obs = Observability(load_settings(cfg))
    url = obs.serve(ready=lambda: (True, "replay finished"))
    try:
        assert url is not None and url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(certs.ca))
        assert request(url, "/api/status", context=trusted)[0] == 401
        status, _, body = request(url, "/metrics", bearer(TOKEN), context=trusted)
        assert status == 200 and b"driftwatch_build_info" in body
    finally:
        obs.close()
    # Without a token on an address other hosts reach, a warning says so.
    with caplog.at_level(logging.WARNING, logger="driftwatch.http"):
        obs = Observability(load_settings(write(tmp_path, "metrics:\n  listen: 0.0.0.0:0\n")))
        assert obs.serve() is not None
        obs.close()
    assert "reachable from other hosts and metrics.auth is not set" in caplog.text
