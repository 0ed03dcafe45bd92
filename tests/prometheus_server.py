"""A real Prometheus (the Debian package ``prometheus``) for tests, on a free 127.0.0.1 port.

``run_prometheus(directory, config_yaml)`` writes ``config_yaml`` to ``prometheus.yml`` in
``directory``, starts Prometheus with its storage and log (``prometheus.log``) there, waits
until ``/-/ready`` answers 200 and stops it by PID at the end. ``query`` runs an instant
PromQL query and ``targets`` lists the active scrape targets by job.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kafka_broker import free_ports
from tests.worker_proc import terminate, until


@dataclass
class Prom:
    """A running Prometheus: its base URL and its process."""

    url: str
    proc: subprocess.Popen[bytes]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def run_prometheus(
    directory: Path, config_yaml: str, extra_args: Sequence[str] = ()
) -> Iterator[Prom]:
    """Prometheus with ``config_yaml`` (and ``extra_args`` on its command line), ready."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus missing: apt-get install prometheus")
    config = directory / "prometheus.yml"
    config.write_text(config_yaml, encoding="utf-8")
    (port,) = free_ports(1)
    log_path = directory / "prometheus.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *extra_args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    prom = Prom(f"http://127.0.0.1:{port}", proc)

    def ready() -> bool:
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        try:
            return _get(prom.url + "/-/ready")[0] == 200
        except OSError:
            return False

    try:
        until(ready, 60, "Prometheus to be ready")
        yield prom
    finally:
        terminate(proc)
        log.close()


def query(prom: Prom, q: str) -> list[dict[str, Any]]:
    """The result vector of the instant query ``q``."""
    status, body = _get(prom.url + "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
    assert status == 200, body
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def targets(prom: Prom) -> dict[str, dict[str, Any]]:
    """The active scrape targets, by their ``job`` label."""
    _, body = _get(prom.url + "/api/v1/targets?state=active")
    return {t["labels"]["job"]: t for t in json.loads(body)["data"]["activeTargets"]}
