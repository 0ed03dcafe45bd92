"""Pytest plugin: a real Alertmanager 0.25 and an HTTP webhook receiver, both on 127.0.0.1.

Load it with ``pytest_plugins = ["tests.alertmanager_server"]`` in ``tests/conftest.py`` or
``pytest -p tests.alertmanager_server``; or use the context managers ``serve_webhook`` and
``run_alertmanager`` in a module's own fixtures.

* ``webhook_receiver``: a stdlib ``http.server`` on a free port that records every JSON POST
  (path and body) and answers 200.
* ``alertmanager``: starts ``deploy/alertmanager/am.sh`` (the Debian package
  ``prometheus-alertmanager``) on a free port with ``deploy/alertmanager/alertmanager.yml``,
  changed only where a test needs it: every receiver URL points at the webhook receiver (its
  path names the receiver) and group_wait/group_interval are short. It is stopped by PID at the
  end of the test; ``stop()``/``start()`` simulate an outage on the same port and data dir.
* ``alertmanager_pair``: two Alertmanagers clustered with each other (an HA pair, gossip on
  127.0.0.1), each a :class:`ClusterPeer` run by this module (``am.sh`` disables clustering) with
  its own port and storage; ``kill()`` is ``kill -9`` by PID and ``start()`` brings it back with
  the same flags and storage. Alerts are not gossiped: a client must send to both.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.worker_proc import terminate

REPO_ROOT = Path(__file__).resolve().parent.parent
AM_SH = REPO_ROOT / "deploy" / "alertmanager" / "am.sh"
AM_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
AM_BIN = Path("/usr/bin/prometheus-alertmanager")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WebhookReceiver:
    """Records what Alertmanager (or driftwatch's webhook receiver) posts."""

    url: str
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def payloads(self, path: str | None = None) -> list[dict[str, Any]]:
        """Bodies received so far (on ``path`` only, if given)."""
        with self.lock:
            return [b for p, b in self.requests if path is None or p == path]

    def alerts(self, path: str | None = None) -> list[dict[str, Any]]:
        """Every alert of every payload, in arrival order."""
        return [a for b in self.payloads(path) for a in b.get("alerts", [])]

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float, path: str | None
    ) -> list[dict[str, Any]]:
        """Wait until ``predicate(alerts)`` holds; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alerts = self.alerts(path)
            if predicate(alerts):
                return alerts
            time.sleep(0.1)
        pytest.fail(f"webhook: condition not met within {timeout} s; got {self.alerts(path)}")


@contextlib.contextmanager
def serve_webhook() -> Iterator[WebhookReceiver]:
    """Run an HTTP server on 127.0.0.1 recording JSON POSTs (answers 200)."""
    port = free_port()
    receiver = WebhookReceiver(f"http://127.0.0.1:{port}")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(n) or b"{}")
            with receiver.lock:
                receiver.requests.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP server on 127.0.0.1 recording JSON POSTs (answers 200)."""
    with serve_webhook() as receiver:
        yield receiver


def derived_config(
    webhook_url: str, group_wait: str = "1s", group_interval: str = "1s"
) -> dict[str, Any]:
    """``deploy/alertmanager/alertmanager.yml`` with every receiver URL pointed at
    ``webhook_url``/<receiver name> and short group timers."""
    config: dict[str, Any] = yaml.safe_load(AM_CONFIG.read_text(encoding="utf-8"))
    config["route"]["group_wait"] = group_wait
    config["route"]["group_interval"] = group_interval
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook_url}/{receiver['name']}"
    return config


@dataclass
class Alertmanager:
    """A running Alertmanager started by ``am.sh``."""

    url: str
    port: int
    data_dir: Path
    config: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            AM_PORT=str(self.port), AM_DATA_DIR=str(self.data_dir), AM_CONFIG=str(self.config)
        )
        return env

    def script(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``am.sh COMMAND`` for this instance."""
        return subprocess.run(
            ["bash", str(AM_SH), command],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> None:
        """Start (again) on the same port and data dir."""
        result = self.script("start")
        if result.returncode != 0:
            raise RuntimeError(f"am.sh start failed:\n{result.stderr}")

    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "alertmanager.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop by PID (``am.sh stop``; SIGKILL if it survives)."""
        pid = self.pid()
        self.script("stop")
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 0)
                os.kill(pid, signal.SIGKILL)

    def api(self, path: str) -> Any:
        """GET a JSON API path."""
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url + path, timeout=5) as resp:
            return json.loads(resp.read())


@contextlib.contextmanager
def run_alertmanager(data_dir: Path, webhook: WebhookReceiver) -> Iterator[Alertmanager]:
    """Start Alertmanager (see the module docstring) in ``data_dir``; stop it by PID after."""
    if not AM_BIN.exists() or shutil.which("amtool") is None:
        pytest.fail("needs the Debian package prometheus-alertmanager")
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "alertmanager.yml"
    config.write_text(yaml.safe_dump(derived_config(webhook.url)), encoding="utf-8")
    am: Alertmanager | None = None
    for _ in range(3):
        port = free_port()
        am = Alertmanager(f"http://127.0.0.1:{port}", port, data_dir, config)
        result = am.script("start")
        if result.returncode == 0:
            break
        if "already in use" not in result.stderr:
            raise RuntimeError(f"am.sh start failed:\n{result.stderr}")
    assert am is not None
    try:
        yield am
    finally:
        am.stop()


