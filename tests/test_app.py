"""The Faust app as ``driftwatch run`` builds it, without a broker: what it configures.

Each check runs in a child interpreter: building a Faust app and its consumer thread creates
event loops that Faust never closes, which must not leak into the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.kafka_broker import REPO_ROOT

PROBE = """
import asyncio, json, sys
from monitor.app import build_app
from monitor.config import settings_from_mapping

async def main():
    app, _ = build_app(settings_from_mapping(json.loads(sys.argv[1])), {}, [])
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    c = app.conf
    producer = app.producer._new_producer()
    return {"fetch_wait": consumer._fetch_max_wait_ms, "web_enabled": c.web_enabled,
            "linger_ms": producer._message_accumulator._linger_time * 1000,
            "batch_bytes": producer._message_accumulator._batch_size,
            "web_bind": c.web_bind, "web_host": c.web_host, "datadir": str(c.datadir)}

print(json.dumps(asyncio.run(main())))
"""


def probe(settings: dict[str, object], env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(settings)],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_worker_consumer_takes_the_configured_fetch_wait() -> None:
    """Faust fixes the worker consumer's fetch wait at 1,500 ms; driftwatch sets its own."""
    kafka = {"bootstrap_servers": "127.0.0.1:1"}
    assert probe({"kafka": kafka})["fetch_wait"] == 100  # the documented default
    assert probe({"kafka": {**kafka, "fetch_max_wait_ms": 40}})["fetch_wait"] == 40


def test_worker_producer_lingers_to_batch_checkpoints() -> None:
    """Faust's producer sends every changelog record at once; the worker's waits for more."""
    kafka = {"bootstrap_servers": "127.0.0.1:1"}
    got = probe({"kafka": kafka})
    assert (got["linger_ms"], got["batch_bytes"]) == (50, 1 << 20)  # the documented defaults
    assert probe({"kafka": {**kafka, "producer_linger_ms": 0}})["linger_ms"] == 0


def test_faust_web_server_is_off_and_would_bind_loopback() -> None:
    got = probe({"kafka": {"bootstrap_servers": "127.0.0.1:1"}})
    assert got["web_enabled"] is False
    assert got["web_bind"] == "127.0.0.1" and got["web_host"] == "127.0.0.1"


def test_worker_files_live_in_the_state_directory_not_the_working_directory(
    tmp_path: Path,
) -> None:
    """Faust's default data directory is ``<app id>-data`` in the working directory."""
    kafka = {"bootstrap_servers": "127.0.0.1:1", "group_id": "g1"}
    got = probe({"kafka": kafka}, env={"XDG_STATE_HOME": str(tmp_path / "state")})
    assert got["datadir"] == str(tmp_path / "state" / "driftwatch" / "g1")
    assert (tmp_path / "state" / "driftwatch").is_dir()  # Faust makes only the last level
    mine = probe({"kafka": {**kafka, "data_dir": str(tmp_path / "mine")}})
    assert mine["datadir"] == str(tmp_path / "mine" / "g1")
