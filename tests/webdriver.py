"""Just enough of the W3C WebDriver protocol to drive headless Chromium through chromedriver
(Debian's ``chromium`` and ``chromium-driver``), for tests of the status page."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.kafka_broker import free_ports
from tests.worker_proc import terminate

#: Chromium's flags for a quiet headless run.
HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: The HTTP status of the page last navigated to (Navigation Timing, Chromium 109 and later).
RESPONSE_STATUS = "return performance.getEntriesByType('navigation')[0].responseStatus;"


class WebDriver:
    """A WebDriver session on chromedriver at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["value"]

    def start(self, args: list[str], accept_insecure_certs: bool = False) -> None:
        caps: dict[str, Any] = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": shutil.which("chromium"), "args": args},
        }
        if accept_insecure_certs:
            caps["acceptInsecureCerts"] = True
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        self.session = value["sessionId"]

    def go(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def js(self, script: str) -> Any:
        return self.call(
            "POST", f"/session/{self.session}/execute/sync", {"script": script, "args": []}
        )

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("GET", f"/session/{self.session}/screenshot"))

    def quit(self) -> None:
        if self.session:
            self.call("DELETE", f"/session/{self.session}")
            self.session = ""

    def ready(self) -> bool:
        """chromedriver answers and can start a session."""
        try:
            return bool(self.call("GET", "/status").get("ready"))
        except OSError:
            return False


@contextmanager
def chromium(
    workdir: Path, args: list[str], accept_insecure_certs: bool = False
) -> Iterator[WebDriver]:
    """chromedriver and a headless Chromium session (profile and log in ``workdir``); both are
    stopped, by process group, on exit."""
    chromedriver = shutil.which("chromedriver")
    assert chromedriver is not None and shutil.which("chromium") is not None, (
        "chromium missing: apt-get install chromium chromium-driver"
    )
    (port,) = free_ports(1)
    log = open(workdir / "chromedriver.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [chromedriver, f"--port={port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its browser processes share the group, stopped below
    )
    driver = WebDriver(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while not driver.ready():
            assert proc.poll() is None, "chromedriver exited"
            assert time.monotonic() < deadline, "chromedriver did not start within 30 s"
            time.sleep(0.2)
        driver.start(
            [*HEADLESS, f"--user-data-dir={workdir / 'chromium-profile'}", *args],
            accept_insecure_certs,
        )
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            terminate(proc, group=True)
            log.close()
