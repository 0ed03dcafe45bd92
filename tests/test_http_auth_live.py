"""The authenticated HTTPS server against real clients.

One ``driftwatch replay --serve`` subprocess (a small drift scenario) serves over HTTPS with
``metrics.auth.bearer_token`` from a file and a certificate made by ``openssl`` (a CA and a
server certificate for 127.0.0.1). Then:

* a real Prometheus 2.42 (Debian's) scrapes it with ``authorization.credentials_file`` and
  ``tls_config.ca_file``: the target is up and the replay's counters arrive; a second job
  without the token sees the target down with a 401;
* headless Chromium gets 401 and the sign-in form for the status page and its JSON without
  the token, signs in with the form, and then renders the page.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from monitor.scenarios.simulate import generate
from tests.kafka_broker import free_ports
from tests.prometheus_server import Prom, query, run_prometheus, targets
from tests.tls_certs import Certs, make_certs
from tests.webdriver import RESPONSE_STATUS, WebDriver, chromium
from tests.worker_proc import terminate, until

TOKEN = "live-Token-3b9e5d7f01"
EVENTS = 4000


def get(
    url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Served:
    url: str
    certs: Certs
    token_file: Path
    log: Path
    trusted: ssl.SSLContext


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    d = tmp_path_factory.mktemp("served")
    certs = make_certs(d / "certs")
    token_file = d / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    events = d / "events.jsonl"
    events.write_bytes(
        b"".join(line + b"\n" for line in generate("abrupt-shift", EVENTS, 5).lines())
    )
    (port,) = free_ports(1)
    cfg = d / "monitor.yaml"
    cfg.write_text(
        "window:\n  size: 200\nreference:\n  warmup_events: 1000\n"
        f"metrics:\n  listen: 127.0.0.1:{port}\n"
        f"  auth:\n    bearer_token: {{file: {token_file}}}\n"
        f"  tls:\n    certfile: {certs.cert}\n    keyfile: {certs.key}\n"
    )
    log_path = d / "replay.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor.cli",
            "replay",
            str(events),
            "--config",
            str(cfg),
            "--serve",
            "--no-progress",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(certs.ca))

    def finished() -> bool:
        assert proc.poll() is None, log_path.read_text()
        try:
            return get(url + "/readyz", context=trusted) == (200, b"ok: replay finished\n")
        except OSError:
            return False

    try:
        until(finished, 60, "the replay to finish")
        yield Served(url, certs, token_file, log_path, trusted)
    finally:
        terminate(proc)
        log.close()
        assert TOKEN not in log_path.read_text()


def test_the_server_wants_the_token_over_https(served: Served) -> None:
    assert get(served.url + "/metrics", context=served.trusted)[0] == 401
    status, body = get(
        served.url + "/metrics", {"Authorization": f"Bearer {TOKEN}"}, served.trusted
    )
    assert status == 200
    assert f'driftwatch_events_accepted_total{{kind="prediction"}} {EVENTS}.0' in body.decode()
    assert get(served.url + "/healthz", context=served.trusted)[0] == 200


@pytest.fixture(scope="module")
def prometheus(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    target = served.url.removeprefix("https://")
    tls = f"    tls_config:\n      ca_file: {served.certs.ca}\n"
    config = (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: driftwatch\n    scheme: https\n"
        f"    authorization:\n      credentials_file: {served.token_file}\n{tls}"
        f"    static_configs:\n      - targets: ['{target}']\n"
        "  - job_name: driftwatch-no-token\n    scheme: https\n"
        f"{tls}    static_configs:\n      - targets: ['{target}']\n"
    )
    with run_prometheus(tmp_path_factory.mktemp("prometheus"), config) as prom:
        yield prom


def test_prometheus_scrapes_with_the_token_and_is_refused_without(
    served: Served, prometheus: Prom
) -> None:
    up = until(lambda: query(prometheus, 'up{job="driftwatch"} == 1'), 30, "the scrape")
    assert len(up) == 1
    accepted = until(
        lambda: query(
            prometheus, 'driftwatch_events_accepted_total{job="driftwatch",kind="prediction"}'
        ),
        15,
        "the accepted events",
    )
    assert float(accepted[0]["value"][1]) == EVENTS
    refused = until(
        lambda: [
            t
            for t in [targets(prometheus).get("driftwatch-no-token")]
            if t and t["health"] == "down"
        ],
        30,
        "the scrape without the token to fail",
    )
    assert "401" in refused[0]["lastError"], refused
    assert targets(prometheus)["driftwatch"]["lastError"] == ""
    down = query(prometheus, 'up{job="driftwatch-no-token"}')
    assert [float(s["value"][1]) for s in down] == [0.0]
    assert query(prometheus, 'driftwatch_build_info{job="driftwatch-no-token"}') == []


PAGE_CHECK = """
return {
  status: performance.getEntriesByType('navigation')[0].responseStatus,
  path: location.pathname,
  login: !!document.querySelector('form.login'),
  figures: document.querySelectorAll('figure.drift').length,
  title: document.title,
  cookie: document.cookie,
};
"""


def sign_in(driver: WebDriver, token: str) -> None:
    driver.js(
        f"document.querySelector('form.login input[name=token]').value = '{token}';"
        "document.querySelector('form.login').submit();"
    )


def _page(driver: WebDriver, path: str) -> dict[str, Any] | None:
    """The page's state once the browser shows ``path`` (None while it navigates)."""
    try:
        page: dict[str, Any] = driver.js(PAGE_CHECK)
    except urllib.error.HTTPError:  # the document unloaded under the script
        return None
    if page["path"] != path or page["status"] == 0:
        return None
    return page if page["login"] or page["figures"] else None


def test_status_page_in_chromium_needs_the_token(served: Served, tmp_path: Path) -> None:
    # The CA is not in Chromium's trust store; the certificate itself is tested above.
    with chromium(tmp_path, ["--window-size=1000,800"], accept_insecure_certs=True) as driver:
        for path in ("/", "/metrics", "/api/status"):
            driver.go(served.url + path)
            assert driver.js(RESPONSE_STATUS) == 401, path
        page = driver.js(PAGE_CHECK)  # /api/status too offers the form (posting to ../login)
        assert page["login"] and page["figures"] == 0, page
        # A wrong token, then the right one, typed into the form.
        sign_in(driver, "not-the-token")
        page = until(lambda: _page(driver, "/login"), 15, "the refusal")
        assert page["status"] == 401 and page["login"] and page["figures"] == 0, page
        sign_in(driver, TOKEN)
        page = until(lambda: _page(driver, "/"), 15, "the status page")
        assert page["status"] == 200 and page["path"] == "/", page
        assert page["title"].startswith("driftwatch") and not page["login"]
        assert page["cookie"] == ""  # HttpOnly: no script on the page can read it
        driver.go(served.url + "/api/status")
        assert driver.js(RESPONSE_STATUS) == 200
        status = json.loads(driver.js("return document.body.innerText;"))
        assert status["ready"] is True and status["ready_reason"] == "replay finished"
