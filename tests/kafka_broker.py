"""Pytest plugin: a real single-node Apache Kafka broker (KRaft) for integration tests.

Register it from ``tests/conftest.py``::

    pytest_plugins = ["tests.kafka_broker"]

or load it on the command line with ``pytest -p tests.kafka_broker``.

The session-scoped fixture ``kafka_broker`` starts a broker with ``deploy/kafka/kafka.sh`` on free
127.0.0.1 ports in a temporary data directory (the first run fetches the broker jars from Maven
Central, which needs ``mvn``; every run needs ``java``) and stops it, by PID, at the end of the
session. ``create_topic`` creates a topic through kafka-python's admin client.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"

# Generous: the first start of a fresh checkout also fetches ~46 MB of jars with Maven.
START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 60.0
START_ATTEMPTS = 3


@dataclass(frozen=True)
class KafkaBroker:
    """A running broker started by ``deploy/kafka/kafka.sh``."""

    bootstrap: str
    port: int
    controller_port: int
    data_dir: Path
    pid: int

    def script_env(self) -> dict[str, str]:
        """The environment under which ``kafka.sh`` addresses this broker."""
        return script_env(self.port, self.controller_port, self.data_dir)

    def run_script(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``kafka.sh COMMAND`` (start, stop, status) for this broker; never raises on exit."""
        return run_script(command, self.script_env(), timeout_s=STOP_TIMEOUT_S)


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are free on 127.0.0.1 right now."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def script_env(port: int, controller_port: int, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_PORT=str(port),
        KAFKA_CONTROLLER_PORT=str(controller_port),
        KAFKA_DATA_DIR=str(data_dir),
    )
    return env


def run_script(
    command: str, env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(KAFKA_SH), command],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _log_tail(data_dir: Path, lines: int = 40) -> str:
    try:
        text = (data_dir / "kafka.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no kafka.log)"
    return "\n".join(text.splitlines()[-lines:])


def start_broker(data_dir: Path) -> KafkaBroker:
    """Start a broker on free ports in ``data_dir``; retry on a port race."""
    failures: list[str] = []
    for _ in range(START_ATTEMPTS):
        port, controller_port = free_ports(2)
        env = script_env(port, controller_port, data_dir)
        result = run_script("start", env, timeout_s=START_TIMEOUT_S)
        if result.returncode == 0:
            pid = int((data_dir / "kafka.pid").read_text(encoding="utf-8").strip())
            return KafkaBroker(
                bootstrap=f"127.0.0.1:{port}",
                port=port,
                controller_port=controller_port,
                data_dir=data_dir,
                pid=pid,
            )
        failures.append(result.stderr.strip())
        if "already in use" not in result.stderr:
            break
    raise RuntimeError(
        f"{KAFKA_SH} start failed:\n"
        + "\n---\n".join(failures)
        + f"\n--- tail of {data_dir / 'kafka.log'}:\n"
        + _log_tail(data_dir)
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_broker(broker: KafkaBroker) -> None:
    """Stop the broker with ``kafka.sh stop``; SIGKILL its PID if it is somehow still alive."""
    result = broker.run_script("stop")
    deadline = time.monotonic() + 5.0
    while _pid_alive(broker.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(broker.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(broker.pid, signal.SIGKILL)
    if result.returncode != 0:
        raise RuntimeError(f"{KAFKA_SH} stop failed:\n{result.stderr}")


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    *,
    replication_factor: int = 1,
    exist_ok: bool = False,
    timeout_s: float = 30.0,
) -> None:
    """Create topic ``name`` and wait until every partition has a leader."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="driftwatch-tests-admin",
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": replication_factor}},
            timeout_ms=int(timeout_s * 1000),
            wait_for_metadata=True,
        )
    except TopicAlreadyExistsError:
        if not exist_ok:
            raise
    finally:
        admin.close()


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text, deprecated
    # since Python 3.11 (read_text in turn warns about open_text); the project turns warnings into
    # errors, and ignores such third-party deprecations for faust/aiokafka the same way.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:kafka.*")
    config.addinivalue_line(
        "filterwarnings",
        "ignore:open_text is deprecated:DeprecationWarning:importlib.resources._legacy",
    )


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real Kafka broker on 127.0.0.1, shared by the whole test session."""
    data_dir = tmp_path_factory.mktemp("kafka")
    broker = start_broker(data_dir)
    try:
        yield broker
    finally:
        stop_broker(broker)