@pytest.fixture
def alertmanager(
    tmp_path_factory: pytest.TempPathFactory, webhook_receiver: WebhookReceiver
) -> Iterator[Alertmanager]:
    """A real Alertmanager on 127.0.0.1 whose receivers post to ``webhook_receiver``."""
    with run_alertmanager(tmp_path_factory.mktemp("alertmanager"), webhook_receiver) as am:
        yield am


@dataclass
class ClusterPeer(Alertmanager):
    """One Alertmanager of an HA pair, started by this module with the cluster flags: it
    listens for gossip on ``127.0.0.1:cluster_port`` and joins ``peer_ports``."""

    cluster_port: int = 0
    peer_ports: tuple[int, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        # Short gossip and push-pull intervals so the pair forms (and re-forms after a restart)
        # within a second or two; the defaults (200 ms, 1 m) are for production.
        return [
            str(AM_BIN),
            f"--config.file={self.config}",
            f"--storage.path={self.data_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}",
            f"--cluster.listen-address=127.0.0.1:{self.cluster_port}",
            f"--cluster.advertise-address=127.0.0.1:{self.cluster_port}",
            *(f"--cluster.peer=127.0.0.1:{p}" for p in self.peer_ports),
            "--cluster.gossip-interval=100ms",
            "--cluster.pushpull-interval=2s",
            "--cluster.reconnect-interval=1s",
            "--cluster.settle-timeout=5s",
            "--log.level=info",
        ]

    def start(self, timeout: float = 30.0) -> None:
        """Start (again) with the same flags, ports and storage; wait until ``/-/ready``."""
        log = open(self.data_dir / "alertmanager.log", "ab")  # noqa: SIM115 - the child's now
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Alertmanager exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                self.api("/api/v2/status")
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Alertmanager not ready in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self) -> str:
        return (self.data_dir / "alertmanager.log").read_text(errors="replace")[-3000:]

    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def kill(self) -> None:
        """``kill -9`` by PID, as a crash."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM by PID (SIGKILL after 10 s)."""
        if self.proc is not None:
            terminate(self.proc)

    def cluster_peers(self) -> int:
        """How many members (itself included) this Alertmanager sees in its cluster."""
        return len(self.api("/api/v2/status")["cluster"].get("peers") or [])


@contextlib.contextmanager
def run_alertmanager_pair(base_dir: Path, webhook: WebhookReceiver) -> Iterator[list[ClusterPeer]]:
    """Two clustered Alertmanagers (see the module docstring) under ``base_dir``, both
    posting to ``webhook``; stopped by PID after. Waits until each sees the other."""
    if not AM_BIN.exists() or shutil.which("amtool") is None:
        pytest.fail("needs the Debian package prometheus-alertmanager")
    base_dir.mkdir(parents=True, exist_ok=True)
    config = base_dir / "alertmanager.yml"
    config.write_text(yaml.safe_dump(derived_config(webhook.url)), encoding="utf-8")
    subprocess.run(["amtool", "check-config", str(config)], capture_output=True, check=True)
    web, gossip = [free_port(), free_port()], [free_port(), free_port()]
    peers = [
        ClusterPeer(
            f"http://127.0.0.1:{web[i]}",
            web[i],
            base_dir / f"am{i}",
            config,
            cluster_port=gossip[i],
            peer_ports=(gossip[1 - i],),
        )
        for i in range(2)
    ]
    try:
        for peer in peers:
            peer.data_dir.mkdir(exist_ok=True)
            peer.start()
        deadline = time.monotonic() + 30
        while not all(p.cluster_peers() == 2 for p in peers):
            if time.monotonic() > deadline:
                pytest.fail("the Alertmanager pair did not form a cluster within 30 s")
            time.sleep(0.2)
        yield peers
    finally:
        for peer in peers:
            peer.stop()


@pytest.fixture
def alertmanager_pair(
    tmp_path_factory: pytest.TempPathFactory, webhook_receiver: WebhookReceiver
) -> Iterator[list[ClusterPeer]]:
    """Two real Alertmanagers on 127.0.0.1 clustered with each other (an HA pair)."""
    with run_alertmanager_pair(tmp_path_factory.mktemp("am-pair"), webhook_receiver) as pair:
        yield pair


def active_alerts(am: Alertmanager, alertname: str) -> list[dict[str, Any]]:
    """The alerts named ``alertname`` that ``am`` holds active (not yet past their ``endsAt``,
    the end of the lease a re-send renews)."""
    now = time.time()
    return [
        a
        for a in am.api("/api/v2/alerts")
        if a["labels"].get("alertname") == alertname
        and datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")).timestamp() > now
    ]
